"""`qflow run` end to end on embedded data: train briefly, export, build, verify, report."""

import json

import pytest

from flow.explore.recipe import recipe_from_dict
from flow.explore.run import run


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    recipe = recipe_from_dict({
        "name": "digits-tfc",
        "model": {"name": "tfc", "weight_bits": 2, "act_bits": 2},
        "data": {"dataset": "digits"},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.02},
        "build": {"target": "pynq-z1", "target_fps": 100_000, "verify_samples": 200},
    })
    out = tmp_path_factory.mktemp("run")
    return run(recipe, out, progress=False, log=lambda _: None), out


def test_run_trains_and_reports_accuracy(digits_run):
    result, out = digits_run
    r = json.loads((out / "report.json").read_text())
    assert r["accuracy"] == pytest.approx(result.accuracy)
    assert result.accuracy > 0.5  # 10 classes: chance is 0.1
    assert r["model"] == "digits-tfc"


def test_run_verifies_from_pytorch_to_the_folded_design(digits_run):
    result, _ = digits_run
    v = result.report.verification
    assert v.passed
    assert [s.name for s in v.stages] == ["qonnx", "finn_onnx", "streamlined", "streamlined_integer", "hw", "specialized"]
    assert v.stages[0].reference == "pytorch"
    assert all(s.samples == 200 for s in v.stages)


def test_run_writes_its_artifacts(digits_run):
    _, out = digits_run
    for name in ("model.pt", "digits-tfc.qonnx.onnx", "recipe.json", "folding.json", "design.onnx", "report.md", "report.html"):
        assert (out / name).exists(), name
    assert json.loads((out / "recipe.json").read_text())["model"]["name"] == "tfc"


def test_run_without_verification(tmp_path):
    recipe = recipe_from_dict({
        "model": {"name": "tfc", "options": {"hidden": [16, 16]}},
        "data": {"dataset": "digits"},
        "train": {"epochs": 1},
        "build": {"target_fps": 10_000, "verify_samples": 0},
    })
    result = run(recipe, tmp_path, progress=False, log=lambda _: None)
    assert result.report.verification is None
    assert result.report.accuracy == pytest.approx(result.accuracy)
