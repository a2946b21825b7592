"""Helpers shared by the benchmark scripts: where results go, machine info, atomic JSON results.

Every benchmark writes its JSON to a scratch folder by default (``benchmarks/results/.scratch/``,
ignored by git, or ``--out FILE``) and replaces its committed result in ``benchmarks/results/``
only with ``--update`` (:func:`add_output_args`, :func:`result_path`). A result is stamped with
the machine and date it was measured on, with the load average when the script started and when
it wrote its result, so that a reader can judge how contended a timed run was
(:func:`machine_info`); rewriting a file with the same
numbers keeps the file as it is (:func:`write_results`), and benchmarks that keep rows from an
earlier run stamp each row they measure (:func:`stamp`), so a kept row keeps its own date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from flow.core.fileio import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
#: Where a benchmark writes unless told ``--update`` or ``--out``.
SCRATCH = RESULTS / ".scratch"
#: The 1/5/15-minute load average when the benchmark process started (this module is imported first).
START_LOAD = os.getloadavg()


def load_average() -> dict[str, list[float]]:
    """The 1/5/15-minute load average at the start of this run and now."""
    return {"start": [round(x, 2) for x in START_LOAD], "end": [round(x, 2) for x in os.getloadavg()]}


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("torch", "brevitas", "qonnx", "finn-plus", "onnxruntime", "numpy")},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def stamp(row: dict[str, Any], info: dict[str, Any] | None = None) -> dict[str, Any]:
    """``row`` with ``measured`` (date and platform; this machine's now, or ``info``'s) set: for rows a
    rerun may keep from an earlier run."""
    info = info or machine_info()
    return {**row, "measured": {"date": info["date"], "platform": info["platform"], "cpus": info["cpus"]}}


def kept(row: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A row a rerun keeps from the results file ``old``: dated by its own ``measured``, else by the file's machine."""
    return row if "measured" in row or "machine" not in old else stamp(row, old["machine"])


def add_output_args(ap: argparse.ArgumentParser, name: str) -> None:
    """``--out FILE`` (default ``benchmarks/results/.scratch/NAME``) and ``--update`` (the committed ``benchmarks/results/NAME``)."""
    ap.add_argument("--out", type=Path, default=None, help=f"write the results here (default: {SCRATCH.relative_to(RESULTS.parent.parent)}/{name})")
    ap.add_argument("--update", action="store_true", help=f"replace the committed benchmarks/results/{name}")


def result_path(args: argparse.Namespace, name: str) -> Path:
    """Where this run writes: the committed file with ``--update``, else ``--out`` or the scratch folder."""
    if args.update and args.out is not None:
        raise SystemExit(f"error: --update writes benchmarks/results/{name}; give either --update or --out, not both")
    return RESULTS / name if args.update else (args.out or SCRATCH / name)


def _same(path: Path, payload: dict[str, Any]) -> bool:
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and {k: v for k, v in old.items() if k != "machine"} == json.loads(json.dumps(payload))


def write_results(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus machine info atomically as JSON; a file that already holds exactly this
    payload is left as it is (its machine and date stay those of the run that measured it)."""
    p = Path(path)
    if _same(p, payload):
        return p
    atomic_write_json(p, {"machine": machine_info(), **payload})
    return p
