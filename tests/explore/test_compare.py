"""``qflow compare``: sweep validation before training, results files, resume, Pareto fronts."""

import csv
import doctest
import json
import shutil

import pytest

import flow.explore.compare as compare_module
import flow.explore.results as pareto_module
import flow.explore.run as run_module
from flow.cli import main
from flow.core.errors import ConfigError, UnknownModelError
from flow.explore.compare import SMOKE_SWEEP, compare, load_sweep, sweep_from_dict
from flow.explore.results import pareto_front

ROW_KEYS = ("name", "accuracy", "lut", "bram_18k", "uram", "dsp", "throughput_fps", "latency_us", "bops", "macs",
            "weight_mem_bits", "verified", "train_seconds", "seed", "recipe")

DEFAULTS = {"data": {"dataset": "digits"}, "train": {"epochs": 1, "batch_size": 64},
            "build": {"target": "pynq-z1", "target_fps": 100000, "verify_samples": 20}}
GOOD = {"name": "ok", "model": {"name": "tfc", "weight_bits": 2, "act_bits": 2}}


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if any row starts: validation must come before the first row runs."""

    def boom(*args, **kwargs):
        raise AssertionError("a row started before the whole sweep was checked")

    monkeypatch.setattr(compare_module, "run", boom)


@pytest.mark.parametrize("bad_row, error, match", [
    ({"name": "resnet", "model": {"name": "resnet"}}, UnknownModelError, r"row 'resnet': unknown model 'resnet'"),
    ({"name": "w9", "model": {"weight_bits": 9}}, ConfigError, r"row 'w9': model.weight_bits: weight bits must be an integer from 1 to 8 or one of 'xnor', 'ternary'"),
    ({"name": "typo", "modle": {"name": "tfc"}}, ConfigError, r"row 'typo': unknown key 'modle'"),
    ({"name": "gptq", "technique": {"method": "gptq"}}, ConfigError, r"row 'gptq': technique: method: unknown technique method 'gptq'"),
    ({"name": "rank", "technique": {"lowrank": {"rank": 100, "layers": ["fc1"]}}}, ConfigError,
     r"row 'rank': lowrank: fc1: rank 100 is impossible"),
    ({"name": "layer", "model": {"layers": {"fc9": {"weight_bits": 4}}}}, ConfigError, r"row 'layer': .*fc9"),
    ({"name": "board", "build": {"target": "pynq-z9"}}, ConfigError, r"row 'board': unknown target 'pynq-z9'"),
])
def test_a_bad_row_fails_the_sweep_before_any_training(no_training, tmp_path, bad_row, error, match):
    sweep = {"name": "s", "defaults": DEFAULTS, "rows": [GOOD, bad_row]}  # the bad row comes last
    with pytest.raises(error, match=match):
        compare(sweep, tmp_path, progress=False)
    assert not (tmp_path / "rows").exists()


@pytest.mark.parametrize("sweep, match", [
    ({"rows": [GOOD, {**GOOD}]}, r"rows.1.name: duplicate row name 'ok' \(also rows.0\)"),
    ({"defualts": {}, "rows": [GOOD]}, r"unknown key 'defualts'"),
    ({"rows": []}, r"rows: List should have at least 1 item"),
    ({"rows": [{"model": {"name": "tfc"}}]}, r"rows.0.name: Field required"),
    ({"rows": [{"name": "a/b"}]}, r"rows.0.name: String should match pattern"),
    ({"defaults": {"train": {"epochs": -1}}, "rows": [GOOD]}, r"sweep.toml: defaults: train.epochs"),
    ({"defaults": {"name": "x"}, "rows": [GOOD]}, r"defaults.name"),
])
def test_malformed_sweeps_name_the_field(no_training, sweep, match):
    with pytest.raises(ConfigError, match=match):
        sweep_from_dict({"defaults": DEFAULTS, **sweep}, source="sweep.toml")


def test_load_sweep_from_toml(tmp_path):
    path = tmp_path / "my_sweep.toml"
    path.write_text('[defaults]\ndata = { dataset = "digits" }\nmodel = { name = "tfc", act_bits = 2 }\n'
                    '[[rows]]\nname = "a"\nmodel = { weight_bits = 1 }\n[[rows]]\nname = "b"\nseed = 3\n'
                    '[rows.technique.lowrank]\nrank = 8\n')
    sweep = load_sweep(path)
    assert sweep.name == "my-sweep" and list(sweep.rows) == ["a", "b"]
    a, b = sweep.rows["a"], sweep.rows["b"]
    assert (a.name, a.model.name, a.model.weight_bits, a.model.act_bits) == ("a", "tfc", 1, 2)  # deep-merged
    assert (b.seed, b.model.weight_bits, b.technique.modifier("lowrank").rank) == (3, 2, 8)
    path.write_text("[[rows]]\nname = 'x'\nmodel = { name = 'tfc' ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "nope.toml")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    return compare(SMOKE_SWEEP, out, progress=False, log=lambda _: None), out


def test_every_row_has_the_metrics(smoke):
    rows, out = smoke
    assert [r.name for r in rows] == ["w1a1", "w2a2"]
    for r in rows:
        missing = [k for k in ROW_KEYS if getattr(r, k) is None]
        assert not missing, (r.name, missing)
        assert 0 <= r.accuracy <= 1 and r.lut > 0 and r.throughput_fps > 0 and r.verified
        assert r.recipe["name"] == r.name and r.recipe["data"]["dataset"] == "digits"
        assert r.seed == r.recipe["seed"] == 0
    # TFC on 8x8 digits has 64*64 + 64*64 + 64*64 + 64*10 = 12,928 weights
    w1a1, w2a2 = rows
    assert (w1a1.macs, w1a1.weight_mem_bits, w1a1.bops) == (12928, 12928, 12928)
    assert (w2a2.macs, w2a2.weight_mem_bits, w2a2.bops) == (12928, 2 * 12928, 4 * 12928)


def test_a_rows_lut_is_its_reports_layers_plus_converters(smoke):
    rows, out = smoke
    for r in rows:
        report = json.loads((out / "rows" / r.name / "report.json").read_text())
        layers, converters = report["totals"]["lut"], report["data_width_converters"]["totals"]["lut"]
        assert r.lut == layers + converters and r.lut_layers == layers
        assert json.loads((out / "rows" / r.name / "row.json").read_text())["lut"] == layers + converters


def test_results_files(smoke):
    rows, out = smoke
    data = json.loads((out / "results.json").read_text())
    assert data["sweep"] == "smoke" and [r["name"] for r in data["rows"]] == ["w1a1", "w2a2"]
    assert data["rows"][0]["recipe"] == rows[0].recipe
    assert set(data["pareto"]) == {"pareto_lut", "pareto_fps"} and data["pareto"]["pareto_lut"]["digits"]
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["w1a1", "w2a2"]
    assert float(table[1]["lut"]) == rows[1].lut and json.loads(table[0]["recipe"])["seed"] == 0
    md = (out / "results.md").read_text()
    assert "| w1a1 | tfc | digits | w1a1 | QAT |" in md and "accuracy_vs_lut.png" in md
    for png in ("accuracy_vs_lut.png", "accuracy_vs_fps.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("w1a1", "w2a2"):
        assert json.loads((out / "rows" / name / "row.json").read_text())["name"] == name


def test_rerun_reuses_finished_rows(smoke, tmp_path, monkeypatch, capsys):
    _, done = smoke
    out = tmp_path / "again"
    shutil.copytree(done, out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("rows/*/row.json")}
    monkeypatch.setattr(compare_module, "run", lambda *a, **k: pytest.fail("a finished row was run again"))
    assert main(["compare", str(SMOKE_SWEEP), "--out", str(out), "--no-progress"]) == 0
    assert "| w2a2 | tfc | digits | w2a2 | QAT |" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("rows/*/row.json")} == mtimes
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 2


def test_interrupted_and_changed_rows_are_redone(smoke, tmp_path, monkeypatch):
    _, done = smoke
    out = tmp_path / "resume"
    shutil.copytree(done, out)
    (out / "rows" / "w1a1" / "row.json").unlink()  # as if interrupted before w1a1 finished
    real_run, ran = run_module.run, []

    def counting_run(recipe, *args, **kwargs):
        ran.append(recipe.name)
        return real_run(recipe, *args, **kwargs)

    monkeypatch.setattr(compare_module, "run", counting_run)
    rows = compare(SMOKE_SWEEP, out, progress=False, log=lambda _: None)
    assert ran == ["w1a1"] and [r.name for r in rows] == ["w1a1", "w2a2"]
    sweep = load_sweep(SMOKE_SWEEP)  # a changed recipe is not the finished row
    sweep.rows["w2a2"] = sweep.rows["w2a2"].model_copy(update={"seed": 1})
    rows = compare(sweep, out, progress=False, log=lambda _: None)
    assert ran == ["w1a1", "w2a2"] and rows[1].seed == 1


def test_bad_sweep_on_the_command_line_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[[rows]]\nname = "a"\nmodel = { name = "tfc", weight_bits = 0 }\n')
    assert main(["compare", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("qflow: error: ") and "row 'a': model.weight_bits" in err[-1]


def test_pareto_front_on_constructed_points():
    rows = [{"name": n, "lut": x, "fps": f, "accuracy": a} for n, x, f, a in [
        ("small", 100, 10, 0.80), ("mid", 200, 20, 0.90), ("dominated", 300, 5, 0.85),
        ("big", 400, 30, 0.95), ("tie", 200, 20, 0.90), ("broken", None, None, 0.99), ("nan", float("nan"), float("nan"), 0.99)]]
    names = lambda front: [r["name"] for r in front]  # noqa: E731
    assert names(pareto_front(rows, "lut", "accuracy")) == ["small", "mid", "tie", "big"]
    # faster designs are better: 'big' is fastest and most accurate, it dominates all
    assert names(pareto_front(rows, "fps", "accuracy", maximize_x=True)) == ["big"]
    assert names(pareto_front(rows, "lut", "accuracy", maximize_y=False)) == ["small"]
    assert pareto_front([], "lut", "accuracy") == []


def test_doctests():
    for mod in (compare_module, pareto_module):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0, mod.__name__
