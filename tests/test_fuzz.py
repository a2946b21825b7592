"""Fuzzing the command line with hostile inputs (Hypothesis); the invariants are in tests/fuzzing.py,
the newer families (planted entries in --out, pipes and devices, deep control flow, long chains,
recipe paths) in tests/fuzz_families.py.

Every family mixes valid inputs in, with an oracle: a valid input must succeed (exit 0), so the
campaign proves more than refusal. A budgeted run: ``QFLOW_FUZZ_EXAMPLES`` (default 10) inputs per
test, fewer for the families that run a child process per input. ``benchmarks/fuzz.py`` runs the
same tests for longer and records how many inputs were tried, how many were valid, and how many
broke an invariant.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from fuzz_families import (
    MAX_IF_DEPTH,
    PIPE_KINDS,
    PIPE_SLOTS,
    apply_plants,
    check_plants,
    identity_chain,
    nested_if,
    plants,
    recipe_paths,
    run_cli_process,
    special_file,
    valid_file,
    write_recipe,
)
from fuzzing import (
    MUTATIONS,
    check_run,
    file_payloads,
    mutate_model,
    node_configs,
    recipe_texts,
    run_cli,
    said_in,
    snapshot,
    target_files,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("QFLOW_FUZZ_EXAMPLES", "10"))
#: Inputs per family that starts a child process per input (deep control flow, long chains).
PROCESS_EXAMPLES = int(os.environ.get("QFLOW_FUZZ_PROCESS_EXAMPLES", str(max(1, EXAMPLES // 4))))
_COMMON = dict(deadline=None, derandomize=not os.environ.get("QFLOW_FUZZ_RANDOM"),
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
FUZZ = settings(max_examples=EXAMPLES, **_COMMON)
#: Child-process families: no shrinking (a failing input may take the whole time limit each try).
FUZZ_PROCESS = settings(max_examples=PROCESS_EXAMPLES, phases=[Phase.explicit, Phase.generate], **_COMMON)
STATS = os.environ.get("QFLOW_FUZZ_STATS")  # a JSON-lines file the benchmark reads
BOARD = (Path(__file__).resolve().parents[1] / "hw_targets" / "pynq-z1.toml").read_text()


def _record(test: str, outcome, valid: bool | None = None) -> None:
    if STATS:
        with open(STATS, "a") as f:
            f.write(json.dumps({"test": test, "code": outcome.code, "seconds": round(outcome.seconds, 3), "valid": valid}) + "\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_mlp_onnx):
    """A folder with the model, a previous good build in out/, a folder outside every --out, and room for generated inputs."""
    ws = tmp_path_factory.mktemp("fuzz")
    (ws / "model").mkdir()
    shutil.copy(tiny_mlp_onnx, ws / "model" / "tiny.onnx")
    (ws / "outside.bin").write_bytes(b"\0" * 64)
    (ws / "outside").mkdir()
    (ws / "outside" / "secret.txt").write_text("not qflow's")
    code = run_cli(["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), "--samples", "4"]).code
    assert code == 0
    shutil.copytree(ws / "out", ws / "good")  # a finished build no other test changes: planted families copy it
    names = json.loads((ws / "out" / "folding.json").read_text())
    return ws, [n for n in names if n != "Defaults"]


def _fuzz_once(ws: Path, args: list[str], test: str, *, valid: bool | None = None, out: Path | None = None, runner=run_cli):
    out = out or Path(args[args.index("--out") + 1])
    skip = out if out.is_relative_to(ws) else ws / "out"
    before = snapshot(ws, skip)
    outcome = runner(args)
    _record(test, outcome, valid)
    check_run(outcome, workspace=ws, out=skip, before=before, stale_in=out if out.is_relative_to(ws / "out") or out.is_relative_to(ws / "runs") else None,
              said=said_in(args))
    if valid:
        assert outcome.code == 0, f"a valid input failed: {outcome.err[-2000:]}"
    return outcome


_COUNTER = itertools.count()


def _inputs(ws: Path) -> Path:
    d = ws / "inputs" / f"{next(_COUNTER):05d}"
    d.mkdir(parents=True)
    return d


def _fresh_out(ws: Path) -> Path:
    return ws / "runs" / f"{next(_COUNTER):05d}"


OPTION_VALUES = {
    "--fps": st.one_of(st.integers(-10, 10**13).map(str), st.sampled_from(["abc", "1e5", "", "nan"])),
    "--clock-mhz": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["inf", "-1", "0", "1e309", "x", "5e-324"])),
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
    out_choice=st.sampled_from(["out", "out", "/", "~", "file", "out=", "git"]))
def test_build_options(workspace, options, flags, out_choice):
    ws, _ = workspace
    (ws / "repo" / ".git").mkdir(parents=True, exist_ok=True)
    out = {"out": str(ws / "out"), "out=": str(ws / "out"), "/": "/", "~": str(Path.home()), "file": str(ws / "model" / "tiny.onnx"),
           "git": str(ws / "repo" / ".git" / "o")}[out_choice]
    args = ["build", str(ws / "model" / "tiny.onnx"), *(["--out", out] if out_choice != "out=" else [f"--out={out}"])]
    for k, v in options.items():
        args += [k, v]
    valid = not options and out_choice in ("out", "out=") and "--strict" not in flags
    _fuzz_once(ws, args + flags + ([] if "--samples" in options else ["--samples", "4"]), "build_options", valid=valid, out=Path(out))


@FUZZ
@given(folding=file_payloads(st.just(None)), which=st.sampled_from(["--folding", "--specialize"]), data=st.data())
def test_folding_and_specialize_files(workspace, folding, which, data):
    ws, names = workspace
    payload = folding if folding != b"null" else json.dumps(data.draw(node_configs(names))).encode()
    d = _inputs(ws)
    (d / "config.json").write_bytes(payload)
    _fuzz_once(ws, ["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), which, str(d / "config.json"), "--samples", "4"],
               "node_configs", valid=payload in (b'{"Defaults": {}}', b"{}") or None)


@FUZZ
@given(mutated=target_files())
def test_target_files(workspace, mutated):
    ws, _ = workspace
    text, valid = mutated
    d = _inputs(ws)
    (d / "board.toml").write_text(text)
    _fuzz_once(ws, ["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), "--target", str(d / "board.toml"), "--samples", "4"],
               "target_files", valid=valid)


@FUZZ
@given(mutated=recipe_texts())
def test_recipes(workspace, mutated):
    ws, _ = workspace
    text, valid = mutated
    d = _inputs(ws)
    (d / "recipe.toml").write_text(text)
    _fuzz_once(ws, ["run", str(d / "recipe.toml"), "--out", str(ws / "out"), "--no-progress"], "recipes", valid=valid)


@FUZZ
@given(kind=st.sampled_from(("unchanged", *MUTATIONS)), seed=st.integers(0, 2**32 - 1))
def test_model_mutations(workspace, kind, seed):
    ws, _ = workspace
    d = _inputs(ws)
    proto = onnx.load(str(ws / "model" / "tiny.onnx"))
    onnx.save(proto if kind == "unchanged" else mutate_model(proto, kind, random.Random(seed), d), str(d / "model.onnx"))
    _fuzz_once(ws, ["build", str(d / "model.onnx"), "--out", str(ws / "out"), "--samples", "4"], "model_mutations",
               valid=kind == "unchanged" or None)


@FUZZ
@given(arr=st.one_of(
    st.builds(lambda n, seed: np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8)).astype(np.float32), st.integers(1, 6), st.integers(0, 99)),
    st.builds(lambda n, v: np.full((n, 1, 8, 8), v, dtype=np.float32), st.integers(0, 3), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda n: np.zeros((n, 7), dtype=np.float32), st.integers(1, 3)),
    st.just(np.array(["a", "b"])), st.just(np.zeros(())), st.just(np.zeros((2, 64), dtype=np.int64)),
), raw=st.sampled_from([None, None, b"", b"\x93NUMPY\x01\x00garbage", b"not npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': (((\n"]))
def test_verify_inputs(workspace, arr, raw):
    ws, _ = workspace
    d = _inputs(ws)
    if raw is None:
        np.save(d / "x.npy", arr)
    else:
        (d / "x.npy").write_bytes(raw)
    valid = (raw is None and arr.dtype.kind == "f" and arr.ndim > 1 and len(arr) >= 1 and arr[0].size == 64
             and bool(np.all((arr == np.round(arr)) & (arr >= 0) & (arr <= 255))))  # UINT8 values: the model's input datatype
    _fuzz_once(ws, ["build", str(ws / "model" / "tiny.onnx"), "--out", str(ws / "out"), "--verify-inputs", str(d / "x.npy")],
               "verify_inputs", valid=valid)


@FUZZ
@given(args=st.lists(st.one_of(st.sampled_from(["--trials", "--workers", "--epochs", "--heartbeat", "--storage", "--bits",
                                                 "--techniques", "--acc-tolerance", "--max-train-samples"]),
                               st.sampled_from(["-1", "0", "2", "abc", "1e9", "sqlite:///" + "/etc/passwd", "not-a-url", "1,99", "ptq,nope"])),
                     max_size=6))
def test_search_options(workspace, args):
    ws, _ = workspace
    d = _inputs(ws)
    (d / "recipe.toml").write_text('name = "fz"\n[model]\nname = "tfc"\noptions = { hidden = [16] }\n[data]\ndataset = "digits"\n'
                                   "[train]\nepochs = 0\nthreads = 1\n[build]\nverify_samples = 4\n")
    _fuzz_once(ws, ["search", str(d / "recipe.toml"), "--out", str(ws / "out" / "search"), "--trials", "1", "--no-progress",
                    "--finalists", "0", *args], "search_options", valid=not args)


# --------------------------------------------------------------------------- planted entries in --out


@FUZZ
@given(planted=plants(), codegen=st.booleans())
def test_planted_links_and_manifests(workspace, planted, codegen):
    ws, _ = workspace
    out = _fresh_out(ws)
    shutil.copytree(ws / "good", out, symlinks=True)
    expect, valid = apply_plants(out, ws / "outside", *planted)
    outcome = _fuzz_once(ws, ["build", str(ws / "model" / "tiny.onnx"), "--out", str(out), "--samples", "4",
                              *(["--stage", "codegen"] if codegen else [])], "planted", valid=valid, out=out)
    check_plants(out, expect)
    if valid is False:
        assert outcome.code == 2, f"plants {planted}: exit {outcome.code}"
    if outcome.code == 0:
        manifest = json.loads((out / ".qflow-manifest.json").read_text())
        assert manifest["files"]["report.json"][-1] == hashlib.sha256((out / "report.json").read_bytes()).hexdigest()


# --------------------------------------------------------------------------- pipes and devices as inputs


@FUZZ
@given(slot=st.sampled_from(PIPE_SLOTS), kind=st.sampled_from(("regular", *PIPE_KINDS)))
def test_pipes_and_devices_as_inputs(workspace, slot, kind):
    """Every input slot as a pipe, a device, a folder or a link to a pipe: refused (exit 2); the same slot
    holding a regular file with valid content: the run succeeds."""
    ws, _ = workspace
    d = _inputs(ws)
    model, out = str(ws / "model" / "tiny.onnx"), str(_fresh_out(ws) if kind == "regular" else ws / "out")
    x = d / "x.npy"
    np.save(x, np.zeros((2, 1, 8, 8), dtype=np.float32))
    recipe = 'name = "fz"\n[model]\nname = "tfc"\noptions = { hidden = [16] }\n[data]\ndataset = "{ds}"\n{root}[train]\nepochs = 0\n{build}'
    name = {"dataset-file": "t10k-images-idx3-ubyte", "target": "board.toml"}.get(slot, f"input.{slot}")
    where = d / "data" / "mnist" if slot == "dataset-file" else d
    where.mkdir(parents=True, exist_ok=True)
    special = valid_file(where, slot, name, ws / "model" / "tiny.onnx", BOARD) if kind == "regular" else special_file(where, kind, name)
    (d / "r.toml").write_text(recipe.replace("{ds}", "mnist" if slot == "dataset-file" else "digits")
                              .replace("{root}", 'root = "data"\n' if slot == "dataset-file" else "")
                              .replace("{build}", f'[build]\nfolding_file = "{special.name}"\n' if slot == "recipe-folding" else ""))
    args = {
        "model": ["build", str(special), "--out", out], "recipe": ["run", str(special), "--out", out], "sweep": ["compare", str(special), "--out", out],
        "verify-inputs": ["build", model, "--out", out, "--verify-inputs", str(special)],
        "reference-outputs": ["build", model, "--out", out, "--verify-inputs", str(x), "--reference-outputs", str(special)],
        "folding": ["build", model, "--out", out, "--folding", str(special)], "specialize": ["build", model, "--out", out, "--specialize", str(special)],
        "target": ["build", model, "--out", out, "--target", str(special)],
        "sensitivity-map": ["search", str(d / "r.toml"), "--out", out, "--trials", "1", "--sensitivity", str(special)],
        "recipe-folding": ["run", str(d / "r.toml"), "--out", out], "dataset-file": ["run", str(d / "r.toml"), "--out", out],
    }[slot]
    if kind == "regular":
        args += ["--finalists", "0", "--no-progress"] if slot == "sensitivity-map" else ["--samples", "4"] if args[0] == "build" else []
    outcome = _fuzz_once(ws, args, "pipes_and_devices", valid=kind == "regular" or None)
    if kind != "regular":
        assert outcome.code == 2, outcome.err[-2000:]


# --------------------------------------------------------------------------- deep control flow, long chains (child processes)


@FUZZ_PROCESS
@given(depth=st.one_of(st.just(0), st.integers(1, MAX_IF_DEPTH)))
def test_deep_control_flow(workspace, depth):
    ws, _ = workspace
    d = _inputs(ws)
    onnx.save(nested_if(onnx.load(str(ws / "model" / "tiny.onnx")), depth), str(d / "model.onnx"))
    out = _fresh_out(ws)
    _fuzz_once(ws, ["build", str(d / "model.onnx"), "--out", str(out), "--samples", "4"], "deep_control_flow", valid=depth == 0 or None,
               out=out, runner=run_cli_process)


@FUZZ_PROCESS
@given(length=st.one_of(st.integers(0, 64), st.integers(64, 3000)))
def test_long_chains(workspace, length):
    ws, _ = workspace
    d = _inputs(ws)
    onnx.save(identity_chain(onnx.load(str(ws / "model" / "tiny.onnx")), length), str(d / "model.onnx"))
    out = _fresh_out(ws)
    _fuzz_once(ws, ["build", str(d / "model.onnx"), "--out", str(out), "--samples", "4"], "long_chains", valid=True, out=out,
               runner=run_cli_process)


# --------------------------------------------------------------------------- recipe paths


@FUZZ
@given(choices=recipe_paths())
def test_recipe_paths(workspace, choices):
    ws, _ = workspace
    d = _inputs(ws)
    outside = ws / "outside" / d.name
    outside.mkdir()
    recipe, valid = write_recipe(d, outside, BOARD, choices)
    outcome = _fuzz_once(ws, ["run", str(recipe), "--out", str(_fresh_out(ws)), "--no-progress"], "recipe_paths", valid=valid)
    if not valid:
        assert outcome.code == 2, outcome.err[-2000:]
