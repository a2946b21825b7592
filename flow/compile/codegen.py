"""Code generation (FINN's HLS/RTL sources for every layer) and, with Vivado, FINN's IP and bitfile steps."""

from __future__ import annotations

from pathlib import Path

from finn.transformation.qonnx.give_unique_node_names_recursive import GiveUniqueNodeNamesRecursive
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat import finn as _finn_compat
from flow.compile.context import BuildContext
from flow.core.fileio import atomic_write_bytes


def generate_code(design: ModelWrapper, ctx: BuildContext) -> Path:
    """FINN's HLS/RTL code generation for every layer, each into a fresh folder named after it,
    ``out_dir/codegen/MVAU_hls_0`` (the previous build's files there were removed when the output
    folder was claimed; a name something else holds gets a suffix, ``MVAU_hls_0-2``)."""
    codegen_dir = ctx.out_dir / "codegen"
    _finn_compat.ensure_finn_settings(codegen_dir)
    fcfg = ctx.finn_config()
    try:
        with _finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
            design = design.transform(GiveUniqueNodeNamesRecursive())  # the names FINN's step gives, before folders are named
            _finn_compat.codegen_in_named_folders(design, codegen_dir, fcfg)
            model = _finn_compat.build_steps().step_hw_codegen(design, fcfg)
        atomic_write_bytes(ctx.out_dir / "design_codegen.onnx", model.model.SerializeToString())
    finally:
        _finn_compat.ensure_finn_settings(ctx.out_dir / "finn_build")
    return codegen_dir


def run_vivado_steps(design: ModelWrapper, ctx: BuildContext) -> None:  # pragma: no cover - needs Vivado
    """FINN's IP generation, stitching and bitfile synthesis (only with Vivado on PATH)."""
    steps = _finn_compat.build_steps()
    fcfg = ctx.finn_config()
    for step in (steps.step_hw_ipgen, steps.step_set_fifo_depths, steps.step_create_stitched_ip, steps.step_synthesize_bitfile):
        design = step(design, fcfg)
