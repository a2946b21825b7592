"""The survey's weight quantizers: level counts after training, TWN's zero band, XNOR/binary scales, and XNOR's per-channel scales folded into FINN thresholds bit-exactly."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

import models.weights
from flow.builder.pipeline import build
from flow.cli import main
from flow.core.config import build_config
from flow.nn.reference import torch_reference
from flow.nn.data import load_dataset
from flow.nn.export import export_qonnx
from flow.nn.train import TrainConfig, train
from models import build_model

DIGITS = (1, 8, 8)


def test_doctests():
    assert doctest.testmod(models.weights).failed == 0


def weight_nodes(model: ModelWrapper) -> list:
    """``Quant``/``BipolarQuant`` nodes quantizing a constant (the weights), in graph order."""
    return [n for n in model.graph.node if n.op_type in ("Quant", "BipolarQuant") and model.get_initializer(n.input[0]) is not None]


def exported_ints(model: ModelWrapper, node) -> np.ndarray:
    """The integers a weight quantizer node produces, shaped (out, in) like a torch weight."""
    w, s = model.get_initializer(node.input[0]), model.get_initializer(node.input[1])
    if node.op_type == "BipolarQuant":
        return np.where(w >= 0, 1, -1).T
    narrow = next(a.i for a in node.attribute if a.name == "narrow")
    bits = int(model.get_initializer(node.input[3]))
    return np.clip(np.round(w / s), -(2 ** (bits - 1)) + narrow, 2 ** (bits - 1) - 1).T


@pytest.fixture(scope="module")
def trained_mixed(tmp_path_factory):
    """A small MLP trained on digits with 2-bit fc0/fc2 and a ternary fc1, and its QONNX export."""
    torch.manual_seed(0)
    model = build_model("tfc", in_shape=DIGITS, hidden=[32, 32], weight_bits=2, act_bits=2, layer_bits={"fc1": {"weight_bits": "ternary"}})
    train(model, load_dataset("digits", "train"), TrainConfig(epochs=3, batch_size=64, lr=0.02, threads=1), progress=False)
    path = tmp_path_factory.mktemp("mixed") / "mixed.onnx"
    return model, export_qonnx(model, path, DIGITS)


def test_trained_two_bit_layers_use_four_levels_and_the_ternary_layer_three(trained_mixed):
    model, onnx = trained_mixed
    nodes = weight_nodes(onnx)
    assert len(nodes) == 3
    levels = [sorted(np.unique(exported_ints(onnx, n)).tolist()) for n in nodes]
    assert levels == [[-2, -1, 0, 1], [-1, 0, 1], [-2, -1, 0, 1]]
    for name, node in zip(model.layer_names, nodes):  # the export reproduces the trained quantizer, weight for weight
        assert np.array_equal(exported_ints(onnx, node), model.quant_layer(name).quant_weight().int().numpy()), name


def test_ternary_zeros_are_exactly_twn_band_of_the_trained_weights(trained_mixed):
    model, onnx = trained_mixed
    w = model.quant_layer("fc1").weight.detach().numpy()
    ints = exported_ints(onnx, weight_nodes(onnx)[1])
    delta = 0.7 * np.abs(w).mean(axis=1, keepdims=True)
    assert np.array_equal(ints == 0, np.abs(w) <= delta)
    alpha = onnx.get_initializer(weight_nodes(onnx)[1].input[1]).reshape(-1)
    expected = np.array([np.abs(row[np.abs(row) > d]).mean() for row, d in zip(w, delta[:, 0])])
    np.testing.assert_allclose(alpha, expected, rtol=1e-5)


def test_xnor_scales_are_mean_abs_weight_per_output_channel_and_binary_hidden_scale_is_one(tmp_path):
    torch.manual_seed(0)
    xnor = build_model("tfc", in_shape=DIGITS, hidden=[16], weight_bits="xnor", act_bits=1).eval()
    onnx = export_qonnx(xnor, tmp_path / "xnor.onnx", DIGITS)
    hidden, out = weight_nodes(onnx)
    w = xnor.quant_layer("fc0").weight.detach().numpy()
    np.testing.assert_allclose(onnx.get_initializer(hidden.input[1]).reshape(-1), np.abs(w).mean(axis=1), rtol=1e-6)
    assert onnx.get_initializer(out.input[1]).size == 1  # the output layer's scale is per tensor (absorbed into TopK)
    binary = build_model("tfc", in_shape=DIGITS, hidden=[16], weight_bits=1, act_bits=1).eval()
    onnx = export_qonnx(binary, tmp_path / "binary.onnx", DIGITS)
    hidden, out = weight_nodes(onnx)
    assert (hidden.op_type, out.op_type) == ("BipolarQuant", "BipolarQuant")
    assert np.all(onnx.get_initializer(hidden.input[1]) == 1.0)  # sign weights, scale 1 (BatchNorm follows)
    assert np.allclose(onnx.get_initializer(out.input[1]), models.weights.OUTPUT_BINARY_SCALE)  # the classifier's constant


def _randomize_bn(model: nn.Module, images: np.ndarray) -> nn.Module:
    """BatchNorm gains with random signs (some negative) and statistics from images: distinct per-channel thresholds."""
    g = torch.Generator().manual_seed(1)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    with torch.no_grad():
        for bn in bns:
            c = bn.num_features
            bn.weight.copy_(torch.where(torch.rand(c, generator=g) < 0.25, -1.0, 1.0) * (0.5 + torch.rand(c, generator=g)))
            bn.bias.copy_(0.5 * torch.randn(c, generator=g))
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        model(torch.from_numpy(images.astype(np.float32)))
    return model.eval()


def test_xnor_per_channel_scales_fold_into_thresholds_bit_exact(tmp_path):
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    torch.manual_seed(0)
    model = _randomize_bn(build_model("tfc", in_shape=DIGITS, hidden=[32, 32], weight_bits="xnor", act_bits=1), tr.images[:500])
    scales = [model.quant_layer(n).quant_weight().scale.reshape(-1) for n in ("fc0", "fc1")]
    assert all(s.numel() == 32 and float(s.max() / s.min()) > 1.05 for s in scales)  # really per channel
    onnx = tmp_path / "xnor.onnx"
    export_qonnx(model, onnx, DIGITS)
    x = te.images[:100].astype(np.float32)
    res = build(onnx, build_config(target="pynq-z1", target_fps=10_000, verify_samples=100), tmp_path / "out",
                verify_inputs=x, reference=torch_reference(model, x))
    v = res.report.verification
    assert v.passed, [(s.name, s.passed, s.note) for s in v.stages]
    integer = [s for s in v.stages if s.bit_exact is not None]
    assert integer and all(s.bit_exact for s in integer)
    design = ModelWrapper(str(res.design))
    mvaus = [n for n in design.graph.node if n.op_type.startswith("MVAU")]
    assert len(mvaus) == 3 and {design.get_tensor_datatype(n.input[1]).name for n in mvaus} == {"BINARY"}
    assert not [n.op_type for n in design.graph.node if n.op_type in ("Mul", "Add", "MatMul")]  # every scale went into thresholds


@pytest.mark.parametrize("model_table, named", [
    ('weight_bits = "xnr"', "model.weight_bits: weight bits must be an integer from 1 to 8 or one of 'xnor', 'ternary'"),
    ('weight_bits = 2\n[model.layers.fc1]\nweight_bits = "tern"', "fc1: weight_bits must be an int in 1..8, 'xnor' or 'ternary', got 'tern'"),
])
def test_unknown_quantizer_name_in_a_recipe_exits_2_with_one_line(tmp_path, capsys, model_table, named):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f'name = "bad"\n[model]\n{model_table}\n')
    rc = main(["run", str(recipe), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("qflow:")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("qflow: error:") and named in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out" / "model.pt").exists()
