"""Picking one setting per folding unit: Pareto pruning, a fast heuristic sweep, and an exact MILP.

A :class:`Unit` is a layer (or a coupled sliding-window + Pool/VVAU pair) with its legal
settings. Settings are pruned to those no other setting beats in cycles and every resource
*among settings with the same streams to neighbouring units*, because the stream words
decide which data-width converters FINN inserts between units (their price is FINN's, see
:mod:`flow.compile.converters`). :class:`Selector` answers "the cheapest selection with every unit at
<= T cycles": :meth:`Selector.sweep` for all bounds at once under resource weights (no
converters, a fast upper bound), :meth:`Selector.exact` as a MILP (scipy/HiGHS) that also
prices every converter between units, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import lil_matrix

from flow.core.pareto import non_dominated
from flow.core.vocab import RESOURCES
from flow.fold.cost_model import CostModel, LayerCost


@dataclass
class Unit:
    """Layers folded together and their kept settings, sorted by cycles."""

    names: tuple[str, ...]
    settings: list[tuple[dict[str, Any], ...]]
    cycles: np.ndarray
    res: np.ndarray  # (options, 4) in RESOURCES order, converters inside the unit included
    costs: list[tuple[LayerCost, ...]]

    def subset(self, keep) -> "Unit":
        keep = list(keep)
        return Unit(self.names, [self.settings[i] for i in keep], self.cycles[keep], self.res[keep], [self.costs[i] for i in keep])


def boundary_streams(cm: CostModel, inside: tuple[str, ...], names: tuple[str, ...], costs: tuple[LayerCost, ...]) -> tuple:
    """The streams of layers ``names`` (with ``costs``) to layers outside ``inside``."""
    cost = dict(zip(names, costs))
    sig = []
    for k, e in enumerate(cm.edges):
        if e.producer in cost and e.consumer not in inside:
            sig.append((k, dict(cost[e.producer].outs)[e.out_idx]))
        if e.consumer in cost and e.producer not in inside:
            sig.append((k, dict(cost[e.consumer].ins)[e.in_idx]))
    return tuple(sig)


def prune(cm: CostModel, inside: tuple[str, ...], names: tuple[str, ...], cycles: np.ndarray, res: np.ndarray, costs: list[tuple[LayerCost, ...]]) -> list[int]:
    """Pareto-optimal options per group of equal boundary streams, sorted by cycles then resources."""
    groups: dict[tuple, list[int]] = {}
    for i, cs in enumerate(costs):
        groups.setdefault(boundary_streams(cm, inside, names, cs), []).append(i)
    keep = [idx[j] for idx in groups.values() for j in non_dominated(np.column_stack([cycles[idx], res[idx]]))]
    return sorted(keep, key=lambda i: (cycles[i], *res[i]))


def make_unit(cm: CostModel, names, settings, costs) -> Unit:
    """A unit from raw options: cycles = its slowest layer, resources summed (plus internal converters), pruned."""
    names = tuple(names)
    cyc = np.array([max(c.cycles for c in cs) for cs in costs], dtype=np.int64)
    res = np.array([np.sum([c.resources() for c in cs], axis=0) for cs in costs], dtype=float).reshape(len(costs), len(RESOURCES))
    internal = [e for e in cm.edges if e.producer in names and e.consumer in names]
    for i, cs in enumerate(costs):
        c = dict(zip(names, cs))
        for e in internal:
            price = cm.edge_converter(e, c[e.producer], c[e.consumer])
            if price is not None:
                res[i] += price
    raw = Unit(names, list(settings), cyc, res, list(costs))
    return raw.subset(prune(cm, names, names, cyc, res, raw.costs))


class Selector:
    """Selections of one option per unit under a cycle bound, checked against the budget."""

    def __init__(self, units: list[Unit], budget: np.ndarray, cm: CostModel):
        self.units, self.budget, self.cm = units, budget, cm
        self.scale = 1.0 / np.maximum(budget, 1.0)
        lb = max(int(u.cycles[0]) for u in units)
        allc = np.unique(np.concatenate([u.cycles for u in units]))
        self.bounds = allc[allc >= lb]
        self.idx = [np.searchsorted(u.cycles, self.bounds, side="right") - 1 for u in units]
        where = {name: (k, j) for k, u in enumerate(units) for j, name in enumerate(u.names)}
        self.links = []  # converters between units: (edge, producer unit, consumer unit, class per option of each)
        for e in cm.edges:
            (up, jp), (uc, jc) = where[e.producer], where[e.consumer]
            if up != uc:
                src = [dict(cs[jp].outs)[e.out_idx] for cs in units[up].costs]
                dst = [dict(cs[jc].ins)[e.in_idx] for cs in units[uc].costs]
                self.links.append((e, up, uc, src, dst))

    def sweep(self, w: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Usage (bounds x resources, layers only) when each unit takes its cheapest option under weights w."""
        usage = np.zeros((len(self.bounds), len(RESOURCES)))
        picks = []
        for u, idx in zip(self.units, self.idx):
            cost = u.res @ (w * self.scale) + 1e-9 * u.cycles / u.cycles[-1]
            prev = np.concatenate([[np.inf], np.minimum.accumulate(cost)[:-1]])
            best = np.maximum.accumulate(np.where(cost < prev, np.arange(len(cost)), 0))  # prefix argmin
            pick = best[idx]
            picks.append(pick)
            usage += u.res[pick]
        return usage, picks

    def fits(self, usage: np.ndarray) -> np.ndarray:
        return np.all(usage <= self.budget + 1e-9, axis=-1)

    def usage(self, sel: list[int]) -> np.ndarray:
        """Resources of a selection: its options plus the converters between units."""
        total = np.sum([u.res[s] for u, s in zip(self.units, sel)], axis=0)
        for e, up, uc, src, dst in self.links:
            if self.cm.dwc_pricer.needed(src[sel[up]], dst[sel[uc]]):
                total = total + np.array(self.cm.dwc_pricer.price(src[sel[up]].width, dst[sel[uc]].width))
        return total

    def exact(self, t: int, time_limit: float = 10.0) -> tuple[list[int] | None, bool]:
        """Cheapest selection (sum of budget fractions) with every unit at <= t cycles, converters included, by MILP.

        Returns (selection or None, proven): ``proven`` is False when HiGHS hit the time limit.
        """

        ns = [int(np.searchsorted(u.cycles, t, side="right")) for u in self.units]
        if min(ns) == 0:
            return None, True
        start = np.concatenate([[0], np.cumsum(ns)])
        n_x = int(start[-1])
        pairs = []  # (rows of producer options, rows of consumer options, converter price)
        for e, up, uc, src, dst in self.links:
            by_src: dict[Any, list[int]] = {}
            by_dst: dict[Any, list[int]] = {}
            for i in range(ns[up]):
                by_src.setdefault(src[i], []).append(int(start[up]) + i)
            for j in range(ns[uc]):
                by_dst.setdefault(dst[j], []).append(int(start[uc]) + j)
            for a, rows_a in by_src.items():
                for b, rows_b in by_dst.items():
                    if self.cm.dwc_pricer.needed(a, b):
                        price = np.array(self.cm.dwc_pricer.price(a.width, b.width))
                        if price.any():
                            pairs.append((rows_a, rows_b, price))
        n = n_x + len(pairs)
        res = np.vstack([u.res[:k] for u, k in zip(self.units, ns)] + [p[2][None, :] for p in pairs])
        one = lil_matrix((len(ns), n))
        for k in range(len(ns)):
            one[k, start[k] : start[k + 1]] = 1
        constraints = [LinearConstraint(one.tocsr(), 1, 1), LinearConstraint(res.T, -np.inf, self.budget + 1e-6)]
        if pairs:  # y >= x_a + x_b - 1: the converter is paid when both classes are chosen
            link = lil_matrix((len(pairs), n))
            for r, (rows_a, rows_b, _) in enumerate(pairs):
                link[r, rows_a] = 1
                link[r, rows_b] = 1
                link[r, n_x + r] = -1
            constraints.append(LinearConstraint(link.tocsr(), -np.inf, 1))
        out = milp(res @ self.scale, integrality=np.ones(n), bounds=Bounds(0, 1), constraints=constraints, options={"time_limit": time_limit})
        if out.x is None:
            return None, out.status == 2
        x = np.round(out.x[:n_x]).astype(int)
        sel = [int(np.argmax(x[start[k] : start[k + 1]])) for k in range(len(ns))]
        return (sel if self.fits(self.usage(sel)) else None), out.status == 0
