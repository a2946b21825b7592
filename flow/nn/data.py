"""Datasets read from local files only: IDX files (plain or .gz) and sklearn's embedded digits.

Nothing here touches the network; ``qflow fetch-data`` (:mod:`flow.nn.fetch`) puts the
files under a root folder at set-up time. Images are raw pixels, ``uint8`` shaped
``[N, C, H, W]`` (qflow's models scale internally); labels are ``int64``.

>>> ds = load_dataset("digits", "test")
>>> ds.images.shape, ds.images.dtype, ds.input_shape, ds.num_classes
((360, 1, 8, 8), dtype('uint8'), (1, 8, 8), 10)
>>> len(ds.subset(100, seed=0))
100
"""

from __future__ import annotations

import gzip
import io
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flow.core.errors import ConfigError, DataMissingError, QflowError
from flow.core.fileio import atomic_write_bytes, read_regular

DATASETS = ("mnist", "fashion-mnist", "digits")
SPLITS = ("train", "test")

#: IDX type codes -> big-endian numpy dtypes.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder(">"): code for code, dt in IDX_DTYPES.items()}

#: The file names of the MNIST-style IDX sets, per split.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


class IdxFormatError(QflowError, ValueError):
    """A file is not a valid IDX file (bad magic, unknown type, or wrong size)."""


# --------------------------------------------------------------------------- IDX files


def parse_idx_header(head: bytes, source: str = "IDX data") -> tuple[np.dtype, tuple[int, ...], int]:
    """Parse an IDX header; return ``(dtype, shape, header_size)``.

    >>> parse_idx_header(bytes([0, 0, 8, 1, 0, 0, 0, 5]))
    (dtype('uint8'), (5,), 8)
    """
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise IdxFormatError(f"{source} is not an IDX file (bad magic {head[:4].hex() or 'empty'}; expected 0000tttd)")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        raise IdxFormatError(f"{source} has unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise IdxFormatError(f"{source} declares 0 dimensions")
    size = 4 + 4 * ndim
    if len(head) < size:
        raise IdxFormatError(f"{source} is truncated inside its IDX header")
    shape = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], shape, size


def decode_idx(data: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into a native-endian array."""
    dtype, shape, offset = parse_idx_header(data[:64], source)
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise IdxFormatError(f"{source} has {len(data)} bytes; its header {shape} implies {expected}")
    arr = np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


#: Largest dataset file qflow reads (decompressed): MNIST's training images are 47 MB.
MAX_IDX_BYTES = 1 << 30


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip; refused past :data:`MAX_IDX_BYTES` (a gzip bomb stops there)."""
    raw = read_regular(path, "dataset file", IdxFormatError, limit=MAX_IDX_BYTES)  # a regular file only: no pipe or device
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") as g:
            data = g.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError) as e:
        raise IdxFormatError(f"{path} is a corrupt gzip file: {e}") from None
    if len(data) > MAX_IDX_BYTES:
        raise IdxFormatError(f"{path} decompresses to more than {MAX_IDX_BYTES >> 20} MiB; it is not a dataset file qflow reads")
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, plain or gzip-compressed (detected by content), into numpy.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x-idx1-ubyte.gz"
    >>> write_idx(p, np.arange(3, dtype=np.uint8)); read_idx(p)
    array([0, 1, 2], dtype=uint8)
    """
    p = Path(path)
    return decode_idx(_read_bytes(p), str(p))


def encode_idx(arr: np.ndarray) -> bytes:
    """The IDX bytes of ``arr`` (dtype uint8, int8, int16, int32, float32 or float64)."""
    a = np.asarray(arr)
    be = a.dtype.newbyteorder(">")
    if be not in _IDX_CODES or a.ndim == 0:
        raise IdxFormatError(f"cannot write a {a.ndim}-d {a.dtype} array as IDX")
    head = bytes([0, 0, _IDX_CODES[be], a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    return head + a.astype(be).tobytes()


def write_idx(path: str | Path, arr: np.ndarray) -> None:
    """Write ``arr`` as an IDX file, atomically; gzip it when the name ends in ``.gz``."""
    p = Path(path)
    data = encode_idx(arr)
    atomic_write_bytes(p, gzip.compress(data, mtime=0) if p.suffix == ".gz" else data)


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise ConfigError(f"{self.name}/{self.split}: images {self.images.shape} and labels {self.labels.shape} do not match")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one image, ``(C, H, W)``."""
        return tuple(int(d) for d in self.images.shape[1:])  # type: ignore[return-value]

    def hold_out(self, n_held_out: int, seed: int = 0) -> tuple[Dataset, Dataset]:
        """``(rest, held_out)``: ``n_held_out`` samples drawn without replacement, and all the others.

        >>> ds = load_digits_dataset("train")
        >>> rest, val = ds.hold_out(100)
        >>> len(rest) + len(val) == len(ds), len(val)
        (True, 100)
        """
        if not 0 < n_held_out < len(self):
            raise ConfigError(f"a held-out split needs between 1 and {len(self) - 1} samples, got {n_held_out}")
        perm = np.random.default_rng(seed).permutation(len(self))
        held, rest = np.sort(perm[:n_held_out]), np.sort(perm[n_held_out:])
        return (Dataset(self.name, self.split + "-rest", self.images[rest], self.labels[rest], self.num_classes),
                Dataset(self.name, self.split + "-held-out", self.images[held], self.labels[held], self.num_classes))

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """``n`` samples drawn without replacement (kept in their original order); all if ``n >= len``."""
        if n < 0:
            raise ConfigError(f"subset size must be >= 0, got {n}")
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return Dataset(self.name, self.split, self.images[idx], self.labels[idx], self.num_classes)


def fetch_hint(name: str, root: str | Path) -> str:
    """The command that puts dataset ``name`` under ``root``."""
    dest = shlex.quote(str(root))
    if name == "fashion-mnist":
        return (f"`qflow fetch-data --dest {dest} --dataset fashion-mnist` (it copies the files of the Debian "
                "package dataset-fashion-mnist; install it with `apt-get install dataset-fashion-mnist`)")
    return f"`qflow fetch-data --dest {dest}`"


def _check_name(name: str, split: str) -> None:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(name: str, split: str, folder: str | Path, root: str | Path | None = None) -> Dataset:
    """Load an MNIST-style split from ``folder`` (files as in :data:`IDX_FILES`, plain or .gz)."""
    folder = Path(folder)
    paths = []
    for stem in IDX_FILES[split]:
        p = _find(folder, stem)
        if p is None:
            raise DataMissingError(
                f"dataset {name!r} ({split}) is missing: no {stem}[.gz] in {folder}; "
                f"fetch it with {fetch_hint(name, root if root is not None else folder.parent)}"
            )
        paths.append(p)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(f"{paths[0]} holds {images.dtype} {images.shape}; expected uint8 [N, H, W] images")
    if labels.ndim != 1 or len(labels) != len(images):
        raise IdxFormatError(f"{paths[1]} holds {labels.shape} labels for {len(images)} images in {paths[0]}")
    labels = labels.astype(np.int64)
    num_classes = 10
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise IdxFormatError(f"{paths[1]} has labels outside 0..{num_classes - 1}")
    return Dataset(name, split, images[:, None, :, :], labels, num_classes)


def load_digits_dataset(split: str) -> Dataset:
    """sklearn's 8x8 digits (shipped with scikit-learn), rescaled 0..16 -> 0..255, split 80/20 (stratified, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None, :, :]
    labels = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SEED, stratify=labels
    )
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    return Dataset("digits", split, np.ascontiguousarray(x), np.ascontiguousarray(y), 10)


_CHECKOUT_DATA = Path(__file__).resolve().parents[2] / "data"


def default_data_root() -> Path:
    """Where datasets live unless a recipe says otherwise: ``$QFLOW_DATA``, else the ``data/``
    folder of qflow's checkout (where set-up fetches them) when it exists, else ``./data``."""
    env = os.environ.get("QFLOW_DATA")
    if env:
        return Path(env)
    return _CHECKOUT_DATA if _CHECKOUT_DATA.is_dir() else Path("data")


def load_dataset(name: str, split: str, root: str | Path | None = None) -> Dataset:
    """Load ``split`` ("train" or "test") of ``name`` ("mnist", "fashion-mnist" or "digits").

    MNIST and Fashion-MNIST are read from ``root/<name>/``; digits is embedded in
    scikit-learn. A missing dataset raises :class:`DataMissingError` naming the fetch command.
    """
    _check_name(name, split)
    if name == "digits":
        return load_digits_dataset(split)
    root = default_data_root() if root is None else Path(root)
    return load_idx_dataset(name, split, root / name, root=root)
