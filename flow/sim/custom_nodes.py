"""Runners of qonnx and FINN custom ops (and of dataflow partitions) for :mod:`flow.sim.execute`.

A specialized hardware node (``MVAU_hls``, ``Thresholding_rtl``, ...) runs with its abstract
op's Python semantics on its own (specialized, bit-width-minimized) attributes, since
cppsim/rtlsim need vendor tools; :func:`semantics_class` finds that class.
"""

from __future__ import annotations

import logging

import numpy as np
from finn.custom_op.fpgadataflow.hlsbackend import HLSBackend
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from finn.custom_op.fpgadataflow.rtlbackend import RTLBackend
from onnx import GraphProto, NodeProto
from qonnx.custom_op.registry import getCustomOp

from flow.core.errors import UnsupportedOpError
from flow.core.vocab import impl_style, is_hw_node
from flow.sim.nodes import Runner

log = logging.getLogger(__name__)

# custom ops (by the class giving their Python semantics) whose execute_node is batch-safe
BATCH_SAFE_CUSTOM = frozenset(
    "Quant IntQuant BipolarQuant BinaryQuant Trunc FloatQuant MultiThreshold XnorPopcountMatMul "
    "MaxPoolNHWC QuantAvgPool2d Thresholding LabelSelect Pool FMPadding StreamingFIFO".split()
)
# Im2Col (and so ConvolutionInputGenerator) mixes up samples when N > 1 (qonnx 1.0.0);
# as it treats channels independently, the batch runs as one image with n*C channels.
CHANNEL_STACKED = frozenset(("Im2Col", "ConvolutionInputGenerator"))
STACKED_CHANNELS = 128
# custom ops that hard-code batch 1 in these attributes; a node copy gets the batch size
BATCH_ATTRS = {"StreamingDataWidthConverter": ("inShape", "outShape")}
# ops computing every pixel (row of the last axis) on its own, by a matmul with a constant: with
# exact integer sums, all pixels of all samples run as the rows of one matrix (FINN's own models
# multiply an (N, H, W, K) stack, which numpy splits into H small GEMMs per sample)
PIXEL_ROW_OPS = frozenset(("MVAU", "VVAU"))


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
        if impl_style(node) is not None:
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
        name = self.cls.__name__ if is_hw_node(node) else node.op_type
        self.pixel_rows = name in PIXEL_ROW_OPS and self._exact_sums(inst, name)
        if name in BATCH_ATTRS:
            self.batchable = batchable and self._can_adapt(inst, name)
        else:
            self.batchable = batchable and (self.pixel_rows or (ranks_align and name in BATCH_SAFE_CUSTOM | CHANNEL_STACKED))
        self.adapt = BATCH_ATTRS.get(name, ()) if self.batchable else ()
        self.stack_channels = name in CHANNEL_STACKED
        self.vvau = name == "VVAU"

    def _can_adapt(self, inst, name: str) -> bool:
        return all(list(inst.get_nodeattr(a))[:1] == [1] for a in BATCH_ATTRS[name])

    @staticmethod
    def _exact_sums(inst, name: str) -> bool:
        """True if every sum of the matmul is an exact float32 integer (integer operands, |sum| < 2**24),
        so its value cannot depend on how numpy splits or orders it."""
        idt, wdt = inst.get_input_datatype(0), inst.get_input_datatype(1)
        if not (idt.is_integer() and wdt.is_integer()):
            return False
        big = lambda dt: max(abs(dt.min()), abs(dt.max()))  # noqa: E731
        kh, kw = inst.get_nodeattr("Kernel") if name == "VVAU" else (1, 1)
        terms = kh * kw if name == "VVAU" else inst.get_nodeattr("MW")
        return terms * big(idt) * big(wdt) < 2**24

    def _instance(self, n: int | None, rows: int | None = None):
        key = (n, rows)
        if key not in self._insts:
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
            if rows is not None and not self.vvau:
                inst.set_nodeattr("numInputVectors", [rows])
            self._insts[key] = inst
        return self._insts[key]

    def _exec(self, ctx, n, rows: int | None = None):
        inst = self._instance(n, rows)
        self.cls.execute_node(inst, ctx, self.graph)

    def _run_rows(self, ctx) -> dict:
        """The node on every pixel of ``ctx``'s input as one matrix of rows; outputs shaped as ``ctx``'s buffers."""
        (i, *params), (o,) = [x for x in self.node.input if x], [x for x in self.node.output if x]
        x, shape = np.asarray(ctx[i]), np.shape(ctx[o])
        inst = self._instance(None)
        k = inst.get_nodeattr("Channels") * int(np.prod(inst.get_nodeattr("Kernel"))) if self.vvau else inst.get_nodeattr("MW")
        rows = x.size // k
        c = {p: ctx[p] for p in params}
        if self.vvau:  # VVAU reads (1, H, W, K): all pixels as one image row
            c[i], c[o] = x.reshape(1, 1, rows, k), np.zeros((1, 1, rows, shape[-1]), np.asarray(ctx[o]).dtype)
        else:
            c[i], c[o] = x.reshape(rows, k), np.zeros((rows, shape[-1]), np.asarray(ctx[o]).dtype)
        self._exec(c, None, rows)
        return {o: np.asarray(c[o]).reshape(shape)}

    def run_single(self, ctx):
        if self.pixel_rows:
            ctx.update(self._run_rows(ctx))
        else:
            self._exec(ctx, None)

    def run_batch(self, ctx, n):
        if self.pixel_rows:
            c = {i: ctx[i] for i in self.node.input if i}
            c.update(self._out_buffers(n))
            return self._store(ctx, self._run_rows(c), n)
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

    keep: set[str] | None = None  # tensors the caller wants (None: every tensor of the child)

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
        keep = None
        if self.keep is not None:
            prefix = f"{self.node.name}_"
            keep = {t for t in self.keep if t in self.child.batched_all} | {t[len(prefix):] for t in self.keep if t.startswith(prefix)}
        child_ctx = self.child.run(feeds, n, keep)
        for i, name in enumerate(self.node.output):
            ctx[name] = child_ctx[g.output[i].name]
        for k, v in child_ctx.items():
            ctx.setdefault(k, v)
            ctx[f"{self.node.name}_{k}"] = v
        return True

    def run(self, ctx, n):
        self.run_batch(ctx, n)
