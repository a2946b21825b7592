"""finn-rtllib's MVU output queue overflows under back-pressure exactly where qflow's rule says so,
and qflow's fold step then builds that layer as HLS."""

from __future__ import annotations

import json

import pytest
import rtl_designs as designs
from qonnx.custom_op.registry import getCustomOp

from flow.compat.finn_mvu import queue_depths, queue_overflow
from flow.core.vocab import IMPL_ATTR
from flow.fold.cost_model import CostModel
from flow.fold.step import RTL_TO_HLS_PROP, avoid_mvu_queue_overflow
from flow.sim.rtlsim.run import simulate
from flow.sim.rtlsim.simulate import Drive, SimulationError

P = designs.PARTS
#: (DSP block, SIMD, MW): two that overflow (outputs back to back) and two just inside the rule.
CASES = [("DSP58", 9, 9, True), ("DSP48E1", 8, 8, True), ("DSP58", 9, 36, False), ("DSP58", 4, 8, False)]


def test_the_rule_counts_results_in_flight_against_queue_entries():
    # DSP58 soft-vector core, SIMD 9: an 8-deep pipeline behind a 4-entry queue
    assert queue_depths(version=3, simd=9, mw=9, weight_bits=2, act_bits=4, narrow=False, segmentlen=3) == (10, 4)
    assert queue_depths(version=3, simd=9, mw=36, weight_bits=2, act_bits=4, narrow=False, segmentlen=3) == (3, 4)
    # the DSP58 INT8 core (few lanes: wide operands) is outside the rule
    assert queue_depths(version=3, simd=9, mw=9, weight_bits=8, act_bits=8, narrow=False, segmentlen=3) is None


@pytest.mark.rtlsim
@pytest.mark.parametrize("block, simd, mw, overflows", CASES, ids=[f"{b}-SIMD{s}-MW{m}" for b, s, m, _ in CASES])
def test_the_queue_overflows_under_output_stalls_exactly_when_the_rule_says(tmp_path, block, simd, mw, overflows):
    model = designs.mvau(tmp_path, MW=mw, MH=8, SIMD=simd, PE=4, vectors=(1, 16), part=P[block])
    node = model.graph.node[0]
    assert node.op_type == "MVAU_rtl"
    assert bool(queue_overflow(model, node, P[block], designs.CLK_NS)) == overflows
    batch = designs.random_batch(model, 8)
    want = designs.python_outputs(model, batch)
    stalls = Drive(pout=20, seed=1)
    if overflows:
        with pytest.raises(SimulationError, match="RTL assertion in MVAU_rtl_0 .*Overflowing output queue") as e:
            simulate(model, batch, {"y": want["y"]}, drive=stalls)
        assert e.value.layer == "MVAU_rtl_0"
    else:
        assert simulate(model, batch, {"y": want["y"]}, drive=stalls).bit_exact
    assert simulate(model, batch, {"y": want["y"]}).bit_exact  # no stalls: no back-pressure, no loss


def test_the_fold_step_builds_an_overflowing_mvau_as_hls_with_its_folding(tmp_path):
    model = designs.mvau(tmp_path, MW=9, MH=8, SIMD=9, PE=4, vectors=(1, 16), part=P["DSP58"])
    fixed = avoid_mvu_queue_overflow(model, P["DSP58"], designs.CLK_NS)
    [node] = fixed.graph.node
    assert node.op_type == "MVAU_hls"
    assert (getCustomOp(node).get_nodeattr("PE"), getCustomOp(node).get_nodeattr("SIMD")) == (4, 9)
    assert "overflows under back-pressure" in json.loads(fixed.get_metadata_prop(RTL_TO_HLS_PROP))[node.name]
    safe = designs.mvau(tmp_path / "safe", MW=36, MH=8, SIMD=9, PE=4, vectors=(1, 16), part=P["DSP58"])
    assert avoid_mvu_queue_overflow(safe, P["DSP58"], designs.CLK_NS).graph.node[0].op_type == "MVAU_rtl"


def test_the_cost_model_refuses_an_rtl_folding_that_overflows(tmp_path):
    """``--auto`` never plans what the fold step would have to move: the RTL variant is illegal at
    SIMD = MW (outputs back to back) and legal at SIMD 1; the HLS variant is legal at both."""
    model = designs.mvau(tmp_path, MW=9, MH=8, SIMD=9, PE=4, vectors=(1, 16), part=P["DSP58"])
    cm = CostModel(model, P["DSP58"], clk_ns=designs.CLK_NS)
    [name] = cm.layers
    assert set(cm.variants(name)) == {"rtl", "hls"}
    assert not cm.is_legal(name, {"PE": 4, "SIMD": 9, IMPL_ATTR: "rtl"})
    assert cm.is_legal(name, {"PE": 4, "SIMD": 1, IMPL_ATTR: "rtl"})
    assert cm.is_legal(name, {"PE": 4, "SIMD": 9, IMPL_ATTR: "hls"})
