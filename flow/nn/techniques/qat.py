"""Quantization-aware training: the quantized network trained directly (Brevitas fake-quantization, straight-through gradients)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from flow.nn.techniques.base import Job, Options, TechniqueBase
from flow.nn.train import train


class QAT(TechniqueBase):
    """Train the quantized model with the recipe's budget (and a modifier's loss, e.g. distillation)."""

    name: ClassVar[str] = "qat"
    kind: ClassVar[str] = "method"
    options: ClassVar[type[Options]] = Options
    search_defaults: ClassVar[dict[str, Any]] = {}

    def obtain(self, model: nn.Module, opts: Options, job: Job) -> None:
        distilled = ", distilled" if job.loss_fn is not None else ""
        job.log(f"training {job.model_name} ({job.train_cfg.epochs} epochs{distilled})")
        train(model, job.train_set, job.train_cfg, progress=job.progress, loss_fn=job.loss_fn, on_epoch=job.on_epoch)
