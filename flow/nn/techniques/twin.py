"""The float twin of a quantized qflow model, shared by the techniques that train in float.

PTQ trains the twin and quantizes from it, distillation trains one as a teacher, low-rank
factorization may pretrain one before factoring.

>>> import torch
>>> from models import build_model
>>> model = build_model("tfc", weight_bits=4, act_bits=4)
>>> twin = float_twin(model)
>>> [type(m).__name__ for m in twin.layers.fc0]
['Linear', 'BatchNorm1d', 'ReLU']
>>> _ = load_float_weights(model, twin)      # after training the twin
"""

from __future__ import annotations

import copy

import brevitas.nn as qnn
import torch
from torch import nn

from flow.core.errors import ConfigError
from flow.nn.data import Dataset
from flow.nn.train import TrainConfig, train
from models.quant import PIXEL_MAX, InputQuant

__all__ = ["FloatInput", "act_bits", "float_twin", "load_float_weights", "pretrain_float"]


class FloatInput(nn.Module):
    """The float twin of :class:`models.quant.InputQuant`: raw pixels -> [0, 1] (or [-1, 1])."""

    def __init__(self, bipolar: bool = False):
        super().__init__()
        self.bipolar = bipolar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / PIXEL_MAX
        return 2.0 * x - 1.0 if self.bipolar else x


def act_bits(module: nn.Module) -> int:
    return int(module.act_quant.bit_width().item()) if module.act_quant.is_quant_enabled else 32


def _float_of(m: nn.Module) -> nn.Module | None:
    """The float replacement of one quantized module, or None to keep (and recurse into) it."""
    if isinstance(m, InputQuant):
        return FloatInput(m.bipolar)
    if isinstance(m, qnn.QuantLinear):
        f = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    elif isinstance(m, qnn.QuantConv2d):
        f = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                      dilation=m.dilation, groups=m.groups, bias=m.bias is not None)
    elif isinstance(m, qnn.QuantReLU):
        return nn.ReLU()
    elif isinstance(m, qnn.QuantIdentity):
        return nn.Hardtanh() if act_bits(m) == 1 else nn.Identity()
    else:
        return None
    with torch.no_grad():
        f.weight.copy_(m.weight)
        if m.bias is not None:
            f.bias.copy_(m.bias)
    return f


def _replace_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        rep = _float_of(child)
        if rep is None:
            _replace_children(child)
        else:
            setattr(module, name, rep)


def float_twin(model: nn.Module) -> nn.Module:
    """A plain-PyTorch copy of ``model`` (same module names and weights, no quantizers).

    >>> from models import build_model
    >>> twin = float_twin(build_model("tfc"))
    >>> type(twin.layers.fc0.linear).__name__, type(twin.layers.fc0.act).__name__
    ('Linear', 'ReLU')
    """
    twin = copy.deepcopy(model)
    rep = _float_of(twin)
    if rep is not None:
        return rep
    _replace_children(twin)
    return twin


def load_float_weights(model: nn.Module, float_model: nn.Module) -> nn.Module:
    """Copy ``float_model``'s weights and BN statistics into the quantized ``model`` (same names).

    Quantizer parameters (scales) are left as they are; a float tensor the quantized model
    does not have, or a shape mismatch, raises :class:`ConfigError`.
    """
    state = float_model.state_dict()
    own = model.state_dict()
    bad = sorted(k for k, v in state.items() if k not in own or own[k].shape != v.shape)
    if bad:
        raise ConfigError(f"float weights do not fit the quantized model: {', '.join(bad[:5])}")
    missing = [k for k in own if k not in state and ("weight" == k.rsplit(".", 1)[-1] and "quant" not in k)]
    if missing:
        raise ConfigError(f"float model lacks weights of the quantized model: {', '.join(missing[:5])}")
    model.load_state_dict(state, strict=False)
    return model


def pretrain_float(model: nn.Module, dataset: Dataset, cfg: TrainConfig, *, progress: bool = True) -> float:
    """Train ``model``'s float twin with ``cfg`` and load the result into ``model``; return seconds.

    Used to give a low-rank factorization trained weights to decompose.
    """
    twin = float_twin(model)
    result = train(twin, dataset, cfg, progress=progress)
    load_float_weights(model, twin)
    return result.seconds
