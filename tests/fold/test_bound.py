"""``--auto`` states its distance from the limit: the lower bounds on cycles per frame are bounds, say where
they come from, and reach report.json, report.md, report.html and the CLI's summary line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.builder.pipeline import build
from flow.cli import main
from flow.core.config import build_config
from flow.fold.cost_model import CostModel
from flow.fold.dims import fold_values
from flow.fold.optimizer import optimize
from flow.report.markdown import render_markdown
from flow.report.schema import SCHEMA_VERSION, Report
from hw_targets import load_target
from tests.fold.test_optimizer import _board, _setfolding_best


@pytest.fixture(scope="module")
def cnn(tmp_path_factory, tiny_cnn_onnx):
    r = build(tiny_cnn_onnx, build_config(target="pynq-z1", verify_samples=0), tmp_path_factory.mktemp("bound"))
    model = ModelWrapper(str(r.checkpoints["specialize_layers"]))
    return model, CostModel(model, load_target("pynq-z1").part)


def test_input_stream_bound_is_finns_folded_input_at_the_widest_legal_word(cnn):
    model, cm = cnn
    plan = optimize(model, load_target("pynq-z1"), cost_model=cm)
    first = model.find_consumer(model.graph.input[0].name)
    inst = getCustomOp(first)
    h, w, c = model.get_tensor_shape(first.input[0])[1:]
    assert plan.limit.input_layer == first.name and plan.limit.input_stream == h * w  # at most one pixel (c channels) a word
    inst.set_nodeattr("PE", c)
    assert plan.limit.input_stream == int(np.prod(inst.get_folded_input_shape()[:-1]))


def _coupled(cm, name) -> bool:
    inst = cm.instance(name)
    return cm.op_types[name].startswith("Pool") or (cm.op_types[name].startswith("ConvolutionInputGenerator") and inst.get_nodeattr("depthwise"))


def _fastest(cm, name) -> int:
    """The fewest cycles of any legal setting of one layer (an RTL SWG also with parallel_window at full SIMD)."""
    opts = list(cm.options(name))
    if cm.op_types[name] == "ConvolutionInputGenerator_rtl":
        opts += list(cm.options(name, fixed={"SIMD": max(fold_values(cm.instance(name))["SIMD"]), "parallel_window": 1}))
    return min(c.cycles for _, c in opts)


@pytest.mark.parametrize("lut", [2600, 3000, 6000])
def test_bounds_never_exceed_what_a_fitting_folding_reaches(cnn, tmp_path, lut):
    model, cm = cnn
    target = load_target(_board(tmp_path, lut))
    plan = optimize(model, target, cost_model=cm)
    lim = plan.limit
    assert lim.cycles == max(lim.input_stream, lim.fastest_layer, lim.caps, lim.search)
    assert lim.cycles <= plan.predicted.max_cycles <= _setfolding_best(model, cm, plan.budget)
    free = {n: _fastest(cm, n) for n in cm.layers if not _coupled(cm, n)}  # a depthwise SWG runs at its Pool's PE
    assert lim.fastest_layer >= max(free.values())
    if not _coupled(cm, lim.fastest_name):
        assert lim.fastest_layer == max(free.values()) == free[lim.fastest_name]
    assert lim.optimal == (lim.fraction == 1.0) and plan.optimal


def test_the_bound_on_a_tight_board_comes_from_the_caps(cnn, tmp_path):
    model, cm = cnn
    plan = optimize(model, load_target(_board(tmp_path, 2600)), cost_model=cm)
    loose = optimize(model, load_target("zcu104"), cost_model=CostModel(model, load_target("zcu104").part))
    assert plan.limit.source in ("caps", "search") and plan.limit.cycles > loose.limit.cycles
    assert loose.limit.source in ("input_stream", "fastest_layer")


def test_a_design_on_its_input_bound_says_so_everywhere(tiny_mlp_onnx, tmp_path, capsys):
    out = tmp_path / "mlp"
    assert main(["build", str(tiny_mlp_onnx), "--auto", "--out", str(out), "--samples", "5"]) == 0
    line = capsys.readouterr().out
    report = Report.load(out / "report.json")
    b = report.cycle_bound
    assert b.source == "input_stream" and b.fraction == 1.0 and b.cycles == report.max_cycles and b.optimal
    assert json.loads((out / "report.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert "on its input-stream bound (1 cycles/frame)" in line
    md = (out / "report.md").read_text()
    assert "Distance from the limit: lower bound 1 cycles/frame from the input stream into" in md and "on its input-stream bound" in md
    assert "Of the limit" in (out / "report.html").read_text()


def test_a_fps_build_has_no_bound_and_older_reports_load(tiny_mlp_onnx, tmp_path):
    r = build(tiny_mlp_onnx, build_config(target_fps=1000, verify_samples=0), tmp_path / "fps").report
    assert r.cycle_bound is None and "Distance from the limit" not in render_markdown(r)
    old = r.to_dict() | {"schema_version": 2}
    del old["cycle_bound"]
    assert Report.from_dict(old).cycle_bound is None


def test_describe_names_the_distance():
    base = {"cycles": 900, "source": "caps", "layer": None, "fraction": 0.9, "input_stream_cycles": 100, "input_layer": "T0",
            "fastest_layer_cycles": 500, "fastest_layer": "M0", "caps_cycles": 900, "search_cycles": 900, "optimal": False}
    from flow.report.schema import CycleBound

    text = CycleBound(**base).describe()
    assert "900 cycles/frame from the board's caps" in text and "at 90.0% of it (not proven optimal)" in text
    assert "M0 at its fastest legal setting" in CycleBound(**base | {"source": "fastest_layer", "layer": "M0", "fraction": 1.0}).describe()
