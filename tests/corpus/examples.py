"""The finn-examples networks (:mod:`models.catalogue`) in the corpus: their weights and their inputs.

:func:`prepare` gives a catalogue network the weights the catalogue names: ``mnist`` ones are
trained briefly on MNIST with qflow's trainer; ``random`` ones keep their seeded initial
weights, get seeded BatchNorm scales and shifts, and take their BatchNorm statistics from
seeded synthetic inputs (:mod:`tests.corpus.data`), so that activations spread over their
quantization levels instead of saturating.
:func:`to_domain` maps the corpus' synthetic pixels to what a network takes: pixels,
``[0, 1]``, bipolar features, MFCC-like values or I/Q samples.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from flow.nn.data import load_dataset
from flow.nn.train import TrainConfig
from flow.nn.train import train as train_on
from tests.corpus import data

#: What a network takes, per catalogue family (default: raw pixels 0..255).
DOMAINS = {"kws": "mfcc", "cybersecurity": "bipolar", "radioml": "iq"}
#: Synthetic batches for BatchNorm statistics.
CALIBRATION_BATCHES, CALIBRATION_BATCH = 4, 16


def to_domain(pixels: np.ndarray, domain: str) -> np.ndarray:
    """Synthetic pixels (0..255, class-structured) as the inputs of a network of ``domain``.

    ``pixels``: as is; ``unit``: ``/255``; ``bipolar``: ``+1`` above mid-grey, else ``-1``;
    ``mfcc``: an affine map onto ``[-90, 25]`` (the range of finn-examples' KWS input);
    ``iq``: an affine map onto ``[-1.5, 1.5]`` (inside VGG10's [-2, 2] input range).
    """
    x = pixels.astype(np.float32)
    maps = {
        "pixels": lambda v: v,
        "unit": lambda v: v / 255.0,
        "bipolar": lambda v: np.where(v > 127.5, 1.0, -1.0),
        "mfcc": lambda v: v / 255.0 * 115.0 - 90.0,
        "iq": lambda v: v / 255.0 * 3.0 - 1.5,
    }
    return maps[domain](x).astype(np.float32)


def synthetic(n: int, shape: tuple[int, ...], domain: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled synthetic samples of ``shape`` in ``domain`` (a 1-D shape is drawn as one row)."""
    draw = shape if len(shape) >= 2 else (1, *shape)
    x, y = data.images(n, draw, seed=seed)
    return to_domain(x, domain).reshape(n, *shape), y


def mnist(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images (raw pixels, float32) and labels of MNIST ``split``."""
    ds = load_dataset("mnist", split)
    return ds.images[:n].astype(np.float32), ds.labels[:n]


def train_on_mnist(model: nn.Module, samples: int, seed: int = 0) -> nn.Module:
    """One epoch over ``samples`` MNIST training images (qflow's trainer, one thread); eval mode."""
    train_on(model, load_dataset("mnist", "train"),
             TrainConfig(epochs=1, batch_size=64, lr=0.01, seed=seed, max_train_samples=samples, threads=1), progress=False)
    return model.eval()


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, shape: tuple[int, ...], domain: str, seed: int = 3) -> nn.Module:
    """Seeded BatchNorm scales and shifts, and running statistics averaged over seeded synthetic
    batches (everything else in eval mode).

    The shifts are kept away from 0 (``|beta|`` in [0.05, 0.5]): a channel that the synthetic
    data leaves constant then has no threshold sitting exactly on the one value it takes,
    where float evaluation order alone would decide a sign.
    """
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    gen = torch.Generator().manual_seed(seed)
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
        if m.affine:
            n = m.num_features
            m.weight.copy_(0.5 + torch.rand(n, generator=gen))
            sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
            m.bias.copy_(sign * (0.05 + 0.45 * torch.rand(n, generator=gen)))
    for b in range(CALIBRATION_BATCHES if norms else 0):
        x, _ = synthetic(CALIBRATION_BATCH, shape, domain, seed=seed + b)
        model(torch.from_numpy(x))
    return model.eval()
