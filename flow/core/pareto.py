"""Pareto fronts: the one definition of "no other point is better", used by every wing.

A point dominates another when it is at least as good on every objective and strictly
better on one. :func:`non_dominated` works on a numeric array (the folding optimizer's
options: cycles and resources, all minimized); :func:`front` on result rows (dicts, or typed
records whose attributes are the objectives) with named objectives, each to ``"min"`` or ``"max"`` (a sweep's accuracy vs LUT, a search's
accuracy, cost and frames/s). Rows missing an objective or holding a non-finite value are
left out of the front.

>>> non_dominated(np.array([[4, 1.0], [2, 2.0], [2, 3.0], [1, 9.0]]))
[3, 1, 0]
>>> rows = [{"n": "a", "lut": 1000, "acc": 0.90}, {"n": "b", "lut": 2000, "acc": 0.95},
...         {"n": "c", "lut": 3000, "acc": 0.93}, {"n": "d", "lut": 500, "acc": None}]
>>> [r["n"] for r in front(rows, {"lut": "min", "acc": "max"})]
['a', 'b']
>>> dominates({"lut": 1, "acc": 0.9}, {"lut": 2, "acc": 0.9}, {"lut": "min", "acc": "max"})
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

import numpy as np

Sense = Literal["min", "max"]
R = TypeVar("R")


def non_dominated(points: np.ndarray) -> list[int]:
    """Indices of the rows of ``points`` (every column minimized) that no other row dominates.

    Returned in lexicographic order of the points; of identical rows only the first is kept.
    """
    m = np.asarray(points, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"points must be a 2-D array, got shape {m.shape}")
    order = np.lexsort(m.T[::-1])
    kept: list[int] = []
    for i in order:
        if not kept or not np.any(np.all(m[kept] <= m[i], axis=1)):
            kept.append(int(i))
    return kept


def value(row: Any, key: str) -> float | None:
    """``row[key]`` (a mapping) or ``row.key`` (a record) as a finite float, or None (missing, bool, non-numeric, NaN or infinite)."""
    v = row.get(key) if isinstance(row, Mapping) else getattr(row, key, None)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _signed(row: Any, objectives: Mapping[str, Sense]) -> tuple[float, ...] | None:
    vals = []
    for key, sense in objectives.items():
        v = value(row, key)
        if v is None:
            return None
        vals.append(v if sense == "max" else -v)
    return tuple(vals)


def dominates(a: Any, b: Any, objectives: Mapping[str, Sense]) -> bool:
    """Whether row ``a`` is at least as good as ``b`` on every objective and better on one."""
    pa, pb = _signed(a, objectives), _signed(b, objectives)
    if pa is None or pb is None:
        return False
    return all(x >= y for x, y in zip(pa, pb)) and any(x > y for x, y in zip(pa, pb))


def front(rows: Sequence[R], objectives: Mapping[str, Sense]) -> list[R]:
    """The rows no other row dominates (rows with equal values are all kept), in input order."""
    pts = [(p, r) for r in rows if (p := _signed(r, objectives)) is not None]
    return [r for p, r in pts if not any(all(x >= y for x, y in zip(q, p)) and q != p for q, _ in pts)]
