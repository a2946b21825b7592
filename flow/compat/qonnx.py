"""Workarounds for qonnx 1.0.0 internals, each with its reason (tests/compat/test_qonnx.py shows each is still needed)."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import mmap
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onnx import GraphProto, ModelProto, TensorProto
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation import lower_convs_to_matmul as _lowering
from qonnx.util.inference_cost import inference_cost as _qonnx_inference_cost


_GRAPH, _INITIALIZER = 7, 5  # ModelProto.graph, GraphProto.initializer: field numbers


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _key(field: int, length: int) -> bytes:
    """A length-delimited field's tag and length."""
    return _varint(field << 3 | 2) + _varint(length)


def _without(src, skip: str, dst):
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        if fd.label == fd.LABEL_REPEATED:
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)
    return dst


def model_chunks(model: ModelWrapper) -> Iterator[bytes]:
    """``model``'s bytes in pieces (the model without weights, then each initializer as a graph of its own),
    which parse as the same model as ``SerializeToString()``: protobuf merges repeated occurrences of the graph.

    Reason: upb serializes a message into one buffer that it grows by copying, and Python copies the
    result into a ``bytes``: a 1.4 GB model (a 224x224 network's lowered depthwise weights) peaks at
    about 5 GB to serialize. In pieces, the peak is the model plus its largest initializer.
    """
    proto = model.model
    yield _without(proto, "graph", ModelProto()).SerializeToString()
    graph = _without(proto.graph, "initializer", GraphProto()).SerializeToString()
    yield _key(_GRAPH, len(graph))
    yield graph
    for init in proto.graph.initializer:
        data = init.SerializeToString()
        inner = _key(_INITIALIZER, len(data))
        yield _key(_GRAPH, len(inner) + len(data)) + inner
        yield data
        data = None  # not held while the next one is serialized


def _field_end(buf, pos: int) -> int:
    """Where the top-level protobuf field starting at ``pos`` ends."""
    def varint(i: int) -> tuple[int, int]:
        n = shift = 0
        while True:
            if i >= len(buf) or shift > 63:
                raise ValueError("not an ONNX model: a truncated protobuf field")
            b = buf[i]
            n |= (b & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if not b & 0x80:
                return n, i

    tag, pos = varint(pos)
    kind = tag & 7
    if kind == 0:
        return varint(pos)[1]
    if kind == 2:
        length, pos = varint(pos)
        end = pos + length
    elif kind in (1, 5):
        end = pos + (8 if kind == 1 else 4)
    else:
        raise ValueError(f"not an ONNX model: protobuf wire type {kind}")
    if end > len(buf):
        raise ValueError("not an ONNX model: a truncated protobuf field")
    return end


def read_model(path: str | Path) -> ModelWrapper:
    """The model in ``path`` in a new arena, parsed one top-level field at a time (a file of
    :func:`model_chunks`: one weight at a time), for a caller that has dropped the model it wrote.

    Reason: with protobuf's upb backend (the default), a message's memory lives in its arena
    until the whole message is freed. qonnx's ``set_initializer`` removes the old
    ``TensorProto`` and appends a new one, so every weight a pass rewrites stays allocated
    beside its replacement; a model rewritten in place by a long streamline grows by
    gigabytes on a 224x224 network with lowered depthwise convs. Parsing the model again
    starts an arena holding only what the model uses. And ``onnx.load`` would read the whole
    file into one ``bytes`` before parsing it, holding the model twice.
    """
    proto = ModelProto()
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise ValueError("not an ONNX model: the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos = 0
            while pos < len(buf):
                end = _field_end(buf, pos)
                proto.MergeFromString(buf[pos:end])
                pos = end
    return ModelWrapper(proto)


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and libc.malloc_trim and libc.mallopt else None
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return None


_GLIBC = _glibc()
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
    if _GLIBC is not None:
        _GLIBC.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK)


def release_memory() -> None:
    """Give the memory of freed models back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Reason: upb allocates a model's arena in blocks from the C heap, and glibc keeps freed
    heap memory for reuse instead of returning it. After a model of gigabytes is dropped
    (:func:`read_model`, a verified stage), the process would keep its peak size for the rest
    of the build.
    """
    if _GLIBC is not None:
        _GLIBC.malloc_trim(0)


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


class _Float32Array(np.ndarray):
    """An array whose cast to its own float32 is itself (qonnx casts the matrix it has just made)."""

    def astype(self, dtype, *args, **kwargs):
        if np.dtype(dtype) == self.dtype:
            return self.view(np.ndarray)
        return self.view(np.ndarray).astype(dtype, *args, **kwargs)


class _Float32Zeros:
    """numpy as qonnx's conv lowering sees it, with ``zeros`` in float32 (what the lowering casts its result to)."""

    def __getattr__(self, name: str):
        return getattr(np, name)

    @staticmethod
    def zeros(shape, dtype=np.float32, **kwargs):
        return np.zeros(shape, dtype, **kwargs).view(_Float32Array)


def _set_initializer_in_place(model: ModelWrapper, name: str, value: np.ndarray) -> None:
    """qonnx's ``set_initializer`` (the old entry removed, the new one last, its shape set), the tensor
    built where it stays: one copy of the weights in flight instead of three."""
    value = np.asarray(value)
    if value.dtype != np.float32:
        ModelWrapper.set_initializer(model, name, value)
        return
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        if init.name == name:
            del graph.initializer[i]
            break
    init = graph.initializer.add()
    init.dims.extend(value.shape)
    init.data_type = TensorProto.FLOAT
    init.raw_data = value.astype("<f4", copy=False).tobytes()  # little-endian, as onnx's from_array writes it
    init.name = name
    model.set_tensor_shape(name, list(value.shape), TensorProto.FLOAT)


def lower_convs_apply(self, model: ModelWrapper):
    """qonnx's ``LowerConvsToMatMul.apply`` with the same result, lighter on memory.

    Reason: for a depthwise conv it builds the dense (k*k*C) x C weight matrix in float64, casts,
    transposes and copies it, and ``set_initializer`` makes two more copies: a 7x7 depthwise conv
    over 1,536 channels (ProxylessNAS) holds about 3 GB at once for a 462 MB weight. Here the
    matrix starts in float32, is not cast again, and is written straight into the model.
    """
    saved = _lowering.np
    _lowering.np = _Float32Zeros()
    # a bound method: a copy of the model (qonnx's transform copies it) writes into the copy
    model.set_initializer = types.MethodType(_set_initializer_in_place, model)
    result = None
    try:
        result = _ORIGINAL_LOWER(self, model)
        return result
    finally:
        _lowering.np = saved
        for m in (model, result[0] if result else None):
            if m is not None:
                vars(m).pop("set_initializer", None)


_ORIGINAL_LOWER = _lowering.LowerConvsToMatMul.apply
