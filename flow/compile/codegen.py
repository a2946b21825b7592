"""Code generation (FINN's HLS/RTL sources for every layer) and, with Vivado, FINN's IP and bitfile steps.

>>> [s.name for s in STEPS]
['codegen', 'bitfile']
"""

from __future__ import annotations

from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper

from flow.compat import finn as _finn_compat
from flow.compat.finn_builder import finn_config
from flow.core.fileio import atomic_write_bytes
from flow.core.pipeline import BuildContext, BuildState, StepSpec

#: The ``skipped`` entry of a ``--stage bitfile`` build without Vivado.
NO_VIVADO = "bitfile: Vivado is not on PATH, so IP generation, stitching, synthesis and the bitfile were skipped"


def generate_code(design: ModelWrapper, ctx: BuildContext) -> Path:
    """FINN's HLS/RTL code generation for every layer, into fresh folders under ``out_dir/codegen``
    (the previous build's files there were removed when the output folder was claimed)."""
    codegen_dir = ctx.out_dir / "codegen"
    _finn_compat.ensure_finn_settings(codegen_dir)
    try:
        with _finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
            model = _finn_compat.build_steps().step_hw_codegen(design, finn_config(ctx))
        atomic_write_bytes(ctx.will_write("design_codegen.onnx"), model.model.SerializeToString())
    finally:
        _finn_compat.ensure_finn_settings(ctx.out_dir / "finn_build")
    return codegen_dir


def run_vivado_steps(design: ModelWrapper, ctx: BuildContext) -> None:  # pragma: no cover - needs Vivado
    """FINN's IP generation, stitching and bitfile synthesis (only with Vivado on PATH)."""
    steps = _finn_compat.build_steps()
    fcfg = finn_config(ctx)
    for step in (steps.step_hw_ipgen, steps.step_set_fifo_depths, steps.step_create_stitched_ip, steps.step_synthesize_bitfile):
        design = step(design, fcfg)


def _codegen(state: BuildState, ctx: BuildContext) -> None:
    assert state.model is not None
    generate_code(state.model, ctx)


def _bitfile(state: BuildState, ctx: BuildContext) -> None:
    """FINN's Vivado steps on a verified design; without Vivado, a ``skipped`` entry (the build then stops with exit 5)."""
    if not _finn_compat.vivado_available():
        state.skipped.append(NO_VIVADO)
    elif state.verified:  # pragma: no cover - needs Vivado
        assert state.model is not None
        run_vivado_steps(state.model, ctx)


#: Code generation (``--stage codegen`` and ``bitfile``) and FINN's Vivado steps (``--stage bitfile``).
STEPS: tuple[StepSpec, ...] = (
    StepSpec("codegen", _codegen, requires=("model",), doc="FINN's HLS/RTL sources of every layer, into codegen/",
             when=lambda ctx: ctx.cfg.stage in ("codegen", "bitfile")),
    StepSpec("bitfile", _bitfile, requires=("model",), doc="FINN's IP generation, stitching and synthesis (Vivado)",
             when=lambda ctx: ctx.cfg.stage == "bitfile", shown=False),
)
