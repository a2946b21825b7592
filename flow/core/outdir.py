"""Output folders: qflow writes only inside the folder it is given, and replaces or removes only
files it can prove it wrote.

The previous contents of an output folder are untrusted: a user's own files, links planted
anywhere, hard links, a forged manifest. The rules:

* **Proof.** qflow records the SHA-256 of every file it writes in ``.qflow-manifest.json``
  *before* the file appears (:func:`flow.core.fileio.atomic_write_bytes` announces each write;
  files other tools write into qflow's folders are hashed after each step). A file is
  qflow's only when it is a regular file with one link whose content still matches a hash
  recorded for its path, and its path is one this kind of run writes (``results``, or a file
  under ``trees``/``scratch``). A manifest is only data: listing a file proves nothing unless
  the file's bytes match, and a name qflow never writes (``thesis.tex``) is never removed.
* **Claiming** (:meth:`OutputDir.claim`, after every input was checked): the folder may not be
  a place :func:`flow.core.places.refuse_place` refuses; the files of the previous run that are
  proven are removed; a result name, a folder qflow fills, or anything on the way to them that
  is not proven (a user's file, a link, a pipe, a file with other hard links) stops the run
  with one line, and is left as it is. :meth:`OutputDir.check` runs the same inspection
  without changing anything.
* **Writing.** Every step into the folder is taken without following links (:mod:`flow.core.tree`);
  a file is written to a fresh temporary name and renamed over its target, and a target that
  exists must be proven. ``scratch`` folders (FINN's build and code-generation folders) are
  filled under fresh random names, so a file there qflow did not write is left alone;
  in ``trees`` (FINN's output folder, whose names are fixed) such a file stops the run.
* **Failing.** A run refused before claiming calls :meth:`OutputDir.retire`: the previous
  run's proven files are removed, so no earlier result looks like this run's.

>>> import tempfile, pathlib
>>> from flow.core.fileio import atomic_write_text
>>> out = OutputDir(pathlib.Path(tempfile.mkdtemp()) / "run", results=("report.json",))
>>> out.claim()
>>> (out.path / "notes.txt").write_text("mine")
4
>>> atomic_write_text(out.path / "report.json", "{}")
>>> out.close()
>>> OutputDir(out.path, results=("report.json",)).claim()
>>> sorted(p.name for p in out.path.iterdir())
['.qflow-manifest.json', 'notes.txt']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from flow.core import tree
from flow.core.errors import ConfigError
from flow.core.fileio import parse_json, read_regular, watch_writes
from flow.core.places import refuse_place
from flow.core.tree import inner_folder
from flow.core.tree import plain_parts as _parts

__all__ = ["MANIFEST", "OutputDir", "inner_folder", "refuse_place", "retire_results"]

MANIFEST = ".qflow-manifest.json"
MANIFEST_VERSION = 2
MAX_MANIFEST_BYTES = 64 * 2**20
_TEMP = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.tmp$")
_SHOWN = 4


def retire_results(path: str | Path, *, results: Iterable[str] = (), trees: Iterable[str] = (), scratch: Iterable[str] = ()) -> None:
    """Remove the proven files of the previous run in ``path``, if it is a place qflow may write (else nothing)."""
    try:
        OutputDir(path, results=results, trees=trees, scratch=scratch).retire()
    except (ConfigError, OSError):
        pass


class OutputDir:
    """A run's output folder (see the module docstring).

    ``results``: files (relative paths) the run writes; ``trees``: folders other tools fill
    under fixed names; ``scratch``: folders other tools fill under fresh random names.
    """

    def __init__(self, path: str | Path, *, results: Iterable[str] = (), trees: Iterable[str] = (), scratch: Iterable[str] = (),
                 option: str = "--out"):
        self.path = refuse_place(path, option)
        self.option = option
        self.results = tuple(results)
        self.trees = tuple(trees)
        self.scratch = tuple(scratch)
        self._files: dict[str, list[str]] = {}  # path -> recorded SHA-256s (the last is the newest)
        self._temp: str | None = None  # the temporary file a write is going through
        self._seen: dict[str, tuple[int, int]] = {}  # files hashed: path -> (size, mtime_ns)
        self._sizes: dict[str, int] = {}  # size of each file written through the write hook
        self._before: set[str] = set()
        self._real: Path | None = None
        self._ident: tuple[int, int] | None = None

    # -- which names are qflow's ---------------------------------------------------------
    def _writes(self, rel: str) -> bool:
        """True when a run of this kind writes ``rel`` (so a proven file there may be replaced or removed)."""
        return rel in self.results or any(rel.startswith(f"{t}/") for t in (*self.trees, *self.scratch))

    @staticmethod
    def _target_of(temp: tuple[str, ...]) -> str:
        """The file a temporary file (``.NAME.<random>.tmp``) was written for."""
        m = _TEMP.match(temp[-1])
        return "/".join((*temp[:-1], m.group(1))) if m else ""

    def _fail(self, what: str) -> ConfigError:
        return ConfigError(f"{self.option} {self.path}: {what}")

    def _root_fd(self) -> int:
        try:
            return os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise self._fail(f"cannot be opened as a folder ({e.strerror or e})") from None

    # -- the manifest --------------------------------------------------------------------
    def _read_manifest(self, fd: int) -> tuple[dict[str, list[str]], list[str]]:
        st = tree.lstat_at(fd, (MANIFEST,))
        if st is None:
            return {}, []
        if tree.kind(st.st_mode) != "file":
            raise self._fail(f"{MANIFEST} is {tree.describe(st.st_mode)}; qflow keeps its record of written files there: remove it")
        try:
            data = parse_json(read_regular(MANIFEST, "manifest", ConfigError, limit=MAX_MANIFEST_BYTES, follow=False, dir_fd=fd),
                              MANIFEST, ConfigError)
        except ConfigError:
            return {}, []
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or not isinstance(data.get("files"), dict):
            return {}, []
        files = {k: [h for h in v if isinstance(h, str)] for k, v in data["files"].items() if isinstance(v, list) and _parts(k)}
        temps = [t for t in data.get("temp", []) if isinstance(t, str) and _parts(t) and _TEMP.match(t.rsplit("/", 1)[-1])]
        return files, temps

    def _write_manifest(self) -> None:
        payload = {"version": MANIFEST_VERSION, "files": dict(sorted(self._files.items())), "temp": [self._temp] if self._temp else []}
        fd = self._root_fd()
        try:
            tree.write_at(fd, MANIFEST, (json.dumps(payload, indent=1) + "\n").encode())
        except OSError as e:
            raise self._fail(f"cannot be written: {e.strerror or e}") from None
        finally:
            os.close(fd)

    # -- inspecting the previous contents ------------------------------------------------
    def _inspect(self, fd: int) -> tuple[list[tuple[str, ...]], list[tuple[str, str | None]], dict[str, list[str]]]:
        """For the folder open as ``fd``: the proven files this run replaces (to remove), the entries that stop
        the run (path, what it is when not a file), and the records of proven files this run leaves alone
        (another kind of run wrote them: their proof is carried forward)."""
        files, temps = self._read_manifest(fd)
        remove: list[tuple[str, ...]] = []
        keep: dict[str, list[str]] = {}
        for rel, hashes in files.items():
            parts = _parts(rel)
            if parts is None or tree.digest_at(fd, parts) not in hashes:
                continue
            if self._writes(rel):
                remove.append(parts)
            else:
                keep[rel] = hashes
        remove += [p for rel in temps if (p := _parts(rel)) and self._writes(self._target_of(p))
                   and (st := tree.lstat_at(fd, p)) and tree.kind(st.st_mode) == "file" and st.st_nlink == 1]
        proven = {"/".join(p) for p in remove}
        foreign: list[tuple[str, str | None]] = []

        def look(rel: str, st: os.stat_result | None, must_be: str) -> None:
            if st is None or rel in proven or (must_be == "dir" == tree.kind(st.st_mode)):
                return
            foreign.append((rel, None if tree.kind(st.st_mode) == must_be == "file" else tree.describe(st.st_mode)))

        for rel, must_be in [*((r, "file") for r in self.results), *((t, "dir") for t in (*self.trees, *self.scratch))]:
            try:
                look(rel, tree.lstat_at(fd, rel.split("/")), must_be)
            except tree.UnsafeEntry as e:
                foreign.append((e.rel, e.what.removeprefix("is ")))
        for top in self.trees:
            for parts, st in tree.walk(fd, top.split("/")):
                if tree.kind(st.st_mode) != "dir":
                    look("/".join(parts), st, "file")
        return remove, foreign, keep

    def _refuse(self, foreign: list[tuple[str, str | None]]) -> None:
        odd = [(rel, what) for rel, what in foreign if what is not None]
        if odd:
            rel, what = odd[0]
            raise self._fail(f"{rel} is {what}, where qflow writes{' a file' if what == 'a folder' else ''}; it writes only "
                             "regular files in real folders inside --out: move it away or choose another folder")
        names = [rel for rel, _ in foreign]
        shown = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
        raise self._fail(f"already holds {shown}, which qflow did not write there (no matching SHA-256 in {MANIFEST}); "
                         "move them away or choose another folder")

    def check(self) -> None:
        """Raise ConfigError (one line) if claiming would stop on something qflow did not write; change nothing."""
        if not self.path.exists():
            return
        fd = self._root_fd()
        try:
            _, foreign, _ = self._inspect(fd)
        finally:
            os.close(fd)
        if foreign:
            self._refuse(foreign)

    def claim(self) -> None:
        """Create the folder, remove the previous run's proven files, refuse what qflow cannot prove it wrote."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._fail(f"cannot be created: {e.strerror or e}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise self._fail("is not writable; choose a folder you can write to")
        fd = self._root_fd()
        try:
            remove, foreign, keep = self._inspect(fd)
            if foreign:  # the previous run's own files go (no earlier result may look current), the rest stays
                if remove:
                    self._remove(fd, remove)
                    self._files, self._temp = keep, None
                    self._write_manifest()
                self._refuse(foreign)
            self._remove(fd, remove)
            self._files, self._temp, self._seen, self._sizes = keep, None, {}, {}
            self._real = Path(os.path.realpath(self.path))
            self._ident = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
            self._write_manifest()
            self._before = {"/".join(p) for p, st in self._tree_entries(fd) if tree.kind(st.st_mode) == "file"} | set(keep)
        finally:
            os.close(fd)
        watch_writes(self._real, self._before_write)

    def retire(self) -> None:
        """After a run failed before claiming the folder: remove the previous run's proven files (nothing else)."""
        if not self.path.is_dir():
            return
        fd = self._root_fd()
        try:
            if tree.lstat_at(fd, (MANIFEST,)) is None:
                return
            remove, _, keep = self._inspect(fd)
            if remove:  # a manifest that proves nothing is left as it is
                self._remove(fd, remove)
                self._files, self._temp = keep, None
                self._write_manifest()
        finally:
            os.close(fd)

    @staticmethod
    def _remove(fd: int, remove: Sequence[tuple[str, ...]]) -> None:
        for parts in remove:
            tree.remove_file(fd, parts)
        for folder in sorted({p[:-1] for p in remove if len(p) > 1}, key=len, reverse=True):
            tree.prune(fd, folder)

    # -- writing -------------------------------------------------------------------------
    def _rel(self, target: Path) -> str:
        real_parent = Path(os.path.realpath(target.parent))
        if self._real is None or not (real_parent == self._real or real_parent.is_relative_to(self._real)):
            raise self._fail(f"{target} would be written outside the folder (through a link); remove the link")
        rel = "/".join((*real_parent.relative_to(self._real).parts, target.name))
        if _parts(rel) is None:
            raise self._fail(f"{target.name!r} is not a file name qflow writes")
        return rel

    def _proven_or_absent(self, fd: int, rel: str) -> None:
        parts = rel.split("/")
        try:
            st = tree.lstat_at(fd, parts)
        except tree.UnsafeEntry as e:
            raise self._fail(f"{e.rel} is {e.what}; qflow writes only into real folders inside --out: remove it") from None
        if st is not None and tree.digest_at(fd, parts) not in self._files.get(rel, []):
            raise self._fail(f"{rel} exists and qflow cannot prove it wrote it ({tree.describe(st.st_mode)}); move it away")

    def _before_write(self, target: Path, temp: str, digest: str, size: int) -> None:
        """Called by :func:`flow.core.fileio.atomic_write_bytes` before a write lands in this folder."""
        assert self._real is not None  # the hook is registered by claim()
        try:
            st = os.stat(self._real)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._ident:  # the claimed folder is gone, and its successor was not claimed
            watch_writes(self._real, None)
            return
        rel = self._rel(target)
        fd = self._root_fd()
        try:
            os.close(tree.open_folder(fd, rel.split("/")[:-1], create=True))
            self._proven_or_absent(fd, rel)
        except tree.UnsafeEntry as e:
            raise self._fail(f"{e.rel} is {e.what}; qflow writes only into real folders inside --out: remove it") from None
        finally:
            os.close(fd)
        self._files[rel] = [*self._files.get(rel, [])[-1:], digest]
        self._sizes[rel] = size
        self._seen.pop(rel, None)
        self._temp = "/".join((*rel.split("/")[:-1], temp))
        self._write_manifest()

    def will_write(self, rel: str) -> Path:
        """The path of ``rel`` inside the folder for a writer that writes it directly: its folder is
        created (no links on the way), an existing file there must be proven; it is hashed at :meth:`close`."""
        parts = _parts(rel)
        if parts is None or self._real is None:
            raise self._fail(f"{rel!r} is not a path inside the folder")
        fd = self._root_fd()
        try:
            os.close(tree.open_folder(fd, parts[:-1], create=True))
            self._proven_or_absent(fd, rel)
        except tree.UnsafeEntry as e:
            raise self._fail(f"{e.rel} is {e.what}; qflow writes only into real folders inside --out: remove it") from None
        finally:
            os.close(fd)
        self._files.setdefault(rel, [])
        return self.path / rel

    def read_proven(self, rel: str, limit: int) -> bytes | None:
        """The bytes of ``rel`` (read without following links) when this kind of run writes it and they
        match a SHA-256 the manifest records for it; None otherwise (absent, foreign, changed, too large)."""
        parts = _parts(rel)
        if parts is None or not self._writes(rel) or not self.path.is_dir():
            return None
        fd = self._root_fd()
        try:
            sub = tree.open_folder(fd, parts[:-1])
            try:
                data = read_regular(parts[-1], rel, ConfigError, limit=limit, follow=False, dir_fd=sub)
            finally:
                os.close(sub)
            return data if hashlib.sha256(data).hexdigest() in self._read_manifest(fd)[0].get(rel, []) else None
        except (ConfigError, tree.UnsafeEntry, OSError):
            return None
        finally:
            os.close(fd)

    def folder(self, rel: str, *, create: bool = True) -> Path:
        """The folder ``rel`` inside this one (see :func:`inner_folder`)."""
        return inner_folder(self.path, rel, create=create, option=self.option)

    def _tree_entries(self, fd: int):
        for top in (*self.trees, *self.scratch):
            yield from tree.walk(fd, top.split("/"))

    def close(self) -> None:
        """Record (hash) the files other tools wrote into the folder's trees, and files given out by
        :meth:`will_write`, since :meth:`claim`."""
        if self._real is None or not self.path.is_dir():
            return
        fd = self._root_fd()
        changed = False
        try:
            entries = [("/".join(p), st) for p, st in self._tree_entries(fd) if tree.kind(st.st_mode) == "file"]
            entries += [(rel, st) for rel in self._files if (st := tree.lstat_at(fd, rel.split("/"))) and tree.kind(st.st_mode) == "file"]
            for rel, st in entries:
                if rel in self._before or self._seen.get(rel) == (st.st_size, st.st_mtime_ns):
                    continue
                if rel not in self._seen and self._sizes.get(rel) == st.st_size:  # written through the hook, hashed then
                    self._seen[rel] = (st.st_size, st.st_mtime_ns)
                    continue
                digest = tree.digest_at(fd, rel.split("/"))
                self._seen[rel] = (st.st_size, st.st_mtime_ns)
                if digest is not None and digest not in self._files.get(rel, []):
                    self._files[rel] = [*self._files.get(rel, [])[-1:], digest]
                    changed = True
        except tree.UnsafeEntry:
            pass
        finally:
            os.close(fd)
        if changed:
            self._write_manifest()

    def discard(self, folders: Iterable[str]) -> None:
        """Remove the proven files under ``folders`` (e.g. a finished build's checkpoints) and forget them."""
        self.close()
        fd = self._root_fd()
        try:
            gone = [rel for rel in self._files if any(rel.startswith(f"{f}/") for f in folders)]
            proven = [tuple(rel.split("/")) for rel in gone if tree.digest_at(fd, rel.split("/")) in self._files[rel]]
            self._remove(fd, proven)
        finally:
            os.close(fd)
        for rel in gone:
            self._files.pop(rel, None)
            self._seen.pop(rel, None)
        self._write_manifest()

