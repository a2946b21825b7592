"""``--stage bitfile``: FINN's Vivado steps asked for the outputs they produce. The steps need Vivado;
what can be checked without it is that FINN's stitching and synthesis skip themselves unless asked,
and that qflow asks, with the board's shell flow."""

from __future__ import annotations

import logging

import pytest
from finn.builder.build_dataflow_config import DataflowOutputType, ShellFlowType
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat import finn as _finn_compat
from flow.compile.codegen import BITFILE_OUTPUTS, BITFILE_STEPS, bitfile_config
from flow.compile.context import BuildContext
from flow.core.config import build_config
from hw_targets import load_target


def _ctx(board: str, tmp_path) -> BuildContext:
    return BuildContext(cfg=build_config(), target=load_target(board), out_dir=tmp_path)


def test_finn_skips_the_bitfile_unless_it_is_asked_for(tiny_mlp_onnx, tmp_path, caplog):
    estimates_only = _ctx("pynq-z1", tmp_path).finn_config()
    assert DataflowOutputType.BITFILE not in estimates_only.generate_outputs
    model = ModelWrapper(str(tiny_mlp_onnx))
    with caplog.at_level(logging.WARNING, logger="finn_logger"):
        assert _finn_compat.build_steps().step_synthesize_bitfile(model, estimates_only) is model
    assert any("skipping step_synthesize_bitfile" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("board,flow", [("pynq-z1", ShellFlowType.VIVADO_ZYNQ), ("zcu104", ShellFlowType.VIVADO_ZYNQ),
                                        ("alveo-u250", ShellFlowType.VITIS_ALVEO)])
def test_the_bitfile_stage_asks_for_ip_bitfile_driver_and_package_with_the_boards_shell(board, flow, tmp_path):
    cfg = bitfile_config(_ctx(board, tmp_path))
    assert cfg.shell_flow_type == flow and cfg.board == load_target(board).finn_board
    assert set(cfg.generate_outputs) == set(BITFILE_OUTPUTS) >= {DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER,
                                                                DataflowOutputType.DEPLOYMENT_PACKAGE, DataflowOutputType.STITCHED_IP}
    assert cfg.output_dir == str(tmp_path / "finn") and cfg.fpga_part == load_target(board).part


def test_every_bitfile_step_is_one_of_finns():
    steps = _finn_compat.build_steps()
    assert all(callable(getattr(steps, name, None)) for name in BITFILE_STEPS)
