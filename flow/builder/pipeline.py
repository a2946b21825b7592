"""``qflow build``: a QONNX model to a folded, estimated, verified FINN dataflow design.

The example is skipped when the doctests run: it needs an exported model (``tests/builder`` builds tiny ones).

>>> from flow.builder import build
>>> result = build("tfc.onnx", build_config(target="pynq-z1", target_fps=100_000), "out/tfc")  # doctest: +SKIP
>>> result.report.throughput_fps  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.builder import instruments
from flow.builder.instruments import model_errors
from flow.builder.inputs import check_option_files, check_reference_outputs, check_verify_inputs
from flow.builder.registry import REGISTRY, VERIFIER_FILES
from flow.builder.resume import RESTORED, Resume, read_resume, restore
from flow.compat import finn as _finn_compat
from flow.compat.qonnx import return_large_blocks
from flow.compat.qonnx_linear import linear_qonnx
from flow.compile.codegen import NO_VIVADO
from flow.compile.load import check_quantized, load_onnx
from flow.compile.normalize import normalize
from flow.core.config import BuildConfig
from flow.core.errors import BitfileSkipped, ConfigError, OverBudgetError, QflowError
from flow.core.fileio import atomic_write_bytes
from flow.core.outdir import OutputDir, retire_results
from flow.core.pipeline import BuildContext, BuildState, StepSpec, check_requirements, checkpoint_names, step_window
from flow.core.stages import Stage
from flow.fold.step import DESIGN_FILES
from flow.report.schema import Report
from flow.report.step import STEPS as REPORT_STEPS
from flow.report.writer import REPORT_FILES
from flow.sim.verify import StageOutputs, Verification, raise_on_failure
from hw_targets import load_target

#: Files a build writes at the top of its output folder, and the folders it fills: FINN's output
#: folder (fixed names), and folders filled under fresh names (FINN's build and codegen folders)
#: or under names qflow checks itself (checkpoints).
BUILD_FILES = (*REPORT_FILES, *DESIGN_FILES, "design_codegen.onnx", "auto_folding.json", "finn.log", *VERIFIER_FILES)
BUILD_TREES = ("finn",)
BUILD_SCRATCH = ("checkpoints", "finn_build", "codegen")
REPORT_NAMES = tuple(s.name for s in REPORT_STEPS)
#: The instruments around every step, outermost first.
INSTRUMENTS = (instruments.checkpoint, instruments.timing, instruments.errors)


@dataclass
class BuildResult:
    """What a build produced: the report, the design and the checkpoint after every step.

    ``checkpoints`` maps step names (and ``"qonnx"``, the imported model) to files;
    ``stages`` maps each :class:`~flow.core.stages.Stage` to the model file it is;
    ``stopped_after``: the last step run when ``to_step`` stopped the build early. ``report`` is
    ``None`` only when the build stopped before the estimate.
    """

    out_dir: Path
    report: Report | None
    design: Path
    checkpoints: dict[str, Path] = field(default_factory=dict)
    stages: dict[Stage, Path] = field(default_factory=dict)
    stopped_after: str | None = None


def build_steps(cfg: BuildConfig) -> list[StepSpec]:
    """The registered steps a build with ``cfg`` runs, in order: ``cfg.steps``, else the flow ``cfg.flow``."""
    return [REGISTRY.get_step(name) for name in cfg.steps] if cfg.steps else REGISTRY.flow_steps(cfg.flow)


def planned_steps(cfg: BuildConfig, verify: bool, *, from_step: str | None = None, to_step: str | None = None) -> list[str]:
    """Names of the steps a build reports through its ``progress`` callback, in order."""
    steps = build_steps(cfg)
    start, stop = step_window(steps, from_step, to_step)
    ctx = BuildContext(cfg, load_target(cfg.target), Path("."), inputs_given=verify)
    return [s.name for s in steps[start:stop] if s.shown and (s.active(ctx) or (s.name == "verify" and verify))]


def checkpoint_files(cfg: BuildConfig) -> tuple[str, ...]:
    """The checkpoints a build with ``cfg`` writes: the imported model, then one per model step."""
    return tuple(checkpoint_names(build_steps(cfg)))


def output_dir(out: str | Path, cfg: BuildConfig | None = None, extra_files: Sequence[str] = ()) -> OutputDir:
    """The output folder of a build with ``cfg`` (plus ``extra_files`` a caller such as ``qflow run`` writes there)."""
    checkpoints = checkpoint_files(cfg) if cfg is not None else ()
    return OutputDir(out, results=(*BUILD_FILES, *checkpoints, *extra_files), trees=BUILD_TREES, scratch=BUILD_SCRATCH)


def retire_build(out: str | Path, extra_files: Sequence[str] = ()) -> None:
    """After a build (or run) refused its input: remove the previous build's proven files from ``out``."""
    retire_results(out, results=(*BUILD_FILES, *extra_files), trees=BUILD_TREES, scratch=BUILD_SCRATCH)


def save_model(model: ModelWrapper, path: str | Path) -> None:
    """Write ``model`` to ``path`` atomically (a fresh temp file renamed over it)."""
    atomic_write_bytes(path, model.model.SerializeToString())



def build(
    model: str | Path | ModelWrapper,
    cfg: BuildConfig,
    out_dir: str | Path | OutputDir,
    *,
    model_name: str | None = None,
    verify_inputs: np.ndarray | None = None,
    reference: StageOutputs | None = None,
    reference_outputs: np.ndarray | None = None,
    accuracy: float | None = None,
    progress: Callable[[str], None] | None = None,
    log: Callable[[str], None] | None = None,
    from_step: str | None = None,
    to_step: str | None = None,
) -> BuildResult:
    """Compile, fold, estimate, verify and report: the steps of the flow ``cfg.flow`` (or ``cfg.steps``). Writes into ``out_dir``:

    ``checkpoints/NN_<step>.onnx`` after every model step, ``design.onnx`` (the folded dataflow
    partition), ``folding.json`` and ``specialize_layers.json`` (FINN's folding and
    specialize-layers configs: ``--specialize specialize_layers.json --folding folding.json``
    rebuilds the same design), ``report.json``, ``report.md`` and ``report.html``;
    ``codegen/`` for ``stage="codegen"``; ``fifo_depths.json`` with ``rtlsim`` (the FIFO depths
    sized by simulation, also set in ``design.onnx``).

    The model is normalised on import (:func:`flow.compile.normalize.normalize`) before
    anything executes; ``checkpoints/00_qonnx.onnx`` is the normalised model. ``reference``
    (a stage such as the trained network's outputs) or ``reference_outputs`` (the user's
    PyTorch outputs on ``verify_inputs``, checked like every untrusted input) is compared with
    the first stage. ``progress(step)`` is called as each step starts, ``log(line)`` with one
    line per step done (and the RTL simulation's progress).

    ``from_step`` resumes from the checkpoints an earlier build of this model left in
    ``out_dir`` (:mod:`flow.builder.resume`); ``to_step`` stops after that step, writing the
    report when the estimate exists (its ``skipped`` says where the build stopped).

    Every input (target, model, option files, verification inputs, the steps, the checkpoints
    to resume from) is checked, and each step's tools are looked for (Verilator with ``rtlsim``:
    ToolMissingError, exit 5), before the output folder is touched; a
    :class:`flow.core.errors.QflowError` for bad input leaves the folder as it was. ``out_dir``
    may be an already claimed :class:`OutputDir` (``qflow run``).
    """
    claimed = isinstance(out_dir, OutputDir)
    try:
        out = out_dir if isinstance(out_dir, OutputDir) else output_dir(out_dir, cfg)
        target = load_target(cfg.target).with_clock(cfg.clock_mhz)
        steps = build_steps(cfg)
        start, stop = step_window(steps, from_step, to_step)
        check_option_files(cfg)
        if isinstance(model, ModelWrapper):
            qonnx_model, name = model, model_name or "model"
        else:
            qonnx_model, name = load_onnx(model), model_name or Path(model).stem
        check_quantized(qonnx_model, name)
        with model_errors("import normalisation"):
            qonnx_model = normalize(qonnx_model, cfg.input_dtype)
        if verify_inputs is not None:
            verify_inputs = check_verify_inputs(qonnx_model, verify_inputs, source="verification inputs")
        if reference_outputs is not None:
            if verify_inputs is None:
                raise ConfigError("--reference-outputs needs --verify-inputs: reference outputs belong to known inputs")
            reference = check_reference_outputs(qonnx_model, reference_outputs, len(verify_inputs))
        ctx = BuildContext(cfg, target, out.path, out=out, inputs_given=verify_inputs is not None, log=log)
        check_requirements(steps[start:stop], ctx, (*RESTORED, *(("inputs",) if verify_inputs is not None else ())))
        for step in steps[start:stop]:
            if step.preflight is not None and step.active(ctx):
                step.preflight(ctx)
        resume = read_resume(out, steps, start, qonnx_model) if start > 0 else None
    except QflowError:
        if not claimed:
            retire_build(out_dir)  # type: ignore[arg-type]
        raise
    if not claimed:
        out.claim()
    state = BuildState(name=name, inputs=verify_inputs, reference=reference, accuracy=accuracy)
    try:
        with linear_qonnx():  # qonnx's whole-graph passes and checks in linear time, for every part of the build
            _build(qonnx_model, steps[start:stop], steps[stop:], state, ctx, resume, progress)
    finally:
        out.close()
    return _finish(state, ctx)


def _build(qonnx_model: ModelWrapper, steps: list[StepSpec], rest: list[StepSpec], state: BuildState, ctx: BuildContext,
           resume: Resume | None, progress: Callable[[str], None] | None) -> None:
    out = ctx.out
    assert out is not None
    _finn_compat.ensure_finn_settings(out.path / "finn_build")
    _finn_compat.quiet_finn_logging()
    return_large_blocks()  # a 224x224 network's freed weights and activations go back to the system
    out.will_write("finn.log")
    if ctx.cfg.auto:
        out.will_write("auto_folding.json")
    if resume is not None:
        restore(resume, out, state)
    else:
        qonnx_path = out.will_write("checkpoints/00_qonnx.onnx")
        save_model(qonnx_model, qonnx_path)
        state.checkpoints["qonnx"], state.stages[Stage.QONNX] = qonnx_path, qonnx_path
        state.model = ModelWrapper(str(qonnx_path))
    chain = [instruments.progress(progress), *INSTRUMENTS]
    for step in steps:
        if step.active(ctx):
            instruments.run_step(step, state, ctx, chain)
    pending = [s.name for s in rest if s.active(ctx) and s.name not in REPORT_NAMES]
    if pending:
        state.stopped_after = steps[-1].name
        state.skipped.append(f"steps after {steps[-1].name}: not run (--to-step {steps[-1].name}): {', '.join(pending)}")
    if rest and state.report is None and state.estimate is not None:
        for step in REPORT_STEPS:
            instruments.run_step(step, state, ctx, chain)


def _finish(state: BuildState, ctx: BuildContext) -> BuildResult:
    """The build's result; a failed verification, a skipped bitfile or (with ``strict``) a design over the caps raise."""
    result = BuildResult(ctx.out_dir, state.report, state.design or ctx.out_dir / "design.onnx",  # type: ignore[arg-type]
                         dict(state.checkpoints), dict(state.stages), state.stopped_after)
    checks = [c for name in state.checks for c in state.checks[name]]
    raise_on_failure(Verification(passed=all(c.passed for c in checks), stages=checks))
    if NO_VIVADO in state.skipped:
        raise BitfileSkipped(f"estimates and codegen written to {ctx.out_dir}; skipped {NO_VIVADO}", result)
    if ctx.cfg.strict and state.report is not None and not state.report.fits:
        raise OverBudgetError(f"design exceeds {ctx.target.name}'s caps: {state.report.over_caps()}; "
                              "fold with --auto to fit them, or build for a larger --target")
    return result
