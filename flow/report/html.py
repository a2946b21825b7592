"""report.html: one self-contained page for a build report (:class:`~flow.report.schema.Report`).

Everything is inline: CSS in a <style> block, charts (:mod:`flow.report.plots`) as base64
PNG data URIs. No scripts, no external URLs; a Content-Security-Policy forbids the page
from loading anything but data: images.
"""

from __future__ import annotations

from html import escape
from typing import Any

from flow.report.cells import (
    FF_NOTE,
    LUT_LEGEND,
    bottleneck_names,
    bottleneck_text,
    lut_cell,
    resource_rows,
    use_text,
)
from flow.report.graphs import cycle_profile, slowest
from flow.report.plots import cycles_per_layer, resource_use
from flow.report.schema import Report
from flow.report.sections import cards, html_parts, layer_columns
from flow.report.style import png_data_uri

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
 background:#f4f6f8;color:#1f2933}
main{max-width:1180px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #d9e2ec;
 padding-bottom:4px}
.sub{color:#52606d;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:14px}
.card{background:#fff;border-radius:8px;padding:14px 18px;min-width:150px;flex:1;
 box-shadow:0 1px 3px rgba(0,0,0,.12);border-top:4px solid #3b6ea8}
.card .k{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#52606d}
.card .v{font-size:28px;font-weight:700;margin-top:4px}
.card .d{font-size:13px;color:#52606d;margin-top:2px}
.card.ok{border-top-color:#2e8b57}.card.ok .v{color:#2e8b57}
.card.bad{border-top-color:#c0392b}.card.bad .v{color:#c0392b}
.card.na{border-top-color:#9aa5b1}.card.na .v{color:#7b8794}
table{border-collapse:collapse;background:#fff;width:100%;font-size:14px;
 box-shadow:0 1px 3px rgba(0,0,0,.08)}
th,td{padding:6px 10px;border-bottom:1px solid #e4e7eb;text-align:left}
th{background:#e9eef3;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.hot td{background:#fdecea;font-weight:600}
.pass{color:#2e8b57;font-weight:600}.fail{color:#c0392b;font-weight:600}.muted{color:#7b8794}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.chart{background:#fff;border-radius:8px;padding:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);flex:1;
 min-width:420px}
.chart img{width:100%;height:auto;display:block}
ul{margin:6px 0}code{background:#e9eef3;padding:1px 4px;border-radius:3px}
.scroll{max-height:72vh;overflow:auto;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.scroll th{position:sticky;top:0;z-index:1}
details>summary{cursor:pointer;font-weight:600;margin:14px 0 8px}
.two{display:flex;flex-wrap:wrap;gap:16px}.two>div{flex:1;min-width:420px}
h3{font-size:15px;margin:16px 0 8px}.chart.wide{flex-basis:100%}
"""

#: Above this many layers the page leads with overviews (slowest layers, totals per op type, a
#: profile of every layer) and folds the full layer table into a scrolling box.
LARGE = 40
#: Layers in the slowest-layers table and chart of a large design.
TOP = 15


def _e(x: Any) -> str:
    return escape("" if x is None else str(x))


def _num(x: Any, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _card(key: str, value: str, detail: str = "", cls: str = "") -> str:
    d = f'<div class="d">{detail}</div>' if detail else ""
    return f'<div class="card {cls}"><div class="k">{key}</div><div class="v">{value}</div>{d}</div>'


def _cards(r: Report) -> str:
    over = ", ".join(r.over_budget)
    items = [
        _card("Throughput", f"{_num(r.throughput_fps)} FPS",
              f"{_e(bottleneck_text(r))}, {_num(r.max_cycles)} cycles/frame"),
        _card("Latency", f"{_num(r.latency_us, '.2f')} µs"),
        _card("Fits the board", "yes" if r.fits else "no",
              f"over: {_e(over)}" if over else "within every cap", "ok" if r.fits else "bad"),
    ]
    b = r.cycle_bound
    if b is not None:
        items.append(_card("Of the limit", f"{100 * b.fraction:.1f}%", _e(b.describe()), "ok" if b.fraction >= 1.0 else ""))
    if r.accuracy is not None:
        items.append(_card("Test accuracy", f"{100 * r.accuracy:.2f}%"))
    v = r.verification
    if v is None:
        items.append(_card("Verification", "not run", "", "na"))
    else:
        failed = [s.name for s in v.stages if not s.passed]
        skipped = [s.name for s in v.stages if s.skipped]
        detail = f"failed: {_e(', '.join(failed))}" if failed else f"{len(v.stages) - len(skipped)} stage(s)"
        detail += f"; skipped: {_e(', '.join(skipped))}" if skipped else ""
        items.append(_card("Verification", "passed" if v.passed else "FAILED", detail, "ok" if v.passed else "bad"))
    items += [_card(c.title, c.value, _e(c.detail), c.kind) for c in cards(r)]
    return '<div class="cards">' + "".join(items) + "</div>"


def _bar(cycles: int, top: int) -> str:
    """A cycles cell whose background bar is the layer's share of the bottleneck's cycles."""
    pct = 100.0 * cycles / top if top else 0.0
    return (f'<td class=n style="background:linear-gradient(90deg,#cfe0f3 {pct:.1f}%,transparent {pct:.1f}%)" '
            f'title="{pct:.1f}% of the bottleneck">{_num(cycles)}</td>')


def _layer_table(r: Report, layers=None, rank: bool = False) -> str:
    columns = layer_columns(r)
    top = max((layer.cycles for layer in r.layers), default=0)
    order = {layer.name: i for i, layer in enumerate(slowest(r.layers, len(r.layers)), 1)}
    head = ("<tr>" + ("<th class=n>rank</th>" if rank else "") + "<th>layer</th><th>op</th><th class=n>PE</th><th class=n>SIMD</th><th class=n>cycles (FINN)</th>"
            + "".join(f"<th class=n>{_e(c.header)}</th>" for c in columns)
            + "<th class=n>LUT</th><th class=n>BRAM18</th><th class=n>URAM</th><th class=n>DSP</th></tr>")
    rows, bottlenecks = [], set(bottleneck_names(r))
    for layer in r.layers if layers is None else layers:
        hot = layer.name in bottlenecks
        mark = " (bottleneck)" if hot else ""
        cells = [f"<td class=n>{order[layer.name]}</td>"] if rank else []
        cells.append(f"<td>{_e(layer.name)}{mark}</td><td>{_e(layer.op_type)}</td>")
        cells += [f"<td class=n>{_e(v or '-')}</td>" for v in (layer.pe, layer.simd)]
        cells.append(_bar(layer.cycles, top))
        cells += [f'<td class=n title="{_e(c.hint(layer))}">{_e(c.cell(layer))}</td>' for c in columns]
        cells.append(f"<td class=n>{_e(lut_cell(layer))}</td>")
        cells += [f"<td class=n>{_num(v, 'g')}</td>" for v in (layer.bram_18k, layer.uram, layer.dsp)]
        rows.append(f'<tr{" class=hot" if hot else ""}>{"".join(cells)}</tr>')
    return f'<table>{head}{"".join(rows)}</table>'


def _op_totals(r: Report) -> str:
    """One row per op type: how many layers, the slowest one, and their resources (most LUT first)."""
    groups: dict[str, list] = {}
    for layer in r.layers:
        groups.setdefault(layer.op_type, []).append(layer)
    rows = []
    for op, ls in sorted(groups.items(), key=lambda kv: -sum(x.lut for x in kv[1])):
        worst = max(ls, key=lambda x: x.cycles)
        res = "".join(f"<td class=n>{sum(getattr(x, k) for x in ls):,.0f}</td>" for k in ("lut", "bram_18k", "uram", "dsp"))
        rows.append(f"<tr><td>{_e(op)}</td><td class=n>{len(ls)}</td><td class=n>{_num(worst.cycles)}</td><td>{_e(worst.name)}</td>{res}</tr>")
    head = ("<tr><th>op</th><th class=n>layers</th><th class=n>max cycles</th><th>slowest</th><th class=n>LUT</th>"
            "<th class=n>BRAM18</th><th class=n>URAM</th><th class=n>DSP</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _layers(r: Report) -> str:
    """The layer section: every layer in dataflow order; for a large design first its slowest
    layers and the totals per op type, the full table in a scrolling box that can be folded."""
    legend = f'<p class="muted">{_e(LUT_LEGEND)}</p>'
    if len(r.layers) <= LARGE:
        return _layer_table(r) + legend
    n = len(r.layers)
    return (f"<h3>The {TOP} slowest of {n} layers</h3>{_layer_table(r, slowest(r.layers, TOP), rank=True)}"
            f"<h3>Layers per op type</h3>{_op_totals(r)}"
            f"<details><summary>All {n} layers in dataflow order (rank = place by cycles)</summary>"
            f'<div class="scroll">{_layer_table(r, rank=True)}</div></details>{legend}')


def _util_table(r: Report) -> str:
    """Each resource of the board: what the layers and converters use, the cap (its fraction of the
    board's total) and the use of the cap; FF against the board only (FINN estimates none)."""
    rows = []
    table = resource_rows(r)
    for row in table:
        bad = row["used"] is not None and ((row["use"] is None and row["used"] > 0) or (row["use"] or 0) > 1)
        cells = ("<td class=n>n/e</td>" * 3 if row["used"] is None else
                 f"<td class=n>{row['layers']:,.0f}</td><td class=n>{row['converters']:,.0f}</td><td class=n>{row['used']:,.0f}</td>")
        cap = "-" if row["cap"] is None else f"{100 * row['cap']:g}%"
        rows.append(f"<tr><td>{row['label']}</td>{cells}<td class=n>{_num(row['total'])}</td><td class=n>{cap}</td>"
                    f'<td class=n>{_num(row["budget"])}</td><td class="n {"fail" if bad else ""}">{_e(use_text(row))}</td></tr>')
    n = r.data_width_converters.count
    note = f'<p class="muted">{_e(FF_NOTE)}</p>' if any(row["used"] is None for row in table) else ""
    return (f"<table><tr><th>resource</th><th class=n>layers</th><th class=n>converters ({n})</th><th class=n>used</th>"
            "<th class=n>board total</th><th class=n>cap (of the board)</th><th class=n>budget (total x cap)</th><th class=n>use of the budget</th></tr>"
            + "".join(rows) + "</table>" + note)


def _note(note: str | None, keep: int = 240) -> str:
    """A note; a long one (every layer of a large design) folded after its first ``keep`` characters."""
    if not note or len(note) <= keep:
        return _e(note or "")
    return f"<details><summary>{_e(note[:keep])}...</summary>{_e(note)}</details>"


def _verification(r: Report) -> str:
    v = r.verification
    if v is None:
        return '<p class="muted">Verification: not run.</p>'
    head = ("<tr><th>stage</th><th>vs</th><th class=n>samples</th><th>result</th>"
            "<th class=n>max abs err</th><th class=n>label match</th><th>note</th></tr>")
    rows = []
    for s in v.stages:
        if s.skipped:
            res = '<span class="muted">skipped</span>'
        elif s.passed:
            res = '<span class="pass">pass</span>' + (" (bit-exact)" if s.bit_exact else "")
        else:
            res = '<span class="fail">FAIL</span>'
        if s.first_mismatch is not None:
            res += f", first mismatch at sample {_e(s.first_mismatch)}" + (f" in {_e(s.layer)}" if s.layer else "")
        if s.ties:
            res += f", {_e(s.ties)} tied reference sample(s)"
        err = "-" if s.max_abs_err is None else f"{s.max_abs_err:.3g}"
        lm = "-" if s.label_match is None else f"{100 * s.label_match:.2f}%"
        rows.append(f"<tr><td>{_e(s.name)}</td><td>{_e(s.reference)}</td>"
                    f"<td class=n>{_num(s.samples)}</td><td>{res}</td><td class=n>{err}</td>"
                    f"<td class=n>{lm}</td><td>{_note(s.note)}</td></tr>")
    if not rows:
        rows.append('<tr><td colspan=7 class="muted">no stages</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _build_info(r: Report) -> str:
    f = r.folding
    fold = f"mode <code>{_e(f.mode)}</code>"
    if f.target_fps is not None:
        fold += f", target {_num(f.target_fps)} FPS"
    if f.file:
        fold += f", file <code>{_e(f.file)}</code>"
    items = [f"<li>Folding: {fold}</li>", f"<li>Stage reached: <code>{_e(r.stage)}</code></li>"]
    skipped = r.skipped
    items.append("<li>Skipped steps: " + ("none" if not skipped else "<ul>" + "".join(
        f"<li>{_e(s)}</li>" for s in skipped) + "</ul>") + "</li>")
    timings = r.timings_s
    if timings:
        items.append("<li>Timings: " + ", ".join(
            f"{_e(k)} {v:.2f} s" for k, v in timings.items()) + f" (total {timings.total:.2f} s)</li>")
    return "<ul>" + "".join(items) + "</ul>"


def render_html(report: Report) -> str:
    """The whole report as one self-contained HTML page."""
    t = report.target
    title = f"qflow report: {report.model} on {t.name}"
    charts = f'<div class="chart"><img alt="utilisation per resource" src="{png_data_uri(resource_use(report))}"></div>'
    n = len(report.layers)
    if n > LARGE:  # every layer as a thin bar, then the slowest ones by name
        top = report.model_copy(update={"layers": slowest(report.layers, TOP), "model": f"{report.model}, the {TOP} slowest of {n} layers"})
        charts = (f'<div class="chart wide"><img alt="cycles of every layer in dataflow order" src="{png_data_uri(cycle_profile(report))}"></div>'
                  f'<div class="chart"><img alt="the slowest layers" src="{png_data_uri(cycles_per_layer(top))}"></div>' + charts)
    elif report.layers:
        charts = (f'<div class="chart"><img alt="cycles per layer" src="{png_data_uri(cycles_per_layer(report))}"></div>'
                  + charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>qflow report: {_e(report.model)}</h1>
<p class="sub">target <b>{_e(t.name)}</b> &middot; part <code>{_e(t.part)}</code> &middot;
clock {_num(t.clock_mhz, 'g')} MHz &middot; stage {_e(report.stage)}</p>
{_cards(report)}
<h2>Charts</h2><div class="charts">{charts}</div>
<h2>Layers</h2>{_layers(report)}
<h2>Utilisation</h2>{_util_table(report)}
<h2>Verification</h2>{_verification(report)}
{html_parts(report)}
<h2>Build</h2>{_build_info(report)}
</main></body></html>
"""
