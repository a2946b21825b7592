"""Each finn-rtllib workaround is still needed (Verilator 5.48 rejects the unfixed source) and works;
FINN still reports 0 LUT for the layers qflow counts itself."""

from __future__ import annotations

import pytest
import rtl_designs as designs
from qonnx.custom_op.registry import getCustomOp

from flow.compat import finn_rtl
from flow.compat.finn import finn_lut_blind
from flow.sim.rtlsim.cache import lint
from flow.sim.rtlsim.stitch import stitch


def test_fixes_rewrite_a_copy_and_leave_the_installed_file_alone():
    for rel, fix in (("fifo/hdl/fifo.sv", finn_rtl.fix_fifo), ("mvu/add_multi.sv", finn_rtl.fix_add_multi)):
        path = finn_rtl.finn_rtllib() / rel
        before = path.read_text()
        assert fix(before) != before
        assert finn_rtl.rtllib_text(path) == fix(before)
        assert finn_rtl.rtllib_text(path, apply_fixes=False) == before
        assert path.read_text() == before


def test_a_fix_refuses_a_source_it_does_not_recognise():
    with pytest.raises(finn_rtl.FixNotApplicable):
        finn_rtl.fix_fifo("module fifo; endmodule")
    with pytest.raises(finn_rtl.FixNotApplicable):
        finn_rtl.fix_add_multi("module add_multi; endmodule")


@pytest.mark.rtlsim
@pytest.mark.parametrize("maker, culprit", [(designs.fifo, "fifo.sv"), (designs.mvau, "add_multi.sv")])
def test_verilator_rejects_the_unfixed_source_and_accepts_the_fixed_one(tmp_path, maker, culprit):
    model = maker(tmp_path)
    ok, log = lint(stitch(model, apply_fixes=True))
    assert ok, log[-2000:]
    ok, log = lint(stitch(model, apply_fixes=False))
    assert not ok
    assert culprit in log


def test_finn_still_reports_zero_luts_for_layers_with_logic(tmp_path):
    """MVAU_rtl's own estimate is 0; Pool_hls and FMPadding_rtl have none (HWCustomOp's default 0)."""
    model = designs.mvau(tmp_path)
    inst = getCustomOp(model.graph.node[0])
    assert inst.lut_estimation("xc7z020clg400-1") == 0 and finn_lut_blind(inst)
    pad = getCustomOp(designs.fmpadding(tmp_path).graph.node[0])
    assert pad.lut_estimation("xc7z020clg400-1") == 0 and finn_lut_blind(pad)
    from finn.custom_op.fpgadataflow.hls.pool_hls import Pool_hls
    from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp

    assert Pool_hls.lut_estimation is HWCustomOp.lut_estimation
    thr = getCustomOp(designs.thresholding(tmp_path).graph.node[0])  # FINN estimates this one
    assert not finn_lut_blind(thr)
