"""Charts of build reports (:class:`~flow.report.schema.Report`), in qflow's one style.

Each function returns a ``matplotlib.figure.Figure`` (:mod:`flow.report.style`); in a
notebook the figure displays itself, elsewhere call :func:`flow.report.style.save_png`.

* :func:`cycles_per_layer` -- cycles per frame of every layer, the bottleneck in red;
* :func:`resource_use` -- LUT/BRAM/URAM/DSP as a share of the target's caps;
* :func:`accuracy_vs_resources` -- test accuracy against a resource, one point per report.
"""

from __future__ import annotations

from collections.abc import Sequence

from flow.core.vocab import RESOURCE_LABELS as RESOURCES
from flow.report.cells import bottleneck_names, bottleneck_text
from flow.report.schema import Report
from flow.report.style import BLUE as _BLUE
from flow.report.style import GREEN as _GREEN
from flow.report.style import GREY as _GREY
from flow.report.style import INK as _INK
from flow.report.style import RED as _RED
from flow.report.style import figure as _figure
from flow.report.style import text as _text

__all__ = ["cycles_per_layer", "resource_use", "accuracy_vs_resources"]


def _subtitle(report: Report) -> str:
    return f"{report.model} on {report.target.name}"


def cycles_per_layer(report: Report, *, log: bool = False):
    """Horizontal bars of each layer's cycles per frame; the bottleneck layers (every one tied at the maximum) in red.

    The slowest layer sets the throughput (clock / its cycles), which the title states.
    ``log=True`` uses a logarithmic axis (useful when one layer dwarfs the rest).
    """
    layers = list(report.layers)
    names = [_text(layer.name) for layer in layers]
    cycles = [int(layer.cycles or 0) for layer in layers]
    bottlenecks = set(bottleneck_names(report))
    colors = [_RED if layer.name in bottlenecks else _BLUE for layer in layers]
    fig = _figure(7.0, max(2.2, 0.9 + 0.34 * len(layers)))
    ax = fig.add_subplot()
    y = list(range(len(layers)))
    ax.barh(y, cycles, color=colors)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cycles per frame")
    fps = report.throughput_fps
    title = f"Cycles per layer: {_text(_subtitle(report))}"
    if fps:
        title += f"\n{_text(bottleneck_text(report, limit=3))} -> {fps:,.0f} FPS"
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
    totals, budget = report.resources_used(), report.budget
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
    fits = report.fits
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
    if isinstance(reports, Report):
        reports = [reports]
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; use one of {', '.join(RESOURCES)}")
    if labels is not None and len(labels) != len(reports):
        raise ValueError(f"{len(labels)} labels for {len(reports)} reports")
    names = list(labels) if labels is not None else [
        f"{r.model} @ {r.target.name}" for r in reports
    ]
    points = []
    for r, name in zip(reports, names):
        if r.accuracy is None:
            continue
        total = float(r.totals.get(resource, 0.0))
        if relative:
            cap = float(r.budget.get(resource, 0))
            x = total / cap if cap else float("nan")
        else:
            x = total
        points.append((x, 100 * float(r.accuracy), r.fits, name))
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
