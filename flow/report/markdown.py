"""report.md: a human-readable summary of a :class:`~flow.report.schema.Report`."""

from __future__ import annotations

from flow.report.cells import (
    FF_NOTE,
    LUT_LEGEND,
    bottleneck_names,
    bottleneck_text,
    cap_text,
    lut_cell,
    resource_rows,
    use_text,
)
from flow.report.schema import Report
from flow.report.sections import known_sections, layer_columns, markdown_rows, other_sections


def _stage_rows(report: Report) -> list[str]:
    v = report.verification
    if v is None:
        return []
    lines = ["", "| stage | vs | samples | result | max abs err | label match |", "|---|---|---:|---|---:|---:|"]
    for s in v.stages:
        err = "-" if s.max_abs_err is None else f"{s.max_abs_err:.3g}"
        lm = "-" if s.label_match is None else f"{100 * s.label_match:.2f}%"
        res = "skipped" if s.skipped else ("pass" + (" (bit-exact)" if s.bit_exact else "")) if s.passed else "FAIL"
        if s.first_mismatch is not None:
            res += f", first mismatch at sample {s.first_mismatch}" + (f" in {s.layer}" if s.layer else "")
        if s.ties:
            res += f", {s.ties} tied reference sample(s)"
        lines.append(f"| {s.name} | {s.reference} | {s.samples} | {res} | {err} | {lm} |")
        if s.note:
            lines.append(f"|  | | | {s.note} | | |")
    return lines


def render_markdown(report: Report) -> str:
    """The report as Markdown: headline numbers, resources against the caps, layers, verification."""
    t = report.target
    lines = [
        f"# qflow report: {report.model} on {t.name} ({t.part}, {t.clock_mhz:g} MHz)",
        "",
        f"- Throughput: **{report.throughput_fps:,.0f} FPS** ({bottleneck_text(report)}, "
        f"{report.max_cycles} cycles/frame); latency {report.latency_us:.2f} us",
        f"- Fits the board's caps: **{'yes' if report.fits else 'no'}**"
        + (f" (over: {', '.join(report.over_budget)})" if report.over_budget else ""),
    ]
    if report.cycle_bound is not None:
        lines.append(f"- Distance from the limit: {report.cycle_bound.describe()}")
    if report.accuracy is not None:
        lines.append(f"- Test accuracy: **{100 * report.accuracy:.2f}%**")
    if report.verification is not None:
        skipped = [s.name for s in report.verification.stages if s.skipped]
        lines.append(f"- Verification: **{'passed' if report.verification.passed else 'FAILED'}**"
                     + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    lines += [f"- Skipped: {s}" for s in report.skipped]
    lines += ["", f"| resource | layers | data-width converters ({report.data_width_converters.count}) | budget (cap of the board) | use |",
              "|---|---:|---:|---:|---:|"]
    rows = resource_rows(report)
    for row in rows:
        layers, conv = ("n/e", "n/e") if row["used"] is None else (f"{row['layers']:,.0f}", f"{row['converters']:,.0f}")
        lines.append(f"| {row['label']} | {layers} | {conv} | {cap_text(row)} | {use_text(row)} |")
    if any(row["used"] is None for row in rows):
        lines += ["", FF_NOTE]
    columns, hot = layer_columns(report), set(bottleneck_names(report))
    lines += ["", "| layer | op | PE | SIMD | cycles (FINN) |" + "".join(f" {c.header} |" for c in columns) + " LUT | BRAM18 | URAM | DSP |",
              "|---|---|---:|---:|---:|" + "---:|" * len(columns) + "---:|---:|---:|---:|"]
    for layer in report.layers:
        mark = " **(bottleneck)**" if layer.name in hot else ""
        lines.append(
            f"| {layer.name}{mark} | {layer.op_type} | {layer.pe or '-'} | {layer.simd or '-'} | {layer.cycles} |"
            + "".join(f" {c.cell(layer)} |" for c in columns)
            + f" {lut_cell(layer)} | {layer.bram_18k:g} | {layer.uram:g} | {layer.dsp:g} |"
        )
    lines += ["", LUT_LEGEND]
    own, other = markdown_rows(known_sections(report), report), markdown_rows(other_sections(report), report)
    return "\n".join(lines + own + _stage_rows(report) + other) + "\n"

