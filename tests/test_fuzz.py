"""Fuzzing the command line with hostile inputs (Hypothesis); the invariants are in tests/fuzzing.py.

A budgeted run: ``QFLOW_FUZZ_EXAMPLES`` (default 10) inputs per test. ``benchmarks/fuzz.py`` runs
the same tests for longer and records how many inputs were tried and how many broke an invariant.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzzing import (
    MUTATIONS,
    check_run,
    file_payloads,
    mutate_model,
    node_configs,
    recipe_texts,
    run_cli,
    snapshot,
    target_files,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("QFLOW_FUZZ_EXAMPLES", "10"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("QFLOW_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
STATS = os.environ.get("QFLOW_FUZZ_STATS")  # a JSON-lines file the benchmark reads


def _record(test: str, outcome) -> None:
    if STATS:
        with open(STATS, "a") as f:
            f.write(json.dumps({"test": test, "code": outcome.code, "seconds": round(outcome.seconds, 3)}) + "\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_mlp_onnx):
    """A folder with the model, a previous good build in out/, and room for generated inputs."""
    ws = tmp_path_factory.mktemp("fuzz")
    (ws / "model").mkdir()
    shutil.copy(tiny_mlp_onnx, ws / "model" / "tiny.onnx")
    (ws / "outside.bin").write_bytes(b"\0" * 64)
    code = run_cli(["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), "--samples", "4"]).code
    assert code == 0
    names = json.loads((ws / "out" / "folding.json").read_text())
    return ws, [n for n in names if n != "Defaults"]


def _fuzz_once(ws: Path, args: list[str], test: str) -> None:
    out = ws / "out"
    before = snapshot(ws, out)
    outcome = run_cli(args)
    _record(test, outcome)
    target = Path(args[args.index("--out") + 1])
    check_run(outcome, workspace=ws, out=out, before=before, stale_in=target if target.is_relative_to(out) else None)


_COUNTER = itertools.count()


def _inputs(ws: Path) -> Path:
    d = ws / "inputs" / f"{next(_COUNTER):05d}"
    d.mkdir(parents=True)
    return d


OPTION_VALUES = {
    "--fps": st.one_of(st.integers(-10, 10**13).map(str), st.sampled_from(["abc", "1e5", "", "nan"])),
    "--clock-mhz": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["inf", "-1", "0", "1e309", "x"])),
    "--samples": st.one_of(st.integers(-5, 10**9).map(str), st.just("x")),
    "--rtlsim-samples": st.one_of(st.integers(-5, 10**6).map(str), st.just("x")),
    "--stage": st.sampled_from(["estimates", "codegen", "bitfile", "bogus"]),
    "--input-dtype": st.sampled_from(["UINT8", "INT4", "FLOAT32", "BIPOLAR", "bogus", "uint8", ""]),
    "--target": st.sampled_from(["pynq-z1", "zcu104", "nope", "../../etc/passwd", "/etc/passwd.toml", "x" * 300, "/"]),
}


@FUZZ
@given(options=st.dictionaries(st.sampled_from(sorted(OPTION_VALUES)), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: OPTION_VALUES[k] for k in keys})),
    flags=st.lists(st.sampled_from(["--auto", "--strict", "--prefer-rtl", "--standalone-thresholds"]), unique=True, max_size=3),
    out_choice=st.sampled_from(["out", "out", "/", "~", "file"]))
def test_build_options(workspace, options, flags, out_choice):
    ws, _ = workspace
    out = {"out": str(ws / "out"), "/": "/", "~": str(Path.home()), "file": str(ws / "model" / "tiny.onnx")}[out_choice]
    args = ["build", str(ws / "model" / "tiny.onnx"), "--out", out]
    for k, v in options.items():
        args += [k, v]
    _fuzz_once(ws, args + flags + ([] if "--samples" in options else ["--samples", "4"]), "build_options")


@FUZZ
@given(folding=file_payloads(st.just(None)), which=st.sampled_from(["--folding", "--specialize"]), data=st.data())
def test_folding_and_specialize_files(workspace, folding, which, data):
    ws, names = workspace
    payload = folding if folding != b"null" else json.dumps(data.draw(node_configs(names))).encode()
    d = _inputs(ws)
    (d / "config.json").write_bytes(payload)
    _fuzz_once(ws, ["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), which, str(d / "config.json"), "--samples", "4"],
               "node_configs")


@FUZZ
@given(text=target_files())
def test_target_files(workspace, text):
    ws, _ = workspace
    d = _inputs(ws)
    (d / "board.toml").write_text(text)
    _fuzz_once(ws, ["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), "--target", str(d / "board.toml"), "--samples", "4"],
               "target_files")


@FUZZ
@given(text=recipe_texts())
def test_recipes(workspace, text):
    ws, _ = workspace
    d = _inputs(ws)
    (d / "recipe.toml").write_text(text)
    _fuzz_once(ws, ["run", str(d / "recipe.toml"), "--out", str(ws / "out"), "--no-progress"], "recipes")


@FUZZ
@given(kind=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32 - 1))
def test_model_mutations(workspace, kind, seed):
    ws, _ = workspace
    d = _inputs(ws)
    proto = onnx.load(str(ws / "model" / "tiny.onnx"))
    onnx.save(mutate_model(proto, kind, random.Random(seed), d), str(d / "model.onnx"))
    _fuzz_once(ws, ["build", str(d / "model.onnx"), "--out", str(ws / "out"), "--samples", "4"], "model_mutations")


@FUZZ
@given(arr=st.one_of(
    st.builds(lambda n, v: np.full((n, 1, 8, 8), v, dtype=np.float32), st.integers(0, 3), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda n: np.zeros((n, 7), dtype=np.float32), st.integers(1, 3)),
    st.just(np.array(["a", "b"])), st.just(np.zeros(())), st.just(np.zeros((2, 64), dtype=np.int64)),
), raw=st.sampled_from([None, b"", b"\x93NUMPY\x01\x00garbage", b"not npy"]))
def test_verify_inputs(workspace, arr, raw):
    ws, _ = workspace
    d = _inputs(ws)
    if raw is None:
        np.save(d / "x.npy", arr)
    else:
        (d / "x.npy").write_bytes(raw)
    _fuzz_once(ws, ["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), "--verify-inputs", str(d / "x.npy")],
               "verify_inputs")


@FUZZ
@given(args=st.lists(st.one_of(st.sampled_from(["--trials", "--workers", "--epochs", "--heartbeat", "--storage", "--bits",
                                                 "--techniques", "--acc-tolerance", "--max-train-samples"]),
                               st.sampled_from(["-1", "0", "2", "abc", "1e9", "sqlite:///" + "/etc/passwd", "not-a-url", "1,99", "ptq,nope"])),
                     max_size=6))
def test_search_options(workspace, args):
    ws, _ = workspace
    d = _inputs(ws)
    (d / "recipe.toml").write_text('name = "fz"\n[model]\nname = "tfc"\n[data]\ndataset = "digits"\n[train]\nepochs = 0\n')
    _fuzz_once(ws, ["search", str(d / "recipe.toml"), "--out", str(ws / "out" / "search"), "--trials", "1", "--no-progress",
                    "--no-chosen", *args], "search_options")
