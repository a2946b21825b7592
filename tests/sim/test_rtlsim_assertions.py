"""A model that stops on a SystemVerilog assertion is reported as that assertion, with its layer."""

from __future__ import annotations

from flow.sim.rtlsim.simulate import assertion_failure

OUTPUT = """[0] -Info: mvu_vvu_axi.sv:314: TOP.qf_top.VVAU_rtl_0_i.inst.blkDsp.genINT8: Sidestepping to INT8 mode of DSP58 for 2x2.
[0] %Error: mvu_vvu_axi.sv:376: Assertion failed in TOP.qf_top.MVAU_rtl_0_i.inst.blkOutput.unnamedblk2: TOP.qf_top.MVAU_rtl_0_i.inst.blkOutput.unnamedblk2: Overflowing output queue.
%Error: /cache/.build-cf6b/src/mvu_vvu_axi.sv:376: Verilog $stop
Aborting..."""


def test_a_verilator_assertion_names_its_layer_source_and_message():
    assert assertion_failure(OUTPUT) == ("MVAU_rtl_0", "RTL assertion in MVAU_rtl_0 (mvu_vvu_axi.sv:376): Overflowing output queue")


def test_an_assertion_outside_a_layer_names_its_instance_path():
    layer, text = assertion_failure("%Error: top.sv:9: Assertion failed in TOP.qf_top.glue: broken")
    assert layer is None and text == "RTL assertion in TOP.qf_top.glue (top.sv:9): broken"


def test_other_output_is_not_an_assertion():
    assert assertion_failure("%Error: fifo.sv:62: DEPTH of 1 must be 2 or above.") is None
    assert assertion_failure("") is None
