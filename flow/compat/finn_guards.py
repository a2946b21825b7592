"""finn-plus 1.6.1 streamlining passes that scan the graph once per candidate node even when they change nothing,
run only where they can change something.

FINN's reorder, absorb and collapse passes walk every node and, for each ``Mul`` or ``Add`` (or
``Transpose``, ``MatMul``, ``Conv``), ask ``is_fork_node``, ``is_join_node`` and
``find_consumer``: each a scan of the whole graph. qonnx's ``transform`` repeats a pass until it
reports no change, so every pass runs at least once more over a graph where it finds nothing:
O(nodes^2) per pass for nothing, and FINN's ``Streamline`` runs 22 of them (twice). On a residual
chain of 80 blocks that is 17,000 consumer and 16,000 producer scans.

Each pass changes the graph only at a pattern of node types: an ``Add`` whose output feeds a
``Mul`` (``MoveAddPastMul``), a ``Mul`` feeding a ``MultiThreshold``, a ``Mul`` or ``Add`` whose
output forks, a ``BatchNormalization``... :data:`GUARDS` names, for each pass, a test of that
pattern with some of the fork, join and constant conditions FINN checks next, and none it does
not: every graph FINN's pass would change (or warn about, or fail on) passes the test. One sweep
over the graph builds the consumer and producer index, and the test looks each candidate up in
it. Where no candidate exists, FINN's pass would change nothing and end with its closing
inference (``InferShapes``, and ``InferDataTypes`` for some): only that runs. Anywhere else
FINN's own ``apply`` runs, unchanged; for the passes of :data:`ON_LIST_VIEW` on a view whose lookups are
dictionaries kept current as the pass rewires (:mod:`flow.compat.qonnx_view`).
So the model is FINN's, byte for byte;
``tests/compat/test_finn_guards.py`` compares whole streamlining runs with and without the
guards, and counts the scans FINN's passes make for nothing.

FINN's ``Streamline`` tidies the graph up after each of its 22 passes (``RemoveIdentityOps``,
node and tensor names, datatypes, layouts: five whole-graph passes, each with qonnx's cleanup).
After a guarded pass that found nothing on a graph the last tidy-up left, the graph is that
graph with its shapes inferred again, on which the tidy-up changes nothing:
:func:`streamline_apply` skips it there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from onnx import numpy_helper
from finn.transformation.streamline import Streamline, absorb, collapse_repeated, reorder
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.batchnorm_to_affine import BatchNormToAffine
from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.remove import RemoveIdentityOps

from flow.compat.qonnx_view import on_list_view


class Wiring:
    """One sweep of a graph: each tensor's readers (once per input that reads it, as qonnx's ``find_consumers``),
    the initializers and the graph outputs."""

    def __init__(self, model: ModelWrapper):
        self.model = model
        self.nodes = list(model.graph.node)
        self.inits = {i.name: i for i in model.graph.initializer}
        self.inputs = {i.name for i in model.graph.input}
        self.outputs = {o.name for o in model.graph.output}
        self.readers: dict[str, list] = {}
        self.producer: dict[str, object] = {}
        for n in self.nodes:
            for t in n.input:
                self.readers.setdefault(t, []).append(n)
            for t in n.output:
                self.producer.setdefault(t, n)  # the first, as find_producer

    def of(self, *ops: str) -> list:
        return [n for n in self.nodes if n.op_type in ops]

    def feeds(self, first: str, then: str) -> bool:
        """True if some ``first`` node's first output is read by a ``then`` node."""
        return any(r.op_type == then for n in self.of(first) for r in self.readers.get(n.output[0], ()))

    def forks(self, node) -> bool:
        """qonnx's ``is_fork_node``: more than one reader of its outputs, or one when its first output is a graph output."""
        readers = sum(len(self.readers.get(t, ())) for t in node.output)
        return readers > 0 if node.output[0] in self.outputs else readers > 1

    def joins(self, node) -> bool:
        """qonnx's ``is_join_node``: more than one input computed by a node, or one when its first input is a graph input."""
        computed = sum(1 for t in node.input if t in self.producer)
        return computed > 0 if node.input[0] in self.inputs else computed > 1

    def linear(self, first: str, then: str, reader_joins: bool = True) -> list[tuple]:
        """(node, reader) for every ``first`` node, neither fork nor join, whose output a ``then`` node reads (one that is
        no join unless ``reader_joins``): where FINN's single-path reorder and absorb passes look further."""
        found = []
        for n in self.of(first):
            if self.forks(n) or self.joins(n):
                continue
            found += [(n, r) for r in self.readers.get(n.output[0], ()) if r.op_type == then and (reader_joins or not self.joins(r))]
        return found

    def constant(self, tensor: str) -> np.ndarray | None:
        init = self.inits.get(tensor)
        return None if init is None else numpy_helper.to_array(init)


def _params_unset(w: Wiring, op: str) -> bool:
    """True if some ``op`` node has no constant second input: FINN's pass then fails (or skips) as it does, so it runs."""
    return any(len(n.input) < 2 or n.input[1] not in w.inits for n in w.of(op))


def _unset_perm(w: Wiring) -> bool:
    """A Transpose without ``perm``: FINN's ``AbsorbTransposeIntoMultiThreshold`` fails on it, so it runs."""
    return any(all(a.name != "perm" for a in n.attribute) for n in w.of("Transpose"))


def _signed_mul(w: Wiring) -> bool:
    """``FactorOutMulSignMagnitude``: a Mul whose constant has a negative entry (or no constant: FINN asserts)."""
    return _params_unset(w, "Mul") or any(bool((w.constant(n.input[1]) < 0).any()) for n in w.of("Mul"))


def _linear_pair_into_add(w: Wiring) -> bool:
    """``MoveLinearPastEltwiseAdd``: an Add of two computed tensors from two Adds with constants, or from two Muls with
    equal constants."""
    for n in w.of("Add"):
        if len(n.input) < 2 or n.input[0] in w.inits or n.input[1] in w.inits:
            continue
        a, b = w.producer.get(n.input[0]), w.producer.get(n.input[1])
        if a is None or b is None or a is b or len(a.input) < 2 or len(b.input) < 2:
            continue
        ca, cb = w.constant(a.input[1]), w.constant(b.input[1])
        if ca is None or cb is None:
            continue
        if (a.op_type, b.op_type) == ("Add", "Add") or ((a.op_type, b.op_type) == ("Mul", "Mul") and np.array_equal(ca, cb)):
            return True
    return False


def _scalar_or_unset(w: Wiring, tensor: str) -> bool:
    """A constant of one value (FINN moves it), or none (FINN warns, or fails)."""
    c = w.constant(tensor)
    return c is None or all(d == 1 for d in c.shape)


def _one_bit_mul_after(w: Wiring, op: str) -> bool:
    """``Absorb1BitMulInto{MatMul,Conv}``: an ``op`` with constant weights, no fork, whose output a Mul by a 1-bit
    constant reads."""
    for n in w.of(op):
        if w.forks(n) or n.input[1] not in w.inits:
            continue
        for r in w.readers.get(n.output[0], ()):
            if r.op_type == "Mul" and len(r.input) > 1 and r.input[1] in w.inits and w.model.get_tensor_datatype(r.input[1]).bitwidth() == 1:
                return True
    return False


SHAPES = (InferShapes,)
SHAPES_AND_TYPES = (InferShapes, InferDataTypes)

#: pass: (may it change this graph?, what its apply runs at its end whatever it found).
GUARDS: dict[type, tuple[Callable[..., bool], tuple]] = {
    reorder.MoveScalarMulPastMatMul: (lambda p, w: w.feeds("Mul", "MatMul"), SHAPES),
    reorder.MoveScalarAddPastMatMul: (lambda p, w: w.feeds("Add", "MatMul"), SHAPES),
    reorder.MoveScalarMulPastConv: (lambda p, w: any(_scalar_or_unset(w, n.input[1]) for n, _ in w.linear("Mul", "Conv", False)), SHAPES),
    reorder.MoveAddPastConv: (lambda p, w: w.feeds("Add", "Conv"), SHAPES),
    reorder.MoveMulPastMaxPool: (lambda p, w: w.feeds("Mul", "MaxPool"), SHAPES),
    reorder.MoveAddPastMul: (lambda p, w: bool(w.linear("Add", "Mul", False)), SHAPES_AND_TYPES),
    collapse_repeated.CollapseRepeatedOp: (lambda p, w: w.feeds(p.op_name, p.op_name), SHAPES),
    reorder.MoveOpPastFork: (lambda p, w: any(w.forks(n) for n in w.of(*p.ops_to_move)), SHAPES),
    reorder.MoveLinearPastEltwiseAdd: (lambda p, w: _linear_pair_into_add(w), SHAPES_AND_TYPES),
    absorb.AbsorbMulIntoMultiThreshold: (lambda p, w: _params_unset(w, "Mul") or w.feeds("Mul", "MultiThreshold"), ()),
    absorb.AbsorbAddIntoMultiThreshold: (lambda p, w: bool(w.linear("Add", "MultiThreshold")), ()),
    absorb.AbsorbTransposeIntoMultiThreshold: (lambda p, w: _unset_perm(w) or w.feeds("Transpose", "MultiThreshold"), ()),
    absorb.FactorOutMulSignMagnitude: (lambda p, w: _signed_mul(w), ()),
    absorb.Absorb1BitMulIntoMatMul: (lambda p, w: _one_bit_mul_after(w, "MatMul"), ()),
    absorb.Absorb1BitMulIntoConv: (lambda p, w: _one_bit_mul_after(w, "Conv"), ()),
    BatchNormToAffine: (lambda p, w: bool(w.of("BatchNormalization")), SHAPES),
}

#: FINN's passes with no guard that run on the list view (FINN's ``Streamline`` and qflow's structure passes run
#: them on every graph): their ``apply`` scans the graph per candidate node, and rewires nodes in place.
VIEW_ONLY = (absorb.AbsorbConsecutiveTransposes, reorder.MoveScalarLinearPastInvariants)
#: FINN's own ``apply`` of each guarded pass, and of each pass of :data:`VIEW_ONLY`.
ORIGINAL = {cls: cls.__dict__["apply"] for cls in (*GUARDS, *VIEW_ONLY)}
#: The passes that, where their pattern occurs, run FINN's ``apply`` on a :class:`~flow.compat.qonnx_view.ListView`
#: (lookups by dictionary, in-place rewiring seen through its watched nodes): those that builds of TFC, a MobileNet
#: slice and residual blocks exercise, each compared with FINN's byte for byte in ``tests/compat/test_qonnx_view.py``.
#: :data:`VIEW_ONLY` names two more, which have no guard. The rest run as FINN's; ``MoveAddPastConv`` could not
#: (it executes a node of the graph with onnxruntime, and a watched node is no ``NodeProto``).
ON_LIST_VIEW = (
    reorder.MoveScalarMulPastMatMul,
    reorder.MoveScalarMulPastConv,
    reorder.MoveOpPastFork,
    reorder.MoveLinearPastEltwiseAdd,
    collapse_repeated.CollapseRepeatedOp,
    absorb.AbsorbMulIntoMultiThreshold,
    absorb.AbsorbAddIntoMultiThreshold,
    absorb.AbsorbTransposeIntoMultiThreshold,
    BatchNormToAffine,
)


def _guarded(cls: type):
    may_change, tail = GUARDS[cls]
    original = on_list_view(ORIGINAL[cls]) if cls in ON_LIST_VIEW else ORIGINAL[cls]

    def apply(self, model: ModelWrapper):
        if may_change(self, Wiring(model)):
            self.__dict__["qflow_ran"] = True  # FINN's pass ran: the graph may have changed
            return original(self, model)
        for step in tail:
            model = model.transform(step())
        return model, False

    apply.__doc__ = f"FINN's ``{cls.__name__}.apply``, run only where its pattern occurs (:mod:`flow.compat.finn_guards`)."
    return apply


#: What FINN's ``Streamline`` runs after every pass, in its order.
TIDY_UP = (RemoveIdentityOps, GiveUniqueNodeNames, GiveReadableTensorNames, InferDataTypes, InferDataLayouts)
STREAMLINE = Streamline.apply
_STREAMLINING = threading.Lock()


def streamline_apply(self: Streamline, model: ModelWrapper):
    """FINN's ``Streamline.apply``, its tidy-up skipped after a guarded pass that found nothing on a tidy graph.

    Only the calls FINN's ``apply`` makes itself are looked at (a pass's own inference runs as it is);
    the graph counts as tidy once a whole tidy-up has run on it, until a pass that is not guarded, or
    a guarded one whose pattern occurred, runs. FINN's passes and qonnx's return new wrappers of the
    same graph, so ``ModelWrapper.transform`` itself is wrapped while the pass runs, for this thread
    (one streamlining at a time; another thread's runs FINN's as it is)."""
    if not _STREAMLINING.acquire(blocking=False):
        return STREAMLINE(self, model)
    real, me = ModelWrapper.transform, threading.get_ident()
    graph = model.model
    state = {"depth": 0, "tidy": False, "skip": False}

    def transform(wrapper, transformation, *args, **kwargs):
        if threading.get_ident() != me:
            return real(wrapper, transformation, *args, **kwargs)
        kind = type(transformation)
        outer = state["depth"] == 0 and wrapper.model is graph
        if outer and kind in TIDY_UP:
            if kind is TIDY_UP[0]:
                state["skip"] = state["tidy"]
            if state["skip"]:
                return wrapper
        state["depth"] += 1
        try:
            result = real(wrapper, transformation, *args, **kwargs)
        finally:
            state["depth"] -= 1
        if outer:
            same = result.model is graph
            if kind is TIDY_UP[-1]:
                state["tidy"] = same
            elif kind not in TIDY_UP:
                guarded = any(issubclass(kind, cls) for cls in GUARDS)
                state["tidy"] = state["tidy"] and same and guarded and not transformation.__dict__.get("qflow_ran", False)
        return result

    ModelWrapper.transform = transform
    try:
        return STREAMLINE(self, model)
    finally:
        ModelWrapper.transform = real
        _STREAMLINING.release()


#: (owner, attribute, replacement) for :mod:`flow.compat.qonnx_linear`.
REPLACEMENTS = (
    *((cls, "apply", _guarded(cls)) for cls in GUARDS),
    *((cls, "apply", on_list_view(ORIGINAL[cls])) for cls in VIEW_ONLY),
    (Streamline, "apply", streamline_apply),
)
