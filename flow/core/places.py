"""Places no qflow run may write into, whatever a user or a script passes as ``--out`` or ``--dest``.

Refused, after resolving symbolic links (a link to ``/etc`` is ``/etc``):

* the file-system root, and the roots of system trees (``/home``, ``/mnt``, ``/media``,
  ``/opt``, ``/srv``, ``/tmp``, ``/var/tmp``, the temporary folder's root);
* system folders and everything under them (``/bin``, ``/boot``, ``/dev``, ``/etc``, ``/lib*``,
  ``/proc``, ``/root`` unless it is the home folder, ``/run``, ``/sbin``, ``/snap``, ``/sys``,
  ``/usr``, ``/var`` except below ``/var/tmp``);
* the home folder itself and its hidden folders (``~/.ssh``, ``~/.config``, ...) and below;
* a repository's ``.git`` folder and anything inside one;
* qflow's own checkout (its folders such as ``runs/`` are fine).

>>> refuse_place("/etc/qflow")
Traceback (most recent call last):
...
flow.core.errors.ConfigError: --out /etc/qflow is a system folder (/etc); choose a folder of your own
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flow.core.errors import ConfigError

#: System folders: neither they nor anything below them is an output folder.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run", "/sbin",
                "/snap", "/sys", "/usr", "/var")
#: Folders that hold other people's folders: refused themselves, their sub-folders are fine.
SHARED_ROOTS = ("/home", "/mnt", "/media", "/opt", "/srv", "/tmp", "/var/tmp", "/dev/shm")
_CHECKOUT = Path(__file__).resolve().parents[2]


def _under(real: Path, top: str) -> bool:
    t = Path(top)
    return real == t or real.is_relative_to(t)


def unsafe_reason(path: str | Path) -> str | None:
    """Why ``path`` may not be written into by a run, or None when it may."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    home = Path(os.path.realpath(Path.home()))
    temp_root = Path(os.path.realpath(tempfile.gettempdir()))
    if real == Path(real.anchor):
        return "is the file-system root"
    if ".git" in real.parts:
        return "is inside a repository's .git folder"
    if real == home:
        return "is your home folder; choose a folder inside it"
    in_home = home != Path(home.anchor) and real.is_relative_to(home)
    if in_home and real.relative_to(home).parts[0].startswith("."):
        return f"is inside a hidden folder of your home ({home / real.relative_to(home).parts[0]})"
    if real == _CHECKOUT and (_CHECKOUT / "pyproject.toml").is_file():
        return "is qflow's own checkout; choose a folder inside it (e.g. runs/NAME)"
    if real == temp_root or any(real == Path(s) for s in SHARED_ROOTS):
        return "is a shared root folder; choose a folder inside it"
    if in_home:
        return None
    for top in SYSTEM_TREES:
        if _under(real, top) and not (top == "/var" and real.is_relative_to("/var/tmp")):
            return f"is a system folder ({top})"
    return None


def refuse_place(path: str | Path, option: str = "--out") -> Path:
    """The absolute folder for ``path``; ConfigError (exit 2) where no run may write (see the module docstring)."""
    p = Path(path).expanduser().absolute()
    why = unsafe_reason(p)
    if why is not None:
        fix = "" if "choose" in why else "; choose a folder of your own"
        raise ConfigError(f"{option} {path} {why}{fix}")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder")
    return p
