"""Verification inputs drawn at random over the full range of a model's input.

>>> from flow.sim.inputs import MAX_VERIFY_BYTES
>>> MAX_VERIFY_BYTES // 2**20
1024
"""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from flow.core.errors import ConfigError

#: Most bytes of verification inputs (float32) one build holds.
MAX_VERIFY_BYTES = 2**30


def input_sample_shape(model: ModelWrapper) -> tuple[int, ...]:
    """The shape of one sample of the graph's first input (the batch axis dropped)."""
    return tuple(int(d) for d in model.get_tensor_shape(model.graph.input[0].name)[1:])


def input_threshold_range(model: ModelWrapper) -> tuple[float, float] | None:
    """The span of the thresholds of the quantizer reading the float graph input (streamlined
    models: a ``MultiThreshold`` on the input, through data movement), or None."""
    todo = [model.graph.input[0].name]
    while todo:
        for node in model.find_consumers(todo.pop()):
            if node.op_type == "MultiThreshold":
                t = model.get_initializer(node.input[1])
                return (float(np.min(t)), float(np.max(t))) if t is not None and t.size else None
            if node.op_type in ("Transpose", "Reshape", "Flatten"):
                todo.append(node.output[0])
    return None


def random_inputs(model: ModelWrapper, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random samples over the full range of the graph input's integer datatype.

    A float input is drawn uniformly over the span of its quantizer's thresholds, widened by
    a quarter on each side (every quantization level and both saturations occur); UINT8
    when the model shows none.
    """
    name = model.graph.input[0].name
    dt = model.get_tensor_datatype(name)
    shape = input_sample_shape(model)
    span = None if dt.is_integer() else input_threshold_range(model)
    if not dt.is_integer():
        dt = DataType["UINT8"]
    per_sample = int(np.prod(shape)) if shape else 1
    if n * per_sample * 4 > MAX_VERIFY_BYTES:
        raise ConfigError(f"{n:,} random verification samples of {per_sample:,} values need more than {MAX_VERIFY_BYTES // 2**20} MiB; lower --samples")
    rng = np.random.default_rng(seed)
    if span is not None:
        lo, hi = span
        pad = max(hi - lo, 1e-3) / 4
        return rng.uniform(lo - pad, hi + pad, size=(n, *shape)).astype(np.float32)
    return rng.integers(int(dt.min()), int(dt.max()) + 1, size=(n, *shape)).astype(np.float32)


def executed_macs(model: ModelWrapper) -> int:
    """Multiply-accumulates of one input through the model's MatMul, Gemm and Conv nodes as executed,
    zero weights included (qonnx's ``inference_cost`` without its sparsity discount), from shapes alone:
    no weight is read, so a streamlined 224x224 graph with gigabytes of lowered depthwise weights costs nothing."""
    dims = {i.name: [int(d) for d in i.dims] for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or len(node.input) < 2:
            continue
        out, w = model.get_tensor_shape(node.output[0]), dims.get(node.input[1]) or model.get_tensor_shape(node.input[1])
        if not out or not w or len(w) < 2:
            continue
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        k = int(np.prod(w[1:])) if node.op_type == "Conv" else w[1] if node.op_type == "Gemm" and trans_b else w[-2]
        total += int(np.prod(out)) * k
    return total
