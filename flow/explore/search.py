"""``qflow search``: multi-objective search over per-layer bit widths (and optionally the
quantization technique), folded for a target.

Every trial quantizes the recipe's model at one point of
:class:`flow.explore.space.SearchSpace` with a short budget (QAT, or PTQ, distillation,
low-rank: the recipe's ``[technique]``, or the point's technique when ``techniques`` are
searched), exports it, compiles it with auto folding (qflow's optimizer: the fastest
folding and HLS/RTL variants within the board's caps) and reads FINN's estimates.
Optuna's NSGA-II maximizes accuracy, minimizes cost (LUT, or a weighted utilisation) and
maximizes throughput. Designs with no folding that fits are PRUNED trials whose user attr
``infeasible`` holds the optimizer's reason.

Trial budget: ``trials`` counts finished evaluations (COMPLETE + PRUNED). Storage is an
Optuna RDB (``sqlite:///OUT/study.db`` by default, or ``postgresql://...`` shared across
machines) with heartbeats: a trial left RUNNING by a killed process is failed once its
heartbeat is ``grace_period`` old and re-queued exactly once (``RetryHeartbeatStaleTrialCallback``,
``max_retry=1``), so rerunning the same command resumes with nothing lost or repeated.
A worker about to start a trial that would exceed the budget (counting finished trials and
earlier RUNNING ones) records it as FAIL with user attr ``surplus`` and stops, so exactly
``trials`` evaluations finish even with several workers.

Chosen design rule: among the Pareto-front trials whose design fits the board, the
cheapest (lowest cost, then highest FPS) whose accuracy is within ``acc_tolerance`` of the
front's best accuracy (default 0: the most accurate front point). It is rebuilt with
:func:`flow.explore.run.run` (the recipe's own [train] budget, auto folding) into ``OUT/chosen``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from flow.compat import optuna as optuna_compat
from flow.core.errors import ConfigError, InfeasibleDesignError, QflowError
from flow.core.fileio import atomic_write_json
from flow.core.outdir import refuse_place
from flow.core.progress import Bar
from flow.explore.recipe import Recipe, recipe_from_dict
from flow.explore.run import run
from flow.explore.space import (
    BIT_CHOICES,
    COSTS,
    TECHNIQUE_PARAM,
    SearchSpace,
    choose,
    evaluate_point,
    pareto,
    point_recipe,
    search_space,
    trial_rows,
    write_csv,
)
from flow.report.schema import Report
from flow.report.style import save_png
from flow.report.tradeoff import front_plot
from hw_targets import load_target

METRICS = ("accuracy", "cost", "fps", "lut", "bram_18k", "uram", "dsp", "latency_us", "max_cycles", "fits", "train_s", "build_s")


@dataclass
class SearchOptions:
    """Everything a worker process needs (picklable: sent to spawned workers)."""

    recipe: dict[str, Any]
    target: str
    trials: int
    out_dir: str
    workers: int = 1
    storage: str | None = None
    study_name: str | None = None
    epochs: int | None = None
    max_train_samples: int | None = None
    threads: int | None = None
    cost: str = "lut"
    cost_weights: dict[str, float] | None = None
    weight_bits: tuple[int, ...] = BIT_CHOICES
    act_bits: tuple[int, ...] = BIT_CHOICES
    techniques: tuple[str, ...] = ()
    population: int | None = None
    heartbeat_interval: int = 10
    grace_period: int | None = None
    acc_tolerance: float = 0.0
    build_chosen: bool = True

    @property
    def grace(self) -> int:
        return self.grace_period if self.grace_period is not None else 3 * self.heartbeat_interval


@dataclass
class SearchResult:
    study_name: str
    storage: str
    out_dir: Path
    counts: dict[str, int]
    pareto: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    chosen_report: Report | None = None
    files: dict[str, str] = field(default_factory=dict)


def _storage(opts: SearchOptions):
    url = optuna_compat.storage_url(opts.storage or f"sqlite:///{Path(opts.out_dir).resolve() / 'study.db'}")
    kw = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with optuna_compat.quiet():
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=kw, heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
        )
    return storage, url


def _load_study(opts: SearchOptions, sampler=None):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, _ = _storage(opts)
    return optuna.create_study(
        study_name=opts.study_name, storage=storage, sampler=sampler, load_if_exists=True,
        directions=["maximize", "minimize", "maximize"],
    )


def _states():
    return TrialState


def counts(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    S = _states()
    out["done"] = out.get("COMPLETE", 0) + out.get("PRUNED", 0)
    out["errors"] = sum(1 for t in study.get_trials(deepcopy=False, states=(S.FAIL,)) if "error" in t.user_attrs)
    return out


class SearchFailedError(QflowError):
    """Every trial of a search failed (the message gives the first trial's error)."""


def check_options(opts: SearchOptions) -> None:
    """Every search option in range before any trial starts (ConfigError naming the option)."""
    bounds = {"trials": (opts.trials, 1, 100_000), "workers": (opts.workers, 1, 64), "heartbeat": (opts.heartbeat_interval, 1, 3600),
              "epochs": (opts.epochs, 0, 100_000), "max-train-samples": (opts.max_train_samples, 1, 100_000_000),
              "threads": (opts.threads, 1, 1024), "population": (opts.population, 2, 10_000)}
    for name, (value, lo, hi) in bounds.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi):
            raise ConfigError(f"search: --{name} must be an integer from {lo:,} to {hi:,}, got {value!r}")
    if opts.cost not in COSTS:
        raise ConfigError(f"search: --cost must be one of {', '.join(COSTS)}, got {opts.cost!r}")
    if not (isinstance(opts.acc_tolerance, (int, float)) and 0 <= opts.acc_tolerance <= 1):
        raise ConfigError(f"search: --acc-tolerance must be between 0 and 1, got {opts.acc_tolerance!r}")
    if opts.grace_period is not None and opts.grace_period < opts.heartbeat_interval:
        raise ConfigError(f"search: the grace period ({opts.grace_period} s) must be at least one heartbeat ({opts.heartbeat_interval} s)")
    if opts.storage is not None:
        optuna_compat.check_storage_url(opts.storage)


class _Surplus(Exception):
    """The budget is already covered by finished and earlier running trials."""


def _objective(opts: SearchOptions, base: Recipe, space: SearchSpace):
    S = _states()
    out = Path(opts.out_dir)

    def objective(trial):
        ts = trial.study.get_trials(deepcopy=False)
        done = sum(t.state in (S.COMPLETE, S.PRUNED) for t in ts)
        ahead = sum(t.state == S.RUNNING and t.number < trial.number for t in ts)
        if done + ahead >= opts.trials:
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise _Surplus(f"{done} finished + {ahead} running >= {opts.trials}")
        params = space.sample(trial)
        trial.set_user_attr("layers", space.layer_bits(params))
        for t in ts:  # the same point finished before: reuse it (training is seeded, so the result is the same)
            if t.state == S.COMPLETE and t.params == params and "accuracy" in t.user_attrs:
                for k in (*METRICS, "report"):
                    trial.set_user_attr(k, t.user_attrs.get(k))
                trial.set_user_attr("duplicate_of", t.number)
                return t.values
        t0 = time.perf_counter()
        try:
            recipe = point_recipe(base, space, params, target=opts.target, name=f"{base.name}-t{trial.number:04d}",
                                  epochs=opts.epochs, max_train_samples=opts.max_train_samples, threads=opts.threads)
            m = evaluate_point(recipe, out / "trials" / f"{trial.number:04d}", cost=opts.cost, cost_weights=opts.cost_weights)
        except InfeasibleDesignError as e:
            trial.set_user_attr("infeasible", " ".join(str(e).split()))
            raise optuna.TrialPruned(str(e)) from None
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {' '.join(str(e).split())[:500]}")
            raise
        for k, v in m.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("trial_s", round(time.perf_counter() - t0, 3))
        return m["accuracy"], m["cost"], m["fps"]

    return objective


def _stop_callback(opts: SearchOptions):
    S = _states()

    def cb(study, trial) -> None:
        ts = study.get_trials(deepcopy=False)
        done = sum(t.state in (S.COMPLETE, S.PRUNED) for t in ts)
        running = sum(t.state == S.RUNNING for t in ts)
        errors = sum(t.state == S.FAIL and "error" in t.user_attrs for t in ts)
        if done + running >= opts.trials or errors >= max(opts.trials, 3):
            study.stop()

    return cb


def run_worker(opts: SearchOptions, worker_id: int = 0, callback: Callable | None = None) -> None:
    """One worker: run trials of the shared study until the budget is covered (a spawned process's entry point)."""
    base = recipe_from_dict(opts.recipe, source="search recipe")
    space = search_space(base, opts.weight_bits, opts.act_bits, opts.techniques)
    probe = _load_study(opts)
    n_existing = len(probe.get_trials(deepcopy=False))
    if counts(probe)["done"] >= opts.trials:
        return
    pop = opts.population or max(4, min(50, opts.trials // 2))
    sampler = optuna.samplers.NSGAIISampler(population_size=pop, seed=base.seed * 100_003 + 1009 * worker_id + n_existing)
    study = _load_study(opts, sampler)
    cbs = [optuna.study.MaxTrialsCallback(opts.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)), _stop_callback(opts)]
    if callback is not None:
        cbs.append(callback)
    with optuna_compat.quiet():
        study.optimize(_objective(opts, base, space), callbacks=cbs, catch=(Exception,), gc_after_trial=True)


def recover_stale(study, opts: SearchOptions) -> None:
    """Wait (at most grace + 2 heartbeats) for RUNNING trials of dead processes to go stale, then fail and re-queue them."""
    S = _states()
    deadline = time.monotonic() + opts.grace + 2 * opts.heartbeat_interval
    while study.get_trials(deepcopy=False, states=(S.RUNNING,)) and time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        if not study.get_trials(deepcopy=False, states=(S.RUNNING,)):
            break
        time.sleep(min(1.0, opts.heartbeat_interval / 2))
    optuna_compat.fail_trials_without_heartbeat(study, opts.grace)


class _Monitor:
    """Progress of a search: trials done/total, best accuracy, cheapest point, seconds per trial."""

    def __init__(self, opts: SearchOptions, enabled: bool):
        self.opts, self.bar = opts, Bar("search", opts.trials, enabled=enabled)

    def __enter__(self) -> "_Monitor":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def refresh(self, study, trial=None) -> None:
        S = _states()
        done = study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED))
        ok = [t for t in done if t.state == S.COMPLETE]
        secs = [t.user_attrs["trial_s"] for t in ok if "trial_s" in t.user_attrs]
        info = f"{len(ok)} ok, {len(done) - len(ok)} infeasible"
        if ok:
            info += f" | best acc {100 * max(t.values[0] for t in ok):.2f}% | min {self.opts.cost} {min(t.values[1] for t in ok):,.4g}"
        if secs:
            info += f" | {sum(secs) / len(secs):.1f} s/trial"
        self.bar.update(completed=min(len(done), self.opts.trials), info=info)


def _run_round(opts: SearchOptions, study, monitor: _Monitor, n_workers: int) -> None:
    if n_workers <= 1:
        run_worker(opts, 0, callback=monitor.refresh)
        return
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(opts, i), daemon=False) for i in range(n_workers)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            monitor.refresh(study)
            time.sleep(1.0)
    finally:
        for p in procs:
            p.join()
    monitor.refresh(study)


def search(recipe: Recipe, target: str | None, out_dir: str | Path, *, trials: int, workers: int = 1, progress: bool = True,
           log: Callable[[str], None] = print, **options: Any) -> SearchResult:
    """Run (or resume) the search and write its outputs into ``out_dir``; see the module docstring.

    ``options`` are :class:`SearchOptions` fields: storage, study_name, epochs, max_train_samples,
    threads, cost ("lut" or "util"), cost_weights, weight_bits, act_bits, techniques, population,
    heartbeat_interval, grace_period, acc_tolerance, build_chosen.
    """
    target = target or recipe.build.target
    tgt = load_target(target)
    out = refuse_place(out_dir)
    opts = SearchOptions(recipe=recipe.model_dump(mode="json", exclude_unset=True), target=target, trials=trials, out_dir=str(out), workers=workers, **options)
    check_options(opts)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out} cannot be created: {e.strerror or e}") from None
    if opts.study_name is None:
        opts.study_name = f"{recipe.name}-{tgt.name}"
    space = search_space(recipe, opts.weight_bits, opts.act_bits, opts.techniques)  # validates before any worker starts
    study = _load_study(opts)
    _, url = _storage(opts)
    log(f"search {opts.study_name}: {len(space.params)} parameters, {space.size:,} points, {trials} trials, {workers} worker(s), storage {url}")
    t0 = time.perf_counter()
    with _Monitor(opts, progress) as monitor:
        monitor.refresh(study)
        for _ in range(2 * trials + 2):  # rounds: re-run workers if some died with trials left
            recover_stale(study, opts)
            c = counts(study)
            if c["done"] >= trials or c["errors"] >= max(trials, 3):
                break
            _run_round(opts, study, monitor, min(workers, trials - c["done"]))
            after = counts(study)
            if after["done"] == c["done"] and after["errors"] == c["errors"] and not after.get("RUNNING"):
                break  # no progress and nothing left to recover
    c = counts(study)
    if c["done"] == 0 and c["errors"]:
        first = next(t.user_attrs["error"] for t in study.get_trials(deepcopy=False) if "error" in t.user_attrs)
        raise SearchFailedError(f"every trial of the search failed ({c['errors']}); the first: {first}")
    return write_outputs(study, opts, space, tgt, out, url, time.perf_counter() - t0, log=log, progress=progress)


def write_outputs(study, opts: SearchOptions, space: SearchSpace, tgt, out: Path, url: str, seconds: float, *, log=print, progress=True) -> SearchResult:
    """all_trials.csv, pareto.csv/json, pareto.png, search.json, and the chosen design built into OUT/chosen."""
    base = recipe_from_dict(opts.recipe, source="search recipe")
    rows = trial_rows(study, space)
    front = pareto(rows, space)
    chosen = choose(front, opts.acc_tolerance)
    cols = ["number", "state", *space.params, "accuracy", "cost", "fps", "lut", "bram_18k", "uram", "dsp", "latency_us", "max_cycles", "fits", "train_s", "build_s", "trial_s", "retry_of", "duplicate_of", "reason"]
    write_csv(out / "all_trials.csv", rows, cols)
    write_csv(out / "pareto.csv", front, cols[:-3])
    pts = []
    for r in front:
        params = {k: r[k] for k in space.params}
        rec = point_recipe(base, space, params, target=opts.target, name=f"{base.name}-t{r['number']:04d}")
        pts.append({**{k: r[k] for k in cols[:-3] if k not in space.params}, "params": params, "layers": space.layer_bits(params), "recipe": rec.model_dump(mode="json", exclude_unset=True)})
    c = counts(study)
    meta = {"study": opts.study_name, "storage": url, "target": tgt.name, "objectives": {"accuracy": "maximize", "cost": f"minimize ({opts.cost})", "fps": "maximize"},
            "trials": opts.trials, "counts": c, "seconds": round(seconds, 1), "space": {k: list(v) for k, v in space.params.items()},
            "budget": {"epochs": opts.epochs, "max_train_samples": opts.max_train_samples, "threads": opts.threads},
            "rule": f"most accurate fitting front point; cheapest within {opts.acc_tolerance} accuracy of it", "chosen": chosen["number"] if chosen else None}
    atomic_write_json(out / "pareto.json", {**meta, "front": pts})
    marker = TECHNIQUE_PARAM if len(space.techniques) > 1 else None
    save_png(front_plot(rows, front, chosen, f"{opts.study_name}: {c['done']} trials on {tgt.name}", marker_key=marker), out / "pareto.png")
    files = {k: str(out / k) for k in ("all_trials.csv", "pareto.csv", "pareto.json", "pareto.png")}
    result = SearchResult(opts.study_name, url, out, c, pts, chosen, files=files)
    log(f"{c['done']} trials ({c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} infeasible), {len(front)} on the Pareto front")
    chosen_info: dict[str, Any] | None = None
    if chosen is not None and opts.build_chosen:
        params = {k: chosen[k] for k in space.params}
        verify = base.build.verify_samples or 100  # flow.explore.run needs at least one verification sample
        rec = point_recipe(base, space, params, target=opts.target, name=f"{base.name}-chosen", verify_samples=verify)
        log(f"building the chosen design (trial {chosen['number']}) into {out / 'chosen'}")
        try:
            res = run(rec, out / "chosen", progress=False, log=lambda s: None)
            result.chosen_report = res.report
            v = res.report.verification
            chosen_info = {"trial": chosen["number"], "report": str(out / "chosen" / "report.json"), "accuracy": res.accuracy,
                           "lut": res.report.totals["lut"], "fps": res.report.throughput_fps, "verified": None if v is None else v.passed}
            files["chosen"] = chosen_info["report"]
        except QflowError as e:
            chosen_info = {"trial": chosen["number"], "error": f"{type(e).__name__}: {e}"}
            log(f"the chosen design failed: {e}")
    atomic_write_json(out / "search.json", {**meta, "chosen_build": chosen_info, "files": files})
    return result
