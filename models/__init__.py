"""qflow's reference architectures (Brevitas), by name.

Every model takes raw pixels (float tensors with integer values 0..255) of shape
``(N, *model.input_shape)``, scales them by 1/255 internally and returns logits, so its
QONNX export has a UINT8 input that FINN streamlines into integer thresholds.

========  ==========================================  ============
name      topology                                    in_shape
========  ==========================================  ============
tfc       MLP 64-64-64                                (1, 28, 28)
sfc       MLP 256-256-256                             (1, 28, 28)
lfc       MLP 1024-1024-1024                          (1, 28, 28)
cnv       FINN's CNV: 6 convs, FC 512-512             (3, 32, 32)
cnv28     CNV for 28x28: 5 convs, FC 512-512          (1, 28, 28)
========  ==========================================  ============

Common keyword arguments: ``weight_bits`` (1, "xnor", "ternary" or 2..8), ``act_bits`` (1..8),
``input_bits`` (default ``act_bits``), ``layer_bits`` (per-layer overrides keyed by
``fc0``.., ``conv0``..), ``in_shape``, ``num_classes``, ``dropout``; MLPs also take
``hidden``, CNVs ``convs`` and ``fc``.

>>> import torch
>>> from models import build_model, available_models
>>> available_models()
['cnv', 'cnv28', 'lfc', 'sfc', 'tfc']
>>> model = build_model("tfc", weight_bits=2, act_bits=2, layer_bits={"fc0": {"weight_bits": 4}})
>>> model.input_shape
(1, 28, 28)
>>> model.eval()(torch.zeros(1, *model.input_shape)).shape
torch.Size([1, 10])
>>> build_model("resnet")
Traceback (most recent call last):
...
flow.core.errors.UnknownModelError: unknown model 'resnet'; available models: cnv, cnv28, lfc, sfc, tfc
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from flow.core.errors import ConfigError, UnknownModelError
from models.cnv import CNV, CNV28, CNV32
from models.fc import FC, LFC, SFC, TFC

__all__ = ["MODELS", "available_models", "build_model", "FC", "CNV"]

#: Registered model constructors, by name.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "tfc": TFC,
    "sfc": SFC,
    "lfc": LFC,
    "cnv": CNV32,
    "cnv28": CNV28,
}


def available_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(MODELS)


def _accepted_kwargs(name: str) -> set[str]:
    cls = FC if name in ("tfc", "sfc", "lfc") else CNV
    params = inspect.signature(cls.__init__).parameters
    return {p for p in params if p not in ("self", "name")}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with the given options.

    Raises UnknownModelError for an unregistered name and ConfigError for an unknown
    option or an invalid value (bit widths, layer names, shapes).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in MODELS:
        raise UnknownModelError(f"unknown model {name!r}; available models: {', '.join(available_models())}")
    unknown = sorted(set(kwargs) - _accepted_kwargs(key))
    if unknown:
        valid = ", ".join(sorted(_accepted_kwargs(key)))
        raise ConfigError(f"{key}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    return MODELS[key](**kwargs)
