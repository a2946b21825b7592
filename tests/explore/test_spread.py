"""Seeds in a sweep: every row once per seed, mean and spread, differences inside the spread named, reuse per seed."""

import json
import statistics
from pathlib import Path

import pytest

from flow.core.errors import ConfigError
from flow.explore.compare import compare, sweep_from_dict
from flow.explore.results import markdown_table, twins_markdown
from flow.explore.rows import SweepRow
from flow.explore.spread import aggregate, overlapping, twin_comparisons, within_spread

RECIPE = {"model": {"name": "tfc", "weight_bits": 1, "act_bits": 1}, "data": {"dataset": "digits"}}


def _run(name, seed, acc, **kw):
    fields = {"dataset": "d", "technique": "QAT", "seed": seed, "accuracy": acc, "lut": 100.0 + seed, "fits": True,
              "verified": True, "row_seconds": 1.0, "error": None, "recipe": {**RECIPE, "name": name, "seed": seed}, **kw}
    return SweepRow(name, **fields)


def _row(**kw):
    return SweepRow(**kw)


def test_a_row_on_three_seeds_reports_mean_sample_std_and_range():
    row = aggregate([_run("a", 0, 0.90), _run("a", 1, 0.93), _run("a", 2, 0.915)])
    assert row.seeds == (0, 1, 2) and row.accuracy_by_seed == (0.90, 0.93, 0.915)
    assert row.accuracy == pytest.approx(statistics.mean([0.90, 0.93, 0.915]))
    assert row.accuracy_std == pytest.approx(statistics.stdev([0.90, 0.93, 0.915]))
    assert (row.accuracy_min, row.accuracy_max) == (0.90, 0.93)
    assert row.lut == pytest.approx(101.0) and row.row_seconds == 3.0 and len(row.runs) == 3
    assert "seed" not in row.to_json() and row.recipe["seed"] == 0


def test_fits_and_verified_hold_only_when_they_hold_for_every_seed_and_errors_name_the_seed():
    row = aggregate([_run("a", 0, 0.9), _run("a", 1, 0.9, verified=False, error="stage x failed")])
    assert row.fits is True and row.verified is False and row.error == "seed 1: stage x failed"
    assert aggregate([_run("a", 0, 0.9, verified=None)]).verified is None


def test_one_seed_has_no_std_and_a_missing_accuracy_gives_no_mean():
    assert aggregate([_run("a", 0, 0.9)]).accuracy_std is None
    assert aggregate([_run("a", 0, 0.9), _run("a", 1, None)]).accuracy is None


def test_differences_are_inside_the_spread_exactly_when_the_seed_ranges_overlap():
    a = _row(name="a", dataset="d", accuracy_min=0.90, accuracy_max=0.92)
    b = _row(name="b", dataset="d", accuracy_min=0.92, accuracy_max=0.95)  # touches a
    c = _row(name="c", dataset="d", accuracy_min=0.951, accuracy_max=0.96)
    d = _row(name="d", dataset="other", accuracy_min=0.90, accuracy_max=0.99)
    assert within_spread(a, b) and not within_spread(a, c) and not within_spread(b, c)
    assert overlapping([a, b, c, d]) == {"a": ["b"], "b": ["a"], "c": [], "d": []}
    assert within_spread(a, _row(name="e", accuracy=None)) is None


def test_overlapping_matches_all_pairs_on_many_rows():
    import random

    rng = random.Random(0)
    rows = []
    for i in range(200):
        lo = rng.uniform(0.8, 1.0)
        rows.append(_row(name=f"r{i}", dataset="d", accuracy_min=lo, accuracy_max=lo + rng.uniform(0, 0.02)))
    brute = {r.name: [o.name for o in rows if o is not r and within_spread(r, o)] for r in rows}
    assert overlapping(rows) == brute


def test_each_technique_row_is_compared_with_its_qat_twin():
    qat = aggregate([_run("w1a1", s, acc) for s, acc in ((0, 0.90), (1, 0.91), (2, 0.92))])
    kd_win = aggregate([_run("kd", s, acc, technique="QAT + KD(cnn)") for s, acc in ((0, 0.93), (1, 0.94), (2, 0.95))])
    kd_tie = aggregate([_run("kd2", s, acc, technique="QAT + KD(float)") for s, acc in ((0, 0.915), (1, 0.93), (2, 0.925))])
    other = aggregate([_run("x", s, 0.5, technique="PTQ", recipe={**RECIPE, "model": {"name": "sfc"}}) for s in (0, 1)])
    got = {c.row: c for c in twin_comparisons([qat, kd_win, kd_tie, other])}
    assert set(got) == {"kd", "kd2"}  # x has no twin: another model
    assert got["kd"].verdict == "better" and got["kd"].delta == pytest.approx(0.03) and got["kd"].twin == "w1a1"
    assert got["kd2"].verdict == "inside the spread"
    text = twins_markdown([qat, kd_tie])
    assert "inside the seed spread" in text and "does not beat its QAT twin beyond the seed spread" in text
    assert "beats its QAT twin beyond the seed spread in: kd" in twins_markdown([qat, kd_win])


def test_the_table_names_the_rows_inside_each_rows_spread():
    qat = aggregate([_run("w1a1", s, acc) for s, acc in ((0, 0.90), (1, 0.91))])
    kd = aggregate([_run("kd", s, acc, technique="QAT + KD(cnn)") for s, acc in ((0, 0.905), (1, 0.95))])
    lines = markdown_table([qat, kd]).splitlines()
    assert "inside the spread of" in lines[0] and "| 90.50 ± 0.71 | 2 | 90.00-91.00 | kd |" in lines[2]


def _sweep(seeds, **extra):
    return {"name": "seeded", "seeds": seeds, "defaults": {"data": {"dataset": "digits"}, "train": {"epochs": 1, "batch_size": 64, "threads": 1},
            "build": {"target": "pynq-z1", "target_fps": 100000, "verify_samples": 20}},
            "rows": [{"name": "w1a1", "model": {"name": "tfc", "weight_bits": 1, "act_bits": 1}}], **extra}


@pytest.mark.parametrize("bad, match", [
    ({"seeds": [0, 0]}, "must differ"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [-1]}, "seeds are integers"),
])
def test_bad_seeds_are_refused(bad, match):
    with pytest.raises(ConfigError, match=match):
        sweep_from_dict({**_sweep([0]), **bad}, check=False)


def test_a_seed_in_a_row_or_the_defaults_conflicts_with_the_sweeps_seeds():
    d = _sweep([0, 1])
    d["defaults"]["seed"] = 3
    with pytest.raises(ConfigError, match="remove `seed`"):
        sweep_from_dict(d, check=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_seeded_sweep_runs_each_row_per_seed_and_reuses_finished_seeds(tmp_path):
    out = tmp_path / "out"
    rows = compare(_sweep([0, 1]), out, progress=False, log=lambda s: None)
    assert len(rows) == 1 and rows[0].seeds == (0, 1)
    runs = [json.loads((out / "rows" / "w1a1" / f"seed{s}" / "row.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1] and [r["recipe"]["seed"] for r in runs] == [0, 1]
    assert rows[0].accuracy == pytest.approx((runs[0]["accuracy"] + runs[1]["accuracy"]) / 2)
    data = json.loads((out / "results.json").read_text())
    assert data["seeds"] == [0, 1] and "seed range" in data["spread"]
    before = _files(out)
    log: list[str] = []
    compare(_sweep([0, 1]), out, progress=False, log=log.append)
    assert _files(out) == before and "all 2 runs finished before and reused" in log[-1]
    log.clear()
    rows = compare(_sweep([0, 1, 2]), out, progress=False, log=log.append)  # one more seed: only it runs
    assert sum("finished before, reusing" in line for line in log) == 2 and rows[0].seeds == (0, 1, 2)
    assert (out / "rows" / "w1a1" / "seed2" / "row.json").is_file()
