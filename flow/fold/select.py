"""Picking one setting per folding unit: Pareto pruning, a fast heuristic sweep, and an exact MILP.

A :class:`Unit` is a layer (or a coupled sliding-window + Pool/VVAU pair) with its legal
settings. Settings are pruned to those no other setting beats in cycles and every resource
*among settings with the same streams to neighbouring units*, because the stream words
decide which data-width converters FINN inserts between units (their price is FINN's, see
:mod:`flow.fold.converters`). :class:`Selector` holds the units and the streams between
them: :meth:`Selector.sweep` picks for all bounds at once under resource weights (no
converters, a fast heuristic), :meth:`Selector.usage` prices a selection with its
converters, and :mod:`flow.fold.program` states a bound's selection as an LP/MILP.

At a fixed bound T, cycles no longer matter among settings at <= T, so :meth:`Selector.candidates`
keeps far fewer: a setting is dropped when another one costs no more in every resource even
after paying the dearest converter its streams can cause (then swapping it in keeps any
fitting selection fitting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
        self.conv_max = self._dearest_converters()
        self.group_ids = self._group_ids()

    def _dearest_converters(self) -> list[np.ndarray]:
        """Per unit and option: the dearest converters (per resource) its streams can cause, whatever the neighbours pick."""
        out = [np.zeros((len(u.cycles), len(RESOURCES))) for u in self.units]
        for _e, up, uc, src, dst in self.links:
            a_cls, b_cls = sorted(set(src)), sorted(set(dst))
            price = self.converter_prices(a_cls, b_cls)
            ai = {a: i for i, a in enumerate(a_cls)}
            bj = {b: j for j, b in enumerate(b_cls)}
            out[up] += price.max(axis=1)[[ai[a] for a in src]]
            out[uc] += price.max(axis=0)[[bj[b] for b in dst]]
        return out

    def converter_prices(self, outs: list, ins: list) -> np.ndarray:
        """FINN's price of the converter between each producer word in ``outs`` and consumer word in ``ins`` (0: none needed)."""
        price = np.zeros((len(outs), len(ins), len(RESOURCES)))
        for i, a in enumerate(outs):
            for j, b in enumerate(ins):
                if self.cm.dwc_pricer.needed(a, b):
                    price[i, j] = self.cm.dwc_pricer.price(a.width, b.width)
        return price

    def sweep(self, w: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Usage (bounds x resources, layers only) when each unit takes its cheapest option under weights w."""
        usage = np.zeros((len(self.bounds), len(RESOURCES)))
        picks = []
        for u, idx in zip(self.units, self.idx):
            cost = u.res @ (w * self.scale) + 1e-9 * u.cycles / max(int(u.cycles[-1]), 1)
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

    def max_cycles(self, sel: list[int]) -> int:
        return int(max(u.cycles[s] for u, s in zip(self.units, sel)))

    def candidates(self, t: int) -> list[np.ndarray]:
        """Per unit, the options at <= ``t`` cycles that a fitting selection may need (see the module docstring)."""
        out = []
        for k, u in enumerate(self.units):
            n = int(np.searchsorted(u.cycles, t, side="right"))
            if n == 0:
                out.append(np.zeros(0, dtype=int))
                continue
            # within equal boundary streams converters are equal: keep the resource-Pareto options
            keep = np.array(prune_resources(self._groups(k, n), u.res[:n]), dtype=int)
            # a setting with its dearest converters still no dearer than another one replaces it
            out.append(keep[~replaceable(u.res[keep], u.res[keep] + self.conv_max[k][keep])])
        return out

    def _group_ids(self) -> list[np.ndarray]:
        """Per unit and option: an id of its streams to other units (equal ids: equal converters)."""
        sigs: list[list[list]] = [[[] for _ in u.cycles] for u in self.units]
        for _e, up, uc, src, dst in self.links:
            for i, s in enumerate(src):
                sigs[up][i].append(s)
            for j, d in enumerate(dst):
                sigs[uc][j].append(d)
        out = []
        for per_unit in sigs:
            ids: dict[tuple, int] = {}
            out.append(np.array([ids.setdefault(tuple(s), len(ids)) for s in per_unit], dtype=int))
        return out

    def _groups(self, k: int, n: int) -> list[list[int]]:
        """Options ``0..n-1`` of unit ``k`` grouped by their streams to other units."""
        ids = self.group_ids[k][:n]
        order = np.argsort(ids, kind="stable")
        cuts = np.flatnonzero(np.diff(ids[order])) + 1
        return [g.tolist() for g in np.split(order, cuts)]


def replaceable(res: np.ndarray, worst: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Which options another one replaces: its ``worst`` (resources plus dearest converters) <= their ``res``.

    The relation is transitive and, but for identical options (the first of which is kept),
    acyclic, so every replaced option has a kept one that replaces it.
    """
    n = len(res)
    out = np.zeros(n, dtype=bool)
    idx = np.arange(n)
    for lo in range(0, n, chunk):
        j = idx[lo : lo + chunk]
        beats = np.all(worst[:, None, :] <= res[None, j, :] + 1e-9, axis=2)  # [i, j]: i replaces j
        back = np.all(worst[j][:, None, :] <= res[None, :, :] + 1e-9, axis=2).T  # [i, j]: j replaces i
        beats &= ~back | (idx[:, None] < j[None, :])  # of identical options the first stays
        beats[j, np.arange(len(j))] = False
        out[j] = beats.any(axis=0)
    return out


def prune_resources(groups: list[list[int]], res: np.ndarray) -> list[int]:
    """Within each group, the options no other one of the group beats in every resource."""
    return [g[j] for g in groups for j in non_dominated(res[g])]
