"""Knowledge distillation: a quantized student trained (QAT) against a frozen float teacher.

The loss (Hinton et al., 2015) for :func:`flow.nn.train.train`'s ``loss_fn`` hook is::

    alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(student, labels)

with ``p = softmax(logits / T)`` and the KL averaged over the batch. ``T^2`` keeps the
gradient scale of the soft term independent of ``T``; ``alpha = 0`` is plain cross-entropy.
The KL is taken from the teacher's distribution to the student's (``F.kl_div`` of the
student's log-probabilities against the teacher's), the standard direction.

The teacher (:func:`make_teacher`) is the float twin (:func:`flow.nn.techniques.twin.float_twin`)
of the student's registered architecture, ``"float"``, or of one twice as wide (hidden
widths, conv channels and FC widths doubled), ``"wider"``; it is trained first
(:func:`train_teacher`), then frozen in eval mode.

>>> import torch
>>> from flow.nn.data import load_dataset
>>> from flow.nn.train import TrainConfig, evaluate, train
>>> from models import build_model
>>> ds = load_dataset("digits", "train")
>>> teacher = make_teacher("tfc", "wider", in_shape=ds.input_shape)
>>> teacher.layers.fc0.linear.out_features
128
>>> _ = train_teacher(teacher, ds, TrainConfig(epochs=2, batch_size=64, lr=0.02), progress=False)
>>> student = build_model("tfc", in_shape=ds.input_shape, weight_bits=2, act_bits=2)
>>> _ = train(student, ds, TrainConfig(epochs=2, batch_size=64, lr=0.02), progress=False,
...           loss_fn=distillation_loss(teacher, temperature=4.0, alpha=0.7))
>>> evaluate(student, load_dataset("digits", "test")) > 0.5
True
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from flow.core.errors import ConfigError
from flow.nn.data import Dataset
from flow.nn.techniques.base import Job, Options, TechniqueBase
from flow.nn.techniques.twin import float_twin
from flow.nn.train import LossFn, TrainConfig, TrainResult, evaluate, train
from models import build_model
from models.cnv import CNV
from models.fc import FC

__all__ = ["TEACHERS", "distillation_loss", "freeze", "make_teacher", "train_teacher", "wider_kwargs"]

TEACHERS = ("float", "wider")


def _plain(out: Any) -> torch.Tensor:
    return out.value if hasattr(out, "value") and not isinstance(out, torch.Tensor) else out


def freeze(teacher: nn.Module) -> nn.Module:
    """Put ``teacher`` in eval mode and stop gradients into its parameters."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def distillation_loss(teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.7) -> LossFn:
    """A :data:`flow.nn.train.LossFn` distilling ``teacher`` (frozen, eval mode) into the student.

    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> loss = distillation_loss(teacher, temperature=2.0, alpha=0.0)
    >>> s, y, x = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]), torch.randn(5, 1, 2, 2)
    >>> torch.allclose(loss(s, y, x), F.cross_entropy(s, y))
    True
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"distill: temperature must be > 0, got {temperature!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError(f"distill: alpha must be in [0, 1], got {alpha!r}")
    freeze(teacher)
    t = float(temperature)

    def loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, labels)
        if alpha == 0:
            return ce
        if teacher.training:
            teacher.eval()
        with torch.no_grad():
            soft = F.log_softmax(_plain(teacher(images)) / t, dim=1)
        kl = F.kl_div(F.log_softmax(logits / t, dim=1), soft, reduction="batchmean", log_target=True)
        return alpha * t * t * kl + (1 - alpha) * ce

    return loss


def wider_kwargs(model: nn.Module) -> dict[str, Any]:
    """Constructor arguments doubling the widths of a qflow model (``hidden``, or ``convs`` and ``fc``)."""
    blocks = [model.layers[n] for n in model.layer_names[:-1]]
    first = [next(iter(b.children())) for b in blocks]
    if isinstance(model, FC):
        return {"hidden": [2 * m.out_features for m in first]}
    if isinstance(model, CNV):
        convs = [(2 * m.out_channels, "pool" in b._modules) for m, b in zip(first, blocks) if isinstance(m, nn.Conv2d)]
        fc = [2 * m.out_features for m in first if isinstance(m, nn.Linear)]
        return {"convs": convs, "fc": fc}
    raise ConfigError(f"distill: cannot widen a {type(model).__name__}; use teacher = 'float'")


def make_teacher(name: str, kind: Literal["float", "wider"] = "float", **build_kwargs: Any) -> nn.Module:
    """An untrained float teacher for the registered model ``name`` built with ``build_kwargs``.

    ``kind="float"``: the float twin of the same architecture; ``"wider"``: of the same
    architecture with every hidden width doubled.
    """
    if kind not in TEACHERS:
        raise ConfigError(f"distill: teacher must be one of {', '.join(TEACHERS)}, got {kind!r}")
    student_arch = build_model(name, **build_kwargs)
    if kind == "wider":
        student_arch = build_model(name, **{**build_kwargs, **wider_kwargs(student_arch)})
    return float_twin(student_arch)


def train_teacher(teacher: nn.Module, dataset: Dataset, cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train ``teacher`` with cross-entropy, then freeze it (eval mode, no gradients)."""
    result = train(teacher, dataset, cfg, progress=progress)
    freeze(teacher)
    return result


class DistillOptions(Options):
    teacher: Literal["float", "wider"] = Field("float", description="float twin of the model, or one 2x wider")
    teacher_epochs: int | None = Field(None, ge=0, le=100_000, description="teacher training epochs (default: train.epochs)")
    temperature: float = Field(4.0, gt=0, le=1000, allow_inf_nan=False)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the KL term; 1 - alpha on cross-entropy")


class Distill(TechniqueBase):
    """Train a float teacher first, then distil it into the quantized student during QAT."""

    name: ClassVar[str] = "distill"
    kind: ClassVar[str] = "modifier"
    options: ClassVar[type[Options]] = DistillOptions
    methods: ClassVar[tuple[str, ...]] = ("qat",)
    search_defaults: ClassVar[dict[str, Any]] = {}

    def label(self, opts: DistillOptions) -> str:
        return f"KD({opts.teacher})"

    def _teacher(self, opts: DistillOptions, job: Job) -> nn.Module:
        return make_teacher(job.model_name, opts.teacher, **job.build_kwargs)

    def check(self, model: nn.Module, opts: DistillOptions, job: Job) -> None:
        self._teacher(opts, job)

    def prepare(self, model: nn.Module, opts: DistillOptions, job: Job) -> None:
        teacher = self._teacher(opts, job)
        epochs = job.train_cfg.epochs if opts.teacher_epochs is None else opts.teacher_epochs
        job.log(f"training the {opts.teacher} teacher ({epochs} epochs)")
        train_teacher(teacher, job.train_set, replace(job.train_cfg, epochs=epochs), progress=job.progress)
        if job.test_set is not None:
            job.log(f"teacher accuracy {100 * evaluate(teacher, job.test_set):.2f}%")
        job.notes["teacher"] = teacher
        job.loss_fn = distillation_loss(teacher, opts.temperature, opts.alpha)
