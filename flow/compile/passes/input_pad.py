"""Pre-processing in front of a padded first conv: the raw input is padded on the host instead.

A network trained on normalised pixels (``(x / 255 - mean) / std``) whose first conv pads
with zeros reads, after streamlining, ``x -> Mul(s) -> Add(c) -> Im2Col(pad) -> MatMul``. The
zeros go in after the offset, so neither the scale nor the offset can move past the Im2Col,
and the first conv would compute on floats. Padding the integer input with the value ``v``
that the pre-processing maps to the pad value (``v * s + c == 0``; Brevitas' ProxylessNAS:
``x / 128 - 1``, so ``v = 128``) computes the same values, bit for bit, with the scale and
the offset behind an unpadded Im2Col, where FINN's own passes move them into the thresholds.

The padding then runs on the host, in front of the accelerator, as a constant ``Pad`` (FINN's
``FMPadding`` pads with zeros only): the accelerator reads the padded integer image.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.custom_op.registry import getCustomOp

from flow.compile.passes.graph import LAYOUT_OPS, GraphEditor, SweepTransformation, attr, sole_consumer
from flow.core.onnx_nodes import const_operand

#: The first ONNX opset whose ``Pad`` takes ``axes`` (FINN's ``InferFMPadding`` reads a fourth input).
PAD_AXES_OPSET = 18


def _opset(model) -> int:
    return next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _from_graph_input(ed: GraphEditor, tensor: str) -> bool:
    """True if ``tensor`` is the graph input, or comes from it through layout ops alone (all on the host)."""
    inputs = {i.name for i in ed.graph.input}
    while tensor not in inputs:
        producer = ed.find_producer(tensor)
        if producer is None or producer.op_type not in LAYOUT_OPS:
            return False
        tensor = producer.input[0]
    return True


def pad_input_value(ops: list[tuple[str, float]], target: float, dtype) -> int | None:
    """The integer ``v`` of ``dtype`` that the scalar ops (``("Mul" | "Add", c)``, in order) map
    exactly (in float32) to ``target``; None if there is none.

    >>> from qonnx.core.datatype import DataType
    >>> pad_input_value([("Mul", 1 / 128), ("Add", -1.0)], 0.0, DataType["UINT8"])
    128
    >>> pad_input_value([("Mul", 2 / 255), ("Add", -1.0)], 0.0, DataType["UINT8"]) is None  # 127.5
    True
    """
    gain, offset = 1.0, 0.0
    for op, c in ops:
        gain, offset = (gain * c, offset * c) if op == "Mul" else (gain, offset + c)
    if gain == 0:
        return None
    v = round((target - offset) / gain)
    if not dtype.allowed(v):
        return None
    y = np.float32(v)
    for op, c in ops:
        y = y * np.float32(c) if op == "Mul" else y + np.float32(c)
    return int(v) if y == np.float32(target) else None


def padded_preprocessing(view, im2col) -> tuple[list, list[tuple[str, float]], str] | None:
    """(the Mul/Add nodes, last applied first; their ``(op, constant)`` in the order they apply; the integer
    tensor they start from) for a padded Im2Col that reads the integer graph input (through layout
    ops) through a non-branching chain of scalar Mul/Add; None for any other node."""
    if im2col.op_type != "Im2Col" or not any(attr(im2col, "pad_amount", [0, 0, 0, 0])):
        return None
    chain, ops, tensor = [], [], im2col.input[0]
    while True:
        producer = view.find_producer(tensor)
        co = const_operand(view, producer) if producer is not None and producer.op_type in ("Mul", "Add") else None
        if co is None or np.asarray(co[2]).size != 1 or sole_consumer(view, tensor) is None:
            break
        chain.append(producer)
        ops.append((producer.op_type, float(np.asarray(co[2]).reshape(-1)[0])))
        tensor = producer.input[co[0]]
    if not chain or not view.get_tensor_datatype(tensor).is_integer() or not _from_graph_input(view, tensor):
        return None
    return chain, ops[::-1], tensor


class PadInputOnHost(SweepTransformation):
    """``x -> (scalar Mul/Add)+ -> Im2Col(pad p)`` on the integer graph input (:func:`padded_preprocessing`)
    becomes ``x -> Pad(p, v) -> Im2Col -> (the same Mul/Add)``, ``v`` from :func:`pad_input_value`.

    Models with an ONNX opset below 18 are left as they are.
    """

    def rewrite(self, ed, n):
        found = padded_preprocessing(ed, n) if _opset(ed) >= PAD_AXES_OPSET else None
        if found is None or not ed.is_fresh(n, *found[0]) or len(ed.get_tensor_shape(found[2]) or []) != 4:
            return
        chain, ops, tensor = found
        dtype, pads = ed.get_tensor_datatype(tensor), attr(n, "pad_amount")
        value = pad_input_value(ops, float(attr(n, "pad_value", 0)), dtype)
        if value is None:
            return
        padded, cols, out = ed.new_name(), ed.new_name(), n.output[0]
        consts = [ed.new_int_const(pads), ed.new_const(np.float32(value)), ed.new_int_const([1, 2])]
        pad = ed.add_node(helper.make_node("Pad", [tensor, *consts], [padded], mode="constant", name=f"PadInput_{n.name}"))
        ed.forget(*(p.output[0] for p in chain))
        first, last = chain[-1], chain[0]
        ed.rewire_input(n, 0, padded)
        ed.rewire_output(n, 0, cols)
        ed.rewire_input(first, const_operand(ed, first)[0], cols)
        ed.rewire_output(last, 0, out)
        # The constants become 1-D: FINN's MoveScalarAddPastMatMul turns a (1, 1, 1, 1) offset into a (1, 1, 1, C)
        # one, which AbsorbAddIntoMultiThreshold reads as NCHW and leaves in front of the thresholds.
        for p, (_, c) in zip(chain[::-1], ops):
            ed.rewire_input(p, 1 - const_operand(ed, p)[0], ed.new_const(np.float32([c])))
        n_, h, w, c = ed.get_tensor_shape(tensor)
        im2col = getCustomOp(n)
        im2col.set_nodeattr("pad_amount", [0, 0, 0, 0])
        im2col.set_nodeattr("input_shape", str((n_, h + pads[0] + pads[2], w + pads[1] + pads[3], c)))
        ed.touch(n, pad, *chain)


def why_padding_blocks(model, im2col) -> str | None:
    """Why :class:`PadInputOnHost` left the padded Im2Col ``im2col`` behind the input's pre-processing; None if it does not apply."""
    found = padded_preprocessing(model, im2col)
    if found is None:
        return None
    _, ops, tensor = found
    dtype = model.get_tensor_datatype(tensor)
    steps = ", ".join(f"{op} {c:g}" for op, c in ops)
    if pad_input_value(ops, float(attr(im2col, "pad_value", 0)), dtype) is not None:
        return (
            f"{im2col.name} pads the pre-processed input ({steps}) with zeros; padding the raw input on the host instead "
            f"needs ONNX opset {PAD_AXES_OPSET} (the model has {_opset(model)}): export it again with opset {PAD_AXES_OPSET} or later"
        )
    return (
        f"{im2col.name} pads the pre-processed input ({steps}) with zeros, and no {dtype.name} input value becomes exactly 0 "
        "under that pre-processing, so the scale and offset cannot move past the padding; quantize the normalised input "
        "(a QuantIdentity before the first conv), or subtract a mean of whole pixel levels (k/255, e.g. 128/255)"
    )
