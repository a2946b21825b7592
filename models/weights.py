"""Weight quantizers of the survey's low-bit techniques, as Brevitas quantizer injectors.

========================  ====================================  ===============================
weight kind               values (integers x scale)             exported as
========================  ====================================  ===============================
binary (``1``)            {-1, +1} x 1                          ``BipolarQuant``, scale 1
``"xnor"``                {-1, +1} x α_c, α_c = E|w_c|          ``BipolarQuant``, scale per channel
``"ternary"`` (TWN)       {-1, 0, +1} x α_c, zero if |w| <= Δ_c  ``Quant`` 2 bit narrow, scale α
``2`` (four levels)       {-2, -1, 0, +1} x s, s = 1.3 E|w|     ``Quant`` 2 bit, not narrow
========================  ====================================  ===============================

* Binary (BinaryConnect): sign weights with a constant scale of 1; the latent float
  weights are clipped in place to [-1, 1]; the BatchNorm after the layer absorbs the
  missing scale. A classifier's binary output layer has nothing after it but the argmax,
  so its constant is 0.1 (:data:`OUTPUT_BINARY_SCALE`), which keeps the logits trainable.
* XNOR-Net (Rastegari et al., 2016): ``α_c * sign(w)`` with ``α_c = E|w_c|`` per output
  channel, latent weights clipped to [-0.1, 0.1].
* TWN (Li & Liu, 2016): ``Δ_c = 0.7 * E|w_c|`` and ``α_c = E[|w| : |w| > Δ_c]`` per output
  channel.
* Four-level 2-bit integers: ``clamp(round(w / s), -2, 1) * s`` with ``s = 1.3 * E|w|``
  per tensor (1.3 minimises the quantization error of Gaussian weights on this grid).

The scales are statistics of the weights, recomputed every step (no learned state:
deterministic and complete ``state_dict``); gradients pass straight through to the float
weights. A classifier's output layer takes one scale per tensor (``output_layer=True`` in
:func:`weight_quant_for`): FINN absorbs its scalar ``Mul`` into the final ``TopK``.

Brevitas exports the *float* weight and lets the ``Quant`` node round it, which does not
reproduce TWN's threshold; :func:`bake_quantized_weights` writes each ternary layer's
quantized weight into its float weight first.

>>> import torch, brevitas.nn as qnn
>>> _ = torch.manual_seed(0)
>>> fc = qnn.QuantLinear(16, 4, bias=False, weight_quant=TwnTernaryWeight)
>>> w, qw = fc.weight.detach(), fc.quant_weight()
>>> ints = torch.round(qw.value / qw.scale)
>>> sorted(torch.unique(ints).tolist()), tuple(qw.scale.shape), int(qw.bit_width)
([-1.0, 0.0, 1.0], (4, 1), 2)
>>> bool(((ints == 0) == (w.abs() <= 0.7 * w.abs().mean(dim=1, keepdim=True))).all())
True
>>> fc = qnn.QuantLinear(16, 4, bias=False, weight_quant=XnorBinaryWeight)
>>> torch.allclose(fc.quant_weight().scale, fc.weight.detach().abs().mean(dim=1, keepdim=True))
True
"""

from __future__ import annotations

from typing import Any

import torch
from brevitas.inject.enum import QuantType, ScalingImplType, ScalingPerOutputType
from brevitas.quant import Int8WeightPerTensorFloat, SignedBinaryWeightPerTensorConst
from brevitas.quant.solver import WeightQuantSolver
from torch import Tensor, nn

__all__ = [
    "TWN_DELTA_FACTOR",
    "INT2_SCALE_FACTOR",
    "BinaryWeight",
    "FourLevelInt2Quant",
    "FourLevelInt2Weight",
    "TwnTernaryQuant",
    "TwnTernaryWeight",
    "XnorBinaryQuant",
    "XnorBinaryWeight",
    "bake_quantized_weights",
    "twn_threshold",
    "weight_quant_for",
]

#: TWN's threshold factor: Δ = 0.7 * E|w| (Li & Liu, 2016, eq. 9).
TWN_DELTA_FACTOR = 0.7
#: Four-level 2-bit scale factor: s = 1.3 * E|w|.
INT2_SCALE_FACTOR = 1.3
#: Constant scale of a binary *output* layer: its logits are integers up to the fan-in, and
#: x0.1 keeps them in softmax's useful range while training (FINN absorbs it into TopK).
OUTPUT_BINARY_SCALE = 0.1
#: Smallest scale a statistic may give (an all-zero channel would give 0).
MIN_SCALE = 1e-8


def _reduce_dims(x: Tensor, per_channel: bool, channel_dim: int) -> tuple[int, ...]:
    return tuple(d for d in range(x.dim()) if not (per_channel and d == channel_dim))


def _ste(x: Tensor, q: Tensor) -> Tensor:
    """``q`` forward, identity gradient to ``x`` backward."""
    return x + (q - x).detach()


def _shape(stat: Tensor, per_channel: bool) -> Tensor:
    return stat if per_channel else stat.reshape(())


def twn_threshold(w: Tensor, delta_factor: float = TWN_DELTA_FACTOR, per_channel: bool = True,
                  channel_dim: int = 0) -> tuple[Tensor, Tensor]:
    """TWN's ``(Δ, α)``: ``Δ = f * E|w|``, ``α = E[|w| : |w| > Δ]`` (shapes broadcast against ``w``).

    >>> d, a = twn_threshold(torch.tensor([[0.1, -0.5, 1.0, 0.0]]))
    >>> round(float(d), 4), round(float(a), 4)
    (0.28, 0.75)
    """
    dims = _reduce_dims(w, per_channel, channel_dim)
    absw = w.detach().abs()
    delta = delta_factor * absw.mean(dim=dims, keepdim=True)
    keep = (absw > delta).to(absw.dtype)
    alpha = (absw * keep).sum(dim=dims, keepdim=True) / keep.sum(dim=dims, keepdim=True).clamp_min(1.0)
    return delta, alpha.clamp_min(MIN_SCALE)


class _StatsQuant(nn.Module):
    """Common state of the statistics quantizers: bit width, zero point, per-channel flag."""

    def __init__(self, bits: float, scaling_per_output_type: ScalingPerOutputType, output_channel_dim: int = 0):
        super().__init__()
        self.per_channel = scaling_per_output_type == ScalingPerOutputType.CHANNEL
        self.channel_dim = int(output_channel_dim)
        self.register_buffer("bit_width", torch.tensor(float(bits)), persistent=False)
        self.register_buffer("zero_point", torch.tensor(0.0), persistent=False)


class TwnTernaryQuant(_StatsQuant):
    """``{-α, 0, +α}`` with TWN's threshold (Brevitas ``tensor_quant`` contract: value, scale, zero point, bits)."""

    def __init__(self, delta_factor: float, scaling_per_output_type: ScalingPerOutputType, output_channel_dim: int = 0):
        super().__init__(2, scaling_per_output_type, output_channel_dim)
        if not 0.0 < float(delta_factor) < 3.0:
            raise ValueError(f"TWN delta_factor must be in (0, 3), got {delta_factor!r}")
        self.delta_factor = float(delta_factor)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        delta, alpha = twn_threshold(x, self.delta_factor, self.per_channel, self.channel_dim)
        t = torch.sign(x.detach()) * (x.detach().abs() > delta).to(x.dtype)
        return _ste(x, t * alpha), _shape(alpha, self.per_channel), self.zero_point, self.bit_width


class XnorBinaryQuant(_StatsQuant):
    """``α * sign(w)`` (``sign(0) = +1``), ``α = E|w|``; latent weights clipped in place to ±``clamp`` while training."""

    def __init__(self, scaling_per_output_type: ScalingPerOutputType, output_channel_dim: int = 0, clamp: float = 0.1):
        super().__init__(1, scaling_per_output_type, output_channel_dim)
        self.clamp = float(clamp)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.clamp > 0 and self.training:
            with torch.no_grad():
                x.clamp_(-self.clamp, self.clamp)
        dims = _reduce_dims(x, self.per_channel, self.channel_dim)
        alpha = x.detach().abs().mean(dim=dims, keepdim=True).clamp_min(MIN_SCALE)
        sign = torch.where(x.detach() >= 0, 1.0, -1.0).to(x.dtype)
        return _ste(x, sign * alpha), _shape(alpha, self.per_channel), self.zero_point, self.bit_width


class FourLevelInt2Quant(_StatsQuant):
    """``clamp(round(w / s), -2, 1) * s`` with ``s = scale_factor * E|w|``: round to nearest, as the exported ``Quant``."""

    def __init__(self, scale_factor: float, scaling_per_output_type: ScalingPerOutputType, output_channel_dim: int = 0):
        super().__init__(2, scaling_per_output_type, output_channel_dim)
        self.scale_factor = float(scale_factor)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dims = _reduce_dims(x, self.per_channel, self.channel_dim)
        s = (self.scale_factor * x.detach().abs().mean(dim=dims, keepdim=True)).clamp_min(MIN_SCALE)
        q = torch.clamp(torch.round(x.detach() / s), -2.0, 1.0) * s
        return _ste(x, q), _shape(s, self.per_channel), self.zero_point, self.bit_width


class TwnTernaryWeight(WeightQuantSolver):
    """Ternary weights, TWN threshold, α per output channel (override ``weight_delta_factor``, ``weight_scaling_per_output_type``)."""

    quant_type = QuantType.TERNARY
    tensor_quant = TwnTernaryQuant
    delta_factor = TWN_DELTA_FACTOR
    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    scaling_impl_type = ScalingImplType.STATS
    bit_width = 2
    narrow_range = True
    signed = True


class XnorBinaryWeight(WeightQuantSolver):
    """XNOR-Net binary weights ``α_c * sign(w)``, α_c = E|w_c| per output channel."""

    quant_type = QuantType.BINARY
    tensor_quant = XnorBinaryQuant
    scaling_per_output_type = ScalingPerOutputType.CHANNEL
    scaling_impl_type = ScalingImplType.STATS
    clamp = 0.1
    bit_width = 1
    narrow_range = True
    signed = True


class BinaryWeight(SignedBinaryWeightPerTensorConst):
    """Sign weights {-1, +1} with a constant scale of 1 (exported as ``BipolarQuant`` with scale 1)."""

    scaling_const = 1.0


class FourLevelInt2Weight(WeightQuantSolver):
    """Signed 2-bit integers with all four levels {-2, -1, 0, +1} x s, s = 1.3 E|w| per tensor."""

    quant_type = QuantType.INT
    tensor_quant = FourLevelInt2Quant
    scale_factor = INT2_SCALE_FACTOR
    scaling_per_output_type = ScalingPerOutputType.TENSOR
    scaling_impl_type = ScalingImplType.STATS
    bit_width = 2
    narrow_range = False
    signed = True


def weight_quant_for(bits: int | str, *, output_layer: bool = False) -> dict[str, Any]:
    """Keyword arguments selecting the weight quantizer of a ``QuantLinear``/``QuantConv2d``.

    ``bits``: 1 (binary), ``"xnor"``, ``"ternary"``, 2 (four levels) or 3..8 (signed
    narrow-range integers with one learned float scale per tensor). The caller validates it.

    >>> sorted(weight_quant_for("xnor", output_layer=True))
    ['weight_quant', 'weight_scaling_per_output_type']
    """
    if bits == 1:
        return {"weight_quant": BinaryWeight, **({"weight_scaling_const": OUTPUT_BINARY_SCALE} if output_layer else {})}
    if bits == 2:
        return {"weight_quant": FourLevelInt2Weight}
    if bits in ("xnor", "ternary"):
        kw: dict[str, Any] = {"weight_quant": XnorBinaryWeight if bits == "xnor" else TwnTernaryWeight}
        if output_layer:
            kw["weight_scaling_per_output_type"] = ScalingPerOutputType.TENSOR
        return kw
    return {"weight_quant": Int8WeightPerTensorFloat, "weight_bit_width": int(bits)}


@torch.no_grad()
def bake_quantized_weights(model: nn.Module) -> nn.Module:
    """Overwrite the float weight of every TWN-ternary layer with its quantized value; return ``model``.

    Call it on a copy right before export: Brevitas exports the float weight and a ``Quant``
    node that rounds it to nearest, which reproduces every other quantizer here but not
    TWN's threshold (it would zero ``|w| < α/2`` instead of ``|w| <= Δ``). A baked TWN weight
    is a fixed point: Δ and α recompute to the same zeros and the same α. (A four-level
    weight is not: its scale ``1.3 E|w|`` would change, so it is exported unbaked.)

    >>> import brevitas.nn as qnn
    >>> fc = qnn.QuantLinear(8, 2, bias=False, weight_quant=TwnTernaryWeight)
    >>> before = fc.quant_weight().value.detach().clone()
    >>> torch.equal(bake_quantized_weights(fc).weight, before), torch.equal(fc.quant_weight().value, before)
    (True, True)
    """
    for m in model.modules():
        wq = getattr(m, "weight_quant", None)
        if isinstance(getattr(wq, "tensor_quant", None), TwnTernaryQuant) and wq.is_quant_enabled:
            m.weight.copy_(m.quant_weight().value.detach())
    return model
