"""Training-time augmentation of raw-pixel image batches: random shifts and small rotations.

One affine warp per batch (``affine_grid`` + bilinear ``grid_sample``, zero fill: MNIST's
background), drawn from a seeded generator, so training stays deterministic. Pixel values
stay in 0..255, the range the models' input quantizers expect. Only the training batches
are warped; validation and test images never are.

>>> import torch
>>> aug = ShiftRotate(max_shift=2.0, max_degrees=10.0)
>>> x = torch.zeros(4, 1, 28, 28); x[:, :, 10:18, 10:18] = 255.0
>>> y = aug(x, torch.Generator().manual_seed(0))
>>> y.shape, float(y.min()) >= 0.0, float(y.max()) <= 255.0, bool((y != x).any())
(torch.Size([4, 1, 28, 28]), True, True, True)
>>> torch.equal(ShiftRotate(0.0, 0.0)(x, torch.Generator()), x)
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from flow.core.errors import ConfigError

__all__ = ["ShiftRotate"]

PIXEL_MAX = 255.0


class ShiftRotate:
    """Random translation, uniform in ±``max_shift`` pixels, and rotation in ±``max_degrees``, per image."""

    def __init__(self, max_shift: float = 0.0, max_degrees: float = 0.0):
        for what, v, hi in (("max_shift", max_shift, 8.0), ("max_degrees", max_degrees, 45.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= hi:
                raise ConfigError(f"augmentation: {what} must be a number from 0 to {hi:g}, got {v!r}")
        self.max_shift, self.max_degrees = float(max_shift), float(max_degrees)

    @property
    def active(self) -> bool:
        return self.max_shift > 0 or self.max_degrees > 0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``x`` (N, C, H, W) warped; unchanged when both ranges are 0 or ``x`` is not an image batch."""
        if not self.active or x.dim() != 4:
            return x
        n, _, h, w = x.shape
        u = torch.rand(n, 3, generator=gen) * 2 - 1
        ang = u[:, 0] * math.radians(self.max_degrees)
        cos, sin = torch.cos(ang), torch.sin(ang)
        tx, ty = u[:, 1] * self.max_shift * 2 / w, u[:, 2] * self.max_shift * 2 / h  # [-1, 1] grid units
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.clamp_(0.0, PIXEL_MAX)
