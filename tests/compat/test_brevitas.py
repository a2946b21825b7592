"""The Brevitas workarounds are still needed, and work."""

import subprocess
import sys

import brevitas.nn as qnn
import numpy as np
import torch

from flow.compat.brevitas import activation_quantizers, run_recording_quantizer_inputs

_IMPORT = "import brevitas.graph.equalize"


def _stderr(code: str) -> str:
    return subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120).stderr


def test_brevitas_warns_about_a_missing_optional_kernel_on_import():
    assert "fast_hadamard_transform" in _stderr(_IMPORT)


def test_the_warning_is_hidden_after_the_cli_asks():
    code = f"from flow.compat.brevitas import hide_optional_kernel_warning; hide_optional_kernel_warning(); {_IMPORT}"
    assert "fast_hadamard_transform" not in _stderr(code)


class _Shared(torch.nn.Module):
    """QuantIdentity -> QuantLinear -> QuantReLU, and the QuantIdentity once more on the result (a shared quantizer)."""

    def __init__(self):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=4, return_quant_tensor=False)
        self.fc = qnn.QuantLinear(6, 5, bias=True, weight_bit_width=4)
        self.act = qnn.QuantReLU(bit_width=3)

    def forward(self, x):
        return self.inp(self.act(self.fc(self.inp(x))))


def test_brevitas_keeps_a_quantizers_input_inside_its_proxy():
    """What ``activation_quantizers`` reads: the proxy's fused activation and rounding modules; its output is rounded."""
    net = _Shared().eval()
    proxy = net.act.act_quant
    assert proxy.fused_activation_quant_proxy.tensor_quant in activation_quantizers(net)
    x = torch.linspace(-2, 2, 12).reshape(2, 6)
    with torch.no_grad():
        out = net.act(net.fc(x))
    assert not torch.equal(out, torch.relu(net.fc(x)))  # the output is the rounded value; the input is not kept on it
    assert len(activation_quantizers(net)) == 2  # QuantLinear's own input/output proxies are disabled


def test_every_quantizer_call_is_recorded_in_order_with_the_value_it_rounds():
    torch.manual_seed(0)
    net = _Shared().eval()
    x = torch.randn(3, 6)
    y, seen = run_recording_quantizer_inputs(net, x)
    assert [s.shape for s in seen] == [(3, 6), (3, 5), (3, 5)]  # inp, act, inp again
    np.testing.assert_array_equal(seen[0], x.numpy())
    with torch.no_grad():
        h = net.fc(net.inp(x))
        np.testing.assert_allclose(seen[1], torch.relu(h).numpy(), rtol=1e-6)  # the ReLU comes before the rounding
        np.testing.assert_allclose(seen[2], net.act(h).numpy(), rtol=1e-6)
        np.testing.assert_array_equal(y.numpy(), net(x).numpy())
    assert not any(q._forward_pre_hooks for q in (net.inp.act_quant.fused_activation_quant_proxy.tensor_quant,))  # hooks removed
