"""The build as registered steps composed into named flows.

A step (:class:`StepSpec`) reads and extends one :class:`BuildState` under one
:class:`BuildContext`. Model steps (``step(model, ctx) -> model``, the shape of FINN's
builder steps) save ``checkpoints/NN_<name>.onnx``; a step that ``produces`` a
:class:`~flow.core.stages.Stage` hands its model to verification. A flow is a registered
tuple of step names, as FINN's ``estimate_only_dataflow_steps`` and hls4ml's flows are.
Each wing exports its steps as a tuple; the builder assembles one :class:`StepRegistry`.

>>> reg = StepRegistry()
>>> def double(state, ctx): state.timings.record("x", 2 * state.timings.get("x", 1))
>>> _ = reg.register_step(StepSpec("double", double, doc="doubles x"))
>>> reg.register_flow("twice", ("double", "double"))
>>> [s.name for s in reg.flow_steps("twice")]
['double', 'double']
>>> reg.get_step("halve")
Traceback (most recent call last):
...
flow.core.errors.ConfigError: unknown build step 'halve'; registered steps: double
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flow.core.checks import StageCheck, StageOutputs
from flow.core.config import BuildConfig
from flow.core.errors import ConfigError
from flow.core.estimates import Estimates
from flow.core.outdir import OutputDir
from flow.core.stages import Stage
from flow.core.timings import Timings

if TYPE_CHECKING:
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper


class Board(Protocol):
    """What a step reads of the board (:class:`hw_targets.Target` is one)."""

    name: str
    part: str
    clock_mhz: float
    finn_board: str | None
    shell: str

    @property
    def clock_period_ns(self) -> float: ...

    def budget(self) -> dict[str, int]: ...


class BuildReport(Protocol):
    """What the build reads of its report (:class:`flow.report.schema.Report` is one)."""

    @property
    def fits(self) -> bool: ...

    def over_caps(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass
class BuildContext:
    """The options, the board and the output folder of one build (what every step reads, none changes).

    ``out`` is the claimed output folder (``None`` when a step runs outside a build, e.g. in a test);
    ``inputs_given``: the caller brought verification inputs; ``log``: one line per event
    (steps done, simulation progress), or ``None`` for silence.
    """

    cfg: BuildConfig
    target: Board
    out_dir: Path
    out: OutputDir | None = None
    inputs_given: bool = False
    log: Callable[[str], None] | None = None

    def will_write(self, rel: str) -> Path:
        """The path of ``rel`` in the output folder, announced to it (:meth:`OutputDir.will_write`)."""
        return self.out.will_write(rel) if self.out is not None else self.out_dir / rel

    def say(self, line: str) -> None:
        if self.log is not None:
            self.log(line)


@dataclass
class BuildState:
    """What a build has computed so far; each step reads what it ``requires`` and adds its part.

    ``checks``/``sections``: each verifier's stage checks and its own report section, by name.
    ``timings``: seconds per shown step, in the order they ran. ``report`` is the
    :class:`flow.report.schema.Report` once the report step ran.
    """

    name: str
    model: ModelWrapper | None = None
    checkpoints: dict[str, Path] = field(default_factory=dict)
    stages: dict[Stage, Path] = field(default_factory=dict)
    design: Path | None = None
    estimate: Estimates | None = None
    inputs: np.ndarray | None = None
    reference: StageOutputs | None = None
    accuracy: float | None = None
    checks: dict[str, list[StageCheck]] = field(default_factory=dict)
    sections: dict[str, object] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    skipped: list[str] = field(default_factory=list)
    stopped_after: str | None = None
    report: BuildReport | None = None

    @property
    def verified(self) -> bool:
        """No verifier found a failing stage."""
        return all(c.passed for checks in self.checks.values() for c in checks)


#: ``run(state, ctx)``: a step reads and extends the build state.
StepFn = Callable[[BuildState, BuildContext], None]
#: Whether a step runs in a build with this context (a verifier that is off, codegen below its stage).
StepWhen = Callable[[BuildContext], bool]


@dataclass(frozen=True)
class StepSpec:
    """A registered step.

    ``checkpoint``: the step replaces ``state.model`` and its output is saved as
    ``checkpoints/NN_<name>.onnx``; ``requires``/``provides``: the state fields it reads and
    fills (a build whose steps read a field no earlier step fills is refused); ``when``: runs only when true for the build; ``shown``: listed in
    progress and timed in the report; ``preflight``: checks what the step needs (a tool) before
    the output folder is touched.
    """

    name: str
    run: StepFn
    produces: Stage | None = None
    checkpoint: bool = False
    requires: tuple[str, ...] = ()
    doc: str = ""
    provides: tuple[str, ...] = ()
    when: StepWhen | None = None
    shown: bool = True
    preflight: Callable[[BuildContext], None] | None = None

    def active(self, ctx: BuildContext) -> bool:
        return self.when is None or self.when(ctx)

    def __call__(self, model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
        """Run a model step on ``model`` alone, as FINN's builder runs ``step_*(model, cfg)``."""
        if not self.checkpoint:
            raise TypeError(f"build step {self.name!r} is not a model-to-model step")
        state = BuildState(name="model", model=model)
        self.run(state, ctx)
        assert state.model is not None
        return state.model


class StepRegistry:
    """Build steps and the flows that compose them, by name; a name registers once."""

    def __init__(self, steps: Iterable[StepSpec] = (), flows: dict[str, Sequence[str]] | None = None):
        self._steps: dict[str, StepSpec] = {}
        self._flows: dict[str, tuple[str, ...]] = {}
        for s in steps:
            self.register_step(s)
        for name, names in (flows or {}).items():
            self.register_flow(name, names)

    def register_step(self, spec: StepSpec) -> StepSpec:
        old = self._steps.get(spec.name)
        if old is not None and old is not spec:
            raise ValueError(f"build step {spec.name!r} is already registered")
        self._steps[spec.name] = spec
        return spec

    def register_flow(self, name: str, steps: Sequence[str]) -> None:
        if name in self._flows and self._flows[name] != tuple(steps):
            raise ValueError(f"flow {name!r} is already registered")
        for s in steps:
            self.get_step(s)
        self._flows[name] = tuple(steps)

    def get_step(self, name: str) -> StepSpec:
        try:
            return self._steps[name]
        except KeyError:
            raise ConfigError(f"unknown build step {name!r}; registered steps: {', '.join(self._steps)}") from None

    def flow(self, name: str) -> tuple[str, ...]:
        try:
            return self._flows[name]
        except KeyError:
            raise ConfigError(f"unknown flow {name!r}; registered flows: {', '.join(self._flows)}") from None

    def flow_steps(self, name: str) -> list[StepSpec]:
        return [self.get_step(s) for s in self.flow(name)]

    def steps(self) -> tuple[str, ...]:
        return tuple(self._steps)

    def flows(self) -> tuple[str, ...]:
        return tuple(self._flows)


def checkpoint_names(steps: Sequence[StepSpec]) -> list[str]:
    """``checkpoints/NN_<name>.onnx`` of the imported model (``00_qonnx``) and every model step of ``steps``."""
    names = ["qonnx", *(s.name for s in steps if s.checkpoint)]
    return [f"checkpoints/{i:02d}_{n}.onnx" for i, n in enumerate(names)]


def check_requirements(steps: Sequence[StepSpec], ctx: BuildContext | None, available: Iterable[str]) -> None:
    """Refuse (one line) a list of steps where an active step reads a state field that is not in
    ``available`` at the start and that no earlier active step provides.

    >>> s = [StepSpec("est", lambda st, c: None, provides=("estimate",)), StepSpec("report", lambda st, c: None, requires=("estimate",))]
    >>> check_requirements(s, None, ("model",))
    >>> check_requirements(s[1:], None, ("model",))
    Traceback (most recent call last):
    ...
    flow.core.errors.ConfigError: step 'report' needs the build's estimate, which no step before it provides; start from an earlier step
    """
    have = set(available)
    for s in steps:
        if ctx is not None and not s.active(ctx):
            continue
        missing = [r for r in s.requires if r not in have]
        if missing:
            raise ConfigError(f"step {s.name!r} needs the build's {', '.join(missing)}, which no step before it provides; start from an earlier step")
        have |= set(s.provides)


def step_window(steps: Sequence[StepSpec], from_step: str | None, to_step: str | None) -> tuple[int, int]:
    """The half-open range of ``steps`` a build runs from ``from_step`` to ``to_step`` (both included).

    >>> s = [StepSpec(n, lambda st, c: None) for n in "abc"]
    >>> step_window(s, "b", None), step_window(s, None, "b")
    ((1, 3), (0, 2))
    >>> step_window(s, "c", "a")
    Traceback (most recent call last):
    ...
    flow.core.errors.ConfigError: --from-step 'c' comes after --to-step 'a'; give a start at or before the stop
    """
    names = [s.name for s in steps]

    def index(name: str, option: str) -> int:
        if name not in names:
            raise ConfigError(f"{option} {name!r} is not a step of this build; its steps: {', '.join(names)}")
        return names.index(name)

    start = 0 if from_step is None else index(from_step, "--from-step")
    stop = len(steps) if to_step is None else index(to_step, "--to-step") + 1
    if start >= stop:
        raise ConfigError(f"--from-step {from_step!r} comes after --to-step {to_step!r}; give a start at or before the stop")
    return start, stop
