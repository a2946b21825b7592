"""The SECURITY promises about ``--out``: nothing planted there makes qflow run code, write outside
the folder, or remove or overwrite a file qflow did not write; unsafe places are refused by every command.

Each test plants something in (or points a command at) a folder and checks, from the command
line, that the run ends with one error line (exit 2) or succeeds, and that nothing outside
changed. ``tests/test_security_inputs.py`` covers the inputs qflow reads.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fuzzing import one_error_line as _one_error
from fuzzing import run_cli, snapshot

from flow.compat import finn as _finn_compat
from flow.core.outdir import MANIFEST

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FINN_", "XILINX_"))}
RECIPE = 'name = "dig"\n[model]\nname = "tfc"\noptions = { hidden = [16, 16] }\n[data]\ndataset = "digits"\n[train]\nepochs = 1\nbatch_size = 64\nthreads = 1\n'


def _payload(marker) -> str:
    # PyYAML's unsafe Loader calls os.system on this tag: a settings file is code.
    return f"finn_build_dir: !!python/object/apply:os.system ['touch {marker}']\n"


@pytest.fixture(scope="module")
def good_build(tmp_path_factory, tiny_mlp_onnx):
    """A finished build (``--stage codegen``) whose folder each test copies."""
    out = tmp_path_factory.mktemp("good") / "out"
    assert run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--stage", "codegen"]).code == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# --------------------------------------------------------------------------- FINN's settings file


def test_finn_executes_a_settings_file_it_is_pointed_at(tmp_path):
    """Why ensure_finn_settings never lets FINN read a file a user could have written."""
    marker = tmp_path / "ran"
    settings = tmp_path / "settings.yaml"
    settings.write_text(_payload(marker))
    code = (
        "from pathlib import Path; from finn.interface.settings import FINNSettings\n"
        f"try:\n FINNSettings.init(override_settings_path=Path({str(settings)!r}), auto_set_environment_vars=False)\n"
        "except Exception:\n pass\n"
    )
    subprocess.run([sys.executable, "-c", code], env=CLEAN_ENV, timeout=120, capture_output=True)
    assert marker.exists(), "FINN no longer executes its settings file: the private settings path may be dropped"


def test_planted_settings_files_do_not_run_and_nothing_is_left_in_the_temp_folder(tmp_path, tiny_mlp_onnx):
    """A settings file in --out, in FINN_SETTINGS or in ~/.finn is never loaded by a build, and the
    process leaves nothing in the temporary folder."""
    out, home, temp = tmp_path / "out", tmp_path / "home", tmp_path / "tmp"
    markers = [tmp_path / f"ran_{i}" for i in range(4)]
    (out / "finn_build").mkdir(parents=True)
    (out / "finn_build" / "finn_settings.yaml").write_text(_payload(markers[0]))
    (out / "finn_build" / "settings.yaml").write_text(_payload(markers[1]))
    (home / ".finn").mkdir(parents=True)
    (home / ".finn" / "settings.yaml").write_text(_payload(markers[2]))
    temp.mkdir()
    env_file = tmp_path / "env_settings.yaml"
    env_file.write_text(_payload(markers[3]))
    env = {**CLEAN_ENV, "HOME": str(home), "FINN_SETTINGS": str(env_file), "TMPDIR": str(temp)}
    proc = subprocess.run(
        [sys.executable, "-m", "flow", "build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--stage", "codegen"],
        env=env, timeout=600, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.json").exists()
    assert [m.name for m in markers if m.exists()] == []
    assert list(temp.iterdir()) == []


def test_the_settings_path_can_never_exist(tmp_path):
    _finn_compat.ensure_finn_settings(tmp_path / "b")
    path = _finn_compat._private_settings_path()
    assert not path.exists()
    with pytest.raises(OSError):
        path.write_text("finn_build_dir: /x\n")


# --------------------------------------------------------------------------- places


@pytest.mark.parametrize("command", ["build", "run", "compare", "search", "sensitivity", "fetch-data"])
@pytest.mark.parametrize("place", ["~", "/var/lib/dpkg", "/run", "/tmp", "repo/.git"])
def test_every_command_refuses_unsafe_places(tmp_path, tiny_mlp_onnx, command, place):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    where = str(Path(place).expanduser()) if not place.startswith("repo") else str(tmp_path / place)
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    sweep = tmp_path / "s.toml"
    sweep.write_text('[defaults]\ndata = { dataset = "digits" }\n[[rows]]\nname = "a"\nmodel = { name = "tfc", options = { hidden = [16] } }\n')
    args = {"build": ["build", str(tiny_mlp_onnx), "--out", where], "run": ["run", str(recipe), "--out", where],
            "compare": ["compare", str(sweep), "--out", where], "search": ["search", str(recipe), "--out", where, "--trials", "1"],
            "sensitivity": ["sensitivity", str(recipe), "--out", where], "fetch-data": ["fetch-data", "--dest", where]}[command]
    before = {p.name for p in Path(where).iterdir()} if Path(where).is_dir() and os.access(where, os.R_OK) else None
    _one_error(run_cli(args), "--out" if command != "fetch-data" else "--dest")
    if before is not None:
        assert {p.name for p in Path(where).iterdir()} == before


# --------------------------------------------------------------------------- build


@pytest.mark.parametrize("link", ["finn", "codegen", "finn_build", "checkpoints", "report.json", "finn.log", "checkpoints/00_qonnx.onnx"])
def test_a_link_planted_in_out_is_never_followed(tmp_path, tiny_mlp_onnx, outside, link):
    out = tmp_path / "out"
    (out / Path(link).parent).mkdir(parents=True, exist_ok=True)
    target = outside / "secret.txt" if "." in Path(link).name else outside
    (out / link).symlink_to(target)
    before = snapshot(outside, tmp_path / "none")
    _one_error(run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--stage", "codegen"]), link)
    assert snapshot(outside, tmp_path / "none") == before and (out / link).is_symlink()


def test_a_users_file_where_a_build_writes_is_kept_and_refused(tmp_path, tiny_mlp_onnx):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "00_qonnx.onnx").write_text("my own model")
    _one_error(run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4"]), "checkpoints/00_qonnx.onnx")
    assert (out / "checkpoints" / "00_qonnx.onnx").read_text() == "my own model"
    assert not (out / "report.json").exists()


def test_a_forged_manifest_deletes_nothing_even_in_a_refused_run(tmp_path, good_build, tiny_mlp_onnx):
    out = _copy(good_build, tmp_path / "out")
    (out / "thesis.tex").write_text("chapter 1")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"]["thesis.tex"] = [hashlib.sha256(b"chapter 1").hexdigest()]
    (out / MANIFEST).write_text(json.dumps(manifest))
    _one_error(run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--fps", "-3"]))  # refused: retires the old results
    assert (out / "thesis.tex").read_text() == "chapter 1" and not (out / "report.json").exists()
    assert run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4"]).code == 0
    assert (out / "thesis.tex").read_text() == "chapter 1"


def test_codegen_keeps_a_users_notes_and_replaces_its_own_files(tmp_path, good_build, tiny_mlp_onnx):
    out = _copy(good_build, tmp_path / "out")
    old = {p for p in (out / "codegen").rglob("*") if p.is_file()}
    (out / "codegen" / "my_notes.txt").write_text("mine")
    assert run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--stage", "codegen"]).code == 0
    assert (out / "codegen" / "my_notes.txt").read_text() == "mine"
    new = {p for p in (out / "codegen").rglob("*") if p.is_file()}
    assert old and new == old | {out / "codegen" / "my_notes.txt"}  # every layer's folder rewritten under its own name


def test_a_rerun_into_its_own_folder_replaces_every_result(tmp_path, good_build, tiny_mlp_onnx):
    out = _copy(good_build, tmp_path / "out")
    assert run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--stage", "codegen"]).code == 0
    assert (out / "report.json").is_file() and not list(out.rglob("*.tmp"))


# --------------------------------------------------------------------------- compare


@pytest.mark.parametrize("link", ["rows", "rows/a"])
def test_compare_never_writes_through_a_planted_link(tmp_path, outside, link):
    sweep = tmp_path / "s.toml"
    sweep.write_text('[defaults]\ndata = { dataset = "digits" }\ntrain = { epochs = 0 }\n'
                     '[[rows]]\nname = "a"\nmodel = { name = "tfc", options = { hidden = [16] } }\n')
    out = tmp_path / "out"
    (out / "rows").mkdir(parents=True)
    if link == "rows":
        (out / "rows").rmdir()
    (out / link).symlink_to(outside)
    before = snapshot(outside, tmp_path / "none")
    _one_error(run_cli(["compare", str(sweep), "--out", str(out), "--no-progress"]), f"{link} is a symbolic link")
    assert snapshot(outside, tmp_path / "none") == before


@pytest.mark.parametrize("planted", ["tampered", "deep", "foreign"])
def test_a_planted_row_json_is_never_reused_nor_overwritten(tmp_path, planted):
    sweep = tmp_path / "s.toml"
    sweep.write_text('[defaults]\ndata = { dataset = "digits" }\ntrain = { epochs = 0 }\n'
                     '[[rows]]\nname = "a"\nmodel = { name = "tfc", options = { hidden = [16] } }\n')
    row = tmp_path / "out" / "rows" / "a"
    row.mkdir(parents=True)
    text = {"tampered": '{"name": "a", "accuracy": 0.9999, "lut": 1, "verified": true, "recipe": {}}', "deep": "[" * 200_000,
            "foreign": '{"name": "a"}'}[planted]
    (row / "row.json").write_text(text)
    _one_error(run_cli(["compare", str(sweep), "--out", str(tmp_path / "out"), "--no-progress"]), "row.json", "did not write")
    assert (row / "row.json").read_text() == text and not (tmp_path / "out" / "results.json").exists()


def test_compare_refuses_a_users_results_file(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('[defaults]\ndata = { dataset = "digits" }\n[[rows]]\nname = "a"\nmodel = { name = "tfc", options = { hidden = [16] } }\n')
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.md").write_text("my notes")
    _one_error(run_cli(["compare", str(sweep), "--out", str(tmp_path / "out"), "--no-progress"]), "results.md")
    assert (tmp_path / "out" / "results.md").read_text() == "my notes" and not (tmp_path / "out" / "rows").exists()


# --------------------------------------------------------------------------- search


def _search(tmp_path, *extra: str):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    return run_cli(["search", str(recipe), "--out", str(tmp_path / "out"), "--trials", "1", "--no-progress", "--finalists", "0", *extra])


@pytest.mark.parametrize("name", ["pareto.json", "all_trials.csv", "search.json", "pareto.png"])
def test_search_refuses_a_users_file_with_an_output_name(tmp_path, name):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).write_text("mine")
    _one_error(_search(tmp_path), name)
    assert (tmp_path / "out" / name).read_text() == "mine" and not (tmp_path / "out" / "study.db").exists()


@pytest.mark.parametrize("link", ["trials", "final", "study.db", "study.db-journal", "study.db-wal", "study.db-shm", "trials/0000", "final/dig-t0000",
                                  "trials/0000/build", "trials/0000/build/finn", "final/dig-t0000/checkpoints", "trials/0000/untrained.qonnx.onnx"])
def test_search_never_writes_through_a_planted_link(tmp_path, outside, link):
    (tmp_path / "out" / Path(link).parent).mkdir(parents=True, exist_ok=True)
    (tmp_path / "out" / link).symlink_to(outside if "." not in link else outside / "secret.txt")
    before = snapshot(outside, tmp_path / "none")
    _one_error(_search(tmp_path), link)
    assert snapshot(outside, tmp_path / "none") == before


@pytest.mark.parametrize("content, needle", [(b"not a database at all", "not an SQLite database"),
                                             (None, "not an Optuna study")])
def test_a_study_file_that_is_not_an_optuna_study_is_refused_and_kept(tmp_path, content, needle):
    (tmp_path / "out").mkdir()
    db = tmp_path / "out" / "study.db"
    if content is None:
        with sqlite3.connect(db) as c:
            c.execute("CREATE TABLE thesis (chapter TEXT)")
    else:
        db.write_bytes(content)
    before = db.read_bytes()
    _one_error(_search(tmp_path), needle)
    assert db.read_bytes() == before


def test_an_unreachable_database_server_is_one_line(tmp_path):
    _one_error(_search(tmp_path, "--storage", "postgresql://qflow:secret@127.0.0.1:1/none"), "cannot be opened", "127.0.0.1")
    assert "secret" not in run_cli(["search", str(tmp_path / "r.toml"), "--storage", "postgresql://u:secret@127.0.0.1:1/x",
                                    "--out", str(tmp_path / "o2"), "--no-progress"]).err


# --------------------------------------------------------------------------- fetch-data


def test_fetch_data_never_writes_through_a_link_nor_over_a_users_file(tmp_path, outside):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fashion-mnist").symlink_to(outside)
    _one_error(run_cli(["fetch-data", "--dest", str(tmp_path / "data"), "--dataset", "fashion-mnist"]), "fashion-mnist is a symbolic link")
    (tmp_path / "data" / "fashion-mnist").unlink()
    (tmp_path / "data" / "fashion-mnist").mkdir()
    (tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").write_text("mine")
    outcome = run_cli(["fetch-data", "--dest", str(tmp_path / "data"), "--dataset", "fashion-mnist"])
    assert outcome.code == 2 and (tmp_path / "data" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_text() == "mine"
    assert list(outside.iterdir()) == [outside / "secret.txt"]


# --------------------------------------------------------------------------- model files found in --out


def _with_domain(path: Path, domain: str) -> None:
    """Add to the model file a node whose domain names a module: qonnx imports it when it meets the node."""
    import onnx
    from onnx import helper

    m = onnx.load(str(path))
    m.graph.node.append(helper.make_node("Evil", [m.graph.input[0].name], ["evil_out"], domain=domain))
    onnx.save(m, str(path))


def _forge(out: Path, rel: str) -> None:
    """Record the current bytes of ``out/rel`` in the folder's manifest, as someone who can write it would."""
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"][rel] = [hashlib.sha256((out / rel).read_bytes()).hexdigest()]
    (out / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def good_sweep(tmp_path_factory):
    """A finished one-row sweep whose folder each test copies."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "s.toml").write_text('[defaults]\ndata = { dataset = "digits" }\ntrain = { epochs = 0 }\n'
                                 '[[rows]]\nname = "a"\nmodel = { name = "tfc", options = { hidden = [16] } }\n')
    assert run_cli(["compare", str(root / "s.toml"), "--out", str(root / "out"), "--no-progress"]).code == 0
    return root


@pytest.mark.parametrize("forged", [False, True])
def test_a_model_planted_in_a_finished_row_runs_no_code(tmp_path, good_sweep, monkeypatch, forged):
    """A row's QONNX file is loaded like any model qflow is given: a domain naming a module in the folder
    (importable when the working folder is on ``sys.path``, as under ``python -m flow``) is never imported,
    also when the manifest was forged to vouch for the file (then the row is rebuilt)."""
    name = f"out_{forged}"  # a module qflow would import is imported once per process: one name per case
    out = _copy(good_sweep / "out", tmp_path / name)
    marker = tmp_path / "ran"
    (out / "rows" / "a" / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    _with_domain(out / "rows" / "a" / "a.qonnx.onnx", f"{name}.rows.a.evil")
    if forged:
        _forge(out / "rows" / "a", "a.qonnx.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    outcome = run_cli(["compare", str(good_sweep / "s.toml"), "--out", name, "--no-progress"])
    assert not marker.exists()
    if forged:
        assert outcome.code == 0, outcome.err
    else:
        _one_error(outcome, "a.qonnx.onnx", "did not write")
    assert (out / "rows" / "a" / "evil.py").exists()


def test_a_row_whose_row_and_report_were_both_edited_is_not_reused(tmp_path, good_sweep):
    """Consistent numbers in ``row.json`` and ``report.json`` prove nothing: both must be files qflow wrote."""
    out = _copy(good_sweep / "out", tmp_path / "out")
    row, report = (json.loads((out / "rows" / "a" / n).read_text()) for n in ("row.json", "report.json"))
    row["accuracy"] = report["accuracy"] = 0.9999
    for name, data in (("row.json", row), ("report.json", report)):
        (out / "rows" / "a" / name).write_text(json.dumps(data))
    before = {p.name: p.read_bytes() for p in (out / "rows" / "a").iterdir() if p.is_file()}
    _one_error(run_cli(["compare", str(good_sweep / "s.toml"), "--out", str(out), "--no-progress"]), "did not write")
    assert {p.name: p.read_bytes() for p in (out / "rows" / "a").iterdir() if p.is_file()} == before
    assert not (out / "results.json").exists()


def test_a_forged_checkpoint_runs_no_code_when_a_build_resumes(tmp_path, tiny_mlp_onnx, monkeypatch):
    out = tmp_path / "out"
    build = ["build", str(tiny_mlp_onnx), "--out", "out", "--samples", "4", "--no-progress"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_cli(build).code == 0
    marker = tmp_path / "ran"
    (out / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    checkpoint = next(out.glob("checkpoints/07_*.onnx"))
    _with_domain(checkpoint, "out.evil")
    _forge(out, checkpoint.relative_to(out).as_posix())
    _one_error(run_cli([*build, "--from-step", "specialize_layers"]), "domain 'out.evil'", "without --from-step")
    assert not marker.exists() and (out / "evil.py").exists()
