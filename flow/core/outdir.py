"""Output folders: qflow writes only where it is asked, and removes only what it wrote itself.

An :class:`OutputDir` is claimed after every input has been validated. Claiming

* refuses places no run should write into (``/``, the home folder, qflow's own checkout,
  system folders) and a path that is a file or cannot be written;
* removes the results of the previous run in that folder, so a failed run leaves nothing
  that looks current; only files listed in the folder's manifest (``.qflow-manifest.json``,
  written by qflow) are removed, and every listed path is checked to lie inside the folder;
* refuses to start when a result file qflow would write (``report.json``, ...) is already
  there but was not written by qflow: it is a user's file, or a result nobody can vouch for.

Files are recorded in the manifest *before* they are written (:meth:`OutputDir.will_write`);
folders qflow fills through other tools (checkpoints, FINN's build folders) are walked at the
end (:meth:`OutputDir.close`), recording every file that appeared during the run.

>>> import tempfile, pathlib
>>> out = OutputDir(pathlib.Path(tempfile.mkdtemp()) / "run", results=("report.json",))
>>> out.claim()
>>> (out.path / "notes.txt").write_text("mine")
4
>>> out.will_write("report.json").write_text("{}")
2
>>> out.close()
>>> out2 = OutputDir(out.path, results=("report.json",)); out2.claim()
>>> sorted(p.name for p in out.path.iterdir())
['.qflow-manifest.json', 'notes.txt']
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from flow.core.errors import ConfigError
from flow.core.fileio import atomic_write_json

MANIFEST = ".qflow-manifest.json"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 16 * 2**20
_SYSTEM = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/var")
_CHECKOUT = Path(__file__).resolve().parents[2]


def refuse_place(path: str | Path, option: str = "--out") -> Path:
    """The absolute folder for ``path``; ConfigError (exit 2) where no run may write."""
    p = Path(path).expanduser().absolute()
    real = p.resolve()
    home = Path.home().resolve()
    if real == Path(real.anchor):
        raise ConfigError(f"{option} {path} is the file-system root; choose a folder for this run's outputs")
    if real == home:
        raise ConfigError(f"{option} {path} is your home folder; choose a folder inside it for this run's outputs")
    if real == _CHECKOUT and (_CHECKOUT / "pyproject.toml").is_file():
        raise ConfigError(f"{option} {path} is qflow's own checkout; choose a folder inside it (e.g. runs/NAME)")
    if any(real == Path(s) or (s != "/var" and real.is_relative_to(s)) for s in _SYSTEM):
        raise ConfigError(f"{option} {path} is a system folder; choose a folder of your own")
    if real.exists() and not real.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder")
    return p


def retire_results(path: str | Path, *, trees: Iterable[str] = ()) -> None:
    """Remove what qflow wrote in ``path`` before (per its manifest), if ``path`` is a place qflow may write."""
    try:
        OutputDir(path, trees=trees).retire()
    except (ConfigError, OSError):
        pass


def _inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` when ``rel`` is a plain relative path that stays inside ``root``, else None."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or os.path.isabs(rel):
        return None
    parts = Path(rel).parts
    if any(part in ("..", ".") for part in parts):
        return None
    p = root / rel
    try:  # no symlinked folder on the way may lead outside
        if not p.parent.resolve().is_relative_to(root.resolve()):
            return None
    except OSError:
        return None
    return p


class OutputDir:
    """A run's output folder: ``results`` are the files (relative paths) and ``trees`` the folders it writes."""

    def __init__(self, path: str | Path, *, results: Iterable[str] = (), trees: Iterable[str] = (), option: str = "--out"):
        self.path = refuse_place(path, option)
        self.option = option
        self.results = tuple(results)
        self.trees = tuple(trees)
        self._files: set[str] = set()
        self._before: set[str] = set()

    # -- manifest --------------------------------------------------------------------
    def _read_manifest(self) -> list[str]:
        m = self.path / MANIFEST
        try:
            if m.is_symlink() or m.stat().st_size > MAX_MANIFEST_BYTES:
                return []
            data = json.loads(m.read_bytes().decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            return []
        files = data.get("files") if isinstance(data, dict) else None
        return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []

    def _write_manifest(self) -> None:
        try:
            atomic_write_json(self.path / MANIFEST, {"version": MANIFEST_VERSION, "files": sorted(self._files)})
        except OSError as e:
            raise ConfigError(f"{self.option} {self.path} cannot be written: {e.strerror or e}") from None

    # -- a run -----------------------------------------------------------------------
    def claim(self) -> None:
        """Create the folder, remove the previous run's files, refuse result files qflow did not write."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{self.option} {self.path} cannot be created: {e.strerror or e}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ConfigError(f"{self.option} {self.path} is not writable; choose a folder you can write to")
        self._remove_previous()
        foreign = [r for r in self.results if (self.path / r).exists() or (self.path / r).is_symlink()]
        if foreign:
            raise ConfigError(
                f"{self.option} {self.path} already holds {', '.join(foreign)}, which qflow did not write there; "
                "choose another folder, or move those files away"
            )
        self._files = set()
        self._write_manifest()
        self._before = set(self._tree_files())

    def _remove_previous(self) -> None:
        for rel in self._read_manifest():
            p = _inside(self.path, rel)
            if p is not None and (p.is_symlink() or p.is_file()):
                p.unlink()
        self._prune_empty()

    def retire(self) -> None:
        """After a run failed before claiming the folder: remove the previous run's files (per its
        manifest, nothing else), so no earlier result looks like this run's."""
        if (self.path / MANIFEST).is_file() and not (self.path / MANIFEST).is_symlink():
            self._remove_previous()
            self._files = set()
            self._write_manifest()

    def will_write(self, rel: str) -> Path:
        """Record ``rel`` as qflow's (before writing it), create its folder, and return its path."""
        p = _inside(self.path, rel)
        if p is None:
            raise ConfigError(f"{rel!r} would be written outside {self.path}")
        if rel not in self._files:
            self._files.add(rel)
            self._write_manifest()
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def close(self) -> None:
        """Record every file that appeared in the run's folders (trees) since :meth:`claim`."""
        new = set(self._tree_files()) - self._before
        if new - self._files:
            self._files |= new
            self._write_manifest()

    def _tree_files(self) -> Iterable[str]:
        for tree in self.trees:
            root = self.path / tree
            if root.is_symlink() or not root.is_dir():
                continue
            for dirpath, _dirs, files in os.walk(root):
                for f in files:
                    yield str((Path(dirpath) / f).relative_to(self.path))

    def _prune_empty(self) -> None:
        for tree in self.trees:
            root = self.path / tree
            if root.is_symlink() or not root.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(root, topdown=False), key=lambda t: -len(t[0])):
                try:
                    Path(dirpath).rmdir()  # only succeeds when empty
                except OSError:
                    pass
