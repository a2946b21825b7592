"""Scales through data-movement ops, and Reshapes merged.

FINN's ``MoveScalarLinearPastInvariants`` moves only scalars past Transpose/Reshape/Flatten;
a per-channel scale (a depthwise conv's input, a per-channel ReLU) must move with the data.
"""

from __future__ import annotations

from onnx import helper
from qonnx.transformation.base import Transformation

from flow.compile.passes.graph import (
    LAYOUT_OPS,
    MoveConstantPastUnaryOp,
    attr,
    compress,
    materialize,
    new_int_const,
    refresh,
    replace_node,
    sole_consumer,
)


class MoveLinearPastLayoutOp(MoveConstantPastUnaryOp):
    """Move a Mul/Add with a constant past the Transpose/Reshape/Flatten/Squeeze/Unsqueeze it feeds.

    Exact: data movement commutes with an elementwise op when the constant moves with the
    data. The constant is broadcast to the full input shape, rearranged by the same op and
    shrunk back to its smallest broadcastable shape, so (1,C,1,1) before an NCHW->NHWC
    Transpose becomes (1,1,1,C). A scalar stays as it is.
    """

    past = LAYOUT_OPS

    def moved_constant(self, model, node, nxt, c, xshape):
        full, oshape = materialize(c, xshape), model.get_tensor_shape(nxt.output[0])
        if full is None or oshape is None:
            return None
        if c.size == 1:
            return c
        if nxt.op_type == "Transpose":
            return compress(full.transpose(attr(nxt, "perm", list(range(full.ndim))[::-1])))
        return compress(full.reshape(oshape))


class CollapseRepeatedReshape(Transformation):
    """Reshape/Flatten followed by Reshape/Flatten (one consumer) -> one Reshape to the final shape."""

    def apply(self, model):
        for n in model.graph.node:
            if n.op_type not in ("Reshape", "Flatten"):
                continue
            nxt = sole_consumer(model, n.output[0])
            if nxt is None or nxt.op_type not in ("Reshape", "Flatten") or nxt.input[0] != n.output[0]:
                continue
            oshape = model.get_tensor_shape(nxt.output[0])
            if oshape is None:
                continue
            merged = helper.make_node("Reshape", [n.input[0], new_int_const(model, oshape)], [nxt.output[0]], name=nxt.name)
            replace_node(model, nxt, [merged])
            model.graph.node.remove(n)
            return refresh(model), True
        return model, False
