"""The folding optimizer: FINN's folding rules, the caps per FINN's own estimates, at least
as fast as SetFolding under the same caps, a typed error when nothing fits, and ``--auto``."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.builder.pipeline import build
from flow.cli import main
from flow.core.config import build_config
from flow.core.errors import ConfigError, FoldingError, InfeasibleDesignError
from flow.fold.cost_model import CostModel
from flow.fold.dims import fold_limits
from flow.fold.optimizer import optimize
from flow.fold.rules import extract_folding
from hw_targets import load_target


def _board(tmp_path, lut: int, name: str = "small-board") -> str:
    p = tmp_path / f"{name}.toml"
    p.write_text(
        'display_name = "Small"\npart = "xc7z020clg400-1"\nfinn_board = "Pynq-Z1"\nshell = "zynq"\nclock_mhz = 100.0\n'
        f"[resources]\nlut = {lut}\nff = 100000\nbram_18k = 280\nuram = 0\ndsp = 220\n"
    )
    return str(p)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory, tiny_cnn_onnx):
    out = tmp_path_factory.mktemp("opt") / "specialize"
    r = build(tiny_cnn_onnx, build_config(target="pynq-z1", verify_samples=0), out)
    model = ModelWrapper(str(r.checkpoints["specialize_layers"]))
    return model, CostModel(model, load_target("pynq-z1").part)


def test_folding_respects_finn_rules_and_coupling(cnn):
    model, cm = cnn
    plan = optimize(model, load_target("pynq-z1"), cost_model=cm)
    for name in cm.layers:
        inst = cm._inst[name]
        attrs = {**cm._base[name], **plan.folding[name]}
        for attr, dim in fold_limits(inst).items():
            assert dim % attrs[attr] == 0, (name, attr)
        if cm.op_types[name].startswith("ConvolutionInputGenerator"):
            if attrs.get("parallel_window"):
                assert attrs["SIMD"] == inst.get_nodeattr("IFMChannels")
            if inst.get_nodeattr("depthwise"):
                consumer = model.find_consumer(model.get_node_from_name(name).output[0])
                assert plan.folding[consumer.name]["PE"] == attrs["SIMD"]
    pools = [n for n in cm.layers if n.startswith("Pool")]
    assert pools, "the tiny CNN should exercise the SWG/Pool coupling"
    assert plan.optimal and plan.predicted.fits(plan.budget)


def test_wwidth_max_bounds_weight_bits_per_pe(cnn):
    model, cm = cnn
    plan = optimize(model, load_target("pynq-z1"), cost_model=cm, wwidth_max=4)
    for name in cm.layers:
        if cm.op_types[name].startswith("MVAU"):
            assert plan.folding[name]["SIMD"] * cm._inst[name].get_input_datatype(1).bitwidth() <= 4
    free = optimize(model, load_target("pynq-z1"), cost_model=cm)
    assert free.predicted.max_cycles <= plan.predicted.max_cycles


def _setfolding_best(model: ModelWrapper, cm: CostModel, budget: dict) -> int:
    """Fewest max cycles over SetFolding runs that fit, targets on a fine log grid."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    best = math.inf
    for target_cycles in sorted({int(round(x)) for x in np.geomspace(1, 2e5, 120)}):
        m = ModelWrapper(copy.deepcopy(model.model)).transform(SetFolding(target_cycles, mvau_wwidth_max=36))
        try:
            est = cm.estimate(extract_folding(m))
        except FoldingError:
            continue
        if est.fits(budget):
            best = min(best, est.max_cycles)
    return best


@pytest.mark.parametrize("lut", [3000, 6000])
def test_no_slower_than_setfolding_under_the_same_caps(cnn, tmp_path, lut):
    model, cm = cnn
    target = load_target(_board(tmp_path, lut))
    plan = optimize(model, target, cost_model=cm)
    assert plan.predicted.fits(plan.budget)
    baseline = _setfolding_best(model, cm, plan.budget)
    print(f"lut cap {lut}: optimizer {plan.predicted.max_cycles} cycles, best fitting SetFolding {baseline}")
    assert plan.predicted.max_cycles <= baseline


def test_auto_build_fits_per_finns_own_estimate(tiny_cnn_onnx, tmp_path):
    board = _board(tmp_path, 3000)
    r = build(tiny_cnn_onnx, build_config(target=board, auto=True, verify_samples=20), tmp_path / "out")
    rep = r.report
    assert rep.fits is True and rep.folding.mode == "auto"
    pred = json.loads((tmp_path / "out" / "auto_folding.json").read_text())["predicted"]
    assert rep.totals == pred["totals"]  # FINN's analyses agree with the prediction
    assert rep.data_width_converters.totals == pred["converters"]  # and FINN's InsertDWC
    assert rep.throughput_fps == pytest.approx(100e6 / pred["max_cycles"])
    assert all(rep.totals[k] + pred["converters"][k] <= rep.budget[k] for k in rep.budget)
    config = json.loads((tmp_path / "out" / "finn" / "report" / "auto_folding_config.json").read_text())
    folded = ModelWrapper(str(r.design))
    for name, attrs in config.items():
        if name != "Defaults":
            inst = getCustomOp(folded.get_node_from_name(name))
            assert {a: inst.get_nodeattr(a) for a in attrs} == attrs, name


def test_converters_between_layers_count_against_the_caps(cnn, tmp_path, monkeypatch):
    from flow.fold.converters import DwcPricer

    model, cm = cnn
    broken = 0
    for lut in (2400, 2800, 3200, 3600, 4500, 6000):
        target = load_target(_board(tmp_path, lut, f"b{lut}"))
        plan = optimize(model, target, cost_model=cm)
        assert plan.predicted.fits(plan.budget) and plan.optimal  # layers + converters
        with monkeypatch.context() as m:  # the same optimizer blind to converters
            m.setattr(DwcPricer, "price", lambda self, a, b: (0.0, 0.0, 0.0, 0.0))
            blind = optimize(model, target, cost_model=CostModel(model, target.part))
        assert plan.predicted.max_cycles >= blind.predicted.max_cycles
        broken += not cm.estimate(blind.folding).fits(plan.budget)
    assert broken, "ignoring converters should break a cap on some of these boards"


def test_infeasible_board_names_layer_and_resource(tiny_mlp_onnx, tmp_path):
    board = _board(tmp_path, 400, "tiny-board")  # 280 LUTs: less than one MVAU's fixed cost
    with pytest.raises(InfeasibleDesignError, match=r"layer MVAU_hls_\d+ \(MVAU_hls\)") as err:
        build(tiny_mlp_onnx, build_config(target=board, auto=True, verify_samples=0), tmp_path / "out")
    assert "LUT" in str(err.value) and "280" in str(err.value)
    assert not (tmp_path / "out" / "report.json").exists()


def test_infeasible_in_total_names_the_largest_layer(cnn, tmp_path):
    model, cm = cnn
    fully_folded = cm.estimate({n: {} for n in cm.layers})  # every layer alone fits 2,100 LUTs
    target = load_target(_board(tmp_path, 1500))  # 1,050 LUTs
    with pytest.raises(InfeasibleDesignError, match=r"even fully folded.*LUT \(budget 1,050\).*layer \w+") as err:
        optimize(model, target, cost_model=cm)
    named = re.search(r"largest share is layer (\w+)", str(err.value)).group(1)
    assert fully_folded.totals["lut"] > 1050 and named in cm.layers


def test_auto_excludes_other_folding_sources():
    with pytest.raises(ConfigError, match="auto"):
        build_config(auto=True, target_fps=1000)
    assert build_config(auto=True).folding_mode == "auto"


def test_cli_auto_end_to_end(tiny_mlp_onnx, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["build", str(tiny_mlp_onnx), "--auto", "--out", str(out), "--samples", "10"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["folding"]["mode"] == "auto" and rep["fits"] is True
    assert (out / "finn" / "report" / "auto_folding_config.json").is_file()
    assert main(["build", str(tiny_mlp_onnx), "--auto", "--fps", "10", "--out", str(out)]) != 0
    board = _board(tmp_path, 400, "tiny-board")
    assert main(["build", str(tiny_mlp_onnx), "--auto", "-t", board, "--out", str(tmp_path / "x"), "--samples", "0"]) == 4
    assert "LUT" in capsys.readouterr().err
