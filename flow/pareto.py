"""Pareto fronts, trade-off plots and the results files of ``qflow compare``.

A row (a dict, as in ``results.json``) is *Pareto-optimal* when no other row is at least
as good on both axes and strictly better on one. :func:`pareto_front` finds those rows;
:func:`tradeoff_plot` draws every row, marks and labels the front (one panel and front per
group, e.g. per dataset, since accuracies on different datasets do not compete) and joins
it with a staircase line. Figures are built without pyplot; :func:`save_png` writes one
atomically. :func:`write_results` writes a sweep's ``results.json``, ``results.csv``,
``results.md`` (:func:`markdown_table`) and the plots in :data:`PLOTS`.

>>> rows = [
...     {"name": "a", "lut": 1000, "accuracy": 0.90},
...     {"name": "b", "lut": 2000, "accuracy": 0.95},
...     {"name": "c", "lut": 3000, "accuracy": 0.93},   # b is smaller and more accurate
...     {"name": "d", "lut": 500, "accuracy": 0.80},
... ]
>>> [r["name"] for r in pareto_front(rows, "lut", "accuracy")]
['d', 'a', 'b']
>>> [r["name"] for r in pareto_front(rows, "lut", "accuracy", maximize_x=True)]
['b', 'c']
>>> fig = tradeoff_plot(rows, "lut", title="accuracy vs LUT")
>>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
('LUT (estimated total)', 'test accuracy (%)')
>>> import tempfile
>>> rows = [{**r, "dataset": "mnist", "throughput_fps": 1e6} for r in rows]
>>> [p.name for p in write_results(rows, tempfile.mkdtemp(), name="demo")]
['results.json', 'results.csv', 'results.md', 'accuracy_vs_lut.png', 'accuracy_vs_fps.png']
>>> [r["name"] for r in rows if r["pareto_lut"]]
['a', 'b', 'd']
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flow.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["AXIS_LABELS", "PLOTS", "dominates", "mark_pareto", "markdown_table", "pareto_front", "save_png",
           "tradeoff_plot", "write_results"]

Row = Mapping[str, Any]

#: Axis labels of the result keys qflow plots.
AXIS_LABELS = {
    "lut": "LUT (estimated total)",
    "throughput_fps": "throughput (frames/s)",
    "bops": "BOPs per inference",
    "weight_mem_bits": "weight memory (bits)",
    "latency_us": "latency (us)",
    "accuracy": "test accuracy (%)",
}

#: Plots written by :func:`write_results`: file -> (x key, maximize x, title).
PLOTS = {
    "accuracy_vs_lut.png": ("lut", False, "Accuracy vs LUT"),
    "accuracy_vs_fps.png": ("throughput_fps", True, "Accuracy vs throughput"),
}

_PALETTE = ("#3b6ea8", "#c0392b", "#2e8b57", "#8e44ad", "#d35400", "#16a085")
_GREY, _INK = "#9aa5b1", "#1f2933"


def _value(row: Row, key: str) -> float | None:
    v = row.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether point ``a`` dominates ``b``, both given as (x, y) *to maximize*.

    >>> dominates((2, 2), (1, 2)), dominates((1, 2), (1, 2)), dominates((3, 0), (1, 2))
    (True, False, False)
    """
    return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])


def pareto_front(
    rows: Sequence[Row],
    x_key: str,
    y_key: str,
    *,
    maximize_x: bool = False,
    maximize_y: bool = True,
) -> list[Row]:
    """The rows no other row dominates, sorted by ``x_key`` ascending.

    By default ``x`` is a cost to minimize (LUT, BOPs) and ``y`` a quality to maximize
    (accuracy); ``maximize_x=True`` for a benefit such as frames/s. Rows whose ``x`` or ``y``
    is missing or not a finite number are ignored. Rows with identical values are all kept.

    >>> pts = [{"x": 1, "y": 1}, {"x": 1, "y": 1}, {"x": 2, "y": 0.5}, {"x": 0.5, "y": None}]
    >>> pareto_front(pts, "x", "y")
    [{'x': 1, 'y': 1}, {'x': 1, 'y': 1}]
    """
    sx, sy = (1.0 if maximize_x else -1.0), (1.0 if maximize_y else -1.0)
    points = []
    for row in rows:
        x, y = _value(row, x_key), _value(row, y_key)
        if x is not None and y is not None:
            points.append(((sx * x, sy * y), row))
    front = [row for p, row in points if not any(dominates(q, p) for q, _ in points)]
    return sorted(front, key=lambda r: (_value(r, x_key), -sy * _value(r, y_key)))


def _text(s: Any) -> str:
    return str(s).replace("$", r"\$")


#: Label offsets tried around a point, in points: (dx, dy, horizontal alignment, vertical alignment).
_SPOTS = [(6, 2, "left", "bottom"), (6, -2, "left", "top"), (-6, 2, "right", "bottom"), (-6, -2, "right", "top"),
          (0, 7, "center", "bottom"), (0, -7, "center", "top"), (6, 11, "left", "bottom"), (6, -11, "left", "top"),
          (-6, 11, "right", "bottom"), (-6, -11, "right", "top")]


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(ax, labels: list[tuple[float, float, str, dict]]) -> None:
    """Annotate each (x, y, text, style) at the offset that overlaps other labels and points least."""
    fig = ax.figure
    fig.draw_without_rendering()  # settle the layout so data -> pixel transforms are final
    px = fig.dpi / 72.0
    points = [ax.transData.transform((x, y)) for x, y, _, _ in labels]
    taken = [(p[0] - 4 * px, p[1] - 4 * px, p[0] + 4 * px, p[1] + 4 * px) for p in points]
    frame = ax.get_window_extent()
    for (x, y, text, style), (cx, cy) in zip(labels, points):
        size = style.get("fontsize", 8)
        w, h = 0.58 * size * len(text) * px, 1.25 * size * px
        best = None
        for dx, dy, ha, va in _SPOTS:
            x0 = cx + dx * px - {"left": 0, "center": w / 2, "right": w}[ha]
            y0 = cy + dy * px - (0 if va == "bottom" else h)
            box = (x0, y0, x0 + w, y0 + h)
            cost = sum(_overlap(box, t) for t in taken)
            cost += 4 * (max(0, frame.x0 - box[0]) + max(0, box[2] - frame.x1)) * h
            cost += 4 * (max(0, frame.y0 - box[1]) + max(0, box[3] - frame.y1)) * w
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha, va, box)
            if cost == 0:
                break
        _, dx, dy, ha, va, box = best
        taken.append(box)
        ax.annotate(_text(text), (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, **style)


def tradeoff_plot(
    rows: Sequence[Row],
    x_key: str,
    *,
    y_key: str = "accuracy",
    maximize_x: bool = False,
    group_key: str | None = "dataset",
    label_key: str = "name",
    log_x: bool = True,
    title: str | None = None,
):
    """Scatter of ``y_key`` (accuracy, shown in %) against ``x_key``, the Pareto front marked.

    One panel and one front per value of ``group_key`` (``None``: a single panel), since
    accuracies on different datasets do not compete. Front points are filled and labelled
    in bold and joined by a staircase line (the best ``y`` reachable at each ``x``); the
    other points are hollow with a grey label. Returns a ``matplotlib.figure.Figure``;
    ValueError when no row has both values.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    usable = [r for r in rows if _value(r, x_key) is not None and _value(r, y_key) is not None]
    if not usable:
        raise ValueError(f"no row has both {x_key!r} and {y_key!r}")
    if log_x and any(_value(r, x_key) <= 0 for r in usable):
        log_x = False
    groups: dict[Any, list[Row]] = {}
    for r in usable:
        groups.setdefault(r.get(group_key) if group_key else None, []).append(r)
    scale = 100.0 if y_key == "accuracy" else 1.0

    fig = Figure(figsize=(4.6 * len(groups) + 1.0, 4.6), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for i, (ax, (group, members)) in enumerate(zip(axes, groups.items())):
        color = _PALETTE[i % len(_PALETTE)]
        front = pareto_front(members, x_key, y_key, maximize_x=maximize_x)
        on_front = {id(r) for r in front}
        spots: dict[tuple[float, float], list[Row]] = {}  # rows at identical points share one label
        for r in sorted(members, key=lambda r: id(r) not in on_front):  # front labels placed first
            spots.setdefault((_value(r, x_key), scale * _value(r, y_key)), []).append(r)
        labels = []
        for (x, y), here in spots.items():
            best = id(here[0]) in on_front
            ax.scatter([x], [y], s=60 if best else 36, zorder=3, linewidth=1.0 if best else 1.2,
                       color=color if best else "white", edgecolor=_INK if best else color)
            style = {"fontsize": 8, "color": _INK, "fontweight": "bold"} if best else {"fontsize": 7, "color": _GREY}
            labels.append((x, y, " = ".join(str(r.get(label_key, "?")) for r in here), style))
        xs = [_value(r, x_key) for r in front]
        ys = [scale * _value(r, y_key) for r in front]
        # "post" for a cost (more x buys more y), "pre" for a benefit (more x costs y)
        ax.step(xs, ys, where="pre" if maximize_x else "post", color=color, linewidth=1.2, alpha=0.7, zorder=2)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(AXIS_LABELS.get(x_key, x_key))
        if i == 0:
            ax.set_ylabel(AXIS_LABELS.get(y_key, y_key))
        ax.set_title("all rows" if group is None else _text(group), fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.margins(x=0.15, y=0.12)
        ax.legend(handles=[
            Line2D([], [], color=color, marker="o", markeredgecolor=_INK, label="Pareto front"),
            Line2D([], [], color=color, marker="o", markerfacecolor="white", linestyle="none", label="dominated"),
        ], fontsize=7, loc="lower right" if not maximize_x else "lower left")
        _place_labels(ax, labels)
    better = "up and right" if maximize_x else "up and left"
    fig.suptitle(_text(title or f"{y_key} vs {x_key}") + f"  (better: {better})", fontsize=10)
    return fig


def save_png(fig, path: str | Path, dpi: int = 130) -> Path:
    """Render ``fig`` to PNG and write it atomically to ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


# --------------------------------------------------------------------------- results files of a sweep


def mark_pareto(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Set ``pareto_lut`` / ``pareto_fps`` on each row (per dataset); return the fronts' row names."""
    fronts: dict[str, dict[str, list[str]]] = {}
    for flag, (x_key, maximize) in {"pareto_lut": ("lut", False), "pareto_fps": ("throughput_fps", True)}.items():
        fronts[flag] = {}
        for ds in dict.fromkeys(r["dataset"] for r in rows):
            front = pareto_front([r for r in rows if r["dataset"] == ds], x_key, "accuracy", maximize_x=maximize)
            fronts[flag][ds] = [r["name"] for r in front]
        names = {(ds, n) for ds, ns in fronts[flag].items() for n in ns}
        for r in rows:
            r[flag] = (r["dataset"], r["name"]) in names
    return fronts


def _si(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.{digits}g}{suffix}"
    return f"{v:.{digits}g}"


def _yes(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "**no**")


def markdown_table(rows: list[Mapping[str, Any]]) -> str:
    """A Markdown table of result rows (``*`` marks the per-dataset Pareto fronts: L = LUT, F = FPS).

    >>> print(markdown_table([{"name": "a", "model": "tfc", "dataset": "digits", "precision": "w1a1",
    ...     "technique": "QAT", "accuracy": 0.9, "lut": 1500.0, "throughput_fps": 1e5, "pareto_lut": True}]).splitlines()[2])
    | a | tfc | digits | w1a1 | QAT | 90.00 | - | - | - | 1.5k | - | - | - | 100k | - | - | - | - | L |
    """
    cols = ["row", "model", "data", "precision", "technique", "acc %", "weight bits", "BOPs", "MACs", "LUT",
            "BRAM18", "URAM", "DSP", "FPS", "latency us", "fits", "verified", "train s", "Pareto"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if i < 5 else "---:" for i in range(len(cols))) + "|"]
    for r in rows:
        acc = r.get("accuracy")
        train = r.get("train_seconds")
        pareto = "".join(s for s, k in (("L", "pareto_lut"), ("F", "pareto_fps")) if r.get(k)) or "-"
        cells = [r["name"], r.get("model", "-"), r.get("dataset", "-"), r.get("precision", "-"), r.get("technique", "-"),
                 "-" if acc is None else f"{100 * acc:.2f}", _si(r.get("weight_mem_bits")), _si(r.get("bops")),
                 _si(r.get("macs")), _si(r.get("lut")), _si(r.get("bram_18k")), _si(r.get("uram")), _si(r.get("dsp")),
                 _si(r.get("throughput_fps")), _si(r.get("latency_us")), _yes(r.get("fits")), _yes(r.get("verified")),
                 "-" if train is None else f"{train + (r.get('quantize_seconds') or 0):.0f}", pareto]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict[str, Any]], out_dir: str | Path, *, name: str = "sweep", description: str = "",
                  source: str | None = None, seconds: float | None = None) -> list[Path]:
    """Write ``results.json``, ``results.csv``, ``results.md`` and the plots into ``out_dir`` (atomically).

    Marks each row's ``pareto_lut`` / ``pareto_fps`` in place (see :func:`mark_pareto`).
    """
    out = Path(out_dir)
    fronts = mark_pareto(rows)
    atomic_write_json(out / "results.json", {
        "sweep": name, "description": description, "source": source,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds, "row_seconds_total": sum(r.get("row_seconds") or 0 for r in rows),
        "pareto": fronts, "rows": rows,
    })
    buf = io.StringIO()
    keys = [k for k in rows[0] if k != "recipe"] + ["recipe"]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "recipe": json.dumps(r.get("recipe"), separators=(",", ":"))})
    atomic_write_text(out / "results.csv", buf.getvalue())
    head = f"# {name}\n\n" + (f"{description.strip()}\n\n" if description.strip() else "")
    notes = ("Pareto (per dataset, maximize accuracy): L = minimize LUT, F = maximize FPS. Weight bits and BOPs "
             "count every weight (qonnx inference cost); LUT..DSP, FPS and latency are FINN's estimates.\n\n")
    plots = "".join(f"![{title}]({file})\n" for file, (_, _, title) in PLOTS.items())
    atomic_write_text(out / "results.md", head + markdown_table(rows) + "\n" + notes + plots)
    written = [out / "results.json", out / "results.csv", out / "results.md"]
    for file, (x_key, maximize, title) in PLOTS.items():
        try:
            fig = tradeoff_plot(rows, x_key, maximize_x=maximize, title=f"{title}: {name}")
        except ValueError:  # no row has both values (e.g. no accuracy): nothing to plot
            continue
        written.append(save_png(fig, out / file))
    return written
