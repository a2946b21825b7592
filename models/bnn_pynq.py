"""finn-examples' bnn-pynq networks (TFC, CNV) and its GTSRB CNV, from ``brevitas_examples.bnn_pynq``.

finn-examples deploys Brevitas' own bnn-pynq classes, exported to QONNX with a ``Div`` by 255
merged in front (the accelerator takes raw UINT8 pixels) and a top-1 ``TopK`` at the end
(finn-examples ``build/bnn-pynq/README.md``). The GTSRB example is the same CNV class with
43 classes, its ``Div`` added by a build step (``build/gtsrb/build.py``). Here each network
is the unchanged Brevitas class behind :class:`models.preprocess.Preprocessed`:

=========  =================================================  ========  ===========
network    topology                                           input     in quantizer
=========  =================================================  ========  ===========
tfc-wXaY   784-64-64-64-10 (FC, TensorNorm at the end)        1x28x28   X..Y bits
cnv-wXaY   6 unpadded 3x3 convs 64-64-128-128-256-256,        3x32x32   8 bits
           2 max-pools, FC 512-512-10
gtsrb      cnv-w1a1 with 43 classes                           3x32x32   8 bits
=========  =================================================  ========  ===========

Configurations are Brevitas' (``brevitas_examples/bnn_pynq/cfg``): TFC's input quantizer has
the activation bit width (1 bit: bipolar), CNV's 8 bits.

>>> import torch
>>> net = tfc(1, 1).eval()
>>> net.input_shape, tuple(net(torch.zeros(2, 1, 28, 28)).shape)
((1, 28, 28), (2, 10))
>>> tuple(gtsrb_cnv().eval()(torch.zeros(1, 3, 32, 32)).shape)
(1, 43)
"""

from __future__ import annotations

from brevitas_examples.bnn_pynq.models import get_model_cfg, model_impl
from brevitas_examples.bnn_pynq.models.CNV import CNV
from brevitas_examples.bnn_pynq.models.FC import FC
from torch import nn

from flow.core.errors import ConfigError
from models.preprocess import Preprocessed

__all__ = ["BITS", "tfc", "cnv", "gtsrb_cnv", "bnn_pynq_config"]

#: The (weight, activation) bit widths finn-examples ships for TFC and CNV.
BITS = ((1, 1), (1, 2), (2, 2))
MNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)
GTSRB_CLASSES = 43


def _check_bits(weight_bits: int, act_bits: int, family: str) -> None:
    if (weight_bits, act_bits) not in BITS:
        shown = ", ".join(f"w{w}a{a}" for w, a in BITS)
        raise ConfigError(f"{family}: finn-examples ships {shown}; got w{weight_bits}a{act_bits}")


def bnn_pynq_config(name: str) -> nn.Module:
    """A ``brevitas_examples.bnn_pynq`` network by its config name (``tfc_1w1a`` ... ``cnv_2w2a``,
    ``lfc_2w2a``), untrained and without pre-processing (it takes ``[0, 1]`` inputs).

    Brevitas ships no ``lfc_2w2a`` config; it is ``lfc_1w2a`` with 2-bit weights.
    """
    cfg = get_model_cfg("lfc_1w2a" if name == "lfc_2w2a" else name)
    if name == "lfc_2w2a":
        cfg.set("QUANT", "WEIGHT_BIT_WIDTH", "2")
    return model_impl[cfg.get("MODEL", "ARCH")](cfg)


def tfc(weight_bits: int, act_bits: int) -> Preprocessed:
    """finn-examples' ``tfc-w{weight_bits}a{act_bits}``: Brevitas' TFC on raw MNIST pixels."""
    _check_bits(weight_bits, act_bits, "tfc")
    net = FC(num_classes=10, weight_bit_width=weight_bits, act_bit_width=act_bits, in_bit_width=act_bits,
             in_channels=1, out_features=[64, 64, 64])
    return Preprocessed(net, MNIST_SHAPE)


def cnv(weight_bits: int, act_bits: int, num_classes: int = 10) -> Preprocessed:
    """finn-examples' ``cnv-w{weight_bits}a{act_bits}``: Brevitas' CNV on raw 32x32 RGB pixels."""
    _check_bits(weight_bits, act_bits, "cnv")
    net = CNV(num_classes=num_classes, weight_bit_width=weight_bits, act_bit_width=act_bits, in_bit_width=8, in_ch=3)
    return Preprocessed(net, CIFAR_SHAPE)


def gtsrb_cnv() -> Preprocessed:
    """finn-examples' GTSRB network: CNV-w1a1 with 43 traffic-sign classes."""
    return cnv(1, 1, num_classes=GTSRB_CLASSES)
