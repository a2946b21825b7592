"""report.html: one self-contained page for a build report (schema in flow/report.py).

Everything is inline: CSS in a <style> block, charts as base64 PNG data URIs drawn
with matplotlib's Agg canvas. No scripts, no external URLs; a Content-Security-Policy
forbids the page from loading anything but data: images.

>>> report = {
...     "model": "tfc", "target": {"name": "pynq-z1", "part": "xc7z020clg400-1", "clock_mhz": 100.0},
...     "layers": [{"name": "MVAU_0", "op_type": "MVAU_hls", "pe": 4, "simd": 16, "cycles": 784,
...                 "lut": 1175.0, "bram_18k": 8.0, "uram": 0.0, "dsp": 0.0}],
...     "totals": {"lut": 1175.0, "bram_18k": 8.0, "uram": 0.0, "dsp": 0.0},
...     "budget": {"lut": 37240, "bram_18k": 224, "uram": 0, "dsp": 176},
...     "fits": True, "over_budget": [], "max_cycles": 784, "bottleneck": "MVAU_0",
...     "throughput_fps": 127551.02, "latency_us": 7.84, "accuracy": None, "verification": None,
...     "folding": {"mode": "fps", "target_fps": 100000, "file": None}, "stage": "estimates",
...     "skipped": [], "timings_s": {}}
>>> page = render_html(report)
>>> page.startswith("<!DOCTYPE html>") and "127,551" in page and "https://" not in page
True
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any

from flow.report import resources_used

RESOURCES = (("lut", "LUT"), ("bram_18k", "BRAM18"), ("uram", "URAM"), ("dsp", "DSP"))
_BLUE, _RED, _GREEN, _GREY = "#3b6ea8", "#c0392b", "#2e8b57", "#9aa5b1"

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
"""


def _e(x: Any) -> str:
    return escape("" if x is None else str(x))


def _num(x: Any, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _mpl_text(s: Any) -> str:
    """A label matplotlib draws verbatim ($ would start mathtext)."""
    return str(s).replace("$", r"\$")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cycles_chart(report: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    layers = report["layers"]
    names = [_mpl_text(layer["name"]) for layer in layers]
    cycles = [layer["cycles"] or 0 for layer in layers]
    colors = [_RED if layer["name"] == report.get("bottleneck") else _BLUE for layer in layers]
    fig = Figure(figsize=(6.4, max(2.2, 0.8 + 0.32 * len(layers))), layout="constrained")
    ax = fig.add_subplot()
    y = list(range(len(layers)))
    ax.barh(y, cycles, color=colors)
    ax.set_yticks(y, names, fontsize=8)
    ax.margins(y=0.01)
    ax.invert_yaxis()
    ax.set_xlabel("cycles per frame")
    ax.set_title("Cycles per layer (bottleneck in red)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    top = max(cycles, default=0) or 1
    ax.set_xlim(0, top * 1.18)
    for yi, c in zip(y, cycles):
        ax.text(c + top * 0.01, yi, f"{c:,}", va="center", fontsize=7)
    return _png(fig)


def _util(total: float, budget: float) -> tuple[float | None, str]:
    """Fraction of the cap used (None when there is no cap) and its label."""
    if budget:
        return total / budget, f"{100 * total / budget:.1f}%"
    return None, ("over (cap 0)" if total > 0 else "n/a (cap 0)")


def _util_chart(report: dict[str, Any]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.6), layout="constrained")
    ax = fig.add_subplot()
    labels, widths, colors, texts = [], [], [], []
    for key, label in RESOURCES:
        total, budget = resources_used(report).get(key, 0), report["budget"].get(key, 0) or 0
        frac, text = _util(total, budget)
        labels.append(label)
        if frac is None:
            widths.append(1.0 if total > 0 else 0.0)
            colors.append(_RED if total > 0 else _GREY)
        else:
            widths.append(frac)
            colors.append(_RED if frac > 1 else _GREEN)
        texts.append(f"{text}  ({total:,.0f} / {budget:,.0f})")
    right = max(1.25, max(widths, default=0) * 1.1 + 0.45)
    y = list(range(len(labels)))
    ax.barh(y, [min(w, right) for w in widths], color=colors)
    ax.axvline(1.0, color="#1f2933", linestyle="--", linewidth=1)
    ax.text(1.0, -0.65, " 100%", fontsize=7, va="bottom")
    for yi, w, t in zip(y, widths, texts):
        ax.text(min(w, right) + 0.01, yi, t, va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(len(labels) - 0.5, -0.8)
    ax.set_xlim(0, right + 0.35)
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{100 * v:.0f}%")
    ax.set_title("Utilisation of the target's caps", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _card(key: str, value: str, detail: str = "", cls: str = "") -> str:
    d = f'<div class="d">{detail}</div>' if detail else ""
    return f'<div class="card {cls}"><div class="k">{key}</div><div class="v">{value}</div>{d}</div>'


def _cards(r: dict[str, Any]) -> str:
    over = ", ".join(r.get("over_budget") or [])
    cards = [
        _card("Throughput", f"{_num(r.get('throughput_fps'))} FPS",
              f"bottleneck {_e(r.get('bottleneck'))}, {_num(r.get('max_cycles'))} cycles/frame"),
        _card("Latency", f"{_num(r.get('latency_us'), '.2f')} µs"),
        _card("Fits the board", "yes" if r.get("fits") else "no",
              f"over: {_e(over)}" if over else "within every cap", "ok" if r.get("fits") else "bad"),
    ]
    if r.get("accuracy") is not None:
        cards.append(_card("Test accuracy", f"{100 * r['accuracy']:.2f}%"))
    v = r.get("verification")
    if v is None:
        cards.append(_card("Verification", "not run", "", "na"))
    else:
        failed = [s["name"] for s in v.get("stages", []) if not s.get("passed")]
        detail = f"failed: {_e(', '.join(failed))}" if failed else f"{len(v.get('stages', []))} stage(s)"
        cards.append(_card("Verification", "passed" if v.get("passed") else "FAILED", detail,
                           "ok" if v.get("passed") else "bad"))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _layer_table(r: dict[str, Any]) -> str:
    head = ("<tr><th>layer</th><th>op</th><th class=n>PE</th><th class=n>SIMD</th><th class=n>cycles</th>"
            "<th class=n>LUT</th><th class=n>BRAM18</th><th class=n>URAM</th><th class=n>DSP</th></tr>")
    rows = []
    for layer in r["layers"]:
        hot = layer["name"] == r.get("bottleneck")
        mark = " (bottleneck)" if hot else ""
        cells = [f"<td>{_e(layer['name'])}{mark}</td><td>{_e(layer['op_type'])}</td>"]
        cells += [f"<td class=n>{_e(layer.get(k) or '-')}</td>" for k in ("pe", "simd")]
        cells.append(f"<td class=n>{_num(layer.get('cycles'))}</td><td class=n>{_num(layer.get('lut'))}</td>")
        cells += [f"<td class=n>{_num(layer.get(k), 'g')}</td>" for k in ("bram_18k", "uram", "dsp")]
        rows.append(f'<tr{" class=hot" if hot else ""}>{"".join(cells)}</tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _util_table(r: dict[str, Any]) -> str:
    rows = []
    used = resources_used(r)
    for key, label in RESOURCES:
        layers, budget = r["totals"].get(key, 0) or 0, r["budget"].get(key, 0) or 0
        frac, text = _util(used.get(key, 0), budget)
        bad = (frac is None and used.get(key, 0) > 0) or (frac is not None and frac > 1)
        rows.append(f"<tr><td>{label}</td><td class=n>{layers:,.0f}</td><td class=n>{used.get(key, 0) - layers:,.0f}</td>"
                    f'<td class=n>{budget:,.0f}</td><td class="n {"fail" if bad else ""}">{_e(text)}</td></tr>')
    n = (r.get("data_width_converters") or {}).get("count", 0)
    return (f"<table><tr><th>resource</th><th class=n>layers</th><th class=n>converters ({n})</th><th class=n>cap</th><th class=n>use</th></tr>"
            + "".join(rows) + "</table>")


def _verification(r: dict[str, Any]) -> str:
    v = r.get("verification")
    if v is None:
        return '<p class="muted">Verification: not run.</p>'
    head = ("<tr><th>stage</th><th>vs</th><th class=n>samples</th><th>result</th>"
            "<th class=n>max abs err</th><th class=n>label match</th><th>note</th></tr>")
    rows = []
    for s in v.get("stages", []):
        if s.get("passed"):
            res = '<span class="pass">pass</span>' + (" (bit-exact)" if s.get("bit_exact") else "")
        else:
            res = '<span class="fail">FAIL</span>'
        if s.get("first_mismatch") is not None:
            res += f", first mismatch at sample {_e(s['first_mismatch'])}"
        err = "-" if s.get("max_abs_err") is None else f"{s['max_abs_err']:.3g}"
        lm = "-" if s.get("label_match") is None else f"{100 * s['label_match']:.2f}%"
        rows.append(f"<tr><td>{_e(s.get('name'))}</td><td>{_e(s.get('reference'))}</td>"
                    f"<td class=n>{_num(s.get('samples'))}</td><td>{res}</td><td class=n>{err}</td>"
                    f"<td class=n>{lm}</td><td>{_e(s.get('note') or '')}</td></tr>")
    if not rows:
        rows.append('<tr><td colspan=7 class="muted">no stages</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _build_info(r: dict[str, Any]) -> str:
    f = r.get("folding") or {}
    fold = f"mode <code>{_e(f.get('mode', '-'))}</code>"
    if f.get("target_fps") is not None:
        fold += f", target {_num(f['target_fps'])} FPS"
    if f.get("file"):
        fold += f", file <code>{_e(f['file'])}</code>"
    items = [f"<li>Folding: {fold}</li>", f"<li>Stage reached: <code>{_e(r.get('stage', '-'))}</code></li>"]
    skipped = r.get("skipped") or []
    items.append("<li>Skipped steps: " + ("none" if not skipped else "<ul>" + "".join(
        f"<li>{_e(s)}</li>" for s in skipped) + "</ul>") + "</li>")
    timings = r.get("timings_s") or {}
    if timings:
        items.append("<li>Timings: " + ", ".join(
            f"{_e(k)} {v:.2f} s" for k, v in timings.items()) + f" (total {sum(timings.values()):.2f} s)</li>")
    return "<ul>" + "".join(items) + "</ul>"


def render_html(report: dict[str, Any]) -> str:
    """The whole report as one self-contained HTML page."""
    t = report["target"]
    title = f"qflow report: {report['model']} on {t['name']}"
    charts = f'<div class="chart"><img alt="utilisation per resource" src="{_util_chart(report)}"></div>'
    if report["layers"]:
        charts = (f'<div class="chart"><img alt="cycles per layer" src="{_cycles_chart(report)}"></div>'
                  + charts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>qflow report: {_e(report['model'])}</h1>
<p class="sub">target <b>{_e(t['name'])}</b> &middot; part <code>{_e(t['part'])}</code> &middot;
clock {_num(t.get('clock_mhz'), 'g')} MHz &middot; stage {_e(report.get('stage', '-'))}</p>
{_cards(report)}
<h2>Charts</h2><div class="charts">{charts}</div>
<h2>Layers</h2>{_layer_table(report)}
<h2>Utilisation</h2>{_util_table(report)}
<h2>Verification</h2>{_verification(report)}
<h2>Build</h2>{_build_info(report)}
</main></body></html>
"""
