"""What the compiler steps share: the build options, the board and the output folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

from flow.core.config import BuildConfig
from hw_targets import Target


@dataclass
class BuildContext:
    """The options, the board and the output folder of one build."""

    cfg: BuildConfig
    target: Target
    out_dir: Path

    def finn_config(self) -> DataflowBuildConfig:
        """FINN's DataflowBuildConfig equivalent of this build (for FINN's own steps)."""
        return DataflowBuildConfig(
            output_dir=str(self.out_dir / "finn"),
            synth_clk_period_ns=self.target.clock_period_ns,
            fpga_part=self.target.part,
            board=self.target.finn_board,
            target_fps=self.cfg.target_fps,
            folding_config_file=self.cfg.folding_file,
            specialize_layers_config_file=self.cfg.specialize_file,
            mvau_wwidth_max=self.cfg.mvau_wwidth_max,
            standalone_thresholds=self.cfg.standalone_thresholds,
            generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
            save_intermediate_models=True,
        )
