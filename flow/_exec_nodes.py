"""How each ONNX node runs in :mod:`flow.execute`: on the whole batch, or once per sample.

A *runner* wraps one node. ``run_single(ctx)`` executes it exactly as FINN's
``execute_onnx`` does for one sample (declared batch-1 shapes); ``run_batch(ctx, n)``
executes it once on ``n`` samples stacked along axis 0 and returns False when it
cannot (the caller then loops ``run_single`` over the samples). Batched execution is
only attempted for ops known to compute every sample independently; its output
shapes are checked, and any failure demotes the node to the per-sample loop.

>>> from onnx import helper
>>> batchable_std_op(helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1]), {"x"}, 3, 13)
True
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as rt
from onnx import GraphProto, NodeProto, ValueInfoProto, helper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from flow.errors import UnsupportedOpError

log = logging.getLogger(__name__)

# elementwise ops with one correctly rounded IEEE operation per element, so the result of
# an element cannot depend on where it sits in the array (transcendental ops, whose SIMD
# and scalar-tail code may differ, run per sample)
_ELEMENTWISE = frozenset(
    "Abs Add And BitShift Cast Ceil Clip Div Equal Floor Greater GreaterOrEqual Identity IsInf "
    "IsNaN LeakyRelu Less LessOrEqual Max Min Mod Mul Neg Not Or PRelu Reciprocal Relu Round "
    "Sign Sqrt Sub Where Xor".split()
)
# ops whose first input is a batch of images/vectors and whose other inputs are parameters
_PER_ITEM = frozenset(
    "AveragePool BatchNormalization Conv GlobalAveragePool GlobalMaxPool MaxPool Reshape".split()
)
# ops that sum: onnxruntime picks their summation order by batch size and thread count
# (a 1-row MatMul uses another kernel than a many-row one; a Conv on one image splits its
# work differently over threads than a Conv on many), so they are batched only when their
# sums are exact (integer operands, checked by flow.execute), else run per sample
SUMMING_OPS = frozenset(("MatMul", "Gemm", "Conv", "AveragePool", "GlobalAveragePool"))
# custom ops (by the class giving their Python semantics) whose execute_node is batch-safe
BATCH_SAFE_CUSTOM = frozenset(
    "Quant IntQuant BipolarQuant BinaryQuant Trunc FloatQuant MultiThreshold XnorPopcountMatMul "
    "MaxPoolNHWC QuantAvgPool2d Thresholding LabelSelect Pool FMPadding StreamingFIFO".split()
)
# Im2Col (and so ConvolutionInputGenerator) mixes up samples when N > 1 (qonnx 1.0.0);
# as it treats channels independently, the batch runs as one image with n*C channels.
CHANNEL_STACKED = frozenset(("Im2Col", "ConvolutionInputGenerator"))
STACKED_CHANNELS = 128
# ops whose outputs only hold values of their first input (or integer padding)
DATA_MOVEMENT_OPS = frozenset(
    "Transpose Reshape Flatten Squeeze Unsqueeze Identity MaxPool MaxPoolNHWC Im2Col "
    "ConvolutionInputGenerator FMPadding StreamingFIFO StreamingDataWidthConverter".split()
)
# custom ops that hard-code batch 1 in these attributes; a node copy gets the batch size
BATCH_ATTRS = {"MVAU": ("numInputVectors",), "StreamingDataWidthConverter": ("inShape", "outShape")}


def _attr(node: NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def batchable_std_op(node: NodeProto, batched: set[str], rank: int, opset: int) -> bool:
    """True if standard op ``node`` computes each sample independently along axis 0.

    ``batched`` names the tensors that carry the sample axis; ``rank`` is the rank of
    the node's first input.
    """
    op, ins = node.op_type, [i for i in node.input if i]
    params_const = not any(i in batched for i in ins[1:])
    if any(a.type in (5, 10) for a in node.attribute):  # subgraphs
        return False
    if op in _ELEMENTWISE:
        return True
    if op in _PER_ITEM:
        return ins[0] in batched and params_const and len(node.output) == 1
    if op in ("MatMul", "Gemm"):
        return ins[0] in batched and params_const and not _attr(node, "transA", 0)
    if op == "Flatten":
        return _attr(node, "axis", 1) % max(rank, 1) != 0
    if op == "Transpose":
        perm = _attr(node, "perm")
        return perm is not None and perm[0] == 0
    if op in ("Softmax", "LogSoftmax", "Hardmax"):
        return _attr(node, "axis", 1 if opset < 13 else -1) % max(rank, 1) != 0
    if op in ("TopK", "ArgMax", "ArgMin"):
        return params_const and _attr(node, "axis", -1 if op == "TopK" else 0) % max(rank, 1) != 0
    if op == "Concat":
        return all(i in batched for i in ins) and _attr(node, "axis") % max(rank, 1) != 0
    return False


class Runner:
    """One node; subclasses implement ``run_single`` and, where safe, ``run_batch``.

    Both get a context holding the node's inputs and output buffers only (not the whole
    graph's tensors, which FINN passes): ops that read other tensors are not supported.
    """

    python_fallback = False  # True for *_hls/*_rtl nodes run through their Python model
    checked = False  # the batched result has been spot-checked
    mode: bool | None = None  # planned: True batched, False per sample, None run once

    def __init__(self, node: NodeProto, tensors, batchable: bool):
        self.node, self.tensors, self.batchable = node, tensors, batchable

    def run_single(self, ctx: dict) -> None:
        raise NotImplementedError

    def run_batch(self, ctx: dict, n: int) -> bool:
        return False

    def run(self, ctx: dict, n: int) -> None:
        """Execute on ``n`` samples held in ``ctx``, batched if possible.

        The first batched run is spot-checked against single-sample runs of the first
        and last sample; a mismatch demotes the node to the per-sample loop for good.
        """
        if self.batchable:
            try:
                if self.run_batch(ctx, n) and (self.checked or n < 2 or self._spot_check(ctx, n)):
                    self.checked = self.checked or n >= 2
                    return
            except Exception as err:  # noqa: BLE001 - any failure means: not batch-safe
                log.debug("node %s: batched run failed (%s); running per sample", self.node.name, err)
            self.batchable = False
        self._per_sample(ctx, n)

    def _spot_check(self, ctx: dict, n: int) -> bool:
        t = self.tensors
        for i in (0, n - 1):
            c = {name: t.sample(name, ctx[name], i) for name in self.node.input if name}
            c.update(self._out_buffers(None))
            self.run_single(c)
            for o in self.node.output:
                if o and not _same(t.sample(o, ctx[o], i), c[o]):
                    log.warning("node %s (%s): batched result differs from per-sample; running it per sample",
                                self.node.name, self.node.op_type)
                    return False
        return True

    def _out_buffers(self, n: int | None) -> dict:
        t = self.tensors
        return {
            o: np.zeros(t.shape[o] if n is None else t.batched_shape(o, n), t.dtype[o])
            for o in self.node.output
            if o
        }

    def _store(self, ctx: dict, outs: dict, n: int) -> bool:
        """Copy batched results into ``ctx`` if every shape is the expected batched shape."""
        for o, v in outs.items():
            if np.shape(v) != self.tensors.batched_shape(o, n):
                return False
        ctx.update(outs)
        return True

    def _per_sample(self, ctx: dict, n: int) -> None:
        t, res = self.tensors, {}
        for i in range(n):
            c = {name: t.sample(name, ctx[name], i) for name in self.node.input if name}
            c.update(self._out_buffers(None))
            self.run_single(c)
            for o in self.node.output:
                if not o:
                    continue
                v = np.asarray(c[o])
                if t.lead1(o) and v.shape[:1] != (1,):
                    raise RuntimeError(f"node {self.node.name!r} output {o!r} has shape {v.shape}, "
                                       f"declared {t.shape[o]}")
                if o not in res:
                    res[o] = np.empty((n,) + (v.shape[1:] if t.lead1(o) else v.shape), v.dtype)
                res[o][i] = v[0] if t.lead1(o) else v
        ctx.update(res)


def _same(batched_slice, single) -> bool:
    a, b = np.asarray(batched_slice), np.asarray(single)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _session_options() -> rt.SessionOptions:
    """FINN's (default) options, but with idle threads sleeping instead of spinning: many
    cached sessions with spinning thread pools compete for the cores and take long to
    shut down. The thread count, which can change Conv results, stays the default."""
    opts = rt.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


class OrtRunner(Runner):
    """A standard ONNX node run by onnxruntime, as FINN does, with its session cached."""

    def __init__(self, node, tensors, batchable, graph, opset):
        super().__init__(node, tensors, batchable)
        self.graph, self.opset, self._sessions = graph, opset, {}
        self._vis = {v.name: v for v in (*graph.input, *graph.output, *graph.value_info)}
        try:
            self._session(False)
        except Exception as err:
            msg = f"node {node.name!r} ({node.op_type}) cannot be executed: {err}"
            raise UnsupportedOpError(msg) from None

    def _vi(self, name: str, dynamic: bool) -> ValueInfoProto:
        vi = ValueInfoProto()
        if name in self._vis:
            vi.CopyFrom(self._vis[name])
        else:  # fall back to what execution knows about the tensor
            elem = helper.np_dtype_to_tensor_dtype(np.dtype(self.tensors.dtype[name]))
            vi.CopyFrom(helper.make_tensor_value_info(name, elem, self.tensors.shape[name]))
        if dynamic and name in self.tensors.batched and self.tensors.lead1(name):
            vi.type.tensor_type.shape.dim[0].dim_param = "N"
        return vi

    def _session(self, dynamic: bool):
        """A single-node model built the way qonnx's execute_node builds it."""
        if dynamic in self._sessions:
            return self._sessions[dynamic]
        node, graph = self.node, self.graph
        ins = [self._vi(i, dynamic) for i in dict.fromkeys(node.input) if i]
        for a in node.attribute:  # inputs that subgraphs read from the outer graph
            for sn in a.g.node if a.type == 5 else ():
                ins += [self._vi(v.name, dynamic) for v in graph.value_info if v.name in sn.input]
        outs = [self._vi(o, dynamic) for o in node.output if o]
        model = qonnx_make_model(helper.make_graph([node], "single-node-exec", ins, outs))
        model.opset_import[0].version = self.opset
        opts, providers = _session_options(), ["CPUExecutionProvider"]
        sess = rt.InferenceSession(model.SerializeToString(), opts, providers=providers)
        self._sessions[dynamic] = sess
        return sess

    def _run(self, sess, feeds: dict) -> dict:
        outs = sess.run(None, feeds)
        return dict(zip([o for o in self.node.output if o], outs))

    def run_single(self, ctx):
        ctx.update(self._run(self._session(False), {i: ctx[i] for i in self.node.input if i}))

    def run_batch(self, ctx, n):
        feeds = {i: ctx[i] for i in self.node.input if i}
        if self.node.op_type == "Reshape":
            shape = np.array(feeds[self.node.input[1]], copy=True)
            if shape[0] == 1:
                shape[0] = n
            elif not (shape[0] == -1 or (shape[0] == 0 and not _attr(self.node, "allowzero", 0))):
                return False
            feeds[self.node.input[1]] = shape
        return self._store(ctx, self._run(self._session(True), feeds), n)


def semantics_class(inst) -> tuple[type | None, bool]:
    """The class whose ``execute_node`` gives a node its Python semantics, and whether
    that is a fallback for a specialized (``*_hls``/``*_rtl``) node.

    A specialized node's own ``execute_node`` needs cppsim (Vitis HLS) or rtlsim (Vivado).
    Instead it runs the ``execute_node`` of its abstract base op (the HWCustomOp subclass
    in its MRO that is no HLS/RTL backend) with its own attributes and parameters: the
    semantics of the HW-layer graph before specialization. (The ``cppsim`` mode of some
    RTL classes is not used: ConvolutionInputGenerator_rtl's reorders channels for RTL
    consumers, which an HLS Pool's Python model would then misread.)
    """
    from finn.custom_op.fpgadataflow.hlsbackend import HLSBackend
    from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
    from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend

    backends = (HLSBackend, RTLBackend)
    cls = type(inst)
    if not issubclass(cls, backends):
        return cls, False
    for base in cls.__mro__:
        if issubclass(base, HWCustomOp) and not issubclass(base, backends) and base is not HWCustomOp:
            if not getattr(base.execute_node, "__isabstractmethod__", False):
                return base, True
    return None, True


def despecialized(graph: GraphProto) -> GraphProto:
    """A copy of ``graph`` with ``*_hls``/``*_rtl`` op types renamed to their base op, for
    Python models that inspect their neighbours (VVAU checks for a ConvolutionInputGenerator
    producer to know the input's channel order).
    """
    g = GraphProto()
    g.CopyFrom(graph)
    for node in g.node:
        if node.domain.startswith("finn.custom_op.fpgadataflow") and node.op_type.endswith(("_hls", "_rtl")):
            node.op_type = node.op_type[:-4]
    return g


class CustomRunner(Runner):
    """A qonnx/FINN custom op run through its Python ``execute_node``.

    Works on copies of the node, so the caller's model is never modified.
    """

    adapt: tuple[str, ...] = ()

    def __init__(self, node, tensors, batchable, ranks_align, graph, opset, base_graph):
        super().__init__(node, tensors, batchable)
        self.graph, self.opset, self._insts = graph, opset, {}
        inst = self._instance(None)
        self._insts.clear()
        self.cls, self.python_fallback = semantics_class(inst)
        if self.cls is None:
            raise UnsupportedOpError(
                f"node {node.name!r} ({node.op_type}) has no Python model; it runs only in "
                "cppsim/rtlsim, which need Vitis HLS/Vivado"
            )
        if self.python_fallback:
            self.graph = base_graph()
        name = self.cls.__name__ if node.domain.startswith("finn.custom_op.fpgadataflow") else node.op_type
        if name in BATCH_ATTRS:
            self.batchable = batchable and self._can_adapt(inst, name)
        else:
            self.batchable = batchable and ranks_align and name in BATCH_SAFE_CUSTOM | CHANNEL_STACKED
        self.adapt = BATCH_ATTRS.get(name, ()) if self.batchable else ()
        self.stack_channels = name in CHANNEL_STACKED

    def _can_adapt(self, inst, name: str) -> bool:
        if any(list(inst.get_nodeattr(a))[:1] != [1] for a in BATCH_ATTRS[name]):
            return False
        if name == "MVAU":  # numpy matmul is order-independent only while sums stay exact
            idt, wdt = inst.get_input_datatype(0), inst.get_input_datatype(1)
            if not (idt.is_integer() and wdt.is_integer()):
                return False
            big = lambda dt: max(abs(dt.min()), abs(dt.max()))  # noqa: E731
            return inst.get_nodeattr("MW") * big(idt) * big(wdt) < 2**24
        return True

    def _instance(self, n: int | None):
        if n not in self._insts:
            node = NodeProto()
            node.CopyFrom(self.node)
            try:
                inst = getCustomOp(node, onnx_opset_version=self.opset)
            except Exception as err:
                raise UnsupportedOpError(
                    f"node {self.node.name!r} ({self.node.op_type}, domain {self.node.domain!r}) "
                    f"is not a known custom op: {err}"
                ) from None
            if n is not None:
                for a in self.adapt:
                    inst.set_nodeattr(a, [n] + list(inst.get_nodeattr(a))[1:])
            self._insts[n] = inst
        return self._insts[n]

    def _exec(self, ctx, n):
        inst = self._instance(n)
        self.cls.execute_node(inst, ctx, self.graph)

    def run_single(self, ctx):
        self._exec(ctx, None)

    def run_batch(self, ctx, n):
        if self.stack_channels:
            return self._run_channel_stacked(ctx, n)
        c = {i: ctx[i] for i in self.node.input if i}
        c.update(self._out_buffers(n))
        self._exec(c, n if self.adapt else None)
        return self._store(ctx, {o: c[o] for o in self.node.output if o}, n)

    def _run_channel_stacked(self, ctx, n):
        """(g, H, W, C) -> one (1, H, W, g*C) image -> (1, OH, OW, K*g*C) -> (g, OH, OW, K*C),
        for groups of g samples with g*C <= STACKED_CHANNELS (Im2Col's index arrays, three
        int64 per output value, grow with g*C: large groups run slower than small ones)."""
        (i,), (o,) = [x for x in self.node.input if x], [x for x in self.node.output if x]
        x = ctx[i]
        if x.ndim != 4 or len(self.tensors.shape[o]) != 4:
            return False
        _, h, w, ch = x.shape
        group = max(1, STACKED_CHANNELS // ch)
        _, oh, ow, kc = self.tensors.shape[o]
        res = np.empty((n, oh, ow, kc), self.tensors.dtype[o])
        for s in range(0, n, group):
            g = min(group, n - s)
            c = {i: np.ascontiguousarray(x[s : s + g].transpose(1, 2, 0, 3)).reshape(1, h, w, g * ch)}
            c[o] = np.zeros((1, oh, ow, kc * g), self.tensors.dtype[o])
            self._exec(c, None)
            y = np.asarray(c[o]).reshape(oh, ow, kc // ch, g, ch).transpose(3, 0, 1, 2, 4)
            res[s : s + g] = y.reshape(g, oh, ow, kc)
            if res.dtype != c[o].dtype:
                return False
        return self._store(ctx, {o: res}, n)


class PartitionRunner(Runner):
    """A StreamingDataflowPartition/GenericPartition: its child model runs batched too.

    The child's tensors are merged into the parent context, under their own names
    (unless the parent has a tensor of that name) and as ``<node name>_<tensor>``.
    """

    def __init__(self, node, tensors, child_plan):
        super().__init__(node, tensors, True)
        self.child = child_plan
        for name in [*node.input, *node.output]:
            if name and not (name in tensors.shape and tensors.lead1(name)):
                msg = f"node {node.name!r} ({node.op_type}): tensor {name!r} has no batch axis"
                raise UnsupportedOpError(msg)

    def run_batch(self, ctx, n):
        g = self.child.model.graph
        feeds = {g.input[i].name: ctx[name] for i, name in enumerate(self.node.input)}
        child_ctx = self.child.run(feeds, n)
        for i, name in enumerate(self.node.output):
            ctx[name] = child_ctx[g.output[i].name]
        for k, v in child_ctx.items():
            ctx.setdefault(k, v)
            ctx[f"{self.node.name}_{k}"] = v
        return True

    def run(self, ctx, n):
        self.run_batch(ctx, n)
