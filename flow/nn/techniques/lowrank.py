"""Low-rank factorization of quantized layers by truncated SVD, applied before quantization/QAT.

A ``QuantLinear`` with weight ``W`` (out x in) becomes two quantized layers through a rank-``r``
bottleneck, ``W ~= U_r S_r V_r^T``::

    first  = QuantLinear(in, r)   weight sqrt(S_r) V_r^T     (same weight quantizer as the layer)
    mid    = QuantIdentity        signed int, ``mid_bits`` (default: the layer's act bits, >= 2)
    second = QuantLinear(r, out)  weight U_r sqrt(S_r)       (same weight quantizer, keeps the bias)

A ``QuantConv2d`` (KxK, C -> out channels) becomes a KxK conv with ``r`` output channels, the
same quantizer, then a 1x1 conv ``r -> out`` (SVD of the weight reshaped to out x C*K*K).

Why the middle quantizer: FINN maps each MatMul to an MVAU whose *input* must be a narrow
integer stream. Without a quantizer between the factors the second MVAU would consume the
first one's raw accumulator (20+ bits wide, an expensive and unusual MVAU); with the signed
``QuantIdentity`` FINN streamlines the first factor into an MVAU with thresholds (signed
``mid_bits`` output) feeding a second MVAU, exactly like a hidden layer without BatchNorm.
Its scale is a Brevitas runtime-statistics parameter (``Int8ActPerTensorFloat``); pass
``calibration_images`` to initialise it from data, otherwise QAT's first steps do.

``S_r`` is split evenly (``sqrt`` on both sides) so both factors have similar ranges, which
suits their per-tensor weight quantizers. The rank is given (``rank``) or chosen as the
smallest ``r`` keeping a fraction ``energy`` of the squared singular values.

>>> import torch
>>> from models import build_model
>>> model = build_model("tfc", weight_bits=4, act_bits=4)
>>> factorize(model, rank=8, layers=["fc0", "fc1"])
{'fc0': 8, 'fc1': 8}
>>> model.layers.fc0.linear.first.weight.shape, model.layers.fc0.linear.second.weight.shape
(torch.Size([8, 784]), torch.Size([64, 8]))
>>> model.eval()(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
>>> choose_rank(torch.tensor([3.0, 2.0, 1.0]), energy=0.9)    # 9/14 < 0.9 <= 13/14
2
>>> factorize(build_model("tfc"), rank=65, layers=["fc1"])
Traceback (most recent call last):
...
flow.core.errors.ConfigError: lowrank: fc1: rank 65 is impossible; it must be between 1 and 64 (fc1 is 64 x 64)
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import replace
from typing import Any, ClassVar, Sequence

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.graph.calibrate import calibration_mode
from brevitas.quant import Int8ActPerTensorFloat
from pydantic import Field, model_validator
from torch import nn

from flow.core.errors import ConfigError
from flow.nn.techniques.base import Job, Options, TechniqueBase
from flow.nn.techniques.twin import pretrain_float

__all__ = ["LowRank", "calibrate_mids", "check_factorization", "choose_rank", "default_layers", "factor_layer", "factorize", "layer_rank_limit"]


class LowRank(nn.Sequential):
    """``first -> mid -> second``: a factored layer (see the module docstring)."""

    def __init__(self, first: nn.Module, mid: nn.Module, second: nn.Module):
        super().__init__(OrderedDict(first=first, mid=mid, second=second))

    @property
    def rank(self) -> int:
        return int(self.first.weight.shape[0])


def _is_conv(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d)


def layer_rank_limit(layer: nn.Module) -> tuple[int, int, int]:
    """``(max_rank, rows, cols)`` of the layer's weight seen as a matrix (out x in*K*K)."""
    w = layer.weight
    rows, cols = int(w.shape[0]), int(np.prod(w.shape[1:]))
    return min(rows, cols), rows, cols


def choose_rank(singular_values: torch.Tensor, energy: float) -> int:
    """Smallest ``r`` with ``sum(s[:r]^2) >= energy * sum(s^2)`` (``0 < energy <= 1``)."""
    if not 0 < energy <= 1:
        raise ConfigError(f"lowrank: energy must be in (0, 1], got {energy!r}")
    e = singular_values.double() ** 2
    total = float(e.sum())
    if total == 0:
        return 1
    kept = torch.cumsum(e, 0) / total
    return int(torch.searchsorted(kept, torch.tensor(energy - 1e-12, dtype=kept.dtype)).item()) + 1


def _mid_quant(bits: int) -> qnn.QuantIdentity:
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=max(2, int(bits)))


def factor_layer(layer: nn.Module, name: str, *, rank: int | None = None, energy: float | None = None, mid_bits: int = 8) -> LowRank:
    """The :class:`LowRank` replacement of one ``QuantLinear``/``QuantConv2d`` (not modified)."""
    if (rank is None) == (energy is None):
        raise ConfigError("lowrank: give exactly one of rank and energy")
    if not isinstance(layer, (qnn.QuantLinear, qnn.QuantConv2d)):
        raise ConfigError(f"lowrank: {name} is a {type(layer).__name__}; only QuantLinear and QuantConv2d can be factored")
    limit, rows, cols = layer_rank_limit(layer)
    with torch.no_grad():
        w = layer.weight.detach().reshape(rows, cols).double()
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
    if energy is not None:
        rank = choose_rank(s, energy)
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= limit:
        raise ConfigError(f"lowrank: {name}: rank {rank!r} is impossible; it must be between 1 and {limit} ({name} is {rows} x {cols})")
    rank = int(rank)
    root = s[:rank].sqrt()
    w1 = (root[:, None] * vh[:rank]).float()
    w2 = (u[:, :rank] * root[None, :]).float()
    wq = layer.weight_quant.quant_injector
    has_bias = layer.bias is not None
    if _is_conv(layer):
        if layer.groups != 1:
            raise ConfigError(f"lowrank: {name}: grouped convolutions (groups={layer.groups}) cannot be factored")
        first = qnn.QuantConv2d(layer.in_channels, rank, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                                dilation=layer.dilation, bias=False, weight_quant=wq)
        second = qnn.QuantConv2d(rank, layer.out_channels, 1, bias=has_bias, weight_quant=wq)
        w1 = w1.reshape(rank, *layer.weight.shape[1:])
        w2 = w2.reshape(rows, rank, 1, 1)
    else:
        first = qnn.QuantLinear(layer.in_features, rank, bias=False, weight_quant=wq)
        second = qnn.QuantLinear(rank, layer.out_features, bias=has_bias, weight_quant=wq)
    with torch.no_grad():
        first.weight.copy_(w1)
        second.weight.copy_(w2)
        if has_bias:
            second.bias.copy_(layer.bias)
    return LowRank(first, _mid_quant(mid_bits), second)


def _qflow_layers(model: nn.Module) -> dict[str, tuple[nn.Module, str, nn.Module]] | None:
    """``name -> (parent, attribute, layer)`` for a qflow model (blocks in ``model.layers``)."""
    if not (hasattr(model, "layer_names") and isinstance(getattr(model, "layers", None), nn.ModuleDict)):
        return None
    out = {}
    for name in model.layer_names:
        block = model.layers[name]
        attr = next(iter(block._modules))
        out[name] = (block, attr, block._modules[attr])
    return out


def default_layers(model: nn.Module) -> list[str]:
    """The hidden (non-output) Linear layers of a qflow model, not yet factored."""
    found = _qflow_layers(model)
    if found is None:
        raise ConfigError("lowrank: name the layers to factor (this model has no qflow layer names)")
    names = list(found)[:-1]
    return [n for n in names if isinstance(found[n][2], qnn.QuantLinear)]


def _act_bits(model: nn.Module, name: str, default: int = 8) -> int:
    bits = getattr(model, "bits", {}).get(name, {})
    ab = bits.get("act_bits")
    return int(ab) if ab else default


def _targets(model: nn.Module, layers: Sequence[str] | None) -> dict[str, tuple[nn.Module, str, nn.Module]]:
    """``name -> (parent, attribute, layer)`` of the layers to factor; ConfigError for bad names."""
    found = _qflow_layers(model)
    names = list(layers) if layers is not None else default_layers(model)
    if not names:
        raise ConfigError("lowrank: no layers to factor")
    modules = dict(model.named_modules())
    targets: dict[str, tuple[nn.Module, str, nn.Module]] = {}
    for name in names:
        if found is not None and name in found:
            targets[name] = found[name]
        elif found is None and name and name in modules:
            parent, _, attr = name.rpartition(".")
            targets[name] = (modules[parent], attr, modules[name])
        else:
            valid = ", ".join(found) if found is not None else "dotted module names"
            raise ConfigError(f"lowrank: unknown layer {name!r}; valid layers: {valid}")
        layer = targets[name][2]
        if isinstance(layer, LowRank):
            raise ConfigError(f"lowrank: {name} is already factored")
        if not isinstance(layer, (qnn.QuantLinear, qnn.QuantConv2d)):
            raise ConfigError(f"lowrank: {name} is a {type(layer).__name__}; only QuantLinear and QuantConv2d can be factored")
    return targets


def check_factorization(model: nn.Module, *, rank: int | None = None, energy: float | None = None,
                        layers: Sequence[str] | None = None) -> list[str]:
    """Validate a factorization without doing it (names, rank bounds); return the layer names.

    Cheap, so a recipe can fail before any training starts.
    """
    if (rank is None) == (energy is None):
        raise ConfigError("lowrank: give exactly one of rank and energy")
    if energy is not None and not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise ConfigError(f"lowrank: energy must be in (0, 1], got {energy!r}")
    targets = _targets(model, layers)
    for name, (_, _, layer) in targets.items():
        limit, rows, cols = layer_rank_limit(layer)
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= limit):
            raise ConfigError(f"lowrank: {name}: rank {rank!r} is impossible; it must be between 1 and {limit} ({name} is {rows} x {cols})")
    return list(targets)


def factorize(
    model: nn.Module,
    *,
    rank: int | None = None,
    energy: float | None = None,
    layers: Sequence[str] | None = None,
    mid_bits: int | None = None,
    calibration_images: np.ndarray | torch.Tensor | None = None,
) -> dict[str, int]:
    """Factor ``layers`` of ``model`` in place; return the rank chosen per layer.

    ``layers`` are qflow layer names (``fc0``, ``conv2``, ...; default: every hidden Linear
    layer) or, for other models, dotted module names. Every layer is checked before any is
    replaced, so a bad rank or name raises :class:`ConfigError` and leaves ``model`` as it
    was. ``mid_bits`` defaults to each layer's activation bit width (8 for the output layer),
    at least 2. With ``calibration_images`` (raw pixels) the middle quantizers' scales are
    calibrated on them (Brevitas ``calibration_mode``); otherwise the first training steps
    (QAT) or PTQ's calibration set them.
    """
    check_factorization(model, rank=rank, energy=energy, layers=layers)
    targets = _targets(model, layers)
    replacements = {
        name: factor_layer(layer, name, rank=rank, energy=energy,
                           mid_bits=mid_bits if mid_bits is not None else _act_bits(model, name))
        for name, (_, _, layer) in targets.items()
    }
    for name, (parent, attr, _) in targets.items():
        setattr(parent, attr, replacements[name])
    if calibration_images is not None:
        calibrate_mids(model, calibration_images)
    return {name: rep.rank for name, rep in replacements.items()}


@torch.no_grad()
def calibrate_mids(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> None:
    """Initialise the scales of every :class:`LowRank` middle quantizer from ``images``.

    Only the middle quantizers observe (Brevitas ``calibration_mode`` on each of them); the
    rest of the network runs as it is, quantized, in eval mode.
    """
    mids = [m.mid for m in model.modules() if isinstance(m, LowRank)]
    if not mids:
        return
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    was_training = model.training
    model.eval()
    try:
        with ExitStack() as stack:
            for mid in mids:
                stack.enter_context(calibration_mode(mid))
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size])
    finally:
        model.train(was_training)


class LowRankOptions(Options):
    rank: int | None = Field(None, ge=1, le=1_000_000, description="rank of every factored layer")
    energy: float | None = Field(None, gt=0, le=1, description="or: fraction of squared singular values kept")
    layers: list[str] | None = Field(None, max_length=10_000, description="layers to factor (default: every hidden Linear layer)")
    mid_bits: int | None = Field(None, ge=2, le=8, description="bits between the factors (default: the layer's act_bits)")
    pretrain_epochs: int = Field(0, ge=0, le=100_000, description="float-train the unfactored network first, then factor it")

    @model_validator(mode="after")
    def _rank_or_energy(self) -> "LowRankOptions":
        if (self.rank is None) == (self.energy is None):
            raise ValueError("give exactly one of rank and energy")
        return self


class LowRankTechnique(TechniqueBase):
    """Factor layers by truncated SVD (after optional float pretraining), before the method trains."""

    name: ClassVar[str] = "lowrank"
    kind: ClassVar[str] = "modifier"
    options: ClassVar[type[Options]] = LowRankOptions
    search_defaults: ClassVar[dict[str, Any]] = {"energy": 0.9}

    def label(self, opts: LowRankOptions) -> str:
        where = ",".join(opts.layers) + " " if opts.layers else ""
        return f"low-rank({where}{'r=' + str(opts.rank) if opts.rank else 'energy=' + str(opts.energy)})"

    def check(self, model: nn.Module, opts: LowRankOptions, job: Job) -> None:
        check_factorization(model, rank=opts.rank, energy=opts.energy, layers=opts.layers)

    def prepare(self, model: nn.Module, opts: LowRankOptions, job: Job) -> None:
        if opts.pretrain_epochs:
            job.log(f"float pretraining before factorization ({opts.pretrain_epochs} epochs)")
            pretrain_float(model, job.train_set, replace(job.train_cfg, epochs=opts.pretrain_epochs), progress=job.progress)
        calib = None
        if job.method == "qat" and job.train_set is not None:
            calib = job.train_set.subset(min(256, len(job.train_set)), seed=job.train_cfg.seed).images
        ranks = factorize(model, rank=opts.rank, energy=opts.energy, layers=opts.layers, mid_bits=opts.mid_bits, calibration_images=calib)
        job.log("low-rank factorization: " + ", ".join(f"{k} rank {r}" for k, r in ranks.items()))
