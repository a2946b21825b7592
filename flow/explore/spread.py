"""Seeds in a sweep: one result per row from its runs on several seeds, and which differences are noise.

A sweep that says ``seeds = [0, 1, 2]`` runs every row once per seed (each run is a whole
``qflow run`` with the recipe's ``seed`` replaced). :func:`aggregate` folds a row's runs into
one result row:

* ``accuracy`` is the mean over the seeds; ``accuracy_std`` the sample standard deviation
  (``ddof=1``; None for one seed), ``accuracy_min`` / ``accuracy_max`` the range, and
  ``accuracy_by_seed`` every run's value;
* hardware numbers (LUT .. DSP, frames/s, latency, weight bits, BOPs, MACs) and times are
  means too (the trained weights move thresholds, so LUT may differ a little per seed);
  ``fits`` and ``verified`` hold only when they hold for every seed; errors are kept per seed;
* ``runs`` holds each seed's own result row.

The spread of a row is its seed range ``[accuracy_min, accuracy_max]``. A difference between
two rows is *inside the spread* when their ranges overlap: some seed of the worse row did as
well as some seed of the better one (:func:`within_spread`). :func:`overlapping` names, for
every row, the rows of its dataset it cannot be told apart from; :func:`twin_comparisons`
compares every row trained with a technique (PTQ, distillation, low rank, ...) with its *QAT
twin*: the plain-QAT row with the same model, data, training and build.

>>> runs = [SweepRow("a", dataset="d", seed=s, accuracy=acc, lut=100.0, fits=True, verified=True)
...         for s, acc in ((0, 0.90), (1, 0.92), (2, 0.91))]
>>> row = aggregate(runs)
>>> round(row.accuracy, 4), round(row.accuracy_std, 4), row.accuracy_min, row.accuracy_max, row.seeds
(0.91, 0.01, 0.9, 0.92, (0, 1, 2))
>>> within_spread(row, SweepRow("b", accuracy_min=0.915, accuracy_max=0.95))
True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from flow.explore.rows import COST_FIELDS, RESOURCE_FIELDS, SweepRow, TwinComparison

__all__ = ["SPREAD", "aggregate", "overlapping", "twin_comparisons", "within_spread"]

#: How a row's spread is measured, as results files say it.
SPREAD = ("mean over seeds; spread = the seed range [min, max] (std: sample standard deviation); "
          "a difference is inside the spread when the two rows' seed ranges overlap")
#: Numbers averaged over seeds.
MEAN_KEYS = (*COST_FIELDS, *RESOURCE_FIELDS, "lut_layers", "throughput_fps", "latency_us", "train_seconds", "quantize_seconds")


def _mean(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return statistics.fmean(vals) if vals and len(vals) == len(values) else None


def _all(values: Sequence[Any]) -> bool | None:
    return None if any(v is None for v in values) else all(bool(v) for v in values)


def aggregate(runs: Sequence[SweepRow]) -> SweepRow:
    """One result row from a row's runs on each seed (see the module docstring); ``runs`` share a name."""
    if not runs:
        raise ValueError("aggregate needs at least one run")
    first = runs[0]
    accs = [r.accuracy for r in runs]
    known = [float(a) for a in accs if isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)]
    every = len(known) == len(runs)
    return first.replace(
        seed=None,
        seeds=tuple(r.seed for r in runs),
        accuracy=statistics.fmean(known) if every else None,
        accuracy_std=statistics.stdev(known) if every and len(runs) > 1 else None,
        accuracy_min=min(known) if every else None,
        accuracy_max=max(known) if every else None,
        accuracy_by_seed=tuple(accs),
        **{k: _mean([getattr(r, k) for r in runs]) for k in MEAN_KEYS},
        fits=_all([r.fits for r in runs]),
        verified=_all([r.verified for r in runs]),
        row_seconds=sum(r.row_seconds or 0.0 for r in runs),
        error="; ".join(f"seed {r.seed}: {r.error}" for r in runs if r.error) or None,
        runs=tuple(runs),
        pareto_lut=None, pareto_fps=None,
    )


def _range(row: SweepRow) -> tuple[float, float] | None:
    lo = row.accuracy_min if row.accuracy_min is not None else row.accuracy
    hi = row.accuracy_max if row.accuracy_max is not None else row.accuracy
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi)):
        return None
    return float(lo), float(hi)  # type: ignore[arg-type]


def within_spread(a: SweepRow, b: SweepRow) -> bool | None:
    """Whether the seed ranges of ``a`` and ``b`` overlap (None when either has no accuracy).

    A row run on one seed has a range of one point, so two one-seed rows are inside each
    other's spread only when equal: one seed says nothing about noise.
    """
    ra, rb = _range(a), _range(b)
    if ra is None or rb is None:
        return None
    return ra[0] <= rb[1] and rb[0] <= ra[1]


def overlapping(rows: Sequence[SweepRow]) -> dict[str, list[str]]:
    """For every row, the other rows of its dataset whose seed range overlaps its own (file order).

    Rows are sorted by their range's low end and swept once, so this is ``O(n log n + pairs)``.
    """
    out: dict[str, list[str]] = {r.name: [] for r in rows}
    order = {r.name: i for i, r in enumerate(rows)}
    by_ds: dict[Any, list[tuple[float, float, str]]] = {}
    for r in rows:
        rng = _range(r)
        if rng is not None:
            by_ds.setdefault(r.dataset, []).append((*rng, r.name))
    for items in by_ds.values():
        items.sort()
        active: list[tuple[float, str]] = []
        for lo, hi, name in items:
            active = [(h, n) for h, n in active if h >= lo]
            for _, other in active:
                out[name].append(other)
                out[other].append(name)
            active.append((hi, name))
    return {k: sorted(v, key=order.__getitem__) for k, v in out.items()}


def _identity(row: SweepRow) -> Any:
    if row.recipe is None:
        return None
    return repr(sorted((k, repr(v)) for k, v in row.recipe.items() if k not in ("name", "seed", "technique")))


def twin_comparisons(rows: Sequence[SweepRow]) -> list[TwinComparison]:
    """Every technique row against its QAT twin: the mean difference and whether it is beyond the spread.

    ``verdict`` is ``"better"`` / ``"worse"`` (the seed ranges do not overlap), ``"inside the
    spread"``, or ``"unknown"`` (an accuracy is missing).
    """
    keyed = {_identity(t): t for t in rows if t.technique == "QAT" and _identity(t) is not None}
    out = []
    for r in rows:
        twin = None if r.technique == "QAT" else keyed.get(_identity(r))
        if twin is None:
            continue
        same = within_spread(r, twin)
        delta = None if r.accuracy is None or twin.accuracy is None else r.accuracy - twin.accuracy
        verdict = "unknown" if same is None or delta is None else "inside the spread" if same else "better" if delta > 0 else "worse"
        out.append(TwinComparison(row=r.name, technique=r.technique, twin=twin.name, delta=delta,
                                  seeds=len(r.seeds) if r.seeds else 1, verdict=verdict))
    return out
