"""Verilator models, built once and cached outside ``--out``; a damaged cache entry is rebuilt.

A model is keyed by a hash of everything that determines the executable: every source text
(after the finn-rtllib fixes), the stitched top, the testbench, the Verilator fingerprint
(version and a hash of the binary) and the flags. Memory files (weights, thresholds) are
read at run time and are not part of the key, so one model serves any weights.

The cache lives in ``$QFLOW_RTLSIM_CACHE``, else ``$XDG_CACHE_HOME/qflow/rtlsim``, else
``~/.cache/qflow/rtlsim``. Its contents are untrusted like ``--out``: an executable found
there is run only if the folder and the entry belong to this user and nobody else can write
them, and the entry's record (``entry.json``: key, Verilator fingerprint, size and SHA-256
of the executable) matches the file. Anything else (a partial or corrupted entry, a key or
fingerprint that does not match, a symlink) is removed and the model rebuilt. A cache folder
that fails the ownership checks is not used at all: models are then built in a private
temporary folder for this process. A new entry is assembled in a temporary folder and
renamed into place, so a killed build never leaves a half entry under its key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flow.sim.rtlsim.harness import testbench
from flow.sim.rtlsim.stitch import Design
from flow.sim.rtlsim.toolchain import Verilator, find_verilator

EXE = "Vqf_top"
ENTRY = "entry.json"
BUILD_TIMEOUT_S = 3600
_private_root: Path | None = None


class BuildError(RuntimeError):
    """Verilator or the C++ compiler rejected a design; the message ends with their output."""


@dataclass(frozen=True)
class Model:
    """A built model: its executable and key; ``verilate_seconds`` is this call's build time (0 from the cache)."""

    exe: Path
    key: str
    verilate_seconds: float
    cached: bool
    build_seconds: float  # what building it took when it was built


def default_cache_dir() -> Path:
    """Where models are cached (see the module docstring)."""
    if os.environ.get("QFLOW_RTLSIM_CACHE"):
        return Path(os.environ["QFLOW_RTLSIM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qflow" / "rtlsim"


def _private(path: Path) -> bool:
    """True for a real folder or file (no symlink) owned by this user that no one else can write."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return not stat.S_ISLNK(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder, created private (0700); a private temporary one if it fails the ownership checks."""
    global _private_root
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        pass
    if _private(root):
        return root
    if _private_root is None or not _private_root.is_dir():
        _private_root = Path(tempfile.mkdtemp(prefix="qflow-rtlsim-"))
    return _private_root


def _ordered(design: Design):
    """Packages first (``*_pkg.sv``): modules import them, and Verilator reads files in order."""
    return sorted(design.sources, key=lambda s: not s.name.endswith("_pkg.sv"))


def cache_key(design: Design, verilator: Verilator | None = None) -> str:
    """Hash of everything that determines the executable (not the memory files' contents)."""
    v = verilator or find_verilator()
    h = hashlib.sha256()
    for part in (v.fingerprint, " ".join(v.build_args()), design.top, testbench(design)):
        h.update(part.encode() + b"\0")
    for s in _ordered(design):
        h.update(s.name.encode() + b"\0" + s.text.encode() + b"\0")
    return h.hexdigest()[:32]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def lookup(entry: Path, key: str, verilator: Verilator) -> dict | None:
    """The record of a sound cache entry for ``key``, or None (missing, foreign, partial or corrupted)."""
    exe, rec = entry / EXE, entry / ENTRY
    if not (_private(entry) and _private(exe) and _private(rec)):
        return None
    try:
        if rec.stat().st_size > 4096:
            return None
        data = json.loads(rec.read_text())
        ok = (isinstance(data, dict) and data.get("key") == key and data.get("verilator") == verilator.fingerprint
              and data.get("size") == exe.stat().st_size and data.get("sha256") == _sha256(exe))
    except (OSError, ValueError, RecursionError):
        return None
    return data if ok else None


def _discard(entry: Path) -> None:
    if entry.is_symlink() or entry.is_file():
        entry.unlink()
    elif entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)


def _write_sources(design: Design, folder: Path) -> list[str]:
    files = []
    for s in _ordered(design):
        (folder / s.name).write_text(s.text)
        files.append(str(folder / s.name))
    (folder / "qf_top.sv").write_text(design.top)
    return files + [str(folder / "qf_top.sv")]


def build(design: Design, cache_dir: str | Path | None = None) -> Model:
    """The model of ``design``: from the cache when a sound entry exists, else verilated and cached."""
    v = find_verilator()
    root = cache_root(cache_dir)
    key = cache_key(design, v)
    entry = root / key
    rec = lookup(entry, key, v)
    if rec is not None:
        return Model(entry / EXE, key, 0.0, True, float(rec.get("build_seconds", 0.0)))
    if entry.exists() or entry.is_symlink():
        _discard(entry)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
    try:
        src = work / "src"
        src.mkdir()
        files = _write_sources(design, src)
        (src / "tb.cpp").write_text(testbench(design))
        cmd = [str(v.binary), *v.build_args(), "--top-module", "qf_top", "--Mdir", str(work / "obj"), "-o", EXE, *files, str(src / "tb.cpp")]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=work, env=v.env(), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BuildError(f"verilation took longer than {BUILD_TIMEOUT_S} s") from None
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not (work / "obj" / EXE).is_file():
            raise BuildError(f"verilation failed (exit {proc.returncode}): " + (proc.stdout + proc.stderr)[-3000:])
        stage = work / "entry"
        stage.mkdir(mode=0o700)
        shutil.copy2(work / "obj" / EXE, stage / EXE)
        os.chmod(stage / EXE, 0o700)
        record = {"key": key, "verilator": v.fingerprint, "size": (stage / EXE).stat().st_size,
                  "sha256": _sha256(stage / EXE), "build_seconds": round(seconds, 2)}
        (stage / ENTRY).write_text(json.dumps(record))
        os.chmod(stage / ENTRY, 0o600)
        try:
            stage.rename(entry)
        except OSError:  # another process cached the same key meanwhile
            if lookup(entry, key, v) is None:
                raise BuildError(f"cannot store the model in {entry}") from None
        return Model(entry / EXE, key, seconds, False, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def lint(design: Design, timeout: float = 600) -> tuple[bool, str]:
    """Elaborate ``design`` with ``verilator --lint-only`` (no C++): (passed, Verilator's messages)."""
    v = find_verilator()
    with tempfile.TemporaryDirectory(prefix="qflow-lint-") as tmp:
        files = _write_sources(design, Path(tmp))
        cmd = [str(v.binary), *v.lint_args(), "--top-module", "qf_top", *files]
        proc = subprocess.run(cmd, cwd=tmp, env=v.env(), capture_output=True, text=True, timeout=timeout)
    return proc.returncode == 0, proc.stdout + proc.stderr
