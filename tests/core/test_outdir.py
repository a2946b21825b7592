"""Output folders: refused places, proof of what qflow wrote, and what a new run may remove or replace.

The previous contents of ``--out`` are untrusted: each test plants something (a user's file, a
link, a hard link, a pipe, a forged manifest) and checks that nothing outside the folder
changes and nothing qflow did not write is removed or overwritten.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest

from flow.core.errors import ConfigError
from flow.core.fileio import atomic_write_bytes, atomic_write_text
from flow.core.outdir import MANIFEST, OutputDir, inner_folder, refuse_place, retire_results

CHECKOUT = Path(__file__).resolve().parents[2]


def _manifest(folder: Path, files: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps({"version": 2, "files": files}))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: file bytes, or the target of a link."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = f"-> {os.readlink(p)}" if p.is_symlink() else p.read_bytes()
    return out


# --------------------------------------------------------------------------- places


@pytest.mark.parametrize("place", ["/", "~", str(CHECKOUT), "/etc", "/usr/lib", "/var/lib/dpkg", "/var/spool/cron/crontabs", "/run",
                                   "/var", "/tmp", "/var/tmp", "/dev/shm", "/home", "/boot/x", "~/.ssh", "~/.config/qflow"])
def test_places_no_run_may_write_are_refused(place):
    with pytest.raises(ConfigError, match="--out"):
        refuse_place(Path(place).expanduser())


def test_a_repository_git_folder_is_refused(tmp_path):
    (tmp_path / "repo" / ".git" / "objects").mkdir(parents=True)
    for p in (tmp_path / "repo" / ".git", tmp_path / "repo" / ".git" / "objects" / "out"):
        with pytest.raises(ConfigError, match=r"\.git"):
            refuse_place(p)
    assert refuse_place(tmp_path / "repo" / "runs") == tmp_path / "repo" / "runs"


def test_a_link_to_a_system_folder_is_that_folder(tmp_path):
    (tmp_path / "etc").symlink_to("/etc")
    with pytest.raises(ConfigError, match="system folder"):
        refuse_place(tmp_path / "etc" / "x")


def test_folders_of_ones_own_are_accepted(tmp_path):
    assert refuse_place(tmp_path / "run") == tmp_path / "run"
    assert refuse_place("/var/tmp/qflow-run") == Path("/var/tmp/qflow-run")


def test_a_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        refuse_place(tmp_path / "f")


# --------------------------------------------------------------------------- proof


def test_only_what_qflow_wrote_is_removed(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json", "checkpoints/00_a.onnx"), scratch=("checkpoints",))
    out.claim()
    atomic_write_text(out.will_write("report.json"), "{}")
    atomic_write_text(out.will_write("checkpoints/00_a.onnx"), "a")
    out.close()
    (out.path / "checkpoints" / "mine.txt").write_text("user")  # a user's file put into qflow's folder later
    (out.path / "notes.md").write_text("user")
    OutputDir(tmp_path / "o", results=("report.json",), scratch=("checkpoints",)).claim()
    left = sorted(str(p.relative_to(out.path)) for p in out.path.rglob("*") if p.is_file())
    assert left == [MANIFEST, "checkpoints/mine.txt", "notes.md"]


def test_the_proof_of_files_another_kind_of_run_wrote_is_carried_forward(tmp_path):
    run = OutputDir(tmp_path / "o", results=("report.json", "model.pt"))
    run.claim()
    atomic_write_text(run.path / "model.pt", "weights")
    atomic_write_text(run.path / "report.json", "{}")
    OutputDir(tmp_path / "o", results=("report.json",)).claim()  # a build: leaves model.pt alone
    retire_results(tmp_path / "o", results=("report.json",))
    assert (run.path / "model.pt").exists()
    OutputDir(tmp_path / "o", results=("report.json", "model.pt")).claim()  # a run again: model.pt is still provably qflow's
    assert not (run.path / "model.pt").exists()


def test_a_file_qflow_wrote_then_someone_edited_is_not_its_own(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    atomic_write_text(out.path / "report.json", '{"fits": true}')
    (out.path / "report.json").write_text('{"fits": false, "edited": "by hand"}')
    with pytest.raises(ConfigError, match="report.json, which qflow did not write"):
        OutputDir(tmp_path / "o", results=("report.json",)).claim()
    assert "by hand" in (out.path / "report.json").read_text()


def test_files_appearing_in_trees_during_a_run_are_recorded_and_removed_next_time(tmp_path):
    out = OutputDir(tmp_path / "o", trees=("finn",))
    out.claim()
    (out.path / "finn" / "deep").mkdir(parents=True)
    (out.path / "finn" / "deep" / "x.v").write_text("module")
    out.close()
    recorded = json.loads((out.path / MANIFEST).read_text())["files"]
    assert recorded["finn/deep/x.v"] == [_sha(out.path / "finn" / "deep" / "x.v")]
    OutputDir(tmp_path / "o", trees=("finn",)).claim()
    assert not (out.path / "finn").exists()


def test_a_foreign_file_in_a_tree_with_fixed_names_stops_the_run_but_one_in_scratch_is_left(tmp_path):
    o = tmp_path / "o"
    (o / "finn").mkdir(parents=True)
    (o / "codegen").mkdir()
    (o / "finn" / "notes.txt").write_text("user")
    (o / "codegen" / "my_notes.txt").write_text("user")
    with pytest.raises(ConfigError, match=r"finn/notes\.txt"):
        OutputDir(o, trees=("finn",), scratch=("codegen",)).claim()
    (o / "finn" / "notes.txt").unlink()
    OutputDir(o, trees=("finn",), scratch=("codegen",)).claim()
    assert (o / "codegen" / "my_notes.txt").read_text() == "user"


def test_a_forged_manifest_cannot_remove_a_file_qflow_never_writes(tmp_path, outside):
    o = tmp_path / "o"
    o.mkdir()
    (o / "thesis.tex").write_text("chapter 1")
    (o / "thesis.tex.bak").write_text("chapter 0")
    _manifest(o, {"thesis.tex": [_sha(o / "thesis.tex")], "thesis.tex.bak": ["0" * 64]})
    OutputDir(o, results=("report.json",)).claim()
    retire_results(o, results=("report.json",))
    assert (o / "thesis.tex").read_text() == "chapter 1" and (o / "thesis.tex.bak").exists()


def test_a_forged_manifest_cannot_vouch_for_a_users_result_file(tmp_path):
    o = tmp_path / "o"
    o.mkdir()
    (o / "report.json").write_text('{"mine": 1}')
    _manifest(o, {"report.json": ["0" * 64]})
    with pytest.raises(ConfigError, match="did not write"):
        OutputDir(o, results=("report.json",)).claim()
    assert (o / "report.json").read_text() == '{"mine": 1}'


@pytest.mark.parametrize("entry", ["../outside/secret.txt", "/etc/hostname", "link/secret.txt", "", "a/../../outside/secret.txt",
                                   "report.json/../../outside/secret.txt"])
def test_a_hostile_manifest_cannot_delete_outside(tmp_path, outside, entry):
    o = tmp_path / "o"
    o.mkdir()
    (o / "link").symlink_to(outside)
    before = _tree(outside)
    _manifest(o, {entry: [_sha(outside / "secret.txt")]})
    OutputDir(o, results=("report.json", "link/secret.txt"), trees=("link",)).retire()
    with pytest.raises(ConfigError):  # the link stands where qflow would write
        OutputDir(o, results=("report.json", "link/secret.txt"), trees=("link",)).claim()
    assert _tree(outside) == before


@pytest.mark.parametrize("text", ["{", "[]", '{"files": "report.json"}', "\xff", '{"files": [1, 2]}', '{"version": 1, "files": ["report.json"]}',
                                  "[" * 100_000])
def test_a_corrupt_or_old_manifest_proves_nothing(tmp_path, text):
    o = tmp_path / "o"
    o.mkdir()
    (o / "report.json").write_text("{}")
    (o / MANIFEST).write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff" else b"\xff")
    with pytest.raises(ConfigError, match="report.json, which qflow did not write"):
        OutputDir(o, results=("report.json",)).claim()
    assert (o / "report.json").exists()


@pytest.mark.parametrize("plant", ["link_file", "link_dir", "hard_link", "fifo", "dir_for_file", "link_manifest", "dir_manifest",
                                   "link_in_tree", "link_parent"])
def test_planted_entries_stop_the_run_and_nothing_outside_changes(tmp_path, outside, plant):
    o = tmp_path / "o"
    o.mkdir()
    results = ("report.json", "checkpoints/00_qonnx.onnx")
    if plant == "link_file":
        (o / "report.json").symlink_to(outside / "secret.txt")
    elif plant == "link_dir":
        (o / "finn").symlink_to(outside)
    elif plant == "hard_link":
        os.link(outside / "secret.txt", o / "report.json")
        _manifest(o, {"report.json": [_sha(outside / "secret.txt")]})  # even with its hash: a file with other links is not qflow's
    elif plant == "fifo":
        os.mkfifo(o / "report.json")
    elif plant == "dir_for_file":
        (o / "report.json").mkdir()
    elif plant == "link_manifest":
        (o / MANIFEST).symlink_to(outside / "secret.txt")
    elif plant == "dir_manifest":
        (o / MANIFEST).mkdir()
    elif plant == "link_in_tree":
        (o / "finn").mkdir()
        (o / "finn" / "report").symlink_to(outside)
    elif plant == "link_parent":
        (o / "checkpoints").symlink_to(outside)
    before = _tree(outside)
    with pytest.raises(ConfigError) as err:
        OutputDir(o, results=results, trees=("finn",), scratch=("checkpoints",)).claim()
    assert "\n" not in str(err.value)
    assert _tree(outside) == before
    assert os.path.lexists(o / {"link_dir": "finn", "link_manifest": MANIFEST, "dir_manifest": MANIFEST, "link_in_tree": "finn/report",
                                "link_parent": "checkpoints"}.get(plant, "report.json"))


def test_check_inspects_without_changing_anything(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    atomic_write_text(out.path / "report.json", "{}")
    before = _tree(out.path)
    OutputDir(out.path, results=("report.json",)).check()
    assert _tree(out.path) == before
    (out.path / "other.json").write_text("user")
    with pytest.raises(ConfigError, match="other.json"):
        OutputDir(out.path, results=("report.json", "other.json")).check()
    assert (out.path / "report.json").exists()


# --------------------------------------------------------------------------- writing


def test_a_write_records_its_hash_before_the_file_lands(tmp_path, monkeypatch):
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    real_replace = os.replace

    def killed(src, dst):  # the process dies after the manifest was written, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(out.path / "report.json", '{"a": 1}')
    monkeypatch.setattr(os, "replace", real_replace)
    manifest = json.loads((out.path / MANIFEST).read_text())
    assert manifest["files"]["report.json"] == [hashlib.sha256(b'{"a": 1}').hexdigest()]
    atomic_write_text(out.path / "report.json", '{"a": 1}')
    OutputDir(out.path, results=("report.json",)).claim()  # proven: removed, no refusal
    assert not (out.path / "report.json").exists()


def test_a_temporary_file_left_by_a_killed_write_is_removed_by_the_next_run(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    atomic_write_text(out.path / "report.json", "{}")
    manifest = json.loads((out.path / MANIFEST).read_text())
    (temp,) = manifest["temp"]
    (out.path / temp).write_text("half")  # as if the process died while writing
    OutputDir(out.path, results=("report.json",)).claim()
    assert not (out.path / temp).exists()


def test_a_forged_temporary_entry_removes_no_file_at_a_name_qflow_never_writes(tmp_path):
    """The manifest's record of the temporary file a write goes through is data: it can name only a
    temporary file of one of the run's own output names."""
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    out.close()
    mine = ".notes.0123456789ab.tmp"
    (out.path / mine).write_text("mine")
    manifest = json.loads((out.path / MANIFEST).read_text())
    manifest["temp"] = [mine]
    (out.path / MANIFEST).write_text(json.dumps(manifest))
    OutputDir(out.path, results=("report.json",)).claim()
    assert (out.path / mine).read_text() == "mine"


def test_a_write_never_replaces_a_file_qflow_cannot_prove(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    (out.path / "late.json").write_text("user")  # appears after the claim
    with pytest.raises(ConfigError, match="late.json exists and qflow cannot prove it wrote it"):
        atomic_write_text(out.path / "late.json", "{}")
    assert (out.path / "late.json").read_text() == "user"


def test_a_write_through_a_link_planted_after_the_claim_is_refused(tmp_path, outside):
    out = OutputDir(tmp_path / "o", scratch=("finn_build",))
    out.claim()
    (out.path / "finn_build").symlink_to(outside)
    before = _tree(outside)
    with pytest.raises(ConfigError, match="outside the folder"):
        atomic_write_bytes(out.path / "finn_build" / "x.json", b"{}")
    assert _tree(outside) == before


def test_will_write_refuses_a_link_on_the_way(tmp_path, outside):
    out = OutputDir(tmp_path / "o", results=("rows/a/row.json",))
    out.claim()
    (out.path / "rows").symlink_to(outside)
    with pytest.raises(ConfigError, match="rows is a symbolic link"):
        out.will_write("rows/a/row.json")
    assert not (outside / "a").exists()


def test_inner_folders_are_reached_without_links(tmp_path, outside):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "trials").symlink_to(outside)
    with pytest.raises(ConfigError, match="trials is a symbolic link"):
        inner_folder(tmp_path / "o", "trials/0001")
    with pytest.raises(ConfigError, match="trials is a symbolic link"):
        inner_folder(tmp_path / "o", "trials/0001", create=False)
    assert list(outside.iterdir()) == [outside / "secret.txt"]
    assert inner_folder(tmp_path / "o", "final/x").is_dir()


def test_discard_removes_only_the_proven_files_under_the_folders(tmp_path):
    (tmp_path / "o" / "checkpoints").mkdir(parents=True)
    (tmp_path / "o" / "checkpoints" / "mine.txt").write_text("user")  # there before the run
    out = OutputDir(tmp_path / "o", results=("report.json",), scratch=("checkpoints",))
    out.claim()
    atomic_write_text(out.path / "checkpoints" / "00.onnx", "a")
    atomic_write_text(out.path / "report.json", "{}")
    out.discard(("checkpoints",))
    assert not (out.path / "checkpoints" / "00.onnx").exists()
    assert (out.path / "checkpoints" / "mine.txt").exists() and (out.path / "report.json").exists()


# --------------------------------------------------------------------------- retiring


def test_retire_removes_the_previous_results_and_nothing_else(tmp_path):
    out = OutputDir(tmp_path / "o", results=("report.json",))
    out.claim()
    atomic_write_text(out.path / "report.json", "{}")
    (out.path / "mine.txt").write_text("user")
    retire_results(tmp_path / "o", results=("report.json",))
    assert not (out.path / "report.json").exists() and (out.path / "mine.txt").exists()
    retire_results("/", results=("report.json",))  # a refused place is left alone, silently
    retire_results(tmp_path / "missing", results=("report.json",))


def test_a_folder_that_cannot_be_created_is_a_config_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="cannot be created"):
        OutputDir(tmp_path / "f" / "sub").claim()
