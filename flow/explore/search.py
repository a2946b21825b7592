"""``qflow search``: the most accurate designs of a recipe's network that a board can run at a frame rate.

The space (:mod:`flow.explore.space`) is per-layer weight and activation precision (1-bit,
ternary, 2..8), hidden widths and the technique. Every trial (:mod:`flow.explore.trials`)
builds its point's untrained network first and skips training when nothing fits, when it is
slower than ``min_fps`` or when a point at least as precise is already as good on hardware;
otherwise it trains briefly, reporting validation accuracy to Optuna after every epoch so the
pruner stops weak trials. The study (:mod:`flow.explore.study`: TPE, SQLite or PostgreSQL storage, resumable after
``kill -9``, parallel workers) optimizes validation accuracy, frames/s and cost together
(Optuna multi-objective), or validation accuracy alone with a pruner (Hyperband).
At the end (:mod:`flow.explore.finalize`) the Pareto front over accuracy, cost and frames/s is
written, and finalists spread over it are retrained at the recipe's full budget, tested,
rebuilt and verified into ``OUT/final/``; the chosen design is the verified finalist with the
best validation accuracy (the test set is only reported).

A sensitivity map (``qflow sensitivity``) sets per-layer precision floors and its minimum
precision point is enqueued as the first trial.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from flow.core import tree
from flow.core.errors import ConfigError, QflowError
from flow.core.fileio import atomic_write_json, read_json
from flow.core.outdir import OutputDir, inner_folder, retire_results
from flow.explore.finalize import choose, finalists, front, retrain
from flow.explore.recipe import Recipe, recipe_from_dict
from flow.explore.results import write_csv
from flow.explore.rows import Finalist
from flow.explore.space import TECHNIQUE_PARAM, SearchSpace, point_recipe, search_space
from flow.explore.study import (
    Monitor,
    SearchOptions,
    Surplus,
    check_options,
    check_study_files,
    claim_budget,
    counts,
    load_study,
    make_sampler,
    run_rounds,
    stop_callback,
)
from flow.explore.study import storage as study_storage
from flow.explore.trials import METRICS, cost_of, run_trial, trial_rows
from flow.report.style import save_png
from flow.report.tradeoff import front_plot
from hw_targets import load_target


#: The files a search writes at the top of its folder (trials and finalists have folders of their own).
SEARCH_FILES = ("all_trials.csv", "pareto.csv", "pareto.json", "pareto.png", "search.json")


class SearchFailedError(QflowError):
    """Every trial of a search failed (the message gives the first trial's error)."""


@dataclass
class SearchResult:
    study_name: str
    storage: str
    out_dir: Path
    counts: dict[str, int]
    pareto: list[dict[str, Any]]
    finalists: list[Finalist]
    chosen: Finalist | None
    files: dict[str, str] = field(default_factory=dict)


def space_of(opts: SearchOptions, base: Recipe) -> SearchSpace:
    return search_space(base, opts.weight_bits, opts.act_bits, opts.techniques, opts.widths, opts.floors)


def fold_to_fps(opts: SearchOptions) -> float | None:
    """The frame rate every point is folded toward (``folding="fps"``), or None (qflow's optimizer)."""
    return opts.min_fps if opts.folding == "fps" else None


def trial_budget(opts: SearchOptions, base: Recipe) -> int:
    return opts.epochs if opts.epochs is not None else base.train.epochs


def objective(opts: SearchOptions, base: Recipe, space: SearchSpace):
    out = Path(opts.out_dir)

    def run(trial: optuna.Trial) -> float:
        claim_budget(trial, opts.trials)
        point = space.sample(trial)
        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.params == trial.params:  # the same point finished before: training is seeded, the result is the same
                for k in (*METRICS, "hardware_report"):
                    trial.set_user_attr(k, t.user_attrs.get(k))
                trial.set_user_attr("duplicate_of", t.number)
                return t.values if opts.multi else t.value
        t0 = time.perf_counter()
        try:
            recipe = point_recipe(base, point, target=opts.target, name=f"{base.name}-t{trial.number:04d}",
                                  epochs=trial_budget(opts, base), max_train_samples=opts.max_train_samples, threads=opts.threads,
                                  fold_to_fps=fold_to_fps(opts))
            trial_dir = inner_folder(out, f"trials/{trial.number:04d}")
            return run_trial(trial, recipe, point, space, trial_dir, min_fps=opts.min_fps,
                             val_samples=opts.val_samples, cost=opts.cost, cost_weights=opts.cost_weights)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {' '.join(str(e).split())[:500]}")
            raise
        finally:
            trial.set_user_attr("trial_s", round(time.perf_counter() - t0, 3))

    return run


def run_worker(opts: SearchOptions, worker_id: int = 0, callback: Callable | None = None) -> None:
    """One worker: run trials of the shared study until the budget is covered (a spawned process's entry point)."""
    base = recipe_from_dict(opts.recipe, source="search recipe")
    space = space_of(opts, base)
    probe = load_study(opts, max_epochs=trial_budget(opts, base))
    if counts(probe)["done"] >= opts.trials:
        return
    sampler = make_sampler(base.seed * 100_003 + 1009 * worker_id + len(probe.get_trials(deepcopy=False)))
    study = load_study(opts, sampler=sampler, max_epochs=trial_budget(opts, base))
    cbs = [optuna.study.MaxTrialsCallback(opts.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)), stop_callback(opts.trials)]
    if callback is not None:
        cbs.append(callback)
    study.optimize(objective(opts, base, space), callbacks=cbs, catch=(Exception,), gc_after_trial=True)


def check_run_folders(out: Path) -> None:
    """``trials/`` and ``final/`` hold one real folder per trial or finalist (each with its own manifest), and
    nothing below them is a link, a pipe or a device: such an entry, or a link or a file on the way, stops
    the search before anything is written (ConfigError, one line)."""
    for sub in ("trials", "final"):
        inner_folder(out, sub, create=False)
        if not (out / sub).is_dir():
            continue
        fd = os.open(out / sub, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for parts, st in tree.walk(fd, ()):
                kind = tree.kind(st.st_mode)
                if kind != "dir" and (len(parts) == 1 or kind != "file"):
                    raise ConfigError(f"--out {out}: {sub}/{'/'.join(parts)} is {tree.describe(st.st_mode)}; qflow writes each trial "
                                      f"and finalist into a real folder under {sub}/, with only files and folders in it: move it away")
        finally:
            os.close(fd)


def read_floors(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Per-layer minimum precision from a ``qflow sensitivity`` result (its ``min_precision``)."""
    if path is None:
        return {}
    data = read_json(path, "sensitivity map", ConfigError)
    floors = data.get("min_precision") if isinstance(data, dict) else None
    if not isinstance(floors, dict) or not all(isinstance(v, dict) for v in floors.values()):
        raise ConfigError(f"sensitivity map {path} has no min_precision table; give the sensitivity.json `qflow sensitivity` writes")
    return {layer: {k: v for k, v in bits.items() if k in ("weight_bits", "act_bits") and v is not None} for layer, bits in floors.items()}


def search(recipe: Recipe, target: str | None, out_dir: str | Path, *, trials: int, workers: int = 1, progress: bool = True,
           log: Callable[[str], None] = print, sensitivity: str | Path | None = None, **options: Any) -> SearchResult:
    """Run (or resume) the search and write its outputs into ``out_dir``; see the module docstring.

    ``options`` are :class:`flow.explore.study.SearchOptions` fields.
    """
    target = target or recipe.build.target
    try:
        folder = OutputDir(out_dir, results=SEARCH_FILES)
        out = folder.path
        tgt = load_target(target)
        options.setdefault("min_fps", float(recipe.build.target_fps or 0))
        opts = SearchOptions(recipe=recipe.model_dump(mode="json", exclude_unset=True), target=target, trials=trials, out_dir=str(out),
                             workers=workers, floors=read_floors(sensitivity), **options)
        check_options(opts)
        opts.study_name = opts.study_name or f"{recipe.name}-{tgt.name}"
        space = space_of(opts, recipe)  # validates every choice before any worker starts
        folder.check()
        check_run_folders(out)
        check_study_files(opts)
    except QflowError:
        retire_results(out_dir, results=SEARCH_FILES)
        raise
    folder.claim()
    study = load_study(opts, max_epochs=trial_budget(opts, recipe))
    if opts.floors and not study.get_trials(deepcopy=False):
        floor_point = {k: c[0] for k, c in space.params.items()}  # the minimum precision the map allows
        study.enqueue_trial(floor_point, skip_if_exists=True)
    url = study_storage(opts)[1]
    log(f"search {opts.study_name}: {len(space.params)} parameters, {space.size:,} points, {trials} trials, {workers} worker(s), storage {url}")
    t0 = time.perf_counter()
    with Monitor(opts, progress) as monitor:
        monitor.refresh(study)
        run_rounds(opts, study, run_worker, monitor)
    c = counts(study)
    if c["done"] == 0 and c["errors"]:
        first = next(t.user_attrs["error"] for t in study.get_trials(deepcopy=False) if "error" in t.user_attrs)
        raise SearchFailedError(f"every trial of the search failed ({c['errors']}); the first: {first}")
    try:
        return write_outputs(study, opts, recipe, space, tgt.name, out, url, time.perf_counter() - t0, log=log)
    finally:
        folder.close()


def write_outputs(study, opts: SearchOptions, base: Recipe, space: SearchSpace, target_name: str, out: Path, url: str, seconds: float,
                  *, log: Callable[[str], None] = print) -> SearchResult:
    """all_trials.csv, pareto.csv/json/png, the finalists retrained into OUT/final/, search.json."""
    rows = trial_rows(study, space)
    front_rows = front(rows, space)
    cols = ["number", "state", *space.params, *METRICS, "retry_of", "duplicate_of", "reason"]
    write_csv(out / "all_trials.csv", [r.to_json() for r in rows], cols)
    write_csv(out / "pareto.csv", [r.to_json() for r in front_rows], cols[:-3])
    c = counts(study)
    meta = {"study": opts.study_name, "storage": url, "target": target_name, "trials": opts.trials, "counts": c, "seconds": round(seconds, 1),
            "objective": ("validation accuracy (held-out training samples), frames/s and cost together (Optuna multi-objective)"
                          if opts.multi else "validation accuracy (held-out training samples)") + ", under the board's caps and min_fps",
            "directions": {"accuracy": "maximize", "fps": "maximize", "cost": f"minimize ({opts.cost})"} if opts.multi else {"accuracy": "maximize"},
            "folding": "qflow's optimizer (auto)" if opts.folding == "auto" else f"FINN SetFolding toward {opts.min_fps:,.0f} FPS",
            "front": {"accuracy": "maximize", "cost": f"minimize ({opts.cost})", "fps": "maximize"},
            "space": {k: list(v) for k, v in space.params.items()}, "min_fps": opts.min_fps,
            "pruner": opts.pruner if not opts.multi else "none (Optuna prunes single-objective studies only)",
            "budget": {"trial_epochs": trial_budget(opts, base), "max_train_samples": opts.max_train_samples, "val_samples": opts.val_samples,
                       "final_epochs": base.train.epochs}}
    pts = [{**r.metrics_json(), "params": dict(r.params), "point": asdict(space.point(dict(r.params)))} for r in front_rows]
    atomic_write_json(out / "pareto.json", {**meta, "front": pts})
    final_rows = finalists(front_rows, opts.finalists, opts.min_fps, spread_out=opts.multi)
    results = retrain(base, space, final_rows, target=opts.target, out=out, cost_of=lambda rep: cost_of(rep, opts.cost, opts.cost_weights),
                      fold_to_fps=fold_to_fps(opts), log=log) if final_rows else []
    chosen = choose(results, opts.acc_tolerance)
    marker = TECHNIQUE_PARAM if len(space.techniques) > 1 else None
    title = f"{opts.study_name}: {c['done']} trials ({c['trained']} trained) on {target_name}"
    save_png(front_plot([r.to_json() for r in rows if r.state == "COMPLETE"], [r.to_json() for r in front_rows],
                        chosen and {**chosen.to_json(), "number": chosen.trial}, title, marker_key=marker), out / "pareto.png")
    files = {k: str(out / k) for k in ("all_trials.csv", "pareto.csv", "pareto.json", "pareto.png")}
    if chosen is not None:
        files["chosen"] = chosen.report
    log(f"{c['done']} trials ({c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, {c['trained']} trained), {len(front_rows)} on the front, "
        f"{sum(r.verified for r in results)} of {len(results)} finalists verified")
    atomic_write_json(out / "search.json", {**meta, "finalists": [r.to_json() for r in results],
                                            "chosen": None if chosen is None else chosen.to_json(), "files": files})
    return SearchResult(opts.study_name, url, out, c, pts, results, chosen, files)


__all__ = ["SEARCH_FILES", "SearchFailedError", "SearchOptions", "SearchResult", "Surplus", "read_floors", "run_worker", "search"]
