"""Activation scales and BatchNorm statistics of an untrained test network taken from data."""

from __future__ import annotations

import torch


def calibrated(net: torch.nn.Module, batches) -> torch.nn.Module:
    """``net`` after forward passes in training mode over ``batches`` (numpy arrays), in eval mode.

    Brevitas' runtime-statistics quantizers and BatchNorm layers take their values from the
    data, instead of round initial scales whose exact ratios put many values on rounding
    boundaries."""
    net.train()
    with torch.no_grad():
        for x in batches:
            net(torch.from_numpy(x))
    return net.eval()
