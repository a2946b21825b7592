"""The pre-processing finn-examples merges in front of its image networks, as a Brevitas-free wrapper.

finn-examples' deployed graphs take raw 8-bit pixels: a ``Div`` by 255 sits in front of the
network (bnn-pynq, GTSRB), followed for ImageNet networks by the normalisation the network
was trained with (MobileNet-v1: a per-channel mean and one global std, so that streamlining
can move the scale through the first convolution). :class:`Preprocessed` puts exactly those
operations in front of a network, so its QONNX export has a UINT8 input.

>>> import torch
>>> from torch import nn
>>> m = Preprocessed(nn.Identity(), (3, 2, 2), mean=(0.5, 0.5, 0.5), std=0.25)
>>> m(torch.full((1, 3, 2, 2), 255.0))[0, 0, 0, 0].item()
2.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from flow.core.errors import ConfigError

__all__ = ["Preprocessed"]


class Preprocessed(nn.Module):
    """``net((x / 255 - mean) / std)`` on raw pixels ``x`` (0..255) of shape ``(N, *input_shape)``.

    Args:
        net: the network, fed with pixels scaled to ``[0, 1]`` (and normalised when ``mean`` is given).
        input_shape: ``(C, H, W)`` (or ``(C, L)``) of one input; stored as ``input_shape``.
        mean: one value per channel, subtracted after the scaling (``None``: no normalisation).
        std: one global divisor applied with ``mean``.
    """

    def __init__(self, net: nn.Module, input_shape: Sequence[int], mean: Sequence[float] | None = None, std: float = 1.0):
        super().__init__()
        self.net = net
        self.input_shape = tuple(int(d) for d in input_shape)
        if mean is not None and len(mean) != self.input_shape[0]:
            raise ConfigError(f"mean has {len(mean)} values but the input has {self.input_shape[0]} channels")
        if not std > 0:
            raise ConfigError(f"std must be positive, got {std!r}")
        shape = (1, self.input_shape[0]) + (1,) * (len(self.input_shape) - 1)
        self.register_buffer("mean", None if mean is None else torch.tensor(mean, dtype=torch.float32).reshape(shape))
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.net(x)
