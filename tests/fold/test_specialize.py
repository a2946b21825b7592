"""HLS/RTL variants: FINN's specialize-layers config in and out of a build, re-specialization
after the fact, the cost model pricing both variants exactly, and the optimizer choosing."""

from __future__ import annotations

import copy
import json
from functools import partial

import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.builder.pipeline import build
from flow.cli import main
from flow.compat import finn as _finn_compat
from flow.fold.lut_model import qflow_resources
from flow.fold.specialize import (
    IMPL_ATTR,
    alternatives,
    apply_folding,
    impl_style,
    respecialize,
    specialize_config,
)
from flow.core.config import build_config
from flow.core.errors import FoldingError
from flow.fold.cost_model import CostModel
from flow.fold.optimizer import optimize
from flow.fold.step import RTL_TO_HLS_PROP
from hw_targets import load_target

PART = load_target("pynq-z1").part
_KEYS = ("LUT", "BRAM_18K", "URAM", "DSP")



@pytest.fixture(scope="module")
def mlp(tmp_path_factory, tiny_mlp_onnx):
    out = tmp_path_factory.mktemp("spec") / "default"
    r = build(tiny_mlp_onnx, build_config(target="pynq-z1", verify_samples=0), out)
    return ModelWrapper(str(r.checkpoints["specialize_layers"])), out


def _ops(model):
    return [(n.name, n.op_type) for n in model.graph.node]


def test_respecialize_with_current_variants_is_identity(mlp):
    model, _ = mlp
    again, rename = respecialize(model, {}, PART)
    assert _ops(again) == _ops(model)
    assert rename == {n.name: n.name for n in model.graph.node}
    config = specialize_config(model)
    assert {k: v[IMPL_ATTR] for k, v in config.items() if k != "Defaults"} == {
        n.op_type.rsplit("_", 2)[0] + "_" + n.name.rsplit("_", 1)[1]: impl_style(n) for n in model.graph.node
    }


def test_alternatives_are_what_finn_can_build(mlp):
    model, _ = mlp
    alt, names = alternatives(model, PART)
    ops = dict(_ops(alt))
    # the tiny MLP: standalone input thresholds (RTL by default, HLS possible) and a final
    # 2-bit MVAU without activation (HLS by default, RTL possible on a DSP48E1 part); the
    # first MVAU has embedded thresholds, which FINN's RTL MVAU cannot do
    by_op = {model.get_node_from_name(k).op_type: ops[v] for k, v in names.items()}
    assert by_op == {"Thresholding_rtl": "Thresholding_hls", "MVAU_hls": "MVAU_rtl"}
    first_mvau = next(n.name for n in model.graph.node if n.op_type == "MVAU_hls")
    assert first_mvau not in names


def test_cost_model_prices_both_variants_exactly(mlp, tmp_path):
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    model, _ = mlp
    cm = CostModel(model, PART)
    flippable = [n for n in cm.layers if len(cm.variants(n)) == 2]
    assert len(flippable) == 2
    cfg = DataflowBuildConfig(output_dir=str(tmp_path / "finn"), fpga_part=PART, generate_outputs=[])
    for pe in (1, 2):
        folding = {"Defaults": {}, **{n: {IMPL_ATTR: cm.variants(n)[1], "PE": pe} for n in flippable}}
        pred = cm.estimate(folding)
        m, rename = apply_folding(ModelWrapper(copy.deepcopy(model.model)), folding, cfg, tmp_path / "f.json")
        m = _finn_compat.build_steps().step_minimize_bit_width(m, cfg)
        for n in flippable:
            assert m.get_node_from_name(rename[n]).op_type.endswith("_" + cm.variants(n)[1])
        res = m.analysis(partial(res_estimation, fpgapart=PART))
        cycles = m.analysis(exp_cycles_per_layer)
        for n in cm.layers:
            new = rename[n]
            assert (pred.layers[n].cycles, *pred.layers[n].resources()) == (cycles[new], *qflow_resources(getCustomOp(m.get_node_from_name(new)), res[new])), n
    with pytest.raises(FoldingError, match="no 'rtl' variant"):
        cm.layer_cost(next(n for n in cm.layers if n.startswith("LabelSelect")), {IMPL_ATTR: "rtl"})


def test_build_with_specialize_file_verifies_and_reproduces(tiny_mlp_onnx, mlp, tmp_path):
    model, _ = mlp
    config = specialize_config(model)
    flipped = {k: {IMPL_ATTR: {"MVAU_1": "rtl", "Thresholding_0": "hls"}.get(k, v[IMPL_ATTR])} for k, v in config.items() if k != "Defaults"}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"Defaults": {}, **flipped}))
    out = tmp_path / "flipped"
    assert main(["build", str(tiny_mlp_onnx), "--out", str(out), "--specialize", str(spec), "--samples", "64"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["passed"] and report["folding"]["specialize_file"] == str(spec)
    design = ModelWrapper(str(out / "design.onnx"))
    assert {"MVAU_rtl", "Thresholding_hls"} <= {n.op_type for n in design.graph.node}
    written = json.loads((out / "specialize_layers.json").read_text())
    assert {k: v for k, v in written.items() if k != "Defaults"} == flipped

    again = tmp_path / "again"
    args = ["--specialize", str(out / "specialize_layers.json"), "--folding", str(out / "folding.json"), "--samples", "0"]
    assert main(["build", str(tiny_mlp_onnx), "--out", str(again), *args]) == 0
    assert _ops(ModelWrapper(str(again / "design.onnx"))) == _ops(design)
    assert json.loads((again / "report.json").read_text())["totals"] == report["totals"]


def test_folding_file_may_choose_variants(tiny_mlp_onnx, mlp, tmp_path):
    model, _ = mlp
    last = [n.name for n in model.graph.node if n.op_type == "MVAU_hls"][-1]
    folding = tmp_path / "folding.json"
    folding.write_text(json.dumps({"Defaults": {}, last: {IMPL_ATTR: "rtl", "PE": 2}}))
    out = tmp_path / "out"
    assert main(["build", str(tiny_mlp_onnx), "--out", str(out), "--folding", str(folding), "--samples", "32"]) == 0
    design = ModelWrapper(str(out / "design.onnx"))
    rtl = [n for n in design.graph.node if n.op_type == "MVAU_rtl"]
    assert len(rtl) == 1 and json.loads((out / "folding.json").read_text())[rtl[0].name]["PE"] == 2


@pytest.mark.parametrize("content,match", [
    ({"MVAU_9": {IMPL_ATTR: "rtl"}}, "not in the design"),
    ({"MVAU_1": {IMPL_ATTR: "vhdl"}}, "'hls' or 'rtl'"),
    ([1, 2], "node names"),
])
def test_bad_specialize_file_is_one_readable_line(tiny_mlp_onnx, tmp_path, capsys, content, match):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(content))
    assert main(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--specialize", str(spec)]) == 2
    err = capsys.readouterr().err
    problems = [line for line in err.splitlines() if not line.startswith("  ")]  # the steps done, one indented line each
    assert len(problems) == 1 and match in problems[0] and "Traceback" not in err, err


def test_optimizer_chooses_variants_unless_pinned(mlp, tmp_path):
    model, _ = mlp
    target = load_target("pynq-z1")
    plan = optimize(model, target)
    cm = CostModel(model, target.part)
    chosen = {n: a[IMPL_ATTR] for n, a in plan.folding.items() if IMPL_ATTR in a}
    assert set(chosen) == {n for n in cm.layers if len(cm.variants(n)) == 2}
    assert plan.predicted == cm.estimate(plan.folding)
    pinned = optimize(model, target, variants=False)
    assert not any(IMPL_ATTR in a for a in pinned.folding.values())
    # with the variants free the optimum is at least as good in cycles
    assert plan.predicted.max_cycles <= pinned.predicted.max_cycles


def test_optimizer_keeps_rtl_variants_when_asked(mlp, tiny_mlp_onnx, tmp_path):
    """``prefer="rtl"`` (``--auto --prefer-rtl``): every layer FINN can build as RTL is RTL in the plan,
    priced with qflow's LUT count for MVAU_rtl rather than FINN's 0."""
    model, _ = mlp
    target = load_target("pynq-z1")
    cm = CostModel(model, target.part)
    plan = optimize(model, target, prefer="rtl", cost_model=cm)
    flippable = [n for n in cm.layers if len(cm.variants(n)) == 2]
    assert flippable and all(plan.folding[n][IMPL_ATTR] == "rtl" for n in flippable)
    mvau_rtl = [n for n in flippable if cm.op_types[n].startswith("MVAU")]
    assert mvau_rtl and all(plan.predicted.layers[n].lut > 0 for n in mvau_rtl)
    out = tmp_path / "auto"
    assert main(["build", str(tiny_mlp_onnx), "--out", str(out), "--auto", "--prefer-rtl", "--samples", "16"]) == 0
    ops = [layer["op_type"] for layer in json.loads((out / "report.json").read_text())["layers"]]
    # a layer whose folding would overflow finn-rtllib's MVU output queue is built as HLS, and says why
    moved = json.loads(ModelWrapper(str(out / "design.onnx")).get_metadata_prop(RTL_TO_HLS_PROP) or "{}")
    assert all("overflows under back-pressure" in why for why in moved.values())
    assert ops.count("MVAU_rtl") + len(moved) == len(mvau_rtl) and "Thresholding_rtl" in ops
