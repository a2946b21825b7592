"""More families of hostile inputs for the fuzz campaign (``tests/test_fuzz.py``), each with an oracle
that says which inputs are valid, so the campaign proves that valid inputs succeed, not only that
bad ones are refused:

* **planted** entries in ``--out`` (links to folders and files outside, hard links, pipes, folders
  where files belong, users' files) and forged manifests;
* **pipes and devices** in place of every input file;
* **deep control flow**: nested ``If`` subgraphs in front of a network;
* **long chains** of ``Identity`` nodes in front of a network;
* **recipe paths**: relative, climbing, absolute and linked paths in a recipe's path fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from fuzzing import TIME_LIMIT_S, Outcome
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

MANIFEST = ".qflow-manifest.json"

# --------------------------------------------------------------------------- planted entries in --out

#: Paths a plant may take: qflow's own outputs, its folders, and names it never writes.
PLANT_PATHS = ("finn", "codegen", "finn_build", "checkpoints", "checkpoints/00_qonnx.onnx", "checkpoints/03_streamline.onnx", "report.json",
               "report.md", "finn.log", "design.onnx", "folding.json", "finn/report", "codegen/notes.txt", "thesis.tex", MANIFEST)
PLANT_KINDS = ("link_dir", "link_file", "link_dangling", "hard_link", "fifo", "folder", "user_file")
#: Plants a build must go through: names qflow never writes, and real folders where qflow keeps folders.
_NEVER_WRITTEN = ("thesis.tex", "codegen/notes.txt")
_FOLDERS = ("finn", "codegen", "finn_build", "checkpoints", "finn/report")
FORGED_NAMES = ("thesis.tex", "notes.md", "report.json", "checkpoints/00_qonnx.onnx", "../outside/secret.txt", "/etc/hostname", "finn/x")
_QFLOW_NAMES = ("report.json", "checkpoints/00_qonnx.onnx", "finn/x")


def plants():
    """A few (path, kind) plants (no two on one path) and a forged manifest (name -> 'right' or 'wrong' hash)."""
    plant = st.tuples(st.sampled_from(PLANT_PATHS), st.sampled_from(PLANT_KINDS))
    forged = st.dictionaries(st.sampled_from(FORGED_NAMES), st.sampled_from(["right", "wrong"]), max_size=3)
    return st.tuples(st.lists(plant, max_size=3, unique_by=lambda p: p[0]), forged)


def harmless(path: str, kind: str) -> bool | None:
    """True when a build must succeed with this plant in its folder, False when it must stop, None when
    either is right: a regular file at the manifest's name proves nothing, so the run stops if the folder
    holds qflow's results, and otherwise replaces it (the name is qflow's record)."""
    if path == MANIFEST and kind in ("user_file", "hard_link"):
        return None
    return path in _NEVER_WRITTEN or (path in _FOLDERS and kind == "folder")


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file() or (p.exists() and not p.is_dir()):
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)


def _and(a: bool | None, b: bool | None) -> bool | None:
    """Three-valued and: False wins, then None (either outcome is right)."""
    return False if False in (a, b) else None if None in (a, b) else True


def apply_plants(out: Path, outside: Path, planted: list[tuple[str, str]], forged: dict[str, str]) -> tuple[dict[str, bytes | str], bool | None]:
    """Plant into ``out`` (a copy of a finished build); return what each plant must still be afterwards, and
    whether the build must succeed (True), must stop (False) or may do either (None)."""
    expect: dict[str, bytes | str] = {}
    kinds: dict[str, str] = {}
    ok: bool | None = True
    for path, kind in planted:
        p = out / path
        if not all(q.is_dir() and not q.is_symlink() for q in [out, *[out / a for a in Path(path).parents if str(a) != "."]][1:]):
            continue  # an earlier plant replaced a folder on the way
        _remove(p)
        for earlier in [k for k in kinds if k.startswith(f"{path}/")]:  # planted inside what this plant replaces
            expect.pop(earlier, None)
            del kinds[earlier]
        kinds[path] = kind
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "link_dir":
            p.symlink_to(outside)
        elif kind == "link_file":
            p.symlink_to(outside / "secret.txt")
        elif kind == "link_dangling":
            p.symlink_to(outside / "nowhere")
        elif kind == "hard_link":
            os.link(outside / "secret.txt", p)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "folder":
            p.mkdir()
        else:
            p.write_bytes(b"a user's own file: " + path.encode())
        if harmless(path, kind) is not None:  # a regular file at the manifest's name may be replaced
            expect[path] = f"-> {os.readlink(p)}" if p.is_symlink() else "fifo" if kind == "fifo" else "dir" if kind == "folder" else p.read_bytes()
    for path, kind in kinds.items():
        ok = _and(ok, harmless(path, kind))
    manifest = out / MANIFEST
    if forged and MANIFEST not in dict(planted) and manifest.is_file() and not manifest.is_symlink():
        data = json.loads(manifest.read_text())
        for name, which in forged.items():
            target = out / name if not name.startswith(("/", "..")) else None
            right = hashlib.sha256(target.read_bytes()).hexdigest() if target and target.is_file() and not target.is_symlink() else "0" * 64
            data["files"][name] = [right if which == "right" else "f" * 64]
            # a wrong hash makes a file qflow wrote unprovable: the build must stop on it
            ok = _and(ok, not (which == "wrong" and name in _QFLOW_NAMES and target is not None and target.exists()))
        manifest.write_text(json.dumps(data))
    return expect, ok


def check_plants(out: Path, expect: dict[str, bytes | str]) -> None:
    """Every plant is still there, as it was: qflow removes or replaces nothing it did not write."""
    for path, was in expect.items():
        p = out / path
        now = f"-> {os.readlink(p)}" if p.is_symlink() else "fifo" if p.is_fifo() else "dir" if p.is_dir() else p.read_bytes() if p.exists() else None
        if was == "dir":
            assert now == "dir" or path in _FOLDERS, f"{path} was a folder and is now {now!r}"
        else:
            assert now == was, f"{path} changed: {was!r} -> {now!r}"


# --------------------------------------------------------------------------- pipes and devices

PIPE_SLOTS = ("model", "recipe", "sweep", "verify-inputs", "reference-outputs", "folding", "specialize", "target", "sensitivity-map",
              "recipe-folding", "dataset-file")
PIPE_KINDS = ("fifo", "/dev/zero", "/dev/urandom", "/dev/null", "folder", "link_to_fifo")


def special_file(folder: Path, kind: str, name: str) -> Path:
    """A path in ``folder`` named ``name`` that is (or leads to) a pipe, a device or a folder."""
    p = folder / name
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "folder":
        p.mkdir()
    elif kind == "link_to_fifo":
        os.mkfifo(folder / f".{name}.fifo")
        p.symlink_to(folder / f".{name}.fifo")
    else:
        p.symlink_to(kind)
    return p


# --------------------------------------------------------------------------- deep control flow, long chains


#: Deepest nesting protobuf can still parse (its recursion limit is 100 messages; an ``If`` level takes three).
MAX_IF_DEPTH = 30


def nested_if(proto: onnx.ModelProto, depth: int) -> onnx.ModelProto:
    """``proto`` with ``x + If(...)`` in front: ``depth`` nested ``If`` nodes (constant condition), whose
    innermost branch, like every else branch, is a constant zero tensor of the input's shape."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    if depth == 0:
        return m
    x = g.input[0].name
    shape = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    zeros = numpy_helper.from_array(np.zeros(shape, np.float32), "zeros")
    g.initializer.append(numpy_helper.from_array(np.array(True), "fuzz_cond"))

    def const(name: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("Constant", [], [f"{name}_out"], name=f"{name}_c", value=zeros)], name, [],
                                 [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, shape)])

    def branch(level: int, name: str) -> onnx.GraphProto:
        if level == depth:
            return const(name)
        node = helper.make_node("If", ["fuzz_cond"], [f"{name}_out"], name=f"{name}_if", then_branch=branch(level + 1, f"{name}_t"),
                                else_branch=const(f"{name}_e"))
        return helper.make_graph([node], name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, shape)])

    for node in g.node:
        node.input[:] = ["fuzz_y" if t == x else t for t in node.input]
    top = helper.make_node("If", ["fuzz_cond"], ["fuzz_zero"], name="fuzz_if", then_branch=branch(1, "b"), else_branch=const("e"))
    add = helper.make_node("Add", [x, "fuzz_zero"], ["fuzz_y"], name="fuzz_add")
    g.node.insert(0, add)
    g.node.insert(0, top)
    return m


def identity_chain(proto: onnx.ModelProto, n: int) -> onnx.ModelProto:
    """``proto`` with ``n`` ``Identity`` nodes in a chain between its input and its first layer."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    x = g.input[0].name
    for node in g.node:
        node.input[:] = [f"fuzz_chain_{n - 1}" if t == x and n else t for t in node.input]
    chain = [helper.make_node("Identity", [x if i == 0 else f"fuzz_chain_{i - 1}"], [f"fuzz_chain_{i}"], name=f"fuzz_chain_{i}") for i in range(n)]
    for i, node in enumerate(chain):
        g.node.insert(i, node)
    return m


def run_cli_process(args: list[str], timeout: float = TIME_LIMIT_S) -> Outcome:
    """``qflow ARGS`` in a child process, killed after ``timeout`` s (a hang inside native code cannot be
    interrupted in-process); a killed run counts as exit -9 with "timed out" on stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "flow", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        _, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        code, err = -9, f"timed out after {timeout:.0f} s"
    return Outcome(code, err, time.perf_counter() - t0)


# --------------------------------------------------------------------------- recipe paths

PATH_FIELDS = ("folding_file", "specialize_file", "target", "data.root")
PATH_CHOICES = ("absent", "inside", "inside_sub", "missing", "climbing", "climbing_sub", "absolute_inside", "absolute_outside", "link_out")


def recipe_paths():
    return st.dictionaries(st.sampled_from(PATH_FIELDS), st.sampled_from(PATH_CHOICES), max_size=4)


def write_recipe(folder: Path, outside: Path, board: str, choices: dict[str, str]) -> tuple[Path, bool]:
    """A recipe in ``folder`` whose path fields are set by ``choices``; and whether a run of it must succeed."""
    (folder / "sub").mkdir(exist_ok=True)
    files = {"folding_file": ("fold.json", '{"Defaults": {}}'), "specialize_file": ("spec.json", '{"Defaults": {}}'),
             "target": ("board.toml", board), "data.root": ("data", None)}
    if not (folder / "out_link").exists():
        (folder / "out_link").symlink_to(outside)
    build, data, ok = {}, {}, True
    for field, choice in choices.items():
        name, content = files[field]
        for where in (folder, folder / "sub", outside):
            if content is None:
                (where / name).mkdir(exist_ok=True)
            else:
                (where / name).write_text(content)
        climb = os.path.relpath(outside / name, folder)
        value = {"absent": None, "inside": name, "inside_sub": f"sub/{name}", "missing": f"none_{name}", "climbing": climb,
                 "climbing_sub": f"sub/../{climb}", "absolute_inside": str(folder / name),
                 "absolute_outside": str(outside / name), "link_out": f"out_link/{name}"}[choice]
        if value is None:
            continue
        (data if field == "data.root" else build)[field.removeprefix("data.")] = value
        ok = ok and (choice in ("inside", "inside_sub") or (choice == "missing" and field == "data.root"))
    lines = ['name = "paths"', "[model]", 'name = "tfc"', "options = { hidden = [16] }", "[data]", 'dataset = "digits"',
             *[f"{k} = {json.dumps(v)}" for k, v in data.items()], "[train]", "epochs = 0", "threads = 1", "[build]", "verify_samples = 4",
             *[f"{k} = {json.dumps(v)}" for k, v in build.items()]]
    path = folder / "recipe.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, ok


_RECIPE = 'name = "fz"\n[model]\nname = "tfc"\noptions = { hidden = [16] }\n[data]\ndataset = "digits"\n[train]\nepochs = 0\nthreads = 1\n[build]\nverify_samples = 4\n'
_SWEEP = ('[defaults]\ndata = { dataset = "digits" }\ntrain = { epochs = 0, threads = 1 }\nbuild = { verify_samples = 4 }\n'
          '[[rows]]\nname = "a"\nmodel = { name = "tfc", options = { hidden = [16] } }\n')


def valid_file(folder: Path, slot: str, name: str, model: Path, board: str) -> Path:
    """A regular file in ``folder`` named ``name`` whose content is valid for ``slot`` (see :data:`PIPE_SLOTS`):
    the valid input of the pipes-and-devices family."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    from flow.nn.data import write_idx

    p = folder / name
    if slot == "model":
        shutil.copy(model, p)
    elif slot in ("verify-inputs", "reference-outputs"):
        x = np.zeros((2, 1, 8, 8), dtype=np.float32)
        if slot == "reference-outputs":  # the model's own outputs on the inputs the test passes with --verify-inputs
            m = ModelWrapper(str(model))
            i, o = m.graph.input[0].name, m.graph.output[0].name
            x = np.concatenate([execute_onnx(m, {i: x[k:k + 1]})[o] for k in range(len(x))])
        with open(p, "wb") as f:  # np.save(path) would add ".npy" to the name
            np.save(f, x)
    elif slot == "dataset-file":
        rng = np.random.default_rng(0)
        for split, n in (("train", 64), ("t10k", 32)):
            write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    else:
        p.write_text({"recipe": _RECIPE, "sweep": _SWEEP, "target": board, "sensitivity-map": '{"min_precision": {}}'}.get(slot, '{"Defaults": {}}'))
    return p
