"""Workarounds for Brevitas 0.13.4 behaviour, each with its reason (tests/compat/test_brevitas.py)."""

from __future__ import annotations

import warnings

import numpy as np


def hide_optional_kernel_warning() -> None:
    """Hide Brevitas' import-time warning that the optional ``fast_hadamard_transform`` kernel is missing.

    Reason: Brevitas warns on import when that CUDA kernel package is absent; qflow uses no
    Hadamard rotations, so the warning is noise on every ``qflow`` command. Called once by the
    command-line entry point (an application-level choice, not a library side effect).
    """
    warnings.filterwarnings("ignore", message="fast_hadamard_transform")


def activation_quantizers(module) -> list:
    """The integer quantizers inside ``module``'s enabled activation-quantizer proxies, in module order.

    Reason: Brevitas returns a quantizer's output (a ``QuantTensor``) but keeps its input, the
    value that was rounded, inside ``ActQuantProxyFromInjector.fused_activation_quant_proxy``
    (its ``activation_impl`` first, then ``tensor_quant``, the module that rounds). That input is
    what an exported ``Quant``/``BipolarQuant`` node reads, so a forward pre-hook on
    ``tensor_quant`` sees the same value the graph's quantizer does.
    """
    from brevitas.proxy.runtime_quant import ActQuantProxyFromInjector

    found = []
    for proxy in module.modules():
        if isinstance(proxy, ActQuantProxyFromInjector) and proxy.is_quant_enabled:
            fused = getattr(proxy, "fused_activation_quant_proxy", None)
            if fused is not None and getattr(fused, "tensor_quant", None) is not None:
                found.append(fused.tensor_quant)
    return found


def run_recording_quantizer_inputs(module, x):
    """``module(x)`` and, in call order, the input of every activation quantizer call it made
    (:func:`activation_quantizers`); a quantizer shared by several layers appears once per call."""
    import torch

    seen: list[np.ndarray] = []

    def record(_quantizer, args):
        seen.append(args[0].detach().float().cpu().numpy().copy())

    handles = [q.register_forward_pre_hook(record) for q in dict.fromkeys(activation_quantizers(module))]
    try:
        with torch.no_grad():
            y = module(x)
    finally:
        for h in handles:
            h.remove()
    return y, seen
