"""The baseline of :mod:`flow.sim.execute`: FINN's own ``execute_onnx``, once per sample (for tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from finn.core.onnx_exec import execute_onnx
from qonnx.core.modelwrapper import ModelWrapper

from flow.sim.nodes import graph_inputs, prepare_inputs
from flow.sim.nodes import Tensors


def execute_reference(
    model: ModelWrapper,
    inputs: np.ndarray | Mapping[str, np.ndarray],
    *,
    outputs: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The baseline: FINN's ``execute_onnx`` once per sample, results stacked like
    :func:`execute_batched` (same input conventions). Slow; for tests and benchmarks.
    """
    tensors = Tensors(model.make_empty_exec_context(), set())
    in_names = graph_inputs(model)
    feeds, n = prepare_inputs(tensors, in_names, inputs)
    names = list(dict.fromkeys([o.name for o in model.graph.output] + list(outputs or [])))
    per_name: dict[str, list] = {name: [] for name in names}
    for i in range(n):
        sample = {k: v[i].reshape(tensors.shape[k]) for k, v in feeds.items()}
        ctx = execute_onnx(model, sample, return_full_exec_context=bool(outputs))
        for name in names:
            if name not in ctx:
                raise KeyError(f"tensor {name!r} not in FINN's execution context")
            per_name[name].append(np.asarray(ctx[name]))
    return {
        k: np.concatenate(v) if v and v[0].shape[:1] == (1,) else np.stack(v) for k, v in per_name.items()
    }
