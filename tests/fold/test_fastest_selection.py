"""The search on small synthetic problems, checked against brute force: it finds the fastest selection that
fits (converters included), its lower bounds are bounds, a solver time-out is never "does not fit", and
"nothing fits" is said only when proven."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from flow.core.errors import InfeasibleDesignError
from flow.fold import program as program_mod
from flow.fold import search as search_mod
from flow.fold.bound import caps_bound, lp_fits
from flow.fold.converters import Edge, Stream
from flow.fold.cost_model import LayerCost
from flow.fold.optimizer import fastest_selection
from flow.fold.program import Status, exact
from flow.fold.select import Selector, make_unit, replaceable


class Pricer:
    """FINN's rule (a converter where the words differ) with a made-up price: LUTs as the wider word."""

    def needed(self, a: Stream, b: Stream) -> bool:
        return a.elems != b.elems

    def price(self, wa: int, wb: int) -> tuple[float, float, float, float]:
        return (float(max(wa, wb)), 0.0, 0.0, 0.0)


def chain(raw: list[list[tuple[int, tuple, int, int]]]):
    """A chain of one-layer units; each option (cycles, (lut, bram, uram, dsp), in elems, out elems)."""
    names = [f"L{i}" for i in range(len(raw))]
    edges = [Edge(names[i], 0, names[i + 1], 0) for i in range(len(raw) - 1)]
    cm = SimpleNamespace(edges=edges, dwc_pricer=Pricer(), op_types=dict.fromkeys(names, "Layer"))
    cm.edge_converter = lambda e, p, c: None
    units = []
    for i, (name, opts) in enumerate(zip(names, raw)):
        costs = [(LayerCost(cyc, *res, ins=((0, Stream(a, 4 * a)),) if i else (), outs=((0, Stream(b, 4 * b)),) if i < len(raw) - 1 else ()),)
                 for cyc, res, a, b in opts]
        units.append(make_unit(cm, [name], [({"opt": j},) for j in range(len(opts))], costs))
    return cm, units


def brute_force(raw, budget: np.ndarray) -> int | None:
    """Fewest max cycles over every selection of the raw options whose layers and converters fit."""
    pricer, best = Pricer(), None
    for sel in itertools.product(*raw):
        use = np.sum([o[1] for o in sel], axis=0)
        for a, b in zip(sel, sel[1:]):
            if pricer.needed(Stream(a[3], 4 * a[3]), Stream(b[2], 4 * b[2])):
                use = use + np.array(pricer.price(4 * a[3], 4 * b[2]))
        if np.all(use <= budget + 1e-9):
            c = max(o[0] for o in sel)
            best = c if best is None else min(best, c)
    return best


def random_problem(rng, units=5, options=6):
    raw = [[(int(rng.integers(1, 40)), tuple(rng.uniform(0, 20, 2).round(1)) + (0.0, float(rng.integers(0, 3))),
             int(rng.choice([1, 2, 4])), int(rng.choice([1, 2, 4]))) for _ in range(options)] for _ in range(units)]
    total = np.array([sum(max(o[1][r] for o in opts) for opts in raw) for r in range(4)])
    budget = total * rng.uniform(0.4, 0.9) + np.array([0, 0, 1, 0])
    return raw, budget


@pytest.mark.parametrize("seed", range(30))
def test_fastest_selection_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    raw, budget = random_problem(rng)
    want = brute_force(raw, budget)
    cm, units = chain(raw)
    if want is None:
        with pytest.raises(InfeasibleDesignError, match="no folding of the design fits"):
            fastest_selection(units, cm, budget, "board", time_limit=30)
        return
    search, out, caps = fastest_selection(units, cm, budget, "board", time_limit=30)
    assert search.fits(search.usage(out.sel)) and out.optimal
    assert search.max_cycles(out.sel) == want
    assert search.bounds[caps] <= want and search.bounds[out.lower] <= want


def test_lp_bound_is_a_bound_and_sees_converters():
    rng = np.random.default_rng(7)
    for _ in range(20):
        raw, budget = random_problem(rng, units=4, options=5)
        cm, units = chain(raw)
        units = [u.subset(np.flatnonzero(np.all(u.res <= budget, axis=1))) for u in units]
        if any(len(u.cycles) == 0 for u in units):
            continue
        search = Selector(units, budget, cm)
        want = brute_force(raw, budget)
        caps = caps_bound(search)
        if want is not None:
            assert caps is not None and search.bounds[caps] <= want
    # two layers that fit only with mismatched words, whose converter breaks the LUT cap
    raw = [[(1, (5.0, 0, 0, 0), 1, 1)], [(1, (5.0, 0, 0, 0), 2, 2)]]
    cm, units = chain(raw)
    search = Selector(units, np.array([12.0, 1, 1, 1]), cm)
    assert not lp_fits(search, 1)  # 5 + 5 + a converter of 8 LUT > 12
    assert lp_fits(Selector(units, np.array([18.0, 1, 1, 1]), cm), 1)


def test_infeasible_only_when_proven_by_lp_or_milp():
    # each setting and each resource alone fits, but not all three layers: the LP relaxation is infeasible
    raw = [[(1, (10.0, 0, 0, 0), 1, 1), (2, (0, 10.0, 0, 0), 1, 1)]] * 3
    cm, units = chain(raw)
    with pytest.raises(InfeasibleDesignError, match="LP relaxation is infeasible"):
        fastest_selection(units, cm, np.array([14.0, 14.0, 1, 1]), "board", time_limit=10)
    # the LP fits with halves, no integer selection does: the MILP proves it
    search = Selector(units, np.array([15.0, 15.0, 1, 1]), cm)
    assert lp_fits(search, 2) and exact(search, 2).status is Status.INFEASIBLE
    with pytest.raises(InfeasibleDesignError, match="proven by MILP"):
        fastest_selection(units, cm, np.array([15.0, 15.0, 1, 1]), "board", time_limit=10)


def test_a_solver_time_out_is_never_does_not_fit(monkeypatch):
    rng = np.random.default_rng(3)
    while True:  # a problem whose greedy incumbent fits
        raw, budget = random_problem(rng)
        cm, units = chain(raw)
        units = [u.subset(np.flatnonzero(np.all(u.res <= budget, axis=1))) for u in units]
        if all(len(u.cycles) for u in units) and search_mod.greedy(Selector(units, budget, cm)) is not None:
            break
    timeout = SimpleNamespace(x=None, status=1)
    monkeypatch.setattr(program_mod, "milp", lambda *a, **k: timeout)
    monkeypatch.setattr(search_mod, "lp_round", lambda *a, **k: None)
    search, out, caps = fastest_selection(units, cm, budget, "board", time_limit=5)  # the greedy incumbent stands
    assert search.fits(search.usage(out.sel)) and out.timeouts > 0
    assert out.optimal == (out.lower >= out.at)
    monkeypatch.setattr(search_mod, "greedy", lambda *a, **k: None)
    with pytest.raises(InfeasibleDesignError, match="not proven that none exists"):
        fastest_selection(units, cm, budget, "board", time_limit=1)


def test_replaceable_keeps_a_replacement_for_every_dropped_setting():
    rng = np.random.default_rng(0)
    res = rng.integers(0, 4, size=(300, 4)).astype(float)
    worst = res + rng.integers(0, 2, size=(300, 4))
    dropped = replaceable(res, worst)
    kept = np.flatnonzero(~dropped)
    for j in np.flatnonzero(dropped):
        assert np.any(np.all(worst[kept] <= res[j], axis=1)), j
    for i in kept:  # nothing kept is replaced by another kept one, but identical earlier ones
        others = kept[kept != i]
        beats = np.all(worst[others] <= res[i], axis=1)
        assert not np.any(beats & ~np.all((worst[others] == res[i]) & (res[others] == worst[i]), axis=1))
