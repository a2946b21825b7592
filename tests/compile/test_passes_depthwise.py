"""Per-channel scales through lowered depthwise convs, and convs FINN cannot lower refused."""

import numpy as np
import pytest
from onnx import helper
from onnx_graphs import (
    QONNX,
    RNG,
    apply,
    assert_unchanged,
    consts_of,
    graph,
    ints,
    mul_then,
    ops,
    same_outputs,
    thresholds,
)
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

from flow.compile.passes import explain_unmapped, prepare_qonnx, streamline_structures
from flow.compile.passes.depthwise import (
    MoveChannelwiseMulPastIm2Col,
    MoveMulPastDepthwiseMatMul,
)
from flow.core.errors import StructureError


def im2col(k, stride, pad, hw, c, pad_value=0):
    return helper.make_node(
        "Im2Col", ["m"], ["y"], domain=QONNX, stride=[stride, stride], kernel_size=[k, k], pad_amount=[pad] * 4,
        pad_value=pad_value, input_shape=f"(1,{hw},{hw},{c})",
    )


@pytest.mark.parametrize("k, stride, pad", [(1, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 2), (2, 2, 0)])
def test_move_channelwise_mul_past_im2col_tiles_the_scale_over_the_window(k, stride, pad):
    hw, c = 6, 3
    oh = (hw + 2 * pad - k) // stride + 1
    scale = RNG.uniform(0.1, 1.0, size=(1, 1, 1, c)).astype(np.float32)
    m = mul_then(im2col(k, stride, pad, hw, c), (1, hw, hw, c), (1, oh, oh, k * k * c), scale, "UINT4")
    after = apply(m, MoveChannelwiseMulPastIm2Col())
    assert ops(after) == ["Im2Col", "Mul"]
    np.testing.assert_array_equal(consts_of(after, "Mul")[0].reshape(-1), np.tile(scale.reshape(-1), k * k))
    same_outputs(m, after, {"x": ints("UINT4", (1, hw, hw, c))})


@pytest.mark.parametrize("case", ["padding_with_a_nonzero_value", "scale_varies_over_width"])
def test_move_channelwise_mul_past_im2col_refuses_inexact_cases(case):
    hw, c = 4, 2
    scale = RNG.uniform(0.1, 1.0, size=(1, 1, hw, c) if case == "scale_varies_over_width" else (1, 1, 1, c))
    node = im2col(3, 1, 1, hw, c, pad_value=1 if case == "padding_with_a_nonzero_value" else 0)
    m = mul_then(node, (1, hw, hw, c), (1, hw, hw, 9 * c), scale.astype(np.float32), "UINT4")
    assert_unchanged(m, MoveChannelwiseMulPastIm2Col())


def depthwise_matrix(c, k):
    w, W = ints("INT4", (c, k * k)), np.zeros((k * k * c, c), dtype=np.float32)
    for ch in range(c):
        W[np.arange(k * k) * c + ch, ch] = w[ch]
    return W


def mul_matmul(W, v, k, c):
    vt = np.tile(v, k * k).reshape(1, 1, 1, -1).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "v"], ["m"]), helper.make_node("MatMul", ["m", "W"], ["y"])]
    return graph(nodes, {"x": (1, 2, 2, k * k * c)}, {"y": (1, 2, 2, c)}, {"v": vt, "W": W}, {"x": "UINT4", "W": "INT4"})


@pytest.mark.parametrize("kind", ["depthwise", "grouped", "one_scale_as_a_vector"])
def test_move_mul_past_depthwise_matmul_gives_a_per_output_scale(kind):
    c, k = 4, 3
    if kind == "depthwise":
        W, v = depthwise_matrix(c, k), RNG.uniform(0.1, 1.0, size=c)
    elif kind == "grouped":  # 2 groups of 2 channels, the scale constant within a group
        W = ints("INT4", (k * k * c, c))
        W[(np.arange(k * k * c) % c)[:, None] // 2 != np.arange(c)[None, :] // 2] = 0
        v = np.repeat(RNG.uniform(0.1, 1.0, size=2), 2)
    else:  # dense weights, every channel at one scale given as a vector
        W, v = ints("INT4", (k * k * c, c)), np.full(c, 0.37)
    m = mul_matmul(W, v, k, c)
    after = apply(m, MoveMulPastDepthwiseMatMul())
    assert ops(after) == ["MatMul", "Mul"]
    assert after.get_tensor_datatype(after.graph.node[0].output[0]).is_integer()
    same_outputs(m, after, {"x": ints("UINT4", (1, 2, 2, k * k * c))}, exact=False)


def test_move_mul_past_depthwise_matmul_refuses_dense_weights():
    c, k = 4, 3
    W = ints("INT4", (k * k * c, c))
    W[0, :] = 1  # every output reads channel 0 and other channels at other scales
    assert_unchanged(mul_matmul(W, RNG.uniform(0.1, 1.0, size=c), k, c), MoveMulPastDepthwiseMatMul())


@pytest.mark.parametrize("k, stride, channels", [(3, 1, 4), (3, 2, 6), (5, 2, 3), (1, 1, 5)])
def test_streamline_structures_moves_a_per_channel_scale_through_a_lowered_depthwise_conv(k, stride, channels):
    """MultiThreshold -> per-channel Mul -> depthwise Conv -> MultiThreshold, lowered as FINN's
    step_streamline lowers it, ends all-integer with the scales in the thresholds."""
    c, hw, pad = channels, 6, k // 2
    oh = (hw + 2 * pad - k) // stride + 1
    nodes = [
        helper.make_node("MultiThreshold", ["x", "t0"], ["a"], domain=QONNX, out_dtype="UINT4"),
        helper.make_node("Mul", ["a", "s"], ["as"]),
        helper.make_node("Conv", ["as", "w"], ["cv"], group=c, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4),
        helper.make_node("MultiThreshold", ["cv", "t1"], ["y"], domain=QONNX, out_dtype="UINT4"),
    ]
    inits = {
        "t0": thresholds(c, 15, -20, 20), "s": RNG.uniform(0.05, 0.5, size=(1, c, 1, 1)), "w": ints("INT4", (c, 1, k, k)),
        "t1": thresholds(c, 15, -8, 8),
    }
    m = graph(nodes, {"x": (1, c, hw, hw)}, {"y": (1, c, oh, oh)}, inits, {"x": "INT8", "w": "INT4"})
    out = streamline_structures(m.transform(LowerConvsToMatMul()))
    assert "Mul" not in ops(out), ops(out)
    assert out.get_tensor_datatype(out.get_nodes_by_op_type("MatMul")[0].input[0]).is_integer()
    assert explain_unmapped(out) == []
    same_outputs(m, out, {"x": ints("INT8", (1, c, hw, hw))})


@pytest.mark.parametrize("group, cout", [(4, 8), (2, 4)])
def test_prepare_qonnx_refuses_a_conv_finn_cannot_lower(group, cout):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], group=group, kernel_shape=[3, 3], pads=[1] * 4, name="conv")]
    m = graph(nodes, {"x": (1, 4, 5, 5)}, {"y": (1, cout, 5, 5)}, {"w": ints("INT4", (cout, 4 // group, 3, 3))})
    with pytest.raises(StructureError, match=rf"'conv' \(Conv\).*group={group}.*split it into a depthwise conv"):
        prepare_qonnx(m)


def test_prepare_qonnx_accepts_dense_and_depthwise_convs():
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["d"], group=4, kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Conv", ["d", "w1"], ["y"], kernel_shape=[1, 1]),
    ]
    m = graph(nodes, {"x": (1, 4, 5, 5)}, {"y": (1, 6, 5, 5)}, {"w0": ints("INT4", (4, 1, 3, 3)), "w1": ints("INT4", (6, 4, 1, 1))})
    assert ops(prepare_qonnx(m)) == ["Conv", "Conv"]
