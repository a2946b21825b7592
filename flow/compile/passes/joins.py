"""Scales and offsets at residual joins (an Add of two computed tensors).

A residual block whose skip and body share one quantizer reaches the join Add as
``(x * s) + (y * s)``; FINN's ``MoveLinearPastEltwiseAdd`` turns that into ``(x + y) * s``
(run through :class:`flow.compat.finn_streamline.MoveForkFreeLinearPastEltwiseAdd`). The
passes here bring a join into that form.
"""

from __future__ import annotations

import numpy as np

from flow.compile.passes.graph import (
    SweepTransformation,
    compress,
    const_operand,
    is_join_add,
    materialize,
    sole_consumer,
)


class MoveConstAddPastJoinAdd(SweepTransformation):
    """``(x + a) + y -> (x + y) + a`` for a constant ``a`` (the inner Add must not fork).

    Associativity; it brings the two branches of a join next to each other.
    """

    def rewrite(self, ed, j):
        if not is_join_add(ed, j):
            return
        for side in (0, 1):
            p = ed.find_producer(j.input[side])
            co = const_operand(ed, p) if p is not None and p.op_type == "Add" and ed.is_fresh(p) else None
            if co is None or sole_consumer(ed, p.output[0]) is not j:
                continue
            dyn, cname, c = co
            out = j.output[0]
            if materialize(c, ed.get_tensor_shape(out)) is None:
                continue  # the offset would widen the join's output
            mid = p.output[0]
            ed.set_inputs(j, [p.input[dyn], j.input[1 - side]])
            ed.rewire_output(j, 0, mid)
            ed.set_inputs(p, [mid, cname])
            ed.rewire_output(p, 0, out)
            ed.forget(mid)
            ed.touch(j, p)
            return


class UnifyEqualScalesAtJoinAdd(SweepTransformation):
    """Give the two Muls feeding a join Add one constant array when their scales are equal after broadcasting.

    FINN's ``MoveLinearPastEltwiseAdd`` compares the constants with ``np.array_equal``, which
    is shape-sensitive: a shared quantizer's scale that reaches the Add as (1,) on one branch
    and (1,1,1,1) on the other is not merged. Values are not changed.
    """

    def rewrite(self, ed, j):
        if not is_join_add(ed, j):
            return
        prods = [ed.find_producer(t) for t in j.input]
        if any(p is None or p.op_type != "Mul" for p in prods) or prods[0] is prods[1] or not ed.is_fresh(*prods):
            return
        cos = [const_operand(ed, p) for p in prods]
        oshape = ed.get_tensor_shape(j.output[0])
        if any(co is None for co in cos) or oshape is None:
            return
        (_, n0, c0), (_, n1, c1) = cos
        if np.array_equal(c0, c1):
            return
        f0, f1 = materialize(c0, oshape), materialize(c1, oshape)
        if f0 is None or f1 is None or not np.array_equal(f0, f1):
            return
        unified = compress(f0)
        ed.replace_initializer(n0, unified)
        ed.replace_initializer(n1, unified.copy())
        ed.touch(j, *prods)
