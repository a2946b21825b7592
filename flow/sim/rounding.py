"""Rounding ties between two float stages: proving that a sample differs only by values on a rounding boundary.

Two float graphs of one network (QONNX and FINN-ONNX, say) compute each quantizer's input in
a different order (FINN multiplies the integer weights' scale in after the conv), so a value
whose exact result lies within float32 error of a rounding boundary can round up in one and
down in the other. Each such flip moves one activation by one level, and the difference grows
through the layers after it: at 224x224, with millions of activations per image, a network
with untrained (round) quantizer scales has about one such value per image.

:func:`replay_roundings` decides, for one sample, whether that is *all* that differs. It pairs
the quantizers of the two graphs (in graph order, by size and agreeing levels), finds the
first pair whose levels differ, and checks that every differing value lies within
:data:`KNIFE_EDGE` quantization steps of a rounding boundary *in both graphs*; it then makes the
reference round those values the way the other graph did (an ``Add`` of the difference right
in front of the reference's quantizer) and runs again the nodes downstream of it, until every
paired quantizer agrees. The reference with those roundings replayed is returned: when its outputs equal the
other stage's, the sample is a rounding tie. A wrong conversion changes values far from any
boundary, or leaves outputs that still differ, and is reported as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import get_by_name

from flow.sim.execute import execute_batched
from flow.sim.resume import Resumable

#: A value within this many quantization steps of a rounding boundary may round either way
#: between two float evaluation orders (float32 error is orders of magnitude below it).
KNIFE_EDGE = 1e-3
#: At most this share of a quantizer's distinct input values (or one value) may round apart for the difference to be
#: rounding ties: one knife-edge value computed at several positions (a padded border, a repeated pixel) rounds apart
#: at each of them, and counts once.
MAX_FLIP_SHARE = 1e-3
#: Paired quantizers may disagree on at most this share of their values (or one value).
MAX_DISAGREEMENT = 0.01


def few_of(share: float, size: int) -> int:
    """How many of ``size`` values ``share`` allows: at least one."""
    return max(1, int(share * size))


def _attr(node, name, default):
    a = get_by_name(node.attribute, name)
    return default if a is None else helper.get_attribute_value(a)


@dataclass(frozen=True)
class Quantizer:
    """One activation quantizer of a graph: a ``MultiThreshold``, a ``Quant`` or a ``BipolarQuant``."""

    node: object
    model: ModelWrapper

    @property
    def inp(self) -> str:
        return self.node.input[0]

    @property
    def out(self) -> str:
        return self.node.output[0]

    def _param(self, i: int, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.model.get_initializer(self.node.input[i]), np.float64), x.shape)

    @property
    def data_layout(self) -> str:
        """The node's ``data_layout`` attribute (a MultiThreshold's), or ``""`` without one."""
        layout = _attr(self.node, "data_layout", b"")
        return layout.decode() if isinstance(layout, bytes) else str(layout)

    def _channel_thresholds(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """The thresholds as (values with the channel axis last, channel axis of ``x``)."""
        t = np.asarray(self.model.get_initializer(self.node.input[1]), np.float64)
        layout = self.data_layout or {2: "NC", 3: "NWC", 4: "NCHW"}.get(x.ndim, "NC")
        return t, layout.index("C") if "C" in layout else 1

    def levels(self, out: np.ndarray) -> np.ndarray:
        """The integer level of every output value."""
        op = self.node.op_type
        if op == "MultiThreshold":
            return np.rint((out - _attr(self.node, "out_bias", 0.0)) / _attr(self.node, "out_scale", 1.0))
        if op == "BipolarQuant":
            return np.sign(out)
        return np.rint(out / self._param(1, out) + self._param(2, out))

    def margin(self, x: np.ndarray) -> np.ndarray:
        """How far every input value is from the nearest rounding boundary, in quantization steps."""
        x = x.astype(np.float64)
        op = self.node.op_type
        if op == "BipolarQuant":
            return np.abs(x / self._param(1, x))
        if op == "Quant":
            y = x / self._param(1, x) + self._param(2, x)
            mode = _attr(self.node, "rounding_mode", b"ROUND")
            mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
            frac = y - np.floor(y)
            return np.abs(frac - 0.5) if mode in ("ROUND", "HALF_EVEN", "HALF_UP", "HALF_DOWN") else np.minimum(frac, 1 - frac)
        t, axis = self._channel_thresholds(x)
        xm = np.moveaxis(x, axis, -1)  # (..., C) against thresholds (C or 1, T), one threshold at a time
        step = np.median(np.diff(t, axis=1), axis=1, keepdims=True) if t.shape[1] > 1 else np.maximum(np.abs(t), 1.0)
        step = np.maximum(step[:, 0], 1e-30)
        rounded = self.model.get_tensor_datatype(self.inp).is_integer()  # integer thresholds: one unit either way
        nearest = None
        for j in range(t.shape[1]):
            d = np.abs(xm - (t[:, j] if t.shape[0] > 1 else t[:1, j]))
            d = np.maximum(d - 1.0, 0.0) if rounded else d
            nearest = d if nearest is None else np.minimum(nearest, d, out=nearest)
        if nearest is None:
            raise ValueError(f"{self.node.name or self.node.op_type} has no thresholds")
        return np.moveaxis(nearest / step, -1, axis)

    def input_for(self, x: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """An input value that quantizes to ``levels`` (the middle of its interval)."""
        op = self.node.op_type
        if op == "BipolarQuant":
            return levels * self._param(1, x)
        if op == "Quant":
            mode = _attr(self.node, "rounding_mode", b"ROUND")
            mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
            inside = {"FLOOR": 0.5, "CEIL": -0.5}.get(mode, 0.0)  # the middle of the interval rounding to the level
            return (levels + inside - self._param(2, x)) * self._param(1, x)
        t, axis = self._channel_thresholds(x)
        tm = np.broadcast_to(t, (np.moveaxis(x, axis, -1).shape[-1], t.shape[1]))
        lv = np.moveaxis(levels, axis, -1).astype(np.int64)
        ch = np.broadcast_to(np.arange(tm.shape[0]), lv.shape)
        pad = np.concatenate([tm[:, :1] - 1.0, tm, tm[:, -1:] + 1.0], axis=1)  # below the first, above the last
        mid = (pad[ch, np.clip(lv, 0, tm.shape[1])] + pad[ch, np.clip(lv + 1, 0, tm.shape[1] + 1)]) / 2
        return np.moveaxis(mid, -1, axis)


def quantizers(model: ModelWrapper) -> list[Quantizer]:
    """The activation quantizers of ``model`` in graph order (a ``Quant`` of constant weights is none)."""
    return [q for _, q in _positions(model)]


def _positions(model: ModelWrapper) -> list[tuple[int, Quantizer]]:
    """:func:`quantizers`, each with its node's index in the graph."""
    constant = {t.name for t in model.graph.initializer}
    found = []
    for k, n in enumerate(model.graph.node):
        if n.op_type in ("MultiThreshold", "Quant", "BipolarQuant") and n.input[0] not in constant:
            if all(t in constant for t in n.input[1:]):
                found.append((k, Quantizer(n, model)))
    return found


def _layout_of(q: Quantizer, ndim: int) -> str:
    """The data layout of ``q``'s output: a MultiThreshold's ``data_layout``, else the tensor's layout annotation."""
    if q.node.op_type == "MultiThreshold" and q.data_layout:
        return q.data_layout
    layout = q.model.get_tensor_layout(q.out)
    if layout:
        return "".join(str(d) for d in layout)
    return {4: "NCHW"}.get(ndim, "")


#: Ops that only move values: a tensor reaches the graph output through them position by position.
_MOVES = frozenset({"Transpose", "Reshape", "DepthToSpace", "SpaceToDepth", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
#: Ops that change each value on its own (with a constant that does not grow the tensor): positions stay.
_ELEMENTWISE = frozenset({"Mul", "Add", "Sub", "Div"})


def _tail(model: ModelWrapper, tensor: str, shape: tuple[int, ...]) -> tuple[list, int] | None:
    """The nodes from ``tensor`` to a graph output when they only move or scale values one by one, and that output's
    index; None when another op (or a fork) comes first."""
    outputs = [o.name for o in model.graph.output]
    nodes = []
    while tensor not in outputs:
        consumers = model.find_consumers(tensor)
        if len(consumers) != 1 or len(nodes) > len(model.graph.node):
            return None
        n = consumers[0]
        if n.op_type in _ELEMENTWISE:
            other = [t for t in n.input if t != tensor]
            const = model.get_initializer(other[0]) if len(other) == 1 else None
            try:
                grows = const is None or np.broadcast_shapes(shape, const.shape) != shape
            except ValueError:  # shapes that do not broadcast
                grows = True
            if grows:
                return None
            nodes.append(helper.make_node("Identity", [tensor], [n.output[0]]))
        elif n.op_type in _MOVES and n.domain in ("", "ai.onnx"):
            nodes.append(n)
        else:
            return None
        tensor = n.output[0]
        shape = tuple(model.get_tensor_shape(tensor) or ())
    return nodes, outputs.index(tensor)


def _sources(q: Quantizer, shape: tuple[int, ...]) -> tuple[np.ndarray, int] | None:
    """For every value of the graph output ``q``'s output reaches by moves only, the flat index of the ``q`` output
    value it is (run on indices with onnx's reference evaluator), and the output's index; None when it is not so."""
    found = _tail(q.model, q.out, shape)
    if found is None:
        return None
    nodes, at = found
    indices = np.arange(int(np.prod(shape))).reshape(shape)
    if not nodes:
        return indices, at
    used = {t for n in nodes for t in n.input[1:]}
    inits = [i for i in q.model.graph.initializer if i.name in used]
    g = helper.make_graph(nodes, "moves", [helper.make_tensor_value_info(q.out, TensorProto.INT64, shape)],
                          [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.INT64, None)], inits)
    opsets = [o for o in q.model.model.opset_import if o.domain in ("", "ai.onnx")]
    (moved,) = ReferenceEvaluator(helper.make_model(g, opset_imports=opsets)).run(None, {q.out: indices})
    return np.asarray(moved), at


def _moved(ref: Quantizer, cur: Quantizer, a: np.ndarray, b: np.ndarray):
    """A function taking ``cur``'s outputs to ``ref``'s positions when both reach the same graph output through
    moves only (a quantizer streamlining moved past a pixel shuffle, say), or None."""
    if a.size != b.size:
        return None
    try:
        sr, sc = _sources(ref, a.shape), _sources(cur, b.shape)
    except Exception:  # noqa: BLE001 - an op the reference evaluator cannot run on indices: no pairing
        return None
    if sr is None or sc is None or sr[1] != sc[1] or sr[0].size != a.size or sr[0].shape != sc[0].shape:
        return None
    every = np.arange(a.size)
    if not all(np.array_equal(np.sort(src[0].reshape(-1)), every) for src in (sr, sc)):  # each output value is one of q's
        return None
    where = np.empty(a.size, np.int64)
    where[sr[0].reshape(-1)] = sc[0].reshape(-1)  # ref's value i is cur's value where[i]
    return lambda v: np.asarray(v).reshape(-1)[where].reshape(a.shape)


def _layout(ref: Quantizer, cur: Quantizer, a: np.ndarray, b: np.ndarray):
    """A function taking ``cur``'s ``b``-shaped outputs to ``ref``'s layout of ``a`` (e.g. NHWC -> NCHW), or None.

    The layouts come from the graphs, not the shapes: at C == H == W an NHWC tensor has an NCHW tensor's shape.
    Tensors of other shapes pair when both reach the graph output through moves alone (:func:`_moved`).
    """
    lr, lc = _layout_of(ref, a.ndim), _layout_of(cur, b.ndim)
    if a.ndim == b.ndim == 4 and sorted(lr) == sorted(lc) == sorted("NCHW") and lr != lc:
        perm = tuple(lc.index(d) for d in lr)
        if tuple(b.shape[i] for i in perm) == a.shape:
            return lambda v: np.transpose(v, perm)
    elif a.shape == b.shape:
        return lambda v: v
    return _moved(ref, cur, a, b)


@dataclass
class _Pair:
    ref: Quantizer
    cur: Quantizer
    to_ref: object
    offset: float


def _pair(qr: list[Quantizer], qc: list[Quantizer], ref: dict, cur: dict) -> list[_Pair]:
    """Quantizers of the two graphs matched in order: same size (up to NCHW/NHWC) and nearly all levels equal."""
    pairs, j = [], 0
    for q in qr:
        lr = q.levels(ref[q.out])
        for k in range(j, min(j + 3, len(qc))):
            c = qc[k]
            to_ref = _layout(q, c, lr, cur[c.out])
            if to_ref is None:
                continue
            lc = to_ref(c.levels(cur[c.out]))
            offset = float(np.median(lc - lr))
            if np.count_nonzero(lc - offset != lr) <= few_of(MAX_DISAGREEMENT, lr.size):
                pairs.append(_Pair(q, c, to_ref, offset))
                j = k + 1
                break
    return pairs


def _with_corrections(model: ModelWrapper, corrections: dict[int, np.ndarray]) -> ModelWrapper:
    """``model`` with ``Add(correction)`` in front of its ``i``-th quantizer for each ``i`` in ``corrections``."""
    m = ModelWrapper(model.model.__deepcopy__())
    for i, q in enumerate(quantizers(m)):
        if i not in corrections:
            continue
        n = q.node
        fixed, c = f"{n.input[0]}__rounded{i}", f"{n.input[0]}__rounding{i}"
        m.graph.initializer.append(numpy_helper.from_array(corrections[i].astype(np.float32), c))
        at = list(m.graph.node).index(n)
        m.graph.node.insert(at, helper.make_node("Add", [n.input[0], c], [fixed], name=f"{n.name or n.op_type}__replay{i}"))
        m.graph.value_info.append(helper.make_tensor_value_info(fixed, TensorProto.FLOAT, m.get_tensor_shape(n.input[0])))
        n.input[0] = fixed
    return m


@dataclass(frozen=True)
class Replay:
    """The reference with the other stage's roundings at ``flips`` knife-edge values, and where they were;
    ``run``: that model's run on the sample (the tensors it keeps, each as executing ``model`` computes it)."""

    model: ModelWrapper
    flips: int
    quantizers: tuple[str, ...]
    run: Resumable


def replay_roundings(ref_model: ModelWrapper, cur_model: ModelWrapper, x_ref: np.ndarray, x_cur: np.ndarray,
                     keep: Sequence[str] = ()) -> Replay | None:
    """The reference rounding like ``cur_model`` on one sample (``x_ref``/``x_cur``: a batch of 1 shaped for
    each graph), when every difference between their paired quantizers is a knife-edge value; None when a
    difference is not, or when the quantizers cannot be paired. ``flips`` 0: the quantizers already agree.
    ``keep``: tensors of the reference, besides its outputs, that the caller reads from ``Replay.run``.

    The reference is planned once and, where its whole pass fits in memory, only the nodes downstream of
    each correction run again (:class:`flow.sim.resume.Resumable`)."""
    found, qc = _positions(ref_model), quantizers(cur_model)
    if not found or not qc:
        return None
    live = [q for _, q in found]
    cur = execute_batched(cur_model, x_cur, outputs=[t for q in qc for t in (q.inp, q.out)])
    run = Resumable(ref_model, x_ref, keep=[*keep, *(t for q in live for t in (q.inp, q.out))])
    corrections: dict[int, np.ndarray] = {}
    flipped, where = 0, []
    for _ in range(len(live) + 1):
        ref = {q.out: run.value(q.out) for q in live}
        pairs = _pair(live, qc, ref, cur)  # again each round: a replayed rounding makes later layers agree
        if not pairs:
            return None
        for p in pairs:
            q = p.ref
            lr = q.levels(ref[q.out])
            lc = p.to_ref(p.cur.levels(cur[p.cur.out])) - p.offset
            diff = lc != lr
            if diff.any():
                break
        else:
            return Replay(_with_corrections(ref_model, corrections), flipped, tuple(where), run)
        i = live.index(q)
        before = run.value(q.inp)  # the run adds a correction only as the quantizer reads its input
        if np.unique(before[diff]).size > few_of(MAX_FLIP_SHARE, diff.size):  # the pairing caps the positions
            return None
        edge_ref = q.margin(before)[diff] <= KNIFE_EDGE
        edge_cur = p.to_ref(p.cur.margin(cur[p.cur.inp]))[diff] <= KNIFE_EDGE
        if not (edge_ref.all() and edge_cur.all()) or run.steps[found[i][0]] is None:
            return None  # (an input-independent quantizer is the same in every run: nothing to replay)
        corrections[i] = np.where(diff, q.input_for(before, lc) - before, corrections.get(i, np.zeros_like(before)))
        flipped += int(diff.sum())
        where.append(q.node.name or f"{q.node.op_type} #{i}")
        run.rerun(found[i][0], q.inp, corrections[i])
    return None
