"""``qflow build``: a QONNX model to a folded, estimated, verified FINN dataflow design.

>>> from flow.build import build           # doctest: +SKIP
>>> result = build("tfc.onnx", BuildConfig(target="pynq-z1", target_fps=100_000), "out/tfc")
>>> result.report["throughput_fps"]
"""

from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from flow import _finn_compat
from flow.compile import (
    COMPILE_STEPS,
    BuildContext,
    assemble_design,
    step_convert_to_hw,
    step_insert_label_select,
    step_minimize_bit_width,
    step_set_input_datatype,
    step_streamline,
)
from flow.config import BuildConfig
from flow.errors import OverBudgetError, ToolMissingError
from flow.estimate import estimate
from flow.fileio import atomic_write_json
from flow.folding import extract_folding, step_fold
from flow.modelfile import load_onnx
from flow.report import build_report, write_report
from flow.specialize import specialize_config
from flow.verify import StageOutputs, raise_on_failure, verify_stages
from hw_targets import load_target

Step = Callable[[ModelWrapper, BuildContext], ModelWrapper]


@dataclass
class BuildResult:
    """What a build produced: the report dict and the files it wrote."""

    out_dir: Path
    report: dict[str, Any]
    design: Path
    checkpoints: dict[str, Path] = field(default_factory=dict)


BUILD_STEPS: list[Step] = [*COMPILE_STEPS, step_fold, step_minimize_bit_width]


def planned_steps(cfg: BuildConfig, verify: bool) -> list[str]:
    """Names of the steps a build reports through its ``progress`` callback, in order."""
    names = [s.__name__.removeprefix("step_") for s in BUILD_STEPS]
    return names + (["verify"] if verify else []) + (["codegen"] if cfg.stage in ("codegen", "bitfile") else [])


def random_inputs(model: ModelWrapper, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random samples over the full range of the graph input's integer datatype."""
    name = model.graph.input[0].name
    dt = model.get_tensor_datatype(name)
    shape = model.get_tensor_shape(name)[1:]
    if not dt.is_integer():
        dt = DataType["UINT8"]
    rng = np.random.default_rng(seed)
    return rng.integers(int(dt.min()), int(dt.max()) + 1, size=(n, *shape)).astype(np.float32)


def _run_steps(model: ModelWrapper, steps: list[Step], ctx: BuildContext, ckpt_dir: Path, timings: dict, checkpoints: dict, progress) -> ModelWrapper:
    for step in steps:
        name = step.__name__.removeprefix("step_")
        if progress:
            progress(name)
        t0 = time.perf_counter()
        with _finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
            model = step(model, ctx)
        timings[name] = time.perf_counter() - t0
        path = ckpt_dir / f"{len(checkpoints):02d}_{name}.onnx"
        model.save(str(path))
        checkpoints[name] = path
    return model


def build(
    model: str | Path | ModelWrapper,
    cfg: BuildConfig,
    out_dir: str | Path,
    *,
    model_name: str | None = None,
    verify_inputs: np.ndarray | None = None,
    reference: StageOutputs | None = None,
    accuracy: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Compile, fold, estimate, verify and report. Writes into ``out_dir``:

    ``checkpoints/NN_<step>.onnx`` after every step, ``design.onnx`` (the folded dataflow
    partition), ``folding.json`` and ``specialize_layers.json`` (FINN's folding and
    specialize-layers configs: ``--specialize specialize_layers.json --folding folding.json``
    rebuilds the same design), ``report.json``, ``report.md`` and ``report.html``;
    ``codegen/`` for ``stage="codegen"``.
    Raises a :class:`flow.errors.QflowError` for bad input, leaving no report behind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("report.json", "report.md"):
        (out / stale).unlink(missing_ok=True)
    target = load_target(cfg.target).with_clock(cfg.clock_mhz)
    _finn_compat.ensure_finn_settings(out / "finn_build")
    _finn_compat.quiet_finn_logging()
    ctx = BuildContext(cfg=cfg, target=target, out_dir=out)
    ckpt_dir = out / "checkpoints"
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_dir.mkdir()

    if isinstance(model, ModelWrapper):
        qonnx_model, name = model, model_name or "model"
    else:
        qonnx_model, name = load_onnx(model), model_name or Path(model).stem
    qonnx_path = ckpt_dir / "00_qonnx.onnx"
    qonnx_model.save(str(qonnx_path))
    checkpoints: dict[str, Path] = {"qonnx": qonnx_path}
    timings: dict[str, float] = {}

    design = _run_steps(ModelWrapper(str(qonnx_path)), BUILD_STEPS, ctx, ckpt_dir, timings, checkpoints, progress)
    design_path = out / "design.onnx"
    design.save(str(design_path))
    folding = extract_folding(design)
    atomic_write_json(out / "folding.json", folding)
    atomic_write_json(out / "specialize_layers.json", specialize_config(design))

    t0 = time.perf_counter()
    est = estimate(design, target)
    timings["estimate"] = time.perf_counter() - t0

    verification = None
    if cfg.verify_samples > 0 or verify_inputs is not None:
        if progress:
            progress("verify")
        t0 = time.perf_counter()
        x = verify_inputs if verify_inputs is not None else random_inputs(ModelWrapper(str(checkpoints["set_input_datatype"])), cfg.verify_samples)
        with warnings.catch_warnings():  # qonnx's datatype sanitizing warns; results are compared below
            warnings.simplefilter("ignore")
            verification = verify_stages(
                x,
                float_stages=[(s, ModelWrapper(str(checkpoints[k]))) for s, k in (("qonnx", "qonnx"), ("finn_onnx", "set_input_datatype"), ("streamlined", "streamline"))],
                integer_stages=[
                    ("streamlined_integer", ModelWrapper(str(checkpoints["insert_label_select"]))),
                    ("hw", ModelWrapper(str(checkpoints["convert_to_hw"]))),
                    ("specialized", assemble_design(design, design_path)),
                ],
                reference=reference,
            )
        timings["verify"] = time.perf_counter() - t0

    skipped: list[str] = []
    if cfg.stage in ("codegen", "bitfile"):
        if progress:
            progress("codegen")
        t0 = time.perf_counter()
        generate_code(design, ctx)
        timings["codegen"] = time.perf_counter() - t0
    if cfg.stage == "bitfile" and not _finn_compat.vivado_available():
        skipped.append("bitfile: Vivado is not on PATH, so IP generation, stitching, synthesis and the bitfile were skipped")

    folding_info = {
        "mode": cfg.folding_mode, "target_fps": cfg.target_fps, "file": str(cfg.folding_file) if cfg.folding_file else None,
        "specialize_file": str(cfg.specialize_file) if cfg.specialize_file else None,
    }
    report = build_report(
        model_name=name, target=target, est=est, folding=folding_info, stage=cfg.stage,
        accuracy=accuracy, verification=verification, skipped=skipped, timings=timings,
    )
    write_report(report, out)
    result = BuildResult(out_dir=out, report=report, design=design_path, checkpoints=checkpoints)
    if verification is not None:
        raise_on_failure(verification)
    if cfg.stage == "bitfile":
        if skipped:
            raise ToolMissingError(f"estimates and codegen written to {out}; skipped {skipped[0]}")
        run_vivado_steps(design, ctx)
    if cfg.strict and not est.fits:
        raise OverBudgetError(
            f"design exceeds {target.name}'s caps on {', '.join(est.over_budget)} "
            + ", ".join(f"{k} {est.totals[k]:,.0f} > {est.budget[k]:,}" for k in est.over_budget)
        )
    return result


def generate_code(design: ModelWrapper, ctx: BuildContext) -> Path:
    """FINN's HLS/RTL code generation for every layer, into ``out_dir/codegen``."""
    codegen_dir = ctx.out_dir / "codegen"
    shutil.rmtree(codegen_dir, ignore_errors=True)
    _finn_compat.ensure_finn_settings(codegen_dir)
    try:
        with _finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
            model = _finn_compat.build_steps().step_hw_codegen(design, ctx.finn_config())
        model.save(str(ctx.out_dir / "design_codegen.onnx"))
    finally:
        _finn_compat.ensure_finn_settings(ctx.out_dir / "finn_build")
    return codegen_dir


def run_vivado_steps(design: ModelWrapper, ctx: BuildContext) -> None:  # pragma: no cover - needs Vivado
    """FINN's IP generation, stitching and bitfile synthesis (only with Vivado on PATH)."""
    steps = _finn_compat.build_steps()
    fcfg = ctx.finn_config()
    for step in (steps.step_hw_ipgen, steps.step_set_fifo_depths, steps.step_create_stitched_ip, steps.step_synthesize_bitfile):
        design = step(design, fcfg)


# Steps re-exported for users who compose their own flows.
__all__ = [
    "BuildResult", "build", "random_inputs", "generate_code", "step_set_input_datatype",
    "step_streamline", "step_insert_label_select", "step_convert_to_hw",
]
