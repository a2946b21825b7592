"""ImageNet networks from ``brevitas_examples.imagenet_classification``, full size, on raw 224x224 pixels.

* **MobileNet-v1 w4a4** (finn-examples ``build/mobilenet-v1``): Brevitas' ``quant_mobilenet_v1_4b``
  configuration, unchanged: 13 depthwise-separable blocks, 4-bit weights and activations,
  8-bit first-layer weights, per-channel weight scales, a FLOOR ``TruncAvgPool2d(7)`` and a
  4-bit classifier with an Int32 bias. In front of it, as in finn-examples' deployed graph
  (``build/mobilenet-v1/README.md``), a ``Div`` by 255 and the normalisation with
  ``mean = (0.485, 0.456, 0.406)`` and one global ``std = 0.226`` (global so that
  streamlining can move it through the first convolution, which has no padding). The
  accelerator takes UINT8 pixels (``--input-dtype UINT8``).
* **ProxylessNAS-mobile14 w4a4** (Brevitas' ``quant_proxylessnas_mobile14_4b``; finn-examples
  ships no build for it): inverted-bottleneck units with shared-quantizer residual joins,
  8-bit first-layer weights. Its pre-processing is Brevitas' own, ``(x / 255 - 128/255) / (128/255)``.

Both are built untrained (``pretrained=None``: nothing is downloaded); the catalogue
(:mod:`models.catalogue`) gives them seeded random weights.

>>> net = mobilenet_v1()
>>> net.input_shape, sum(p.numel() for p in net.parameters()) > 4_000_000
((3, 224, 224), True)
"""

from __future__ import annotations

from brevitas_examples.imagenet_classification.models import model_with_cfg

from models.preprocess import Preprocessed

__all__ = ["IMAGENET_SHAPE", "MOBILENET_MEAN", "MOBILENET_STD", "mobilenet_v1", "proxylessnas_mobile14"]

IMAGENET_SHAPE = (3, 224, 224)
#: finn-examples' MobileNet-v1 normalisation (a per-channel mean and one global std).
MOBILENET_MEAN = (0.485, 0.456, 0.406)
MOBILENET_STD = 0.226
#: Brevitas' ProxylessNAS normalisation (``cfg/quant_proxylessnas_mobile14_4b.ini``).
PROXYLESS_MEAN = (128 / 255,) * 3
PROXYLESS_STD = 128 / 255


def mobilenet_v1() -> Preprocessed:
    """finn-examples' MobileNet-v1 w4a4 (Brevitas ``quant_mobilenet_v1_4b``, untrained) on raw pixels."""
    net, _ = model_with_cfg("quant_mobilenet_v1_4b", pretrained=None)
    return Preprocessed(net, IMAGENET_SHAPE, mean=MOBILENET_MEAN, std=MOBILENET_STD)


def proxylessnas_mobile14() -> Preprocessed:
    """Brevitas' ProxylessNAS-mobile14 w4a4 (``quant_proxylessnas_mobile14_4b``, untrained) on raw pixels."""
    net, _ = model_with_cfg("quant_proxylessnas_mobile14_4b", pretrained=None)
    return Preprocessed(net, IMAGENET_SHAPE, mean=PROXYLESS_MEAN, std=PROXYLESS_STD)
