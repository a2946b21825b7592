"""The Optuna study behind ``qflow search``: storage, sampler, pruner, budget and worker processes.

Storage is an Optuna RDB (``sqlite:///OUT/study.db`` by default, or ``postgresql://...`` shared
across machines) with heartbeats: a trial left RUNNING by a killed process is failed once its
heartbeat is ``grace_period`` old and re-queued exactly once
(``RetryHeartbeatStaleTrialCallback``, ``max_retry=1``), so rerunning the same command resumes
with nothing lost or repeated. ``trials`` counts finished evaluations (COMPLETE + PRUNED); a
worker about to start a trial that would exceed the budget (counting finished trials and
earlier RUNNING ones) records it as FAIL with user attr ``surplus`` and stops, so exactly
``trials`` evaluations finish even with several workers.

The study (``objective``) is either ``"pareto"`` (the default): three objectives at once,
validation accuracy and frames/s maximized and the cost (LUT of layers plus converters, or
the weighted utilisation) minimized, with Optuna's multi-objective TPE; or ``"accuracy"``:
validation accuracy alone, reported after every epoch so that successive halving or Hyperband
stop weak trials (Optuna prunes single-objective studies only: in a three-objective study
every trained point trains its whole trial budget). The sampler is TPE (multivariate, with a
constant liar so parallel workers spread out).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from flow.compat import optuna as optuna_compat
from flow.core.errors import ConfigError
from flow.core.progress import Bar

PRUNERS = ("hyperband", "halving", "none")
COSTS = ("lut", "util")
#: What a study optimizes: all three axes, or validation accuracy alone.
OBJECTIVES = ("pareto", "accuracy")
#: Optuna's directions of a three-objective study: validation accuracy, frames/s, cost.
PARETO_DIRECTIONS = ("maximize", "maximize", "minimize")
#: How each point is folded: qflow's optimizer (the fastest folding that fits) or FINN's SetFolding toward min_fps.
FOLDINGS = ("auto", "fps")


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
    val_samples: int = 5000
    threads: int | None = None
    cost: str = "lut"
    objective: str = "pareto"
    folding: str = "auto"
    cost_weights: dict[str, float] | None = None
    weight_bits: tuple[int | str, ...] = (1, "ternary", 2, 3, 4, 5, 6, 7, 8)
    act_bits: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    widths: tuple[int, ...] = ()
    techniques: tuple[str, ...] = ()
    floors: dict[str, dict[str, Any]] = field(default_factory=dict)
    min_fps: float = 0.0
    pruner: str = "hyperband"
    finalists: int = 3
    heartbeat_interval: int = 10
    grace_period: int | None = None
    acc_tolerance: float = 0.0

    @property
    def multi(self) -> bool:
        """Whether the study optimizes accuracy, frames/s and cost together."""
        return self.objective == "pareto"

    @property
    def grace(self) -> int:
        return self.grace_period if self.grace_period is not None else 3 * self.heartbeat_interval


def check_options(opts: SearchOptions) -> None:
    """Every search option in range before any trial starts (ConfigError naming the option)."""
    bounds = {"trials": (opts.trials, 1, 100_000), "workers": (opts.workers, 1, 64), "heartbeat": (opts.heartbeat_interval, 1, 3600),
              "epochs": (opts.epochs, 1, 100_000), "max-train-samples": (opts.max_train_samples, 1, 100_000_000),
              "val-samples": (opts.val_samples, 1, 1_000_000), "threads": (opts.threads, 1, 1024), "finalists": (opts.finalists, 0, 100)}
    for name, (value, lo, hi) in bounds.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi):
            raise ConfigError(f"search: --{name} must be an integer from {lo:,} to {hi:,}, got {value!r}")
    if opts.cost not in COSTS:
        raise ConfigError(f"search: --cost must be one of {', '.join(COSTS)}, got {opts.cost!r}")
    if opts.objective not in OBJECTIVES:
        raise ConfigError(f"search: --objective must be one of {', '.join(OBJECTIVES)}, got {opts.objective!r}")
    if opts.folding not in FOLDINGS:
        raise ConfigError(f"search: --folding must be one of {', '.join(FOLDINGS)}, got {opts.folding!r}")
    if opts.folding == "fps" and not opts.min_fps:
        raise ConfigError("search: --folding fps folds every point toward --min-fps; give a frame rate above 0")
    if opts.pruner not in PRUNERS:
        raise ConfigError(f"search: --pruner must be one of {', '.join(PRUNERS)}, got {opts.pruner!r}")
    if not (isinstance(opts.min_fps, (int, float)) and 0 <= opts.min_fps <= 1e12):
        raise ConfigError(f"search: --min-fps must be a frame rate from 0 to 1e12, got {opts.min_fps!r}")
    if not (isinstance(opts.acc_tolerance, (int, float)) and 0 <= opts.acc_tolerance <= 1):
        raise ConfigError(f"search: --acc-tolerance must be between 0 and 1, got {opts.acc_tolerance!r}")
    if opts.grace_period is not None and opts.grace_period < opts.heartbeat_interval:
        raise ConfigError(f"search: the grace period ({opts.grace_period} s) must be at least one heartbeat ({opts.heartbeat_interval} s)")
    if opts.storage is not None:
        optuna_compat.check_storage_url(opts.storage)


#: Tables every Optuna RDB study file has.
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


def study_url(opts: SearchOptions) -> str:
    """The storage URL: ``--storage``, else ``sqlite:///OUT/study.db``."""
    return opts.storage or f"sqlite:///{Path(opts.out_dir).resolve() / 'study.db'}"


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown cut short
        return url[:80]


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    rest = url.removeprefix("sqlite:///")
    return Path(rest) if rest and rest != ":memory:" else None


def check_study_files(opts: SearchOptions) -> None:
    """An SQLite study file (and its journal files) must be absent, or a regular file with one link
    that is an Optuna study (or empty): no link, pipe or device, and no other database (ConfigError, one line)."""
    path = _sqlite_path(study_url(opts))
    if path is None:
        return
    for p in (path, *(path.with_name(path.name + s) for s in ("-journal", "-wal", "-shm"))):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a file with other hard links" if stat.S_ISREG(st.st_mode) else "not a regular file"
            raise ConfigError(f"study storage {p} is {what}; qflow keeps a study only in a regular file of its own: move it away")
    if not path.exists() or path.stat().st_size == 0:
        return
    optuna_compat.check_storage_url(f"sqlite:///{path}")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        raise ConfigError(f"study storage {path} cannot be read as a database ({' '.join(str(e).split())[:120]}); move it away") from None
    if not OPTUNA_TABLES <= tables:
        raise ConfigError(f"study storage {path} is an SQLite database but not an Optuna study (tables: {', '.join(sorted(tables))[:120]}); "
                          "give a new file or a study.db a search wrote")


def storage(opts: SearchOptions):
    url = optuna_compat.storage_url(study_url(opts))
    kw = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with optuna_compat.quiet():
            rdb = optuna.storages.RDBStorage(
                url, engine_kwargs=kw, heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError, ValueError) as e:
        detail = " ".join(str(getattr(e, "orig", None) or e).split())[:200]
        raise ConfigError(f"study storage {_shown(url)} cannot be opened ({type(e).__name__}: {detail}); "
                          "check the URL and that the database server is reachable") from None
    return rdb, url


def make_pruner(opts: SearchOptions, max_epochs: int):
    if opts.multi:
        return optuna.pruners.NopPruner()
    if opts.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs), reduction_factor=3)
    if opts.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def load_study(opts: SearchOptions, *, sampler=None, max_epochs: int = 1):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb, url = storage(opts)
    try:
        with optuna_compat.quiet():
            directions = list(PARETO_DIRECTIONS) if opts.multi else ["maximize"]
            return optuna.create_study(study_name=opts.study_name, storage=rdb, sampler=sampler, pruner=make_pruner(opts, max_epochs),
                                       load_if_exists=True, directions=directions)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ValueError) as e:
        detail = " ".join(str(getattr(e, "orig", None) or e).split())[:200]
        raise ConfigError(f"study storage {_shown(url)} cannot hold the study ({type(e).__name__}: {detail})") from None


def make_sampler(seed: int):
    with optuna_compat.quiet():
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=8)


def counts(study) -> dict[str, int]:
    out: dict[str, int] = {}
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    out["done"] = out.get("COMPLETE", 0) + out.get("PRUNED", 0)
    out["errors"] = sum(1 for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs)
    out["trained"] = sum(1 for t in trials if "epochs_run" in t.user_attrs or "pruned_at_epoch" in t.user_attrs)
    return out


class Surplus(Exception):
    """The budget is already covered by finished and earlier running trials."""


def claim_budget(trial, budget: int) -> None:
    """Raise :class:`Surplus` (and stop the study) when this trial would exceed the budget."""
    ts = trial.study.get_trials(deepcopy=False)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ts)
    ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in ts)
    if done + ahead >= budget:
        trial.set_user_attr("surplus", True)
        trial.study.stop()
        raise Surplus(f"{done} finished + {ahead} running >= {budget}")


def stop_callback(budget: int):
    def cb(study, trial) -> None:
        ts = study.get_trials(deepcopy=False)
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ts)
        running = sum(t.state == TrialState.RUNNING for t in ts)
        errors = sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in ts)
        if done + running >= budget or errors >= max(budget, 3):
            study.stop()

    return cb


def recover_stale(study, opts: SearchOptions) -> None:
    """Wait (at most grace + 2 heartbeats) for RUNNING trials of dead processes to go stale, then fail and re-queue them."""
    deadline = time.monotonic() + opts.grace + 2 * opts.heartbeat_interval
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) and time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            break
        time.sleep(min(1.0, opts.heartbeat_interval / 2))
    optuna_compat.fail_trials_without_heartbeat(study, opts.grace)


class Monitor:
    """Progress of a search: trials done/total, trained, best validation accuracy, seconds per trial."""

    def __init__(self, opts: SearchOptions, enabled: bool):
        self.opts, self.bar = opts, Bar("search", opts.trials, enabled=enabled)

    def __enter__(self) -> "Monitor":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def refresh(self, study, trial=None) -> None:
        c = counts(study)
        ok = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        info = f"{c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, {c['trained']} trained"
        if ok:
            info += f" | best val acc {100 * max(t.values[0] for t in ok):.2f}%"
        self.bar.update(completed=min(c["done"], self.opts.trials), info=info)


def run_rounds(opts: SearchOptions, study, worker: Callable, monitor: Monitor) -> None:
    """Run workers until the budget is done, re-running them when some died with trials left."""
    for _ in range(2 * opts.trials + 2):
        recover_stale(study, opts)
        c = counts(study)
        if c["done"] >= opts.trials or c["errors"] >= max(opts.trials, 3):
            break
        n = min(opts.workers, opts.trials - c["done"])
        if n <= 1:
            worker(opts, 0, monitor.refresh)
        else:
            procs = [mp.get_context("spawn").Process(target=worker, args=(opts, i), daemon=False) for i in range(n)]
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
        after = counts(study)
        if after["done"] == c["done"] and after["errors"] == c["errors"] and not after.get("RUNNING"):
            break  # no progress and nothing left to recover
