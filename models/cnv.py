"""Quantized CNNs (FINN's bnn-pynq CNV and a 28x28 variant) in Brevitas.

Input handling is the same as for :mod:`models.fc`: the model takes RAW PIXELS (float
tensors holding the integers 0..255), divides by 255 internally and quantizes with one
per-tensor unsigned quantizer at ``input_bits`` (for ``input_bits=1``: bipolar if ``conv0``
has 1-bit weights, else {0, 1}; see :class:`models.quant.InputQuant`). The exported
QONNX input is treated as UINT8 and FINN folds the scaling into the first thresholds; a
per-tensor input quantizer keeps that ``Thresholding`` layer small.

Every conv is 3x3, stride 1, no padding (padding would need FMPadding layers and a pad
value that is not a valid bipolar activation), ``bias=False``, followed by BatchNorm2d and
the quantized activation, then optionally a 2x2 max-pool. The classifier is
``[QuantLinear -> BatchNorm1d -> act] * len(fc) -> QuantLinear`` with a per-tensor weight
scale and nothing after it, so FINN absorbs the final scalar ``Mul`` into ``TopK``.

Layers are named ``conv0`` .. ``convK`` then ``fc0`` .. ``fcN`` (``fcN`` = output layer).

``cnv`` (FINN's CNV, in_shape (3, 32, 32))::

    conv0 64  32->30 | conv1 64  30->28 | pool ->14
    conv2 128 14->12 | conv3 128 12->10 | pool ->5
    conv4 256  5->3  | conv5 256  3->1  | flatten 256 -> fc0 512 -> fc1 512 -> fc2 classes

``cnv28`` (for 28x28 single-channel images such as (Fashion-)MNIST). With CNV's six
unpadded 3x3 convs a 28x28 image would shrink to 0 (28->26->24->12->10->8->4->2->0), so the
last 256-channel conv is dropped; the second pool leaves 4x4, conv4 makes it 2x2::

    conv0 64  28->26 | conv1 64  26->24 | pool ->12
    conv2 128 12->10 | conv3 128 10->8  | pool ->4
    conv4 256  4->2  | flatten 2*2*256=1024 -> fc0 512 -> fc1 512 -> fc2 classes

The 2x2 flatten is FINN-friendly: its NHWC->NCHW transpose is folded into fc0's weight
matrix by FINN's ``RemoveCNVtoFCFlatten`` (part of ``step_convert_to_hw``).

>>> import torch
>>> from models.cnv import CNV28
>>> model = CNV28(weight_bits=2, act_bits=2).eval()
>>> model.input_shape, model.layer_names[:2], model.layer_names[-1]
((1, 28, 28), ['conv0', 'conv1'], 'fc2')
>>> model(torch.randint(0, 256, (2, 1, 28, 28)).float()).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Sequence

import brevitas.nn as qnn
import torch
from torch import nn

from flow.core.errors import ConfigError
from models.fc import (
    check_dropout,
    check_in_shape,
    check_positive_ints,
    hidden_block,
    linear_stack,
)
from models.quant import make_input_quant, resolve_layer_bits, weight_quant_kwargs

__all__ = ["CNV", "CNV_CONVS", "CNV28_CONVS", "CNV_FC", "CNV32", "CNV28", "feature_map_sizes"]

KERNEL_SIZE = 3
POOL_SIZE = 2

#: (out_channels, max-pool after) per conv layer: FINN's CNV for 32x32 images.
CNV_CONVS = ((64, False), (64, True), (128, False), (128, True), (256, False), (256, False))
#: The 28x28 variant: CNV without its last conv (see the module docstring).
CNV28_CONVS = ((64, False), (64, True), (128, False), (128, True), (256, False))
#: Hidden fully-connected widths after the convs.
CNV_FC = (512, 512)


def _check_convs(convs: Sequence[Any], model: str) -> list[tuple[int, bool]]:
    ok = isinstance(convs, (list, tuple)) and len(convs) > 0
    out: list[tuple[int, bool]] = []
    for c in convs if ok else ():
        if not (isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], Integral) and c[0] > 0):
            ok = False
            break
        out.append((int(c[0]), bool(c[1])))
    if not ok:
        raise ConfigError(f"{model}: convs must be a non-empty list of (channels, pool) pairs, got {convs!r}")
    return out


def feature_map_sizes(in_hw: tuple[int, int], convs: Sequence[tuple[int, bool]], model: str) -> list[tuple[int, int]]:
    """Spatial size after each conv (and its pool); ConfigError if a size becomes invalid.

    Pools need even sizes (FINN's StreamingMaxPool requires the image size to be a multiple
    of the pool size).

    >>> feature_map_sizes((28, 28), CNV28_CONVS, "cnv28")[-1]
    (2, 2)
    """
    h, w = in_hw
    sizes = []
    for i, (_, pool) in enumerate(convs):
        h, w = h - KERNEL_SIZE + 1, w - KERNEL_SIZE + 1
        if h < 1 or w < 1:
            raise ConfigError(
                f"{model}: input {in_hw[0]}x{in_hw[1]} is too small: conv{i} (3x3, no padding) has no output; "
                "use 'cnv' for 32x32 and 'cnv28' for 28x28 images"
            )
        if pool:
            if h % POOL_SIZE or w % POOL_SIZE:
                raise ConfigError(
                    f"{model}: input {in_hw[0]}x{in_hw[1]} gives a {h}x{w} map before the pool after conv{i}; "
                    "2x2 pooling needs even sizes; use 'cnv' for 32x32 and 'cnv28' for 28x28 images"
                )
            h, w = h // POOL_SIZE, w // POOL_SIZE
        sizes.append((h, w))
    return sizes


class CNV(nn.Module):
    """Quantized CNN on raw pixels: ``input quant -> convs (BN, act, pool) -> FCs -> output FC``.

    Args:
        convs: (out_channels, pool_after) per 3x3 conv; defaults to FINN's CNV.
        fc: widths of the hidden fully-connected layers.
        weight_bits, act_bits, input_bits, layer_bits, num_classes, dropout: as for
            :class:`models.fc.FC`; ``layer_bits`` keys are ``conv0``.. and ``fc0``...
        in_shape: (C, H, W) of one input image; the spatial size must survive the convs.

    Attributes: ``input_shape``, ``layer_names``, ``bits``, ``layers`` (ModuleDict).
    """

    def __init__(
        self,
        convs: Sequence[tuple[int, bool]] = CNV_CONVS,
        fc: Sequence[int] = CNV_FC,
        *,
        weight_bits: int | str = 2,
        act_bits: int = 2,
        input_bits: int | None = None,
        layer_bits: dict[str, dict[str, Any]] | None = None,
        in_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        dropout: float = 0.0,
        name: str = "cnv",
    ):
        super().__init__()
        self.input_shape = check_in_shape(in_shape, name)
        convs = _check_convs(convs, name)
        fc = [] if isinstance(fc, (list, tuple)) and not fc else check_positive_ints(fc, "fc", name)
        check_positive_ints([num_classes], "num_classes", name)
        dropout = check_dropout(dropout, name)
        sizes = feature_map_sizes(self.input_shape[1:], convs, name)
        conv_names = [f"conv{i}" for i in range(len(convs))]
        fc_names = [f"fc{i}" for i in range(len(fc) + 1)]
        self.layer_names = conv_names + fc_names
        self.bits = resolve_layer_bits(self.layer_names, weight_bits, act_bits, layer_bits)
        self.input_bits = act_bits if input_bits is None else input_bits
        self.input_quant = make_input_quant(self.input_bits, self.bits[self.layer_names[0]]["weight_bits"])
        self.layers = nn.ModuleDict()
        in_ch = self.input_shape[0]
        for layer, (out_ch, pool) in zip(conv_names, convs):
            wq = weight_quant_kwargs(self.bits[layer]["weight_bits"], layer)
            conv = qnn.QuantConv2d(in_ch, out_ch, KERNEL_SIZE, bias=False, **wq)
            block = hidden_block(conv, nn.BatchNorm2d(out_ch), self.bits[layer]["act_bits"], layer, 0.0)
            if pool:
                block.add_module("pool", nn.MaxPool2d(POOL_SIZE))
            self.layers[layer] = block
            in_ch = out_ch
        h, w = sizes[-1]
        widths = [in_ch * h * w, *fc, num_classes]
        self.layers.update(linear_stack(widths, fc_names, self.bits, dropout))
        self._n_convs = len(conv_names)

    def quant_layer(self, name: str) -> nn.Module:
        """The QuantConv2d/QuantLinear of layer ``name`` (ConfigError lists valid names)."""
        if name not in self.layers:
            raise ConfigError(f"unknown layer {name!r}; valid layers: {', '.join(self.layer_names)}")
        return self.layers[name][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw pixels (N, C, H, W), values 0..255 -> logits (N, num_classes)."""
        x = self.input_quant(x)
        blocks = list(self.layers.values())
        for block in blocks[: self._n_convs]:
            x = block(x)
        x = x.reshape(x.shape[0], -1)
        for block in blocks[self._n_convs :]:
            x = block(x)
        return x


def CNV32(**kwargs: Any) -> CNV:
    """FINN's CNV for 32x32 RGB images (CIFAR-10 style); see the module docstring."""
    kwargs.setdefault("in_shape", (3, 32, 32))
    return CNV(kwargs.pop("convs", CNV_CONVS), kwargs.pop("fc", CNV_FC), name="cnv", **kwargs)


def CNV28(**kwargs: Any) -> CNV:
    """CNV adapted to 28x28 single-channel images (5 convs, 1024-wide flatten)."""
    kwargs.setdefault("in_shape", (1, 28, 28))
    return CNV(kwargs.pop("convs", CNV28_CONVS), kwargs.pop("fc", CNV_FC), name="cnv28", **kwargs)
