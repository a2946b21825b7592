"""The inputs of a build besides the model, checked before the output folder is touched: option
files (folding, specialize-layers), verification inputs and reference outputs (the user's, checked
like every untrusted input, or random inputs over the graph input's datatype)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.core.config import MAX_VERIFY_SAMPLES, BuildConfig
from flow.core.errors import ConfigError
from flow.core.fileio import read_regular
from flow.core.vocab import LABEL_OPS
from flow.fold.rules import read_folding_file
from flow.fold.specialize import check_config_file
from flow.sim.inputs import MAX_VERIFY_BYTES, input_sample_shape
from flow.sim.verify import StageOutputs

#: Largest .npy header (numpy's own limit for untrusted files).
MAX_NPY_HEADER = 10_000


def check_option_files(cfg: BuildConfig) -> None:
    """The folding and specialize-layers files parse and have FINN's format (FoldingError, one line, if not)."""
    if cfg.folding_file is not None:
        read_folding_file(cfg.folding_file)
    if cfg.specialize_file is not None:
        check_config_file(cfg.specialize_file)


def read_npy(path: str | Path, option: str) -> np.ndarray:
    """A numeric array from the .npy file ``path``, or ConfigError (one line).

    Only a regular file of at most :data:`MAX_VERIFY_BYTES` (plus its header) is read; the header
    is parsed without pickles, its size bounded, and the data must be exactly as long as the
    header says, so no header can make qflow allocate more than the file holds.
    """
    data = read_regular(path, option, ConfigError, limit=MAX_VERIFY_BYTES + MAX_NPY_HEADER + 16)
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f, max_header_size=MAX_NPY_HEADER)
    except Exception as e:  # noqa: BLE001 - numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise ConfigError(f"{option} {path} is not a .npy array ({type(e).__name__}: {' '.join(str(e).split())[:120]}); save one array with numpy.save") from None
    if any(d < 0 for d in shape):
        raise ConfigError(f"{option} {path} has a header with a negative dimension {shape}; save the array again with numpy.save")
    if dtype.hasobject or dtype.kind not in "biuf" or dtype.subdtype is not None:
        raise ConfigError(f"{option} {path} holds {dtype} values; give a numeric .npy array (samples first)")
    count = int(np.prod(shape, dtype=np.float64))
    if count * dtype.itemsize > MAX_VERIFY_BYTES:
        raise ConfigError(f"{option} {path} holds {count * dtype.itemsize / 2**30:.1f} GiB; at most {MAX_VERIFY_BYTES // 2**20} MiB of inputs are verified")
    body = len(data) - f.tell()
    if body != count * dtype.itemsize:
        raise ConfigError(f"{option} {path} holds {body:,} bytes of data, but its header says {count * dtype.itemsize:,}; save it again with numpy.save")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=f.tell())
    return arr.reshape(shape, order="F" if fortran else "C").copy()


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
    check_input_values(model, x, source)
    return x


def check_input_values(model: ModelWrapper, x: np.ndarray, source: str) -> None:
    """ConfigError (one line) unless every value of ``x`` is a value of the graph input's integer datatype
    (integers in its range; -1/+1 for BIPOLAR): the accelerator's input stream carries nothing else.
    A float input (its quantizer runs on the host) takes any finite value."""
    dt = model.get_tensor_datatype(model.graph.input[0].name)
    if not dt.is_integer():
        return
    flat = x.reshape(len(x), -1)
    ok = (flat == np.round(flat)) & (flat >= dt.min()) & (flat <= dt.max())
    if dt.name == "BIPOLAR":
        ok &= flat != 0
    if not np.all(ok):
        sample = int(np.flatnonzero(~np.all(ok, axis=1))[0])
        value = float(flat[sample][~ok[sample]][0])
        levels = "-1 or +1" if dt.name == "BIPOLAR" else f"integers from {int(dt.min())} to {int(dt.max())}"
        raise ConfigError(f"{source} sample {sample} holds {value:g}, which is not a {dt.name} value (the model's input datatype); "
                          f"give {levels}, or build with the --input-dtype the inputs have")


def class_count(model: ModelWrapper) -> int:
    """Values per sample the model's outputs are compared on: its classes when it ends in a label
    node (the node's input), else the size of its output."""
    out = model.graph.output[0].name
    node = model.find_producer(out)
    tensor = node.input[0] if node is not None and node.op_type in (*LABEL_OPS, "ArgMax") else out
    shape = model.get_tensor_shape(tensor) or [1]
    return int(np.prod(shape[1:])) if len(shape) > 1 else 1


def check_reference_outputs(model: ModelWrapper, y: np.ndarray, n: int, source: str = "--reference-outputs") -> StageOutputs:
    """The user's outputs of the ``n`` verification inputs as verification's first stage (``pytorch``),
    or ConfigError (one line) saying what is wrong.

    Accepted: scores ``(n, C)`` (logits, any float or integer type) or labels ``(n,)`` / ``(n, 1)``
    (integers in ``0..C-1``), where ``C`` is the model's class count (:func:`class_count`).
    """
    y = np.asarray(y)
    if y.dtype.kind not in "iuf":
        raise ConfigError(f"{source} holds {y.dtype} values; give a numeric .npy array (samples first)")
    if y.ndim < 1 or y.shape[0] != n:
        got = y.shape[0] if y.ndim else 0
        raise ConfigError(f"{source} holds {got} samples, the verification inputs {n}; give the outputs of exactly the --verify-inputs samples, in order")
    flat = y.reshape(n, -1).astype(np.float64)
    if not np.all(np.isfinite(flat)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(flat), axis=1))[0])
        raise ConfigError(f"{source} sample {bad} holds NaN or infinite values; reference outputs must be finite numbers")
    classes = class_count(model)
    if flat.shape[1] == classes:
        scores = flat.astype(np.float32)
        return StageOutputs("pytorch", logits=scores, labels=scores.argmax(axis=1) if classes > 1 else None)
    if flat.shape[1] == 1 and classes > 1:
        if not np.array_equal(flat, np.round(flat)) or flat.min() < 0 or flat.max() >= classes:
            raise ConfigError(f"{source} holds one value per sample, but not class indices in 0..{classes - 1}; give labels or the model's {classes} scores per sample")
        return StageOutputs("pytorch", labels=flat[:, 0].astype(np.int64))
    raise ConfigError(
        f"{source} samples have shape {tuple(y.shape[1:])}; the model computes {classes} score(s) per sample: "
        f"give scores of shape ({n}, {classes}) or labels of shape ({n},)"
    )
