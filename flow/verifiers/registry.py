"""Verifiers: the backends that check what a build computed.

A verifier has a name (its build step and its key in the report), says when it runs for a
build (``enabled``), checks what it needs before the output folder is touched (``check``:
a missing tool is :class:`~flow.core.errors.ToolMissingError`, exit 5), how many
verification inputs it needs, and runs on the build state: it returns its stage checks and
its own report section. How that section is stored in report.json and shown in report.md
and report.html is the verifier's too (it is a :class:`~flow.verifiers.section.SectionView`;
by default a JSON object with the :class:`~flow.verifiers.section.ReportSection` protocol,
one line per key). :func:`verifier_step` makes it a build step; :func:`inputs_step` draws the
random inputs the enabled verifiers share when the caller brought none.

>>> class Count(Verifier):
...     name = "count"
...     def run(self, state, ctx):
...         return VerifierResult(checks=[], section={"stages": len(state.stages)})
>>> step = verifier_step(Count())
>>> step.name, step.requires
('count', ('model', 'design', 'inputs'))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qonnx.core.modelwrapper import ModelWrapper

from flow.core.checks import StageCheck
from flow.core.config import MIN_VERIFY_SAMPLES
from flow.core.pipeline import BuildContext, BuildState, StepSpec
from flow.core.stages import Stage
from flow.sim.inputs import executed_macs, random_inputs
from flow.verifiers.section import SectionView


@dataclass
class VerifierResult:
    """A verifier's stage checks (they join report.json's ``verification.stages``) and its report section."""

    checks: list[StageCheck] = field(default_factory=list)
    section: object | None = None


class Verifier(SectionView):
    """A verification backend (subclass it; see the module docstring)."""

    #: Its build step's name and its key in the report.
    name: str = ""
    #: One line: what it checks.
    doc: str = ""
    #: The build options (fields of :class:`flow.core.config.BuildConfig`) it reads.
    options: tuple[str, ...] = ()
    #: Files it writes at the top of the output folder.
    files: tuple[str, ...] = ()

    def enabled(self, ctx: BuildContext) -> bool:
        """Whether it runs in the build ``ctx``."""
        return True

    def samples(self, ctx: BuildContext) -> int:
        """How many verification inputs it needs (0: none)."""
        return 0

    def check(self, ctx: BuildContext) -> None:
        """Raise (one line) when something it needs is missing; runs before the output folder is touched."""

    def run(self, state: BuildState, ctx: BuildContext) -> VerifierResult:
        raise NotImplementedError


def verifier_step(v: Verifier) -> StepSpec:
    """The build step that runs ``v`` and keeps its checks and section in the build state."""

    def run(state: BuildState, ctx: BuildContext) -> None:
        result = v.run(state, ctx)
        state.checks[v.name] = list(result.checks)
        if result.section is not None:
            state.sections[v.name] = result.section

    doc = v.doc or (v.__doc__ or "").strip().split("\n")[0]
    return StepSpec(v.name, run, requires=("model", "design", "inputs"), provides=("checks",), doc=doc, when=v.enabled, preflight=v.check)


def _input_stage(stages: dict[Stage, object]) -> object:
    """The model random verification inputs are drawn for: the streamlined one shows a float input's thresholds."""
    return next(stages[s] for s in (Stage.STREAMLINED, Stage.FINN_ONNX, Stage.QONNX) if s in stages)


def inputs_step(verifiers: Sequence[Verifier]) -> StepSpec:
    """The build step that draws random verification inputs (seeded) when the caller brought none:
    as many as the enabled verifiers need."""

    def needed(ctx: BuildContext, cap: int | None = None) -> int:
        capped = (min(v.samples(ctx), cap) if cap is not None and "verify_samples" in v.options else v.samples(ctx)
                  for v in verifiers if v.enabled(ctx))
        return max(capped, default=0)

    def run(state: BuildState, ctx: BuildContext) -> None:
        if state.inputs is not None:
            return
        model, n = ModelWrapper(str(_input_stage(state.stages))), needed(ctx)
        if ctx.cfg.verify_gmac is not None:  # the default count, capped by the network's size
            macs = executed_macs(model)
            n = needed(ctx, max(MIN_VERIFY_SAMPLES, int(ctx.cfg.verify_gmac * 1e9 // max(macs, 1))))
            if n < ctx.cfg.verify_samples:
                state.skipped.append(f"{ctx.cfg.verify_samples - n} of the default {ctx.cfg.verify_samples} random verification inputs: "
                                     f"one input is {macs / 1e9:.1f} GMAC, and the default verifies {ctx.cfg.verify_gmac:g} GMAC per stage "
                                     f"(at least {MIN_VERIFY_SAMPLES} inputs); --samples N verifies N")
        state.inputs = random_inputs(model, n)

    return StepSpec("inputs", run, requires=("stages",), provides=("inputs",), doc="random verification inputs when none were given",
                    when=lambda ctx: not ctx.inputs_given and needed(ctx) > 0, shown=False)
