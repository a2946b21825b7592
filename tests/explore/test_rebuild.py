"""Rebuilding a finished sweep's designs from their weights, without training: same numbers, fresh reports."""

import json
import shutil

import pytest

from flow.core.errors import ConfigError
from flow.explore.compare import compare, sweep_from_dict
from flow.explore.rebuild import rebuild, rebuild_run

SWEEP = {"name": "rb", "seeds": [0], "defaults": {"data": {"dataset": "digits"}, "train": {"epochs": 1, "batch_size": 64, "threads": 1},
         "build": {"target": "pynq-z1", "target_fps": 100000, "verify_samples": 20}},
         "rows": [{"name": "w1a1", "model": {"name": "tfc", "weight_bits": 1, "act_bits": 1}}]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("rb") / "out"
    return out, compare(SWEEP, out, progress=False, log=lambda s: None)


def test_a_rebuild_keeps_the_weights_and_numbers_and_writes_fresh_reports(finished, tmp_path):
    out = shutil.copytree(finished[0], tmp_path / "out")
    before = finished[1]
    seed0 = out / "rows" / "w1a1" / "seed0"
    weights = (seed0 / "model.pt").read_bytes()
    stamp = (seed0 / "report.json").stat().st_mtime_ns
    log: list[str] = []
    after = rebuild(SWEEP, out, log=log.append)
    assert (seed0 / "model.pt").read_bytes() == weights
    assert (seed0 / "report.json").stat().st_mtime_ns != stamp  # built again
    keys = ("accuracy", "accuracy_by_seed", "lut", "throughput_fps", "verified", "train_seconds")
    assert {k: getattr(after[0], k) for k in keys} == {k: getattr(before[0], k) for k in keys}
    assert sum("rebuilding" in line for line in log) == 1
    assert json.loads((out / "results.json").read_text())["rows"][0]["runs"][0]["rebuild_seconds"] > 0
    log.clear()
    compare(SWEEP, out, progress=False, log=log.append)  # the rebuilt runs are finished runs
    assert "all 1 runs finished before and reused" in log[-1]


def test_a_report_edited_by_hand_stops_the_rebuild_before_anything_changes(finished, tmp_path):
    out = shutil.copytree(finished[0], tmp_path / "out")
    seed0 = out / "rows" / "w1a1" / "seed0"
    (seed0 / "report.json").write_text("{}")
    weights = (seed0 / "model.pt").read_bytes()
    with pytest.raises(ConfigError, match="report.json"):
        rebuild(SWEEP, out, log=lambda s: None)
    assert (seed0 / "model.pt").read_bytes() == weights and (seed0 / "report.json").read_text() == "{}"


def test_a_run_recorded_for_another_recipe_is_not_rebuilt(finished):
    other = sweep_from_dict({**SWEEP, "defaults": {**SWEEP["defaults"], "train": {"epochs": 2, "batch_size": 64, "threads": 1}}})
    name, rel, recipe = other.runs()[0]
    with pytest.raises(ConfigError, match="run qflow compare instead"):
        rebuild_run(name, recipe, finished[0] / "rows" / rel)
