"""Structures FINN's default flow cannot map, as small Brevitas models: residual blocks, average-pool
heads, depthwise-separable convs, and slices of Brevitas' own ImageNet example networks.

Each function returns ``(name, module, input_shape, input_dtype, notes)``: an untrained,
seeded ``nn.Module`` (eval mode) taking raw pixels (float tensors holding integers 0..255)
of ``(N, *input_shape)``, which it divides by 255 and quantizes to 8 bits (the two
``*preprocessed_padded`` ones normalise instead, with no input quantizer), so its QONNX
input is ``input_dtype``. :data:`MAPPABLE` lists the ones qflow maps to integer hardware,
:data:`UNMAPPABLE` three that it refuses with an error naming the node.

>>> name, module, shape, dtype, notes = residual_identity()
>>> import torch; module(torch.zeros(2, *shape)).shape
torch.Size([2, 10])
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
from torch import nn

CLASSES = 10
DIGITS = (1, 8, 8)


def uact(bits: int, channels: int | None = None, **kw) -> qnn.QuantReLU:
    """Unsigned quantized ReLU; per-channel scales when ``channels`` is given."""
    if channels is None:
        return qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=bits, **kw)
    return qnn.QuantReLU(
        act_quant=Uint8ActPerTensorFloat, bit_width=bits, scaling_per_output_channel=True,
        per_channel_broadcastable_shape=(1, channels, 1, 1), scaling_stats_permute_dims=(1, 0, 2, 3), **kw,
    )


def sact(bits: int) -> qnn.QuantIdentity:
    """Signed per-tensor quantizer (the residual blocks' shared one)."""
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=bits, return_quant_tensor=False)


def conv(cin, cout, k=3, stride=1, groups=1, wbits=4, per_channel_w=False) -> qnn.QuantConv2d:
    return qnn.QuantConv2d(
        cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False, weight_bit_width=wbits,
        weight_quant=Int8WeightPerChannelFloat if per_channel_w else Int8WeightPerTensorFloat,
    )


def linear(cin, cout, wbits=4) -> qnn.QuantLinear:
    return qnn.QuantLinear(cin, cout, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=wbits)


class InputQuant(nn.Module):
    """Raw 0..255 pixels scaled to [0, 1] and quantized to 8 bits (a UINT8 QONNX input)."""

    def __init__(self):
        super().__init__()
        self.q = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8)

    def forward(self, x):
        return self.q(x / 255.0)


class ResBlock(nn.Module):
    """``shared(shared(body(x)) + skip)``, ``body = conv-bn-relu-conv-bn``; ``skip`` is ``x`` or, with
    ``proj``, ``shared(bn(conv1x1/2(x)))`` behind a stride-2 body. ``float_body`` leaves the body's
    BN output unquantized (torchvision style), so the Add sums a float and a quantized tensor."""

    def __init__(self, c, shared, act_bits=4, k=3, proj=False, float_body=False, per_channel_w=False):
        super().__init__()
        self.conv1 = conv(c, c, k, 2 if proj else 1, per_channel_w=per_channel_w)
        self.bn1, self.act1 = nn.BatchNorm2d(c), uact(act_bits)
        self.conv2, self.bn2 = conv(c, c, k, per_channel_w=per_channel_w), nn.BatchNorm2d(c)
        self.shared, self.float_body = shared, float_body
        self.proj = nn.Sequential(conv(c, c, 1, 2, per_channel_w=per_channel_w), nn.BatchNorm2d(c)) if proj else None

    def forward(self, x):
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if not self.float_body:
            y = self.shared(y)
        return self.shared(y + (x if self.proj is None else self.shared(self.proj(x))))


class ResNet(nn.Module):
    """Stem conv, ``blocks`` residual blocks sharing one signed quantizer (as Brevitas' ProxylessNAS), a linear head."""

    def __init__(self, blocks=1, c=8, act_bits=4, k=3, proj=False, float_body=False, per_channel_w=False):
        super().__init__()
        self.inp, self.stem, self.bn0 = InputQuant(), conv(1, c, 3, per_channel_w=per_channel_w), nn.BatchNorm2d(c)
        self.shared = sact(act_bits)
        self.blocks = nn.Sequential(*[
            ResBlock(c, self.shared, act_bits, k, proj and i == 0, float_body, per_channel_w) for i in range(blocks)
        ])
        self.fc = linear(c * (16 if proj else 64), CLASSES)

    def forward(self, x):
        x = self.blocks(self.shared(self.bn0(self.stem(self.inp(x)))))
        return self.fc(torch.flatten(x, 1))


class PoolHead(nn.Module):
    """Two conv blocks, a pool, optionally a requantizer, a linear head.

    ``pool``: ``adaptive`` (AdaptiveAvgPool2d(1)), ``global`` (AvgPool2d over the whole 8x8 map),
    ``trunc`` (Brevitas TruncAvgPool2d over the whole map, ``rounding`` FLOOR or ROUND),
    ``inner`` (AvgPool2d(2), another conv block, then AdaptiveAvgPool2d(1)).
    """

    def __init__(self, pool="adaptive", per_channel=False, requant=False, c=16, act_bits=4, rounding="FLOOR"):
        super().__init__()
        self.inp = InputQuant()
        self.conv0, self.bn0, self.act0 = conv(1, c, 3), nn.BatchNorm2d(c), uact(act_bits)
        self.conv1, self.bn1 = conv(c, c, 3), nn.BatchNorm2d(c)
        self.act1 = uact(act_bits, c if per_channel else None, return_quant_tensor=pool == "trunc")
        self.kind = pool
        if pool == "adaptive":
            self.pool = nn.AdaptiveAvgPool2d(1)
        elif pool == "global":
            self.pool = nn.AvgPool2d(8)
        elif pool == "trunc":
            self.pool = qnn.TruncAvgPool2d(kernel_size=8, stride=1, bit_width=act_bits + 2, float_to_int_impl_type=rounding)
        else:
            self.pool = nn.AvgPool2d(2)
            self.conv2, self.bn2, self.act2 = conv(c, c, 3), nn.BatchNorm2d(c), uact(act_bits)
            self.gap = nn.AdaptiveAvgPool2d(1)
        self.requant = sact(8) if requant else None
        self.fc = linear(c, CLASSES)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(self.act0(self.bn0(self.conv0(self.inp(x)))))))
        x = self.pool(x)
        if self.kind == "inner":
            x = self.gap(self.act2(self.bn2(self.conv2(x))))
        x = torch.flatten(x, 1)
        return self.fc(x if self.requant is None else self.requant(x))


class DwsBlock(nn.Module):
    """MobileNet-v1 unit: depthwise conv, BN, ReLU (per-tensor), pointwise conv, BN, ReLU (per-channel unless ``last``)."""

    def __init__(self, cin, cout, stride, k=3, act_bits=4, last=False):
        super().__init__()
        self.dw, self.bn1 = conv(cin, cin, k, stride, groups=cin, per_channel_w=True), nn.BatchNorm2d(cin)
        self.act1 = uact(act_bits)
        self.pw, self.bn2 = conv(cin, cout, 1, per_channel_w=True), nn.BatchNorm2d(cout)
        self.act2 = uact(act_bits, None if last else cout)

    def forward(self, x):
        return self.act2(self.bn2(self.pw(self.act1(self.bn1(self.dw(x))))))


class DwsNet(nn.Module):
    """A stem with per-channel activation scales, then depthwise-separable blocks (the first depthwise
    conv reads per-channel scales), a linear head."""

    def __init__(self, strides=(1, 1), k=3, c=8, act_bits=4):
        super().__init__()
        self.inp, self.stem, self.bn0 = InputQuant(), conv(1, c, 3, per_channel_w=True), nn.BatchNorm2d(c)
        self.act0 = uact(act_bits, c)
        blocks, cin, hw = [], c, 8
        for i, s in enumerate(strides):
            blocks.append(DwsBlock(cin, 2 * cin, s, k, act_bits, last=i == len(strides) - 1))
            cin, hw = 2 * cin, (hw + s - 1) // s
        self.blocks = nn.Sequential(*blocks)
        self.fc = linear(cin * hw * hw, CLASSES)

    def forward(self, x):
        return self.fc(torch.flatten(self.blocks(self.act0(self.bn0(self.stem(self.inp(x))))), 1))


class Behind(nn.Module):
    """A network behind qflow's raw-pixel input quantizer."""

    def __init__(self, net):
        super().__init__()
        self.inp, self.net = InputQuant(), net

    def forward(self, x):
        return self.net(self.inp(x))


def _entry(name, make, notes, shape=DIGITS, seed=0):
    torch.manual_seed(seed)
    return name, make().eval(), shape, "UINT8", notes


def residual_identity():
    return _entry("res_identity", lambda: ResNet(blocks=1), "residual block, identity skip; one shared signed quantizer on stem, body and sum")


def residual_projection():
    return _entry("res_proj", lambda: ResNet(blocks=1, proj=True), "residual block with stride-2 body and a 1x1/2 projection conv on the skip")


def residual_stacked():
    return _entry("res_stacked", lambda: ResNet(blocks=2), "two residual blocks back to back")


def residual_wide():
    return _entry(
        "res_wide", lambda: ResNet(blocks=1, k=5, act_bits=3, per_channel_w=True), "residual block, 5x5 kernels, 3-bit activations, per-channel weight scales"
    )


def gap_per_tensor():
    return _entry("gap_tensor", lambda: PoolHead("adaptive"), "per-tensor ReLU -> AdaptiveAvgPool2d(1) -> QuantLinear (float input)")


def gap_per_channel():
    return _entry(
        "gap_channel", lambda: PoolHead("adaptive", per_channel=True, requant=True), "per-channel ReLU -> AdaptiveAvgPool2d(1) -> QuantIdentity -> QuantLinear"
    )


def avgpool_global():
    return _entry("avgpool_global", lambda: PoolHead("global"), "AvgPool2d over the whole map -> QuantLinear")


def avgpool_inner():
    return _entry("avgpool_inner", lambda: PoolHead("inner"), "AvgPool2d(2) inside the network, then a conv block and a global average pool")


def trunc_avgpool_floor():
    return _entry("trunc_avgpool", lambda: PoolHead("trunc"), "TruncAvgPool2d, FLOOR rounding (FINN maps it already)")


def trunc_avgpool_round():
    return _entry(
        "trunc_avgpool_round", lambda: PoolHead("trunc", rounding="ROUND"), "TruncAvgPool2d, ROUND rounding (Brevitas' MobileNet/ProxylessNAS default)"
    )


def depthwise_stride1():
    return _entry("dw_s1", lambda: DwsNet(strides=(1, 1)), "two depthwise-separable blocks, stride 1, per-channel scales before each depthwise conv")


def depthwise_stride2():
    return _entry("dw_s2", lambda: DwsNet(strides=(2, 1)), "two depthwise-separable blocks, the first with stride 2")


def depthwise_k5():
    return _entry("dw_k5", lambda: DwsNet(strides=(2,), k=5, act_bits=3), "one depthwise-separable block, 5x5 depthwise kernel, stride 2, 3-bit")


def mobilenet_slice():
    """Brevitas' MobileNet-v1 class, unchanged, at a tiny size."""
    from brevitas_examples.imagenet_classification.models.mobilenetv1 import MobileNet

    return _entry("mobilenet_slice", lambda: Behind(MobileNet(
        channels=[[8], [16], [32]], first_stage_stride=False, act_bit_width=4, weight_bit_width=4, round_average_pool=True,
        first_layer_bit_width=8, last_layer_bit_width=6, avg_pool_kernel_size=3, first_layer_stride=1, in_channels=1,
        num_classes=CLASSES,
    )), "brevitas_examples MobileNet-v1: per-channel acts before depthwise convs, TruncAvgPool2d ROUND, biased classifier")


def _proxyless_net():
    """Brevitas' ProxylessNAS class, unchanged, at a tiny size (its pool is 7x7, so a 14x14 input)."""
    from brevitas_examples.imagenet_classification.models.proxylessnas import ProxylessNAS

    return ProxylessNAS(
        channels=[[8, 8]], init_block_channels=8, final_block_channels=16, residuals=[[1, 1]], shortcuts=[[0, 1]],
        kernel_sizes=[[3, 3]], expansions=[[1, 3]], bit_width=4, depthwise_bit_width=4, first_layer_weight_bit_width=8,
        hadamard_classifier=False, round_average_pool=True, in_channels=1, num_classes=CLASSES,
    )


def proxyless_slice():
    return _entry("proxyless_slice", lambda: Behind(_proxyless_net()),
                  "brevitas_examples ProxylessNAS: shared-quantizer residual, inverted bottleneck, TruncAvgPool2d(7) ROUND", shape=(1, 14, 14))


def _preprocessed(mean: float, std: float):
    """The ProxylessNAS slice on raw pixels behind ``(x / 255 - mean) / std`` and no input quantizer: its zero-padded
    first conv reads the normalised pixels, as the catalogue's ProxylessNAS does."""
    from models.preprocess import Preprocessed

    return Preprocessed(_proxyless_net(), (1, 14, 14), mean=(mean,), std=std)


def preprocessed_padded():
    return _entry("pre_padded", lambda: _preprocessed(128 / 255, 128 / 255),
                  "Brevitas' ProxylessNAS pre-processing, x/128 - 1, in front of a zero-padded first conv", shape=(1, 14, 14))


def bad_preprocessed_padded():
    return _entry("bad_pre_padded", lambda: _preprocessed(0.5, 0.5),
                  "refused: x/127.5 - 1 in front of a zero-padded first conv (no pixel value maps to 0)", shape=(1, 14, 14))


def bad_residual_float():
    return _entry("bad_res_float", lambda: ResNet(blocks=1, float_body=True), "refused: an unquantized BN output added to the quantized skip")


def bad_gap_per_channel():
    return _entry(
        "bad_gap_channel", lambda: PoolHead("adaptive", per_channel=True), "refused: per-channel scales -> global pool -> QuantLinear without an input quantizer"
    )


MAPPABLE = (
    residual_identity, residual_projection, residual_stacked, residual_wide, gap_per_tensor, gap_per_channel,
    avgpool_global, avgpool_inner, trunc_avgpool_floor, trunc_avgpool_round, depthwise_stride1, depthwise_stride2,
    depthwise_k5, mobilenet_slice, proxyless_slice, preprocessed_padded,
)
UNMAPPABLE = (bad_residual_float, bad_gap_per_channel, bad_preprocessed_padded)
