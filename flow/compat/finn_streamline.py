"""Workarounds for finn-plus 1.6.1 streamlining passes that qflow's structure streamlining needs.

Each workaround states the FINN behaviour it avoids; ``tests/compat/test_finn_streamline.py``
shows that behaviour is still there (each test fails once FINN fixes it, and then the
workaround can go). :data:`AVOIDED_FINN_PASSES` lists the FINN passes qflow does not run
at all, and why.
"""

from __future__ import annotations

import numpy as np
from finn.transformation.streamline.reorder import (
    MoveLinearPastEltwiseAdd,
    MoveLinearPastFork,
    MoveTransposePastJoinAdd,
)
from onnx import helper
from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name

from flow.compat.qonnx_index import IndexedModel, infer_datatypes
from flow.compat.qonnx_graph import infer_shapes

#: FINN passes qflow's structure streamlining never runs, and why (each shown by a test).
AVOIDED_FINN_PASSES: dict[str, str] = {
    "MoveTransposePastJoinAdd": "its perm check evaluates False without returning it, so it moves Transposes with "
    "different perms past an Add and changes the result; use MoveEqualTransposesPastJoinAdd",
    "MoveMulPastJoinAdd": "it compares per-channel scales with != inside an if and raises 'truth value of an array is "
    "ambiguous'; MoveLinearPastEltwiseAdd (np.array_equal) does the same move",
    "MoveMulPastDWConv": "it ignores the channel multiplier and moves a C-channel scale behind a conv with 2C outputs, "
    "and it needs an unlowered Conv (step_streamline has lowered them); use MoveMulPastDepthwiseMatMul",
    "AbsorbTransposeIntoFlatten": "it compares every Reshape's shape with [1, -1] and raises on shapes with other than "
    "two entries; use ConvertSingletonTransposeToReshape",
    "StreamlinePlus": "it never terminates when a Transpose meets a scalar Mul: MoveTransposePastEltwise and "
    "MoveScalarLinearPastInvariants swap them back and forth",
}


def _perm(node) -> list[int]:
    a = get_by_name(node.attribute, "perm")
    return list(a.ints) if a is not None else []


class MoveEqualTransposesPastJoinAdd(MoveTransposePastJoinAdd):
    """FINN's ``MoveTransposePastJoinAdd``, moving the Transposes only when all have the same perm.

    Reason: FINN's ``are_producers_identical`` evaluates ``False`` without returning it, so
    it also moves Transposes with different perms past an Add: ``T1(x) + T2(y)`` becomes
    ``T1(x + y)``, which is wrong.
    """

    def are_producers_identical(self, model, producers):
        if any(p is None or p.op_type != "Transpose" for p in producers):
            return False
        return all(_perm(p) == _perm(producers[0]) for p in producers)


class MoveForkFreeLinearPastEltwiseAdd(Transformation):
    """FINN's ``MoveLinearPastEltwiseAdd`` (``(x*c) + (y*c) -> (x + y) * c``) after FINN's
    ``MoveLinearPastFork`` has given every forking Mul/Add one copy per consumer.

    Reason: ``MoveLinearPastEltwiseAdd`` does not check that the Muls it moves have one
    consumer; when one forks (a residual block's shared scale feeds a conv and the Add), the
    other consumer then reads the Add's result.
    """

    def apply(self, model):
        model = model.transform(MoveLinearPastFork())
        return MoveLinearPastEltwiseAdd().apply(model)


class ConvertSingletonTransposeToReshape(Transformation):
    """A Transpose that keeps the order of every axis longer than 1, before a Reshape/Flatten, becomes a Reshape.

    It moves no data (typical after a global pool: NHWC (1,1,1,C) -> NCHW (1,C,1,1) before
    a Flatten); two Reshapes then merge. Reason: FINN's ``AbsorbTransposeIntoFlatten`` covers
    this case but raises on any Reshape whose shape has other than two entries.
    """

    def apply(self, model):
        view = IndexedModel(model)
        outputs = {o.name for o in model.graph.output}
        changed = False
        for n in list(model.graph.node):
            if n.op_type != "Transpose" or n.output[0] in outputs:
                continue
            shape, oshape = view.get_tensor_shape(n.input[0]), view.get_tensor_shape(n.output[0])
            consumers = view.find_consumers(n.output[0])
            if shape is None or oshape is None or len(consumers) != 1 or consumers[0].op_type not in ("Reshape", "Flatten"):
                continue
            perm = _perm(n) or list(range(len(shape)))[::-1]
            moved = [p for p in perm if shape[p] != 1]
            if moved != sorted(moved):
                continue
            target = model.make_new_valueinfo_name()
            model.set_initializer(target, np.array(oshape, dtype=np.int64))
            n.CopyFrom(helper.make_node("Reshape", [n.input[0], target], [n.output[0]], name=n.name))  # in place
            changed = True
        if changed:
            model = infer_shapes(model)
            while infer_datatypes(model):
                pass
        return model, changed
