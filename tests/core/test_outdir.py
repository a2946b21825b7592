"""Output folders: refused places, the manifest, and what a new run may remove."""

import json
from pathlib import Path

import pytest

from flow.core.errors import ConfigError
from flow.core.outdir import MANIFEST, OutputDir, refuse_place, retire_results

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("place", ["/", "~", str(CHECKOUT), "/etc", "/usr/lib"])
def test_places_no_run_may_write_are_refused(place):
    with pytest.raises(ConfigError, match="--out"):
        refuse_place(Path(place).expanduser())


def test_a_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        refuse_place(tmp_path / "f")


def test_only_what_qflow_wrote_is_removed(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json",), trees=("checkpoints",))
    out.claim()
    out.will_write("report.json").write_text("{}")
    out.will_write("checkpoints/00_a.onnx").write_text("a")
    out.close()
    (out.path / "checkpoints" / "mine.txt").write_text("user")  # a user's file put into qflow's folder later
    (out.path / "notes.md").write_text("user")
    again = OutputDir(tmp_path / "o", results=("report.json",), trees=("checkpoints",))
    again.claim()
    left = sorted(str(p.relative_to(out.path)) for p in out.path.rglob("*") if p.is_file())
    assert left == [MANIFEST, "checkpoints/mine.txt", "notes.md"]


def test_files_appearing_in_trees_during_a_run_are_recorded(tmp_path):
    out = OutputDir(tmp_path / "o", trees=("finn",))
    out.claim()
    (out.path / "finn" / "deep").mkdir(parents=True)
    (out.path / "finn" / "deep" / "x.v").write_text("module")
    out.close()
    assert "finn/deep/x.v" in json.loads((out.path / MANIFEST).read_text())["files"]
    OutputDir(tmp_path / "o", trees=("finn",)).claim()
    assert not (out.path / "finn").exists()


@pytest.mark.parametrize("entry", ["../outside.txt", "/etc/hostname", "link/escape.txt", "", None, "a/../../b"])
def test_a_hostile_manifest_cannot_delete_outside(tmp_path, entry):
    (tmp_path / "outside.txt").write_text("keep")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "escape.txt").write_text("keep")
    o = tmp_path / "o"
    o.mkdir()
    (o / "link").symlink_to(tmp_path / "elsewhere")
    (o / MANIFEST).write_text(json.dumps({"version": 1, "files": [entry]}))
    OutputDir(o).claim()
    assert (tmp_path / "outside.txt").read_text() == "keep"
    assert (tmp_path / "elsewhere" / "escape.txt").read_text() == "keep"


@pytest.mark.parametrize("text", ["{", "[]", '{"files": "report.json"}', "\xff", '{"files": [1, 2]}'])
def test_a_corrupt_manifest_removes_nothing(tmp_path, text):
    o = tmp_path / "o"
    o.mkdir()
    (o / "report.json").write_text("{}")
    (o / MANIFEST).write_text(text, errors="surrogateescape") if text != "\xff" else (o / MANIFEST).write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="report.json, which qflow did not write"):
        OutputDir(o, results=("report.json",)).claim()
    assert (o / "report.json").exists()


def test_retire_removes_the_previous_results_and_nothing_else(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    out.will_write("report.json").write_text("{}")
    (out.path / "mine.txt").write_text("user")
    retire_results(tmp_path / "o")
    assert not (out.path / "report.json").exists() and (out.path / "mine.txt").exists()
    retire_results("/")  # a refused place is left alone, silently
    retire_results(tmp_path / "missing")


def test_a_folder_that_cannot_be_created_is_a_config_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="cannot be created"):
        OutputDir(tmp_path / "f" / "sub").claim()
