"""Fast batched execution of QONNX / FINN-ONNX / FINN dataflow graphs, bit-exact with FINN.

FINN graphs are batch-1, and ``finn.core.onnx_exec.execute_onnx`` runs one sample at a
time, building a new onnxruntime session for every standard node on every call.
:func:`execute_batched` computes the same values, bit for bit, for many samples at once:

* standard ONNX nodes run through onnxruntime on the whole batch (one cached session
  per node, batch dim made dynamic) when the op computes each sample independently.
  Ops that sum (MatMul, Gemm, Conv, average pooling) are batched only when their sums
  are exact (integer operands): onnxruntime picks a different summation order for one
  sample than for many, so float ones run per sample;
* batch-safe custom ops (Quant, MultiThreshold, Thresholding, Pool, LabelSelect, ...) run
  their Python ``execute_node`` on the whole batch; MVAU and StreamingDataWidthConverter
  through a node copy whose shape attributes carry the batch size; Im2Col and
  ConvolutionInputGenerator on groups of samples stacked as channels of one image;
* every other node, and any node whose batched run fails, gives an unexpected shape or
  differs from a single-sample run in a spot check of the first and last sample, loops
  over the samples (cached session / Python op on batch-1 slices, as FINN does);
* nodes that depend on no input (e.g. weight quantizers) run once;
* specialized ``*_hls``/``*_rtl`` nodes, which FINN only executes in cppsim/rtlsim
  (Vitis/Vivado), run their abstract base op's Python model with their own attributes:
  see :func:`python_fallback_nodes`;
* StreamingDataflowPartition/GenericPartition nodes run their child model the same way.

Quantized values are sanitized (rounded to their integer annotation) around every node,
as ``execute_onnx`` does. :func:`describe_execution` shows how each node will run.

>>> import numpy as np
>>> from onnx import TensorProto, helper
>>> from qonnx.core.modelwrapper import ModelWrapper
>>> from qonnx.util.basic import qonnx_make_model
>>> vi = helper.make_tensor_value_info
>>> g = helper.make_graph(
...     [helper.make_node("Relu", ["x"], ["h"], name="relu"),
...      helper.make_node("Flatten", ["h"], ["y"], name="flat")],
...     "g", [vi("x", TensorProto.FLOAT, [1, 2, 2])], [vi("y", TensorProto.FLOAT, [1, 4])],
...     value_info=[vi("h", TensorProto.FLOAT, [1, 2, 2])])
>>> model = ModelWrapper(qonnx_make_model(g))
>>> x = np.arange(-12, 12, dtype=np.float32).reshape(6, 2, 2)
>>> out = execute_batched(model, x, outputs=["h"])
>>> out["y"].shape, out["h"].shape
((6, 4), (6, 2, 2))
>>> describe_execution(model)
[('relu', 'Relu', 'batched'), ('flat', 'Flatten', 'batched')]
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp, is_custom_op
from qonnx.util.basic import (
    get_execution_error_thresh,
    get_preferred_qonnx_opset,
    get_sanitize_quant_tensors,
)

from flow.compat.qonnx import release_memory
from flow.compat.qonnx_index import IndexedModel
from flow.compat.qonnx_linear import linear_qonnx
from flow.core.errors import UnsupportedOpError
from flow.core.vocab import PARTITION_OP, is_hw_node
from flow.sim import custom_nodes as xc
from flow.sim import nodes as xn

PARTITION_OPS = (PARTITION_OP, "GenericPartition")
#: By step of a :class:`Plan`: a tensor that step reads with an addend (:meth:`Plan.run_step`).
Added = Mapping[int, tuple[str, np.ndarray]]
#: Samples per chunk at most, and the bytes of tensors in flight a chunk aims to stay within.
MAX_CHUNK, IN_FLIGHT_BYTES = 1000, 256 * 2**20


def execute_batched(
    model: ModelWrapper,
    inputs: np.ndarray | Mapping[str, np.ndarray],
    *,
    outputs: Sequence[str] | None = None,
    chunk_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Run ``model`` on a batch of samples; bit-exact with FINN's ``execute_onnx`` per sample.

    ``inputs`` is one array (for a single-input graph) or a dict by input name; axis 0
    indexes samples and the rest is the declared shape without its batch dim of 1
    (``(N, 784)`` for a ``[1, 784]`` input; ``(N, 1, 784)`` is accepted too). Inputs
    are cast to the declared element type.

    Returns the graph outputs plus the tensors named in ``outputs`` (any intermediate
    tensor, including tensors of a dataflow partition's child model), each with axis 0
    = samples. Samples are processed ``chunk_size`` at a time to bound memory; by default as
    many as keep the tensors in flight within :data:`IN_FLIGHT_BYTES` (at most
    :data:`MAX_CHUNK`, at least one).

    Raises UnsupportedOpError for nodes that cannot be executed.
    """
    with linear_qonnx():  # qonnx's shape checks and lookups in linear time
        plan = Plan(model)
    feeds, n = xn.prepare_inputs(plan.tensors, plan.inputs, inputs)
    if n == 0:
        raise ValueError("no samples given (axis 0 of the inputs is empty)")
    names = list(dict.fromkeys([o.name for o in model.graph.output] + list(outputs or [])))
    if chunk_size is None:
        chunk_size = min(MAX_CHUNK, IN_FLIGHT_BYTES // max(1, plan.bytes_per_sample(set(names))))
    chunk = max(1, int(chunk_size))
    result: dict[str, np.ndarray] = {}
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ctx = plan.run({k: v[start:stop] for k, v in feeds.items()}, stop - start, keep=set(names))
        for name in names:
            v = plan.as_batch(name, ctx, stop - start)
            if name not in result:
                result[name] = np.empty((n,) + v.shape[1:], v.dtype)
            result[name][start:stop] = v
    return result


def python_fallback_nodes(model: ModelWrapper) -> list[str]:
    """Names of the specialized (``*_hls``/``*_rtl``) nodes that :func:`execute_batched`
    runs through their Python model rather than cppsim/rtlsim, in execution order,
    including nodes inside dataflow partitions (named as in their child model).
    """
    names = []
    for node, _ in _walk(model):
        if is_hw_node(node) and node.op_type not in PARTITION_OPS:
            try:
                if xc.semantics_class(getCustomOp(node))[1]:
                    names.append(node.name)
            except KeyError:
                continue
    return names


def describe_execution(model: ModelWrapper) -> list[tuple[str, str, str]]:
    """``(node name, op type, how it runs)`` for every node, partitions expanded.

    How it runs is ``batched``, ``per-sample``, ``once`` (input-independent) or
    ``partition``, with `` (python model)`` for specialized nodes run in Python. A node
    planned as batched is demoted to per-sample at run time if its batched run fails.
    """
    rows = []
    for runner in Plan(model).all_runners():
        how = {True: "batched", False: "per-sample", None: "once"}[runner.mode]
        how = "partition" if isinstance(runner, xc.PartitionRunner) else how
        how += " (python model)" if runner.python_fallback else ""
        rows.append((runner.node.name, runner.node.op_type, how))
    return rows


class Plan:
    """A model prepared for execution: one runner per node, constants precomputed."""

    def __init__(self, model: ModelWrapper):
        if not model.check_all_tensor_shapes_specified():
            raise ValueError("the model has tensors without shapes; run qonnx's InferShapes first")
        self.model, graph = model, model.graph
        self.inputs = xn.graph_inputs(model)
        empty = model.make_empty_exec_context()
        init = {i.name for i in graph.initializer}
        self.tensors = xn.Tensors(empty, set(self.inputs))
        self.consts = {k: v for k, v in empty.items() if k in init}
        self.sanitize = get_sanitize_quant_tensors() != 0
        self.dt = IndexedModel(model)  # datatypes by dictionary (qonnx scans every annotation per lookup)
        self.batched_all = set(self.inputs)
        self.steps: list[tuple[xn.Runner, list[str]]] = []
        self.runners: list[xn.Runner] = []
        self._despecialized = None
        self._value_infos: dict | None = None
        # FINN sanitizes every node's inputs and outputs. A node output is sanitized when it
        # is produced, so re-sanitizing it at its consumers changes nothing; graph inputs are
        # sanitized at the start of a run and constants once, here.
        self.input_checks: list[str] = []
        done: set[str] = set()
        opsets = model.get_opset_imports()
        for node in graph.node:
            opset = opsets.get(node.domain, get_preferred_qonnx_opset())
            ins, outs = [i for i in node.input if i], [o for o in node.output if o]
            missing = [i for i in ins if i not in self.tensors.batched and i not in self.consts]
            if missing:
                raise ValueError(f"node {node.name!r} reads {missing[0]!r} before it is computed; "
                                 "the nodes must be topologically sorted")
            for i in self._integer(ins):
                if i in self.consts and i not in done:
                    self.sanitize_values([i], self.consts)
                    done.add(i)
                elif i in self.inputs and i not in self.input_checks:
                    self.input_checks.append(i)
            live = any(i in self.tensors.batched for i in ins)
            runner = self._runner(node, live, opset)
            runner.mode = runner.batchable if live else None
            self.runners.append(runner)
            if live:
                self.tensors.batched.update(outs)
                self.batched_all.update(outs)
                moves_integers = self._moves_data(node) and self.dt.get_tensor_datatype(ins[0]).is_integer()
                self.steps.append((runner, [] if moves_integers else self._integer(outs)))
            else:  # input-independent: computed once, exactly as for one sample
                ctx = {i: self.consts[i] for i in ins}
                ctx.update(runner._out_buffers(None))
                runner.run_single(ctx)
                self.sanitize_values(self._integer(outs), ctx)
                self.consts.update({o: ctx[o] for o in outs})
                done.update(outs)

    def _runner(self, node, live: bool, opset: int) -> xn.Runner:
        t = self.tensors
        if node.op_type in PARTITION_OPS and is_custom_op(node.domain, node.op_type):
            child = Plan(ModelWrapper(getCustomOp(node).get_nodeattr("model")))
            self.batched_all |= child.batched_all | {f"{node.name}_{k}" for k in child.batched_all}
            return xc.PartitionRunner(node, t, child)
        ins, outs = [i for i in node.input if i in t.batched], [o for o in node.output if o]
        batch_ok = live and all(name in t.shape and t.lead1(name) for name in ins + outs)
        # broadcasting keeps the sample axis first only if batched inputs have the output's rank
        ranks_align = all(len(t.shape[i]) == len(t.shape[outs[0]]) for i in ins) if batch_ok else False
        if is_custom_op(node.domain, node.op_type) or node.domain.startswith(("qonnx", "finn")):
            return xc.CustomRunner(node, t, batch_ok, ranks_align, self.model.graph, opset, self._base_graph)
        rank = len(t.shape.get(node.input[0], ())) if node.input else 0
        batch_ok = batch_ok and xn.batchable_std_op(node, t.batched, rank, opset)
        batch_ok = batch_ok and (ranks_align or node.op_type in ("Reshape", "Flatten"))
        if node.op_type in xn.SUMMING_OPS:
            batch_ok = batch_ok and self._exact_sums(node)
        if self._value_infos is None:
            self._value_infos = xn.value_info_map(self.model.graph)
        return xn.OrtRunner(node, t, batch_ok, self.model.graph, opset, self._value_infos)

    def _base_graph(self):
        if self._despecialized is None:
            self._despecialized = xc.despecialized(self.model.graph)
        return self._despecialized

    def _exact_sums(self, node) -> bool:
        """True if every sum the node computes is exact in float32, so that the summation
        order, which onnxruntime chooses by batch size and thread count, cannot change the
        result: sanitized integer activations, constant integer weights (and bias), every
        partial sum below 2**24.
        """
        op, ins = node.op_type, [i for i in node.input if i]
        dt = self.dt.get_tensor_datatype(ins[0])
        if not (self.sanitize and dt.is_integer() and self.tensors.dtype[ins[0]] == np.float32):
            return False
        xmax = max(abs(dt.min()), abs(dt.max()))
        attrs = {a.name: a for a in node.attribute}
        if op in ("AveragePool", "GlobalAveragePool"):  # exact sum, then one division
            window = attrs["kernel_shape"].ints if op == "AveragePool" else self.tensors.shape[ins[0]][2:]
            return int(np.prod(window)) * xmax < 2**24
        params = [self.consts.get(i) for i in ins[1:]]
        if not params or any(p is None or p.dtype != np.float32 or not _all(p, lambda b: b == np.round(b)) for p in params):
            return False
        if any(k in attrs and attrs[k].f != 1.0 for k in ("alpha", "beta")):
            return False
        w = params[0]
        if op == "Conv":
            k = int(np.prod(w.shape[1:]))
        elif op == "Gemm":
            k = w.shape[1] if "transB" in attrs and attrs["transB"].i else w.shape[0]
        else:
            k = w.shape[-2]
        bias = float(np.abs(params[1]).max(initial=0)) if len(params) > 1 else 0.0
        return k * xmax * max(float(w.max(initial=0)), -float(w.min(initial=0))) + bias < 2**24

    @staticmethod
    def _moves_data(node) -> bool:
        """True for ops that only move values of their first input (or pad with an integer):
        their outputs from a sanitized integer input are integers, so sanitizing them,
        which only rounds non-integers, would change nothing."""
        op = node.op_type[:-4] if node.op_type.endswith(("_hls", "_rtl")) else node.op_type
        if op in ("MaxPool", "MaxPoolNHWC") and len([o for o in node.output if o]) != 1:
            return False
        return op in xn.DATA_MOVEMENT_OPS

    def _integer(self, names: list[str]) -> list[str]:
        return [n for n in names if self.sanitize and self.dt.get_tensor_datatype(n).is_integer()]

    def sanitize_values(self, names: list[str], ctx: dict) -> None:
        """qonnx's ``sanitize_quant_values``, vectorized: round integer-annotated tensors
        holding values their datatype does not allow, if no value moves by more than
        qonnx's execution error threshold (else raise, as qonnx does).
        """
        for name in names:
            dtype, cur = self.dt.get_tensor_datatype(name), ctx[name]
            if _all(cur, dtype.allowed):
                continue
            warnings.warn(f"The values of tensor {name} can't be represented with the set datatype "
                          f"annotation ({dtype.name}), they will be rounded to match the datatype annotation.")
            rounded = np.round(cur)
            if np.abs(cur - rounded).max() > get_execution_error_thresh():
                raise Exception(f"Rounding error is too high to match set QONNX datatype ({dtype}) "
                                f"for input {name}")
            ctx[name] = rounded

    def all_runners(self):
        for r in self.runners:
            yield r
            if isinstance(r, xc.PartitionRunner):
                yield from r.child.all_runners()

    def run(self, feeds: dict[str, np.ndarray], n: int, keep: set[str] | None = None, added: Added | None = None) -> dict[str, np.ndarray]:
        """Execute on ``n`` samples; returns the context (batched tensors first-axis n).

        With ``keep``, a computed tensor is dropped once its last reader has run, unless it is a
        graph output or named in ``keep`` (dataflow partitions' tensors also as ``<node>_<tensor>``):
        memory holds the tensors in flight, not the whole forward pass. Without, every tensor stays.
        ``added``: see :meth:`run_step`.
        """
        ctx = dict(self.consts)
        ctx.update(feeds)
        self.sanitize_values(self.input_checks, ctx)
        drops = self.drops(keep) if keep is not None else None
        for k in range(len(self.steps)):
            self.run_step(k, ctx, n, keep, added)
            if drops is not None and drops[k]:
                for t in drops[k]:
                    ctx.pop(t, None)
                release_memory()  # else glibc keeps every freed activation, and a deep network's add up
        return ctx

    def run_step(self, k: int, ctx: dict, n: int, keep: set[str] | None = None, added: Added | None = None) -> None:
        """Step ``k`` on the tensors in ``ctx``. ``added``: by step, ``(tensor, addend)``: that step reads
        ``tensor + addend`` (float32, as onnxruntime's ``Add``) in place of ``tensor``; other readers do not."""
        runner, outs = self.steps[k]
        if isinstance(runner, xc.PartitionRunner):
            runner.keep = keep
        plus = added.get(k) if added else None
        if plus is None:
            runner.run(ctx, n)
        else:
            name, addend = plus
            kept = ctx[name]
            ctx[name] = kept + addend
            try:
                runner.run(ctx, n)
            finally:
                ctx[name] = kept
        self.sanitize_values(outs, ctx)

    def bytes_per_sample(self, keep: set[str]) -> int:
        """The most bytes of one sample's tensors that :meth:`run` with ``keep`` holds at once."""
        t, drops = self.tensors, self.drops(keep)

        def size(names) -> int:
            return sum(int(np.prod(t.batched_shape(x, 1))) * t.dtype[x].itemsize for x in names if x and x in t.shape)

        live = peak = size(self.inputs)
        for k, (runner, _) in enumerate(self.steps):
            live += size(runner.node.output)
            child = runner.child.bytes_per_sample(set()) if isinstance(runner, xc.PartitionRunner) else 0
            peak = max(peak, live + child)
            live -= size(drops[k])
        return peak

    def drops(self, keep: set[str]) -> list[list[str]]:
        """Per step, the computed tensors it reads for the last time (none that ``keep`` or the graph outputs name)."""
        keep = keep | {o.name for o in self.model.graph.output} | set(self.inputs)
        last: dict[str, int] = {}
        for k, (runner, _) in enumerate(self.steps):
            for t in runner.node.input:
                if t in self.batched_all and t not in self.consts:
                    last[t] = k
        drops: list[list[str]] = [[] for _ in self.steps]
        for t, k in last.items():
            if t not in keep:
                drops[k].append(t)
        return drops

    def as_batch(self, name: str, ctx: dict, n: int) -> np.ndarray:
        if name not in ctx:
            raise KeyError(f"the model has no tensor {name!r}")
        v = np.asarray(ctx[name])
        if name in self.batched_all:
            return v
        if v.shape[:1] == (1,):  # a constant, the same for every sample
            return np.repeat(v, n, axis=0)
        return np.broadcast_to(v, (n,) + v.shape).copy()


def _all(a, test, block: int = 1 << 22) -> bool:
    """``test(a).all()``, ``a`` tested ``block`` values at a time: a dense weight matrix of hundreds of MB gets no full-size temporaries."""
    if not isinstance(a, np.ndarray) or a.size <= block:
        return bool(np.all(test(a)))
    flat = a.reshape(-1)
    return all(bool(np.all(test(flat[i : i + block]))) for i in range(0, flat.size, block))


def _walk(model: ModelWrapper):
    """(node, model) for every node, descending into partition nodes' child models."""
    for node in model.graph.node:
        yield node, model
        if node.op_type in PARTITION_OPS and is_custom_op(node.domain, node.op_type):
            yield from _walk(ModelWrapper(getCustomOp(node).get_nodeattr("model")))


__all__ = ["execute_batched", "python_fallback_nodes", "describe_execution", "UnsupportedOpError"]
