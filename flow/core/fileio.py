"""Atomic file writes: a reader sees the old file or the whole new one, never half.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
>>> atomic_write_text(p, "{}")
>>> p.read_text()
'{}'
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync it, then rename over ``path``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


#: Largest JSON config (folding, specialize-layers, ...) qflow reads.
MAX_JSON_BYTES = 16 * 2**20


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Parse a user's JSON file, raising ``error`` with one line naming ``what`` and the problem.

    Bounded: files over :data:`MAX_JSON_BYTES`, text that is not UTF-8, nesting too deep to
    parse, and the non-JSON constants ``NaN``/``Infinity`` are refused.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if not p.is_file():
            raise error(f"{what} {p} is not a file")
        if size > MAX_JSON_BYTES:
            raise error(f"{what} {p} is {size:,} bytes; the limit is {MAX_JSON_BYTES:,}")
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist") from None
    except UnicodeDecodeError as e:
        raise error(f"{what} {p} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 JSON") from None
    except OSError as e:
        raise error(f"{what} {p} cannot be read: {e.strerror or e}") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{what} {p} is nested too deeply to be a config; flatten it") from None
    except ValueError as e:
        raise error(f"{what} {p} is not valid JSON: {' '.join(str(e).split())[:200]}") from None
