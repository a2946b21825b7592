"""Every RTL layer kind FINN generates simulates bit-exact against its Python execution, near FINN's cycles."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import rtl_designs as designs
from finn.core.onnx_exec import execute_onnx
from qonnx.custom_op.registry import getCustomOp

from flow.sim.execute import execute_batched
from flow.sim.rtlsim.run import exp_cycles, simulate
from flow.sim.rtlsim.simulate import Drive

P = designs.PARTS
KINDS = {
    "Thresholding_rtl": (designs.thresholding, {}),
    "FMPadding_rtl": (designs.fmpadding, {}),
    "StreamingDataWidthConverter_rtl": (designs.dwc, {}),
    "StreamingFIFO_rtl": (designs.fifo, {}),
    "ConvolutionInputGenerator_rtl-default": (designs.swg, {}),
    "ConvolutionInputGenerator_rtl-depthwise-stride2": (designs.swg, {"depthwise": 1, "stride": 2}),
    "ConvolutionInputGenerator_rtl-parallel-window": (designs.swg, {"parallel": 1, "SIMD": 4}),
    "MVAU_rtl-DSP48E1": (designs.mvau, {"part": P["DSP48E1"]}),
    "MVAU_rtl-DSP48E2": (designs.mvau, {"part": P["DSP48E2"]}),
    "MVAU_rtl-DSP58": (designs.mvau, {"part": P["DSP58"]}),
    "VVAU_rtl-DSP58": (designs.vvau, {}),
}

pytestmark = [pytest.mark.rtlsim, pytest.mark.slow]


@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_kind_is_bit_exact_at_about_finns_cycles(tmp_path, kind):
    maker, kw = KINDS[kind]
    model = maker(tmp_path, **kw)
    assert model.graph.node[0].op_type == kind.split("-")[0]  # FINN's rules allowed the RTL variant
    batch = designs.random_batch(model, 4)
    res = simulate(model, batch, designs.python_outputs(model, batch))
    assert res.status == "ok"
    assert res.bit_exact, res.describe()
    expected = exp_cycles(model.graph.node)[0]
    if expected:  # FINN gives 0 for converters and FIFOs
        assert abs(res.cycles_per_frame - expected) <= 0.1 * expected + 2


def test_random_back_pressure_changes_the_timing_not_the_data(tmp_path):
    model = designs.mvau(tmp_path)
    batch = designs.random_batch(model, 4)
    want = designs.python_outputs(model, batch)
    free = simulate(model, batch, want)
    stalled = simulate(model, batch, want, drive=Drive(pin=60, pout=40, seed=3))
    assert free.bit_exact and stalled.bit_exact
    assert stalled.total_cycles > free.total_cycles


def test_a_second_build_comes_from_the_cache(tmp_path):
    model = designs.thresholding(tmp_path)
    batch = designs.random_batch(model, 2)
    simulate(model, batch)
    again = simulate(model, batch)
    assert again.cached and again.verilate_seconds == 0.0


@pytest.mark.parametrize("simd", [1, 2, 4])
def test_stream_order_of_a_depthwise_window_generator_is_finns(tmp_path, simd):
    """Python's plain im2col order, interleaved by SIMD, is what FINN's own model of the RTL SWG outputs."""
    model = designs.swg(tmp_path, depthwise=1, stride=2, SIMD=simd)
    batch = designs.random_batch(model, 2)
    ours = designs.python_outputs(model, batch)["y"]
    finn_model = copy.deepcopy(model)
    getCustomOp(finn_model.graph.node[0]).set_nodeattr("exec_mode", "cppsim")
    finns = np.concatenate([execute_onnx(finn_model, {"x": x[None]})["y"] for x in batch["x"]])
    assert np.array_equal(ours, finns)
    if simd < 4:
        assert not np.array_equal(ours, execute_batched(model, batch)["y"])  # the plain order differs
