"""qflow's build as FINN's builder sees it: a ``DataflowBuildConfig`` made from the build context, and
FINN's ``step_*`` functions run on a private copy of the model.

FINN's builder steps take ``(model, cfg)`` and rewrite the model they are given; qflow keeps every
checkpoint it handed out intact, so each step runs on a deep copy, whose transformations then
rewrite it in place (:func:`flow.compat.qonnx_linear.transforms_in_place`, linear in the graph).
"""

from __future__ import annotations

import copy

from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat import finn as _finn_compat
from flow.compat.qonnx_linear import transforms_in_place
from flow.core.pipeline import BuildContext


def finn_config(ctx: BuildContext) -> DataflowBuildConfig:
    """FINN's DataflowBuildConfig equivalent of the build ``ctx`` (for FINN's own steps)."""
    return DataflowBuildConfig(
        output_dir=str(ctx.out_dir / "finn"),
        synth_clk_period_ns=ctx.target.clock_period_ns,
        fpga_part=ctx.target.part,
        board=ctx.target.finn_board,
        target_fps=ctx.cfg.target_fps,
        folding_config_file=ctx.cfg.folding_file,
        specialize_layers_config_file=ctx.cfg.specialize_file,
        mvau_wwidth_max=ctx.cfg.mvau_wwidth_max,
        standalone_thresholds=ctx.cfg.standalone_thresholds,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        save_intermediate_models=True,
    )


def finn_step(name: str, model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """FINN's builder step ``step_<name>`` on a private copy of ``model``, its transformations
    rewriting that copy in place (:func:`flow.compat.qonnx_linear.transforms_in_place`)."""
    with transforms_in_place():
        return getattr(_finn_compat.build_steps(), f"step_{name}")(copy.deepcopy(model), finn_config(ctx))
