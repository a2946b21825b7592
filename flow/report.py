"""The build report: report.json (a stable, documented schema) and report.md.

Schema (``schema_version`` 1)::

    model                 str     model name or file stem
    target                {name, part, clock_mhz}
    layers                [{name, op_type, pe, simd, cycles, lut, bram_18k, uram, dsp}]
    totals, budget        {lut, bram_18k, uram, dsp}   sum of layers (FINN's estimate) / target caps
    data_width_converters {count, totals: {lut, bram_18k, uram, dsp},
                           converters: [{after, before, in_width, out_width, lut, bram_18k, uram, dsp}]}
                                  the stream-width converters FINN inserts between layers, FINN's estimate
    fits                  bool    layers + converters within budget on every resource
    over_budget           [str]   resources over the caps
    max_cycles            int     cycles per frame of the slowest layer
    bottleneck            str     that layer
    throughput_fps        float   clock / max_cycles
    latency_us            float   critical-path cycles / clock
    accuracy              float | null   test accuracy, when the flow trained the model
    verification          {passed, stages: [{name, samples, passed, max_abs_err | label_match, ...}]} | null
    folding               {mode, target_fps, file, specialize_file}
    stage                 estimates | codegen | bitfile
    skipped               [str]   steps not run, with the reason
    timings_s             {step: seconds}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flow.estimate import Estimates
from flow.fileio import atomic_write_json, atomic_write_text

SCHEMA_VERSION = 1


@dataclass
class StageCheck:
    """One stage compared with its reference on the same inputs."""

    name: str
    reference: str
    samples: int
    passed: bool
    max_abs_err: float | None = None
    label_match: float | None = None
    bit_exact: bool | None = None
    first_mismatch: int | None = None
    note: str | None = None


@dataclass
class Verification:
    passed: bool
    stages: list[StageCheck] = field(default_factory=list)


def build_report(
    *,
    model_name: str,
    target,
    est: Estimates,
    folding: dict[str, Any],
    stage: str,
    accuracy: float | None = None,
    verification: Verification | None = None,
    skipped: list[str] | None = None,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict, in the documented schema."""
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model_name,
        "target": {"name": target.name, "part": target.part, "clock_mhz": target.clock_mhz},
        "layers": [asdict(layer) for layer in est.layers],
        "totals": est.totals,
        "data_width_converters": {"count": len(est.converters), "totals": est.converter_totals, "converters": [asdict(c) for c in est.converters]},
        "budget": est.budget,
        "fits": est.fits,
        "over_budget": est.over_budget,
        "max_cycles": est.max_cycles,
        "bottleneck": est.bottleneck,
        "throughput_fps": est.throughput_fps,
        "latency_us": est.latency_us,
        "accuracy": accuracy,
        "verification": asdict(verification) if verification is not None else None,
        "folding": folding,
        "stage": stage,
        "skipped": skipped or [],
        "timings_s": {k: round(v, 3) for k, v in (timings or {}).items()},
    }


def resources_used(report: dict[str, Any]) -> dict[str, float]:
    """Layers plus data-width converters per resource: what ``fits`` compares with the budget.

    >>> resources_used({"totals": {"lut": 100.0}, "data_width_converters": {"totals": {"lut": 8.0}}})
    {'lut': 108.0}
    """
    conv = (report.get("data_width_converters") or {}).get("totals") or {}
    return {k: float(v or 0) + float(conv.get(k) or 0) for k, v in (report.get("totals") or {}).items()}


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable summary of a report dict."""
    t = report["target"]
    lines = [
        f"# qflow report: {report['model']} on {t['name']} ({t['part']}, {t['clock_mhz']:g} MHz)",
        "",
        f"- Throughput: **{report['throughput_fps']:,.0f} FPS** (bottleneck {report['bottleneck']}, "
        f"{report['max_cycles']} cycles/frame); latency {report['latency_us']:.2f} us",
        f"- Fits the board's caps: **{'yes' if report['fits'] else 'no'}**"
        + (f" (over: {', '.join(report['over_budget'])})" if report["over_budget"] else ""),
    ]
    if report.get("accuracy") is not None:
        lines.append(f"- Test accuracy: **{100 * report['accuracy']:.2f}%**")
    v = report.get("verification")
    if v is not None:
        lines.append(f"- Verification: **{'passed' if v['passed'] else 'FAILED'}**")
    for s in report.get("skipped", []):
        lines.append(f"- Skipped: {s}")
    dwc = report.get("data_width_converters") or {"count": 0, "totals": {}}
    lines += ["", f"| resource | layers | data-width converters ({dwc['count']}) | budget | use |", "|---|---:|---:|---:|---:|"]
    for k, total in report["totals"].items():
        b, conv = report["budget"][k], dwc["totals"].get(k, 0.0)
        use = f"{100 * (total + conv) / b:.1f}%" if b else ("-" if total + conv == 0 else "over")
        lines.append(f"| {k} | {total:,.0f} | {conv:,.0f} | {b:,} | {use} |")
    lines += ["", "| layer | op | PE | SIMD | cycles | LUT | BRAM18 | URAM | DSP |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for layer in report["layers"]:
        mark = " **(bottleneck)**" if layer["name"] == report["bottleneck"] else ""
        lines.append(
            f"| {layer['name']}{mark} | {layer['op_type']} | {layer['pe'] or '-'} | {layer['simd'] or '-'} | "
            f"{layer['cycles']} | {layer['lut']:,.0f} | {layer['bram_18k']:g} | {layer['uram']:g} | {layer['dsp']:g} |"
        )
    if v is not None:
        lines += ["", "| stage | vs | samples | result | max abs err | label match |", "|---|---|---:|---|---:|---:|"]
        for s in v["stages"]:
            err = "-" if s["max_abs_err"] is None else f"{s['max_abs_err']:.3g}"
            lm = "-" if s["label_match"] is None else f"{100 * s['label_match']:.2f}%"
            res = "pass" + (" (bit-exact)" if s.get("bit_exact") else "") if s["passed"] else "FAIL"
            if s.get("first_mismatch") is not None:
                res += f", first mismatch at sample {s['first_mismatch']}"
            lines.append(f"| {s['name']} | {s['reference']} | {s['samples']} | {res} | {err} | {lm} |")
            if s.get("note"):
                lines.append(f"|  | | | {s['note']} | | |")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write report.md, report.html, then report.json, each atomically; report.json last marks completion."""
    from flow.report_html import render_html

    out = Path(out_dir)
    atomic_write_text(out / "report.md", render_markdown(report))
    atomic_write_text(out / "report.html", render_html(report))
    atomic_write_json(out / "report.json", report)
    return out / "report.json"
