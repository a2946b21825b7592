"""`qflow search` with 2 workers sharing a PostgreSQL study (a throwaway server in a temp dir).

Needs PostgreSQL's server binaries (Debian: ``apt-get install postgresql``); skipped otherwise.
Run with ``pytest -m postgres``.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from flow.explore.recipe import recipe_from_dict
from flow.explore.search import search
from tests.explore.test_search import RECIPE

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _pg_bin() -> Path | None:
    for d in [*(Path(p).parent for p in filter(None, [shutil.which("pg_ctl")])), *map(Path, sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))]:
        if (d / "pg_ctl").exists() and (d / "initdb").exists():
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install the Debian package postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 (psycopg2-binary) is needed for postgresql:// storage")
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="qflow-pg-"))
    if prefix:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "qflow"], check=True, capture_output=True)
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start",
                    "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    try:
        yield f"postgresql://qflow@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgres_study(tmp_path, postgres_url):
    res = search(recipe_from_dict(RECIPE), "pynq-z1", tmp_path, trials=4, workers=2, storage=postgres_url, study_name="pg-test",
                 weight_bits=(1, 2, 4), act_bits=(1, 2, 4), heartbeat_interval=2, finalists=0, val_samples=200, progress=False, log=lambda s: None)
    assert res.storage.startswith("postgresql")
    import optuna

    study = optuna.load_study(study_name="pg-test", storage=res.storage)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4  # exactly the budget, even with two workers
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert (tmp_path / "pareto.json").exists() and (tmp_path / "all_trials.csv").exists()
    assert not (tmp_path / "study.db").exists()
