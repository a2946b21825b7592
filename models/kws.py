"""finn-examples' keyword-spotting MLP (``build/kws``): 490-256-256-256-12 with 3-bit weights and activations.

The network classifies Google Speech Commands v2 (12 classes) from 49 frames x 10 MFCC
coefficients computed on the host (``python_speech_features``); finn-examples' model file
is ``MLP_W3A3_python_speech_features_pre-processing_QONNX`` and its build runs on a Pynq-Z1
at 100 MHz with a top-1 ``TopK`` inserted by a build step. Its input (``build/kws/input.npy``)
is one ``(1, 10, 49)`` float tensor of MFCC values; an 8-bit signed input quantizer turns it
into the integers the accelerator takes, on the host (finn-examples quantizes its
validation set the same way before streaming it).

Every hidden layer is ``QuantLinear(bias=False) -> BatchNorm1d -> QuantReLU`` with Brevitas'
per-tensor quantizers; the classifier is a bare ``QuantLinear``.

>>> import torch
>>> net = KwsMlp().eval()
>>> net.input_shape, tuple(net(torch.zeros(2, 1, 10, 49)).shape)
((1, 10, 49), (2, 12))
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import brevitas.nn as qnn
import torch
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Int8WeightPerTensorFloat
from torch import nn

__all__ = ["KwsMlp", "KWS_SHAPE", "KWS_CLASSES"]

KWS_SHAPE = (1, 10, 49)
KWS_CLASSES = 12


class KwsInputQuant(Int8ActPerTensorFloatMinMaxInit):
    """Signed 8-bit input quantizer, its learned scale initialised to cover MFCC values in [-128, 127]."""

    min_val = -128.0
    max_val = 127.0


class KwsMlp(nn.Module):
    """``input quant -> [QuantLinear -> BN -> QuantReLU] x len(hidden) -> QuantLinear``."""

    def __init__(self, hidden: Sequence[int] = (256, 256, 256), weight_bits: int = 3, act_bits: int = 3,
                 input_bits: int = 8, num_classes: int = KWS_CLASSES, in_shape: Sequence[int] = KWS_SHAPE):
        super().__init__()
        self.input_shape = tuple(int(d) for d in in_shape)
        self.input_quant = qnn.QuantIdentity(act_quant=KwsInputQuant, bit_width=input_bits, return_quant_tensor=True)
        layers: list[nn.Module] = []
        width = prod(self.input_shape)
        for h in hidden:
            layers += [
                qnn.QuantLinear(width, h, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=weight_bits),
                nn.BatchNorm1d(h),
                qnn.QuantReLU(bit_width=act_bits, return_quant_tensor=True),
            ]
            width = h
        layers.append(qnn.QuantLinear(width, num_classes, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=weight_bits))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.input_quant(x.reshape(x.shape[0], -1)))
