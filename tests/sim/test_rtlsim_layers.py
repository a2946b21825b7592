"""Every RTL layer kind FINN generates simulates bit-exact against its Python execution, near FINN's cycles."""

from __future__ import annotations

import pytest
import rtl_designs as designs

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
