"""Cell texts shared by report.md and report.html: LUT counts with their basis, measured cycles, chains.

A LUT count that is not FINN's carries a mark (``*`` qflow's count calibrated on Yosys,
``**`` qflow's structural count, ``n/e`` not estimated by anyone), explained by
:data:`LUT_LEGEND`; measured cycles sit next to FINN's estimate.
"""

from __future__ import annotations

from flow.core.estimates import LayerEstimate
from flow.report.schema import Report

LUT_MARKS = {"finn": "", "qflow-yosys-fit": "*", "qflow-structural": "**"}
LUT_LEGEND = ("LUT: FINN's estimate unless marked. * qflow's count where FINN says 0, fitted to Yosys synth_xilinx on the generated RTL; "
              "** qflow's structural count, not calibrated (no open synthesis of that layer); n/e: FINN has no estimate and neither has qflow.")
CHAIN_HEAD = ("chain", "nodes (FIFOs, converters)", "cycles/frame (RTL sim)", "FINN max cycles", "latency (cycles)",
              "FIFO depth: deep -> sized", "same rate", "back-pressure", "result")


def lut_cell(layer: LayerEstimate) -> str:
    if layer.lut_basis == "none":
        return "n/e"
    return f"{layer.lut:,.0f}{LUT_MARKS.get(layer.lut_basis, '?')}"


def sim_cell(layer: LayerEstimate) -> str:
    return "-" if layer.sim_cycles is None else f"{layer.sim_cycles:,.4g}"


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "no"


def chain_rows(report: Report) -> list[tuple[str, ...]]:
    """One row per simulated chain, in :data:`CHAIN_HEAD` order."""
    rows = []
    for c in report.rtlsim.chains if report.rtlsim else []:
        cpf = "-" if c.cycles_per_frame is None else f"{c.cycles_per_frame:,.4g}"
        sized = "-" if c.fifo_depth_sized is None else f"{c.fifo_depth_sized:,}"
        result = ("pass (bit-exact)" if c.passed else f"FAIL ({c.status})") + (f"; {c.note}" if c.note else "")
        rows.append((c.name, f"{c.nodes} ({c.fifos}, {c.dwcs})", cpf, "-" if c.exp_cycles is None else f"{c.exp_cycles:,}",
                     "-" if c.latency is None else f"{c.latency:,}", f"{c.fifo_depth_deep:,} -> {sized}", _yes(c.rate_kept),
                     _yes(c.backpressure_bit_exact), result))
    return rows


def unsimulated(report: Report) -> list[str]:
    """``layer: reason`` for every layer RTL simulation did not measure (when it ran)."""
    if report.rtlsim is None:
        return []
    return [f"{layer.name}: {layer.sim_note}" for layer in report.layers if layer.sim_cycles is None and layer.sim_note]
