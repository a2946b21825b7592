"""PTQ with Brevitas: float twin, equalization, calibration, bias correction, learned round, FINN build."""

import copy
import doctest

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.core.function_wrapper.learned_round import LearnedRoundSte
from brevitas.graph.calibrate import quantization_status_manager

from flow.builder.pipeline import build
from flow.core.config import build_config
from flow.core.errors import ConfigError
from flow.nn.reference import torch_reference
from flow.nn.data import load_dataset
from flow.nn.export import export_qonnx
from flow.nn.techniques import ptq, twin
from flow.nn.techniques.ptq import (
    apply_learned_round,
    calibrate,
    correct_biases,
    equalize,
    post_training_quantize,
    use_calibratable_activations,
)
from flow.nn.techniques.twin import float_twin, load_float_weights
from flow.nn.train import TrainConfig, evaluate, train
from models import build_model

HIDDEN = (32, 32)
FLOAT = TrainConfig(epochs=2, batch_size=64, lr=0.02)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def trained_twin(digits):
    """A float twin of a small TFC trained on digits (shared, never modified: tests copy it)."""
    torch.manual_seed(0)
    twin = float_twin(build_model("tfc", in_shape=(1, 8, 8), hidden=HIDDEN))
    train(twin, digits[0], FLOAT, progress=False)
    return twin.eval()


def _quantized(twin, weight_bits, act_bits, input_bits=8):
    model = build_model("tfc", in_shape=(1, 8, 8), hidden=HIDDEN, weight_bits=weight_bits, act_bits=act_bits, input_bits=input_bits)
    load_float_weights(model, twin)
    use_calibratable_activations(model)
    return model.eval()


def _copy(twin):
    return copy.deepcopy(twin)


@pytest.mark.parametrize("module", [twin, ptq])
def test_doctests(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_float_twin_is_the_model_with_quantization_disabled():
    torch.manual_seed(0)
    model = build_model("tfc", in_shape=(1, 8, 8), hidden=HIDDEN, weight_bits=4, act_bits=4).eval()
    twin = float_twin(model).eval()
    assert not any(isinstance(m, (qnn.QuantLinear, qnn.QuantReLU, qnn.QuantIdentity)) for m in twin.modules())
    assert set(twin.state_dict()) <= set(model.state_dict())
    x = torch.randint(0, 256, (16, 1, 8, 8)).float()
    with torch.no_grad(), quantization_status_manager(model, disable_act_quant=True, disable_weight_quant=True, disable_bias_quant=True):
        reference = model(x)
    assert torch.allclose(twin(x), reference, atol=1e-5)


def test_equalization_preserves_the_float_function_and_equalizes_ranges(trained_twin, digits):
    twin = _copy(trained_twin)
    x = torch.from_numpy(digits[1].images[:64].astype(np.float32))
    before = twin(x).detach()
    w_before = twin.layers.fc1.linear.weight.detach().abs().amax(dim=0)
    assert equalize(twin) == 2  # fc0.bn -> relu -> fc1 and fc1.bn -> relu -> fc2
    assert torch.allclose(twin(x), before, atol=1e-4)
    w_after = twin.layers.fc1.linear.weight.detach().abs().amax(dim=0)
    assert not torch.allclose(w_before, w_after)  # fc1's input channels were rescaled


def test_calibration_sets_activation_scales_from_the_data(trained_twin, digits):
    model = _quantized(trained_twin, 8, 4)
    images = digits[0].images[:250]
    act = model.layers.fc0.act
    qat_scale = build_model("tfc", in_shape=(1, 8, 8), hidden=HIDDEN, act_bits=4).layers.fc0.act.act_quant.scale().item()
    calibrate(model, images, batch_size=250)
    scale = act.act_quant.scale().item()
    assert scale != pytest.approx(qat_scale)
    # the calibrated range is the 99.999th percentile of the float activation (Brevitas' default)
    seen = []
    hook = trained_twin.layers.fc0.act.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    with torch.no_grad():
        trained_twin(torch.from_numpy(images.astype(np.float32)))
    hook.remove()
    expected = torch.quantile(seen[0].flatten(), 0.99999).item()
    assert scale * (2**4 - 1) == pytest.approx(expected, rel=0.02)


def test_bias_correction_moves_the_weight_error_into_batchnorm(trained_twin, digits):
    model = _quantized(trained_twin, 2, 8)  # coarse weights: a visible mean error
    images = digits[0].images[:250]  # one batch: Brevitas averages per-batch means
    calibrate(model, images)
    fc0, bn = model.layers.fc0.linear, model.layers.fc0.bn
    x = model.input_quant(torch.from_numpy(images.astype(np.float32)).reshape(len(images), -1)).detach()
    with torch.no_grad():
        float_out = x @ fc0.weight.T
        old_mean = bn.running_mean.clone()
        error_before = (fc0(x) - float_out).mean(0)
    assert error_before.abs().max() > 1e-3
    assert correct_biases(model, images) == 2  # fc0 and fc1 (the output layer is not corrected)
    assert fc0.bias is None and model.layers.fc1.linear.bias is None  # folded, structure unchanged
    # BN(W_q x + c) == BN'(W_q x) with mean' = mean - c, c = E[W x - W_q x] over the calibration set
    assert torch.allclose(old_mean - bn.running_mean, -error_before, atol=1e-4)
    assert not torch.equal(model.layers.fc1.bn.running_mean, trained_twin.layers.fc1.bn.running_mean)


def test_learned_round_keeps_the_grid_and_changes_some_roundings(trained_twin, digits):
    model = _quantized(trained_twin, 4, 8)
    images = digits[0].images[:200]
    calibrate(model, images)
    layer = model.layers.fc1.linear
    nearest = layer.quant_weight()
    assert apply_learned_round(model, trained_twin, images, iters=30) == 3
    rounded = layer.quant_weight()
    assert torch.equal(rounded.scale, nearest.scale)
    ints = rounded.int()
    assert ints.abs().max().item() == 7 and not torch.equal(ints, nearest.int())
    assert (ints - nearest.int()).abs().max().item() <= 1  # floor or ceil of the float weight
    assert not any(isinstance(m, LearnedRoundSte) for m in model.modules())  # baked into the weights


def test_ptq_config_errors(digits):
    model = build_model("tfc", in_shape=(1, 8, 8), hidden=HIDDEN)
    with pytest.raises(ConfigError, match="calibration_samples must be >= 1"):
        post_training_quantize(model, digits[0], FLOAT, calibration_samples=0, progress=False)
    with pytest.raises(ConfigError, match="learned_round_iters must be >= 1"):
        apply_learned_round(model, float_twin(model), digits[0].images[:10], iters=0)


def test_ptq_result_compiles_and_verifies(digits, tmp_path):
    train_set, test_set = digits
    torch.manual_seed(0)
    model = build_model("tfc", in_shape=(1, 8, 8), hidden=HIDDEN, weight_bits=4, act_bits=4, layer_bits={"fc0": {"weight_bits": 8}})
    result = post_training_quantize(model, train_set, FLOAT, calibration_samples=200, learned_round=True,
                                    learned_round_iters=20, progress=False)
    assert set(result.timings) == {"equalize", "load", "calibration", "learned_round", "bias_correction"}
    assert result.quantize_seconds == pytest.approx(sum(result.timings.values()))
    assert (result.equalized_regions, result.corrected_layers, result.rounded_layers) == (2, 2, 3)
    float_acc, acc = evaluate(result.float_model, test_set), evaluate(model, test_set)
    assert float_acc > 0.85 and acc > float_acc - 0.05
    onnx = tmp_path / "ptq.onnx"
    export_qonnx(model, onnx, (1, 8, 8))
    x = test_set.images[:50].astype(np.float32)
    built = build(onnx, build_config(target="pynq-z1", target_fps=10000, verify_samples=50), tmp_path / "out",
                  verify_inputs=x, reference=torch_reference(model, x), accuracy=acc)
    assert built.report.verification.passed
    assert [s.name for s in built.report.verification.stages][0] == "qonnx"
