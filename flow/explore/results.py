"""The results files of ``qflow compare``: results.json, results.csv, results.md and trade-off plots.

A row (:class:`~flow.explore.rows.SweepRow`) is *Pareto-optimal* when no other row is at least
as good on both axes and strictly better on one (:mod:`flow.core.pareto`).
:func:`pareto_front` finds those rows (typed rows or plain dicts); :func:`write_results` writes a sweep's
``results.json``, ``results.csv``, ``results.md`` (:func:`markdown_table`) and the plots in
:data:`PLOTS` (:func:`flow.report.tradeoff.tradeoff_plot`). LUT is layers plus converters
(:data:`flow.explore.rows.LUT_MEANING`).

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
>>> import tempfile
>>> rows = [SweepRow(r["name"], dataset="mnist", lut=r["lut"], accuracy=r["accuracy"], throughput_fps=1e6) for r in rows]
>>> [p.name for p in write_results(rows, tempfile.mkdtemp(), name="demo")]
['results.json', 'results.csv', 'results.md', 'accuracy_vs_lut.png', 'accuracy_vs_fps.png']
>>> [r.name for r in mark_pareto(rows)[0] if r.pareto_lut]
['a', 'b', 'd']
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from flow.core import pareto
from flow.core.errors import ConfigError
from flow.core.fileio import atomic_write_json, atomic_write_text, parse_json, read_regular
from flow.explore.rows import SweepRow
from flow.explore.spread import SPREAD, overlapping, twin_comparisons
from flow.report.style import save_png
from flow.report.tradeoff import tradeoff_plot

__all__ = ["COMPARE_FILES", "PLOTS", "mark_pareto", "markdown_table", "pareto_front", "results_unchanged", "write_results"]

Row = TypeVar("Row")

#: Plots written by :func:`write_results`: file -> (x key, maximize x, title).
PLOTS = {
    "accuracy_vs_lut.png": ("lut", False, "Accuracy vs LUT"),
    "accuracy_vs_fps.png": ("throughput_fps", True, "Accuracy vs throughput"),
}
#: Every file :func:`write_results` may write.
COMPARE_FILES = ("results.json", "results.csv", "results.md", *PLOTS)
MAX_RESULTS_BYTES = 256 * 2**20

def pareto_front(
    rows: Sequence[Row],
    x_key: str,
    y_key: str,
    *,
    maximize_x: bool = False,
    maximize_y: bool = True,
) -> list[Row]:
    """The rows no other row dominates on ``x_key`` and ``y_key``, sorted by ``x_key`` ascending.

    By default ``x`` is a cost to minimize (LUT, BOPs) and ``y`` a quality to maximize
    (accuracy); ``maximize_x=True`` for a benefit such as frames/s. Rows whose ``x`` or ``y``
    is missing or not a finite number are ignored. Rows with identical values are all kept.

    >>> pts = [{"x": 1, "y": 1}, {"x": 1, "y": 1}, {"x": 2, "y": 0.5}, {"x": 0.5, "y": None}]
    >>> pareto_front(pts, "x", "y")
    [{'x': 1, 'y': 1}, {'x': 1, 'y': 1}]
    """
    sense = {x_key: "max" if maximize_x else "min", y_key: "max" if maximize_y else "min"}
    sy = 1.0 if maximize_y else -1.0
    return sorted(pareto.front(rows, sense), key=lambda r: (pareto.value(r, x_key), -sy * pareto.value(r, y_key)))


# --------------------------------------------------------------------------- results files of a sweep


def mark_pareto(rows: Sequence[SweepRow]) -> tuple[list[SweepRow], dict[str, dict[str, list[str]]]]:
    """``rows`` with ``pareto_lut`` / ``pareto_fps`` set (per dataset), and the fronts' row names."""
    fronts: dict[str, dict[str, list[str]]] = {}
    flags: dict[str, list[bool]] = {}
    for flag, (x_key, maximize) in {"pareto_lut": ("lut", False), "pareto_fps": ("throughput_fps", True)}.items():
        fronts[flag] = {}
        for ds in dict.fromkeys(r.dataset for r in rows):
            front = pareto_front([r for r in rows if r.dataset == ds], x_key, "accuracy", maximize_x=maximize)
            fronts[flag][ds] = [r.name for r in front]  # type: ignore[index]
        names = {(ds, n) for ds, ns in fronts[flag].items() for n in ns}
        flags[flag] = [(r.dataset, r.name) in names for r in rows]
    marked = [r.replace(pareto_lut=lut, pareto_fps=fps) for r, lut, fps in zip(rows, flags["pareto_lut"], flags["pareto_fps"])]
    return marked, fronts


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: list[str]) -> None:
    """``rows`` as CSV with ``columns`` (others left out), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _si(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.{digits}g}{suffix}"
    return f"{v:.{digits}g}"


def _yes(v: Any) -> str:
    return "-" if v is None else ("yes" if v else "**no**")


def _acc(r: SweepRow) -> str:
    acc, std = r.accuracy, r.accuracy_std
    if acc is None:
        return "-"
    return f"{100 * acc:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


def _range(r: SweepRow) -> str:
    lo, hi = r.accuracy_min, r.accuracy_max
    return "-" if lo is None or hi is None else f"{100 * lo:.2f}-{100 * hi:.2f}"


def markdown_table(rows: Sequence[SweepRow]) -> str:
    """A Markdown table of result rows (``*`` marks the per-dataset Pareto fronts: L = LUT, F = FPS).

    >>> print(markdown_table([SweepRow("a", model="tfc", dataset="digits", precision="w1a1",
    ...     technique="QAT", accuracy=0.9, lut=1500.0, throughput_fps=1e5, pareto_lut=True)]).splitlines()[2])
    | a | tfc | digits | w1a1 | QAT | 90.00 | - | - | - | 1.5k | - | - | - | 100k | - | - | - | - | L |
    """
    seeded = any(r.seeded for r in rows)
    overlap = overlapping(rows) if seeded else {}
    cols = ["row", "model", "data", "precision", "technique", "acc %", *(["seeds", "acc range %", "inside the spread of"] if seeded else []),
            "weight bits", "BOPs", "MACs", "LUT",
            "BRAM18", "URAM", "DSP", "FPS", "latency us", "fits", "verified", "train s", "Pareto"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if i < 5 else "---:" for i in range(len(cols))) + "|"]
    for r in rows:
        train = r.train_seconds
        pareto = "".join(s for s, flag in (("L", r.pareto_lut), ("F", r.pareto_fps)) if flag) or "-"
        cells = [r.name, r.model or "-", r.dataset or "-", r.precision or "-", r.technique or "-",
                 _acc(r), *([len(r.seeds or ()), _range(r), ", ".join(overlap.get(r.name, ())) or "-"] if seeded else []),
                 _si(r.weight_mem_bits), _si(r.bops),
                 _si(r.macs), _si(r.lut), _si(r.bram_18k), _si(r.uram), _si(r.dsp),
                 _si(r.throughput_fps), _si(r.latency_us), _yes(r.fits), _yes(r.verified),
                 "-" if train is None else f"{train + (r.quantize_seconds or 0):.0f}", pareto]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def twins_markdown(rows: Sequence[SweepRow]) -> str:
    """Each technique row against its QAT twin (:func:`flow.explore.spread.twin_comparisons`), one line each."""
    lines, comparisons = [], twin_comparisons(rows)
    for c in comparisons:
        delta = "-" if c.delta is None else f"{100 * c.delta:+.2f} points"
        verdict = {"better": "better beyond the seed spread", "worse": "worse beyond the seed spread",
                   "inside the spread": "inside the seed spread: not shown to differ"}.get(c.verdict, "unknown")
        lines.append(f"- {c.row} ({c.technique}) vs its QAT twin {c.twin}: {delta}, {verdict} ({c.seeds} seed(s))")
    distill = [c for c in comparisons if "KD" in str(c.technique)]
    if distill:
        wins = [c.row for c in distill if c.verdict == "better"]
        lines.append("- Distillation " + (f"beats its QAT twin beyond the seed spread in: {', '.join(wins)}" if wins else
                                          "does not beat its QAT twin beyond the seed spread in any configuration"))
    return ("## Against the QAT twin\n\n" + "\n".join(lines) + "\n\n") if lines else ""


def results_unchanged(out_dir: str | Path, rows: Sequence[SweepRow], *, name: str, description: str = "",
                      seeds: Sequence[int] | None = None) -> bool:
    """True when ``out_dir`` already holds the results files of exactly these rows (same sweep,
    description, rows and fronts): rewriting them would change nothing but their time stamps."""
    out = Path(out_dir)
    if not all((out / f).is_file() for f in ("results.json", "results.csv", "results.md")):
        return False
    try:
        old = parse_json(read_regular(out / "results.json", "results", ConfigError, limit=MAX_RESULTS_BYTES, follow=False),
                         "results.json", ConfigError)
    except ConfigError:
        return False
    new, fronts = mark_pareto(rows)
    return isinstance(old, dict) and (old.get("sweep"), old.get("description"), old.get("seeds"), old.get("pareto"), old.get("rows")) == (
        name, description, None if seeds is None else list(seeds), fronts, [r.to_json() for r in new])


def write_results(rows: Sequence[SweepRow], out_dir: str | Path, *, name: str = "sweep", description: str = "",
                  source: str | None = None, seconds: float | None = None, complete: bool = True,
                  seeds: Sequence[int] | None = None) -> list[Path]:
    """Write ``results.json``, ``results.csv``, ``results.md`` and the plots into ``out_dir`` (atomically).

    The rows written carry their ``pareto_lut`` / ``pareto_fps`` (see :func:`mark_pareto`).
    ``complete`` is false when the sweep stopped before its last row (``results.json`` says so).
    ``seeds``: the sweep's seeds, when its rows are means over them (:func:`flow.explore.spread.aggregate`).
    """
    out = Path(out_dir)
    rows, fronts = mark_pareto(rows)
    records = [r.to_json() for r in rows]
    atomic_write_json(out / "results.json", {
        "sweep": name, "description": description, "source": source,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds, "row_seconds_total": sum(r.row_seconds or 0 for r in rows),
        "complete": complete, "seeds": None if seeds is None else list(seeds),
        **({"spread": SPREAD} if seeds is not None else {}), "twins": [c.to_json() for c in twin_comparisons(rows)], "pareto": fronts,
        "rows": records,
    })
    buf = io.StringIO()
    keys = [k for k in records[0] if k not in ("recipe", "runs")] + ["recipe"]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({**r, "recipe": json.dumps(r.get("recipe"), separators=(",", ":"))})
    atomic_write_text(out / "results.csv", buf.getvalue())
    head = f"# {name}\n\n" + (f"{description.strip()}\n\n" if description.strip() else "")
    if not complete:
        head += "**Incomplete**: the sweep stopped before its last row; these are the rows it finished.\n\n"
    notes = ("Pareto (per dataset, maximize accuracy): L = minimize LUT, F = maximize FPS. Weight bits and BOPs "
             "count every weight (qonnx inference cost); LUT..DSP are FINN's estimates of the layers plus the data-width "
             "converters, FPS and latency FINN's estimates.\n\n")
    if seeds is not None:
        notes += (f"Seeds {', '.join(map(str, seeds))}: accuracy is the mean ± the sample standard deviation over the seeds, "
                  "and every other number the mean; the acc range is the seeds' [min, max]. A difference between two rows "
                  "is inside the spread when their ranges overlap (\"inside the spread of\" names those rows).\n\n")
    notes += twins_markdown(rows)
    plots = "".join(f"![{title}]({file})\n" for file, (_, _, title) in PLOTS.items())
    atomic_write_text(out / "results.md", head + markdown_table(rows) + "\n" + notes + plots)
    written = [out / "results.json", out / "results.csv", out / "results.md"]
    for file, (x_key, maximize, title) in PLOTS.items():
        try:
            fig = tradeoff_plot(records, x_key, maximize_x=maximize, title=f"{title}: {name}")
        except ValueError:  # no row has both values (e.g. no accuracy): nothing to plot
            continue
        written.append(save_png(fig, out / file))
    return written
