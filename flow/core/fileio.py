"""Reading untrusted files and writing results: bounded reads of regular files only, atomic writes.

Reading. Every file qflow is given (model, recipe, folding, target, ``.npy``, manifest, ...)
is opened without blocking, checked to be a regular file (a named pipe, a device or a
folder is refused, so no read waits forever or never ends) and its size is checked against
a bound before a byte is read (:func:`read_regular`). Files inside an output folder are
opened without following a symbolic link (``follow=False``).

Writing. :func:`atomic_write_bytes` writes a fresh temporary file beside the target
(created exclusively, never through a link), fsyncs it and renames it over the target: a
reader sees the old file or the whole new one, never half. A write that lands inside a
claimed output folder (:class:`flow.core.outdir.OutputDir`) is announced to that folder
first (:func:`watch_writes`), which records the content's SHA-256 before the file appears
and refuses to replace a file it cannot prove qflow wrote.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
>>> atomic_write_text(p, "{}")
>>> read_regular(p, "result", ValueError, limit=10)
b'{}'
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
import sys
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: Largest JSON config (folding, specialize-layers, ...) qflow reads.
MAX_JSON_BYTES = 16 * 2**20
_READ_CHUNK = 1 << 20

#: ``hook(target, temp_name, sha256_hex, size)`` called before a write lands under a watched folder.
WriteHook = Callable[[Path, str, str, int], None]
#: Watched folders: real path -> (the path as given, its hook).
_watchers: dict[Path, tuple[Path, WriteHook]] = {}


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def open_regular(path: str | Path, what: str, error: type[Exception], *, limit: int | None = None, follow: bool = True,
                 dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """An open file descriptor of ``path`` and its ``fstat``, or ``error`` (one line) naming ``what``.

    The file is opened non-blocking (a named pipe cannot stall the open), then must be a
    regular file of at most ``limit`` bytes. ``follow=False`` refuses a symbolic link as the
    last component. The caller closes the descriptor.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise error(f"{what} {path} is a symbolic link; qflow reads only regular files there") from None
        raise error(f"{what} {path} cannot be read: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is {_kind(st.st_mode)}; give a regular file")
        if limit is not None and st.st_size > limit:
            raise error(f"{what} {path} is {st.st_size:,} bytes; the limit is {limit:,}")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | Path, what: str, error: type[Exception], *, limit: int, follow: bool = True,
                 dir_fd: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`), at most ``limit`` of them."""
    fd, _ = open_regular(path, what, error, limit=limit, follow=follow, dir_fd=dir_fd)
    chunks, total = [], 0
    try:
        while True:
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise error(f"{what} {path} grew past {limit:,} bytes while it was read")
            chunks.append(chunk)
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def sha256_fd(fd: int) -> str:
    """The SHA-256 (hex) of what remains to be read from ``fd``."""
    h = hashlib.sha256()
    while chunk := os.read(fd, _READ_CHUNK):
        h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- writing


def watch_writes(root: Path, hook: WriteHook | None) -> None:
    """Call ``hook`` before every :func:`atomic_write_bytes` into the folder ``root`` or below it
    (``None`` stops). A write is matched by its path as given and by its real path, so a link
    inside the folder cannot lead a write around the hook."""
    real = Path(os.path.realpath(root))
    if hook is None:
        _watchers.pop(real, None)
    else:
        _watchers[real] = (Path(os.path.abspath(root)), hook)


def _watcher(folder: Path) -> WriteHook | None:
    if not _watchers:
        return None
    given, real = Path(os.path.abspath(folder)), Path(os.path.realpath(folder))
    hits = [r for r, (alias, _) in _watchers.items() if real.is_relative_to(r) or given.is_relative_to(alias) or given.is_relative_to(r)]
    return _watchers[max(hits, key=lambda r: len(r.parts))][1] if hits else None


def temp_name(name: str) -> str:
    """The hidden temporary name a write of ``name`` goes through (``.NAME.<random>.tmp``)."""
    return f".{name}.{secrets.token_hex(6)}.tmp"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a new temp file beside ``path``, fsync it, then rename it over ``path``."""
    atomic_write_chunks(path, lambda: (data,))


def atomic_write_chunks(path: str | Path, chunks: Callable[[], Iterable[bytes]]) -> None:
    """:func:`atomic_write_bytes` of the concatenation of ``chunks()``, never held whole (a watched
    folder's hook gets its hash first, from a pass of its own)."""
    p = Path(path)
    tmp_name = temp_name(p.name)
    hook = _watcher(p.parent)
    if hook is not None:  # it records the content's hash and creates the folder (no links on the way)
        h, size = hashlib.sha256(), 0
        for chunk in chunks():
            h.update(chunk)
            size += len(chunk)
        hook(p, tmp_name, h.hexdigest(), size)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / tmp_name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks():
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- JSON


def _syntax(what: str, kind: str, e: ValueError) -> str:
    """The one line for a JSON or TOML parse error ``e`` of ``what``."""
    if "integer string conversion" in str(e):  # Python's bound on converting long digit strings
        return f"{what} holds an integer of more than {sys.get_int_max_str_digits():,} digits; no setting is that large: fix the number"
    return f"{what} is not valid {kind}: {' '.join(str(e).split())[:200]}"


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes, what: str, error: type[Exception]) -> Any:
    """Parse untrusted JSON bytes: UTF-8, no ``NaN``/``Infinity``, nesting a parser can take; else ``error`` (one line)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 JSON") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise error(f"{what} is nested too deeply to be a config; flatten it") from None
    except ValueError as e:
        raise error(_syntax(what, "JSON", e)) from None


def parse_toml(data: bytes, what: str, error: type[Exception]) -> dict[str, Any]:
    """Parse untrusted TOML bytes: UTF-8, nesting a parser can take, integers Python converts; else ``error`` (one line)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise error(f"{what} is nested too deeply to be a config; flatten it") from None
    except ValueError as e:  # TOMLDecodeError, and an integer too long to convert
        raise error(_syntax(what, "TOML", e)) from None


def read_json(path: str | Path, what: str, error: type[Exception], *, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a user's JSON file, raising ``error`` with one line naming ``what`` and the problem.

    Bounded: only a regular file of at most ``limit`` bytes is read; text that is not UTF-8,
    nesting too deep to parse, and the non-JSON constants ``NaN``/``Infinity`` are refused.
    """
    return parse_json(read_regular(path, what, error, limit=limit), f"{what} {path}", error)
