"""finn-examples' VGG10 for RadioML 2018.01A (``build/vgg10-radioml``): a 1D CNN on 1024 I/Q samples.

DeepSig's VGG10 modulation classifier as quantized in Xilinx's RadioML challenge sandbox
(``brevitas-radioml-challenge-21``), at the size finn-examples deploys
(``build/vgg10-radioml/README.md`` and its ZCU104 folding config, whose first MVAU has
``SIMD * ... = 2 x 3`` inputs and the next ones ``3 x 32``): seven blocks of
``QuantConv1d(k=3, padding=1, bias=False) -> BatchNorm1d -> QuantReLU -> MaxPool1d(2)`` with
32 filters (1024 -> 8 samples), then ``QuantLinear`` 256 -> 128 -> 128 -> 24 with BN and
ReLU between. 4-bit weights and activations. The input, shape ``(2, 1024)`` (I and Q
channels), is quantized to 8 bits by a constant-range ``QuantHardTanh`` over [-2, 2]; that
quantizer runs on the host (finn-examples removed it from the graph "which we do in
software"), and the accelerator takes INT8. finn-examples builds it for a ZCU104 at 250 MHz
with ``standalone_thresholds``.

``first_act_bits`` sets the first block's activation separately (finn-examples' earlier
w4a3 release used 4 bits there and 3 elsewhere).

>>> import torch
>>> net = Vgg10().eval()
>>> net.input_shape, tuple(net(torch.zeros(2, 2, 1024)).shape)
((2, 1024), (2, 24))
"""

from __future__ import annotations

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import Int8ActPerTensorFloatMinMaxInit, Int8WeightPerTensorFloat
from torch import nn

from flow.core.errors import ConfigError

__all__ = ["Vgg10", "RADIOML_SHAPE", "RADIOML_CLASSES"]

RADIOML_SHAPE = (2, 1024)
RADIOML_CLASSES = 24


class RadioInputQuant(Int8ActPerTensorFloatMinMaxInit):
    """The sandbox's input quantizer: signed, a constant range [-2, 2]."""

    min_val = -2.0
    max_val = 2.0
    scaling_impl_type = ScalingImplType.CONST


class Vgg10(nn.Module):
    """``input quant -> 7 x (conv1d, BN, ReLU, pool) -> dense 128, 128 -> classes``."""

    def __init__(self, filters: int = 32, dense: int = 128, weight_bits: int = 4, act_bits: int = 4,
                 first_act_bits: int | None = None, input_bits: int = 8, blocks: int = 7,
                 length: int = RADIOML_SHAPE[1], num_classes: int = RADIOML_CLASSES):
        super().__init__()
        if length % 2**blocks:
            raise ConfigError(f"vgg10: {blocks} max-pools need a length divisible by {2**blocks}, got {length}")
        self.input_shape = (RADIOML_SHAPE[0], int(length))
        self.input_quant = qnn.QuantHardTanh(act_quant=RadioInputQuant, bit_width=input_bits, return_quant_tensor=True)
        feats: list[nn.Module] = []
        ch = RADIOML_SHAPE[0]
        for i in range(blocks):
            bits = first_act_bits if i == 0 and first_act_bits is not None else act_bits
            feats += [
                qnn.QuantConv1d(ch, filters, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=weight_bits),
                nn.BatchNorm1d(filters),
                qnn.QuantReLU(bit_width=bits, return_quant_tensor=True),
                nn.MaxPool1d(2),
            ]
            ch = filters
        self.features = nn.Sequential(*feats)
        width = filters * (length // 2**blocks)
        head: list[nn.Module] = []
        for _ in range(2):
            head += [qnn.QuantLinear(width, dense, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=weight_bits),
                     nn.BatchNorm1d(dense), qnn.QuantReLU(bit_width=act_bits, return_quant_tensor=True)]
            width = dense
        head.append(qnn.QuantLinear(width, num_classes, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=weight_bits))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.input_quant(x))
        return self.classifier(torch.flatten(x, 1))
