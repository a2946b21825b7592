"""FINN's builder configuration of one build: what FINN's own steps read."""

from __future__ import annotations

from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

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
