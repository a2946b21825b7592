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

from flow.core.errors import ConfigError
from flow.explore.recipe import recipe_from_dict
from flow.explore.search import read_floors, search
from flow.explore.space import parse_bits, point_recipe, search_space
from flow.nn.techniques.registry import TechniqueSection

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


def test_search_space_points_and_recipes():
    base = recipe_from_dict(RECIPE)
    space = search_space(base, weight_bits=(1, "ternary", 2, 4), act_bits=(2, 4), widths=(16, 32))
    assert space.layers == ("fc0", "fc1", "fc2")
    assert list(space.params) == ["fc0.weight_bits", "fc0.act_bits", "fc1.weight_bits", "fc1.act_bits", "fc2.weight_bits", "hidden0", "hidden1"]
    params = {"fc0.weight_bits": 4, "fc0.act_bits": 2, "fc1.weight_bits": "ternary", "fc1.act_bits": 4, "fc2.weight_bits": 1,
              "hidden0": 32, "hidden1": 16}
    point = space.point(params)
    assert space.params_of(point) == params
    rec = point_recipe(base, point, target="zcu104", name="p0", epochs=2)
    assert rec.model.layers["fc1"] == {"weight_bits": "ternary", "act_bits": 4} and rec.model.input_bits == 2
    assert rec.model.options["hidden"] == [32, 16] and rec.train.epochs == 2
    assert (rec.build.target, rec.build.auto, rec.build.target_fps) == ("zcu104", True, None)
    with pytest.raises(ConfigError, match="widths"):
        search_space(recipe_from_dict({**RECIPE, "model": {"name": "cnv"}}), widths=(16,))


def test_bit_choices_parse_with_ternary_and_order_by_precision():
    assert parse_bits("4,T,1,2", "--bits", ternary=True) == (1, "ternary", 2, 4)
    assert parse_bits("x,2,X,1,t", "--bits", ternary=True) == (1, "xnor", "ternary", 2)
    with pytest.raises(ConfigError, match="T \\(ternary\\)"):
        parse_bits("9", "--bits", ternary=True)
    with pytest.raises(ConfigError, match="bit widths 1..8"):
        parse_bits("T", "--act-bits", ternary=False)


def test_precision_order_decides_what_a_point_can_stand_for():
    space = search_space(recipe_from_dict(RECIPE), weight_bits=(1, "ternary", 2, 4), act_bits=(2, 4))
    low = space.point({"fc0.weight_bits": "ternary", "fc0.act_bits": 2, "fc1.weight_bits": 1, "fc1.act_bits": 2, "fc2.weight_bits": 2})
    high = space.point({"fc0.weight_bits": 2, "fc0.act_bits": 2, "fc1.weight_bits": 1, "fc1.act_bits": 4, "fc2.weight_bits": 4})
    assert high.precision_at_least(low) and not low.precision_at_least(high)


def test_floors_from_a_sensitivity_map_restrict_the_choices(tmp_path):
    m = tmp_path / "sensitivity.json"
    m.write_text(json.dumps({"min_precision": {"fc0": {"weight_bits": 4, "act_bits": 4}, "fc2": {"weight_bits": "ternary"}}}))
    space = search_space(recipe_from_dict(RECIPE), weight_bits=(1, "ternary", 2, 4), act_bits=(2, 4), floors=read_floors(m))
    assert space.params["fc0.weight_bits"] == (4,) and space.params["fc0.act_bits"] == (4,)
    assert space.params["fc2.weight_bits"] == ("ternary", 2, 4) and space.params["fc1.weight_bits"] == (1, "ternary", 2, 4)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="no min_precision table"):
        read_floors(tmp_path / "bad.json")


def test_technique_is_a_searched_parameter():
    base = recipe_from_dict({**RECIPE, "technique": {"lowrank": {"rank": 4}}})
    space = search_space(base, weight_bits=(2,), act_bits=(2,), techniques=("qat", "ptq", "distill", "lowrank"))
    assert space.params["technique"] == ("qat", "ptq", "distill", "lowrank") and space.size == 4
    bits = {k: 2 for k in space.params if k != "technique"}
    tech = {t: point_recipe(base, space.point({**bits, "technique": t}), target="pynq-z1").technique for t in space.techniques}
    assert tech["qat"] == TechniqueSection()
    assert tech["ptq"].method == "ptq" and tech["ptq"].modifiers == {}
    assert tech["distill"].modifier("distill") is not None and tech["distill"].method == "qat"
    assert tech["lowrank"].modifier("lowrank").rank == 4  # the recipe's own low-rank options are kept
    with pytest.raises(ConfigError, match="unknown technique 'prune'"):
        search_space(base, techniques=("qat", "prune"))


def test_the_pruner_stops_training_early(tmp_path):
    """Validation accuracy reaches Optuna after every epoch; a pruning verdict ends training there."""
    import optuna

    from flow.explore.trials import train_trial

    recipe = recipe_from_dict({**RECIPE, "train": {**RECIPE["train"], "epochs": 5}})
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))  # nothing reaches 101%
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="after epoch 1"):
        train_trial(trial, recipe, val_samples=200)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    t = study.trials[0]
    assert t.user_attrs["pruned_at_epoch"] == 1 and list(t.intermediate_values) == [1]


def test_hardware_first_skips_infeasible_slow_and_dominated_points_without_training(tmp_path, monkeypatch):
    import flow.explore.trials as trials_module
    from flow.explore.trials import Hardware

    trained = []
    real_train = trials_module.train_trial
    monkeypatch.setattr(trials_module, "train_trial", lambda trial, recipe, **kw: (trained.append(trial.number), real_train(trial, recipe, **kw))[1])
    hw = {4: (2e6, 100.0), 2: (1e6, 200.0), 1: (5e5, 50.0)}  # by fc0's weight bits: (fps, cost)

    def fake_hardware(recipe, out_dir, **kw):
        fps, cost = hw[recipe.model.layers["fc0"]["weight_bits"]]
        return Hardware(fps, cost, True, {"fps": fps, "cost": cost, "fits": True, "lut": cost})

    monkeypatch.setattr(trials_module, "estimate_hardware", fake_hardware)
    base = recipe_from_dict(RECIPE)
    points = [{"fc0.weight_bits": b, "fc0.act_bits": 2, "fc1.weight_bits": 2, "fc1.act_bits": 2, "fc2.weight_bits": 2} for b in (4, 2, 1)]
    import optuna

    from flow.explore.search import SearchOptions, load_study, run_worker

    opts = SearchOptions(recipe=base.model_dump(mode="json", exclude_unset=True), target="pynq-z1", trials=3, out_dir=str(tmp_path),
                         weight_bits=(1, 2, 4), act_bits=(2,), min_fps=8e5, finalists=0, pruner="none", val_samples=200, study_name="s")
    study = load_study(opts)
    for p in points:
        study.enqueue_trial(p)
    run_worker(opts)
    t = {x.number: x for x in optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}").trials}
    assert t[0].state.name == "COMPLETE"  # 4-bit fc0: the fastest and cheapest, trained
    assert t[1].user_attrs["dominated_by"] == 0  # 2-bit fc0: less precise and no better on hardware
    assert "below_min_fps" in t[2].user_attrs  # 1-bit fc0: 5e5 FPS < 8e5
    assert trained == [0]


def test_search_writes_front_finalists_and_the_chosen_design(tmp_path):
    res = search(recipe_from_dict(RECIPE), "pynq-z1", tmp_path, trials=3, weight_bits=(1, 2, 4), act_bits=(1, 2, 4), finalists=1,
                 val_samples=200, heartbeat_interval=2, progress=False, log=lambda s: None)
    assert res.counts["done"] == 3
    for name in ("pareto.csv", "pareto.json", "pareto.png", "all_trials.csv", "search.json", "study.db"):
        assert (tmp_path / name).exists(), name
    front = json.loads((tmp_path / "pareto.json").read_text())["front"]
    assert front and all(p["accuracy"] > 0 and p["lut"] > 0 and p["fps"] > 0 for p in front)
    assert set(front[0]["point"]["layer_bits"]) == {"fc0", "fc1", "fc2"}
    assert len(res.finalists) == 1 and res.chosen is not None and res.chosen.verified
    report = json.loads(Path(res.chosen.report).read_text())
    assert report["folding"]["mode"] == "auto" and report["verification"]["passed"] and report["accuracy"] == res.chosen.accuracy
    assert res.chosen.trial in [p["number"] for p in front]
    assert len((tmp_path / "all_trials.csv").read_text().splitlines()) == 1 + 3


def test_infeasible_trials_are_pruned_with_reason(tmp_path):
    board = tmp_path / "tiny.toml"
    board.write_text(TINY_BOARD)
    res = search(recipe_from_dict(RECIPE), str(board), tmp_path / "out", trials=2, heartbeat_interval=2, progress=False, log=lambda s: None)
    assert res.counts.get("PRUNED") == 2 and res.counts["done"] == 2 and res.counts["trained"] == 0
    assert res.chosen is None and res.pareto == []
    import optuna

    study = optuna.load_study(study_name=res.study_name, storage=res.storage)
    assert all(t.user_attrs["infeasible"] for t in study.trials)
    assert "infeasible" in (tmp_path / "out" / "all_trials.csv").read_text()


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
    cmd = [sys.executable, "-m", "flow", "search", str(recipe), "--trials", "4", "--bits", "1,2,4", "--act-bits", "1,2,4", "--heartbeat", "1",
           "--out", str(out), "--finalists", "0", "--val-samples", "200", "--no-progress"]
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
    (["--epochs", "-1"], "--epochs must be an integer from 1"),
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

    monkeypatch.setattr(search_module, "run_trial", broken)
    t0 = time.perf_counter()
    with pytest.raises(SearchFailedError, match="every trial of the search failed .*training exploded"):
        search(recipe_from_dict(RECIPE), None, tmp_path / "out", trials=3, progress=False, log=lambda _: None, finalists=0)
    assert time.perf_counter() - t0 < 120
