"""The search for the fastest selection that fits: a greedy incumbent, improved by the exact MILP per cycle bound.

1. **Incumbent.** For a resource weighting, every unit takes its cheapest setting at <= T
   (:meth:`Selector.sweep`, all bounds T at once); the smallest T where layers and
   converters fit is a folding that fits. The weights adapt Lagrangian-style (raising the
   weight of what overflows just below the best T) over a few rounds. Below it, a binary
   search rounds the LP relaxation at each bound (:func:`lp_round`: a vertex of the LP has
   at most one fractional unit per binding cap; their settings are tried in turn, and the
   caps tightened by what converters and rounding overflowed).
2. **Improvement.** A binary search over the bounds between the proven lower bound and the
   incumbent: at each bound the MILP (:func:`flow.fold.program.exact`, stopping at the first
   selection that fits) either finds one (the new incumbent, at its own max cycles), proves
   none exists (so none exists below either: the lower bound rises), or hits its time
   limit (unknown: the search moves up, the lower bound stays). A time-out is never taken
   for "does not fit".
3. **Cheapest.** At the final bound the MILP picks the selection with the smallest summed
   budget fractions, within its time limit (else the found one stays).

The outcome is proven optimal when the lower bound reaches the incumbent's bound.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from flow.fold.program import Status, exact, program, relaxation
from flow.fold.select import Selector


@dataclass(frozen=True)
class Outcome:
    """The search's answer: selection, its bound index, the proven lower bound index, and the work done."""

    sel: list[int] | None
    at: int  # index into Selector.bounds of sel's max cycles
    lower: int  # every bound below this index is proven infeasible
    status: Status  # FOUND, or (no selection) INFEASIBLE proven / UNKNOWN
    milp_calls: int = 0
    timeouts: int = 0

    @property
    def optimal(self) -> bool:
        return self.sel is not None and self.lower >= self.at


def greedy(search: Selector, rounds: int = 40) -> list[int] | None:
    """The fastest fitting selection (converters included) of Lagrangian-weighted sweeps, or None."""
    b = search.budget
    best: list[int] | None = None
    best_c = np.inf
    weights = [np.ones(len(b))] + [np.eye(len(b))[i] + 0.05 for i in range(len(b))]
    lam = np.ones(len(b))
    for it in range(rounds):
        w = weights[it] if it < len(weights) else lam
        usage, picks = search.sweep(w)
        ok = np.flatnonzero(search.fits(usage))
        ok = ok[search.bounds[ok] < best_c]
        if len(ok):
            sel = _first_with_converters(search, picks, ok)
            if sel is not None and search.max_cycles(sel) < best_c:
                best, best_c = sel, search.max_cycles(sel)
        below = (ok[0] if len(ok) else len(search.bounds)) - 1
        if below < 0:
            break
        ratio = usage[below] / np.maximum(b, 1e-9)
        lam = lam * np.clip(ratio, 0.5, 4.0) ** 0.7
    return best


def _first_with_converters(search: Selector, picks: list[np.ndarray], ok: np.ndarray) -> list[int] | None:
    """Among the bounds ``ok`` where a sweep's layers fit, the selection at the smallest one where converters fit too."""
    def at(k: int) -> list[int]:
        return [int(p[ok[k]]) for p in picks]

    def fits(k: int) -> bool:
        return bool(search.fits(search.usage(at(k))))

    if not fits(len(ok) - 1):
        return None
    lo, hi = 0, len(ok) - 1
    while lo < hi:  # converters cost less as the bound grows in nearly every design; checked below anyway
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return at(hi)


def lp_round(search: Selector, t: int, rounds: int = 4, combos: int = 64) -> list[int] | None:
    """A selection at <= ``t`` cycles that fits, rounded from the LP relaxation, or None (not a proof)."""
    p = program(search, t)
    if p is None:
        return None
    reserve = np.zeros(len(search.budget))
    for _ in range(rounds):
        out = relaxation(p, reserve)
        if out.status != 0:
            return None
        worst = None
        for sel in itertools.islice(itertools.product(*p.support(out.x[: p.n_x])), combos):
            use = search.usage(list(sel))
            if search.fits(use):
                return list(sel)
            over = np.maximum(use - search.budget, 0) * search.scale
            worst = over if worst is None else np.minimum(worst, over)
        reserve = reserve + worst * 1.05 + 1e-9
    return None


def improve(search: Selector, sel: list[int], lower: int) -> list[int]:
    """``sel`` or a faster fitting selection found by rounding the LP relaxation, binary search over the bounds below it."""
    lo, hi = lower, _index(search, sel)
    while lo < hi:
        mid = (lo + hi) // 2
        found = lp_round(search, int(search.bounds[mid]))
        if found is not None:
            sel, hi = found, _index(search, found)
        else:
            lo = mid + 1
    return sel


def solve(search: Selector, lower: int, time_limit: float, per_call: float = 10.0) -> Outcome:
    """The fastest selection that fits, searching bounds from index ``lower`` (everything below proven infeasible)."""
    t_end = time.perf_counter() + time_limit
    left = lambda: t_end - time.perf_counter()  # noqa: E731
    bounds = search.bounds
    calls = timeouts = 0
    sel = greedy(search)
    if sel is None:  # no heuristic selection fits: ask the MILP at the largest bound
        r = exact(search, int(bounds[-1]), time_limit=max(left(), per_call), cheapest=False)
        calls += 1
        if r.sel is None:
            return Outcome(None, len(bounds) - 1, lower if r.status is Status.UNKNOWN else len(bounds), r.status, calls, int(r.status is Status.UNKNOWN))
        sel = r.sel
    sel = improve(search, sel, lower)
    hi = _index(search, sel)
    lo = lower
    while lo < hi and left() > 0:
        mid = (lo + hi) // 2
        r = exact(search, int(bounds[mid]), time_limit=min(per_call, left()), cheapest=False)
        calls += 1
        if r.status is Status.FOUND:
            sel, hi = r.sel, _index(search, r.sel)
        elif r.status is Status.INFEASIBLE:
            lo = lower = mid + 1  # infeasible here, so at every smaller bound too
        else:
            lo, timeouts = mid + 1, timeouts + 1
    r = exact(search, int(bounds[hi]), time_limit=min(per_call, max(left(), 2.0)), cheapest=True)
    calls += 1
    if r.status is Status.FOUND:
        sel = r.sel
    timeouts += r.status is Status.UNKNOWN
    return Outcome(sel, _index(search, sel), lower, Status.FOUND, calls, timeouts)


def _index(search: Selector, sel: list[int]) -> int:
    return int(np.searchsorted(search.bounds, search.max_cycles(sel)))
