"""Stitched chains and FIFO sizing: a residual block (the shape where FIFO depth decides whether data
moves at all) with very deep FIFOs, sized from simulated peaks, and too shallow."""

from __future__ import annotations

import pytest
import rtl_designs as designs

from flow.sim.execute import execute_batched
from flow.sim.rtlsim.chains import deep_config, find_chains, with_fifos
from flow.sim.rtlsim.design import simulate_design, stage_check
from flow.sim.rtlsim.layers import generate_hdl
from flow.sim.rtlsim.run import simulate, subgraph

pytestmark = [pytest.mark.rtlsim, pytest.mark.slow]
PART = designs.PARTS["DSP48E1"]


@pytest.fixture(scope="module")
def residual(tmp_path_factory):
    model = designs.residual()
    batch = designs.random_batch(model, 4)
    tensors = [t for n in model.graph.node for t in [*n.input, *n.output] if t and model.get_initializer(t) is None]
    reference = execute_batched(model, batch, outputs=tensors)
    build = tmp_path_factory.mktemp("residual")
    sim = simulate_design(model, reference, part=PART, clk_ns=designs.CLK_NS, build_dir=build, forks=True)
    return model, reference, build, sim


def test_residual_layers_are_bit_exact_alone_and_the_fork_is_named(residual):
    _, _, _, sim = residual
    by_op = {r.op_type: r for r in sim.layers}
    for op in ("MVAU_rtl", "Thresholding_rtl", "ElementwiseAdd_rtl"):
        assert by_op[op].bit_exact and by_op[op].cycles_per_frame, by_op[op]
    assert not by_op["DuplicateStreams_hls"].simulated and "HLS" in by_op["DuplicateStreams_hls"].note


def test_sized_fifos_keep_the_deep_chains_rate_without_deadlock(residual):
    _, _, _, sim = residual
    [chain] = sim.chains
    assert chain.status == "ok" and chain.bit_exact and chain.backpressure_bit_exact
    assert chain.deep_cycles_per_frame == chain.cycles_per_frame == chain.exp_cycles  # 256: the MVAU's rate
    assert chain.rate_kept
    assert chain.fifo_depth_sized < chain.fifo_depth_deep / 20
    shortcut = max(chain.fifo_peaks, key=chain.fifo_peaks.get)  # the identity branch waits for a whole vector
    assert chain.fifo_peaks[shortcut] >= 32
    assert sim.fifo_config["ElementwiseAdd_rtl_0"]["inFIFODepths"][0] == chain.fifo_depths[shortcut]
    check = stage_check(sim)
    assert check.passed and check.bit_exact and check.name == "rtlsim"


def test_too_shallow_fifos_deadlock_and_the_run_stops(residual):
    model, reference, build, _ = residual
    shallow = with_fifos(model, PART, {k: {"inFIFODepths": [2, 2], "outFIFODepths": [2, 2]} for k in deep_config(model)})
    [nodes] = find_chains(shallow, lambda n: n.op_type.endswith("_rtl") or n.op_type.startswith("DuplicateStreams"))
    sub = generate_hdl(subgraph(shallow, nodes), PART, designs.CLK_NS, build)
    res = simulate(sub, {"x": reference["x"]}, {"y": reference["y"]})
    assert res.status == "deadlock"
    assert not res.bit_exact
    assert res.transfers["out0_V(y)"] == 0
    assert "deadlock" in res.describe()
