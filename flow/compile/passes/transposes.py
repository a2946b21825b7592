"""The layout Transposes FINN's conv lowering leaves between layers, pushed downstream in one sweep.

FINN lowers every conv to ``Transpose(NCHW->NHWC) -> Im2Col -> MatMul -> Transpose(NHWC->NCHW)``.
In a chain the pairs cancel inside FINN's streamlining; in a residual network a Transpose
meets a fork and a join in every block. FINN's passes move it one step each
(``MoveTransposePastFork``, ``MoveTransposePastJoinAdd``, ``AbsorbConsecutiveTransposes``,
``AbsorbTransposeIntoMultiThreshold``), and each step of one pass hands the Transpose to
another pass run after it, so the pass list must be repeated once per residual block: a
network of ``n`` nodes and ``b`` blocks took ``b`` rounds of O(n). :class:`PushTransposesDownstream`
makes the same four moves on each Transpose, in topological order, following it downstream
within one sweep, so every Transpose travels as far as those moves take it in O(n) in all.
"""

from __future__ import annotations

import heapq
import itertools

import qonnx.core.data_layout as DataLayout
from onnx import helper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from flow.compile.passes.graph import GraphEditor, attr, is_join_add

TO_NCHW = [0, 3, 1, 2]


def _perm(node, rank: int) -> list[int]:
    return list(attr(node, "perm", None) or list(range(rank))[::-1])


def _inverse(p: list[int], q: list[int]) -> bool:
    return len(p) == len(q) and all(p[q[i]] == i for i in range(len(q)))


class PushTransposesDownstream(Transformation):
    """Push every Transpose downstream as FINN's four moves do, following each in one sweep:

    * a Transpose whose consumers are all Transposes of the inverse perm cancels with them
      (``AbsorbConsecutiveTransposes``);
    * a forking Transpose becomes one copy per consumer (``MoveTransposePastFork``);
    * ``Transpose(perm [0, 3, 1, 2]) -> MultiThreshold`` becomes an NHWC MultiThreshold and the
      Transpose after it (``AbsorbTransposeIntoMultiThreshold``);
    * an Add of two Transposes with the same perm becomes the Add of their inputs and one
      Transpose (``MoveTransposePastJoinAdd``, equal perms only, as
      :class:`flow.compat.finn_streamline.MoveEqualTransposesPastJoinAdd`).

    A moved Transpose is queued again at its new place; nodes are visited in topological
    order, so the second input of a join is in place by the time its Transpose arrives.
    """

    def apply(self, model):
        ed = GraphEditor(model)
        self.ed, self.outputs = ed, {o.name for o in model.graph.output}
        self.rank = {id(n): float(k) for k, n in enumerate(ed.nodes)}
        self.queue: list = []
        self.tick = itertools.count()
        self.removed: set[int] = set()
        for n in ed.nodes:
            if n.op_type == "Transpose":
                self._push(n, self.rank[id(n)])
        while self.queue:
            _, _, t = heapq.heappop(self.queue)
            if id(t) not in self.removed and t.op_type == "Transpose":
                self._move(t)
        return ed.finish(), ed.changed

    def _push(self, node, rank: float) -> None:
        self.rank[id(node)] = rank
        heapq.heappush(self.queue, (rank, next(self.tick), node))

    def _remove(self, node) -> None:
        self.removed.add(id(node))
        self.ed.remove_node(node)
        self.ed.touch(node)

    def _move(self, t) -> None:
        ed, out = self.ed, t.output[0]
        cons = ed.find_consumers(out)
        shape = ed.get_tensor_shape(t.input[0])
        if out in self.outputs or not cons or shape is None:
            return
        p = _perm(t, len(shape))
        if all(c.op_type == "Transpose" and c.output[0] not in self.outputs and _inverse(p, _perm(c, len(p))) for c in cons):
            self._cancel(t, cons)
        elif len(cons) > 1:
            if all(c is cons[0] for c in cons):
                return
            self._split(t, cons)
        elif cons[0].op_type == "MultiThreshold" and p == TO_NCHW and cons[0].input[0] == out:
            self._past_threshold(t, cons[0], shape)
        elif is_join_add(ed, cons[0]):
            self._past_join(t, cons[0], shape, p)

    def _cancel(self, t, cons) -> None:
        ed, src = self.ed, t.input[0]
        for c in {id(c): c for c in cons}.values():
            for d in ed.find_consumers(c.output[0]):
                for i, name in enumerate(d.input):
                    if name == c.output[0]:
                        ed.rewire_input(d, i, src)
                ed.touch(d)
            self._remove(c)
        self._remove(t)

    def _split(self, t, cons) -> None:
        """One copy of ``t`` per further consumer (the first keeps ``t``)."""
        ed, out = self.ed, t.output[0]
        for c in cons[1:]:
            copy = helper.make_node("Transpose", list(t.input), [ed.new_tensor(out, ed.get_tensor_shape(out), ed.get_tensor_datatype(out), ed.get_tensor_layout(out))])
            copy.attribute.extend(t.attribute)
            copy = ed.add_node(copy)
            for i, name in enumerate(c.input):
                if name == out:
                    ed.rewire_input(c, i, copy.output[0])
                    break
            ed.touch(copy, c)
            self._push(copy, self.rank[id(t)])
        ed.touch(t)
        self._push(t, self.rank[id(t)])

    def _past_threshold(self, t, mt, shape) -> None:
        """``x -t-> MT -> y`` becomes ``x -> MT(NHWC) -> mid -t-> y``."""
        ed, y = self.ed, mt.output[0]
        getCustomOp(mt).set_nodeattr("data_layout", "NHWC")
        mid = ed.new_tensor(y, shape, ed.get_tensor_datatype(y), DataLayout.NHWC)
        ed.rewire_input(mt, 0, t.input[0])
        ed.rewire_output(mt, 0, mid)
        ed.rewire_input(t, 0, mid)
        ed.rewire_output(t, 0, y)
        ed.touch(t, mt)
        self._push(t, self.rank[id(mt)] + 0.5)

    def _past_join(self, t, add, shape, p) -> None:
        """``Add(t1(x1), t2(x2)) -> y`` with equal perms becomes ``t1(Add(x1, x2)) -> y``."""
        ed = self.ed
        prods = [ed.find_producer(i) for i in add.input]
        if any(q is None or q.op_type != "Transpose" or len(ed.find_consumers(q.output[0])) != 1 for q in prods):
            return  # the other input is not (yet) a Transpose of its own
        if any(_perm(q, len(p)) != p for q in prods):
            return
        y = add.output[0]
        mid = ed.new_tensor(y, shape, ed.get_tensor_datatype(y), ed.get_tensor_layout(prods[0].input[0]))
        ed.set_inputs(add, [q.input[0] for q in prods])
        ed.rewire_output(add, 0, mid)
        first = prods[0]
        ed.rewire_input(first, 0, mid)
        ed.rewire_output(first, 0, y)
        for q in prods[1:]:
            self._remove(q)
        ed.touch(add, first)
        self._push(first, self.rank[id(add)] + 0.5)
