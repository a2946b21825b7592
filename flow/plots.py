"""Matplotlib charts of build reports (the schema in :mod:`flow.report`).

Each function takes report dicts (``BuildResult.report`` or a loaded ``report.json``)
and returns a ``matplotlib.figure.Figure`` built without pyplot (no global figure
state); in a notebook the figure displays itself, elsewhere call ``fig.savefig(...)``.

* :func:`cycles_per_layer` -- cycles per frame of every layer, the bottleneck in red;
* :func:`resource_use` -- LUT/BRAM/URAM/DSP as a share of the target's caps;
* :func:`accuracy_vs_resources` -- test accuracy against a resource, one point per report.

>>> report = {
...     "model": "tfc", "target": {"name": "pynq-z1", "part": "xc7z020clg400-1", "clock_mhz": 100.0},
...     "layers": [{"name": "MVAU_0", "op_type": "MVAU_hls", "pe": 4, "simd": 16, "cycles": 784,
...                 "lut": 1175.0, "bram_18k": 8.0, "uram": 0.0, "dsp": 0.0}],
...     "totals": {"lut": 1175.0, "bram_18k": 8.0, "uram": 0.0, "dsp": 0.0},
...     "budget": {"lut": 37240, "bram_18k": 224, "uram": 0, "dsp": 176},
...     "fits": True, "over_budget": [], "max_cycles": 784, "bottleneck": "MVAU_0",
...     "throughput_fps": 127551.02, "latency_us": 7.84, "accuracy": 0.95}
>>> cycles_per_layer(report).axes[0].get_xlabel()
'cycles per frame'
>>> [t.get_text() for t in resource_use(report).axes[0].get_yticklabels()]
['LUT', 'BRAM18', 'URAM', 'DSP']
>>> accuracy_vs_resources([report], resource="lut").axes[0].get_ylabel()
'test accuracy (%)'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["RESOURCES", "cycles_per_layer", "resource_use", "accuracy_vs_resources"]

#: Report resource keys and their display names.
RESOURCES = {"lut": "LUT", "bram_18k": "BRAM18", "uram": "URAM", "dsp": "DSP"}

_BLUE, _RED, _GREEN, _GREY, _INK = "#3b6ea8", "#c0392b", "#2e8b57", "#9aa5b1", "#1f2933"

Report = Mapping[str, Any]


def _text(s: Any) -> str:
    """A label matplotlib draws verbatim ($ would start mathtext)."""
    return str(s).replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _subtitle(report: Report) -> str:
    t = report.get("target") or {}
    return f"{report.get('model', '?')} on {t.get('name', '?')}"


def cycles_per_layer(report: Report, *, log: bool = False):
    """Horizontal bars of each layer's cycles per frame; the bottleneck layer in red.

    The slowest layer sets the throughput (clock / its cycles), which the title states.
    ``log=True`` uses a logarithmic axis (useful when one layer dwarfs the rest).
    """
    layers = list(report.get("layers") or [])
    names = [_text(layer["name"]) for layer in layers]
    cycles = [int(layer.get("cycles") or 0) for layer in layers]
    bottleneck = report.get("bottleneck")
    colors = [_RED if layer["name"] == bottleneck else _BLUE for layer in layers]
    fig = _figure(7.0, max(2.2, 0.9 + 0.34 * len(layers)))
    ax = fig.add_subplot()
    y = list(range(len(layers)))
    ax.barh(y, cycles, color=colors)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cycles per frame")
    fps = report.get("throughput_fps")
    title = f"Cycles per layer: {_text(_subtitle(report))}"
    if fps:
        title += f"\nbottleneck {_text(bottleneck)} -> {fps:,.0f} FPS"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    top = max(cycles, default=0) or 1
    if log:
        ax.set_xscale("log")
        ax.set_xlim(0.8, top * 3)
    else:
        ax.set_xlim(0, top * 1.2)
    for yi, c in zip(y, cycles):
        ax.text(c * (1.05 if log else 1) + (0 if log else top * 0.01), yi, f"{c:,}", va="center", fontsize=7)
    if not layers:
        ax.text(0.5, 0.5, "(no layers)", ha="center", va="center", transform=ax.transAxes)
    return fig


def resource_use(report: Report):
    """Each resource's use (layers + data-width converters) as a share of the target's cap (the dashed line = 100% of the cap).

    Bars are green within the cap and red over it; a resource the board does not have
    (cap 0, e.g. URAM on a Zynq-7000) is grey when unused and red when used. Each bar is
    labelled ``used / cap`` in absolute units.
    """
    from flow.report import resources_used

    totals, budget = resources_used(report), report.get("budget") or {}
    labels, widths, colors, texts = [], [], [], []
    for key, label in RESOURCES.items():
        total, cap = float(totals.get(key) or 0), float(budget.get(key) or 0)
        labels.append(label)
        if cap > 0:
            frac = total / cap
            widths.append(frac)
            colors.append(_RED if frac > 1 else _GREEN)
            texts.append(f"{100 * frac:.1f}%  ({total:,.0f} / {cap:,.0f})")
        else:
            widths.append(1.0 if total > 0 else 0.0)
            colors.append(_RED if total > 0 else _GREY)
            texts.append(f"{'over' if total > 0 else 'n/a'}: cap 0  ({total:,.0f} used)")
    right = max(1.2, max(widths, default=0) * 1.1)
    fig = _figure(7.0, 2.6)
    ax = fig.add_subplot()
    y = list(range(len(labels)))
    ax.barh(y, widths, color=colors)
    ax.axvline(1.0, color=_INK, linestyle="--", linewidth=1)
    for yi, w, t in zip(y, widths, texts):
        ax.text(w + right * 0.01, yi, t, va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, right + 0.45)
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{100 * v:.0f}%")
    ax.set_xlabel("share of the target's cap (dashed line = cap)")
    fits = report.get("fits")
    verdict = "" if fits is None else ("  -  fits" if fits else "  -  OVER the caps")
    ax.set_title(f"Resource use: {_text(_subtitle(report))}{verdict}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def accuracy_vs_resources(
    reports: Report | Sequence[Report],
    *,
    resource: str = "lut",
    labels: Sequence[str] | None = None,
    relative: bool = False,
):
    """Scatter of test accuracy against one resource, one point per report.

    ``resource`` is ``lut``, ``bram_18k``, ``uram`` or ``dsp``; ``relative=True`` plots
    the share of each report's own cap instead of the absolute total. Points are green
    when the design fits its board and red when not, and labelled with ``labels`` (default
    ``model @ target``). Reports without an accuracy are skipped; ValueError if none has one.
    """
    if isinstance(reports, Mapping):
        reports = [reports]
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; use one of {', '.join(RESOURCES)}")
    if labels is not None and len(labels) != len(reports):
        raise ValueError(f"{len(labels)} labels for {len(reports)} reports")
    names = list(labels) if labels is not None else [
        f"{r.get('model', '?')} @ {(r.get('target') or {}).get('name', '?')}" for r in reports
    ]
    points = []
    for r, name in zip(reports, names):
        if r.get("accuracy") is None:
            continue
        total = float((r.get("totals") or {}).get(resource) or 0)
        if relative:
            cap = float((r.get("budget") or {}).get(resource) or 0)
            x = total / cap if cap else float("nan")
        else:
            x = total
        points.append((x, 100 * float(r["accuracy"]), bool(r.get("fits", True)), name))
    if not points:
        raise ValueError("no report has an accuracy (only runs that trained the model record one)")
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    for x, acc, fits, name in points:
        ax.scatter([x], [acc], s=46, color=_GREEN if fits else _RED, edgecolor=_INK, linewidth=0.6, zorder=3)
        ax.annotate(_text(name), (x, acc), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel(f"{RESOURCES[resource]} ({'share of the cap' if relative else 'estimated total'})")
    if relative:
        ax.xaxis.set_major_formatter(lambda v, _pos: f"{100 * v:.0f}%")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy vs {RESOURCES[resource]} (green = fits its board, red = over the caps)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.margins(x=0.25)
    if all(x >= 0 for x, *_ in points):
        ax.set_xlim(left=0)
    accs = [acc for _, acc, *_ in points]
    pad = max(1.0, 0.2 * (max(accs) - min(accs)))
    ax.set_ylim(max(0.0, min(accs) - pad), min(100.5, max(accs) + pad))
    return fig
