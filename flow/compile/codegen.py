"""Code generation (FINN's HLS/RTL sources for every layer) and, with Vivado, FINN's IP and bitfile steps."""

from __future__ import annotations

import dataclasses

from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType, ShellFlowType
from finn.transformation.qonnx.give_unique_node_names_recursive import GiveUniqueNodeNamesRecursive
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat import finn as _finn_compat
from flow.compile.context import BuildContext
from flow.core.fileio import atomic_write_bytes


def generate_code(design: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """FINN's HLS/RTL code generation for every layer, each into a fresh folder named after it,
    ``out_dir/codegen/MVAU_hls_0`` (the previous build's files there were removed when the output
    folder was claimed; a name something else holds gets a suffix, ``MVAU_hls_0-2``). Returns the
    design with the folders recorded, as written to ``design_codegen.onnx``."""
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
    return model


#: What ``--stage bitfile`` asks of FINN, into ``out_dir/finn``: the stitched IP, the bitfile, the PYNQ
#: driver and the deployment package (bitfile and driver in one folder to copy to the board).
BITFILE_OUTPUTS = (DataflowOutputType.STITCHED_IP, DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
                   DataflowOutputType.DEPLOYMENT_PACKAGE)
#: FINN's shell flow per kind of board: Vivado and PYNQ's Zynq shell, or Vitis for Alveo cards.
SHELL_FLOWS = {"zynq": ShellFlowType.VIVADO_ZYNQ, "alveo": ShellFlowType.VITIS_ALVEO}
#: FINN's steps ``--stage bitfile`` runs after code generation, in order.
BITFILE_STEPS = ("step_hw_ipgen", "step_set_fifo_depths", "step_create_stitched_ip", "step_synthesize_bitfile",
                 "step_make_driver", "step_deployment_package")


def bitfile_config(ctx: BuildContext) -> DataflowBuildConfig:
    """FINN's build config for the Vivado steps: the build's own, asking for :data:`BITFILE_OUTPUTS` with the board's shell flow.
    (FINN's stitching and synthesis steps skip themselves unless their output is asked for.)"""
    return dataclasses.replace(ctx.finn_config(), generate_outputs=list(BITFILE_OUTPUTS), shell_flow_type=SHELL_FLOWS[ctx.target.shell])


def run_vivado_steps(design: ModelWrapper, ctx: BuildContext) -> ModelWrapper:  # pragma: no cover - needs Vivado
    """FINN's IP generation, FIFO sizing, stitching, bitfile synthesis, PYNQ driver and deployment package
    (:data:`BITFILE_STEPS`, only with Vivado on PATH) for ``design`` as :func:`generate_code` returned it."""
    steps = _finn_compat.build_steps()
    fcfg = bitfile_config(ctx)
    for name in BITFILE_STEPS:
        design = getattr(steps, name)(design, fcfg)
    return design
