"""Verification inputs: the user's (checked) or random ones over the graph input's datatype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from flow.core.config import MAX_VERIFY_SAMPLES
from flow.core.errors import ConfigError

#: Largest batch of verification inputs, in bytes as float32.
MAX_VERIFY_BYTES = 2**30


def read_npy(path: str | Path, option: str) -> np.ndarray:
    """A numeric .npy array from ``path`` (no pickles), refusing arrays over :data:`MAX_VERIFY_BYTES` before reading them."""
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"{option} {path}: cannot read a .npy array ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(arr, np.ndarray):
        raise ConfigError(f"{option} {path} holds several arrays; save one array with numpy.save")
    if arr.nbytes > MAX_VERIFY_BYTES:
        raise ConfigError(f"{option} {path} holds {arr.nbytes / 2**30:.1f} GiB; at most {MAX_VERIFY_BYTES // 2**20} MiB of inputs are verified")
    try:
        return np.array(arr)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{option} {path}: the file is shorter than its header says ({type(e).__name__})") from None


def input_sample_shape(model: ModelWrapper) -> tuple[int, ...]:
    """The shape of one sample of the graph's first input (the batch axis dropped)."""
    return tuple(int(d) for d in model.get_tensor_shape(model.graph.input[0].name)[1:])


def check_verify_inputs(model: ModelWrapper, x: np.ndarray, source: str = "--verify-inputs") -> np.ndarray:
    """``x`` as float32 samples of the model's input, or ConfigError (one line) saying what is wrong."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ConfigError(f"{source} holds {x.dtype} values; give a numeric .npy array (samples first)")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ConfigError(f"{source} holds no samples (shape {x.shape}); the first axis counts samples")
    if x.shape[0] > MAX_VERIFY_SAMPLES:
        raise ConfigError(f"{source} holds {x.shape[0]:,} samples; at most {MAX_VERIFY_SAMPLES:,} are verified in one run")
    sample = input_sample_shape(model)
    per_sample = int(np.prod(sample)) if sample else 1
    if int(np.prod(x.shape[1:])) != per_sample:
        raise ConfigError(f"{source} samples have shape {tuple(x.shape[1:])}; the model's input takes {sample} ({per_sample} values)")
    if x.shape[0] * per_sample * 4 > MAX_VERIFY_BYTES:
        raise ConfigError(f"{source} needs {x.shape[0] * per_sample * 4 / 2**30:.1f} GiB; verify fewer samples (at most {MAX_VERIFY_BYTES // 2**20} MiB)")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(x.reshape(len(x), -1)), axis=1))[0])
        raise ConfigError(f"{source} sample {bad} holds NaN or infinite values; verification inputs must be finite numbers")
    return x


def random_inputs(model: ModelWrapper, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random samples over the full range of the graph input's integer datatype (UINT8 if it has none)."""
    name = model.graph.input[0].name
    dt = model.get_tensor_datatype(name)
    shape = input_sample_shape(model)
    if not dt.is_integer():
        dt = DataType["UINT8"]
    per_sample = int(np.prod(shape)) if shape else 1
    if n * per_sample * 4 > MAX_VERIFY_BYTES:
        raise ConfigError(f"{n:,} random verification samples of {per_sample:,} values need more than {MAX_VERIFY_BYTES // 2**20} MiB; lower --samples")
    rng = np.random.default_rng(seed)
    return rng.integers(int(dt.min()), int(dt.max()) + 1, size=(n, *shape)).astype(np.float32)
