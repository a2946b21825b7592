"""The qflow command line: one readable line and a non-zero exit for bad input."""

import json
import subprocess
import sys

import numpy as np

from flow.cli import main


def _run(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_targets_lists_every_board(capsys):
    rc, out, _ = _run(["targets"], capsys)
    assert rc == 0
    for name in ("pynq-z1", "pynq-z2", "ultra96-v2", "zcu104", "kv260", "alveo-u250"):
        assert name in out


def test_build_writes_report_and_folding(tiny_mlp_onnx, tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 256, size=(8, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc, out, _ = _run(["build", str(tiny_mlp_onnx), "--target", "pynq-z2", "--out", str(tmp_path / "o"),
                       "--fps", "200000", "--verify-inputs", str(tmp_path / "x.npy")], capsys)
    assert rc == 0
    assert "FPS" in out and "verification passed" in out
    r = json.loads((tmp_path / "o" / "report.json").read_text())
    assert r["target"]["name"] == "pynq-z2" and r["folding"]["target_fps"] == 200000
    assert (tmp_path / "o" / "folding.json").exists()


def _one_line_error(rc, err, expected_rc, pattern):
    assert rc == expected_rc
    lines = [line for line in err.strip().splitlines() if line.startswith("qflow:")]
    assert len(lines) == 1 and lines[0].startswith("qflow: error:"), err
    assert "Traceback" not in err
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_float_model(float_onnx, tmp_path, capsys):
    rc, _, err = _run(["build", str(float_onnx), "--out", str(tmp_path)], capsys)
    _one_line_error(rc, err, 2, "no quantization nodes")
    assert not (tmp_path / "report.json").exists()


def test_not_onnx(tmp_path, capsys):
    p = tmp_path / "x.onnx"
    p.write_text("hello")
    rc, _, err = _run(["build", str(p), "--out", str(tmp_path / "o")], capsys)
    _one_line_error(rc, err, 2, "not an ONNX model")


def test_the_default_sample_count_is_capped_by_the_network_size_and_said_so(tiny_mlp_onnx, tmp_path, capsys, monkeypatch):
    """Without --samples a network over the per-stage budget is verified on fewer inputs (at least 4),
    and the report says how many were left out; --samples N verifies N whatever the size."""
    import flow.core.config as config

    monkeypatch.setattr(config, "VERIFY_GMAC", 1e-9)  # every network is over it
    rc, _, _ = _run(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "d"), "--no-progress"], capsys)
    r = json.loads((tmp_path / "d" / "report.json").read_text())
    assert rc == 0 and {s["samples"] for s in r["verification"]["stages"]} == {config.MIN_VERIFY_SAMPLES}
    assert any(line.startswith("96 of the default 100 random verification inputs") and "--samples N verifies N" in line
               for line in r["skipped"]), r["skipped"]
    rc, _, _ = _run(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "n"), "--samples", "100", "--no-progress"], capsys)
    r = json.loads((tmp_path / "n" / "report.json").read_text())
    assert rc == 0 and {s["samples"] for s in r["verification"]["stages"]} == {100} and not r["skipped"]
    monkeypatch.setattr(config, "VERIFY_GMAC", 40.0)  # the real budget: a small network keeps all 100
    rc, _, _ = _run(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "s"), "--no-progress"], capsys)
    r = json.loads((tmp_path / "s" / "report.json").read_text())
    assert rc == 0 and {s["samples"] for s in r["verification"]["stages"]} == {100} and not r["skipped"]


def test_a_full_disk_is_one_line_that_names_the_file(tiny_mlp_onnx, tmp_path, capsys, monkeypatch):
    import errno

    import flow.builder.pipeline as pipeline

    def full(model, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pipeline, "save_model", full)
    rc, _, err = _run(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o")], capsys)
    _one_line_error(rc, err, 1, r"the disk is full \(writing .*00_qonnx\.onnx\); free space, or pass --out on another disk")
    assert not (tmp_path / "o" / "report.json").exists()


def test_unknown_target(tiny_mlp_onnx, tmp_path, capsys):
    rc, _, err = _run(["build", str(tiny_mlp_onnx), "--target", "nope", "--out", str(tmp_path)], capsys)
    _one_line_error(rc, err, 2, "unknown target 'nope'")


def test_bad_input_dtype(tiny_mlp_onnx, tmp_path, capsys):
    rc, _, err = _run(["build", str(tiny_mlp_onnx), "--input-dtype", "FLOAT32", "--out", str(tmp_path)], capsys)
    _one_line_error(rc, err, 2, "integer type")


def test_an_input_dtype_wider_than_exact_float32_integers_is_refused_before_out_is_touched(tiny_mlp_onnx, tmp_path, capsys):
    rc, _, err = _run(["build", str(tiny_mlp_onnx), "--input-dtype", "INT99", "--out", str(tmp_path / "o")], capsys)
    _one_line_error(rc, err, 2, "INT99 is wider than 24 bits")
    assert not (tmp_path / "o").exists()
    assert _run(["build", str(tiny_mlp_onnx), "--input-dtype", "UINT24", "--out", str(tmp_path / "o"), "--samples", "0",
                 "--to-step", "set_input_datatype"], capsys)[0] == 0


def test_fps_and_folding_together(tiny_mlp_onnx, tmp_path, capsys):
    f = tmp_path / "f.json"
    f.write_text("{}")
    rc, _, err = _run(["build", str(tiny_mlp_onnx), "--fps", "10", "--folding", str(f), "--out", str(tmp_path)], capsys)
    _one_line_error(rc, err, 2, "not both")


def test_bad_folding_file(tiny_mlp_onnx, tmp_path, capsys):
    f = tmp_path / "f.json"
    f.write_text(json.dumps({"MVAU_hls_0": {"PE": 5}}))
    rc, _, err = _run(["build", str(tiny_mlp_onnx), "--folding", str(f), "--out", str(tmp_path / "o")], capsys)
    _one_line_error(rc, err, 2, "MVAU_hls_0")
    assert not (tmp_path / "o" / "report.json").exists()


def test_bad_recipe_values(tmp_path, capsys):
    p = tmp_path / "r.toml"
    p.write_text("[model]\nweight_bits = 0\n")
    rc, _, err = _run(["run", str(p)], capsys)
    _one_line_error(rc, err, 2, r"model\.weight_bits")
    p.write_text("[train]\nepochs = -3\n")
    rc, _, err = _run(["run", str(p)], capsys)
    _one_line_error(rc, err, 2, r"train\.epochs")


def test_missing_dataset_names_the_fetch_command(tmp_path, capsys):
    p = tmp_path / "r.toml"
    p.write_text('[data]\ndataset = "mnist"\nroot = "nodata"\n')
    rc, _, err = _run(["run", str(p), "--out", str(tmp_path / "o")], capsys)
    _one_line_error(rc, err, 2, "qflow fetch-data")


def test_strict_over_budget_exits_4(tiny_mlp_onnx, tmp_path, capsys):
    board = tmp_path / "tiny.toml"
    board.write_text('display_name = "Tiny"\npart = "xc7z020clg400-1"\nfinn_board = "Pynq-Z1"\nshell = "zynq"\nclock_mhz = 100.0\n'
                     "[resources]\nlut = 100\nff = 200\nbram_18k = 0\nuram = 0\ndsp = 0\n")
    rc, out, err = _run(["build", str(tiny_mlp_onnx), "--target", str(board), "--out", str(tmp_path / "o"), "--strict", "--samples", "0"], capsys)
    _one_line_error(rc, err, 4, "exceeds .* caps: LUT [0-9,]+ > ")
    assert json.loads((tmp_path / "o" / "report.json").read_text())["fits"] is False


def test_console_script_runs_as_a_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "flow", "build", str(tmp_path / "missing.onnx"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("qflow: error:")
    assert "Traceback" not in p.stderr
