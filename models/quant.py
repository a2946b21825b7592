"""Quantizer presets for qflow's models, built from Brevitas' own quantizer classes.

Every preset only picks a Brevitas quantizer class and overrides its bit width (and, for
activations, its initial range); nothing here re-implements quantization.

Weights (``weight_bits``):

* ``1``          -> binary: sign weights {-1, +1} with scale 1, exported as ``BipolarQuant``;
  with bipolar inputs FINN turns the layer into XNOR-popcount.
* ``"xnor"``     -> XNOR-Net: {-1, +1} times α = E|w| per output channel (``BipolarQuant``
  with a per-channel scale, which FINN folds into the next thresholds).
* ``"ternary"``  -> TWN: {-α, 0, +α}, zero where |w| <= 0.7 E|w| (three levels).
* ``2``          -> four-level integers {-2, -1, 0, +1} times s = 1.3 E|w| (not narrow range).
* ``3`` .. ``8`` -> signed narrow-range integers {-(2^(b-1)-1) .. 2^(b-1)-1} with one learned
  float scale per tensor (``Int8WeightPerTensorFloat`` with ``weight_bit_width=b``).

The binary, XNOR, ternary and four-level quantizers are :mod:`models.weights`.

Activations (``act_bits``):

* ``1``          -> bipolar sign activation {-1, +1} (``SignedBinaryActPerTensorConst``, as
  FINN's bnn-pynq ``CommonActQuant`` with ``bit_width=1``), exported as ``BipolarQuant``.
* ``2`` .. ``8`` -> unsigned ``QuantReLU`` with a learned per-tensor scale initialised from
  a max value (``Uint8ActPerTensorFloatMaxInit``, ``bit_width=b``). A parameter scale
  (instead of runtime-statistics init) keeps untrained models deterministic and their
  ``state_dict`` complete, so checkpoints of any model round-trip with ``strict=True``.

The input stage (raw pixels -> quantized input, including ``input_bits=1``) is
:class:`InputQuant`. Activation and input scales are per tensor: the input thresholds stay one shared set
(cheap in FINN). XNOR and ternary weights have one scale per output channel, which FINN
folds into the next layer's thresholds, except in the output layer: its scale is per
tensor, so its scalar ``Mul`` is absorbed into ``TopK``. The
value of the constant 1-bit scales is irrelevant: BatchNorm (or the argmax) follows.

>>> import torch
>>> from models.quant import make_activation, weight_quant_kwargs
>>> sorted(weight_quant_kwargs(4, "fc0"))
['weight_bit_width', 'weight_quant']
>>> act = make_activation(1, "fc0").eval()
>>> sorted(set(act(torch.tensor([-0.3, 0.0, 2.0])).tolist()))
[-1.0, 1.0]
>>> weight_quant_kwargs(9, "fc1")
Traceback (most recent call last):
...
flow.core.errors.ConfigError: fc1: weight_bits must be an int in 1..8, 'xnor' or 'ternary', got 9
"""

from __future__ import annotations

from typing import Any

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import (
    SignedBinaryActPerTensorConst,
    Uint8ActPerTensorFloat,
    Uint8ActPerTensorFloatMaxInit,
)
from torch import nn

from flow.core.errors import ConfigError
from models.weights import weight_quant_for

__all__ = [
    "ACT_MAX_INIT",
    "BITS_RANGE",
    "WEIGHT_KINDS",
    "InputQuant",
    "check_act_bits",
    "check_weight_bits",
    "make_activation",
    "make_input_quant",
    "resolve_layer_bits",
    "act_quant_kwargs",
    "weight_quant_kwargs",
    "weight_levels",
]

#: Allowed integer bit widths for weights and activations.
BITS_RANGE = range(1, 9)
#: Named weight kinds besides the bit widths.
WEIGHT_KINDS = ("xnor", "ternary")
#: Weight kinds with two values (sign weights): a 1-bit input before them is bipolar.
BIPOLAR_WEIGHTS = (1, "xnor")

#: Initial clipping value of hidden unsigned activations (they follow BatchNorm, so
#: pre-activations are ~N(0, 1); 2.0 keeps most of the ReLU'd mass at low bit widths).
ACT_MAX_INIT = 2.0

#: Raw pixels are integers 0..255; models divide by this before the input quantizer.
PIXEL_MAX = 255.0


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_weight_bits(bits: Any, layer: str) -> int | str:
    """Return ``bits`` if it is a valid weight bit width, else raise ConfigError naming ``layer``."""
    if isinstance(bits, str) and bits.lower() in WEIGHT_KINDS:
        return bits.lower()
    if _is_int(bits) and bits in BITS_RANGE:
        return bits
    raise ConfigError(f"{layer}: weight_bits must be an int in 1..8, 'xnor' or 'ternary', got {bits!r}")


def check_act_bits(bits: Any, layer: str, what: str = "act_bits") -> int:
    """Return ``bits`` if it is a valid activation bit width, else raise ConfigError naming ``layer``."""
    if _is_int(bits) and bits in BITS_RANGE:
        return bits
    raise ConfigError(f"{layer}: {what} must be an int in 1..8, got {bits!r}")


def weight_levels(bits: int | str) -> int:
    """Distinct integer weight values: 2 (binary, XNOR), 3 (ternary), 4 (2 bits) or 2^b - 1 (3..8 bits, narrow)."""
    if bits in BIPOLAR_WEIGHTS:
        return 2
    if bits == "ternary":
        return 3
    return 4 if bits == 2 else 2 ** bits - 1


def weight_quant_kwargs(bits: int | str, layer: str, output_layer: bool = False) -> dict[str, Any]:
    """Keyword arguments selecting the weight quantizer of a ``QuantLinear``/``QuantConv2d`` (see the module docstring).

    ``output_layer``: the classifier, whose scale is one per tensor. Raises ConfigError on a bad ``bits``.
    """
    return weight_quant_for(check_weight_bits(bits, layer), output_layer=output_layer)


def act_quant_kwargs(bits: int, layer: str, max_val: float = ACT_MAX_INIT) -> dict[str, Any]:
    """Keyword arguments for the quantizer of a hidden activation (see :func:`make_activation`)."""
    bits = check_act_bits(bits, layer)
    if bits == 1:
        return {"act_quant": SignedBinaryActPerTensorConst}
    return {"act_quant": Uint8ActPerTensorFloatMaxInit, "bit_width": bits, "max_val": max_val}


def make_activation(bits: int, layer: str, max_val: float = ACT_MAX_INIT) -> nn.Module:
    """The quantized activation after ``layer``'s BatchNorm.

    1 bit -> ``QuantIdentity`` with a bipolar sign quantizer; 2..8 bits -> unsigned
    ``QuantReLU`` with a learned per-tensor scale (initial range ``[0, max_val]``).
    """
    kw = act_quant_kwargs(bits, layer, max_val)
    if bits == 1:
        return qnn.QuantIdentity(**kw)
    return qnn.QuantReLU(**kw)


class InputQuant(nn.Module):
    """Scale raw pixels (0..255) to [0, 1] and quantize them with one per-tensor quantizer.

    ``bits`` 2..8: unsigned quantizer over [0, 1] (learned scale, initially 1/(2^b - 1)).

    ``bits`` 1: one threshold at mid-grey (pixel >= 127.5), in one of two encodings:

    * ``bipolar=True``: ``sign(2 * x/255 - 1)`` in {-1, +1}, as FINN's TFC-w1a1. Use it when
      the first layer has 1-bit weights, so FINN makes that layer XNOR-popcount.
    * ``bipolar=False``: unsigned {0, 1}. Use it when the first layer has wider weights:
      FINN then keeps the input quantizer as a standalone ``Thresholding`` layer, which
      cannot produce bipolar outputs (its ``out_scale`` must be 1). Brevitas exports every
      1-bit quantizer as ``BipolarQuant`` (a sign), even an unsigned one, so {0, 1} is
      carried by an unsigned 2-bit quantizer with a fixed scale of 1: on inputs in [0, 1]
      it only ever outputs 0 or 1, and FINN keeps one reachable threshold (pixel >= 128),
      with a UINT2-typed stream into the first layer.

    Both carry the same information (the first layer's BatchNorm absorbs the difference).
    In the exported graph the scaling is a scalar ``Div`` (bipolar: and ``Mul``, ``Sub``)
    before the quantizer, which FINN's streamlining folds into the input thresholds.
    """

    def __init__(self, bits: int, bipolar: bool = True, layer: str = "input"):
        super().__init__()
        self.bits = check_act_bits(bits, layer, "input_bits")
        self.bipolar = self.bits == 1 and bipolar
        if self.bipolar:
            self.quant = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        elif self.bits == 1:
            self.quant = qnn.QuantIdentity(
                act_quant=Uint8ActPerTensorFloat, bit_width=2, scaling_impl_type=ScalingImplType.CONST, max_val=3.0
            )
        else:
            self.quant = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloatMaxInit, bit_width=self.bits, max_val=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / PIXEL_MAX
        if self.bipolar:
            x = 2.0 * x - 1.0
        return self.quant(x)


def make_input_quant(bits: int, first_weight_bits: int | str = 1) -> InputQuant:
    """The input stage of every qflow model: raw pixels -> quantized input (see :class:`InputQuant`).

    A 1-bit input is bipolar when the first layer's weights are sign weights (binary or
    XNOR: an XNOR-popcount layer), unsigned {0, 1} otherwise.
    """
    return InputQuant(bits, bipolar=first_weight_bits in BIPOLAR_WEIGHTS)


_OVERRIDE_KEYS = ("weight_bits", "act_bits")


def resolve_layer_bits(
    layers: list[str],
    weight_bits: int | str,
    act_bits: int,
    layer_bits: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-layer ``{"weight_bits", "act_bits"}`` from global defaults plus overrides.

    ``layers`` lists the layer names in order; the last one is the output layer, which has
    no activation (its ``act_bits`` is None and overriding it is an error). Unknown layer
    names or keys raise ConfigError listing the valid ones; every value is validated.

    >>> resolve_layer_bits(["fc0", "fc1"], 2, 2, {"fc0": {"weight_bits": "ternary"}})
    {'fc0': {'weight_bits': 'ternary', 'act_bits': 2}, 'fc1': {'weight_bits': 2, 'act_bits': None}}
    """
    if layer_bits is not None and not isinstance(layer_bits, dict):
        raise ConfigError(f"layer_bits must map layer names to dicts, got {type(layer_bits).__name__}")
    overrides = dict(layer_bits or {})
    check_weight_bits(weight_bits, "all layers")
    check_act_bits(act_bits, "all layers")
    unknown = sorted(set(overrides) - set(layers))
    if unknown:
        raise ConfigError(f"layer_bits: unknown layer(s) {', '.join(map(repr, unknown))}; valid layers: {', '.join(layers)}")
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(layers):
        is_output = i == len(layers) - 1
        ov = overrides.get(name) or {}
        if not isinstance(ov, dict):
            raise ConfigError(f"layer_bits[{name!r}] must be a dict with keys {', '.join(_OVERRIDE_KEYS)}, got {ov!r}")
        bad = sorted(set(ov) - set(_OVERRIDE_KEYS))
        if bad:
            raise ConfigError(f"layer_bits[{name!r}]: unknown key(s) {', '.join(map(repr, bad))}; valid keys: {', '.join(_OVERRIDE_KEYS)}")
        if is_output and "act_bits" in ov:
            raise ConfigError(f"{name}: is the output layer and has no activation; only weight_bits can be set")
        wb = check_weight_bits(ov.get("weight_bits", weight_bits), name)
        ab = None if is_output else check_act_bits(ov.get("act_bits", act_bits), name)
        out[name] = {"weight_bits": wb, "act_bits": ab}
    return out
