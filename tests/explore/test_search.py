"""`qflow search`: search space, a small search end to end, infeasible trials, resume after kill -9."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.explore.recipe import recipe_from_dict
from flow.explore.search import search
from flow.nn.techniques.registry import TechniqueSection
from flow.core.errors import ConfigError
from flow.explore.space import SearchSpace, choose, pareto, point_recipe, search_space

RECIPE = {
    "name": "dig",
    "model": {"name": "tfc", "options": {"hidden": [16, 16]}},
    "data": {"dataset": "digits"},
    "train": {"epochs": 1, "batch_size": 64, "threads": 1},
    "build": {"verify_samples": 20},
}
RECIPE_TOML = """name = "dig"
[model]
name = "tfc"
options = { hidden = [16, 16] }
[data]
dataset = "digits"
[train]
epochs = 1
batch_size = 64
threads = 1
[build]
verify_samples = 20
"""
TINY_BOARD = """name = "tiny"
display_name = "Tiny"
part = "xc7z020clg400-1"
finn_board = "Pynq-Z1"
shell = "zynq"
clock_mhz = 100.0
[resources]
lut = 500
ff = 1000
bram_18k = 2
uram = 0
dsp = 2
"""
ROOT = Path(__file__).resolve().parents[2]


def test_search_space_and_point_recipe():
    base = recipe_from_dict(RECIPE)
    space = search_space(base, weight_bits=(1, 2, 4), act_bits=(2, 4))
    assert space.layers == ("fc0", "fc1", "fc2")
    assert list(space.params) == ["fc0.weight_bits", "fc0.act_bits", "fc1.weight_bits", "fc1.act_bits", "fc2.weight_bits"]
    assert space.size == 3 * 2 * 3 * 2 * 3
    params = {"fc0.weight_bits": 4, "fc0.act_bits": 2, "fc1.weight_bits": 1, "fc1.act_bits": 4, "fc2.weight_bits": 2}
    rec = point_recipe(base, space, params, target="pynq-z1", epochs=3, max_train_samples=100)
    assert rec.model.layers == {"fc0": {"weight_bits": 4, "act_bits": 2}, "fc1": {"weight_bits": 1, "act_bits": 4}, "fc2": {"weight_bits": 2}}
    assert rec.model.input_bits == 2  # input quantizer follows fc0's activation bits
    assert rec.build.auto and rec.build.target_fps is None
    pinned = recipe_from_dict({**RECIPE, "build": {**RECIPE["build"], "specialize_file": "/x/spec.json"}})
    assert point_recipe(pinned, space, params, target="pynq-z1").build.specialize_file is None  # --auto picks variants
    assert (rec.train.epochs, rec.train.max_train_samples, rec.train.threads) == (3, 100, 1)
    # the recipe's own technique is used for every point
    ptq = recipe_from_dict({**RECIPE, "technique": {"method": "ptq", "calibration_samples": 64}})
    rec = point_recipe(ptq, search_space(ptq), params, target="pynq-z1")
    assert (rec.technique.method, rec.technique.options.calibration_samples) == ("ptq", 64)


def test_technique_is_a_searched_parameter():
    base = recipe_from_dict({**RECIPE, "technique": {"lowrank": {"rank": 4}}})
    space = search_space(base, weight_bits=(2,), act_bits=(2,), techniques=("qat", "ptq", "distill", "lowrank"))
    assert space.params["technique"] == ("qat", "ptq", "distill", "lowrank") and space.size == 4
    bits = {k: 2 for k in space.params if k != "technique"}
    tech = {t: point_recipe(base, space, {**bits, "technique": t}, target="pynq-z1").technique for t in space.techniques}
    assert tech["qat"] == TechniqueSection()
    assert tech["ptq"].method == "ptq" and tech["ptq"].modifiers == {}
    assert tech["distill"].modifier("distill") is not None and tech["distill"].method == "qat"
    assert tech["lowrank"].modifier("lowrank").rank == 4  # the recipe's own low-rank options are kept
    one = search_space(base, techniques=("ptq",))
    assert "technique" not in one.params and point_recipe(base, one, bits | {"fc0.weight_bits": 1}, target="pynq-z1").technique.method == "ptq"
    with pytest.raises(ConfigError, match="unknown technique 'prune'"):
        search_space(base, techniques=("qat", "prune"))


def test_search_over_techniques_from_the_cli(tmp_path):
    from flow.cli import main

    recipe = tmp_path / "dig.toml"
    recipe.write_text(RECIPE_TOML)
    out = tmp_path / "out"
    args = ["search", str(recipe), "--trials", "4", "--bits", "2,4", "--techniques", "qat,ptq,lowrank", "--out", str(out), "--no-progress", "--no-chosen"]
    assert main(args) == 0
    import csv

    rows = list(csv.DictReader((out / "all_trials.csv").open()))
    assert len(rows) == 4 and all(r["technique"] in ("qat", "ptq", "lowrank") for r in rows)
    for r in rows:
        if r["state"] != "COMPLETE" or r["duplicate_of"]:
            continue
        used = json.loads((out / "trials" / f"{int(r['number']):04d}" / "recipe.json").read_text())["technique"]
        assert used["method"] == ("ptq" if r["technique"] == "ptq" else "qat")
        assert ("lowrank" in used) == (r["technique"] == "lowrank")
    meta = json.loads((out / "pareto.json").read_text())
    assert meta["space"]["technique"] == ["qat", "ptq", "lowrank"]
    assert all(p["params"]["technique"] == p["recipe"]["technique"].get("method", "lowrank" if "lowrank" in p["recipe"]["technique"] else "qat") for p in meta["front"])


def test_pareto_and_choice_rule():
    space = SearchSpace(("fc0",), (1, 2), ())
    rows = [
        {"number": 0, "state": "COMPLETE", "fc0.weight_bits": 1, "accuracy": 0.8, "cost": 100, "fps": 10, "fits": True},
        {"number": 1, "state": "COMPLETE", "fc0.weight_bits": 2, "accuracy": 0.9, "cost": 300, "fps": 10, "fits": True},
        {"number": 2, "state": "COMPLETE", "fc0.weight_bits": 2, "accuracy": 0.9, "cost": 300, "fps": 10, "fits": True},  # duplicate point
        {"number": 3, "state": "COMPLETE", "fc0.weight_bits": 4, "accuracy": 0.7, "cost": 200, "fps": 10, "fits": True},  # dominated
        {"number": 4, "state": "PRUNED", "fc0.weight_bits": 8, "accuracy": None, "cost": None, "fps": None, "fits": None},
    ]
    space = SearchSpace(("fc0",), (1, 2, 4, 8), ())
    front = pareto(rows, space)
    assert [r["number"] for r in front] == [1, 0]
    assert choose(front)["number"] == 1
    assert choose(front, acc_tolerance=0.15)["number"] == 0


def test_search_writes_front_plot_and_chosen_design(tmp_path):
    res = search(recipe_from_dict(RECIPE), "pynq-z1", tmp_path, trials=3, weight_bits=(1, 2, 4), act_bits=(1, 2, 4),
                 heartbeat_interval=2, progress=False, log=lambda s: None)
    assert res.counts["done"] == 3
    for name in ("pareto.csv", "pareto.json", "pareto.png", "all_trials.csv", "search.json", "study.db", "chosen/report.json"):
        assert (tmp_path / name).exists(), name
    front = json.loads((tmp_path / "pareto.json").read_text())["front"]
    assert front and all(p["accuracy"] > 0 and p["lut"] > 0 and p["fps"] > 0 for p in front)
    assert set(front[0]["layers"]) == {"fc0", "fc1", "fc2"}
    report = json.loads((tmp_path / "chosen" / "report.json").read_text())
    assert report["folding"]["mode"] == "auto" and report["verification"]["passed"]
    assert res.chosen["number"] in [p["number"] for p in front]
    assert len((tmp_path / "all_trials.csv").read_text().splitlines()) == 1 + 3


def test_infeasible_trials_are_pruned_with_reason(tmp_path):
    board = tmp_path / "tiny.toml"
    board.write_text(TINY_BOARD)
    res = search(recipe_from_dict(RECIPE), str(board), tmp_path / "out", trials=2, heartbeat_interval=2, progress=False, log=lambda s: None)
    assert res.counts.get("PRUNED") == 2 and res.counts["done"] == 2
    assert res.chosen is None and res.pareto == []
    import optuna

    study = optuna.load_study(study_name=res.study_name, storage=res.storage)
    assert all(t.user_attrs["infeasible"] for t in study.trials)
    assert "PRUNED" in (tmp_path / "out" / "all_trials.csv").read_text()


def _states(db: Path) -> list[tuple[int, str]]:
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.Error:
        return []


def test_resume_after_kill_9_loses_and_repeats_nothing(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE_TOML)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "flow", "search", str(recipe), "--trials", "4", "--bits", "1,2,4", "--heartbeat", "1",
           "--out", str(out), "--no-chosen", "--no-progress"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, killed = time.monotonic() + 60, None
    while time.monotonic() < deadline and proc.poll() is None:
        st = _states(out / "study.db")
        if any(s == "COMPLETE" for _, s in st) and any(s == "RUNNING" for _, s in st):
            proc.send_signal(signal.SIGKILL)
            killed = [n for n, s in st if s == "RUNNING"]
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, "the search never had a complete and a running trial at once"
    st = _states(out / "study.db")
    assert sum(s == "COMPLETE" for _, s in st) < 4

    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    import optuna

    study = optuna.load_study(study_name="dig-pynq-z1", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4, [(t.number, t.state.name, t.user_attrs.get("surplus"), t.system_attrs.get("failed_trial")) for t in trials]
    assert [t.number for t in trials if t.state.name == "FAIL"] == killed  # the killed trial, failed once
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") is not None]
    assert len(retries) == 1 and retries[0].system_attrs["failed_trial"] == killed[0]  # re-queued exactly once
    assert retries[0].state.name in ("COMPLETE", "PRUNED")
    # the retry keeps every parameter the killed trial had sampled (all of them if it was killed
    # while evaluating; a prefix if it was killed while sampling) and samples the rest
    assert study.trials[killed[0]].params.items() <= retries[0].params.items()
    assert len(retries[0].params) == 5
    points = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(points)) == len(points)  # no point evaluated twice
    assert (out / "pareto.json").exists()


@pytest.mark.parametrize("args, match", [
    (["--epochs", "-1"], "--epochs must be an integer from 0"),
    (["--heartbeat", "0"], "--heartbeat must be an integer from 1"),
    (["--trials", "0"], "--trials must be an integer from 1"),
    (["--storage", "not-a-url"], "is not a database URL"),
    (["--acc-tolerance", "2"], "--acc-tolerance must be between 0 and 1"),
])
def test_bad_search_options_stop_before_any_trial(tmp_path, capsys, args, match):
    from flow.cli import main

    recipe = tmp_path / "dig.toml"
    recipe.write_text(RECIPE_TOML)
    assert main(["search", str(recipe), "--out", str(tmp_path / "out"), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "study.db").exists()


def test_a_storage_file_that_is_not_a_database_is_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    with pytest.raises(ConfigError, match="is not an SQLite database"):
        search(recipe_from_dict(RECIPE), "pynq-z1", tmp_path / "out", trials=1, storage=f"sqlite:///{junk}", progress=False, log=lambda _: None)


def test_a_search_whose_trials_all_fail_stops_with_an_error(tmp_path, monkeypatch):
    import flow.explore.search as search_module
    from flow.explore.search import SearchFailedError

    def broken(*args, **kwargs):
        raise RuntimeError("training exploded")

    monkeypatch.setattr(search_module, "evaluate_point", broken)
    t0 = time.perf_counter()
    with pytest.raises(SearchFailedError, match="every trial of the search failed .*training exploded"):
        search(recipe_from_dict(RECIPE), None, tmp_path / "out", trials=3, progress=False, log=lambda _: None, build_chosen=False)
    assert time.perf_counter() - t0 < 120
