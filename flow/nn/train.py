"""Quantization-aware training loop used by ``qflow run``: Adam, a one-cycle or cosine LR schedule, cross-entropy.

Models take raw pixels (float32 0..255) and scale internally. Training batches can be
augmented with random shifts and rotations (:mod:`flow.nn.augment`). Training is
deterministic for a given ``seed`` and thread count.

>>> import torch
>>> from flow.nn.data import load_dataset
>>> ds = load_dataset("digits", "train")
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
>>> result = train(model, ds, TrainConfig(epochs=2, batch_size=64, lr=0.01), progress=False)
>>> result.epochs, len(result.history)
(2, 2)
>>> 0.0 <= evaluate(model, load_dataset("digits", "test")) <= 1.0
True
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from flow.core.errors import ConfigError, ModelFileError
from flow.core.fileio import atomic_write_bytes
from flow.core.progress import Bar
from flow.nn.augment import ShiftRotate
from flow.nn.data import Dataset

#: ``loss_fn(logits, labels, images) -> scalar loss``; replaces cross-entropy (e.g. for distillation).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@runtime_checkable
class PerSampleLoss(Protocol):
    """A loss with per-sample targets computed once for the training set (e.g. a teacher's logits).

    :func:`train` calls ``targets(dataset)`` once (``[N, ...]``, in the dataset's order), then
    ``loss(logits, labels, images, targets[batch])`` every step.
    """

    def targets(self, dataset: Dataset) -> torch.Tensor: ...

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


OPTIMIZERS = ("adam",)
SCHEDULES = ("onecycle", "cosine", "constant")
#: Share of the steps the cosine schedule warms up linearly.
WARMUP_FRACTION = 0.05


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainConfig:
    """Training settings; invalid values raise :class:`ConfigError` on construction.

    >>> TrainConfig(epochs=-1)
    Traceback (most recent call last):
    ...
    flow.core.errors.ConfigError: epochs must be >= 0, got -1
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 0.0
    seed: int = 0
    max_train_samples: int | None = None
    threads: int = 2
    optimizer: str = "adam"
    schedule: str = "onecycle"
    max_shift: float = 0.0
    max_degrees: float = 0.0

    def __post_init__(self) -> None:
        def need(ok: bool, what: str, value: object) -> None:
            if not ok:
                raise ConfigError(f"{what}, got {value!r}")

        need(_is_int(self.epochs) and self.epochs >= 0, "epochs must be >= 0", self.epochs)
        need(_is_int(self.batch_size) and self.batch_size > 0, "batch_size must be > 0", self.batch_size)
        need(_is_real(self.lr) and self.lr > 0, "lr must be > 0", self.lr)
        need(_is_real(self.weight_decay) and self.weight_decay >= 0, "weight_decay must be >= 0", self.weight_decay)
        need(_is_int(self.seed), "seed must be an integer", self.seed)
        need(self.max_train_samples is None or (_is_int(self.max_train_samples) and self.max_train_samples > 0),
             "max_train_samples must be > 0 or None (all)", self.max_train_samples)
        need(_is_int(self.threads) and self.threads > 0, "threads must be > 0", self.threads)
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}", self.optimizer)
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}", self.schedule)
        ShiftRotate(self.max_shift, self.max_degrees)  # validates the ranges


@dataclass
class TrainResult:
    """What :func:`train` did: epochs run, wall time, last epoch's mean loss, mean loss per epoch, CPU time (all threads)."""

    epochs: int
    seconds: float
    final_loss: float
    history: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0


def plain_tensor(out: object) -> torch.Tensor:
    """Model output as a plain tensor (Brevitas may return a QuantTensor)."""
    return out.value if hasattr(out, "value") and not isinstance(out, torch.Tensor) else out  # type: ignore[return-value]


def _batches(n: int, batch_size: int) -> int:
    """Batches per epoch; a trailing batch of one sample is dropped (BatchNorm cannot train on it)."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 else 0) if n > 1 else n


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int):
    """``onecycle`` (torch's OneCycleLR), ``cosine`` (linear warm-up, then cosine decay to 0) or None (``constant``)."""
    if total < 2 or cfg.schedule == "constant":
        return None
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    warm = max(1, int(WARMUP_FRACTION * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    model: nn.Module,
    dataset: Dataset,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    loss_fn: LossFn | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset`` in place; leave it in eval mode and return a :class:`TrainResult`.

    Batches are shuffled by a generator seeded with ``cfg.seed``, and augmented (when
    ``cfg.max_shift`` or ``cfg.max_degrees`` is set) by another; the global RNGs are seeded
    too (dropout etc.). ``torch.set_num_threads(cfg.threads)`` is in force while training.
    ``loss_fn(logits, labels, images)`` replaces cross-entropy when given; a
    :class:`PerSampleLoss` also gets its per-sample targets.
    ``on_epoch(epoch, model)`` runs after every epoch (1-based), e.g. to report a validation
    score to a search; an exception it raises ends training (the model is left in eval mode).
    """
    if cfg.max_train_samples is not None:
        dataset = dataset.subset(cfg.max_train_samples, seed=cfg.seed)
    n = len(dataset)
    if cfg.epochs > 0 and n == 0:
        raise ConfigError(f"cannot train on an empty dataset ({dataset.name}/{dataset.split})")
    steps = _batches(n, cfg.batch_size)
    total = cfg.epochs * steps
    criterion = loss_fn or (lambda logits, labels, _images: nn.functional.cross_entropy(logits, labels))
    per_sample = loss_fn.targets(dataset) if isinstance(loss_fn, PerSampleLoss) else None
    augment = ShiftRotate(cfg.max_shift, cfg.max_degrees)

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed + 10_007)
    x_all = torch.from_numpy(np.asarray(dataset.images, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(dataset.labels, dtype=np.int64))

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = make_scheduler(opt, cfg, total)

    history: list[float] = []
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        model.train()
        with Bar("train", total, enabled=progress, remaining=True) as bar:
            for epoch in range(cfg.epochs):
                bar.update(description=f"epoch {epoch + 1}/{cfg.epochs}")
                perm = torch.randperm(n, generator=gen)
                loss_sum, seen = 0.0, 0
                for b in range(steps):
                    idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                    xb, yb = augment(x_all[idx], aug_gen), y_all[idx]
                    opt.zero_grad(set_to_none=True)
                    logits = plain_tensor(model(xb))
                    loss = criterion(logits, yb, xb) if per_sample is None else criterion(logits, yb, xb, per_sample[idx])
                    if not torch.isfinite(loss):
                        raise ConfigError(f"training diverged (loss {loss.item()}) in epoch {epoch + 1}; lower lr (now {cfg.lr})")
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    loss_sum += loss.item() * len(idx)
                    seen += len(idx)
                    bar.update(advance=1, info=f"loss {loss_sum / seen:.4f}")
                history.append(loss_sum / max(seen, 1))
                if on_epoch is not None:
                    on_epoch(epoch + 1, model)
                    model.train()
    finally:
        model.eval()
        torch.set_num_threads(prev_threads)
    return TrainResult(cfg.epochs, time.perf_counter() - t0, history[-1] if history else float("nan"), history,
                       time.process_time() - c0)


@torch.no_grad()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's logits (float32 ``[N, classes]``) for raw-pixel ``images``, in eval mode."""
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be > 0, got {batch_size}")
    was_training = model.training
    model.eval()
    try:
        x = np.asarray(images)
        outs = [
            plain_tensor(model(torch.from_numpy(np.asarray(x[i:i + batch_size], dtype=np.float32)))).float().cpu().numpy()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``dataset``, in eval mode under ``torch.no_grad``."""
    if len(dataset) == 0:
        raise ConfigError(f"cannot evaluate on an empty dataset ({dataset.name}/{dataset.split})")
    logits = predict_logits(model, dataset.images, batch_size)
    return float((logits.argmax(axis=1) == dataset.labels).mean())


def save_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Save ``model.state_dict()`` to ``path`` atomically (temp file, then rename)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a :func:`save_checkpoint` file into ``model`` (``weights_only=True``: tensors only, no pickled code)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"checkpoint {p} does not exist")
    try:
        state = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as e:  # unpickling refused or corrupt file
        raise ModelFileError(f"checkpoint {p} cannot be loaded safely: {e}") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ModelFileError(f"checkpoint {p} does not fit this model: {e}") from None
    return model
