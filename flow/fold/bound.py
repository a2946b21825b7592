"""Lower bounds on a design's cycles per frame under a board's caps: how far a folding is from the limit.

No folding of the design, on this board, can have fewer max cycles per frame than:

* the **input stream**: FINN streams a frame into its first layer one word per cycle, and a
  word holds at most as many elements as that layer's widest legal input (its largest
  PE/SIMD there, e.g. one pixel of a 224x224 image: 50,176 cycles). The count is FINN's own
  folded input shape of each layer the design's input feeds, over every legal setting;
* the **fastest layer**: every unit (layer or coupled pair) at its fastest legal setting
  that fits the caps by itself; the slowest of those;
* the **caps**: the linear-programming relaxation of picking one setting per unit under the
  caps, converters included (:mod:`flow.fold.program`): the smallest bound at which a
  fractional selection fits. Infeasible there means no folding fits, proven;
* the **search**: bounds the exact MILP proved infeasible (:mod:`flow.fold.search`).

:class:`CycleLimit` carries the largest of these, what it comes from, and the fraction of it
a design reaches (bound / max cycles: 1.0 is at the limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow.fold.cost_model import CostModel
from flow.fold.program import program, relaxation
from flow.fold.select import Selector, Unit

#: What a bound comes from, in the order a tie is explained (the simplest first).
SOURCES = ("input_stream", "fastest_layer", "caps", "search")


@dataclass(frozen=True)
class CycleLimit:
    """The lower bounds on max cycles per frame of a design under a board's caps, and the design's distance from them."""

    cycles: int  # the largest bound
    source: str  # one of SOURCES
    layer: str | None  # the layer that sets it (input stream, fastest layer)
    max_cycles: int  # the design's
    input_stream: int
    input_layer: str | None
    fastest_layer: int
    fastest_name: str | None
    caps: int
    search: int
    optimal: bool

    @property
    def fraction(self) -> float:
        """bound / max cycles: 1.0 when the design sits on its bound."""
        return self.cycles / self.max_cycles if self.max_cycles else 0.0

    @property
    def gap(self) -> float:
        """(max cycles - bound) / max cycles: how much faster some folding might still be."""
        return 1.0 - self.fraction

    def as_dict(self) -> dict:
        return {
            "cycles": self.cycles, "source": self.source, "layer": self.layer, "fraction": round(self.fraction, 6),
            "input_stream_cycles": self.input_stream, "input_layer": self.input_layer,
            "fastest_layer_cycles": self.fastest_layer, "fastest_layer": self.fastest_name,
            "caps_cycles": self.caps, "search_cycles": self.search, "optimal": self.optimal,
        }


def input_stream_bound(cm: CostModel, units: list[Unit]) -> tuple[int, str | None]:
    """Fewest words per frame the design's input can arrive in, and the layer it enters: FINN's folded input shapes."""
    best, where = 0, None
    for u in units:
        for j, name in enumerate(u.names):
            for port in cm.input_ports(name):
                words = min(cm.input_words(name, s[j], port) for s in u.settings)
                if words > best:
                    best, where = words, name
    return best, where


def fastest_layer_bound(units: list[Unit]) -> tuple[int, str | None]:
    """The slowest unit at its fastest setting (units hold only settings that fit the caps alone)."""
    u = max(units, key=lambda u: int(u.cycles[0]))
    return int(u.cycles[0]), u.names[-1]


def separable_fits(search: Selector, t: int) -> bool:
    """Whether every resource alone fits when each unit takes its cheapest setting at <= t for that resource."""
    need = np.zeros(len(search.budget))
    for u in search.units:
        n = int(np.searchsorted(u.cycles, t, side="right"))
        if n == 0:
            return False
        need += u.res[:n].min(axis=0)
    return bool(np.all(need <= search.budget + 1e-9))


def lp_fits(search: Selector, t: int) -> bool:
    """Whether the LP relaxation of the selection at <= t cycles fits the caps, converters included."""
    p = program(search, t)
    return p is not None and relaxation(p).status != 2


def caps_bound(search: Selector, hi: int | None = None) -> int | None:
    """Index into ``search.bounds`` of the smallest bound whose LP relaxation fits (None: none does, so nothing fits).

    ``hi``: an index known to fit (an incumbent's), to search below. Both tests only get
    easier as the bound grows (more settings allowed), so a binary search finds it; the
    per-resource test, cheaper, narrows the range first.
    """
    bounds = search.bounds
    top = len(bounds) - 1 if hi is None else hi
    if hi is None and not lp_fits(search, int(bounds[top])):
        return None
    lo = first_true(lambda i: separable_fits(search, int(bounds[i])), 0, top)
    return first_true(lambda i: lp_fits(search, int(bounds[i])), lo, top)


def first_true(test, lo: int, hi: int) -> int:
    """The smallest i in [lo, hi] with ``test(i)``, for a test monotone in i and true at ``hi``."""
    while lo < hi:
        mid = (lo + hi) // 2
        if test(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def cycle_limit(cm: CostModel, units: list[Unit], max_cycles: int, caps: int, search: int, optimal: bool) -> CycleLimit:
    """The bounds of a design together: the largest, its source (ties: the simplest explanation), the distance."""
    inp, inp_layer = input_stream_bound(cm, units)
    fast, fast_layer = fastest_layer_bound(units)
    if optimal:
        search = max(search, max_cycles)
    values = {"input_stream": inp, "fastest_layer": fast, "caps": caps, "search": search}
    top = max(values.values())
    source = next(s for s in SOURCES if values[s] == top)
    layer = {"input_stream": inp_layer, "fastest_layer": fast_layer}.get(source)
    return CycleLimit(top, source, layer, max_cycles, inp, inp_layer, fast, fast_layer, caps, search, optimal)
