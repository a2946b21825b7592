"""The corpus' own networks (the structure networks are in :mod:`tests.corpus.structures`).

Every model takes raw pixels 0..255 (``PixelsIn`` scales them and quantizes to 8 bits) unless
it says otherwise; bnn_pynq's networks take ``[0, 1]`` as in brevitas_examples.
"""

from __future__ import annotations

import brevitas.nn as qnn
import torch
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFloat,
    Uint8ActPerTensorFloat,
)
from brevitas_examples.imagenet_classification.models.mobilenetv1 import MobileNet
from torch import nn

from models.quant import weight_quant_kwargs


def mobilenet_v1_slice() -> nn.Module:
    """brevitas_examples' quantized MobileNet-v1 class at a small width: channels [[8], [16], [32, 32]],
    4-bit, 3x32x32 inputs (no input quantizer: --input-dtype UINT8), 10 classes. The init conv has
    8-bit per-channel weights and a per-channel activation scale; the head is a FLOOR
    ``TruncAvgPool2d`` (as the pretrained quant_mobilenet_v1_4b) and a QuantLinear with an Int32 bias."""
    return MobileNet(
        channels=[[8], [16], [32, 32]], first_stage_stride=False, act_bit_width=4, weight_bit_width=4,
        round_average_pool=False, last_layer_bit_width=4, avg_pool_kernel_size=8, num_classes=10,
    )


class PixelsIn(nn.Module):
    """Raw pixels 0..255 -> x/255 -> an unsigned 8-bit input quantizer."""

    def __init__(self):
        super().__init__()
        self.q = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True)

    def forward(self, x):
        return self.q(x / 255.0)


class MLP(nn.Module):
    """``in -> hidden -> hidden -> 10``, 4-bit weights and activations, per-tensor scales.

    ``bias=True`` is QuantLinear's default: float biases, so the last layer ends in a float
    per-class Add. ``float_input=True``: the network takes ``[0, 1]`` floats and quantizes them
    itself (no --input-dtype).
    """

    def __init__(self, n_in: int, hidden: int = 32, bias: bool = False, float_input: bool = False):
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True) if float_input else PixelsIn()
        layers = []
        for i, (a, b) in enumerate([(n_in, hidden), (hidden, hidden)]):
            layers += [qnn.QuantLinear(a, b, bias=bias, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4),
                       nn.BatchNorm1d(b), qnn.QuantReLU(bit_width=4, return_quant_tensor=True)]
        self.body = nn.Sequential(*layers)
        self.head = qnn.QuantLinear(hidden, 10, bias=bias, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4)

    def forward(self, x):
        return self.head(self.body(self.inp(x.reshape(x.shape[0], -1))))


class ArgMaxHead(nn.Module):
    """``torch.argmax(logits, 1, keepdim=True)`` in eval mode: the graph outputs class indices."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x)
        y = y.value if hasattr(y, "value") else y
        return y if self.training else torch.argmax(y, dim=1, keepdim=True)


class CNNMaxPool(nn.Module):
    """A 4-bit CNN with MaxPool on 1x14x14 raw pixels and NO input quantizer (the first conv reads
    the integer pixels: --input-dtype UINT8), per-channel weight scales everywhere (also on the
    last layer: a per-class output scale)."""

    def __init__(self, ch: int = 8):
        super().__init__()
        W, A = Int8WeightPerChannelFloat, Uint8ActPerTensorFloat
        self.features = nn.Sequential(
            qnn.QuantConv2d(1, ch, 3, bias=False, weight_quant=W, weight_bit_width=4), nn.BatchNorm2d(ch),
            qnn.QuantReLU(act_quant=A, bit_width=4, return_quant_tensor=True), nn.MaxPool2d(2),
            qnn.QuantConv2d(ch, ch, 3, bias=False, weight_quant=W, weight_bit_width=4), nn.BatchNorm2d(ch),
            qnn.QuantReLU(act_quant=A, bit_width=4, return_quant_tensor=True), nn.MaxPool2d(2),
        )
        self.fc = qnn.QuantLinear(ch * 2 * 2, 10, bias=False, weight_quant=W, weight_bit_width=4)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.reshape(x.shape[0], -1))


class Bottleneck(nn.Module):
    """A ResNet-50 bottleneck block, w1a2: 1x1 reduce, 3x3, 1x1 expand (x4), each with BN; 2-bit ReLUs inside;
    a 1x1 projection on the skip when the channels change. ``shared`` (one signed quantizer for every
    residual join of the network) quantizes both summands and the sum, so FINN's integer adder maps it."""

    def __init__(self, cin: int, width: int, shared: nn.Module):
        super().__init__()

        def conv(a, b, k):
            return qnn.QuantConv2d(a, b, k, padding=k // 2, bias=False, **weight_quant_kwargs(1, "conv"))

        relu = lambda: qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=2)  # noqa: E731
        self.body = nn.Sequential(
            conv(cin, width, 1), nn.BatchNorm2d(width), relu(), conv(width, width, 3), nn.BatchNorm2d(width), relu(),
            conv(width, 4 * width, 1), nn.BatchNorm2d(4 * width),
        )
        self.proj = nn.Sequential(conv(cin, 4 * width, 1), nn.BatchNorm2d(4 * width)) if cin != 4 * width else None
        self.shared = shared

    def forward(self, x):
        skip = x if self.proj is None else self.shared(self.proj(x))
        return self.shared(self.shared(self.body(x)) + skip)


class ResNetBottlenecks(nn.Module):
    """Two ResNet-50 bottleneck blocks (the first with a projection) on ``cin x H x W`` raw pixels, a global
    average pool and a linear head: the structure of ResNet-50 w1a2 at a tiny size."""

    def __init__(self, cin: int = 16, width: int = 8):
        super().__init__()
        self.inp = PixelsIn()
        self.shared = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=2)
        self.blocks = nn.Sequential(Bottleneck(cin, width, self.shared), Bottleneck(4 * width, width, self.shared))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = qnn.QuantLinear(4 * width, 10, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=4)

    def forward(self, x):
        x = self.blocks(self.shared(self.inp(x)))
        return self.fc(torch.flatten(self.pool(x), 1))
