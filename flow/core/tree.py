"""Walking an untrusted folder tree without following links: every step is relative to an open
folder descriptor and refuses a symbolic link (``O_NOFOLLOW``), so a link planted anywhere in
the tree cannot turn a read, a removal or a write into one outside it.

>>> import os, tempfile
>>> root = tempfile.mkdtemp()
>>> fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
>>> sub = open_folder(fd, ("a", "b"), create=True); os.close(sub)
>>> os.symlink("/etc", os.path.join(root, "link"))
>>> open_folder(fd, ("link",))
Traceback (most recent call last):
...
flow.core.tree.UnsafeEntry: link is a symbolic link
>>> os.close(fd)
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from flow.core.errors import ConfigError
from flow.core.fileio import sha256_fd, temp_name

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeEntry(Exception):
    """An entry of the tree that qflow will not go through or replace (a link, a file where a folder belongs, ...)."""

    def __init__(self, rel: str, what: str):
        super().__init__(f"{rel} is {what}")
        self.rel, self.what = rel, what


def kind(mode: int) -> str:
    """``file``, ``dir``, ``link`` or ``other`` for a mode from ``lstat``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "link" if stat.S_ISLNK(mode) else "other"


def describe(mode: int) -> str:
    return {"link": "a symbolic link", "dir": "a folder", "file": "a file"}.get(kind(mode), "a pipe, socket or device")


def open_folder(root_fd: int, parts: Sequence[str], *, create: bool = False) -> int:
    """A descriptor of the folder ``root/parts...`` reached without links; created when ``create``.

    Raises :class:`UnsafeEntry` when a component is a link or not a folder, FileNotFoundError
    when one is missing and ``create`` is false.
    """
    fd = os.dup(root_fd)
    for i, part in enumerate(parts):
        try:
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise UnsafeEntry("/".join(parts[: i + 1]), _what_is(root_fd, parts[: i + 1])) from None
            raise
        os.close(fd)
        fd = nfd
    return fd


def _what_is(root_fd: int, parts: Sequence[str]) -> str:
    try:
        parent = open_folder(root_fd, parts[:-1])
    except (OSError, UnsafeEntry):
        return "not a folder"
    try:
        return describe(os.lstat(parts[-1], dir_fd=parent).st_mode)
    except OSError:
        return "not a folder"
    finally:
        os.close(parent)


def lstat_at(root_fd: int, parts: Sequence[str]) -> os.stat_result | None:
    """``lstat`` of ``root/parts...`` reached without links, or None when it (or its folder) is missing."""
    try:
        parent = open_folder(root_fd, parts[:-1])
    except FileNotFoundError:
        return None
    try:
        return os.lstat(parts[-1], dir_fd=parent)
    except FileNotFoundError:
        return None
    finally:
        os.close(parent)


def digest_at(root_fd: int, parts: Sequence[str]) -> str | None:
    """SHA-256 of the regular, singly linked file ``root/parts...`` (no links followed), else None."""
    try:
        parent = open_folder(root_fd, parts[:-1])
    except (OSError, UnsafeEntry):
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
    except OSError:
        return None
    finally:
        os.close(parent)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return None
        return sha256_fd(fd)
    finally:
        os.close(fd)


def remove_file(root_fd: int, parts: Sequence[str]) -> None:
    """Unlink ``root/parts...`` (its folder reached without links); a missing file is fine."""
    try:
        parent = open_folder(root_fd, parts[:-1])
    except (FileNotFoundError, UnsafeEntry):
        return
    try:
        os.unlink(parts[-1], dir_fd=parent)
    except FileNotFoundError:
        pass
    finally:
        os.close(parent)


def prune(root_fd: int, parts: Sequence[str]) -> None:
    """Remove the folder ``root/parts...`` and then its parents while they are empty (never ``root``)."""
    for n in range(len(parts), 0, -1):
        try:
            parent = open_folder(root_fd, parts[: n - 1])
        except (OSError, UnsafeEntry):
            return
        try:
            os.rmdir(parts[n - 1], dir_fd=parent)
        except OSError:
            return
        finally:
            os.close(parent)


def walk(root_fd: int, parts: Sequence[str]) -> Iterator[tuple[tuple[str, ...], os.stat_result]]:
    """Every entry below the folder ``root/parts...`` (not the folder itself), as (parts, lstat); links are not followed."""
    todo = [tuple(parts)]
    while todo:
        folder = todo.pop()
        try:
            fd = open_folder(root_fd, folder)
        except (OSError, UnsafeEntry):
            continue
        try:
            with os.scandir(fd) as it:
                entries = sorted((e.name, e.stat(follow_symlinks=False)) for e in it)
        finally:
            os.close(fd)
        for name, st in entries:
            yield (*folder, name), st
        todo.extend((*folder, name) for name, st in reversed(entries) if stat.S_ISDIR(st.st_mode))


def write_at(dir_fd: int, name: str, data: bytes) -> None:
    """Write ``data`` to ``name`` in the open folder ``dir_fd``: a new temp file, fsynced, renamed over ``name``."""
    tmp = temp_name(name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


def inner_folder(root: str | Path, rel: str, *, create: bool = True, option: str = "--out") -> Path:
    """The folder ``root/rel``, e.g. for a nested run's own :class:`OutputDir`: created when ``create``
    (``root`` too); no link and no file may stand on the way from ``root`` to it (ConfigError, one line)."""
    root = Path(root)
    parts = plain_parts(rel)
    if parts is None:
        raise ConfigError(f"{option} {root}: {rel!r} is not a path inside the folder")
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{option} {root} cannot be created: {e.strerror or e}") from None
    elif not root.is_dir():
        return root / rel
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.close(open_folder(fd, parts, create=create))
    except FileNotFoundError:
        pass
    except UnsafeEntry as e:
        raise ConfigError(f"{option} {root}: {e.rel} is {e.what}; qflow writes only into real folders inside it: move it away") from None
    except OSError as e:
        raise ConfigError(f"{option} {root}: {rel} cannot be created: {e.strerror or e}") from None
    finally:
        os.close(fd)
    return root / rel


def plain_parts(rel: str) -> tuple[str, ...] | None:
    """The components of a plain relative path (no ``..``, ``.``, empty or absolute parts), else None."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith("/") or len(rel) > 4096:
        return None
    parts = tuple(rel.split("/"))
    return None if any(p in ("", ".", "..") for p in parts) else parts
