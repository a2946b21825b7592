"""The cost model agrees exactly with FINN's analyses on random legal foldings.

Property test (numpy RNG, fixed seeds): random PE/SIMD divisors and implementation
choices (HLS/RTL variant, memory, multipliers) per layer, applied with FINN
(re-specialization, ApplyConfig, step_minimize_bit_width, as the flow does), then FINN's
res_estimation/exp_cycles_per_layer and flow.fold.estimate compared with CostModel.estimate per
layer and in total, and the data-width converters FINN's InsertDWC adds compared with the
cost model's.
"""

from __future__ import annotations

import copy
from functools import partial

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.builder.pipeline import build
from flow.compat import finn as _finn_compat
from flow.core.config import build_config
from flow.core.errors import FoldingError
from flow.fold.converters import finn_dwcs
from flow.fold.cost_model import RESOURCES, CostModel, random_folding
from flow.fold.estimate import estimate
from flow.fold.lut_model import qflow_resources
from flow.fold.rules import check_folding_rules
from flow.nn.export import export_qonnx
from hw_targets import load_target
from models import build_model

_KEYS = ("LUT", "BRAM_18K", "URAM", "DSP")



def _specialized(onnx, target, out):
    r = build(onnx, build_config(target=target, verify_samples=0), out)
    return ModelWrapper(str(r.checkpoints["specialize_layers"]))


@pytest.fixture(scope="module")
def networks(tmp_path_factory, tiny_mlp_onnx, tiny_cnn_onnx, residual_specialized):
    tmp = tmp_path_factory.mktemp("costmodel")
    nets = {"tiny_mlp": (tiny_mlp_onnx, "pynq-z1"), "tiny_cnn": (tiny_cnn_onnx, "zcu104")}
    for name, (kind, w, a, target) in {"tfc_w1a1": ("tfc", 1, 1, "pynq-z1"), "cnv_w1a1": ("cnv", 1, 1, "zcu104")}.items():
        m = build_model(kind, weight_bits=w, act_bits=a)
        export_qonnx(m, tmp / f"{name}.onnx", m.input_shape)
        nets[name] = (tmp / f"{name}.onnx", target)
    built = {k: (_specialized(p, t, tmp / k), load_target(t)) for k, (p, t) in nets.items()}
    return built | {"residual": (residual_specialized, load_target("pynq-z1"))}


def _finn_apply(model: ModelWrapper, folding: dict, part: str, tmp_path) -> tuple[ModelWrapper, dict[str, str]]:
    """FINN's result for ``folding``: re-specialized where it picks other variants, folded, minimized."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    from flow.fold.specialize import apply_folding

    cfg = DataflowBuildConfig(output_dir=str(tmp_path / "finn"), fpga_part=part, generate_outputs=[])
    m, rename = apply_folding(ModelWrapper(copy.deepcopy(model.model)), folding, cfg, tmp_path / "folding.json")
    return _finn_compat.build_steps().step_minimize_bit_width(m, cfg), rename


@pytest.mark.parametrize("net,trials", [("tiny_mlp", 20), ("tiny_cnn", 20), ("tfc_w1a1", 12), ("cnv_w1a1", 10), ("residual", 8)])
def test_cost_model_matches_finn_exactly(networks, net, trials, tmp_path):
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation

    model, target = networks[net]
    cm = CostModel(model, target.part)
    rng = np.random.default_rng(sum(map(ord, net)))
    for trial in range(trials):
        folding = random_folding(cm, rng)
        pred = cm.estimate(folding)
        finn_model, rename = _finn_apply(model, folding, target.part, tmp_path)
        res = finn_model.analysis(partial(res_estimation, fpgapart=target.part))
        cycles = finn_model.analysis(exp_cycles_per_layer)
        counted = {rename[n] for n in cm.layers if cm.op_types[n].endswith(("_hls", "_rtl"))}
        assert set(res) == counted  # FINN's analyses skip layers it has not specialized yet (a Shuffle)
        for name in cm.layers:
            got, new = pred.layers[name], rename[name]
            inst = getCustomOp(finn_model.get_node_from_name(new))
            want = (cycles.get(new, inst.get_nodeattr("cycles_estimate")), *qflow_resources(inst, res.get(new, {})))
            assert (got.cycles, *got.resources()) == want, (net, trial, name, folding[name])
        est = estimate(finn_model, target)
        assert est.max_cycles == pred.max_cycles
        assert {k: est.totals[k] for k in RESOURCES} == pred.totals
        # the data-width converters FINN's InsertDWC adds, and FINN's price for each
        finn_dwc = {f"{c.after}->{c.before}": c.resources() for c in finn_dwcs(finn_model, target.part)}
        assert {"->".join(rename[x] for x in k.split("->")): v for k, v in pred.dwc.items()} == finn_dwc


def test_converters_between_mismatched_streams(networks, tmp_path):
    model, target = networks["tfc_w1a1"]
    cm = CostModel(model, target.part)
    mvaus = [n for n in cm.layers if n.startswith("MVAU")]
    matched = {"Defaults": {}, mvaus[0]: {"PE": 16}, mvaus[1]: {"SIMD": 16}}
    mismatched = {"Defaults": {}, mvaus[0]: {"PE": 16}, mvaus[1]: {"SIMD": 8}, mvaus[2]: {"SIMD": 32}}
    assert f"{mvaus[0]}->{mvaus[1]}" not in cm.estimate(matched).dwc
    pred = cm.estimate(mismatched)
    assert {f"{mvaus[0]}->{mvaus[1]}", f"{mvaus[1]}->{mvaus[2]}"} <= set(pred.dwc)
    finn_model, _ = _finn_apply(model, mismatched, target.part, tmp_path)
    assert pred.dwc == {f"{c.after}->{c.before}": c.resources() for c in finn_dwcs(finn_model, target.part)}
    assert pred.dwc_totals["lut"] > 0
    budget = {k: pred.totals[k] + pred.dwc_totals[k] for k in RESOURCES}
    assert pred.fits(budget) and not pred.fits({**budget, "lut": pred.totals["lut"]}) and pred.fits({**budget, "lut": pred.totals["lut"]}, with_dwc=False)


@pytest.mark.parametrize("net", ["tiny_cnn", "cnv_w1a1", "residual"])
def test_cost_model_matches_finn_on_setfolding_results(networks, net, tmp_path):
    """SetFolding's foldings (parallel_window, coupled SWGs) are priced exactly too."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    from flow.fold.rules import extract_folding

    model, target = networks[net]
    cm = CostModel(model, target.part)
    for cycles in (50, 2_000, 100_000):
        folded = ModelWrapper(copy.deepcopy(model.model)).transform(SetFolding(cycles))
        folding = extract_folding(folded)
        est = estimate(_finn_apply(model, folding, target.part, tmp_path)[0], target)
        pred = cm.estimate(folding)
        assert (pred.max_cycles, pred.totals) == (est.max_cycles, {k: est.totals[k] for k in RESOURCES})


def test_runtime_writeable_ultra_variant_uses_finn_minimized_datatypes(networks, tmp_path):
    model, target = networks["cnv_w1a1"]
    cm = CostModel(model, target.part)
    folding = {"MVAU_hls_1": {"PE": 4, "SIMD": 32, "ram_style": "ultra", "runtime_writeable_weights": 1, "mem_mode": "internal_decoupled"}}
    pred = cm.estimate(folding).layers["MVAU_hls_1"]
    m, _ = _finn_apply(model, folding, target.part, tmp_path)
    node = m.get_node_from_name("MVAU_hls_1")
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(node)
    assert inst.get_nodeattr("accDataType") != cm._base["MVAU_hls_1"]["accDataType"]  # widened by FINN
    r = inst.node_res_estimation(target.part)
    assert (pred.lut, pred.uram) == (r["LUT"], r["URAM"]) and pred.uram > 0


def test_illegal_folding_is_rejected_like_flow_rules(networks):
    model, target = networks["tiny_mlp"]
    cm = CostModel(model, target.part)
    name = next(n for n in cm.layers if n.startswith("MVAU"))
    mh = cm._inst[name].get_nodeattr("MH")
    bad = next(p for p in range(2, mh) if mh % p)
    with pytest.raises(FoldingError, match=name):
        cm.layer_cost(name, {"PE": bad})
    m = ModelWrapper(copy.deepcopy(model.model))
    from qonnx.custom_op.registry import getCustomOp

    getCustomOp(m.get_node_from_name(name)).set_nodeattr("PE", bad)
    with pytest.raises(FoldingError, match=name):
        check_folding_rules(m)


def test_estimates_are_memoized(networks):
    model, target = networks["tfc_w1a1"]
    cm = CostModel(model, target.part)
    folding = {"MVAU_hls_0": {"PE": 16, "SIMD": 49}}
    first = cm.estimate(folding)
    n = cm.evaluations
    assert cm.estimate(folding) == first and cm.evaluations == n


def test_module_docstrings_run():
    import doctest

    import flow.fold.converters
    import flow.fold.specialize
    import flow.fold.cost_model
    import flow.fold.dims
    import flow.fold.optimizer
    import flow.fold.program
    import flow.fold.select

    mods = (flow.fold.cost_model, flow.fold.dims, flow.fold.optimizer, flow.fold.program, flow.fold.select, flow.fold.converters, flow.fold.specialize)
    for mod in mods:
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0, mod.__name__
