"""``qflow build``: a QONNX model to a folded, estimated, verified FINN dataflow design.

>>> from flow.builder import build                 # doctest: +SKIP
>>> result = build("tfc.onnx", build_config(target="pynq-z1", target_fps=100_000), "out/tfc")
>>> result.report.throughput_fps
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

import flow.fold.step  # noqa: F401  (registers the fold step)
from flow.builder.inputs import (
    check_option_files,
    check_reference_outputs,
    check_verify_inputs,
    random_inputs,
)
from flow.builder.rtlsim import FIFO_DEPTHS_FILE, run_rtlsim
from flow.builder.verification import verify_design
from flow.compat import finn as _finn_compat
from flow.compat.qonnx_linear import linear_qonnx
from flow.compile import steps as _compile_steps  # noqa: F401  (registers the compiler steps)
from flow.compile.codegen import generate_code, run_vivado_steps
from flow.compile.context import BuildContext
from flow.compile.estimate import estimate
from flow.compile.load import check_quantized, load_onnx
from flow.compile.normalize import normalize
from flow.compile.registry import DEFAULT_STEPS, StepInfo, get_step
from flow.compile.specialize import specialize_config
from flow.core.config import BuildConfig
from flow.core.errors import (
    CompileError,
    ConfigError,
    OverBudgetError,
    QflowError,
    ToolMissingError,
)
from flow.core.fileio import atomic_write_bytes, atomic_write_json
from flow.core.outdir import OutputDir, retire_results
from flow.core.stages import Stage
from flow.fold.optimizer import cycle_bound
from flow.fold.rules import extract_folding
from flow.report.schema import FoldingInfo, Report
from flow.report.writer import REPORT_FILES, write_report
from flow.sim.rtlsim.design import stage_check
from flow.sim.rtlsim.toolchain import find_verilator
from flow.sim.verify import StageOutputs, Verification, raise_on_failure
from hw_targets import Target, load_target

#: Files a build writes at the top of its output folder, and the folders it fills: FINN's output
#: folder (fixed names), and folders filled under fresh names (FINN's build and codegen folders)
#: or under names qflow checks itself (checkpoints).
BUILD_FILES = (*REPORT_FILES, "design.onnx", "design_codegen.onnx", "folding.json", "specialize_layers.json", "auto_folding.json", "finn.log", FIFO_DEPTHS_FILE)
BUILD_TREES = ("finn",)
BUILD_SCRATCH = ("checkpoints", "finn_build", "codegen")


@dataclass
class BuildResult:
    """What a build produced: the report, the design and the checkpoint after every step.

    ``checkpoints`` maps step names (and ``"qonnx"``, the imported model) to files;
    ``stages`` maps each :class:`~flow.core.stages.Stage` to the model file it is.
    """

    out_dir: Path
    report: Report
    design: Path
    checkpoints: dict[str, Path] = field(default_factory=dict)
    stages: dict[Stage, Path] = field(default_factory=dict)


def build_steps(cfg: BuildConfig) -> list[StepInfo]:
    """The registered steps a build with ``cfg`` runs, in order."""
    return [get_step(name) for name in (cfg.steps or DEFAULT_STEPS)]


def planned_steps(cfg: BuildConfig, verify: bool) -> list[str]:
    """Names of the steps a build reports through its ``progress`` callback, in order."""
    names = [s.name for s in build_steps(cfg)]
    names += (["verify"] if verify else []) + (["rtlsim"] if cfg.rtlsim else [])
    return names + (["codegen"] if cfg.stage in ("codegen", "bitfile") else [])


def checkpoint_files(cfg: BuildConfig) -> tuple[str, ...]:
    """The checkpoints a build with ``cfg`` writes: the imported model, then one per step."""
    names = ["qonnx", *(s.name for s in build_steps(cfg))]
    return tuple(f"checkpoints/{i:02d}_{n}.onnx" for i, n in enumerate(names))


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


@contextlib.contextmanager
def model_errors(what: str):
    """Turn a failure of FINN's, qonnx's or onnxruntime's code on this model into a one-line CompileError naming ``what``.

    Every input was checked on import, so what still fails here is a model the compiler cannot
    process; ``--debug`` shows the original traceback.
    """
    try:
        yield
    except (QflowError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - FINN states its limits as asserts and many exception types
        detail = " ".join(str(e).split())[:300] or type(e).__name__
        raise CompileError(f"{what} cannot process this model ({type(e).__name__}: {detail}); qflow compiles QONNX models as Brevitas exports them") from e


def _run_steps(model: ModelWrapper, steps: list[StepInfo], ctx: BuildContext, out: OutputDir, result: BuildResult, timings: dict, progress) -> ModelWrapper:
    for step in steps:
        if progress:
            progress(step.name)
        t0 = time.perf_counter()
        with model_errors(f"step {step.name!r}"), _finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
            model = step(model, ctx)
        timings[step.name] = time.perf_counter() - t0
        path = out.will_write(f"checkpoints/{len(result.checkpoints):02d}_{step.name}.onnx")
        save_model(model, path)
        result.checkpoints[step.name] = path
        if step.produces is not None:
            result.stages[step.produces] = path
        out.close()  # record what FINN wrote during the step
    return model


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
) -> BuildResult:
    """Compile, fold, estimate, verify and report. Writes into ``out_dir``:

    ``checkpoints/NN_<step>.onnx`` after every step, ``design.onnx`` (the folded dataflow
    partition), ``folding.json`` and ``specialize_layers.json`` (FINN's folding and
    specialize-layers configs: ``--specialize specialize_layers.json --folding folding.json``
    rebuilds the same design), ``report.json``, ``report.md`` and ``report.html``;
    ``codegen/`` for ``stage="codegen"``; ``fifo_depths.json`` with ``rtlsim`` (the FIFO depths
    sized by simulation, also set in ``design.onnx``).

    The model is normalised on import (:func:`flow.compile.normalize.normalize`) before
    anything executes; ``checkpoints/00_qonnx.onnx`` is the normalised model. ``reference``
    (a stage such as the trained network's outputs) or ``reference_outputs`` (the user's
    PyTorch outputs on ``verify_inputs``, checked like every untrusted input) is compared with
    the first stage.

    Every input (target, model, option files, verification inputs) is checked, and with
    ``rtlsim`` Verilator is looked for (ToolMissingError, exit 5), before the output folder is
    touched; a :class:`flow.core.errors.QflowError` for bad input leaves the
    folder as it was. ``out_dir`` may be an already claimed :class:`OutputDir` (``qflow run``).
    """
    try:
        out = out_dir if isinstance(out_dir, OutputDir) else output_dir(out_dir, cfg)
        target = load_target(cfg.target).with_clock(cfg.clock_mhz)
        steps = build_steps(cfg)
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
        if cfg.rtlsim:
            find_verilator()
    except QflowError:
        if not isinstance(out_dir, OutputDir):
            retire_build(out_dir)
        raise
    if not isinstance(out_dir, OutputDir):
        out.claim()
    try:
        with linear_qonnx():  # qonnx's whole-graph passes and checks in linear time, for every part of the build
            return _build(qonnx_model, name, cfg, target, steps, out, verify_inputs, reference, accuracy, progress)
    finally:
        out.close()


def _input_stage(stages: dict[Stage, Path]) -> Path:
    """The model random verification inputs are drawn for: the streamlined one shows a float input's thresholds."""
    return next(stages[s] for s in (Stage.STREAMLINED, Stage.FINN_ONNX, Stage.QONNX) if s in stages)


def _build(qonnx_model, name, cfg: BuildConfig, target: Target, steps, out: OutputDir, verify_inputs, reference, accuracy, progress) -> BuildResult:
    _finn_compat.ensure_finn_settings(out.path / "finn_build")
    _finn_compat.quiet_finn_logging()
    ctx = BuildContext(cfg=cfg, target=target, out_dir=out.path)
    out.will_write("finn.log")
    qonnx_path = out.will_write("checkpoints/00_qonnx.onnx")
    save_model(qonnx_model, qonnx_path)
    result = BuildResult(out.path, None, out.path / "design.onnx", {"qonnx": qonnx_path}, {Stage.QONNX: qonnx_path})  # type: ignore[arg-type]
    timings: dict[str, float] = {}
    if cfg.auto:
        out.will_write("auto_folding.json")

    design = _run_steps(ModelWrapper(str(qonnx_path)), steps, ctx, out, result, timings, progress)
    save_model(design, out.will_write("design.onnx"))
    result.stages[Stage.SPECIALIZED] = result.design
    atomic_write_json(out.will_write("folding.json"), extract_folding(design))
    atomic_write_json(out.will_write("specialize_layers.json"), specialize_config(design))

    t0 = time.perf_counter()
    with model_errors("the estimate"):
        est = estimate(design, target)
    timings["estimate"] = time.perf_counter() - t0

    verification = None
    x = verify_inputs
    if x is None and (cfg.verify_samples > 0 or cfg.rtlsim):
        x = random_inputs(ModelWrapper(str(_input_stage(result.stages))), max(cfg.verify_samples, cfg.rtlsim_samples if cfg.rtlsim else 0))
    if cfg.verify_samples > 0 or verify_inputs is not None:
        if progress:
            progress("verify")
        t0 = time.perf_counter()
        with model_errors("verification"):
            verification = verify_design(result.stages, design, x, reference=reference)
        timings["verify"] = time.perf_counter() - t0
    rtlsim = None
    if cfg.rtlsim:
        if progress:
            progress("rtlsim")
        t0 = time.perf_counter()
        with model_errors("RTL simulation"), _finn_compat.finn_output_to(out.path / "finn.log"):
            rtlsim = run_rtlsim(design, result.design, x, cfg.rtlsim_samples, target, out)
        check = stage_check(rtlsim)
        verification = verification or Verification(passed=True)
        verification.stages.append(check)
        verification.passed = verification.passed and check.passed
        timings["rtlsim"] = time.perf_counter() - t0

    skipped: list[str] = []
    if cfg.stage in ("codegen", "bitfile"):
        if progress:
            progress("codegen")
        t0 = time.perf_counter()
        out.will_write("design_codegen.onnx")
        with model_errors("code generation"):
            coded = generate_code(design, ctx)
        timings["codegen"] = time.perf_counter() - t0
    if cfg.stage == "bitfile" and not _finn_compat.vivado_available():
        skipped.append("bitfile: Vivado is not on PATH, so IP generation, stitching, synthesis and the bitfile were skipped")

    folding = FoldingInfo(
        mode=cfg.folding_mode, target_fps=cfg.target_fps, file=str(cfg.folding_file) if cfg.folding_file else None,
        specialize_file=str(cfg.specialize_file) if cfg.specialize_file else None,
    )
    result.report = Report.from_estimates(
        model=name, target=target, est=est, folding=folding, stage=cfg.stage,
        accuracy=accuracy, verification=verification, skipped=skipped, timings=timings, rtlsim=rtlsim,
        cycle_bound=cycle_bound(design) if cfg.auto else None,
    )
    for f in REPORT_FILES:
        out.will_write(f)
    write_report(result.report, out.path)
    if verification is not None:
        raise_on_failure(verification)
    if cfg.stage == "bitfile":
        if skipped:
            raise ToolMissingError(f"estimates and codegen written to {out.path}; skipped {skipped[0]}")
        run_vivado_steps(coded, ctx)
    if cfg.strict and not est.fits:
        raise OverBudgetError(f"design exceeds {target.name}'s caps: {result.report.over_caps()}; fold with --auto to fit them, or build for a larger --target")
    return result
