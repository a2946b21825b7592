"""qflow's reference models: shapes, bit-width handling, and that FINN turns each one into HW layers.

The FINN pipeline below is a composition of FINN/qonnx passes mirroring FINN's builder
steps (qonnx_to_finn, tidy_up, streamline, convert_to_hw) without Vivado.
"""

from __future__ import annotations

import copy
import doctest
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import models
import models.cnv
import models.fc
import models.quant
from flow.core.errors import ConfigError, UnknownModelError
from models import MODELS, available_models, build_model

HW_DOMAIN = "finn.custom_op.fpgadataflow"

TINY_CONVS = ((4, False), (4, True), (8, False), (8, True), (8, False), (8, False))
TINY = {
    "tfc": {"hidden": (16, 16, 16)},
    "sfc": {"hidden": (24, 24, 24)},
    "lfc": {"hidden": (32, 32, 32)},
    "cnv": {"convs": TINY_CONVS, "fc": (16, 16)},
    "cnv28": {"convs": TINY_CONVS[:5], "fc": (16, 16)},
}


def _images(n: int, shape, seed: int = 0) -> torch.Tensor:
    """Raw-pixel images (integers 0..255 as float) with varied brightness and sparsity."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g).float()
    bright = torch.rand(n, 1, 1, 1, generator=g)
    mask = (torch.rand(n, *shape, generator=g) < torch.rand(n, 1, 1, 1, generator=g)).float()
    return (x * bright * mask).round()


def _randomize_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BatchNorm statistics (distinct per-channel thresholds), eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def _export(model: nn.Module, path) -> str:
    """Brevitas' export of ``model`` with its quantized weights baked in, as qflow exports."""
    from brevitas.export import export_qonnx

    from models.weights import bake_quantized_weights

    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(bake_quantized_weights(copy.deepcopy(model)), torch.zeros(1, *model.input_shape), str(path), dynamo=False)
    return str(path)


def _streamline(path: str, topk: bool = True):
    """QONNX file -> streamlined FINN-ONNX graph ending in TopK (FINN's builder steps up to streamline).

    With ``topk=False`` the graph ends in the logits (integer dot products times a scalar).
    """
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveStaticGraphInputs,
        RemoveUnusedTensors,
    )
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
    from qonnx.util.cleanup import cleanup_model

    def run(m, *passes):
        for p in passes:
            m = m.transform(p)
        return m

    m = cleanup_model(ModelWrapper(path)).transform(ConvertQONNXtoFINN())
    m.set_tensor_datatype(m.graph.input[0].name, DataType["UINT8"])
    m = run(m, InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
            InferDataTypes(), RemoveStaticGraphInputs())
    m = run(m, absorb.AbsorbScalarBiasIntoMultiThreshold(), Streamline())
    if m.get_nodes_by_op_type("Conv"):
        m = run(m, LowerConvsToMatMul(), MakeMaxPoolNHWC(), absorb.AbsorbTransposeIntoMultiThreshold(),
                MakeMaxPoolNHWC(), absorb.AbsorbConsecutiveTransposes())
    m = run(m, ConvertBipolarMatMulToXnorPopcount(), Streamline())
    if topk:
        m = run(m, InsertTopK(k=1), absorb.AbsorbScalarMulAddIntoTopK())
    return run(m, InferDataTypes(), RoundAndClipThresholds(), InferDataLayouts(), RemoveUnusedTensors())


def _convert_to_hw(m):
    """Streamlined graph -> HW layers, as FINN's step_convert_to_hw (default config) does."""
    import finn.transformation.streamline.absorb as absorb
    from finn.transformation.fpgadataflow.convert_to_hw.binary_matrix_vector_activation import (
        InferBinaryMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import (
        InferConvInpGen,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.label_select import (
        InferLabelSelectLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
        InferThresholdingLayer,
    )
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten

    for p in (InferBinaryMatrixVectorActivation(), InferQuantizedMatrixVectorActivation(), InferLabelSelectLayer(),
              InferThresholdingLayer(), InferPool(), InferConvInpGen(),
              # step_convert_to_hw's clean-up: cancel Transpose pairs, fold the conv->fc flatten
              absorb.AbsorbConsecutiveTransposes(), RemoveCNVtoFCFlatten()):
        m = m.transform(p)
    return m


def _non_hw_nodes(m) -> list[str]:
    """Nodes that are not HW layers, after an allowed leading Reshape/Transpose."""
    nodes = list(m.graph.node)
    while nodes and nodes[0].op_type in ("Reshape", "Transpose"):
        nodes.pop(0)
    return [f"{n.name}:{n.op_type}" for n in nodes if not n.domain.startswith(HW_DOMAIN)]


def _compile(model: nn.Module, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streamlined = _streamline(_export(model, tmp_path / "model.onnx"))
        hw = _convert_to_hw(streamlined)
    return streamlined, hw


# ---------------------------------------------------------------- registry


def test_registry_lists_the_reference_models():
    assert available_models() == ["cnv", "cnv28", "lfc", "sfc", "tfc"]
    assert set(MODELS) == set(available_models())


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(UnknownModelError, match="available models: cnv, cnv28, lfc, sfc, tfc"):
        build_model("resnet18")


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown option.*widht.*valid options"):
        build_model("tfc", widht=3)


def test_module_docstrings_run():
    for mod in (models, models.quant, models.fc, models.cnv):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, mod.__name__


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("name,shape", [("tfc", (1, 28, 28)), ("sfc", (1, 28, 28)), ("lfc", (1, 28, 28)),
                                        ("cnv", (3, 32, 32)), ("cnv28", (1, 28, 28))])
def test_forward_shape_on_raw_pixels(name, shape):
    model = build_model(name, weight_bits=2, act_bits=2).eval()
    assert model.input_shape == shape
    with torch.no_grad():
        out = model(_images(3, shape))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_in_shape_and_num_classes_are_configurable():
    model = build_model("tfc", in_shape=(1, 8, 8), num_classes=4, hidden=(8, 8)).eval()
    assert model.input_shape == (1, 8, 8)
    assert model(_images(2, (1, 8, 8))).shape == (2, 4)
    assert model.layer_names == ["fc0", "fc1", "fc2"]


def test_cnv_rejects_images_its_convs_cannot_take():
    with pytest.raises(ConfigError, match="cnv28"):
        build_model("cnv", in_shape=(1, 28, 28))
    with pytest.raises(ConfigError, match="in_shape"):
        build_model("cnv28", in_shape=(28, 28))


def test_layer_names():
    assert build_model("cnv").layer_names == [f"conv{i}" for i in range(6)] + ["fc0", "fc1", "fc2"]
    assert build_model("cnv28").layer_names == [f"conv{i}" for i in range(5)] + ["fc0", "fc1", "fc2"]
    assert build_model("lfc").layer_names == ["fc0", "fc1", "fc2", "fc3"]


def test_state_dict_of_an_untrained_model_round_trips_strictly():
    a = build_model("tfc", hidden=(8,))
    b = build_model("tfc", hidden=(8,))
    b.load_state_dict(a.state_dict(), strict=True)


# ---------------------------------------------------------------- bit widths


@pytest.mark.parametrize("bad", [0, 9, 2.5, True, "4", "ternay", None])
def test_bad_weight_bits(bad):
    with pytest.raises(ConfigError, match=r"weight_bits must be an int in 1\.\.8, 'xnor' or 'ternary'"):
        build_model("tfc", weight_bits=bad)


@pytest.mark.parametrize("bad", [0, 9, "ternary", 1.0])
def test_bad_act_bits(bad):
    with pytest.raises(ConfigError, match=r"act_bits must be an int in 1\.\.8"):
        build_model("cnv28", act_bits=bad)
    with pytest.raises(ConfigError, match=r"input_bits must be an int in 1\.\.8"):
        build_model("tfc", input_bits=bad)


def test_bad_layer_override_names_the_layer():
    with pytest.raises(ConfigError, match=r"fc1: weight_bits must be an int in 1\.\.8, 'xnor' or 'ternary', got 12"):
        build_model("tfc", layer_bits={"fc1": {"weight_bits": 12}})
    with pytest.raises(ConfigError, match=r"conv2: act_bits must be an int in 1\.\.8"):
        build_model("cnv", layer_bits={"conv2": {"act_bits": 0}})


def test_unknown_layer_lists_the_valid_layers():
    with pytest.raises(ConfigError, match="'fc7'.*valid layers: fc0, fc1, fc2, fc3"):
        build_model("tfc", layer_bits={"fc7": {"weight_bits": 4}})
    with pytest.raises(ConfigError, match="valid layers: conv0, conv1, conv2, conv3, conv4, fc0"):
        build_model("cnv28", layer_bits={"conv5": {"weight_bits": 4}})
    with pytest.raises(ConfigError, match="unknown key.*'bits'.*weight_bits, act_bits"):
        build_model("tfc", layer_bits={"fc0": {"bits": 4}})
    with pytest.raises(ConfigError, match="output layer"):
        build_model("tfc", layer_bits={"fc3": {"act_bits": 4}})


def _act_bit_width(block) -> float:
    return float(block.act.act_quant.bit_width())


def test_layer_bits_change_that_layers_quantizers_only():
    model = build_model("tfc", weight_bits=2, act_bits=2,
                        layer_bits={"fc1": {"weight_bits": 5, "act_bits": 3}, "fc3": {"weight_bits": 8}})
    wbits = {n: float(model.quant_layer(n).quant_weight().bit_width) for n in model.layer_names}
    assert wbits == {"fc0": 2, "fc1": 5, "fc2": 2, "fc3": 8}
    assert [_act_bit_width(model.layers[n]) for n in ("fc0", "fc1", "fc2")] == [2, 3, 2]
    assert model.bits["fc1"] == {"weight_bits": 5, "act_bits": 3}

    cnv = build_model("cnv", weight_bits=1, act_bits=1, layer_bits={"conv3": {"weight_bits": 4, "act_bits": 6}})
    assert float(cnv.quant_layer("conv3").quant_weight().bit_width) == 4
    assert float(cnv.quant_layer("conv2").quant_weight().bit_width) == 1
    assert _act_bit_width(cnv.layers["conv3"]) == 6
    assert isinstance(cnv.layers["conv2"].act, models.quant.qnn.QuantIdentity)  # bipolar sign
    assert isinstance(cnv.layers["conv3"].act, models.quant.qnn.QuantReLU)


@pytest.mark.parametrize("bits,levels", [(1, {-1, 1}), ("xnor", {-1, 1}), ("ternary", {-1, 0, 1}), (2, {-2, -1, 0, 1}),
                                         (3, {-3, -2, -1, 0, 1, 2, 3})])
def test_weights_take_the_expected_integer_values(bits, levels):
    torch.manual_seed(0)
    model = build_model("tfc", weight_bits=bits, hidden=(64,))
    for name in model.layer_names:
        q = model.quant_layer(name).quant_weight()
        assert set(torch.unique(q.int()).tolist()) == levels, name
    assert models.quant.weight_levels(bits) == len(levels)


def test_one_bit_activations_and_inputs_are_bipolar():
    model = build_model("tfc", weight_bits=1, act_bits=1, hidden=(16,)).eval()
    x = _images(4, model.input_shape)
    q = model.input_quant(x.reshape(4, -1))
    assert set(torch.unique(q).tolist()) <= {-1.0, 1.0}
    assert torch.equal(q > 0, x.reshape(4, -1) / 255 >= 0.5)
    h = model.layers["fc0"](q)
    assert set(torch.unique(h).tolist()) == {-1.0, 1.0}


def test_one_bit_input_is_binary_when_the_first_layer_is_not_xnor():
    model = build_model("tfc", weight_bits=2, act_bits=1, hidden=(16,)).eval()
    x = _images(4, model.input_shape)
    q = model.input_quant(x.reshape(4, -1))
    assert set(torch.unique(q).tolist()) <= {0.0, 1.0}
    assert torch.equal(q > 0, x.reshape(4, -1) / 255 >= 0.5)
    assert build_model("cnv28", act_bits=1, layer_bits={"conv0": {"weight_bits": 1}}).input_quant.bipolar


def test_unsigned_input_quantizer_starts_uniform_over_pixels():
    inq = models.quant.make_input_quant(2).eval()
    out = inq(torch.tensor([0.0, 40.0, 90.0, 170.0, 255.0]))
    assert out.tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1])


# ---------------------------------------------------------------- export + FINN

COMPILE_CASES = [
    # the real topologies
    ("tfc", {}, dict(weight_bits=2, act_bits=2)),
    ("cnv", {}, dict(weight_bits=1, act_bits=1)),
    ("cnv28", {}, dict(weight_bits=2, act_bits=2, input_bits=2)),
    # low bit widths, tiny widths
    ("tfc", TINY["tfc"], dict(weight_bits=1, act_bits=1)),
    ("sfc", TINY["sfc"], dict(weight_bits="ternary", act_bits=2)),
    ("lfc", TINY["lfc"], dict(weight_bits=1, act_bits=1)),
    ("cnv28", TINY["cnv28"], dict(weight_bits=1, act_bits=1)),
    # mixed precision
    ("tfc", TINY["tfc"], dict(weight_bits=2, act_bits=2, input_bits=8, dropout=0.1,
                              layer_bits={"fc0": {"weight_bits": 1, "act_bits": 1}, "fc1": {"weight_bits": 4},
                                          "fc3": {"weight_bits": 8}})),
    ("sfc", TINY["sfc"], dict(weight_bits=1, act_bits=2, layer_bits={"fc1": {"act_bits": 1}, "fc2": {"weight_bits": "ternary"}})),
    ("lfc", TINY["lfc"], dict(weight_bits=4, act_bits=4, input_bits=1, layer_bits={"fc0": {"weight_bits": 1}})),
    ("cnv", TINY["cnv"], dict(weight_bits=2, act_bits=2, input_bits=8,
                              layer_bits={"conv0": {"weight_bits": 8, "act_bits": 1}, "conv1": {"weight_bits": 1},
                                          "conv4": {"weight_bits": "ternary", "act_bits": 4}, "fc2": {"weight_bits": 1}})),
    ("cnv28", TINY["cnv28"], dict(weight_bits="ternary", act_bits=3, input_bits=1,
                                  layer_bits={"conv1": {"act_bits": 1}, "conv2": {"act_bits": 1},
                                              "fc0": {"weight_bits": 6}})),
]


COMPILE_IDS = [f"{n}-{'tiny' if size else 'real'}-{'mixed' if 'layer_bits' in b else 'uniform'}-{i}"
               for i, (n, size, b) in enumerate(COMPILE_CASES)]


@pytest.mark.parametrize("name,size,bits", COMPILE_CASES, ids=COMPILE_IDS)
def test_exports_and_every_compute_node_becomes_a_hw_layer(name, size, bits, tmp_path):
    torch.manual_seed(0)
    model = _randomize_bn(build_model(name, **size, **bits))
    streamlined, hw = _compile(model, tmp_path)
    assert _non_hw_nodes(hw) == [], [n.op_type for n in streamlined.graph.node]
    ops = [n.op_type for n in hw.graph.node]
    n_layers = len(model.layer_names)
    assert ops.count("MVAU") == n_layers and ops[-1] == "LabelSelect"
    if name.startswith("cnv"):
        convs = model.layer_names.index("fc0")
        pools = sum(hasattr(model.layers[n], "pool") for n in model.layer_names[:convs])
        assert ops.count("Pool") == pools
        assert ops.count("ConvolutionInputGenerator") == convs + pools  # FINN pools use one too
    # the input quantizer stays one per-tensor set of integer thresholds on UINT8 pixels
    from qonnx.custom_op.registry import getCustomOp

    first = next(n for n in hw.graph.node if n.domain.startswith(HW_DOMAIN))
    assert first.op_type == "Thresholding"
    thresholds = hw.get_initializer(first.input[1])
    in_bits = bits.get("input_bits", bits["act_bits"])
    assert thresholds.shape[0] == 1  # per tensor
    assert (thresholds <= 255).sum() == 2 ** in_bits - 1  # reachable by UINT8 pixels
    assert np.array_equal(thresholds, np.round(thresholds))
    assert getCustomOp(first).get_input_datatype().name == "UINT8"


@pytest.mark.parametrize("name,bits", [
    ("tfc", dict(weight_bits=2, act_bits=2, input_bits=1,
                 layer_bits={"fc0": {"act_bits": 1}, "fc1": {"weight_bits": 1, "act_bits": 1}, "fc2": {"act_bits": 4}})),
    ("cnv28", dict(weight_bits=1, act_bits=1, layer_bits={"conv4": {"weight_bits": "ternary", "act_bits": 2}})),
])
def test_streamlined_finn_graph_computes_the_torch_logits_and_labels(name, bits, tmp_path):
    from qonnx.core.onnx_exec import execute_onnx

    torch.manual_seed(0)
    model = _randomize_bn(build_model(name, **TINY[name], **bits))
    path = _export(model, tmp_path / "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_topk, logits_graph = _streamline(path), _streamline(path, topk=False)
    x = _images(6, model.input_shape, seed=3)
    with torch.no_grad():
        logits = model(x).numpy()
    for i in range(len(x)):
        run = lambda g: execute_onnx(g, {g.graph.input[0].name: x[i : i + 1].numpy()})[g.graph.output[0].name]
        finn_logits = run(logits_graph)
        np.testing.assert_allclose(finn_logits[0], logits[i], rtol=1e-4, atol=1e-4 * np.abs(logits[i]).max())
        label = int(run(with_topk).flatten()[0])
        assert logits[i, label] == logits[i].max(), (i, label, logits[i])
