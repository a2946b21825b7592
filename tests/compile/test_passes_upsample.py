"""Upsampling layers: nearest-neighbour Resize (UpsampleNearestNeighbour), transposed convs (FINN's pixel-padding
deconv) and a final pixel shuffle (on the host), each pass checked against the graph's own outputs, and
ESPCN-style super-resolution networks (brevitas_examples.super_resolution's layers) built and verified bit-exact
with image outputs; what cannot map is refused naming the node."""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas_examples.super_resolution.models.common import (
    CommonIntWeightPerChannelQuant,
    CommonUintActQuant,
    ConstUint8ActQuant,
    QuantNearestNeighborConvolution,
)
from calibrate import calibrated
from onnx import helper
from onnx_graphs import RNG, apply, assert_unchanged, floats, graph, ints, ops, outputs, same_outputs, thresholds
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from flow.builder import build
from flow.compile.passes.deconv import MoveScalarMulPastConvTranspose
from flow.compile.passes.pixelshuffle import MoveDepthToSpacePastElementwise, MoveLinearPastDepthToSpace, out_channel_of
from flow.compile.passes.upsample import MoveLinearPastNearestResize, repeat_factors, upsample_problem
from flow.compile.steps import dataflow_parent
from flow.core.config import build_config
from flow.core.errors import StructureError
from flow.core.vocab import is_hw_node
from flow.nn.reference import torch_reference
from flow.nn.export import export_qonnx


def resize(scales, **attrs):
    return helper.make_node("Resize", ["x", "", "sc"], ["y"], **attrs), {"sc": np.asarray(scales, np.float32)}


@pytest.mark.parametrize(
    "attrs",
    [
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},  # nn.Upsample
        {"mode": "nearest"},  # ONNX defaults: half_pixel, round_prefer_floor
        {"mode": "nearest", "coordinate_transformation_mode": "pytorch_half_pixel", "nearest_mode": "round_prefer_ceil"},
    ],
    ids=["asymmetric_floor", "onnx_defaults", "pytorch_half_pixel"],
)
@pytest.mark.parametrize("scales, yshape", [([1, 1, 2, 2], (1, 2, 6, 8)), ([1, 1, 3, 1], (1, 2, 9, 4))], ids=["2x2", "3x1"])
def test_a_resize_that_repeats_pixels_is_recognised_whatever_its_attributes_spell(attrs, scales, yshape):
    node, inits = resize(scales, **attrs)
    m = graph([node], {"x": (1, 2, 3, 4)}, {"y": yshape}, inits)
    factors, why = repeat_factors(m, m.graph.node[0])
    assert why is None and factors == tuple(s // i for s, i in zip(yshape, (1, 2, 3, 4)))


@pytest.mark.parametrize(
    "attrs, scales, yshape, words",
    [
        ({"mode": "linear"}, [1, 1, 2, 2], (1, 2, 6, 8), "interpolates"),
        ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "round_prefer_ceil"},
         [1, 1, 2, 2], (1, 2, 6, 8), "does not repeat each pixel"),
        ({"mode": "nearest"}, [1, 1, 1.5, 1.5], (1, 2, 4, 6), "integer factors"),
        ({"mode": "nearest", "coordinate_transformation_mode": "align_corners"}, [1, 1, 3, 3], (1, 2, 9, 12), "does not repeat"),
    ],
    ids=["bilinear", "asymmetric_round", "fractional", "align_corners"],
)
def test_a_resize_that_does_not_repeat_pixels_is_named_with_the_reason(attrs, scales, yshape, words):
    node, inits = resize(scales, **attrs)
    m = graph([node], {"x": (1, 2, 3, 4)}, {"y": yshape}, inits)
    assert words in upsample_problem(m, m.graph.node[0])


@pytest.mark.parametrize("cshape", [(), (1, 3, 1, 1)], ids=["scalar", "per_channel"])
@pytest.mark.parametrize("op", ["Mul", "Add"])
def test_a_scale_or_offset_moves_past_a_nearest_resize_exactly(op, cshape):
    node, inits = resize([1, 1, 2, 2], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    node.input[0] = "m"
    nodes = [helper.make_node(op, ["x", "c"], ["m"]), node]
    m = graph(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 3, 8, 8)}, {**inits, "c": RNG.uniform(0.5, 2.0, size=cshape)}, {"x": "UINT4"})
    after = apply(m, MoveLinearPastNearestResize())
    assert ops(after) == ["Resize", op]
    same_outputs(m, after, {"x": ints("UINT4", (1, 3, 4, 4))})


def test_a_pixel_varying_constant_stays_in_front_of_the_resize():
    node, inits = resize([1, 1, 2, 2], mode="nearest")
    node.input[0] = "m"
    nodes = [helper.make_node("Mul", ["x", "c"], ["m"]), node]
    m = graph(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 3, 8, 8)}, {**inits, "c": RNG.uniform(0.5, 2.0, size=(1, 1, 4, 4))})
    assert_unchanged(m, MoveLinearPastNearestResize())


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
def test_the_output_channel_of_each_input_channel_is_where_onnx_depth_to_space_puts_it(mode):
    x = np.arange(12, dtype=np.float32).reshape(1, 12, 1, 1)
    m = graph([helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode=mode)], {"x": (1, 12, 1, 1)}, {"y": (1, 3, 2, 2)})
    y = outputs(m, {"x": x})[0]
    dest = out_channel_of(12, 2, mode)
    for c in range(3):
        assert sorted(y[0, c].reshape(-1).tolist()) == sorted(np.flatnonzero(dest == c).tolist())


@pytest.mark.parametrize("mode", ["CRD", "DCR"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_an_output_quantizer_after_a_pixel_shuffle_moves_in_front_of_it(mode, per_channel):
    thr = thresholds(3 if per_channel else 1, 7, -20, 20)
    nodes = [
        helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=2, mode=mode),
        helper.make_node("MultiThreshold", ["d", "t"], ["q"], domain="qonnx.custom_op.general", out_dtype="UINT3"),
        helper.make_node("Mul", ["q", "s"], ["y"]),
    ]
    scale = RNG.uniform(0.5, 2, size=(1, 3, 1, 1)) if per_channel else np.float32(0.25)
    m = graph(nodes, {"x": (1, 12, 3, 3)}, {"y": (1, 3, 6, 6)}, {"t": thr, "s": scale}, {"x": "INT8"})
    after = apply(m, MoveDepthToSpacePastElementwise())
    assert ops(after) == ["MultiThreshold", "Mul", "DepthToSpace"]
    same_outputs(m, after, {"x": ints("INT8", (1, 12, 3, 3))})


def test_a_scale_the_same_over_each_group_of_a_pixel_shuffle_moves_past_it_and_another_stays():
    group = np.repeat(RNG.uniform(0.5, 2, size=3), 4).reshape(1, 12, 1, 1).astype(np.float32)  # CRD groups
    nodes = [helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("DepthToSpace", ["m"], ["y"], blocksize=2, mode="CRD")]
    m = graph(nodes, {"x": (1, 12, 2, 2)}, {"y": (1, 3, 4, 4)}, {"c": group})
    after = apply(m, MoveLinearPastDepthToSpace())
    assert ops(after) == ["DepthToSpace", "Mul"]
    same_outputs(m, after, {"x": floats((1, 12, 2, 2))})
    mixed = graph(nodes, {"x": (1, 12, 2, 2)}, {"y": (1, 3, 4, 4)}, {"c": RNG.uniform(0.5, 2, size=(1, 12, 1, 1))})
    assert_unchanged(mixed, MoveLinearPastDepthToSpace())


def test_a_scalar_scale_moves_past_a_transposed_conv_and_a_per_channel_one_stays():
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("ConvTranspose", ["m", "W"], ["y"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    inits = {"W": ints("INT4", (3, 2, 4, 4)), "c": np.float32(0.37)}
    m = graph(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 2, 8, 8)}, inits, {"x": "UINT4", "W": "INT4"})
    after = apply(m, MoveScalarMulPastConvTranspose())
    assert ops(after) == ["ConvTranspose", "Mul"]
    same_outputs(m, after, {"x": ints("UINT4", (1, 3, 4, 4))}, exact=False)
    per_channel = graph(nodes, {"x": (1, 3, 4, 4)}, {"y": (1, 2, 8, 8)}, {**inits, "c": RNG.uniform(size=(1, 3, 1, 1))})
    assert_unchanged(per_channel, MoveScalarMulPastConvTranspose())


# --- super-resolution networks ----------------------------------------------------------------------------

HW = (6, 6)


class Pixels(nn.Module):
    def forward(self, x):
        return x / 255.0


def trunk(act_bits=4):
    """ESPCN's feature extractor, narrower: 8-bit input quantizer, two conv-BN-ReLU layers."""
    return [
        Pixels(),
        qnn.QuantConv2d(3, 8, 3, padding=1, bias=True, input_quant=CommonUintActQuant, input_bit_width=8,
                        weight_quant=CommonIntWeightPerChannelQuant, weight_bit_width=8),
        nn.BatchNorm2d(8), nn.ReLU(),
        qnn.QuantConv2d(8, 8, 3, padding=1, bias=True, input_quant=CommonUintActQuant, input_bit_width=act_bits,
                        weight_quant=CommonIntWeightPerChannelQuant, weight_bit_width=4),
        nn.BatchNorm2d(8), nn.ReLU(),
    ]


def out_quant():
    """Brevitas' ESPCN output: an unsigned 8-bit image with a constant scale."""
    return qnn.QuantReLU(act_quant=ConstUint8ActQuant, bit_width=8)


def espcn_resize(r=2):
    return nn.Sequential(*trunk(), QuantNearestNeighborConvolution(8, 3, upscale_factor=r, act_bit_width=4, weight_bit_width=8), out_quant())


def espcn_subpixel(r=2):
    conv = qnn.QuantConv2d(8, 3 * r * r, 3, padding=1, bias=False, input_quant=CommonUintActQuant, input_bit_width=4,
                           weight_quant=CommonIntWeightPerChannelQuant, weight_bit_width=8, weight_scaling_per_output_channel=False)
    return nn.Sequential(*trunk(), conv, nn.PixelShuffle(r), out_quant())


def espcn_deconv(r=2, k=None, padding=None, output_padding=0):
    k = 2 * r if k is None else k
    return nn.Sequential(
        *trunk(), qnn.QuantIdentity(act_quant=CommonUintActQuant, bit_width=4, return_quant_tensor=True),
        qnn.QuantConvTranspose2d(8, 3, k, stride=r, padding=r // 2 if padding is None else padding, output_padding=output_padding,
                                 bias=False, weight_quant=CommonIntWeightPerChannelQuant, weight_bit_width=8),
        out_quant(),
    )


def subpixel_between_layers(r=2):
    """A pixel shuffle followed by another conv: no hardware layer for it between layers."""
    return nn.Sequential(
        *trunk(), qnn.QuantConv2d(8, 4 * r * r, 1, bias=False, input_quant=CommonUintActQuant, input_bit_width=4, weight_bit_width=4),
        nn.PixelShuffle(r), qnn.QuantReLU(bit_width=4),
        qnn.QuantConv2d(4, 3, 3, padding=1, bias=False, weight_bit_width=4), out_quant(),
    )


def bilinear(r=2):
    return nn.Sequential(*trunk(), qnn.QuantIdentity(act_quant=CommonUintActQuant, bit_width=4), nn.Upsample(scale_factor=r, mode="bilinear"),
                         qnn.QuantConv2d(8, 3, 3, padding=1, bias=False, input_quant=CommonUintActQuant, input_bit_width=4, weight_bit_width=4),
                         out_quant())


NETS = {"resize": espcn_resize, "subpixel": espcn_subpixel, "deconv": espcn_deconv}


def pixels(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, *HW)).astype(np.float32)


def prepared(fn):
    """The network with activation scales and BN statistics from data, and an output spread over many of
    its 256 levels (untrained super-resolution layers give nearly black images)."""
    torch.manual_seed(0)
    net = fn()
    last = [m for m in net.modules() if isinstance(m, (qnn.QuantConv2d, qnn.QuantConvTranspose2d))][-1]
    with torch.no_grad():
        last.weight.mul_(6.0)
    return calibrated(net, (pixels(16, seed) for seed in range(3)))


@pytest.fixture(scope="module")
def sr(tmp_path_factory):
    """``get(fn, folding)``: the network's PyTorch reference and its build (each made once per module)."""
    root, cache = tmp_path_factory.mktemp("sr"), {}

    def get(fn, folding="fps"):
        key = (fn.__name__, folding)
        if key not in cache:
            net = prepared(fn)
            path = root / f"{fn.__name__}_{folding}.onnx"
            export_qonnx(net, path, (3, *HW), "UINT8")
            x = pixels(8, 42)
            ref = torch_reference(net, x)
            opts = {"auto": True} if folding == "auto" else {"target_fps": 20_000}
            cfg = build_config(target="zcu104", verify_samples=0, **opts)
            cache[key] = ref, build(path, cfg, root / "_".join(key), verify_inputs=x, reference=ref)
        return cache[key]

    return get


@pytest.mark.parametrize("name, layer", [("resize", "UpsampleNearestNeighbour"), ("deconv", "FMPadding_Pixel"), ("subpixel", None)])
def test_super_resolution_networks_build_and_verify_bit_exact_on_their_images(sr, name, layer):
    ref, result = sr(NETS[name])
    assert len(np.unique(ref.logits)) > 20  # the images are not flat
    v = result.report.verification
    assert v.passed, [s for s in v.stages if not s.passed]
    assert [s.name for s in v.stages] == ["qonnx", "finn_onnx", "streamlined", "streamlined_integer", "hw", "specialized"]
    assert all(s.bit_exact for s in v.stages[4:])
    assert all(s.label_match is None and s.ties is None for s in v.stages)  # an image has no labels
    design = ModelWrapper(str(result.design))
    assert all(is_hw_node(n) for n in design.graph.node)
    if layer:
        assert any(n.op_type.startswith(layer) for n in design.graph.node)
    host = [n.op_type for n in dataflow_parent(design).graph.node if n.op_type != "StreamingDataflowPartition"]
    assert "Transpose" in host and set(host) <= {"Transpose", "Mul", "DepthToSpace"}, host  # the layout and the shuffle on the host
    assert ("DepthToSpace" in host) == (name == "subpixel")


def test_auto_folding_parallelises_the_upsampling_layer(sr):
    _, fps = sr(espcn_resize)
    _, auto = sr(espcn_resize, "auto")
    assert auto.report.verification.passed
    up = {lay.op_type: lay for lay in auto.report.layers}["UpsampleNearestNeighbour_hls"]
    assert up.simd > 1 and auto.report.max_cycles < fps.report.max_cycles


@pytest.mark.parametrize(
    "fn, op, words",
    [
        (subpixel_between_layers, "(DepthToSpace)", ["between layers", "QuantNearestNeighborConvolution"]),
        (bilinear, "(Resize)", ["interpolates", "nearest"]),
        (lambda: espcn_deconv(k=3, padding=1, output_padding=1), "(ConvTranspose)", ["output_padding", "FINN"]),
    ],
    ids=["pixel_shuffle_between_layers", "bilinear_resize", "deconv_with_output_padding"],
)
def test_an_upsampling_layer_that_cannot_map_is_refused_naming_it(fn, op, words, tmp_path):
    net = prepared(fn)
    path = tmp_path / "m.onnx"
    export_qonnx(net, path, (3, *HW), "UINT8")
    with pytest.raises(StructureError) as e:
        build(path, build_config(target="zcu104", verify_samples=0), tmp_path / "out", verify_inputs=pixels(2, 0))
    msg = str(e.value)
    assert op in msg and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_large_resize_is_checked_on_one_channel_plane():
    node, inits = resize([1, 1, 2, 2], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    m = graph([node], {"x": (1, 256, 512, 512)}, {"y": (1, 256, 1024, 1024)}, inits)  # 67M input values
    assert upsample_problem(m, m.graph.node[0]) is None


def test_a_resize_that_repeats_channels_is_refused():
    node, inits = resize([1, 2, 1, 1], mode="nearest")
    m = graph([node], {"x": (1, 3, 4, 4)}, {"y": (1, 6, 4, 4)}, inits)
    assert "C axis" in upsample_problem(m, m.graph.node[0])
