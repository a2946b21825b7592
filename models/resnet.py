"""finn-examples' ResNet-50 w1a2 (``build/resnet50``, Alveo U250), the whole network, on raw 224x224 pixels.

finn-examples' top-level README gives its quantization: "1-bit weights 2-bit activations,
4-bit residuals, 8-bit first/last layer weights"; its U250 folding config shows the
structure FINN builds from it (a 7x7 stem with ``FMPadding`` and a max-pool, 16 bottleneck
blocks as ``DuplicateStreams``/``AddStreams`` pairs, 3 ``DownSampler`` for the strided 1x1
projections, a global average pool, the 2048 -> 1000 classifier on DSPs, a per-class
``ChannelwiseOp`` and a ``LabelSelect``). This module writes that network in Brevitas:

* stem: ``x / 255`` (a scalar, which commutes with the stem's zero padding), ``QuantConv2d``
  3 -> 64, 7x7, stride 2, padding 3, 8-bit per-channel weights, BN, 2-bit ``QuantReLU``,
  ``MaxPool2d(3, 2, padding=1)``;
* stages of 3, 4, 6, 3 bottleneck blocks (widths 64, 128, 256, 512, expansion 4; the stride
  in the 3x3 conv, as torchvision's v1.5): 1x1, 3x3, 1x1 convs with binary weights and 2-bit
  activations;
* residual joins written so FINN can map them: in each stage one signed 4-bit quantizer
  (``QuantIdentity``) is shared by the body's output, the projection shortcut and the sum,
  so both inputs of every ``Add`` are integers on one grid and the sum is requantized on it
  (as Brevitas' ProxylessNAS does). The ReLU of the residual stream is applied where it is
  consumed: each block quantizes its input to 2 bits with a ``QuantReLU`` before its first
  conv and its projection, while the identity shortcut carries the 4-bit sum;
* head: a 4-bit ``QuantReLU`` on the last residual stream, a global average pool and the
  2048 -> 1000 ``QuantLinear`` with 8-bit per-tensor weights and a float bias.

>>> net = resnet50()
>>> net.input_shape, sum(isinstance(m, Bottleneck) for m in net.modules())
((3, 224, 224), 16)
"""

from __future__ import annotations

from collections.abc import Sequence

import brevitas.nn as qnn
import torch
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFloat,
)
from torch import nn

from models.preprocess import Preprocessed
from models.quant import make_activation, weight_quant_kwargs

__all__ = ["Bottleneck", "ResNet", "resnet50", "RESNET50_BLOCKS"]

RESNET50_BLOCKS = (3, 4, 6, 3)
EXPANSION = 4


def residual_quant(bits: int) -> qnn.QuantIdentity:
    """The signed quantizer one stage's residual joins share."""
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits, return_quant_tensor=False)


def _conv(cin: int, cout: int, k: int, stride: int, weight_bits: int, name: str) -> qnn.QuantConv2d:
    return qnn.QuantConv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False, **weight_quant_kwargs(weight_bits, name))


class Bottleneck(nn.Module):
    """``shared(shared(body(relu_q(x))) + skip)``: ``skip`` is ``x`` or ``shared(BN(conv1x1/s(relu_q(x))))``.

    ``entry_act=False`` (the first block, whose input is already a 2-bit activation) reads ``x`` as is.
    """

    def __init__(self, cin: int, width: int, stride: int, shared: nn.Module, *, weight_bits: int = 1, act_bits: int = 2,
                 entry_act: bool = True, name: str = "block"):
        super().__init__()
        cout = width * EXPANSION
        self.entry = make_activation(act_bits, f"{name}.entry") if entry_act else nn.Identity()
        self.conv1, self.bn1 = _conv(cin, width, 1, 1, weight_bits, f"{name}.conv1"), nn.BatchNorm2d(width)
        self.act1 = make_activation(act_bits, f"{name}.act1")
        self.conv2, self.bn2 = _conv(width, width, 3, stride, weight_bits, f"{name}.conv2"), nn.BatchNorm2d(width)
        self.act2 = make_activation(act_bits, f"{name}.act2")
        self.conv3, self.bn3 = _conv(width, cout, 1, 1, weight_bits, f"{name}.conv3"), nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(_conv(cin, cout, 1, stride, weight_bits, f"{name}.proj"), nn.BatchNorm2d(cout))
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.entry(x)
        y = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(h))))))
        y = self.shared(self.bn3(self.conv3(y)))
        skip = x if self.proj is None else self.shared(self.proj(h))
        return self.shared(y + skip)


class ResNet(nn.Module):
    """Bottleneck ResNet on ``[0, 1]`` images (see the module docstring); ``blocks`` per stage."""

    def __init__(self, blocks: Sequence[int] = RESNET50_BLOCKS, widths: Sequence[int] = (64, 128, 256, 512), *,
                 weight_bits: int = 1, act_bits: int = 2, residual_bits: int = 4, io_weight_bits: int = 8,
                 head_act_bits: int = 4, stem_channels: int = 64, num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(
            qnn.QuantConv2d(3, stem_channels, 7, stride=2, padding=3, bias=False, weight_quant=Int8WeightPerChannelFloat,
                            weight_bit_width=io_weight_bits),
            nn.BatchNorm2d(stem_channels),
            make_activation(act_bits, "stem"),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, cin = [], stem_channels
        for s, (n, width) in enumerate(zip(blocks, widths)):
            shared = residual_quant(residual_bits)
            units = []
            for b in range(n):
                stride = 2 if b == 0 and s > 0 else 1
                units.append(Bottleneck(cin, width, stride, shared, weight_bits=weight_bits, act_bits=act_bits,
                                        entry_act=not (s == 0 and b == 0), name=f"stage{s + 1}.unit{b + 1}"))
                cin = width * EXPANSION
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.head_act = make_activation(head_act_bits, "head")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = qnn.QuantLinear(cin, num_classes, bias=True, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=io_weight_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head_act(self.stages(self.stem(x))))
        return self.fc(torch.flatten(x, 1))


def resnet50(**kwargs) -> Preprocessed:
    """finn-examples' ResNet-50 w1a2 (1000 classes) on raw 3x224x224 pixels; ``kwargs`` go to :class:`ResNet`."""
    return Preprocessed(ResNet(**kwargs), (3, 224, 224))
