"""The RTL simulation's report section (report.json's ``rtlsim``) and how the reports show it.

:class:`RtlsimReport` is what ``--rtlsim`` simulated and measured (from a
:class:`~flow.sim.rtlsim.design.DesignSim`); :class:`RtlsimView` is its
:class:`~flow.verifiers.section.SectionView`: a paragraph and a table of chains in report.md
and report.html, a headline card, a column of measured cycles in the layer table, and a part
of the summary line.

>>> s = RtlsimReport(simulator="Verilator 5.048", samples=4, passed=True, skipped=True, layers_hw=2, layers_rtl=0,
...                  layers_simulated=0, chains=[])
>>> RtlsimView().summary(s)
'(RTL simulation skipped: none of the 2 layers is an RTL layer; --prefer-rtl, --standalone-thresholds give RTL layers)'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from html import escape

from pydantic import BaseModel, ConfigDict, Field

from flow.core.estimates import LayerEstimate
from flow.sim.rtlsim.design import NO_RTL_HINT, DesignSim
from flow.sim.rtlsim.toolchain import find_verilator
from flow.verifiers.section import Card, LayerColumn, SectionView

CHAIN_HEAD = ("chain", "nodes (FIFOs, converters)", "cycles/frame (RTL sim)", "FINN max cycles", "latency (cycles)",
              "FIFO depth: deep -> sized", "same rate", "back-pressure", "result")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainReport(_Strict):
    """One chain of RTL layers simulated as one stitched design."""

    name: str
    layers: list[str]
    nodes: int
    fifos: int
    dwcs: int
    status: str
    passed: bool
    bit_exact: bool
    cycles_per_frame: float | None = None
    latency: int | None = None
    exp_cycles: int | None = None
    deep_cycles_per_frame: float | None = None
    deep_latency: int | None = None
    fifo_depth_deep: int = 0
    fifo_depth_sized: int | None = None
    fifo_depths: dict[str, int] = Field(default_factory=dict)
    fifo_peaks: dict[str, int] = Field(default_factory=dict)
    rate_kept: bool | None = None
    backpressure_bit_exact: bool | None = None
    note: str | None = None


class RtlsimReport(_Strict):
    """What ``--rtlsim`` simulated and measured."""

    simulator: str
    samples: int
    passed: bool
    skipped: bool = False
    layers_hw: int
    layers_rtl: int
    layers_simulated: int
    chains: list[ChainReport]
    fifo_depths_file: str | None = None
    verilate_s: float = 0.0
    simulate_s: float = 0.0

    @classmethod
    def of(cls, sim: DesignSim) -> RtlsimReport:
        chains = [ChainReport(**{k: getattr(c, k) for k in ChainReport.model_fields if k != "passed"}, passed=c.passed) for c in sim.chains]
        return cls(simulator=f"Verilator {find_verilator().version}", samples=sim.samples, passed=sim.passed,
                   skipped=not sim.chains and not any(r.simulated for r in sim.layers), layers_hw=len(sim.layers),
                   layers_rtl=sum(r.op_type.endswith("_rtl") for r in sim.layers), layers_simulated=sum(r.simulated for r in sim.layers),
                   chains=chains, fifo_depths_file="fifo_depths.json", verilate_s=sim.seconds.get("verilate", 0.0),
                   simulate_s=sim.seconds.get("simulate", 0.0))


def with_sim_cycles(layers: list[LayerEstimate], sim: DesignSim) -> list[LayerEstimate]:
    """``layers`` with the cycles per frame each one measured alone in RTL simulation (or why not)."""
    by_name = {r.layer: r for r in sim.layers}
    out = []
    for layer in layers:
        r = by_name.get(layer.name)
        if r is None:
            out.append(layer)
            continue
        note = r.note if r.note or r.cycles_per_frame is not None else "no cycles measured"
        out.append(dataclasses.replace(layer, sim_cycles=r.cycles_per_frame, sim_note=note))
    return out


def sim_cell(layer: LayerEstimate) -> str:
    return "-" if layer.sim_cycles is None else f"{layer.sim_cycles:,.4g}"


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "no"


def chain_rows(s: RtlsimReport) -> list[tuple[str, ...]]:
    """One row per simulated chain, in :data:`CHAIN_HEAD` order."""
    rows = []
    for c in s.chains:
        cpf = "-" if c.cycles_per_frame is None else f"{c.cycles_per_frame:,.4g}"
        sized = "-" if c.fifo_depth_sized is None else f"{c.fifo_depth_sized:,}"
        result = ("pass (bit-exact)" if c.passed else f"FAIL ({c.status})") + (f"; {c.note}" if c.note else "")
        rows.append((c.name, f"{c.nodes} ({c.fifos}, {c.dwcs})", cpf, "-" if c.exp_cycles is None else f"{c.exp_cycles:,}",
                     "-" if c.latency is None else f"{c.latency:,}", f"{c.fifo_depth_deep:,} -> {sized}", _yes(c.rate_kept),
                     _yes(c.backpressure_bit_exact), result))
    return rows


def unsimulated(layers: Sequence[LayerEstimate]) -> list[str]:
    """``layer: reason`` for every layer RTL simulation did not measure."""
    return [f"{layer.name}: {layer.sim_note}" for layer in layers if layer.sim_cycles is None and layer.sim_note]


def _e(x: object) -> str:
    return escape("" if x is None else str(x))


class RtlsimView(SectionView):
    """report.json's ``rtlsim`` and its parts of report.md, report.html and the summary line."""

    name = "rtlsim"
    report_key = "rtlsim"
    title = "RTL simulation"

    def section(self, result: object) -> RtlsimReport | None:
        return RtlsimReport.of(result) if isinstance(result, DesignSim) else None

    def annotate_layers(self, layers: list[LayerEstimate], result: object) -> list[LayerEstimate]:
        return with_sim_cycles(layers, result) if isinstance(result, DesignSim) else layers

    def markdown(self, s: RtlsimReport, layers: Sequence[LayerEstimate]) -> list[str]:
        if s.skipped:
            return ["", f"RTL simulation ({s.simulator}): **skipped**, none of the {s.layers_hw} layers is an RTL layer; {NO_RTL_HINT}."]
        lines = ["", f"RTL simulation ({s.simulator}, {s.samples} frames back to back): {s.layers_simulated} of {s.layers_hw} layers "
                 f"simulated alone, **{'passed' if s.passed else 'FAILED'}**; FIFO depths sized by simulation in {s.fifo_depths_file}."]
        lines += [f"- not simulated: {u}" for u in unsimulated(layers)]
        rows = chain_rows(s)
        if rows:
            lines += ["", "| " + " | ".join(CHAIN_HEAD) + " |", "|---|" + "---:|" * (len(CHAIN_HEAD) - 2) + "---|"]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines

    def html(self, s: RtlsimReport | None, layers: Sequence[LayerEstimate]) -> str:
        if s is None:
            return '<p class="muted">RTL simulation: not run (<code>qflow build --rtlsim</code>).</p>'
        if s.skipped:
            return f'<p>{_e(s.simulator)}: <b>skipped</b>, none of the {s.layers_hw} layers is an RTL layer; {_e(NO_RTL_HINT)}.</p>'
        verdict = '<span class="pass">passed</span>' if s.passed else '<span class="fail">FAILED</span>'
        out = (f"<p>{_e(s.simulator)}, {s.samples} frames back to back: {s.layers_simulated} of {s.layers_hw} layers simulated alone, "
               f"{verdict}; FIFO depths sized by simulation in <code>{_e(s.fifo_depths_file)}</code>.</p>")
        missing = unsimulated(layers)
        if missing:
            out += "<p>Not simulated:</p><ul>" + "".join(f"<li>{_e(m)}</li>" for m in missing) + "</ul>"
        rows = chain_rows(s)
        if rows:
            num = lambda i, n: " class=n" if 0 < i < n - 1 else ""  # noqa: E731
            head = "<tr>" + "".join(f"<th{num(i, len(CHAIN_HEAD))}>{_e(h)}</th>" for i, h in enumerate(CHAIN_HEAD)) + "</tr>"
            body = "".join("<tr>" + "".join(f"<td{num(i, len(row))}>{_e(v)}</td>" for i, v in enumerate(row)) + "</tr>" for row in rows)
            out += f"<table>{head}{body}</table>"
        return out

    def card(self, s: RtlsimReport) -> Card:
        if s.skipped:
            return Card("RTL simulation", "skipped", f"no RTL layer among {s.layers_hw}", "na")
        rates = ", ".join(f"{c.cycles_per_frame:,.4g}" for c in s.chains if c.cycles_per_frame is not None)
        detail = f"{s.layers_simulated} of {s.layers_hw} layers" + (f"; chains at {rates} cycles/frame" if rates else "")
        return Card("RTL simulation", "bit-exact" if s.passed else "FAILED", detail, "ok" if s.passed else "bad")

    def layer_column(self, s: RtlsimReport) -> LayerColumn:
        return LayerColumn("cycles (RTL sim)", sim_cell, lambda layer: layer.sim_note or "")

    def summary(self, s: RtlsimReport) -> str:
        if s.skipped:
            return (f"(RTL simulation skipped: none of the {s.layers_hw} layers is an RTL layer; "
                    "--prefer-rtl, --standalone-thresholds give RTL layers)")
        chains = ", ".join(f"{c.cycles_per_frame:g}" for c in s.chains if c.cycles_per_frame is not None)
        return f"(RTL: {s.layers_simulated}/{s.layers_hw} layers" + (f", chains at {chains} cycles/frame)" if chains else ")")
