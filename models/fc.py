"""Quantized MLPs (FINN's bnn-pynq TFC/SFC/LFC family) in Brevitas.

Input handling: the model takes RAW PIXELS, float tensors holding the integers 0..255,
flattens them and divides by 255 *inside* the model, right before a per-tensor input
quantizer (:class:`models.quant.InputQuant`). In the exported QONNX graph the input is a
``Reshape`` followed by a scalar ``Div`` and a ``Quant``; with the graph input annotated
UINT8, FINN's streamlining folds the scaling into the input thresholds, which it then
rounds to integers. A per-tensor input quantizer keeps that input ``Thresholding`` layer
cheap: one set of 2^b - 1 thresholds shared by all pixels (8 bits over 784 pixels costs
~25k LUT in FINN, 2 bits is tiny). ``input_bits=1`` thresholds at mid-grey: bipolar
{-1, +1} as FINN's TFC-w1a1 when ``fc0`` has 1-bit weights (XNOR-popcount), else {0, 1}.

Layers are named ``fc0`` .. ``fcN``; ``fcN`` is the output layer. Every hidden layer is
``QuantLinear(bias=False) -> BatchNorm1d -> quantized activation (-> Dropout)``. The output
layer is a ``QuantLinear`` with a per-tensor weight scale and nothing after it, so the
logits are an integer dot product times one positive scalar, which FINN absorbs into
``TopK`` (the label is unchanged by it).

>>> import torch
>>> from models.fc import TFC
>>> model = TFC(weight_bits=2, act_bits=2).eval()
>>> model.input_shape, model.layer_names
((1, 28, 28), ['fc0', 'fc1', 'fc2', 'fc3'])
>>> model(torch.randint(0, 256, (4, 1, 28, 28)).float()).shape
torch.Size([4, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from math import prod
from numbers import Integral
from typing import Any, Sequence

import brevitas.nn as qnn
import torch
from torch import nn

from flow.core.errors import ConfigError
from models.quant import (
    make_activation,
    make_input_quant,
    resolve_layer_bits,
    weight_quant_kwargs,
)

__all__ = ["FC", "TFC", "SFC", "LFC", "check_in_shape", "hidden_block", "linear_stack"]

MNIST_SHAPE = (1, 28, 28)


def check_in_shape(in_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """``in_shape`` as a (C, H, W) tuple of positive ints, else ConfigError."""
    ok = isinstance(in_shape, (tuple, list, torch.Size)) and len(in_shape) == 3
    ok = ok and all(isinstance(d, Integral) and not isinstance(d, bool) and d > 0 for d in in_shape)
    if not ok:
        raise ConfigError(f"{model}: in_shape must be (channels, height, width) of positive ints, got {in_shape!r}")
    return tuple(int(d) for d in in_shape)  # type: ignore[return-value]


#: Widest layer and most layers a model may declare (a 16k-wide layer is already far past any FPGA).
MAX_WIDTH = 16384
MAX_LAYERS = 64


def check_positive_ints(values: Sequence[int], what: str, model: str) -> list[int]:
    """A non-empty list of positive ints (layer widths) up to :data:`MAX_WIDTH`, at most :data:`MAX_LAYERS` of them, else ConfigError."""
    ok = isinstance(values, (list, tuple)) and 0 < len(values) <= MAX_LAYERS
    if not ok or not all(isinstance(v, Integral) and not isinstance(v, bool) and 0 < v <= MAX_WIDTH for v in values):
        shown = repr(values)
        raise ConfigError(f"{model}: {what} must be a list of 1 to {MAX_LAYERS} ints from 1 to {MAX_WIDTH}, got {shown[:60]}{'...' if len(shown) > 60 else ''}")
    return [int(v) for v in values]


def hidden_block(layer: nn.Module, bn: nn.Module, act_bits: int, name: str, dropout: float) -> nn.Sequential:
    """``layer -> bn -> act (-> dropout)`` with the submodules named linear/conv, bn, act, drop."""
    kind = "conv" if isinstance(layer, qnn.QuantConv2d) else "linear"
    parts: list[tuple[str, nn.Module]] = [(kind, layer), ("bn", bn), ("act", make_activation(act_bits, name))]
    if dropout:
        parts.append(("drop", nn.Dropout(dropout)))
    return nn.Sequential(OrderedDict(parts))


def linear_stack(widths: Sequence[int], names: Sequence[str], bits: dict, dropout: float) -> dict[str, nn.Sequential]:
    """Fully connected blocks ``names[i]``: widths[i] -> widths[i+1]; all but the last are
    ``QuantLinear -> BN -> act``, the last (the classifier) is a bare per-tensor QuantLinear."""
    blocks = {}
    for i, layer in enumerate(names):
        wq = weight_quant_kwargs(bits[layer]["weight_bits"], layer, output_layer=i == len(names) - 1)
        linear = qnn.QuantLinear(widths[i], widths[i + 1], bias=False, **wq)
        if i < len(names) - 1:
            blocks[layer] = hidden_block(linear, nn.BatchNorm1d(widths[i + 1]), bits[layer]["act_bits"], layer, dropout)
        else:
            blocks[layer] = nn.Sequential(OrderedDict(linear=linear))
    return blocks


def check_dropout(dropout: Any, model: str) -> float:
    """Dropout probability in [0, 1), else ConfigError."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"{model}: dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


class FC(nn.Module):
    """Quantized MLP on raw pixels: ``input quant -> [fc -> BN -> act] * len(hidden) -> fc``.

    Args:
        hidden: widths of the hidden layers (``fc0`` .. ``fc{len(hidden)-1}``).
        weight_bits: 1 (binary), ``"xnor"``, ``"ternary"`` or 2..8 (:mod:`models.quant`), for every layer unless overridden.
        act_bits: 1 (bipolar) or 2..8 (unsigned ReLU), for every hidden activation.
        input_bits: bits of the input quantizer; defaults to ``act_bits``.
        layer_bits: per-layer overrides, e.g. ``{"fc0": {"weight_bits": 4, "act_bits": 3}}``;
            the output layer only takes ``weight_bits``.
        in_shape: (C, H, W) of one input image.
        num_classes: outputs of the last layer.
        dropout: dropout probability after each hidden activation (0 = none).

    Attributes: ``input_shape`` (= in_shape), ``hidden`` (the widths), ``layer_names``, ``bits`` (resolved
    per-layer bit widths), ``layers`` (ModuleDict name -> block).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64, 64),
        *,
        weight_bits: int | str = 2,
        act_bits: int = 2,
        input_bits: int | None = None,
        layer_bits: dict[str, dict[str, Any]] | None = None,
        in_shape: Sequence[int] = MNIST_SHAPE,
        num_classes: int = 10,
        dropout: float = 0.0,
        name: str = "fc",
    ):
        super().__init__()
        self.input_shape = check_in_shape(in_shape, name)
        hidden = check_positive_ints(hidden, "hidden", name)
        check_positive_ints([num_classes], "num_classes", name)
        dropout = check_dropout(dropout, name)
        self.hidden = tuple(hidden)
        self.layer_names = [f"fc{i}" for i in range(len(hidden) + 1)]
        self.bits = resolve_layer_bits(self.layer_names, weight_bits, act_bits, layer_bits)
        self.input_bits = act_bits if input_bits is None else input_bits
        self.input_quant = make_input_quant(self.input_bits, self.bits[self.layer_names[0]]["weight_bits"])
        self.layers = nn.ModuleDict()
        widths = [prod(self.input_shape), *hidden, num_classes]
        self.layers.update(linear_stack(widths, self.layer_names, self.bits, dropout))

    def quant_layer(self, name: str) -> nn.Module:
        """The QuantLinear of layer ``name`` (ConfigError lists valid names)."""
        if name not in self.layers:
            raise ConfigError(f"unknown layer {name!r}; valid layers: {', '.join(self.layer_names)}")
        return self.layers[name][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels (N, C, H, W), values 0..255 -> logits (N, num_classes)."""
        x = self.input_quant(x.reshape(x.shape[0], -1))
        for block in self.layers.values():
            x = block(x)
        return x


def TFC(**kwargs: Any) -> FC:
    """FINN's TFC: 784-64-64-64-10 (``hidden`` may be overridden)."""
    kwargs.setdefault("hidden", (64, 64, 64))
    return FC(name="tfc", **kwargs)


def SFC(**kwargs: Any) -> FC:
    """FINN's SFC: 784-256-256-256-10."""
    kwargs.setdefault("hidden", (256, 256, 256))
    return FC(name="sfc", **kwargs)


def LFC(**kwargs: Any) -> FC:
    """FINN's LFC: 784-1024-1024-1024-10."""
    kwargs.setdefault("hidden", (1024, 1024, 1024))
    return FC(name="lfc", **kwargs)
