"""The README's survey command on the committed results: every committed row is reused and no file changes.

Reuse never trains, so the datasets only have to be present for the sweep's checks: the test
writes MNIST- and Fashion-MNIST-shaped test sets of zeros into a temporary data root.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flow.cli import main
from flow.explore.recipe import Recipe
from flow.explore.reuse import same_recipe
from flow.nn.data import write_idx

ROOT = Path(__file__).resolve().parents[2]
SURVEY = ROOT / "benchmarks" / "results" / "survey"
SWEEP = ROOT / "benchmarks" / "sweeps" / "survey_mnist.toml"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stub_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for name, suffix in (("mnist", ""), ("fashion-mnist", ".gz")):
        (root / name).mkdir()
        write_idx(root / name / f"t10k-images-idx3-ubyte{suffix}", np.zeros((10000, 28, 28), np.uint8))
        write_idx(root / name / f"t10k-labels-idx1-ubyte{suffix}", (np.arange(10000) % 10).astype(np.uint8))
    return root


def _compare(out: Path, capsys) -> tuple[int, str]:
    code = main(["compare", str(SWEEP), "--out", str(out), "--no-progress"])
    return code, capsys.readouterr().err


def test_the_readme_survey_command_reuses_every_committed_row_and_changes_nothing(tmp_path, stub_data, monkeypatch, capsys):
    monkeypatch.setenv("QFLOW_DATA", str(stub_data))
    out = Path(shutil.copytree(SURVEY, tmp_path / "survey"))
    before = _files(out)
    data = json.loads((out / "results.json").read_text())
    runs = len(data["rows"]) * len(data["seeds"])
    assert runs == len(list(out.glob("rows/*/seed*/row.json")))
    code, err = _compare(out, capsys)
    assert code == 0, err
    assert f"all {runs} runs finished before and reused" in err, err
    assert _files(out) == before


def test_a_committed_row_json_edited_by_hand_is_not_reused_and_no_row_file_is_deleted(tmp_path, stub_data, monkeypatch, capsys):
    """The edited row cannot be reused (its numbers are not its report's) and cannot be rebuilt in place
    (qflow did not write that row.json): the sweep stops with one line before any row file changes;
    the sweep's summary files, which no longer describe a finished sweep, are retired."""
    monkeypatch.setenv("QFLOW_DATA", str(stub_data))
    out = Path(shutil.copytree(SURVEY, tmp_path / "survey"))
    row = out / "rows" / "tfc-w1a1" / "seed1" / "row.json"
    data = json.loads(row.read_text())
    data.update(accuracy=0.9999, lut=1.0)
    row.write_text(json.dumps(data))
    before = _files(out / "rows")
    code, err = _compare(out, capsys)
    assert code == 2 and err.count("\n") == 1 and "rows/tfc-w1a1/seed1" in err and "row.json" in err, err
    assert _files(out / "rows") == before
    assert not (out / "results.json").exists() and (out / ".gitignore").exists()


def test_a_recipe_recorded_before_the_format_gained_fields_is_the_same_recipe():
    saved = json.loads((SURVEY / "rows" / "tfc-w1a1" / "seed0" / "row.json").read_text())["recipe"]
    now = Recipe.model_validate(saved)
    saved["build"] = {k: v for k, v in saved["build"].items() if k != "rtlsim"}  # as recorded before build.rtlsim existed
    assert same_recipe(saved, now)
    changed = now.model_copy(update={"build": now.build.model_copy(update={"rtlsim": True})})
    assert not same_recipe(saved, changed)
    assert not same_recipe({**saved, "seed": 1}, now) and not same_recipe({**saved, "retired_field": 1}, now)
