"""The selection at one cycle bound as a linear program: its LP relaxation and its exact MILP (scipy/HiGHS).

Variables: ``x`` per candidate setting of each unit at <= T cycles (binary in the MILP; one
per unit), and per stream between two units a ``z`` per pair of stream words the two
sides can pick, with the converter FINN inserts for that pair as its price. The ``z`` of a
stream are tied to the ``x`` of both ends by their marginals (the ``z`` leaving a producer
word sum to the ``x`` of the settings with that word, likewise at the consumer), which is
exact for binary ``x`` and, unlike ``y >= x_a + x_b - 1``, keeps converters in the LP
relaxation: a fractional selection still pays for the converters its words imply. Caps:
settings plus converters <= the budget, per resource.

>>> Status.FOUND.value
'found'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix, csr_matrix

from flow.fold.select import Selector


class Status(enum.Enum):
    """What the MILP established at a bound."""

    FOUND = "found"  # a selection that fits (layers and converters)
    INFEASIBLE = "infeasible"  # proven: no selection at this bound fits
    UNKNOWN = "unknown"  # the solver stopped at its time limit with neither


@dataclass(frozen=True)
class Solve:
    """One MILP answer: the selection (option index per unit), the status, and whether it is the cheapest."""

    sel: list[int] | None
    status: Status
    optimal: bool = False


@dataclass
class Program:
    """The selection at bound ``t``: ``cost``, caps ``a_ub x <= b_ub`` and one-hot/marginal rows ``a_eq x = b_eq``."""

    cand: list[np.ndarray]
    start: np.ndarray
    n_x: int
    cost: np.ndarray
    a_ub: csr_matrix
    b_ub: np.ndarray
    a_eq: csr_matrix
    b_eq: np.ndarray

    def selection(self, x: np.ndarray) -> list[int]:
        """The option of each unit with the largest ``x``."""
        return [int(c[np.argmax(x[self.start[k] : self.start[k + 1]])]) for k, c in enumerate(self.cand)]

    def support(self, x: np.ndarray) -> list[list[int]]:
        """Per unit, its options with ``x`` > 0, cheapest first (the choices a rounding tries)."""
        out = []
        for k, c in enumerate(self.cand):
            cols = np.flatnonzero(x[self.start[k] : self.start[k + 1]] > 1e-7)
            out.append([int(c[j]) for j in cols[np.argsort(self.cost[self.start[k] + cols])]])
        return out


def program(search: Selector, t: int) -> Program | None:
    """The program at bound ``t`` over :meth:`Selector.candidates` (None: some unit has no setting at <= t)."""
    cand = search.candidates(t)
    if any(len(c) == 0 for c in cand):
        return None
    sizes = [len(c) for c in cand]
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    n_x = int(start[-1])
    rows, cols, vals = [np.repeat(np.arange(len(cand)), sizes)], [np.arange(n_x)], [np.ones(n_x)]
    res_cols = [np.vstack([u.res[c] for u, c in zip(search.units, cand)])]
    n_eq, n = len(cand), n_x
    for _e, up, uc, src, dst in search.links:
        outs, ins = [src[i] for i in cand[up]], [dst[j] for j in cand[uc]]
        a_cls, b_cls = _classes(outs), _classes(ins)
        price = search.converter_prices(list(a_cls), list(b_cls))
        if not price.any():
            continue
        na, nb = len(a_cls), len(b_cls)
        z = n + np.arange(na * nb).reshape(na, nb)
        for side, classes, members, unit in ((0, a_cls, outs, up), (1, b_cls, ins, uc)):
            for word, ci in classes.items():
                r = n_eq + ci + (na if side else 0)
                zs = z[ci, :] if side == 0 else z[:, ci]
                xs = start[unit] + np.flatnonzero([m == word for m in members])
                rows += [np.full(len(zs), r), np.full(len(xs), r)]
                cols += [zs, xs]
                vals += [np.ones(len(zs)), -np.ones(len(xs))]
        res_cols.append(price.reshape(na * nb, -1))
        n_eq += na + nb
        n += na * nb
    a_eq = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_eq, n)).tocsr()
    b_eq = np.concatenate([np.ones(len(cand)), np.zeros(n_eq - len(cand))])
    res = np.vstack(res_cols)
    a_ub = csr_matrix(res.T * search.scale[:, None])
    return Program(cand, start, n_x, res @ search.scale, a_ub, search.budget * search.scale, a_eq, b_eq)


def _classes(words: list) -> dict:
    """Distinct stream words, in first-seen order: word -> its index."""
    out: dict = {}
    for w in words:
        out.setdefault(w, len(out))
    return out


def relaxation(p: Program, reserve: np.ndarray | None = None):
    """The LP relaxation (a vertex: HiGHS' dual simplex) with the caps lowered by ``reserve`` (budget fractions)."""
    cap = p.b_ub - (0 if reserve is None else reserve) + 1e-9
    return linprog(p.cost, A_ub=p.a_ub, b_ub=cap, A_eq=p.a_eq, b_eq=p.b_eq, bounds=(0, 1), method="highs-ds")


def exact(search: Selector, t: int, time_limit: float = 10.0, *, cheapest: bool = True, gap: float = 1e-4) -> Solve:
    """A selection with every unit at <= t cycles that fits, converters included, by MILP.

    ``cheapest``: the one with the smallest summed budget fractions (to relative ``gap``);
    otherwise the first one HiGHS finds (its search still led by that objective).
    ``Solve.status`` says whether one was found, none exists (proven), or the time limit hit first.
    """
    p = program(search, t)
    if p is None:
        return Solve(None, Status.INFEASIBLE, True)
    n = len(p.cost)
    integrality = np.concatenate([np.ones(p.n_x), np.zeros(n - p.n_x)])
    constraints = [LinearConstraint(p.a_eq, p.b_eq, p.b_eq), LinearConstraint(p.a_ub, -np.inf, p.b_ub + 1e-9)]
    options = {"time_limit": max(float(time_limit), 0.01), "mip_rel_gap": gap if cheapest else 1.0}
    out = milp(p.cost, integrality=integrality, bounds=Bounds(0, 1), constraints=constraints, options=options)
    if out.x is None:
        return Solve(None, Status.INFEASIBLE if out.status == 2 else Status.UNKNOWN, out.status == 2)
    sel = p.selection(out.x[: p.n_x])
    if not search.fits(search.usage(sel)):  # rounding within HiGHS' tolerances broke a cap: not an answer
        return Solve(None, Status.UNKNOWN)
    return Solve(sel, Status.FOUND, out.status == 0 and cheapest)
