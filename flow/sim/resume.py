"""One sample's forward pass, run again with a correction added to some node inputs.

:func:`flow.sim.rounding.replay_roundings` makes a reference graph round a few values the way
another graph did, one quantizer at a time, and needs the forward pass after each change. A
:class:`Resumable` run is planned once (one onnxruntime session per node, constants computed
once); :meth:`Resumable.rerun` adds a correction to a chosen node's input (only as that node reads
it: another reader of the same tensor sees it unchanged) and runs again. When the whole pass fits
a memory budget, every tensor is kept and only the nodes that read a changed value run again, so
a correction near the output costs a few nodes; a larger pass (a 224x224 network's) keeps only the
tensors asked for and runs the whole graph again. The values are those of
:func:`flow.sim.execute.execute_batched` on the graph with an ``Add`` of the correction in front
of each chosen node, bit for bit: the addition is float32's, as onnxruntime's ``Add``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.qonnx_linear import linear_qonnx
from flow.sim import nodes as xn
from flow.sim.execute import IN_FLIGHT_BYTES, Plan


class Resumable:
    """``model`` run on ``inputs`` (a batch, usually of one sample). ``keep``: the tensors :meth:`value` is asked
    for (besides the graph outputs); ``budget``: the most bytes the whole pass may take to be kept entire."""

    def __init__(self, model: ModelWrapper, inputs: np.ndarray | Mapping[str, np.ndarray], *,
                 keep: Iterable[str] = (), budget: int = IN_FLIGHT_BYTES):
        with linear_qonnx():
            self.plan = Plan(model)
        self.feeds, self.n = xn.prepare_inputs(self.plan.tensors, self.plan.inputs, inputs)
        self.keep = set(keep)
        #: True: every tensor is kept and a rerun runs only downstream of the change; False: only ``keep`` and
        #: the graph outputs are kept and a rerun runs the whole graph.
        self.kept_all = self.plan.bytes_per_sample(set(self.plan.batched_all)) * self.n <= budget
        step = {id(runner): k for k, (runner, _) in enumerate(self.plan.steps)}
        #: Per node of the graph (in graph order), its step in the run; None for an input-independent node.
        self.steps: list[int | None] = [step.get(id(r)) for r in self.plan.runners]
        self._added: dict[int, tuple[str, np.ndarray]] = {}
        self.ctx: dict[str, np.ndarray] = {}
        self._run(None)

    def value(self, name: str) -> np.ndarray:
        """The tensor ``name`` as the last run computed it (axis 0: samples)."""
        if not self.kept_all and name not in self.ctx and name in self.plan.batched_all:
            raise KeyError(f"tensor {name!r} was not kept; name it in keep")
        return self.plan.as_batch(name, self.ctx, self.n)

    def rerun(self, node_index: int, tensor: str, addend: np.ndarray) -> None:
        """From now on the graph's ``node_index``-th node reads ``tensor + addend`` (float32) in place of
        ``tensor`` (replacing an earlier addend of that node); the graph runs again from there."""
        k = self.steps[node_index]
        if k is None:
            raise ValueError(f"node {node_index} does not depend on the inputs; it has no run to repeat")
        self._added[k] = (tensor, np.asarray(addend, np.float32))
        self._run(k if self.kept_all else None)

    def _run(self, start: int | None) -> None:
        """Run every step (``start`` None: afresh), or the steps from ``start`` on that read a changed value."""
        plan = self.plan
        if start is None:
            self.ctx = plan.run(self.feeds, self.n, keep=None if self.kept_all else self.keep, added=self._added)
            return
        dirty: set[str] = set()
        for j in range(start, len(plan.steps)):
            node = plan.steps[j][0].node
            if j != start and not any(t in dirty for t in node.input):
                continue
            plan.run_step(j, self.ctx, self.n, added=self._added)
            dirty.update(o for o in node.output if o)
