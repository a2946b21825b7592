"""Low-rank factorization: ranks as asked, energy-chosen ranks, errors, mixed precision, FINN build."""

import doctest

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from brevitas.quant import Int8WeightPerTensorFloat

from flow.builder.pipeline import build
from flow.core.config import build_config
from flow.core.errors import ConfigError
from flow.nn.data import load_dataset
from flow.nn.export import export_qonnx
from flow.nn.techniques import lowrank
from flow.nn.techniques.lowrank import (
    LowRank,
    check_factorization,
    choose_rank,
    factor_layer,
    factorize,
)
from flow.nn.train import TrainConfig, evaluate, predict_logits, train
from flow.sim.verify import StageOutputs
from models import build_model


def _linear_with(weight: torch.Tensor, bits: int = 8) -> qnn.QuantLinear:
    layer = qnn.QuantLinear(weight.shape[1], weight.shape[0], bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _constructed(singular_values, rows=12, cols=10, seed=0):
    """A rows x cols matrix with exactly the given singular values."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=g))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=g))
    s = torch.tensor(singular_values, dtype=torch.float32)
    k = len(singular_values)
    return u[:, :k] @ torch.diag(s) @ v[:, :k].T


def _product(rep: LowRank) -> torch.Tensor:
    """The float weight the two factors compute together (quantization aside)."""
    w1, w2 = rep.first.weight.detach(), rep.second.weight.detach()
    return w2.reshape(w2.shape[0], -1) @ w1.reshape(w1.shape[0], -1)


def test_doctests():
    assert doctest.testmod(lowrank, optionflags=doctest.ELLIPSIS).failed == 0


def test_factored_rank_is_as_asked():
    model = build_model("tfc", weight_bits=4, act_bits=4)
    w = model.layers.fc1.linear.weight.detach().clone()
    assert factorize(model, rank=5, layers=["fc1"]) == {"fc1": 5}
    rep = model.layers.fc1.linear
    assert isinstance(rep, LowRank) and rep.rank == 5
    assert rep.first.weight.shape == (5, 64) and rep.second.weight.shape == (64, 5)
    assert torch.linalg.matrix_rank(_product(rep)).item() == 5
    # the product is the best rank-5 approximation (Eckart-Young): error = tail singular values
    s = torch.linalg.svdvals(w.double())
    assert torch.linalg.norm(w - _product(rep)).item() == pytest.approx(s[5:].norm().item(), rel=1e-4)


def test_energy_picks_the_expected_rank_on_a_constructed_matrix():
    s = [8.0, 4.0, 2.0, 1.0, 0.5]  # squared: 64, 16, 4, 1, 0.25 of 85.25
    cumulative = np.cumsum(np.square(s)) / np.square(s).sum()  # 0.751, 0.938, 0.985, 0.997, 1.0
    for energy, expected in [(0.5, 1), (0.75, 1), (0.76, 2), (0.93, 2), (0.95, 3), (0.99, 4), (1.0, 5)]:
        assert choose_rank(torch.tensor(s), energy) == expected, energy
        assert cumulative[expected - 1] >= energy - 1e-12 and (expected == 1 or cumulative[expected - 2] < energy)
        rep = factor_layer(_linear_with(_constructed(s)), "fc", energy=energy)
        assert rep.rank == expected


def test_full_rank_factorization_reconstructs_the_weight():
    w = _constructed([3.0, 2.0, 1.0, 0.5], rows=6, cols=4)
    rep = factor_layer(_linear_with(w), "fc", rank=4)
    assert torch.allclose(_product(rep), w, atol=1e-5)


def test_conv_becomes_kxk_with_r_channels_then_1x1():
    torch.manual_seed(0)
    conv = qnn.QuantConv2d(3, 8, 3, bias=False, weight_bit_width=8)
    rep = factor_layer(conv, "conv0", rank=8, mid_bits=8)  # full rank: min(8, 3*3*3)
    assert rep.first.weight.shape == (8, 3, 3, 3) and rep.second.weight.shape == (8, 8, 1, 1)
    x = torch.randn(2, 3, 7, 7)
    composed = F.conv2d(F.conv2d(x, rep.first.weight), rep.second.weight)
    assert torch.allclose(composed, F.conv2d(x, conv.weight), atol=1e-4)
    low = factor_layer(conv, "conv0", rank=2)
    assert low.first.weight.shape == (2, 3, 3, 3) and low.second.weight.shape == (8, 2, 1, 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"rank": 0, "layers": ["fc1"]}, r"fc1: rank 0 is impossible; it must be between 1 and 64"),
    ({"rank": -3, "layers": ["fc1"]}, r"fc1: rank -3 is impossible"),
    ({"rank": 65, "layers": ["fc1"]}, r"fc1: rank 65 is impossible; it must be between 1 and 64 \(fc1 is 64 x 64\)"),
    ({"rank": 11, "layers": ["fc3"]}, r"fc3: rank 11 is impossible; it must be between 1 and 10"),
    ({"rank": 4, "layers": ["fc9"]}, r"unknown layer 'fc9'; valid layers: fc0, fc1, fc2, fc3"),
    ({"rank": 4, "energy": 0.9}, r"exactly one of rank and energy"),
    ({}, r"exactly one of rank and energy"),
    ({"energy": 1.5}, r"energy must be in \(0, 1\]"),
])
def test_impossible_factorizations_raise_config_error_and_change_nothing(kwargs, match):
    model = build_model("tfc")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match=match):
        factorize(model, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_default_layers_are_the_hidden_linear_layers():
    model = build_model("tfc")
    assert check_factorization(model, rank=4) == ["fc0", "fc1", "fc2"]
    assert lowrank.default_layers(build_model("cnv28")) == ["fc0", "fc1"]
    factorize(model, rank=4, layers=["fc0"])
    with pytest.raises(ConfigError, match="already factored"):
        factorize(model, rank=4, layers=["fc0"])


def test_factors_keep_each_layers_precision_and_ternary_takes_exactly_three_values():
    model = build_model("tfc", weight_bits=4, act_bits=3, layer_bits={"fc0": {"weight_bits": 8}, "fc1": {"weight_bits": "ternary"}})
    factorize(model, rank=6, layers=["fc0", "fc1"])
    fc0, fc1 = model.layers.fc0.linear, model.layers.fc1.linear
    for factor in (fc0.first, fc0.second):
        assert factor.quant_weight().bit_width.item() == 8
    for factor in (fc1.first, fc1.second):
        ints = factor.quant_weight().int()
        assert sorted(ints.unique().tolist()) == [-1, 0, 1]
    assert fc0.mid.act_quant.bit_width().item() == 3  # the layer's act_bits
    assert model.layers.fc2.linear.quant_weight().bit_width.item() == 4  # untouched


def test_factored_convs_and_linears_compile_and_verify(tmp_path):
    train_set, test_set = load_dataset("digits", "train"), load_dataset("digits", "test")
    torch.manual_seed(0)
    cnn = build_model("cnv", in_shape=(1, 8, 8), convs=[(8, False), (8, True)], fc=[16], weight_bits=4, act_bits=4)
    ranks = factorize(cnn, rank=4, layers=["conv1", "fc0"], calibration_images=train_set.images[:128])
    assert ranks == {"conv1": 4, "fc0": 4}
    train(cnn, train_set, TrainConfig(epochs=1, batch_size=64, lr=0.02), progress=False)
    assert evaluate(cnn, test_set) > 0.2
    onnx = tmp_path / "cnn.onnx"
    export_qonnx(cnn, onnx, (1, 8, 8))
    x = test_set.images[:50].astype(np.float32)
    logits = predict_logits(cnn, x)
    result = build(onnx, build_config(target="pynq-z1", target_fps=10000, verify_samples=50), tmp_path / "out",
                   verify_inputs=x, reference=StageOutputs("pytorch", logits=logits, labels=logits.argmax(1)))
    assert result.report.verification.passed
    mvaus = [layer.op_type for layer in result.report.layers if layer.op_type.startswith("MVAU")]
    assert len(mvaus) == 6  # conv0, conv1 as KxK + 1x1, fc0 as two, fc1
