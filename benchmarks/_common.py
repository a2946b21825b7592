"""Helpers shared by the benchmark scripts: machine info and atomic JSON results."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from flow.core.fileio import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("torch", "brevitas", "qonnx", "finn-plus", "onnxruntime", "numpy")},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_results(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus machine info atomically as JSON."""
    p = Path(path)
    atomic_write_json(p, {"machine": machine_info(), **payload})
    return p
