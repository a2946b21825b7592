"""Synthetic labelled images for brief training: deterministic, no files, no network.

Ten classes, each a smooth random prototype image; a sample is its class prototype plus
noise, as raw pixels 0..255. A few training steps on them give a network distinct class
scores (outputs that are not tied), which is all the corpus needs.
"""

from __future__ import annotations

import numpy as np

CLASSES = 10


def prototypes(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """One smooth random image per class (``CLASSES x shape``), values 0..255."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(CLASSES, *shape[:-2], max(2, shape[-2] // 4), max(2, shape[-1] // 4)))
    reps = (-(-shape[-2] // coarse.shape[-2]), -(-shape[-1] // coarse.shape[-1]))
    fine = np.repeat(np.repeat(coarse, reps[0], axis=-2), reps[1], axis=-1)
    return fine[..., : shape[-2], : shape[-1]]


def images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples (float32 pixels 0..255, ``n x shape``) and their labels; ``seed`` picks the draw."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=n)
    x = prototypes(shape)[labels] + rng.normal(0, 40, size=(n, *shape))
    return np.clip(np.round(x), 0, 255).astype(np.float32), labels.astype(np.int64)
