"""finn-examples' cybersecurity MLP (``build/cybersecurity-mlp``): UNSW-NB15 intrusion detection.

The network of FINN's end-to-end cybersecurity tutorial: 600 binary features (UNSW-NB15's
593 quantized features, zero-padded to 600), three hidden layers of 64 with 2-bit weights
and 2-bit activations, one output. For deployment FINN's tutorial wraps it so that the
accelerator takes and returns bipolar values: the input ``x`` in {-1, +1} is mapped to
{0, 1} by ``(x + 1) / 2`` (streamlined away) and the score is binarized to {-1, +1}
(``-1``: normal traffic, ``+1``: an attack). finn-examples builds it with ``target_fps``
1,000,000 at 100 MHz, ``mvau_wwidth_max`` 80, on Pynq-Z1, Ultra96 and ZCU104.

Hidden layers are ``QuantLinear(bias=True) -> BatchNorm1d -> Dropout -> QuantReLU`` with
Brevitas' default quantizers, as in the tutorial.

>>> import torch
>>> net = CybSecMlp().eval()
>>> y = net(torch.where(torch.rand(4, 600, generator=torch.Generator().manual_seed(0)) > 0.5, 1.0, -1.0))
>>> net.input_shape, tuple(y.shape), set(y.flatten().tolist()) <= {-1.0, 1.0}
((600,), (4, 1), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import brevitas.nn as qnn
import torch
from brevitas.quant import SignedBinaryActPerTensorConst
from torch import nn

__all__ = ["CybSecMlp", "UNSW_FEATURES"]

#: UNSW-NB15's 593 binarized features, padded to 600 as in FINN's tutorial.
UNSW_FEATURES = 600


class CybSecMlp(nn.Module):
    """Bipolar ``(N, 600)`` features -> bipolar ``(N, 1)`` verdict."""

    def __init__(self, hidden: Sequence[int] = (64, 64, 64), weight_bits: int = 2, act_bits: int = 2,
                 in_features: int = UNSW_FEATURES, dropout: float = 0.5):
        super().__init__()
        self.input_shape = (int(in_features),)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [qnn.QuantLinear(width, h, bias=True, weight_bit_width=weight_bits), nn.BatchNorm1d(h),
                       nn.Dropout(dropout), qnn.QuantReLU(bit_width=act_bits)]
            width = h
        layers.append(qnn.QuantLinear(width, 1, bias=True, weight_bit_width=weight_bits))
        self.layers = nn.Sequential(*layers)
        self.output_quant = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_quant(self.layers((x + 1.0) / 2.0))
