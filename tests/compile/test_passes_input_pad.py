"""A zero-padded first conv behind the input's scalar pre-processing pads the raw integer input on the host."""

import numpy as np
import pytest
from onnx import helper
from onnx_graphs import QONNX, apply, assert_unchanged, graph, ints, ops, same_outputs

from flow.compile.passes import streamline_structures
from flow.compile.passes.input_pad import PadInputOnHost, why_padding_blocks

HW, C, K, OUT = 5, 2, 3, 4


def preprocessed_conv(scale, offset, dtype="UINT8", opset=20, fork=False, thresholds=False, const_shape=()):
    """``x (NHWC) -> Mul(scale) -> Add(offset) -> Im2Col(3x3, pad 1) -> MatMul``, optionally with the Mul also read
    elsewhere, or with a MultiThreshold after the MatMul (the constants of shape ``const_shape``)."""
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["m"]),
        helper.make_node("Add", ["m", "c"], ["a"]),
        helper.make_node("Im2Col", ["a"], ["cols"], domain=QONNX, stride=[1, 1], kernel_size=[K, K], pad_amount=[1, 1, 1, 1],
                         input_shape=f"(1, {HW}, {HW}, {C})"),
        helper.make_node("MatMul", ["cols", "w"], ["mm" if thresholds else "y"]),
    ]
    outputs = {"y": (1, HW, HW, OUT)}
    if thresholds:
        nodes.append(helper.make_node("MultiThreshold", ["mm", "t"], ["y"], domain=QONNX, out_dtype="UINT4", data_layout="NHWC"))
    if fork:
        nodes.append(helper.make_node("Mul", ["m", "s"], ["y2"]))
        outputs["y2"] = (1, HW, HW, C)
    inits = {"s": np.full(const_shape, scale, np.float32), "c": np.full(const_shape, offset, np.float32), "w": ints("INT4", (K * K * C, OUT))}
    if thresholds:
        inits["t"] = np.sort(np.random.default_rng(1).uniform(-40, 40, size=(OUT, 15)), axis=1).astype(np.float32)
    return graph(nodes, {"x": (1, HW, HW, C)}, outputs, inits, {"x": dtype}, opset=opset)


def test_the_raw_input_is_padded_with_the_value_the_preprocessing_maps_to_zero():
    m = preprocessed_conv(1 / 128, -1.0)
    after = apply(m, PadInputOnHost())
    assert ops(after) == ["Pad", "Im2Col", "Mul", "Add", "MatMul"]
    pad = after.graph.node[0]
    assert float(after.get_initializer(pad.input[2])) == 128.0
    assert list(after.get_initializer(pad.input[1])) == [1, 1, 1, 1] and list(after.get_initializer(pad.input[3])) == [1, 2]
    col = after.graph.node[1]
    assert [a.ints for a in col.attribute if a.name == "pad_amount"][0] == [0, 0, 0, 0]
    assert after.get_tensor_shape(col.input[0]) == [1, HW + 2, HW + 2, C]
    assert after.get_tensor_datatype(col.input[0]).name == "UINT8"
    same_outputs(m, after, {"x": ints("UINT8", (1, HW, HW, C))})
    # the border pixels themselves: a whole image of 128s computes on zeros only
    same_outputs(m, after, {"x": np.full((1, HW, HW, C), 128, np.float32)})


@pytest.mark.parametrize("const_shape", [(), (1,), (1, 1, 1, 1)])
def test_streamlining_moves_the_scale_and_offset_into_the_thresholds(const_shape):
    """Whatever the rank of the scalar constants (Brevitas exports them 4-D), nothing float is left in front of the MatMul."""
    m = preprocessed_conv(1 / 128, -1.0, thresholds=True, const_shape=const_shape)
    after = streamline_structures(m)
    assert ops(after) == ["Pad", "Im2Col", "MatMul", "MultiThreshold"]
    x = ints("UINT8", (8, HW, HW, C))
    x[0] = 128
    for sample in x:
        same_outputs(m, after, {"x": sample[None]})


def test_a_signed_input_pads_with_a_negative_value():
    m = preprocessed_conv(0.25, 2.0, dtype="INT8")  # x/4 + 2 is 0 at x = -8
    after = apply(m, PadInputOnHost())
    assert float(after.get_initializer(after.graph.node[0].input[2])) == -8.0
    same_outputs(m, after, {"x": ints("INT8", (1, HW, HW, C))})


@pytest.mark.parametrize(
    "case, kwargs, why",
    [
        ("no_integer_maps_to_zero", {"scale": 2 / 255, "offset": -1.0}, "no UINT8 input value becomes exactly 0"),
        ("the_value_is_outside_the_input_type", {"scale": 1 / 128, "offset": 1.0}, "no UINT8 input value becomes exactly 0"),
        ("opset_without_pad_axes", {"scale": 1 / 128, "offset": -1.0, "opset": 17}, "export it again with opset 18"),
        ("the_preprocessing_branches", {"scale": 1 / 128, "offset": -1.0, "fork": True}, None),
        ("a_float_input", {"scale": 1 / 128, "offset": -1.0, "dtype": "FLOAT32"}, None),
    ],
)
def test_the_rewrite_is_refused_where_it_would_not_be_exact(case, kwargs, why):
    m = preprocessed_conv(**kwargs)
    assert_unchanged(m, PadInputOnHost())
    reason = why_padding_blocks(m, m.get_nodes_by_op_type("Im2Col")[0])
    assert (reason is None) if why is None else (why in reason), reason


def test_a_padded_conv_on_the_raw_input_is_left_alone():
    nodes = [
        helper.make_node("Im2Col", ["x"], ["cols"], domain=QONNX, stride=[1, 1], kernel_size=[K, K], pad_amount=[1, 1, 1, 1],
                         input_shape=f"(1, {HW}, {HW}, {C})"),
        helper.make_node("MatMul", ["cols", "w"], ["y"]),
    ]
    m = graph(nodes, {"x": (1, HW, HW, C)}, {"y": (1, HW, HW, OUT)}, {"w": ints("INT4", (K * K * C, OUT))}, {"x": "UINT8"}, opset=20)
    assert why_padding_blocks(m, m.graph.node[0]) is None
    assert_unchanged(m, PadInputOnHost())
