"""The end of ``qflow search``: the front, its finalists retrained at the full budget, verified, and the chosen design.

Trials train briefly (few epochs, a subset) and are scored on a validation split. The
Pareto front over (validation accuracy, cost, frames/s) of the completed trials names the
candidates. Of the front points that fit the board and reach ``min_fps``, the ``finalists``
are, in a three-objective search, the ones that together cover the most of the front
(greedy hypervolume: each next finalist adds the most dominated volume, :func:`spread`), and
otherwise the most accurate. Each is retrained with the recipe's own training budget on the
full training set, tested on the test set, rebuilt (folded as in the search) and verified
stage by stage (:func:`flow.explore.run.run`), into ``OUT/final/<name>/`` with a full report.
The chosen design is the verified, fitting finalist with the best *validation* accuracy (the
cheapest within ``acc_tolerance`` of it): the test set scores the finalists but never picks one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flow.compat import optuna as optuna_compat
from flow.core import pareto as fronts
from flow.core.errors import QflowError
from flow.core.outdir import inner_folder
from flow.explore.recipe import Recipe
from flow.explore.rows import Finalist, TrialRow
from flow.explore.run import run
from flow.explore.space import SearchSpace, point_recipe

#: What the search's front trades off: accuracy up, cost down, frames/s up.
OBJECTIVES = {"accuracy": "max", "cost": "min", "fps": "max"}


def _order(r: TrialRow) -> tuple:
    return (-(r.accuracy or 0.0), r.cost, -(r.fps or 0.0), r.number)


def front(rows: list[TrialRow], space: SearchSpace) -> list[TrialRow]:
    """The non-dominated COMPLETE rows, one per distinct point (lowest trial number), most accurate first."""
    seen, ok = set(), []
    for r in sorted((r for r in rows if r.state == "COMPLETE" and r.accuracy is not None), key=lambda r: r.number):
        key = tuple(str(r.params.get(k)) for k in space.params)
        if key not in seen:
            seen.add(key)
            ok.append(r)
    return sorted(fronts.front(ok, OBJECTIVES), key=_order)


def losses(rows: list[TrialRow]) -> np.ndarray:
    """The front's objectives as losses (every column minimized): -accuracy, -frames/s, cost."""
    return np.array([[-r.accuracy, -r.fps, r.cost] for r in rows], dtype=float).reshape(-1, 3)  # type: ignore[operator]


def spread(rows: list[TrialRow], k: int) -> list[TrialRow]:
    """``k`` of ``rows`` chosen greedily by hypervolume: each next one adds the most volume to those chosen
    (ties: the more accurate). The reference point is 0 accuracy, 0 frames/s and 1.1x the largest cost."""
    if len(rows) <= k:
        return list(rows)
    pts = losses(rows)
    ref = np.array([0.0, 0.0, 1.1 * max(float(pts[:, 2].max()), 0.0) + 1.0])
    chosen: list[int] = []
    for _ in range(k):
        base = optuna_compat.hypervolume(pts[chosen], ref) if chosen else 0.0
        gain = {i: optuna_compat.hypervolume(pts[[*chosen, i]], ref) - base for i in range(len(rows)) if i not in chosen}
        chosen.append(max(gain, key=lambda i: (gain[i], rows[i].accuracy, -i)))
    return sorted((rows[i] for i in chosen), key=_order)


def finalists(front_rows: list[TrialRow], k: int, min_fps: float, *, spread_out: bool = False) -> list[TrialRow]:
    """``k`` front points that fit and reach ``min_fps``: spread over the front (:func:`spread`), or the most accurate."""
    ok = [r for r in front_rows if r.fits and (r.fps or 0) >= min_fps]
    return spread(ok, k) if spread_out else ok[:k]


def choose(results: list[Finalist], acc_tolerance: float = 0.0) -> Finalist | None:
    """The verified, fitting finalist with the best validation accuracy (``search_accuracy``); the cheapest
    (then fastest) within ``acc_tolerance`` of it. Test accuracy plays no part."""
    good = [r for r in results if r.verified and r.fits]
    if not good:
        return None
    best = max(r.search_accuracy for r in good)
    near = [r for r in good if r.search_accuracy >= best - acc_tolerance - 1e-12]
    return min(near, key=lambda r: (r.cost, -(r.fps or 0.0), -r.search_accuracy, r.trial))


def retrain(base: Recipe, space: SearchSpace, rows: list[TrialRow], *, target: str, out: Path, cost_of,
            fold_to_fps: float | None = None, log: Callable[[str], None] = print) -> list[Finalist]:
    """Retrain, rebuild and verify each finalist row at the recipe's full budget (see the module docstring)."""
    results = []
    for r in rows:
        point = space.point({k: r.params.get(k) for k in space.params})
        name = f"{base.name}-t{r.number:04d}"
        recipe = point_recipe(base, point, target=target, name=name, verify_samples=base.build.verify_samples or 1000,
                              fold_to_fps=fold_to_fps)
        log(f"finalist trial {r.number}: retraining at the full budget into {out / 'final' / name}")
        entry = Finalist(trial=r.number, name=name, search_accuracy=r.accuracy, report=str(out / "final" / name / "report.json"))  # type: ignore[arg-type]
        try:
            res = run(recipe, inner_folder(out, f"final/{name}"), progress=False, log=lambda _: None)
        except QflowError as e:
            entry = dataclasses.replace(entry, error=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}", verified=False)
            log(f"finalist trial {r.number} failed: {entry.error}")
            results.append(entry)
            continue
        rep = res.report
        v = rep.verification
        entry = dataclasses.replace(entry, accuracy=res.accuracy, fps=rep.throughput_fps, cost=cost_of(rep), lut=rep.resources_used()["lut"],
                                    fits=rep.fits, verified=bool(v and v.passed), train_s=round(res.train_seconds, 1))
        log(f"finalist trial {r.number}: test accuracy {100 * res.accuracy:.2f}%, {rep.throughput_fps:,.0f} FPS, "
            f"verified {entry.verified}")
        results.append(entry)
    return results
