"""Trade-off charts of result rows (a sweep's rows, a search's trials), with the Pareto front marked.

:func:`tradeoff_plot` draws accuracy against one cost or benefit, one panel and one front
per group (e.g. per dataset, since accuracies on different datasets do not compete);
:func:`front_plot` draws a search's trials (accuracy vs LUT, coloured by throughput) with its
three-objective front and the chosen design. Fronts come from :mod:`flow.core.pareto`.

>>> rows = [{"name": "a", "lut": 1000, "accuracy": 0.90}, {"name": "b", "lut": 2000, "accuracy": 0.95}]
>>> fig = tradeoff_plot(rows, "lut", group_key=None, title="accuracy vs LUT")
>>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
('LUT (estimated total)', 'test accuracy (%)')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.lines import Line2D

from flow.core import pareto
from flow.report.style import GREY, INK, PALETTE, figure
from flow.report.style import text as _text

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
    usable = [r for r in rows if pareto.value(r, x_key) is not None and pareto.value(r, y_key) is not None]
    if not usable:
        raise ValueError(f"no row has both {x_key!r} and {y_key!r}")
    if log_x and any(pareto.value(r, x_key) <= 0 for r in usable):
        log_x = False
    groups: dict[Any, list[Row]] = {}
    for r in usable:
        groups.setdefault(r.get(group_key) if group_key else None, []).append(r)
    scale = 100.0 if y_key == "accuracy" else 1.0

    fig = figure(4.6 * len(groups) + 1.0, 4.6)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for i, (ax, (group, members)) in enumerate(zip(axes, groups.items())):
        color = PALETTE[i % len(PALETTE)]
        front = sorted(pareto.front(members, {x_key: "max" if maximize_x else "min", y_key: "max"}), key=lambda r: pareto.value(r, x_key))
        on_front = {id(r) for r in front}
        spots: dict[tuple[float, float], list[Row]] = {}  # rows at identical points share one label
        for r in sorted(members, key=lambda r: id(r) not in on_front):  # front labels placed first
            spots.setdefault((pareto.value(r, x_key), scale * pareto.value(r, y_key)), []).append(r)
        labels = []
        for (x, y), here in spots.items():
            best = id(here[0]) in on_front
            ax.scatter([x], [y], s=60 if best else 36, zorder=3, linewidth=1.0 if best else 1.2,
                       color=color if best else "white", edgecolor=INK if best else color)
            style = {"fontsize": 8, "color": INK, "fontweight": "bold"} if best else {"fontsize": 7, "color": GREY}
            labels.append((x, y, " = ".join(str(r.get(label_key, "?")) for r in here), style))
        xs = [pareto.value(r, x_key) for r in front]
        ys = [scale * pareto.value(r, y_key) for r in front]
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
            Line2D([], [], color=color, marker="o", markeredgecolor=INK, label="Pareto front"),
            Line2D([], [], color=color, marker="o", markerfacecolor="white", linestyle="none", label="dominated"),
        ], fontsize=7, loc="lower right" if not maximize_x else "lower left")
        _place_labels(ax, labels)
    better = "up and right" if maximize_x else "up and left"
    fig.suptitle(_text(title or f"{y_key} vs {x_key}") + f"  (better: {better})", fontsize=10)
    return fig


def front_plot(rows: Sequence[Row], front: Sequence[Row], chosen: Row | None, title: str, *, marker_key: str | None = None):
    """Accuracy vs LUT of every trial row, coloured by log10 frames/s; the front circled and
    joined by its accuracy/LUT staircase, the chosen design starred. Rows are dicts with
    ``accuracy``, ``lut``, ``fps`` and ``number``; ``marker_key`` picks a marker per value
    (e.g. the technique when it was searched)."""
    fig = figure(7.0, 4.5)
    ax = fig.add_subplot()
    ok = [r for r in rows if pareto.value(r, "accuracy") is not None and pareto.value(r, "lut") is not None]
    if ok:
        fps = [math.log10(max(r.get("fps") or 1, 1)) for r in ok]
        groups: dict[Any, list[int]] = {}
        for i, r in enumerate(ok):
            groups.setdefault(r.get(marker_key) if marker_key else None, []).append(i)
        shapes = dict(zip(groups, "os^Dvp<>"))
        sc = None
        for key, idx in groups.items():
            sc = ax.scatter([ok[i]["lut"] for i in idx], [100 * ok[i]["accuracy"] for i in idx], c=[fps[i] for i in idx],
                            cmap="viridis", vmin=min(fps), vmax=max(fps), s=28, marker=shapes[key], zorder=2)
            if key is not None:  # a neutral legend entry per marker
                ax.scatter([], [], marker=shapes[key], color=GREY, s=28, label=_text(key))
        fig.colorbar(sc, ax=ax, label="log10 throughput (FPS)")
    if front:
        f = sorted(front, key=lambda r: r["lut"])
        ax.scatter([r["lut"] for r in f], [100 * r["accuracy"] for r in f], facecolors="none", edgecolors=PALETTE[1], s=90,
                   linewidths=1.5, label="Pareto front (acc, cost, FPS)", zorder=3)
        best, xs, ys = -1.0, [], []
        for r in f:  # the 2-D accuracy/LUT staircase
            if r["accuracy"] > best:
                best = r["accuracy"]
                xs.append(r["lut"])
                ys.append(100 * best)
        ax.step(xs, ys, where="post", color=PALETTE[1], alpha=0.5, zorder=1)
    if chosen is not None:
        ax.scatter([chosen["lut"]], [100 * chosen["accuracy"]], marker="*", s=260, color="orange", edgecolors=INK,
                   label=f"chosen (trial {chosen['number']})", zorder=4)
    ax.set_xlabel("LUT (FINN estimate)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(_text(title), fontsize=10)
    ax.grid(alpha=0.3)
    if front or chosen or (ok and marker_key):
        ax.legend(loc="lower right", fontsize=8)
    return fig
