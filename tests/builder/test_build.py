"""End-to-end builds of tiny networks: compile, fold, estimate, verify, report."""

import json

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.builder.pipeline import build
from flow.compat import finn as _finn_compat
from flow.core.config import build_config
from flow.core.errors import ToolMissingError
from flow.sim.verify import verify_stages


@pytest.fixture(scope="module")
def mlp_build(tiny_mlp_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlp_build")
    return build(tiny_mlp_onnx, build_config(target="pynq-z1", target_fps=100_000, verify_samples=300), out)


def test_report_schema_and_totals_are_sums_of_layers(mlp_build):
    r = json.loads((mlp_build.out_dir / "report.json").read_text())
    assert set(r) >= {"model", "target", "layers", "totals", "budget", "fits", "max_cycles", "throughput_fps", "latency_us", "accuracy", "verification"}
    assert r["target"] == {"name": "pynq-z1", "part": "xc7z020clg400-1", "clock_mhz": 100.0,
                           "resources": {"lut": 53200, "ff": 106400, "bram_18k": 280, "uram": 0, "dsp": 220},
                           "caps": {"lut": 0.7, "ff": 0.5, "bram_18k": 0.8, "uram": 0.8, "dsp": 0.8}}
    assert {k: r["budget"][k] for k in ("lut", "bram_18k", "uram", "dsp")} == {"lut": 37240, "bram_18k": 224, "uram": 0, "dsp": 176}
    for k in ("lut", "bram_18k", "uram", "dsp"):
        assert r["totals"][k] == pytest.approx(sum(layer[k] for layer in r["layers"]))
    assert r["max_cycles"] == max(layer["cycles"] for layer in r["layers"])
    assert r["throughput_fps"] == pytest.approx(100e6 / r["max_cycles"])
    assert [layer["op_type"] for layer in r["layers"]] == ["Thresholding_rtl", "MVAU_hls", "MVAU_hls", "LabelSelect_hls"]
    assert (mlp_build.out_dir / "report.md").read_text().startswith("# qflow report")
    assert (mlp_build.out_dir / "report.html").exists()


def test_estimates_are_what_finns_builder_reports(mlp_build, tmp_path):
    """The report's per-layer numbers equal the estimate reports FINN's own builder step writes for the design."""
    from finn.builder.build_dataflow_config import (
        DataflowBuildConfig,
        DataflowOutputType,
    )

    cfg = DataflowBuildConfig(output_dir=str(tmp_path), fpga_part="xc7z020clg400-1", synth_clk_period_ns=10.0,
                              generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS])
    (tmp_path / "report").mkdir()
    _finn_compat.build_steps().step_generate_estimate_reports(ModelWrapper(str(mlp_build.design)), cfg)
    res = json.loads((tmp_path / "report" / "estimate_layer_resources.json").read_text())
    cycles = json.loads((tmp_path / "report" / "estimate_layer_cycles.json").read_text())
    r = mlp_build.report
    assert [layer.name for layer in r.layers] == list(cycles)
    for layer in r.layers:
        assert layer.lut == pytest.approx(res[layer.name]["LUT"])
        assert (layer.bram_18k, layer.uram, layer.dsp) == (res[layer.name]["BRAM_18K"], res[layer.name]["URAM"], res[layer.name]["DSP"])
        assert layer.cycles == cycles[layer.name]
    assert r.totals["lut"] == pytest.approx(res["total"]["LUT"])
    assert r.max_cycles == max(cycles.values())


def test_every_stage_verifies_bit_exact_after_streamlining(mlp_build):
    v = mlp_build.report.verification
    assert v.passed
    names = [s.name for s in v.stages]
    assert names == ["finn_onnx", "streamlined", "streamlined_integer", "hw", "specialized"]
    for s in v.stages:
        assert s.samples == 300
        if s.name in ("hw", "specialized"):
            assert s.bit_exact and s.max_abs_err == 0 and s.label_match == 1.0


def test_folding_json_round_trips(mlp_build, tiny_mlp_onnx, tmp_path):
    folding = json.loads((mlp_build.out_dir / "folding.json").read_text())
    assert folding["MVAU_hls_0"]["PE"] >= 1
    folding["MVAU_hls_0"]["PE"] = 2
    folding["MVAU_hls_0"]["SIMD"] = 4
    f = tmp_path / "edited.json"
    f.write_text(json.dumps(folding))
    r = build(tiny_mlp_onnx, build_config(folding_file=f, verify_samples=20), tmp_path / "out").report
    layer = next(x for x in r.layers if x.name == "MVAU_hls_0")
    assert (layer.pe, layer.simd) == (2, 4)
    assert json.loads((tmp_path / "out" / "folding.json").read_text())["MVAU_hls_0"]["PE"] == 2
    assert r.verification.passed


def test_corrupted_hw_weight_is_caught_and_named(mlp_build):
    hw = ModelWrapper(str(mlp_build.checkpoints["convert_to_hw"]))
    mvau = hw.get_nodes_by_op_type("MVAU")[0]
    w = hw.get_initializer(mvau.input[1]).copy()
    w[0, 0] = -w[0, 0] if w[0, 0] != 0 else 1
    hw.set_initializer(mvau.input[1], w)
    ref = ModelWrapper(str(mlp_build.checkpoints["insert_label_select"]))
    x = np.random.default_rng(1).integers(0, 256, size=(200, 1, 8, 8)).astype(np.float32)
    v = verify_stages(x, float_stages=[], integer_stages=[("streamlined_integer", ref), ("hw", hw)])
    assert not v.passed
    bad = v.stages[-1]
    assert bad.name == "hw" and not bad.passed and bad.first_mismatch is not None
    assert bad.first_mismatch < 200


def test_cnn_builds_and_verifies(tiny_cnn_onnx, tmp_path):
    r = build(tiny_cnn_onnx, build_config(target="zcu104", target_fps=50_000, verify_samples=100), tmp_path).report
    ops = [layer.op_type for layer in r.layers]
    assert "ConvolutionInputGenerator_rtl" in ops and "Pool_hls" in ops and ops.count("MVAU_hls") == 3
    assert r.verification.passed
    assert r.target.part == "xczu7ev-ffvc1156-2-e"


def test_codegen_writes_every_layers_sources_into_a_folder_named_after_it(tiny_mlp_onnx, tmp_path):
    r = build(tiny_mlp_onnx, build_config(stage="codegen", verify_samples=0), tmp_path).report
    gen = tmp_path / "codegen"
    assert sorted(p.name for p in gen.iterdir()) == sorted(layer.name for layer in r.layers)
    for layer in r.layers:
        sources = [p for p in (gen / layer.name).iterdir() if p.suffix in (".cpp", ".v", ".sv", ".vh")]
        assert sources, f"no HLS/RTL source for {layer.name}"
    model = ModelWrapper(str(tmp_path / "design_codegen.onnx"))
    for node in model.graph.node:  # every path FINN recorded is the named folder
        inst = getCustomOp(node)
        assert inst.get_nodeattr("code_gen_dir_ipgen") == str(gen / node.name)
        for attr in ("ipgen_path", "ip_path"):
            if attr in inst.get_nodeattr_types() and inst.get_nodeattr(attr):
                assert inst.get_nodeattr(attr) == str(gen / node.name), (node.name, attr)
    again = build(tiny_mlp_onnx, build_config(stage="codegen", verify_samples=0), tmp_path).report
    assert sorted(p.name for p in gen.iterdir()) == sorted(layer.name for layer in again.layers)  # the same names on a rebuild


@pytest.mark.skipif(_finn_compat.vivado_available(), reason="checks the behaviour without Vivado")
def test_bitfile_without_vivado_says_what_was_skipped(tiny_mlp_onnx, tmp_path):
    with pytest.raises(ToolMissingError, match="skipped bitfile: Vivado is not on PATH"):
        build(tiny_mlp_onnx, build_config(stage="bitfile", verify_samples=0), tmp_path)
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["stage"] == "bitfile" and r["skipped"] and (tmp_path / "codegen").is_dir()


def test_verify_inputs_are_used(tiny_mlp_onnx, tmp_path):
    x = np.random.default_rng(3).integers(0, 256, size=(17, 1, 8, 8)).astype(np.float32)
    r = build(tiny_mlp_onnx, build_config(), tmp_path, verify_inputs=x).report
    assert {s.samples for s in r.verification.stages} == {17}
