"""ESPCN super-resolution (``brevitas_examples.super_resolution``) with each upsampling layer FINN can build.

Brevitas' FINN-friendly quantized ESPCN (Shi et al., 2016): ``conv 5x5 -> 64, conv 3x3 -> 64,
conv 3x3 -> 32`` with BN and ReLU, then an upsampling layer by ``upscale_factor`` and an
unsigned 8-bit output quantizer with unit scale (the output is an 8-bit image). Inputs are
images scaled to ``[0, 1]`` and quantized to 8 bits by the first conv's input quantizer, so
the QONNX graph takes raw pixels (UINT8) behind a ``Div`` by 255. The upsampling layer:

============  =======================================================================  ============================
``upsample``  layer                                                                    FINN layers
============  =======================================================================  ============================
``subpixel``  ``conv 3x3 -> C*r^2`` then ``PixelShuffle(r)`` (Brevitas' ``QuantESPCN``)  none: DepthToSpace has no HW op
``resize``    nearest-neighbour resize convolution: ``QuantUpsamplingNearest2d(r)``    ``UpsampleNearestNeighbour``,
              then ``conv 3x3 -> C`` (Brevitas' ``QuantNearestNeighborConvolution``)    then a conv
``deconv``    ``QuantConvTranspose2d(32, C, kernel 2r, stride r, padding r/2)``        ``FMPadding_Pixel``, sliding
                                                                                       window and MVAU (FINN's deconv)
============  =======================================================================  ============================

The sub-pixel network is Brevitas' ``quant_espcn_base`` class unchanged; the others replace
its last conv and pixel shuffle. Weights: 4-bit per-channel (8-bit in the first and last
layer), 4-bit activations, as Brevitas' ``quant_espcn_x2_w4a4_base``.

>>> import torch
>>> net = espcn("resize", in_hw=(16, 16)).eval()
>>> net.input_shape, tuple(net(torch.zeros(1, 3, 16, 16)).shape)
((3, 16, 16), (1, 3, 32, 32))
"""

from __future__ import annotations

from collections.abc import Sequence

import brevitas.nn as qnn
from brevitas_examples.super_resolution.models.common import (
    CommonIntWeightPerChannelQuant,
    CommonUintActQuant,
    QuantNearestNeighborConvolution,
)
from brevitas_examples.super_resolution.models.espcn import QuantESPCN
from torch import nn

from flow.core.errors import ConfigError
from models.preprocess import Preprocessed

__all__ = ["UPSAMPLERS", "espcn"]

UPSAMPLERS = ("subpixel", "resize", "deconv")
IO_BITS = 8


def _last_layer(upsample: str, r: int, channels: int, act_bits: int) -> nn.Module:
    if upsample == "resize":
        return QuantNearestNeighborConvolution(32, channels, kernel_size=3, padding=1, upscale_factor=r,
                                               act_bit_width=act_bits, weight_bit_width=IO_BITS)
    k = 2 * r
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=CommonUintActQuant, bit_width=act_bits, return_quant_tensor=True),
        qnn.QuantConvTranspose2d(32, channels, k, stride=r, padding=(k - r) // 2, bias=False,
                                 weight_quant=CommonIntWeightPerChannelQuant, weight_bit_width=IO_BITS),
    )


def espcn(upsample: str = "resize", upscale_factor: int = 2, channels: int = 3, in_hw: Sequence[int] = (64, 64),
          weight_bits: int = 4, act_bits: int = 4) -> Preprocessed:
    """ESPCN on raw ``(channels, *in_hw)`` pixels, upscaling by ``upscale_factor`` with ``upsample``."""
    if upsample not in UPSAMPLERS:
        raise ConfigError(f"espcn: upsample must be one of {', '.join(UPSAMPLERS)}, got {upsample!r}")
    if upsample == "deconv" and upscale_factor % 2:
        raise ConfigError(f"espcn: the deconv upsampler needs an even upscale_factor, got {upscale_factor}")
    net = QuantESPCN(upscale_factor=upscale_factor, num_channels=channels, weight_bit_width=weight_bits,
                     act_bit_width=act_bits, weight_quant=CommonIntWeightPerChannelQuant)
    if upsample != "subpixel":
        net.conv4 = _last_layer(upsample, upscale_factor, channels, act_bits)
        net.pixel_shuffle = nn.Identity()
    return Preprocessed(net, (channels, *in_hw))
