"""1D convs, pools and resizes lifted to 2D with a unit width (Lift1DTo2D), checked op by op against the
3D graph's outputs and against qonnx's own Change3DTo4DTensors, and whole 1D networks (a VGG10-RadioML
block stack, depthwise, average-pool, residual and global-pool variants) built and verified bit-exact."""

from __future__ import annotations

import warnings

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8ActPerTensorFloat
from calibrate import calibrated as calibrate
from onnx import helper
from onnx_graphs import QONNX, RNG, apply, floats, graph, ops, outputs
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.change_3d_tensors_to_4d import Change3DTo4DTensors
from torch import nn

from flow.builder import build
from flow.compile.passes.conv1d import Lift1DTo2D
from flow.core.config import build_config
from flow.nn.reference import torch_reference
from flow.nn.export import export_qonnx


def shape_of(m: ModelWrapper, t: str) -> list[int]:
    return list(m.get_tensor_shape(t))


def lifted_outputs_equal(m: ModelWrapper, after: ModelWrapper, feeds: dict) -> None:
    """``after`` takes each input reshaped to its lifted shape and gives the same values."""
    lifted = {k: v.reshape(shape_of(after, k)) for k, v in feeds.items()}
    for a, b in zip(outputs(m, feeds), outputs(after, lifted)):
        np.testing.assert_array_equal(a.reshape(-1), b.reshape(-1))


def quant(x, y, scale, bits=4.0, signed=1):
    return helper.make_node("Quant", [x, scale, "zp", "bw"], [y], domain=QONNX, narrow=0, rounding_mode="ROUND", signed=signed)


QUANT_INITS = {"zp": np.array(0.0, np.float32), "bw": np.array(4.0, np.float32)}


def conv1d_block(k=3, stride=1, pad=1, dilation=1, group=1, cin=2, cout=4, length=16, per_channel=True):
    """Quant(x) -> Conv1d(Quant(W)) -> Mul(per-channel) -> Relu -> Quant -> MaxPool1d(2)."""
    out_len = (length + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    nodes = [
        quant("x", "xq", "sx"),
        quant("W", "Wq", "sw"),
        helper.make_node("Conv", ["xq", "Wq"], ["c"], kernel_shape=[k], strides=[stride], pads=[pad, pad],
                         dilations=[dilation], group=group),
        helper.make_node("Mul", ["c", "bn"], ["m"]),
        helper.make_node("Relu", ["m"], ["r"]),
        quant("r", "rq", "sa", signed=0),
        helper.make_node("MaxPool", ["rq"], ["y"], kernel_shape=[2], strides=[2]),
    ]
    inits = {
        **QUANT_INITS, "sx": np.array(0.25, np.float32), "W": RNG.normal(size=(cout, cin // group, k)),
        "sw": RNG.uniform(0.1, 0.3, size=(cout, 1, 1)) if per_channel else np.array(0.2, np.float32),
        "bn": RNG.uniform(0.5, 2.0, size=(1, cout, 1)), "sa": np.array(0.3, np.float32),
    }
    return graph(nodes, {"x": (1, cin, length)}, {"y": (1, cout, out_len // 2)}, inits)


@pytest.mark.parametrize(
    "kw", [{}, {"stride": 2}, {"dilation": 2, "pad": 2}, {"k": 5, "pad": 2}, {"group": 4, "cin": 4}, {"per_channel": False}],
    ids=["k3", "stride2", "dilation2", "k5", "depthwise", "per_tensor_weights"],
)
def test_a_1d_conv_block_becomes_2d_with_a_unit_width_and_computes_the_same(kw):
    m = conv1d_block(**kw)
    after = apply(m, Lift1DTo2D())
    conv = after.get_nodes_by_op_type("Conv")[0]
    attrs = {a.name: list(helper.get_attribute_value(a)) for a in conv.attribute if a.name != "group"}
    assert attrs["kernel_shape"][1] == 1 and attrs["strides"][1] == 1 and attrs["dilations"][1] == 1
    assert attrs["pads"][1] == attrs["pads"][3] == 0
    assert shape_of(after, "x")[-1] == 1 and len(shape_of(after, "y")) == 4
    assert ops(after) == ops(m)  # lifted in place: no Reshape needed anywhere
    for _ in range(3):
        lifted_outputs_equal(m, after, {"x": floats((1, kw.get("cin", 2), 16))})


def test_the_lift_matches_qonnx_change_3d_to_4d_on_the_graphs_it_handles():
    """Change3DTo4DTensors (FINN's answer, for FINN-ONNX graphs without Quant nodes) and the lift give the same
    attributes and the same outputs on a Conv1d -> Mul -> MaxPool1d graph with rank-3 constants."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3], strides=[2], pads=[1, 1], dilations=[1]),
        helper.make_node("Mul", ["c", "s"], ["m"]),
        helper.make_node("MaxPool", ["m"], ["y"], kernel_shape=[2], strides=[2], pads=[0, 0]),
    ]
    m = graph(nodes, {"x": (1, 3, 32)}, {"y": (1, 4, 8)}, {"W": RNG.normal(size=(4, 3, 3)), "s": RNG.uniform(size=(1, 4, 1))})
    ours = apply(m, Lift1DTo2D())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = apply(m, Change3DTo4DTensors())
    for a, b in zip(ours.graph.node, theirs.graph.node):
        assert a.op_type == b.op_type
        assert {x.name: helper.get_attribute_value(x) for x in a.attribute} == {x.name: helper.get_attribute_value(x) for x in b.attribute}
    x = floats((1, 3, 32))
    np.testing.assert_array_equal(outputs(ours, {"x": x.reshape(1, 3, 32, 1)})[0], outputs(theirs, {"x": x.reshape(1, 3, 32, 1)})[0])
    lifted_outputs_equal(m, ours, {"x": x})


def test_qonnx_change_3d_to_4d_does_nothing_on_a_brevitas_qonnx_graph():
    """Why the lift is qflow's own: qonnx's pass refuses graphs with Quant (or Relu) nodes and leaves them 3D."""
    m = conv1d_block()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = apply(m, Change3DTo4DTensors())
    assert len(shape_of(theirs, "x")) == 3
    assert len(shape_of(apply(m, Lift1DTo2D()), "x")) == 4


def test_a_dense_layer_over_the_last_axis_keeps_its_3d_input():
    """A MatMul over the length axis is no 1D spatial op: it reads the region's tensor reshaped back to 3D."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("MatMul", ["c", "D"], ["y"]),
    ]
    m = graph(nodes, {"x": (1, 2, 8)}, {"y": (1, 4, 5)}, {"W": RNG.normal(size=(4, 2, 3)), "D": RNG.normal(size=(8, 5))})
    after = apply(m, Lift1DTo2D())
    assert ops(after) == ["Conv", "Reshape", "MatMul"]
    mm = after.get_nodes_by_op_type("MatMul")[0]
    assert shape_of(after, mm.input[0]) == [1, 4, 8] and shape_of(after, "y") == [1, 4, 5]
    lifted_outputs_equal(m, after, {"x": floats((1, 2, 8))})


def test_a_3d_graph_without_1d_spatial_ops_is_left_alone():
    m = graph([helper.make_node("MatMul", ["x", "D"], ["y"])], {"x": (1, 3, 8)}, {"y": (1, 3, 2)}, {"D": RNG.normal(size=(8, 2))})
    after, changed = Lift1DTo2D().apply(ModelWrapper(m.model.__deepcopy__()))
    assert ops(after) == ["MatMul"] and shape_of(after, "x") == [1, 3, 8]


@pytest.mark.parametrize(
    "tail, yshape",
    [
        ([helper.make_node("Pad", ["c", "pads"], ["y"], mode="constant")], (1, 4, 11)),
        ([helper.make_node("Concat", ["c", "c"], ["y"], axis=-1)], (1, 4, 16)),
        ([helper.make_node("ReduceMean", ["c"], ["y"], axes=[-1], keepdims=0)], (1, 4)),
        ([helper.make_node("ReduceMax", ["c"], ["y"], axes=[2], keepdims=1)], (1, 4, 1)),
        ([helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 1])], (1, 8, 4)),
        ([helper.make_node("GlobalAveragePool", ["c"], ["y"])], (1, 4, 1)),
        ([helper.make_node("AveragePool", ["c"], ["y"], kernel_shape=[2], strides=[2])], (1, 4, 4)),
        ([helper.make_node("Flatten", ["c"], ["y"], axis=-1)], (4, 8)),
        ([helper.make_node("Softmax", ["c"], ["y"], axis=-1)], (1, 4, 8)),
        ([helper.make_node("Resize", ["c", "", "scales"], ["y"], mode="nearest")], (1, 4, 16)),
        ([helper.make_node("Unsqueeze", ["c", "ax"], ["y"])], (1, 4, 8, 1)),
    ],
    ids=["pad", "concat", "reduce_mean_drop", "reduce_max_keep", "transpose", "gap", "avgpool", "flatten_neg_axis",
         "softmax", "resize", "unsqueeze_outside"],
)
def test_ops_in_the_region_compute_the_same_on_the_lifted_tensor(tail, yshape):
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3], pads=[1, 1]), *tail]
    inits = {"W": RNG.normal(size=(4, 2, 3)), "pads": np.array([0, 0, 1, 0, 0, 2], np.int64),
             "scales": np.array([1, 1, 2], np.float32), "ax": np.array([3], np.int64)}
    m = graph(nodes, {"x": (1, 2, 8)}, {"y": yshape}, inits)
    after = apply(m, Lift1DTo2D())
    assert len(shape_of(after, "x")) == 4
    lifted_outputs_equal(m, after, {"x": floats((1, 2, 8))})


def test_a_lower_rank_operand_of_a_lifted_op_keeps_broadcasting_the_same_way():
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Mul", ["c", "v"], ["y"]),  # v: (8,) along the length axis
    ]
    m = graph(nodes, {"x": (1, 2, 8), "v": (8,)}, {"y": (1, 4, 8)}, {"W": RNG.normal(size=(4, 2, 3))})
    after = apply(m, Lift1DTo2D())
    feeds = {"x": floats((1, 2, 8)), "v": floats((8,))}
    ref = outputs(m, feeds)[0]
    got = outputs(after, {"x": feeds["x"].reshape(1, 2, 8, 1), "v": feeds["v"]})[0]
    np.testing.assert_array_equal(ref.reshape(-1), got.reshape(-1))


# --- whole 1D networks ------------------------------------------------------------------------

LENGTH = 32


class IQInput(Int8ActPerTensorFloat):
    """VGG10-RadioML's input quantizer: 8-bit signed over a constant [-2, 2]."""

    bit_width = 8
    min_val = -2.0
    max_val = 2.0
    scaling_impl_type = ScalingImplType.CONST


def relu(bits=3):
    return qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)


def conv1d(cin, cout, k=3, **kw):
    return qnn.QuantConv1d(cin, cout, k, bias=False, weight_bit_width=4, **kw)


def head(features, classes=6):
    return [nn.Flatten(), qnn.QuantLinear(features, classes, bias=True, weight_bit_width=4)]


def vgg_blocks():
    """VGG10-RadioML's structure at a small size: 2 x (Conv1d k3, BN, ReLU, MaxPool1d 2), dense layers."""
    return nn.Sequential(
        qnn.QuantHardTanh(act_quant=IQInput), conv1d(2, 8, padding=1), nn.BatchNorm1d(8), relu(), nn.MaxPool1d(2),
        conv1d(8, 8, padding=1), nn.BatchNorm1d(8), relu(), nn.MaxPool1d(2), nn.Flatten(),
        qnn.QuantLinear(8 * LENGTH // 4, 16, bias=False, weight_bit_width=4), nn.BatchNorm1d(16), relu(),
        qnn.QuantLinear(16, 6, bias=True, weight_bit_width=4),
    )


def depthwise_separable():
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=IQInput, return_quant_tensor=True), conv1d(2, 8, 5, stride=2, padding=2), nn.BatchNorm1d(8), relu(),
        conv1d(8, 8, 3, padding=1, groups=8), nn.BatchNorm1d(8), relu(), conv1d(8, 8, 1), nn.BatchNorm1d(8), relu(),
        *head(8 * LENGTH // 2),
    )


def pooled():
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=IQInput, return_quant_tensor=True), conv1d(2, 8, 3, padding=2, dilation=2), nn.BatchNorm1d(8), relu(),
        nn.AvgPool1d(2), qnn.QuantIdentity(bit_width=4, return_quant_tensor=True), conv1d(8, 8, padding=1), nn.BatchNorm1d(8), relu(),
        nn.AdaptiveAvgPool1d(1), *head(8),
    )


def upsampled():
    """A 1D nearest-neighbour upsampling between convs (FINN's UpsampleNearestNeighbour with a unit width)."""
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=IQInput, return_quant_tensor=True), conv1d(2, 8, padding=1), nn.BatchNorm1d(8), relu(),
        nn.Upsample(scale_factor=2, mode="nearest"), conv1d(8, 8, padding=1), nn.BatchNorm1d(8), relu(), *head(8 * LENGTH * 2),
    )


class Residual1d(nn.Module):
    """A residual block on 1D data with one shared quantizer on both inputs of the Add."""

    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=IQInput, return_quant_tensor=True)
        self.stem, self.bn0 = conv1d(2, 8, padding=1), nn.BatchNorm1d(8)
        self.shared = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=4, return_quant_tensor=False)
        self.c1, self.b1, self.r1 = conv1d(8, 8, padding=1), nn.BatchNorm1d(8), relu()
        self.c2, self.b2 = conv1d(8, 8, padding=1), nn.BatchNorm1d(8)
        self.out = relu()
        self.head = nn.Sequential(*head(8 * LENGTH))

    def forward(self, x):
        x = self.shared(self.bn0(self.stem(self.inp(x))))
        y = self.shared(self.b2(self.c2(self.r1(self.b1(self.c1(x))))))
        return self.head(self.out(x + y))


NETS = {"vgg_blocks": vgg_blocks, "depthwise_separable": depthwise_separable, "pooled": pooled, "residual": Residual1d,
        "upsampled": upsampled}


def iq_samples(n, seed):
    return np.random.default_rng(seed).normal(0, 0.7, (n, 2, LENGTH)).astype(np.float32)


def calibrated(fn):
    """The network with BatchNorm statistics and activation scales taken from I/Q samples."""
    torch.manual_seed(0)
    return calibrate(fn(), (iq_samples(32, seed) for seed in range(4)))


@pytest.fixture(scope="module")
def built_1d(tmp_path_factory):
    root, cache = tmp_path_factory.mktemp("conv1d"), {}

    def get(name, folding):
        if (name, folding) not in cache:
            net = calibrated(NETS[name])
            path = root / f"{name}.onnx"
            if not path.exists():
                export_qonnx(net, path, (2, LENGTH), "FLOAT32")
            x = iq_samples(12, 99)
            opts = {"auto": True} if folding == "auto" else {"target_fps": 100_000}
            cfg = build_config(target="zcu104", verify_samples=0, **opts)
            cache[name, folding] = build(path, cfg, root / f"{name}_{folding}", verify_inputs=x, reference=torch_reference(net, x))
        return cache[name, folding]

    return get


def check_bit_exact(result):
    v = result.report.verification
    assert v.passed, [s for s in v.stages if not s.passed]
    assert [s.name for s in v.stages] == ["qonnx", "finn_onnx", "streamlined", "streamlined_integer", "hw", "specialized"]
    assert all(s.bit_exact for s in v.stages[4:])


@pytest.mark.parametrize("folding", ["fps", "auto"])
def test_a_1d_vgg_builds_with_1d_sliding_windows_and_pools_and_verifies_bit_exact(built_1d, folding):
    result = built_1d("vgg_blocks", folding)
    check_bit_exact(result)
    design = ModelWrapper(str(result.design))
    swgs = [getCustomOp(n) for n in design.graph.node if n.op_type.startswith("ConvolutionInputGenerator")]
    assert swgs and all(s.get_nodeattr("IFMDim")[1] == 1 for s in swgs)  # (L, 1): the unit width
    assert len([n for n in design.graph.node if n.op_type.startswith("Pool")]) == 2
    assert result.report.throughput_fps > 0


@pytest.mark.parametrize("name", ["depthwise_separable", "pooled", "residual", "upsampled"])
def test_1d_structures_build_and_verify_bit_exact(built_1d, name):
    result = built_1d(name, "fps")
    check_bit_exact(result)
    if name == "upsampled":
        assert any(n.op_type.startswith("UpsampleNearestNeighbour") for n in ModelWrapper(str(result.design)).graph.node)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["depthwise_separable", "pooled", "residual", "upsampled"])
def test_1d_structures_build_and_verify_bit_exact_with_auto_folding(built_1d, name):
    check_bit_exact(built_1d(name, "auto"))


def test_a_dynamo_export_of_a_1d_network_builds_and_verifies_bit_exact(tmp_path):
    from brevitas.export import export_qonnx as brevitas_export

    net = calibrated(vgg_blocks)
    brevitas_export(net, torch.zeros(1, 2, LENGTH), str(tmp_path / "m.onnx"), dynamo=True)
    x = iq_samples(6, 5)
    result = build(tmp_path / "m.onnx", build_config(target="zcu104", verify_samples=0, target_fps=100_000), tmp_path / "out",
                   verify_inputs=x, reference=torch_reference(net, x))
    check_bit_exact(result)
