"""How each ONNX node runs in :mod:`flow.sim.execute`: on the whole batch, or once per sample.

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
from collections.abc import Mapping

import numpy as np
import onnxruntime as rt
from onnx import NodeProto, ValueInfoProto, helper
from qonnx.util.basic import qonnx_make_model

from flow.core.errors import UnsupportedOpError

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
# sums are exact (integer operands, checked by flow.sim.execute), else run per sample
SUMMING_OPS = frozenset(("MatMul", "Gemm", "Conv", "AveragePool", "GlobalAveragePool"))
# ops whose outputs only hold values of their first input (or integer padding)
DATA_MOVEMENT_OPS = frozenset(
    "Transpose Reshape Flatten Squeeze Unsqueeze Identity MaxPool MaxPoolNHWC Im2Col "
    "ConvolutionInputGenerator FMPadding StreamingFIFO StreamingDataWidthConverter".split()
)


def node_attr(node: NodeProto, name: str, default=None):
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
        return ins[0] in batched and params_const and not node_attr(node, "transA", 0)
    if op == "Flatten":
        return node_attr(node, "axis", 1) % max(rank, 1) != 0
    if op == "Transpose":
        perm = node_attr(node, "perm")
        return perm is not None and perm[0] == 0
    if op in ("Softmax", "LogSoftmax", "Hardmax"):
        return node_attr(node, "axis", 1 if opset < 13 else -1) % max(rank, 1) != 0
    if op in ("TopK", "ArgMax", "ArgMin"):
        return params_const and node_attr(node, "axis", -1 if op == "TopK" else 0) % max(rank, 1) != 0
    if op == "Concat":
        return all(i in batched for i in ins) and node_attr(node, "axis") % max(rank, 1) != 0
    return False


class Tensors:
    """Declared shapes/dtypes of a graph's tensors and which of them carry samples.

    A sample-carrying tensor declared ``(1, *rest)`` is held batched as ``(n, *rest)``;
    one declared without a leading 1 is held as ``(n, *declared)``.
    """

    def __init__(self, empty_ctx: dict, batched: set[str]):
        self.shape = {k: tuple(np.shape(v)) for k, v in empty_ctx.items()}
        self.dtype = {k: np.asarray(v).dtype for k, v in empty_ctx.items()}
        self.batched = batched

    def lead1(self, name: str) -> bool:
        return self.shape[name][:1] == (1,)

    def batched_shape(self, name: str, n: int) -> tuple:
        s = self.shape[name]
        return (n,) + s[1:] if self.lead1(name) else (n,) + s

    def sample(self, name: str, value, i: int):
        if name not in self.batched:
            return value
        return value[i : i + 1] if self.lead1(name) else value[i]


def graph_inputs(model) -> list[str]:
    """The graph's input names that are not initializers."""
    init = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in init]


def prepare_inputs(tensors: Tensors, names: list[str], inputs) -> tuple[dict[str, np.ndarray], int]:
    """``inputs`` (one array, or a dict by name) as arrays of the declared dtypes, samples first, and their number."""
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise ValueError(f"the model has inputs {names}; pass a dict of arrays by name")
        inputs = {names[0]: inputs}
    if set(inputs) != set(names):
        raise ValueError(f"inputs {sorted(inputs)} do not match the model's inputs {names}")
    feeds = {}
    for name, arr in inputs.items():
        arr, want = np.asarray(arr), tensors.shape[name]
        tail = want[1:] if tensors.lead1(name) else want
        if arr.shape[1:] != tail and arr.shape[1:] == want:
            arr = arr.reshape((arr.shape[0],) + tail)
        if arr.ndim == 0 or arr.shape[1:] != tail:
            want_str = ", ".join(map(str, ("N", *tail)))
            raise ValueError(f"input {name!r} has shape {arr.shape}; expected ({want_str})")
        feeds[name] = arr.astype(tensors.dtype[name], copy=False)
    sizes = {a.shape[0] for a in feeds.values()}
    if len(sizes) != 1:
        raise ValueError(f"inputs disagree on the number of samples: {sorted(sizes)}")
    return feeds, sizes.pop()


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
                if o and not same_output(t.sample(o, ctx[o], i), c[o]):
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


def same_output(batched_slice, single) -> bool:
    a, b = np.asarray(batched_slice), np.asarray(single)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _session_options() -> rt.SessionOptions:
    """FINN's (default) options, but with idle threads sleeping instead of spinning: many
    cached sessions with spinning thread pools compete for the cores and take long to
    shut down. The thread count, which can change Conv results, stays the default.

    Without the CPU memory arena: each cached session would keep an arena as large as its
    node's largest batch, and one session per node of a 224x224 network holds gigabytes.
    """
    opts = rt.SessionOptions()
    opts.enable_cpu_mem_arena = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def value_info_map(graph) -> dict[str, ValueInfoProto]:
    """The graph's ValueInfos by name (a value_info entry wins over an input or output of the same name)."""
    return {v.name: v for v in (*graph.input, *graph.output, *graph.value_info)}


#: The oldest ONNX opset a current exporter writes (torch.onnx's default floor; Brevitas exports 13 and up).
MIN_EXPORT_OPSET = 7


class OrtRunner(Runner):
    """A standard ONNX node run by onnxruntime, as FINN does, with its session cached."""

    def __init__(self, node, tensors, batchable, graph, opset, value_infos: dict | None = None):
        super().__init__(node, tensors, batchable)
        self.graph, self.opset, self._sessions = graph, opset, {}
        # ValueInfos by name (shared by all runners of a graph: building it per node is O(n^2))
        self._vis = value_infos if value_infos is not None else value_info_map(graph)
        try:
            self._session(False)
        except Exception as err:
            fix = "re-export the model with a current ONNX opset" if opset < MIN_EXPORT_OPSET else "re-export the model with Brevitas' export_qonnx"
            msg = f"node {node.name!r} ({node.op_type}) cannot be executed at opset {opset}: {' '.join(str(err).split())[:300]}; {fix}"
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
            elif not (shape[0] == -1 or (shape[0] == 0 and not node_attr(self.node, "allowzero", 0))):
                return False
            feeds[self.node.input[1]] = shape
        return self._store(ctx, self._run(self._session(True), feeds), n)
