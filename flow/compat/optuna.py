"""Workarounds for Optuna 5.0 (and SQLAlchemy) internals, each with its reason.

``tests/compat/test_optuna.py`` shows each is still needed.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.storages._rdb.models import TrialHeartbeatModel
from optuna.trial import TrialState

from flow.core.errors import ConfigError


def storage_url(url: str) -> str:
    """``url`` with the psycopg2 driver named for PostgreSQL when psycopg 3 is not installed.

    Reason: SQLAlchemy 2.1 defaults ``postgresql://`` to psycopg 3; qflow installs psycopg2.
    """
    if url.startswith(("postgresql://", "postgres://")):
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


SQLITE_MAGIC = b"SQLite format 3\x00"


def check_storage_url(url: str) -> None:
    """ConfigError unless ``url`` is an SQLite or PostgreSQL URL, and an existing SQLite file is a database.

    Reason: SQLAlchemy reports a malformed URL, or a file that is not a database, with
    exceptions from deep inside its dialects.
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("sqlite", "postgresql", "postgres", "postgresql+psycopg2"):
        raise ConfigError(f"--storage {url[:80]!r} is not a database URL; use sqlite:///path/study.db or postgresql://user@host/db")
    if scheme == "sqlite":
        path = Path(url.split("://", 1)[1].removeprefix("/"))
        path = Path("/" + str(path)) if url.startswith("sqlite:////") else path
        if path.exists():
            try:
                with path.open("rb") as f:
                    head = f.read(16)
            except OSError as e:
                raise ConfigError(f"--storage {path} cannot be read: {e.strerror or e}") from None
            if head and head != SQLITE_MAGIC:
                raise ConfigError(f"--storage {path} is not an SQLite database; give a new file or an existing study.db")


@contextlib.contextmanager
def quiet():
    """Optuna's experimental-feature warnings (heartbeats, retry callbacks) off, for this block only.

    Reason: the heartbeat and retry-callback APIs qflow uses are marked experimental and warn
    on every storage and study created.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def fail_trials_without_heartbeat(study, grace_seconds: float) -> int:
    """Fail (and re-queue once) RUNNING trials older than ``grace_seconds`` that never sent a heartbeat.

    Reason: a process killed before its trial's first heartbeat leaves the trial RUNNING with
    no heartbeat row, which Optuna's ``fail_stale_trials`` never sees as stale. The heartbeat
    table is only reachable through Optuna's private RDB models.
    """
    storage = getattr(study._storage, "_backend", study._storage)
    now = datetime.datetime.now()
    failed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.datetime_start is None or (now - t.datetime_start).total_seconds() < grace_seconds:
            continue
        with storage.scoped_session() as session:
            beats = session.query(TrialHeartbeatModel).filter(TrialHeartbeatModel.trial_id == t._trial_id).count()
        if beats == 0 and storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study._storage.get_trial(t._trial_id))
            failed += 1
    return failed


def hypervolume(losses, reference) -> float:
    """The hypervolume dominated by ``losses`` (rows of objective values, every one minimized) up to ``reference``.

    Reason: Optuna 5.0 computes hypervolumes (WFG, exact in any dimension) only in its private
    ``optuna._hypervolume`` module, which its own ``plot_hypervolume_history`` imports; it has
    no public function for it. Points not strictly better than ``reference`` on every
    objective add nothing and are left out.
    """
    pts = np.asarray(losses, dtype=float).reshape(-1, len(reference))
    ref = np.asarray(reference, dtype=float)
    pts = pts[np.all(pts < ref, axis=1)]
    return float(compute_hypervolume(pts, ref)) if len(pts) else 0.0
