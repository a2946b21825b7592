"""One sample's whole forward pass, kept, to run again downstream of a changed node input.

:func:`flow.sim.rounding.replay_roundings` makes a reference graph round a few values the way
another graph did, one quantizer at a time, and needs the forward pass after each change. Built
once, a :class:`Resumable` run holds every tensor of the pass; :meth:`Resumable.rerun` adds a
correction to chosen nodes' inputs (only as those nodes read them: another reader of the same
tensor sees it unchanged) and runs again only the nodes that read a changed value, so a
correction near the output costs a few nodes, not the whole graph. The values are those of
:func:`flow.sim.execute.execute_batched` on the graph with an ``Add`` of the correction in front
of each chosen node, bit for bit: the addition is float32's, as onnxruntime's ``Add``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.qonnx_linear import linear_qonnx
from flow.sim import nodes as xn
from flow.sim.execute import Plan


class Resumable:
    """``model`` run on ``inputs`` (a batch, usually of one sample) with every tensor kept."""

    def __init__(self, model: ModelWrapper, inputs: np.ndarray | Mapping[str, np.ndarray]):
        with linear_qonnx():
            self.plan = Plan(model)
        feeds, self.n = xn.prepare_inputs(self.plan.tensors, self.plan.inputs, inputs)
        self.ctx = self.plan.run(feeds, self.n)  # no ``keep``: every tensor stays
        step = {id(runner): k for k, (runner, _) in enumerate(self.plan.steps)}
        #: Per node of the graph (in graph order), its step in the run; None for an input-independent node.
        self.steps: list[int | None] = [step.get(id(r)) for r in self.plan.runners]
        self._added: dict[int, tuple[str, np.ndarray]] = {}

    def value(self, name: str) -> np.ndarray:
        """The tensor ``name`` as this run computed it (axis 0: samples)."""
        return self.plan.as_batch(name, self.ctx, self.n)

    def rerun(self, node_index: int, tensor: str, addend: np.ndarray) -> None:
        """From now on the graph's ``node_index``-th node reads ``tensor + addend`` (float32) in place of
        ``tensor`` (replacing an earlier addend of that node); the nodes whose inputs change run again."""
        k = self.steps[node_index]
        if k is None:
            raise ValueError(f"node {node_index} does not depend on the inputs; it has no run to repeat")
        self._added[k] = (tensor, np.asarray(addend, np.float32))
        dirty: set[str] = set()
        for j in range(k, len(self.plan.steps)):
            runner, outs = self.plan.steps[j]
            if j != k and not any(t in dirty for t in runner.node.input):
                continue
            added = self._added.get(j)
            if added is None:
                runner.run(self.ctx, self.n)
            else:
                name, plus = added
                kept = self.ctx[name]
                self.ctx[name] = kept + plus
                try:
                    runner.run(self.ctx, self.n)
                finally:
                    self.ctx[name] = kept
            self.plan.sanitize_values(outs, self.ctx)
            dirty.update(o for o in runner.node.output if o)
