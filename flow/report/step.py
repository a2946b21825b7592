"""The ``report`` build step: the typed report of what the build computed, written as report.md, .html and .json.

>>> [s.name for s in STEPS]
['report']
"""

from __future__ import annotations

from flow.core.pipeline import BuildContext, BuildState, StepSpec
from flow.report.schema import FoldingInfo, Report
from flow.report.writer import REPORT_FILES, write_report
from flow.sim.verify import Verification


def build_report(state: BuildState, ctx: BuildContext) -> Report:
    """The report of the build ``state`` (which must hold an estimate)."""
    assert state.estimate is not None
    cfg, est = ctx.cfg, state.estimate
    checks = [c for name in state.checks for c in state.checks[name]]
    verification = Verification(passed=all(c.passed for c in checks), stages=checks) if state.checks else None
    folding = FoldingInfo(
        mode=cfg.folding_mode, target_fps=cfg.target_fps, file=str(cfg.folding_file) if cfg.folding_file else None,
        specialize_file=str(cfg.specialize_file) if cfg.specialize_file else None,
    )
    return Report.from_estimates(
        model=state.name, target=ctx.target, est=est, folding=folding, stage=cfg.stage,  # type: ignore[arg-type]
        accuracy=state.accuracy, verification=verification, skipped=list(state.skipped), timings=state.timings,
        cycle_bound=est.cycle_bound, results=state.sections,
    )


def _report(state: BuildState, ctx: BuildContext) -> None:
    state.report = build_report(state, ctx)
    for f in REPORT_FILES:
        ctx.will_write(f)
    write_report(state.report, ctx.out_dir)


STEPS: tuple[StepSpec, ...] = (
    StepSpec("report", _report, requires=("estimate",), provides=("report",), doc="report.md, report.html and report.json", shown=False),
)
