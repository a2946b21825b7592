"""Scales and offsets at residual joins (an Add of two computed tensors).

A residual block whose skip and body share one quantizer reaches the join Add as
``(x * s) + (y * s)``; FINN's ``MoveLinearPastEltwiseAdd`` turns that into ``(x + y) * s``
(run through :class:`flow.compat.finn_streamline.MoveForkFreeLinearPastEltwiseAdd`). The
passes here bring a join into that form.
"""

from __future__ import annotations

import numpy as np
from qonnx.transformation.base import Transformation

from flow.compile.passes.graph import (
    compress,
    const_operand,
    forget,
    is_join_add,
    materialize,
    move_after,
    refresh,
    sole_consumer,
)


class MoveConstAddPastJoinAdd(Transformation):
    """``(x + a) + y -> (x + y) + a`` for a constant ``a`` (the inner Add must not fork).

    Associativity; it brings the two branches of a join next to each other.
    """

    def apply(self, model):
        for j in model.graph.node:
            if not is_join_add(model, j):
                continue
            for side in (0, 1):
                p = model.find_producer(j.input[side])
                co = const_operand(model, p) if p is not None and p.op_type == "Add" else None
                if co is None or sole_consumer(model, p.output[0]) is not j:
                    continue
                dyn, cname, c = co
                out = j.output[0]
                if materialize(c, model.get_tensor_shape(out)) is None:
                    continue  # the offset would widen the join's output
                mid = p.output[0]
                j.input[:] = [p.input[dyn], j.input[1 - side]]
                j.output[0] = mid
                p.input[:] = [mid, cname]
                p.output[0] = out
                forget(model, mid)
                move_after(model, p, j)
                return refresh(model), True
        return model, False


class UnifyEqualScalesAtJoinAdd(Transformation):
    """Give the two Muls feeding a join Add one constant array when their scales are equal after broadcasting.

    FINN's ``MoveLinearPastEltwiseAdd`` compares the constants with ``np.array_equal``, which
    is shape-sensitive: a shared quantizer's scale that reaches the Add as (1,) on one branch
    and (1,1,1,1) on the other is not merged. Values are not changed.
    """

    def apply(self, model):
        for j in model.graph.node:
            if not is_join_add(model, j):
                continue
            prods = [model.find_producer(t) for t in j.input]
            if any(p is None or p.op_type != "Mul" for p in prods) or prods[0] is prods[1]:
                continue
            cos = [const_operand(model, p) for p in prods]
            oshape = model.get_tensor_shape(j.output[0])
            if any(co is None for co in cos) or oshape is None:
                continue
            (_, n0, c0), (_, n1, c1) = cos
            if np.array_equal(c0, c1):
                continue
            f0, f1 = materialize(c0, oshape), materialize(c1, oshape)
            if f0 is None or f1 is None or not np.array_equal(f0, f1):
                continue
            unified = compress(f0)
            model.set_initializer(n0, unified)
            model.set_initializer(n1, unified.copy())
            return refresh(model), True
        return model, False
