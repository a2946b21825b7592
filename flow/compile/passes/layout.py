"""Scales through data-movement ops, and Reshapes merged.

FINN's ``MoveScalarLinearPastInvariants`` moves only scalars past Transpose/Reshape/Flatten;
a per-channel scale (a depthwise conv's input, a per-channel ReLU) must move with the data.
"""

from __future__ import annotations

from onnx import helper

from flow.compile.passes.graph import (
    LAYOUT_OPS,
    MoveConstantPastUnaryOp,
    SweepTransformation,
    attr,
    compress,
    materialize,
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


class CollapseRepeatedReshape(SweepTransformation):
    """Reshape/Flatten followed by Reshape/Flatten (one consumer) -> one Reshape to the final shape."""

    def rewrite(self, ed, n):
        if n.op_type not in ("Reshape", "Flatten"):
            return
        nxt = sole_consumer(ed, n.output[0])
        if nxt is None or not ed.is_fresh(nxt) or nxt.op_type not in ("Reshape", "Flatten") or nxt.input[0] != n.output[0]:
            return
        oshape = ed.get_tensor_shape(nxt.output[0])
        if oshape is None:
            return
        merged = helper.make_node("Reshape", [n.input[0], ed.new_int_const(oshape)], [nxt.output[0]], name=nxt.name)
        ed.remove_node(n)
        ed.replace_node(nxt, [merged])
        ed.touch(n)
