"""Each Optuna/SQLAlchemy workaround is still needed, and works."""

import importlib.util
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.dialects import postgresql

from flow.compat import optuna as optuna_compat


def _storage(tmp_path, **kw):
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", **kw)


def test_sqlalchemy_defaults_postgresql_to_psycopg3_which_is_not_installed():
    assert postgresql.dialect.driver == "psycopg"
    assert importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None
    assert optuna_compat.storage_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert optuna_compat.storage_url("sqlite:///x.db") == "sqlite:///x.db"


def test_heartbeat_storage_warns_and_quiet_silences_it_only_inside(tmp_path):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _storage(tmp_path, heartbeat_interval=10)
    assert any(issubclass(w.category, optuna.exceptions.ExperimentalWarning) for w in seen)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with optuna_compat.quiet():
            _storage(tmp_path, heartbeat_interval=10)
        warnings.warn("after", optuna.exceptions.ExperimentalWarning)
    assert [str(w.message) for w in seen] == ["after"]


def test_a_trial_without_any_heartbeat_is_never_stale_to_optuna(tmp_path):
    with optuna_compat.quiet():
        storage = _storage(tmp_path, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    storage.create_new_trial(study._study_id)  # RUNNING, as if its process died at once
    time.sleep(1.5)  # older than the grace period
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING  # why the workaround exists
    assert optuna_compat.fail_trials_without_heartbeat(study, grace_seconds=1) == 1
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states[0] == TrialState.FAIL and TrialState.WAITING in states  # failed, and re-queued once


@pytest.mark.parametrize("grace", [3600])
def test_a_recent_trial_without_heartbeat_is_left_running(tmp_path, grace):
    with optuna_compat.quiet():
        storage = _storage(tmp_path, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    storage.create_new_trial(study._study_id)
    assert optuna_compat.fail_trials_without_heartbeat(study, grace_seconds=grace) == 0


def test_optuna_has_no_public_hypervolume_and_its_private_one_is_exact():
    """qflow's search measures fronts by hypervolume; Optuna 5.0 keeps it in ``optuna._hypervolume`` only."""
    import numpy as np

    assert not hasattr(optuna, "hypervolume") and not hasattr(optuna.study, "compute_hypervolume")
    # two boxes from the origin to (-1, -2, -3)... in losses: reference (0, 0, 0), points inside it
    pts = np.array([[-1.0, -2.0, -3.0], [-2.0, -1.0, -1.0]])
    union = 1 * 2 * 3 + 2 * 1 * 1 - 1 * 1 * 1  # inclusion-exclusion: the overlap is 1 x 1 x 1
    assert optuna_compat.hypervolume(pts, (0.0, 0.0, 0.0)) == pytest.approx(union)
    assert optuna_compat.hypervolume(np.array([[1.0, -1.0, -1.0]]), (0.0, 0.0, 0.0)) == 0.0  # outside the reference: nothing
    assert optuna_compat.hypervolume(np.empty((0, 3)), (0.0, 0.0, 0.0)) == 0.0
