"""What a quantization technique is: a name, its options, and the hooks a run calls.

A *method* obtains the quantized network's weights (QAT trains it, PTQ quantizes a trained
float twin); exactly one runs. *Modifiers* change the network or the training before the
method runs (low-rank factorization replaces layers, distillation sets the loss) and
compose with each other and with the methods they list in ``methods``.

A run calls, for the recipe's technique section::

    for every technique: check(model, options, job)      # before any training
    for every modifier:  prepare(model, options, job)    # in recipe order
    the method:          obtain(model, options, job)     # trains / quantizes in place

A new technique is a class with these members in its own module, added to
:mod:`flow.nn.techniques.registry` (or registered at run time with
:func:`flow.nn.techniques.registry.register`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict
from torch import nn

from flow.nn.data import Dataset
from flow.nn.train import LossFn, TrainConfig


class Options(BaseModel):
    """Base of every technique's options: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Job:
    """What the techniques of one run share: the model's recipe, data, budget and results.

    ``build`` rebuilds the registered architecture (``build(**overrides)``), e.g. for a
    teacher; ``loss_fn`` is set by modifiers for the method's training; ``method`` is the
    name of the method that will run; a method that trains the quantized network calls
    ``on_epoch(epoch, model)`` after every epoch (a search reports to its pruner there).
    """

    model_name: str
    build_kwargs: dict[str, Any]
    build: Callable[..., nn.Module]
    train_cfg: TrainConfig
    method: str
    train_set: Dataset | None = None
    test_set: Dataset | None = None
    progress: bool = True
    log: Callable[[str], None] = print
    loss_fn: LossFn | None = None
    on_epoch: Callable[[int, nn.Module], None] | None = None
    quantize_seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Technique(Protocol):
    """A registered technique (see the module docstring)."""

    name: ClassVar[str]
    kind: ClassVar[Literal["method", "modifier"]]
    options: ClassVar[type[Options]]
    #: Modifiers: the methods it composes with (empty: every method).
    methods: ClassVar[tuple[str, ...]]
    #: Options used when a search picks this technique and the recipe gives none.
    search_defaults: ClassVar[dict[str, Any]]

    def label(self, opts: Options) -> str: ...

    def check(self, model: nn.Module, opts: Options, job: Job) -> None: ...

    def prepare(self, model: nn.Module, opts: Options, job: Job) -> None: ...

    def obtain(self, model: nn.Module, opts: Options, job: Job) -> None: ...


class TechniqueBase:
    """Default hooks: nothing to check, prepare or obtain; the label is the name in capitals."""

    methods: ClassVar[tuple[str, ...]] = ()
    search_defaults: ClassVar[dict[str, Any]] = {}

    def label(self, opts: Options) -> str:
        return self.name.upper()  # type: ignore[attr-defined]

    def check(self, model: nn.Module, opts: Options, job: Job) -> None:
        return None

    def prepare(self, model: nn.Module, opts: Options, job: Job) -> None:
        return None

    def obtain(self, model: nn.Module, opts: Options, job: Job) -> None:
        raise NotImplementedError(f"{self.name} is a modifier; it does not obtain weights")  # type: ignore[attr-defined]
