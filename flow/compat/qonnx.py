"""Workarounds for qonnx 1.0.0 internals, each with its reason (tests/compat/test_qonnx.py shows each is still needed)."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.inference_cost import inference_cost as _qonnx_inference_cost


def compacted_from(serialized: bytes) -> ModelWrapper:
    """The model of ``serialized`` (a model's bytes) in a new arena, for a caller that has dropped the old model.

    Reason: with protobuf's upb backend (the default), a message's memory lives in its arena
    until the whole message is freed. qonnx's ``set_initializer`` removes the old
    ``TensorProto`` and appends a new one, so every weight a pass rewrites stays allocated
    beside its replacement. A model rewritten in place by a long streamline (hundreds of
    weight moves) grows by gigabytes on a 224x224 network with lowered depthwise convs.
    Parsing the model's bytes again starts a new arena holding only what the model uses; the
    old one is freed when the caller drops it.
    """
    return ModelWrapper(serialized)


def _libc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _libc_trim()
#: glibc's ``M_MMAP_THRESHOLD`` (mallopt's parameter number) and the size from which freed blocks go back at once.
_M_MMAP_THRESHOLD, LARGE_BLOCK = -3, 1 << 20


def return_large_blocks() -> None:
    """Have glibc give every freed block of :data:`LARGE_BLOCK` bytes or more straight back to the system.

    Reason: glibc raises its mmap threshold each time a large block is freed (up to 32 MiB),
    so later weights and activations of up to 32 MiB come from the heap, and stay with the
    process after they are freed whenever a live block sits above them. A 224x224 build
    allocates thousands of them and would hold the sum of their peaks. A fixed threshold
    keeps large blocks on their own mappings. Process-wide; elsewhere than glibc nothing.
    """
    if _MALLOC_TRIM is not None:
        ctypes.CDLL(ctypes.util.find_library("c")).mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK)


def release_memory() -> None:
    """Give the memory of freed models back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Reason: upb allocates a model's arena in blocks from the C heap, and glibc keeps freed
    heap memory for reuse instead of returning it. After a model of gigabytes is dropped
    (:func:`compacted_from`, a verified stage), the process would keep its peak size for the rest
    of the build.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def with_unit_bipolar_scales(model: ModelWrapper) -> ModelWrapper:
    """``model`` with every BipolarQuant scale set to 1.

    Reason: qonnx's datatype inference types a BipolarQuant with a non-unit scale (Brevitas
    exports a per-tensor or per-channel one) as FLOAT32, so ``inference_cost`` counts those
    weights as 32-bit. Costs depend on datatypes and shapes only, and a unit scale makes the
    node BIPOLAR.
    """
    for node in model.get_nodes_by_op_type("BipolarQuant"):
        scale = model.get_initializer(node.input[1])
        if scale is not None and not np.all(scale == 1.0):
            model.set_initializer(node.input[1] + "_unit", np.ones_like(scale))
            node.input[1] += "_unit"
    return model


def inference_cost(model: str | Path | ModelWrapper, *, discount_sparsity: bool) -> dict[str, Any]:
    """qonnx's ``inference_cost`` of ``model`` (a loaded model, left unchanged, or a model file qflow wrote),
    BipolarQuant weights counted as 1-bit.

    Reason for the warning filter (scoped to this call): qonnx warns for every tensor its
    datatype sanitizer touches while costing; the numbers are unaffected.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ModelWrapper(copy.deepcopy(model.model)) if isinstance(model, ModelWrapper) else ModelWrapper(str(model))
        return _qonnx_inference_cost(with_unit_bipolar_scales(m), discount_sparsity=discount_sparsity)
