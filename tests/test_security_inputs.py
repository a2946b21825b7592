"""The SECURITY promises about what qflow reads: only regular files, bounded before reading, inside
their own folder; every bad input one line and exit 2, checked before ``--out`` is touched, and no
earlier result left behind looking current.
"""

import gzip
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzzing import one_error_line as _one_error
from fuzzing import run_cli

import flow.nn.data as data
from flow.core.outdir import MANIFEST
from flow.nn.data import IdxFormatError, read_idx

RECIPE = 'name = "dig"\n[model]\nname = "tfc"\noptions = { hidden = [16, 16] }\n[data]\ndataset = "digits"\n[train]\nepochs = 0\nthreads = 1\n[build]\nverify_samples = 8\n'
BOARD = (Path(__file__).resolve().parents[1] / "hw_targets" / "pynq-z1.toml").read_text()


def _bounded(args, seconds=60):
    """``run_cli(args)`` that must finish within ``seconds`` (a read that blocks fails the test, not the suite)."""
    box = []
    t = threading.Thread(target=lambda: box.append(run_cli(args)), daemon=True)
    t.start()
    t.join(seconds)
    assert box, f"qflow {' '.join(args)} did not finish within {seconds} s"
    return box[0]


@pytest.fixture(scope="module")
def good_build(tmp_path_factory, tiny_mlp_onnx):
    out = tmp_path_factory.mktemp("good") / "out"
    assert run_cli(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4"]).code == 0
    return out


@pytest.fixture
def previous(tmp_path, good_build):
    """An output folder holding a finished build's results."""
    return Path(shutil.copytree(good_build, tmp_path / "out", symlinks=True))


# --------------------------------------------------------------------------- recipes read only beside themselves


@pytest.mark.parametrize("line, field", [
    ('[build]\nfolding_file = "../../../../etc/hostname"', "build.folding_file"),
    ('[build]\nfolding_file = "/etc/hostname"', "build.folding_file"),
    ('[build]\ntarget = "../outside/secret.toml"', "build.target"),
    ('[build]\ntarget = "/etc/qflow.toml"', "build.target"),
    ('[build]\nspecialize_file = "sub/../../x.json"', "build.specialize_file"),
    ('[data]\ndataset = "mnist"\nroot = "../../../../etc"', "data.root"),
    ('[data]\ndataset = "mnist"\nroot = "/usr/share"', "data.root"),
    ('[build]\nfolding_file = "link/f.json"', "build.folding_file"),
])
def test_a_recipe_reads_nothing_outside_its_folder(tmp_path, line, field):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.toml").write_text(BOARD)
    (tmp_path / "outside" / "f.json").write_text("{}")
    (folder / "link").symlink_to(tmp_path / "outside")
    (folder / "r.toml").write_text(f'name = "r"\n{line}\n')
    _one_error(run_cli(["run", str(folder / "r.toml"), "--out", str(tmp_path / "out"), "--no-progress"]), field, "recipe")
    assert not (tmp_path / "out").exists()


def test_a_sweep_reads_nothing_outside_its_folder(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.toml").write_text('[defaults]\nbuild = { folding_file = "../f.json" }\n[[rows]]\nname = "a"\n')
    _one_error(run_cli(["compare", str(tmp_path / "s" / "sweep.toml"), "--out", str(tmp_path / "out")]), "build.folding_file")


def test_paths_inside_the_recipes_folder_are_read(tmp_path):
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "mine.toml").write_text(BOARD.replace("clock_mhz = 100.0", "clock_mhz = 50.0"))
    (tmp_path / "r.toml").write_text(RECIPE + 'target = "boards/mine.toml"\n')
    outcome = run_cli(["run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "out"), "--no-progress"])
    assert outcome.code == 0, outcome.err[-2000:]
    assert '"clock_mhz": 50.0' in (tmp_path / "out" / "report.json").read_text()


# --------------------------------------------------------------------------- only regular files, bounded


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.timeout(180)
@pytest.mark.parametrize("what", ["recipe", "sweep", "verify-inputs", "reference-outputs", "folding", "specialize", "target", "model",
                                  "dev-zero-recipe", "dev-zero-model", "folder-recipe"])
def test_pipes_devices_and_folders_are_refused_without_reading(tmp_path, tiny_mlp_onnx, what):
    out = str(tmp_path / "out")
    model = str(tiny_mlp_onnx)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 8, 8), dtype=np.float32))
    pipe = str(_fifo(tmp_path / "pipe.toml")) if not what.startswith(("dev", "folder")) else None
    args = {
        "recipe": ["run", str(pipe), "--out", out], "sweep": ["compare", str(pipe), "--out", out],
        "verify-inputs": ["build", model, "--out", out, "--verify-inputs", str(pipe)],
        "reference-outputs": ["build", model, "--out", out, "--verify-inputs", str(x), "--reference-outputs", str(pipe)],
        "folding": ["build", model, "--out", out, "--folding", str(pipe)], "specialize": ["build", model, "--out", out, "--specialize", str(pipe)],
        "target": ["build", model, "--out", out, "--target", str(pipe)], "model": ["build", str(pipe), "--out", out],
        "dev-zero-recipe": ["run", "/dev/zero", "--out", out], "dev-zero-model": ["build", "/dev/zero", "--out", out],
        "folder-recipe": ["run", str(tmp_path), "--out", out],
    }[what]
    line = _one_error(_bounded(args))
    assert any(w in line for w in ("named pipe", "a device", "a folder", "is a directory")), line
    assert not (tmp_path / "out").exists()


def test_an_oversized_recipe_is_refused_before_it_is_read(tmp_path):
    (tmp_path / "r.toml").write_text("# " + "x" * (2 << 20))
    _one_error(run_cli(["run", str(tmp_path / "r.toml"), "--out", str(tmp_path / "out")]), "limit")


# --------------------------------------------------------------------------- one line, exit 2, no stale result


def _npy(path: Path, header: bytes) -> Path:
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    path.write_bytes(body + b"\0" * 64)
    return path


@pytest.mark.parametrize("header", [b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 8, 8, }\n",
                                    b"{'descr': '<f4', 'fortran_order': False, 'shape': ((((}\n",
                                    b"{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }\n",
                                    b"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }\n",
                                    b"{'descr': '<f4', 'fortran_order': False, 'shape': (-2, -8), }\n"])
@pytest.mark.parametrize("option", ["--verify-inputs", "--reference-outputs"])
def test_a_malformed_npy_is_one_line_and_retires_the_previous_report(tmp_path, previous, tiny_mlp_onnx, header, option):
    bad = _npy(tmp_path / "bad.npy", header)
    good = tmp_path / "x.npy"
    np.save(good, np.zeros((2, 1, 8, 8), dtype=np.float32))
    args = ["build", str(tiny_mlp_onnx), "--out", str(previous)]
    args += ["--verify-inputs", str(bad)] if option == "--verify-inputs" else ["--verify-inputs", str(good), "--reference-outputs", str(bad)]
    _one_error(run_cli(args), option)
    assert not (previous / "report.json").exists() and (previous / MANIFEST).exists()


@pytest.mark.parametrize("clock", ["5e-324", "0.5", "1e-300"])
def test_a_vanishing_clock_is_one_line(tmp_path, tiny_mlp_onnx, clock):
    _one_error(run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--clock-mhz", clock]), "clock_mhz")
    (tmp_path / "b.toml").write_text(BOARD.replace("clock_mhz = 100.0", f"clock_mhz = {clock}"))
    _one_error(run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--target", str(tmp_path / "b.toml")]), "clock_mhz")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["--out={out}", "--fps", "many"], ["--out", "{out}", "--stage", "silicon"], ["--out={out}", "--bogus"]])
def test_a_usage_error_retires_the_previous_report_whichever_way_out_is_written(previous, tiny_mlp_onnx, args):
    outcome = run_cli(["build", str(tiny_mlp_onnx), *[a.format(out=previous) for a in args]])
    assert outcome.code == 2 and outcome.err.count("qflow: error:") == 1
    assert not (previous / "report.json").exists()


def test_option_files_are_checked_before_out_is_touched(tmp_path, tiny_mlp_onnx):
    (tmp_path / "f.json").write_text('{"MVAU_0": {"PE": "many"}, "Defaults": 7}')
    _one_error(run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "new"), "--folding", str(tmp_path / "f.json")]), "f.json")
    (tmp_path / "s.json").write_text('{"MVAU_0": {"preferred_impl_style": "vhdl"}}')
    _one_error(run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "new"), "--specialize", str(tmp_path / "s.json")]), "s.json")
    assert not (tmp_path / "new").exists()


def test_an_opset_1_model_is_one_line_without_onnxruntime_noise(tmp_path, tiny_mlp_onnx):
    m = onnx.load(str(tiny_mlp_onnx))
    for o in m.opset_import:
        if o.domain == "":
            o.version = 1
    onnx.save(m, str(tmp_path / "old.onnx"))
    proc = subprocess.run([sys.executable, "-m", "flow", "build", str(tmp_path / "old.onnx"), "--out", str(tmp_path / "o"), "--samples", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "\x1b" not in proc.stderr, proc.stderr
    # without a terminal, the steps done print one indented line each; the error is the only other line
    other = [line for line in proc.stderr.splitlines() if not re.fullmatch(r"  \S+ +\d+\.\d\d s", line)]
    assert len(other) == 1 and other[0].startswith("qflow: error: "), proc.stderr
    assert "re-export the model with a current ONNX opset" in other[0], proc.stderr


# --------------------------------------------------------------------------- models, nesting, decompression


def test_partition_nodes_which_name_other_files_are_refused(tmp_path, tiny_mlp_onnx):
    m = onnx.load(str(tiny_mlp_onnx))
    first = m.graph.node[0]
    node = onnx.helper.make_node("GenericPartition", list(first.input), list(first.output), name="part", domain="qonnx.custom_op.general",
                                 model="/etc/hostname")
    m.graph.node.remove(first)
    m.graph.node.insert(0, node)
    onnx.save(m, str(tmp_path / "m.onnx"))
    _one_error(run_cli(["build", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "o")]), "node 'part'")
    assert not (tmp_path / "o").exists()


def _config_args(tmp_path, model, kind: str, json_text: str, toml_value: str) -> list[str]:
    """A build or run given a folding file (``json_text``), a recipe or a board file (``a = toml_value``)."""
    if kind == "folding":
        (tmp_path / "f.json").write_text(json_text)
        return ["build", str(model), "--out", str(tmp_path / "o"), "--folding", str(tmp_path / "f.json")]
    (tmp_path / "c.toml").write_text(f"a = {toml_value}\n")
    if kind == "recipe":
        return ["run", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]
    return ["build", str(model), "--out", str(tmp_path / "o"), "--target", str(tmp_path / "c.toml")]


@pytest.mark.parametrize("kind", ["folding", "recipe", "target"])
def test_nesting_too_deep_to_parse_is_one_line(tmp_path, tiny_mlp_onnx, kind):
    deep = "[" * 100_000 + "]" * 100_000
    _one_error(run_cli(_config_args(tmp_path, tiny_mlp_onnx, kind, deep, deep)))


@pytest.mark.parametrize("kind", ["folding", "recipe", "target"])
def test_numbers_too_long_to_convert_are_one_line(tmp_path, tiny_mlp_onnx, kind):
    """Python refuses to convert an integer of more than 4,300 digits (ValueError): one line, not an internal error."""
    digits = "9" * 5000
    args = _config_args(tmp_path, tiny_mlp_onnx, kind, f'{{"Defaults": {{}}, "MVAU_hls_0": {{"PE": {digits}}}}}', digits)
    _one_error(run_cli(args), "more than 4,300 digits", "fix the number")
    assert not (tmp_path / "o").exists()


def test_a_gzip_bomb_stops_at_the_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_IDX_BYTES", 1 << 20)
    bomb = tmp_path / "t10k-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (8 << 20).to_bytes(4, "big") + b"\0" * (8 << 20)))
    assert bomb.stat().st_size < 64 << 10
    with pytest.raises(IdxFormatError, match="decompresses to more than 1 MiB"):
        read_idx(bomb)
