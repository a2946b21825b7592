"""Knowledge distillation: a quantized student trained (QAT) against a frozen float teacher.

The loss (Hinton et al., 2015) for :func:`flow.nn.train.train`'s ``loss_fn`` hook is::

    alpha * T^2 * KL(p_teacher || p_student) + (1 - alpha) * CE(student, labels)

with ``p = softmax(logits / T)`` and the KL averaged over the batch. ``T^2`` keeps the
gradient scale of the soft term independent of ``T``; ``alpha = 0`` is plain cross-entropy.
The KL is taken from the teacher's distribution to the student's (``F.kl_div`` of the
student's log-probabilities against the teacher's), the standard direction.

With ``standardize`` (logit standardization, Sun et al., 2024) both logit vectors are
z-scored per sample before the temperature, so the soft term compares the *shape* of the two
distributions, not their sharpness: a low-bit student's logit range is fixed by its
architecture (a binary output layer gives integer logits) and cannot match a float
teacher's.

The teacher (:func:`make_teacher`) is the float twin (:func:`flow.nn.techniques.twin.float_twin`)
of the student's registered architecture, ``"float"``, or of one twice as wide (hidden
widths, conv channels and FC widths doubled), ``"wider"``, or a small float CNN
(:class:`SmallCNN`, two 5x5 convs and one hidden FC layer), ``"cnn"``; it is trained first
(:func:`train_teacher`), then frozen in eval mode. The technique runs the frozen teacher
once over the training images and distils from those cached logits
(:class:`CachedDistillation`), so a distilled student trains as fast as its QAT twin; when
training augments the images, the soft targets are the teacher's view of the un-augmented
image. With ``cache_logits = false`` the teacher runs on every training batch instead and
sees the same augmented images as the student.

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
from flow.nn.train import (
    LossFn,
    TrainConfig,
    TrainResult,
    evaluate,
    plain_tensor,
    predict_logits,
    train,
)
from models import build_model
from models.cnv import CNV
from models.fc import FC

__all__ = ["TEACHERS", "CachedDistillation", "SmallCNN", "distillation_loss", "freeze", "kd_loss", "make_teacher",
           "standardize", "train_teacher", "wider_kwargs"]

TEACHERS = ("float", "wider", "cnn")
PIXEL_MAX = 255.0


def freeze(teacher: nn.Module) -> nn.Module:
    """Put ``teacher`` in eval mode and stop gradients into its parameters."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def standardize(z: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample z-score of logits over the classes."""
    return (z - z.mean(dim=1, keepdim=True)) / (z.std(dim=1, keepdim=True) + eps)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, *, temperature: float, alpha: float,
            standardized: bool = False) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)`` (batch mean), optionally on z-scored logits.

    >>> s, t, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    >>> float(kd_loss(t, t, y, temperature=2.0, alpha=1.0)) < 1e-6
    True
    >>> float(kd_loss(3 * t, t, y, temperature=1.0, alpha=1.0, standardized=True)) < 1e-6
    True
    """
    ce = F.cross_entropy(student, labels)
    if alpha == 0:
        return ce
    s_soft, t_soft = (standardize(student), standardize(teacher)) if standardized else (student, teacher)
    t = float(temperature)
    kl = F.kl_div(F.log_softmax(s_soft / t, dim=1), F.log_softmax(t_soft / t, dim=1), reduction="batchmean", log_target=True)
    return alpha * t * t * kl + (1 - alpha) * ce


def _check_kd(temperature: float, alpha: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"distill: temperature must be > 0, got {temperature!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError(f"distill: alpha must be in [0, 1], got {alpha!r}")


def distillation_loss(teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.7, standardized: bool = False) -> LossFn:
    """A :data:`flow.nn.train.LossFn` distilling ``teacher`` (frozen, eval mode) into the student.

    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> loss = distillation_loss(teacher, temperature=2.0, alpha=0.0)
    >>> s, y, x = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]), torch.randn(5, 1, 2, 2)
    >>> torch.allclose(loss(s, y, x), F.cross_entropy(s, y))
    True
    """
    _check_kd(temperature, alpha)
    freeze(teacher)

    def loss(logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if alpha == 0:
            return F.cross_entropy(logits, labels)
        if teacher.training:
            teacher.eval()
        with torch.no_grad():
            t_logits = plain_tensor(teacher(images))
        return kd_loss(logits, t_logits, labels, temperature=temperature, alpha=alpha, standardized=standardized)

    return loss


class CachedDistillation:
    """Distillation from the frozen teacher's logits, computed once per training set (a :class:`flow.nn.train.PerSampleLoss`).

    >>> from flow.nn.data import load_dataset
    >>> ds = load_dataset("digits", "train")
    >>> teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    >>> loss = CachedDistillation(teacher, temperature=2.0, alpha=0.5)
    >>> targets = loss.targets(ds)
    >>> tuple(targets.shape) == (len(ds), 10)
    True
    >>> x = torch.from_numpy(ds.images[:4]).float(); y = torch.from_numpy(ds.labels[:4]).long()
    >>> bool(torch.isclose(loss(teacher(x), y, x, targets[:4]), 0.5 * F.cross_entropy(teacher(x), y)))
    True
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.7, standardized: bool = False):
        _check_kd(temperature, alpha)
        self.teacher = freeze(teacher)
        self.temperature, self.alpha, self.standardized = float(temperature), float(alpha), standardized

    def targets(self, dataset: Dataset) -> torch.Tensor:
        return torch.from_numpy(predict_logits(self.teacher, dataset.images)).float()

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return kd_loss(logits, targets, labels, temperature=self.temperature, alpha=self.alpha, standardized=self.standardized)


class SmallCNN(nn.Module):
    """A float CNN teacher on raw pixels: ``[conv 5x5 -> BN -> ReLU -> max-pool 2] x 2 -> FC 256 -> FC classes``.

    ``width`` channels in the first conv, twice that in the second; dropout before each FC.

    >>> SmallCNN((1, 28, 28), 10)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, in_shape: tuple[int, int, int], num_classes: int, width: int = 32, dropout: float = 0.25):
        super().__init__()
        c, h, w = in_shape
        for _ in range(2):
            h, w = (h - 4) // 2, (w - 4) // 2
        if h < 1 or w < 1:
            raise ConfigError(f"distill: teacher 'cnn' needs images of at least 12x12 pixels, got {in_shape[1]}x{in_shape[2]}")
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 5, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * h * w, 256), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(256, num_classes))
        self.in_shape = (c, in_shape[1], in_shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(x.shape[0], *self.in_shape) / PIXEL_MAX))


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


def make_teacher(name: str, kind: Literal["float", "wider", "cnn"] = "float", **build_kwargs: Any) -> nn.Module:
    """An untrained float teacher for the registered model ``name`` built with ``build_kwargs``.

    ``kind="float"``: the float twin of the same architecture; ``"wider"``: of the same
    architecture with every hidden width doubled; ``"cnn"``: a :class:`SmallCNN` for the
    student's input shape and classes.
    """
    if kind not in TEACHERS:
        raise ConfigError(f"distill: teacher must be one of {', '.join(TEACHERS)}, got {kind!r}")
    student_arch = build_model(name, **build_kwargs)
    if kind == "cnn":
        return SmallCNN(student_arch.input_shape, student_arch.layers[student_arch.layer_names[-1]][0].out_features)
    if kind == "wider":
        student_arch = build_model(name, **{**build_kwargs, **wider_kwargs(student_arch)})
    return float_twin(student_arch)


def train_teacher(teacher: nn.Module, dataset: Dataset, cfg: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train ``teacher`` with cross-entropy, then freeze it (eval mode, no gradients)."""
    result = train(teacher, dataset, cfg, progress=progress)
    freeze(teacher)
    return result


class DistillOptions(Options):
    teacher: Literal["float", "wider", "cnn"] = Field("float", description="float twin of the model, one 2x wider, or a small float CNN")
    teacher_epochs: int | None = Field(None, ge=0, le=100_000, description="teacher training epochs (default: train.epochs)")
    temperature: float = Field(4.0, gt=0, le=1000, allow_inf_nan=False)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the KL term; 1 - alpha on cross-entropy")
    standardize: bool = Field(False, description="z-score both logit vectors per sample before the temperature")
    cache_logits: bool = Field(True, description="teacher logits computed once over the (un-augmented) training images; "
                                                 "false runs the teacher on every (augmented) batch")


class Distill(TechniqueBase):
    """Train a float teacher first, then distil it into the quantized student during QAT."""

    name: ClassVar[str] = "distill"
    kind: ClassVar[str] = "modifier"
    options: ClassVar[type[Options]] = DistillOptions
    methods: ClassVar[tuple[str, ...]] = ("qat",)
    search_defaults: ClassVar[dict[str, Any]] = {}

    def label(self, opts: DistillOptions) -> str:
        extra = (", std" if opts.standardize else "") + ("" if opts.cache_logits else ", live")
        return f"KD({opts.teacher}, T={opts.temperature:g}, a={opts.alpha:g}{extra})"

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
        if opts.cache_logits:
            job.loss_fn = CachedDistillation(teacher, opts.temperature, opts.alpha, opts.standardize)
        else:
            job.loss_fn = distillation_loss(teacher, opts.temperature, opts.alpha, opts.standardize)
