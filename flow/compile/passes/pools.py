"""Scales through pools, and average pools turned into FINN's integer sum pools.

FINN moves only scalars past GlobalAveragePool, maps ``AveragePool`` only as Brevitas'
FLOOR-rounding ``TruncAvgPool2d``, and splits a GlobalAveragePool into GlobalAccPool +
Mul(1/N) inside ``convert_to_hw``, where that Mul is stranded between hardware layers.
"""

from __future__ import annotations

import numpy as np
from finn.transformation.fpgadataflow.convert_to_hw.global_acc_pool import (
    InferGlobalAccPoolLayer,
)
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_data_layouts import InferDataLayouts

from flow.compile.passes.graph import (
    MoveConstantPastUnaryOp,
    SweepTransformation,
    attr,
    channelwise_vector,
    is_integer,
    refresh,
)

AVERAGE_POOLS = ("GlobalAveragePool", "AveragePool")


def pads_of(node) -> list[int]:
    return list(attr(node, "pads", None) or [0, 0, 0, 0])


def averages_every_window_alike(node) -> bool:
    """True when each window of an AveragePool is divided by kh*kw (no ceil_mode, no dilation,
    no padding or padding counted), so the pool is a sum pool times one constant."""
    if attr(node, "ceil_mode", 0) or any(d != 1 for d in attr(node, "dilations", None) or [1, 1]):
        return False
    return not any(pads_of(node)) or bool(attr(node, "count_include_pad", 0))


class MoveChannelwiseMulPastMaxPool(MoveConstantPastUnaryOp):
    """Move a positive per-channel (or scalar) Mul past MaxPool (NCHW) or FINN's MaxPoolNHWC.

    max(c * x) = c * max(x) for c > 0. FINN's ``MoveMulPastMaxPool`` handles ONNX MaxPool
    only, but its conv lowering turns MaxPools into MaxPoolNHWC, which a scale split off a
    branch point meets afterwards.
    """

    linear_ops = ("Mul",)
    past = ("MaxPool", "MaxPoolNHWC")

    def moved_constant(self, model, node, nxt, c, xshape):
        if len(xshape) != 4 or (c <= 0).any():
            return None
        axis = 1 if nxt.op_type == "MaxPool" else 3
        vec = channelwise_vector(c, xshape, axis)
        return None if vec is None else vec.reshape([-1 if i == axis else 1 for i in range(4)])


class MoveChannelwiseLinearPastAveragePool(MoveConstantPastUnaryOp):
    """Move a per-channel (or scalar) Mul/Add before a GlobalAveragePool/AveragePool (NCHW) after it.

    The spatial mean commutes with a per-channel scale; with a per-channel offset only when
    no padding is averaged in (padded zeros carry no offset).
    """

    past = AVERAGE_POOLS

    def moved_constant(self, model, node, nxt, c, xshape):
        if len(xshape) != 4 or (node.op_type == "Add" and nxt.op_type == "AveragePool" and any(pads_of(nxt))):
            return None
        vec = channelwise_vector(c, xshape, 1)
        return None if vec is None else vec.reshape(1, -1, 1, 1)


class ConvertWholeMapAveragePoolToGlobal(SweepTransformation):
    """An AveragePool whose window covers the whole unpadded map is a GlobalAveragePool."""

    def rewrite(self, ed, n):
        if n.op_type != "AveragePool":
            return
        shape = ed.get_tensor_shape(n.input[0])
        if shape is None or len(shape) != 4 or list(attr(n, "kernel_shape", [])) != list(shape[2:]):
            return
        if any(pads_of(n)) or attr(n, "ceil_mode", 0):
            return
        ed.replace_node(n, [helper.make_node("GlobalAveragePool", [n.input[0]], [n.output[0]], name=n.name)])


class ConvertGlobalAveragePoolToAccPool(Transformation):
    """GlobalAveragePool on integers -> FINN's GlobalAccPool (the sum) and a scalar Mul(1/N).

    This is FINN's own ``InferGlobalAccPoolLayer``, run while streamlining instead of in
    ``convert_to_hw``, so the 1/N streams on (past Flatten and MatMul) into the next
    thresholds or the output scale.
    """

    def apply(self, model):
        if not any(n.op_type == "GlobalAveragePool" and is_integer(model, n.input[0]) for n in model.graph.node):
            return model, False
        model = model.transform(InferDataLayouts(), make_deepcopy=False).transform(InferGlobalAccPoolLayer(), make_deepcopy=False)
        return refresh(model), True


class ConvertAveragePoolToSumPool(SweepTransformation):
    """AveragePool(k, stride, pads) on integers -> FINN's lowered sum pool, then Mul(1/(kh*kw)).

    The chain Transpose, Im2Col, Reshape, ReduceSum, Transpose is what FINN's
    ``InferPoolFromReduce`` maps to a sliding window plus ``Pool(Function=AccPool)``. Exact
    when every window is divided by kh*kw (:func:`averages_every_window_alike`); other
    pools are left for :func:`flow.compile.passes.mappable.check_mappable` to report.
    """

    def rewrite(self, ed, n):
        if n.op_type != "AveragePool" or not averages_every_window_alike(n):
            return
        x, y = n.input[0], n.output[0]
        xs, ys = ed.get_tensor_shape(x), ed.get_tensor_shape(y)
        idt = ed.get_tensor_datatype(x)
        if not idt.is_integer() or xs is None or ys is None or len(xs) != 4:
            return
        kh, kw = attr(n, "kernel_shape")
        sh, sw = attr(n, "strides", None) or [1, 1]
        (_, c, h, w), (_, _, oh, ow) = xs, ys
        t0, i2c, rs, red, t1 = (ed.new_name() for _ in range(5))
        nodes = [
            helper.make_node("Transpose", [x], [t0], perm=[0, 2, 3, 1]),
            helper.make_node(
                "Im2Col", [t0], [i2c], domain="qonnx.custom_op.general", stride=[sh, sw], kernel_size=[kh, kw],
                pad_amount=pads_of(n), pad_value=0, depthwise=1, input_shape=f"(1,{h},{w},{c})",
            ),
            helper.make_node("Reshape", [i2c, ed.new_int_const([1, oh, ow, kh * kw, c])], [rs]),
            helper.make_node("ReduceSum", [rs, ed.new_int_const([-2])], [red], keepdims=0),
            helper.make_node("Transpose", [red], [t1], perm=[0, 3, 1, 2]),
            helper.make_node("Mul", [t1, ed.new_const(np.float32(1.0 / (kh * kw)))], [y]),
        ]
        ed.replace_node(n, nodes)
        for t in (t0, i2c, rs):
            ed.set_tensor_datatype(t, idt)
        lo, hi = kh * kw * idt.min(), kh * kw * idt.max()
        sdt = DataType.get_smallest_possible(lo if abs(lo) > hi else hi)
        ed.set_tensor_datatype(red, sdt)
        ed.set_tensor_datatype(t1, sdt)
        ed.set_tensor_datatype(y, DataType["FLOAT32"])
