"""Hostile inputs for qflow's command line, generated with Hypothesis, and the invariants every run must keep.

Used by ``tests/test_fuzz.py`` (a budgeted run in the default suite) and
``benchmarks/fuzz.py`` (a longer campaign that records how many inputs were tried and failed).

Invariants for every input (:func:`check_run`):

* the exit code is 0, 2, 3, 4 or 5;
* a failing run prints one error line (``qflow: error: ...``) and no traceback;
* it ends within :data:`TIME_LIMIT_S`;
* nothing is written outside ``--out`` (the workspace around it is unchanged);
* a run refused as bad input (exit 2) leaves no report in its ``--out`` that qflow's manifest
  vouches for (a report.json there is one qflow cannot prove it wrote, e.g. a user's own).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper

from flow.cli import BITFILE_SKIPPED
from tests.wording import doubled

TIME_LIMIT_S = 120.0
ALLOWED_EXIT = (0, 2, 3, 4, 5)


@dataclass
class Outcome:
    code: int
    err: str
    seconds: float


def run_cli(args: list[str]) -> Outcome:
    """``qflow ARGS`` in this process; an exception escaping ``main`` counts as exit 1 with its traceback."""
    from flow.cli import main

    err, out = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(args)
        except SystemExit as e:  # click's own exit (e.g. --help)
            code = int(e.code or 0)
        except BaseException as e:  # noqa: BLE001 - the invariant under test
            import traceback

            code = 1
            err.write("Traceback (escaped main)\n" + "".join(traceback.format_exception(e)))
    return Outcome(code, err.getvalue(), time.perf_counter() - t0)


def snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under ``root`` except those under ``skip``."""
    seen = {}
    for dirpath, dirs, files in os.walk(root):
        d = Path(dirpath)
        if d == skip or skip in d.parents:
            dirs[:] = []
            continue
        for f in files:
            p = d / f
            try:
                st_ = p.lstat()
            except FileNotFoundError:
                continue
            seen[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return seen


def said_in(args: list[str], limit: int = 1 << 20) -> set[str]:
    """The phrases the user's own input says twice (an argument given twice; twice in a row in the
    arguments or in the text of the small regular files they name): an error line that quotes them
    repeats them, and is no doubled wording."""
    texts = [" ".join(args)]
    for a in args:
        p = Path(a)
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_size <= limit:
                texts.append(p.read_bytes().decode("utf-8", "replace"))
        except OSError:
            continue
    repeated = {a.lower() for a in args if args.count(a) > 1}  # click lists extra arguments side by side
    return repeated | {d.lower() for t in texts for d in doubled(t)}


def check_run(outcome: Outcome, *, workspace: Path, out: Path, before: dict, stale_in: Path | None = None,
              said: set[str] = frozenset()) -> None:
    """Assert the invariants of the module docstring for one run (``said``: :func:`said_in` the run's input)."""
    assert outcome.code in ALLOWED_EXIT, f"exit {outcome.code}: {outcome.err[-2000:]}"
    assert "Traceback" not in outcome.err, outcome.err[-2000:]
    bitfile_skipped = outcome.code == 5 and any(line.startswith(BITFILE_SKIPPED) for line in outcome.err.splitlines())
    if outcome.code != 0 and not bitfile_skipped:  # the one exit that is no error: the summary, then what was skipped
        lines = [line for line in outcome.err.splitlines() if line.startswith("qflow:")]
        assert len(lines) == 1 and lines[0].startswith("qflow: error: "), outcome.err[-2000:]
        assert len(lines[0]) < 2000, f"an error line of {len(lines[0])} characters"
        assert "internal error" not in lines[0], lines[0]
        ours = [d for d in doubled(lines[0]) if d.lower() not in said]
        assert not ours, f"said twice in a row: {ours}: {lines[0]}"
    assert outcome.seconds < TIME_LIMIT_S, f"took {outcome.seconds:.0f} s"
    assert snapshot(workspace, out) == before, "files outside --out changed"
    if outcome.code == 2 and stale_in is not None:
        assert not vouched_report(stale_in), "a refused run left a report.json its manifest vouches for"


def one_error_line(outcome: Outcome, *needles: str) -> str:
    """Assert ``outcome`` is a refusal: exit 2 and one line ``qflow: error: ...`` (not an internal error) holding ``needles``."""
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == 2, outcome.err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("qflow: error: ") and "internal error" not in lines[0], outcome.err[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def vouched_report(out: Path) -> bool:
    """True when ``out/report.json`` is a regular file whose SHA-256 ``out``'s manifest records (qflow's own)."""
    report, manifest = out / "report.json", out / ".qflow-manifest.json"
    if report.is_symlink() or not report.is_file() or manifest.is_symlink() or not manifest.is_file():
        return False
    try:
        hashes = json.loads(manifest.read_text()).get("files", {}).get("report.json", [])
    except (ValueError, AttributeError):
        return False
    return hashlib.sha256(report.read_bytes()).hexdigest() in hashes


# --------------------------------------------------------------------------- value strategies

def json_values(depth: int = 3):
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=12))
    return st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                        max_leaves=12)


ATTRS = ("PE", "SIMD", "ram_style", "mem_mode", "resType", "preferred_impl_style", "parallel_window", "depth_trigger_bram")
ATTR_VALUES = st.one_of(st.integers(-3, 10**6), st.sampled_from(["auto", "block", "distributed", "ultra", "hls", "rtl", "lut",
                                                                  "dsp", "internal_decoupled", "external", "bogus", ""]),
                        st.floats(allow_nan=False), st.none(), st.lists(st.integers(0, 4), max_size=3), st.booleans())


def node_configs(names: list[str]):
    """FINN folding / specialize-layers configs: mostly well-formed, with wrong names, types and values."""
    entry = st.dictionaries(st.sampled_from(ATTRS), ATTR_VALUES, max_size=4)
    name = st.sampled_from(names) | st.text(min_size=1, max_size=20)
    defaults = st.dictionaries(st.sampled_from(ATTRS), st.one_of(
        st.tuples(ATTR_VALUES, st.lists(st.sampled_from(["MVAU_hls", "MVAU_rtl", "Thresholding_rtl", "x"]), max_size=2)).map(list),
        st.tuples(ATTR_VALUES, st.just("all")).map(list), ATTR_VALUES), max_size=2)
    structured = st.builds(lambda d, e: {"Defaults": d, **e}, defaults, st.dictionaries(name, entry, max_size=5))
    return structured | json_values()


def file_payloads(valid: st.SearchStrategy):
    """Bytes of a config file: JSON of ``valid``-ish values, or bytes no parser should choke on."""
    as_json = valid.map(lambda v: json.dumps(v).encode())
    odd = st.sampled_from([
        b"", b"\xff\xfe\x00bad", b"[" * 100_000 + b"]" * 100_000, b'{"a": NaN}', b'{"Defaults": {}, "MVAU_hls_0": {"PE": Infinity}}',
        b"not json at all", b"\x00" * 64,
    ])
    return st.one_of(as_json, as_json, odd)


def toml_text(data: dict) -> str:
    """A TOML rendering of nested dicts of scalars and lists (strings escaped as JSON strings)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        if isinstance(v, (int,)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines, tables = [], []
    for k, v in data.items():
        (tables if isinstance(v, dict) else lines).append((k, v))
    out = [f"{json.dumps(str(k))} = {value(v)}" for k, v in lines]
    for k, v in tables:
        out.append(f"[{json.dumps(str(k))}]")
        out += [f"{json.dumps(str(kk))} = {value(vv)}" for kk, vv in v.items() if not isinstance(vv, dict)]
    return "\n".join(out) + "\n"


NUMBERS = st.one_of(st.integers(-5, 2**70), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.booleans())


def target_files():
    """Board files around a valid one, as (TOML text, valid): unmutated ones are valid."""
    base = {"display_name": "Fuzz board", "part": "xc7z020clg400-1", "finn_board": "Pynq-Z1", "shell": "zynq", "clock_mhz": 100.0,
            "resources": {"lut": 53200, "ff": 106400, "bram_18k": 280, "uram": 0, "dsp": 220}}
    field = st.sampled_from(["display_name", "part", "finn_board", "shell", "clock_mhz", "name", "extra"])
    res_field = st.sampled_from(["lut", "ff", "bram_18k", "uram", "dsp", "gpu"])

    def mutate(changes, res_changes):
        d = json.loads(json.dumps(base))
        d.update(changes)
        d["resources"].update(res_changes)
        return toml_text(d), not changes and not res_changes

    return st.builds(mutate, st.dictionaries(field, NUMBERS | st.text(max_size=30), max_size=2),
                     st.dictionaries(res_field, NUMBERS, max_size=2)) | st.text(max_size=200).map(lambda t: (t, None))


def recipe_texts():
    """Recipes around a tiny one that trains in a second, with wrong names, types, bounds and paths, as
    (TOML text, valid): unmutated ones are valid."""
    base = {"name": "fuzz", "seed": 0, "model": {"name": "tfc", "weight_bits": 2, "act_bits": 2, "options": {"hidden": [16]}},
            "data": {"dataset": "digits"}, "train": {"epochs": 0, "batch_size": 64, "threads": 1},
            "build": {"target": "pynq-z1", "target_fps": 10000, "verify_samples": 8}}
    top = st.dictionaries(st.sampled_from(["name", "seed", "extra"]),
                          st.one_of(NUMBERS, st.sampled_from(["../../x", "/abs/x", "ok-name", "a b", "x" * 200])), max_size=2)
    section = st.sampled_from(["model", "data", "train", "build", "technique"])
    keys = st.sampled_from(["name", "weight_bits", "act_bits", "dataset", "root", "epochs", "lr", "target", "target_fps",
                            "folding_file", "clock_mhz", "verify_samples", "method", "float_epochs", "bogus"])
    inner = st.dictionaries(keys, st.one_of(NUMBERS, st.sampled_from(["digits", "ptq", "qat", "../../etc/passwd", "zcu104", "ternary"])),
                            max_size=2)

    def mutate(t, s, i):
        d = json.loads(json.dumps(base))
        d.update(t)
        d.setdefault(s, {}).update(i) if isinstance(d.get(s, {}), dict) else None
        return toml_text(d), not t and not i

    return st.builds(mutate, top, section, inner)


# --------------------------------------------------------------------------- ONNX mutations

MUTATIONS = ("drop_node", "rename_input", "nan_initializer", "inf_initializer", "edit_input_shape", "odd_domain",
             "external_data", "unknown_op", "drop_output", "zero_dim")


def mutate_model(proto: onnx.ModelProto, kind: str, rnd, folder: Path) -> onnx.ModelProto:
    """A copy of ``proto`` damaged in one way (``kind`` from :data:`MUTATIONS`); ``rnd`` is a random.Random."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    nodes = list(g.node)
    if kind == "drop_node":
        g.node.remove(nodes[rnd.randrange(len(nodes))])
    elif kind == "rename_input":
        n = nodes[rnd.randrange(len(nodes))]
        if n.input:
            n.input[rnd.randrange(len(n.input))] = rnd.choice(["nowhere", "", g.output[0].name])
    elif kind in ("nan_initializer", "inf_initializer"):
        floats = [t for t in g.initializer if t.data_type == TensorProto.FLOAT and numpy_helper.to_array(t).size]
        t = rnd.choice(floats)
        a = numpy_helper.to_array(t).copy()
        a.flat[rnd.randrange(a.size)] = np.nan if kind == "nan_initializer" else -np.inf
        t.CopyFrom(numpy_helper.from_array(a, t.name))
    elif kind in ("edit_input_shape", "zero_dim"):
        dims = g.input[0].type.tensor_type.shape.dim
        d = dims[rnd.randrange(len(dims))]
        choice = 0 if kind == "zero_dim" else rnd.choice([-1, 3, 1 << 30, "sym"])
        d.Clear()
        if choice == "sym":
            d.dim_param = "W"
        else:
            d.dim_value = choice
    elif kind == "odd_domain":
        nodes[rnd.randrange(len(nodes))].domain = rnd.choice(["this", "os", "evil.module", "finn.custom_op.fpgadataflow", "x" * 50])
    elif kind == "external_data":
        t = rnd.choice(list(g.initializer))
        t.ClearField("raw_data")
        del t.float_data[:]
        t.data_location = TensorProto.EXTERNAL
        loc = rnd.choice(["../outside.bin", "/etc/passwd", "missing.bin", "w.bin", "sub/../../x.bin", "link.bin"])
        if loc == "w.bin":
            (folder / "w.bin").write_bytes(os.urandom(rnd.choice([0, 16, 4096])))
        if loc == "link.bin" and not (folder / "link.bin").exists():
            (folder / "link.bin").symlink_to(folder.parent / "outside.bin")
        e = t.external_data.add()
        e.key, e.value = "location", loc
    elif kind == "unknown_op":
        nodes[rnd.randrange(len(nodes))].op_type = rnd.choice(["Sin", "FooBar", "Loop", "If"])
    elif kind == "drop_output":
        del g.output[:]
    return m
