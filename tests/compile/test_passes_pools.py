"""Scales through pools, and average pools turned into FINN's integer sum pools."""

import numpy as np
import pytest
from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import InferConvInpGen
from finn.transformation.fpgadataflow.convert_to_hw.pool_from_reduce import (
    InferPoolFromReduce,
)
from onnx import helper
from onnx_graphs import (
    QONNX,
    RNG,
    apply,
    assert_unchanged,
    consts_of,
    floats,
    graph,
    ints,
    mul_then,
    ops,
    same_outputs,
)

from flow.compile.passes.graph import attr
from flow.compile.passes.pools import (
    ConvertAveragePoolToSumPool,
    ConvertGlobalAveragePoolToAccPool,
    ConvertWholeMapAveragePoolToGlobal,
    MoveChannelwiseLinearPastAveragePool,
    MoveChannelwiseMulPastMaxPool,
)


@pytest.mark.parametrize("pool", ["MaxPool", "MaxPoolNHWC"])
def test_move_channelwise_mul_past_max_pool_in_both_layouts(pool):
    c = 3
    if pool == "MaxPool":
        xs, cs, ys = (1, c, 4, 4), (1, c, 1, 1), (1, c, 2, 2)
        pn = helper.make_node("MaxPool", ["m"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    else:
        xs, cs, ys = (1, 4, 4, c), (1, 1, 1, c), (1, 2, 2, c)
        pn = helper.make_node("MaxPoolNHWC", ["m"], ["y"], domain=QONNX, kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    m = mul_then(pn, xs, ys, RNG.uniform(0.1, 1.0, size=cs).astype(np.float32), shapes={"m": xs})
    after = apply(m, MoveChannelwiseMulPastMaxPool())
    assert ops(after) == [pool, "Mul"]
    same_outputs(m, after, {"x": ints("INT4", xs)})


def test_move_channelwise_mul_past_max_pool_refuses_negative_scales():
    pn = helper.make_node("MaxPool", ["m"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    m = mul_then(pn, (1, 2, 2, 2), (1, 2, 1, 1), np.array([0.5, -0.5], np.float32).reshape(1, 2, 1, 1))
    assert_unchanged(m, MoveChannelwiseMulPastMaxPool())


@pytest.mark.parametrize("op, pool", [("Mul", "gap"), ("Add", "gap"), ("Mul", "avg2"), ("Mul", "avg3pad")])
def test_move_channelwise_linear_past_average_pool(op, pool):
    c, hw = 3, 4
    if pool == "gap":
        pn, ys = helper.make_node("GlobalAveragePool", ["m"], ["y"]), (1, c, 1, 1)
    elif pool == "avg2":
        pn, ys = helper.make_node("AveragePool", ["m"], ["y"], kernel_shape=[2, 2], strides=[2, 2]), (1, c, 2, 2)
    else:
        pn, ys = helper.make_node("AveragePool", ["m"], ["y"], kernel_shape=[3, 3], pads=[1] * 4), (1, c, hw, hw)
    cst = RNG.uniform(0.1, 1.0, size=(1, c, 1, 1)).astype(np.float32)
    m = graph([helper.make_node(op, ["x", "c"], ["m"]), pn], {"x": (1, c, hw, hw)}, {"y": ys}, {"c": cst}, {"x": "UINT4"})
    after = apply(m, MoveChannelwiseLinearPastAveragePool())
    assert ops(after)[-1] == op
    same_outputs(m, after, {"x": ints("UINT4", (1, c, hw, hw))}, exact=False)


def test_an_offset_does_not_move_past_a_padded_average_pool():
    pn = helper.make_node("AveragePool", ["m"], ["y"], kernel_shape=[3, 3], pads=[1] * 4)
    m = graph([helper.make_node("Add", ["x", "c"], ["m"]), pn], {"x": (1, 2, 4, 4)}, {"y": (1, 2, 4, 4)}, {"c": np.ones((1, 2, 1, 1), np.float32)})
    assert_unchanged(m, MoveChannelwiseLinearPastAveragePool())


def test_convert_whole_map_average_pool_to_global():
    m = graph([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[5, 3])], {"x": (1, 2, 5, 3)}, {"y": (1, 2, 1, 1)})
    after = apply(m, ConvertWholeMapAveragePoolToGlobal())
    assert ops(after) == ["GlobalAveragePool"]
    same_outputs(m, after, {"x": floats((1, 2, 5, 3))}, exact=False)


def test_a_partial_average_pool_is_not_global():
    m = graph([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], {"x": (1, 2, 4, 4)}, {"y": (1, 2, 2, 2)})
    assert_unchanged(m, ConvertWholeMapAveragePoolToGlobal())


def test_convert_global_average_pool_to_acc_pool_leaves_a_scalar_scale():
    c, h, w = 3, 4, 5
    m = graph([helper.make_node("GlobalAveragePool", ["x"], ["y"])], {"x": (1, c, h, w)}, {"y": (1, c, 1, 1)}, dtypes={"x": "UINT4"})
    after = apply(m, ConvertGlobalAveragePoolToAccPool())
    assert "GlobalAccPool" in ops(after) and "GlobalAveragePool" not in ops(after)
    np.testing.assert_allclose(consts_of(after, "Mul")[0], 1.0 / (h * w))
    same_outputs(m, after, {"x": ints("UINT4", (1, c, h, w))}, exact=False)


def test_convert_global_average_pool_to_acc_pool_waits_for_an_integer_input():
    m = graph([helper.make_node("GlobalAveragePool", ["x"], ["y"])], {"x": (1, 2, 3, 3)}, {"y": (1, 2, 1, 1)})
    assert_unchanged(m, ConvertGlobalAveragePoolToAccPool())


@pytest.mark.parametrize("k, stride, pad", [(2, 2, 0), (3, 1, 1), (3, 2, 0), (2, 1, 0)])
def test_convert_average_pool_to_sum_pool_which_finn_maps(k, stride, pad):
    c, hw = 3, 6
    oh = (hw + 2 * pad - k) // stride + 1
    pn = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, count_include_pad=1)
    m = graph([pn], {"x": (1, c, hw, hw)}, {"y": (1, c, oh, oh)}, dtypes={"x": "UINT4"})
    feeds = {"x": ints("UINT4", (1, c, hw, hw))}
    after = apply(m, ConvertAveragePoolToSumPool())
    assert "ReduceSum" in ops(after) and "AveragePool" not in ops(after)
    same_outputs(m, after, feeds, exact=False)
    hw_model = after.transform(InferPoolFromReduce()).transform(InferConvInpGen())
    pools = hw_model.get_nodes_by_op_type("Pool")
    assert len(pools) == 1 and attr(pools[0], "Function") in (b"AccPool", "AccPool")
    same_outputs(m, hw_model, feeds, exact=False)


@pytest.mark.parametrize("kw", [{"pads": [1] * 4, "count_include_pad": 0}, {"ceil_mode": 1, "strides": [2, 2]}, {"dilations": [2, 2]}])
def test_convert_average_pool_to_sum_pool_refuses_unequal_windows(kw):
    pn = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], **kw)
    m = graph([pn], {"x": (1, 2, 6, 6)}, {"y": (1, 2, 6, 6)}, dtypes={"x": "UINT4"})
    assert_unchanged(m, ConvertAveragePoolToSumPool())


def test_convert_average_pool_to_sum_pool_waits_for_an_integer_input():
    m = graph([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], {"x": (1, 2, 4, 4)}, {"y": (1, 2, 2, 2)})
    assert_unchanged(m, ConvertAveragePoolToSumPool())
