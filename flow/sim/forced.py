"""Rounding ties between a graph and the PyTorch network it was exported from, proven quantizer by quantizer.

At 224x224 a network has millions of activations per image, and PyTorch and an ONNX
executor sum each conv in a different order: values within float32 error of a rounding
boundary round apart somewhere in nearly every image, and each such flip moves the outputs.
PyTorch runs, against themselves, differ so (another thread count, oneDNN off). Outputs alone
cannot tell that from a wrong export, and PyTorch has no graph to replay
(:mod:`flow.sim.rounding` replays between two graphs).

A reference that can run again (:attr:`flow.core.checks.StageOutputs.record`, a network in hand)
gives, for one sample, what each of its activation quantizers read. The graph's activation
quantizers pair with those calls in order (each the same shape); then the graph runs once with
every quantizer fed PyTorch's value, and each quantizer's own input, computed from PyTorch's
quantized values upstream, is checked against PyTorch's: every level on which they disagree
must lie within :data:`~flow.sim.rounding.KNIFE_EDGE` steps of a rounding boundary in both, and
few may. The graph's outputs, so fed, must then equal the run's within the float tolerance. A
wrong export computes some quantizer's input differently, far from any boundary, and fails.
"""

from __future__ import annotations

import copy

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from flow.core.checks import Recorded
from flow.sim.execute import execute_batched
from flow.sim.rounding import KNIFE_EDGE, MAX_DISAGREEMENT, Quantizer, few_of, quantizers

def _fed(model: ModelWrapper, qs: list[Quantizer]) -> tuple[ModelWrapper, list[tuple[str, str, str]]]:
    """``model`` with every quantizer of ``qs`` (and every other reader of its input) reading a new graph input, and
    a copy of the quantizer on the computed input beside it: per quantizer (fed input, computed input, own output)."""
    m = ModelWrapper(copy.deepcopy(model.model))
    readers: dict[str, list] = {}
    for node in m.graph.node:
        for t in node.input:
            readers.setdefault(t, []).append(node)
    names = []
    for i, q in enumerate(qs):
        fed, own = f"qflow_fed_{i}", f"qflow_own_{i}"
        for node in readers.get(q.inp, []):
            node.input[:] = [fed if t == q.inp else t for t in node.input]
        m.graph.input.append(helper.make_tensor_value_info(fed, TensorProto.FLOAT, model.get_tensor_shape(q.inp)))
        copy_of = copy.deepcopy(q.node)
        copy_of.name, copy_of.input[0], copy_of.output[0] = f"{q.node.name}_own", q.inp, own
        m.graph.node.append(copy_of)
        m.graph.value_info.append(helper.make_tensor_value_info(own, TensorProto.FLOAT, model.get_tensor_shape(q.out)))
        names.append((fed, q.inp, own))
    return m, names


def _agree(q: Quantizer, computed: np.ndarray, own: np.ndarray, fed: np.ndarray, fed_out: np.ndarray) -> bool:
    """The graph's input of ``q`` rounds as PyTorch's did, but for few values on a rounding boundary in both."""
    diff = q.levels(own) != q.levels(fed_out)
    if not diff.any():
        return True
    if np.count_nonzero(diff) > few_of(MAX_DISAGREEMENT, diff.size):
        return False
    return bool((q.margin(computed)[diff] <= KNIFE_EDGE).all() and (q.margin(fed)[diff] <= KNIFE_EDGE).all())


class FedQuantizers:
    """``model`` prepared to run with its activation quantizers fed a PyTorch run's values (module docstring)."""

    def __init__(self, model: ModelWrapper, scores: str):
        self.model, self.scores_tensor = model, scores
        self.quantizers = quantizers(model)
        self.fed, self.names = _fed(model, self.quantizers)

    def pairs(self, run: Recorded) -> bool:
        """True if the run's quantizer calls pair with the graph's quantizers, in order and shape."""
        seen = run.quantizer_inputs
        return bool(seen) and len(seen) == len(self.quantizers) and all(
            tuple(s.shape[1:]) == tuple(self.model.get_tensor_shape(q.inp)[1:]) for s, q in zip(seen, self.quantizers))

    def scores(self, x: np.ndarray, run: Recorded) -> np.ndarray | None:
        """The graph's scores on the one sample ``x`` with every quantizer fed the run's value; None when the calls
        do not pair, or a quantizer's own input rounds apart from PyTorch's away from a rounding boundary."""
        if not self.pairs(run):
            return None
        feeds = {self.model.graph.input[0].name: x}
        feeds.update({fed: s.astype(np.float32) for (fed, _, _), s in zip(self.names, run.quantizer_inputs)})
        wanted = [t for q, (_, computed, own) in zip(self.quantizers, self.names) for t in (computed, own, q.out)]
        out = execute_batched(self.fed, feeds, outputs=[*wanted, self.scores_tensor])
        for q, (_, computed, own), s in zip(self.quantizers, self.names, run.quantizer_inputs):
            if not _agree(q, out[computed], out[own], s, out[q.out]):
                return None
        return out[self.scores_tensor].reshape(1, -1)
