"""finn-plus 1.6.1 passes that restart after every single change, as one sweep each.

``MinimizeAccumulatorWidth`` re-infers the datatypes of the whole graph after every layer it
narrows; :func:`minimize_accumulator_width` infers them node by node as the sweep passes, which
gives every layer the same datatypes when it is narrowed (nothing upstream of it changes again).

``RoundAndClipThresholds``, ``AbsorbScalarBiasIntoMultiThreshold`` and ``MoveScalesPastIm2Col``
change one layer per ``apply``, re-infer shapes or datatypes of the whole graph and start over
from the first node, looking every node's neighbours up by scanning the graph on the way:
O(nodes^2) per change, one change per layer of the network. None of these changes alters what
decides another layer's change (a threshold tensor's datatype is its own; a layer's output
datatype comes from its attributes; a moved scale leaves other Muls' neighbours as they were),
so each function here makes every change of one pass over the graph, by the same rule and
with dictionary lookups; qonnx's ``transform`` still repeats it, with FINN's re-inference in
between, until nothing changes (a scale moved past a Pad meets the Im2Col behind it on the
next sweep). ``tests/compat/test_qonnx_linear.py`` compares the results with FINN's on real models.

``InferElementwiseBinaryOperation`` converts one Add/Mul/... per ``apply`` and re-infers shapes
and datatypes of the whole graph before the next: a residual network's hundreds of joins make
it quadratic. :func:`elementwise_apply` runs FINN's own conversion for every node in one
sweep, with that inference once before (so every annotation it reads is current) and once
after: a converted node keeps its tensors' shapes and forces its output datatype to the one it
read, so no conversion changes what a later one reads.

``InferDuplicateStreamsLayer`` scans the whole graph for the readers of every tensor of every node;
:func:`infer_duplicate_streams` looks them up in one index. ``InsertDWC`` does the same for every
output of every layer; :func:`insert_dwc` too.
"""

from __future__ import annotations

import logging

import numpy as np
from finn.transformation.fpgadataflow.convert_to_hw.duplicate_streams import InferDuplicateStreamsLayer
from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import InferElementwiseBinaryOperation
from finn.transformation.fpgadataflow.insert_dwc import InsertDWC, _suitable_node
from finn.util.exception import FINNInternalError
from finn.util.fpgadataflow import is_fpgadataflow_node
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.general import SortGraph
from qonnx.transformation.infer_datatypes import InferDataTypes, _infer_node_datatype
from qonnx.transformation.infer_shapes import InferShapes

from flow.compat.qonnx_index import IndexedModel
from flow.compat.qonnx_view import new_tensor_name

log = logging.getLogger("finn_logger")


def _bounds_type(dt) -> object:
    """The datatype of thresholds clipped to ``[dt.min(), dt.max() + 1]``: one bit more than ``dt``."""
    top = dt.max() + 1
    return DataType.get_smallest_possible(top) if not dt.signed() else DataType.get_smallest_possible(-top - 1)


def _rounded(node, view: IndexedModel) -> tuple[int, np.ndarray, object] | None:
    """(threshold input index, rounded thresholds, their datatype) for a thresholding node FINN's pass rounds."""
    op = node.op_type
    if op == "MultiThreshold" or op.startswith("Thresholding"):
        thresholds, dt = view.get_initializer(node.input[1]), view.get_tensor_datatype(node.input[0])
        if thresholds is None:
            return None
        if dt.is_integer():
            new = np.clip(np.ceil(thresholds), dt.min(), dt.max() + 1)
            return 1, new.astype(np.float32), dt if dt in {"INT64", "UINT64"} else _bounds_type(dt)
        if dt.is_fixed_point():
            sf = dt.scale_factor()
            new = np.clip(np.ceil(thresholds / sf) * sf, dt.min(), dt.max() + sf)
            width = DataType.get_smallest_possible(-(dt.max() / sf + 1) - 1).bitwidth()
            return 1, new.astype(np.float32), DataType[f"FIXED<{width},{width - dt.frac_bits()}>"]
        return None
    if op.startswith(("MVAU", "VVAU")) and len(node.input) > 2:
        inst = getCustomOp(node)
        thresholds = view.get_initializer(node.input[2]) if inst.get_nodeattr("noActivation") == 0 else None
        acc = DataType[inst.get_nodeattr("accDataType")]
        if thresholds is None or not acc.is_integer():
            return None
        return 2, np.clip(np.ceil(thresholds), acc.min(), acc.max() + 1).astype(np.float32), _bounds_type(acc)
    return None


def round_and_clip_thresholds(model: ModelWrapper) -> bool:
    """Every threshold FINN's ``RoundAndClipThresholds`` rounds, rounded in one sweep; True if a value changed.

    The thresholds are replaced where they are (same initializer and ValueInfo entries), their
    datatype annotated and, for ``Thresholding`` layers, their ``weightDataType`` set, as FINN does.
    """
    view = IndexedModel(model)
    changed = False
    for node in model.graph.node:
        found = _rounded(node, view)
        if found is None:
            continue
        idx, new, tdt = found
        name = node.input[idx]
        changed |= bool(np.any(new != view.get_initializer(name)))
        view.replace_initializer(name, new)
        view.set_tensor_datatype(name, tdt)
        if node.op_type.startswith("Thresholding"):
            getCustomOp(node).set_nodeattr("weightDataType", tdt.name)
    return changed


def _is_fork(view: IndexedModel, node, outputs: set[str]) -> bool:
    """``ModelWrapper.is_fork_node``."""
    succ = view.find_direct_successors(node) or []
    return len(succ) > (0 if node.output[0] in outputs else 1)


def _is_join(view: IndexedModel, node, inputs: set[str]) -> bool:
    """``ModelWrapper.is_join_node``."""
    preds = view.find_direct_predecessors(node) or []
    return len(preds) > (0 if node.input[0] in inputs else 1)


def absorb_scalar_bias_into_multithreshold(model: ModelWrapper, max_bitwidth_increase: int = 0) -> bool:
    """FINN's ``AbsorbScalarBiasIntoMultiThreshold`` on every MultiThreshold in one sweep: a scalar
    Add after a non-branching MultiThreshold becomes its ``out_bias`` when the output datatype
    grows by at most ``max_bitwidth_increase`` bits. Returns whether an Add was absorbed."""
    view = IndexedModel(model)
    outputs, inputs = {o.name for o in model.graph.output}, {i.name for i in model.graph.input}
    removed: list = []
    for node in list(model.graph.node):
        if node.op_type != "MultiThreshold" or _is_fork(view, node, outputs) or _is_join(view, node, inputs):
            continue
        consumers = view.find_consumers(node.output[0])
        add = consumers[0] if consumers else None
        if add is None or add.op_type != "Add":
            continue
        bias, thresholds = view.get_initializer(add.input[1]), view.get_initializer(node.input[1])
        if bias is None or thresholds is None or not (bias.ndim == 0 or all(x == 1 for x in bias.shape)):
            log.warning(f"AbsorbScalarBiasIntoMultiThreshold: no constant scalar bias for {add.name} or thresholds for {node.name}, skipping.")
            continue
        op = getCustomOp(node)
        old = op.get_nodeattr("out_dtype")
        out_bias = float(op.get_nodeattr("out_bias") + bias.flatten()[0])
        lo, hi = out_bias, out_bias + thresholds.shape[-1]
        odt = DataType.get_smallest_possible(hi) if lo >= 0 else DataType.get_smallest_possible(min(lo, -(hi + 1)))
        if not (odt.allowed(hi) and odt.allowed(lo)) or odt.bitwidth() - DataType[old].bitwidth() > max_bitwidth_increase:
            log.warning(f"AbsorbScalarBiasIntoMultiThreshold: not absorbing the bias of {add.name} into {node.name}.")
            continue
        op.set_nodeattr("out_bias", out_bias)
        op.set_nodeattr("out_dtype", odt.name)
        view.rewire_output(node, 0, add.output[0])
        view.forget_node(add)
        removed.append(add)
        view.set_tensor_datatype(node.output[0], odt)
    _drop(model, removed)
    return bool(removed)


def move_scales_past_im2col(model: ModelWrapper) -> bool:
    """FINN's ``MoveScalesPastIm2Col`` on every candidate in one sweep: a non-branching Mul/Div by a
    scalar constant swaps places with the Im2Col, Col2Im or Pad it alone feeds, and the shapes of
    the two tensors between them are cleared for shape inference. Returns whether a node moved."""
    view = IndexedModel(model)
    outputs, inputs = {o.name for o in model.graph.output}, {i.name for i in model.graph.input}
    moved: set[int] = set()
    for node in list(model.graph.node):
        if node.op_type not in ("Mul", "Div") or id(node) in moved or len(node.output) > 1:
            continue
        if _is_fork(view, node, outputs) or _is_join(view, node, inputs) or view.get_initializer(node.input[0]) is not None:
            continue
        c = view.get_initializer(node.input[1])
        succ = view.find_direct_successors(node)
        if c is None or not all(x == 1 for x in c.shape) or succ is None or succ[0].op_type not in ("Im2Col", "Col2Im", "Pad"):
            continue
        nxt = succ[0]
        if id(nxt) in moved:
            continue
        x, mid, out = node.input[0], node.output[0], nxt.output[0]
        view.rewire_input(nxt, 0, x)
        view.rewire_output(nxt, 0, mid)
        view.rewire_input(node, 0, mid)
        view.rewire_output(node, 0, out)
        for t in (mid, out):
            vi = view.get_tensor_valueinfo(t)
            if vi is not None:
                vi.type.tensor_type.ClearField("shape")
        moved.update((id(node), id(nxt)))
    return bool(moved)


def _drop(model: ModelWrapper, nodes: list) -> None:
    if nodes:
        gone = {id(n) for n in nodes}
        keep = [n for n in model.graph.node if id(n) not in gone]
        del model.graph.node[:]
        model.graph.node.extend(keep)


def minimize_accumulator_width(model: ModelWrapper, datatype_only: bool = False) -> None:
    """FINN's ``MinimizeAccumulatorWidth``: every HW layer's ``minimize_accumulator_width`` in graph
    order, with the datatype inference FINN runs over the whole graph after each one done node by
    node: the nodes before the first narrowed layer once it is narrowed, then each node as the
    sweep reaches it (again after narrowing it). FINN's ``InferDataTypes`` after a layer changes
    only that layer and what follows it, so each layer is narrowed with the same datatypes."""
    view = IndexedModel(model)
    nodes = list(model.graph.node)
    started = False
    for k, node in enumerate(nodes):
        inst = getCustomOp(node) if is_fpgadataflow_node(node) else None
        if inst is not None and hasattr(inst, "minimize_accumulator_width"):
            if started:
                _infer_node_datatype(view, node, False)
            inst.minimize_accumulator_width(view, datatype_only=datatype_only)
            if not started:
                for before in nodes[:k]:
                    _infer_node_datatype(view, before, False)
                started = True
            _infer_node_datatype(view, node, False)
        elif started:
            _infer_node_datatype(view, node, False)


_ELEMENTWISE_APPLY = InferElementwiseBinaryOperation.apply


class _Sweep(ModelWrapper):
    """The model being converted, whose whole-graph shape and datatype inference waits for the end of the sweep."""

    def __init__(self, model: ModelWrapper):  # noqa: D107 - shares ``model``'s proto, no checks
        self._model_proto = model.model
        self.fix_float64 = getattr(model, "fix_float64", False)

    def transform(self, transformation, *args, **kwargs):
        if type(transformation) in (InferShapes, InferDataTypes):
            return self
        return super().transform(transformation, *args, **kwargs)


def elementwise_apply(self: InferElementwiseBinaryOperation, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
    """FINN's ``InferElementwiseBinaryOperation.apply`` on every node it converts, in one sweep (module docstring)."""
    model = model.transform(InferShapes()).transform(InferDataTypes())
    sweep, changed = _Sweep(model), False
    while True:
        sweep, step = _ELEMENTWISE_APPLY(self, sweep)
        if not step:
            break
        changed = True
    model = ModelWrapper(sweep.model, fix_missing_initializer_valueinfo=False)
    if changed:
        model = model.transform(InferShapes()).transform(InferDataTypes())
    return model, False


def infer_duplicate_streams(self: InferDuplicateStreamsLayer, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
    """FINN's ``InferDuplicateStreamsLayer.apply`` with the readers of every tensor looked up in one index
    instead of one scan of the graph per tensor.

    The same DuplicateStreams nodes, named, placed (right after the fork's producer, the global input's
    first) and wired as FINN's, with the same attributes and clone names (drawn as
    ``make_new_valueinfo_name`` draws them, in the same order), then FINN's closing sort and inference.
    A rewiring changes only the readers of the tensor just duplicated and of its clones, which no later
    lookup asks for.
    """
    g = model.graph
    view = IndexedModel(model)  # its readers as of now: no later lookup asks for a rewired tensor
    names = {v.name for v in (*g.value_info, *g.input, *g.output)}
    outputs = {o.name for o in g.output}

    def duplicate(tensor: str, successors: list, to_output: bool, name: str, at: int) -> None:
        dt, shape = view.get_tensor_datatype(tensor), view.get_tensor_shape(tensor)
        if shape is None:
            raise FINNInternalError("Expected shape information on output")
        count = len(successors) + to_output
        clones = []
        for i in range(count):
            clone = helper.make_tensor_value_info(new_tensor_name(names), TensorProto.FLOAT, shape)
            if not (to_output and i == count - 1):
                g.value_info.append(clone)
                names.add(clone.name)
            clones.append(clone)
        g.node.insert(at, helper.make_node(
            "DuplicateStreams", [tensor], [c.name for c in clones], domain="finn.custom_op.fpgadataflow",
            backend="fpgadataflow", NumChannels=int(shape[-1]), PE=1, inputDataType=dt.name, numInputVectors=shape[:-1],
            NumOutputStreams=count, outFIFODepths=[2] * count, name=name, cpp_interface="hls_vector", hls_style="freerunning"))
        for successor, clone in zip(successors, clones):
            successor.input[list(successor.input).index(tensor)] = clone.name
        if to_output:
            for i, out in enumerate(g.output):
                if out.name == tensor:
                    out.CopyFrom(clones[-1])
                    break
            names.clear()
            names.update(v.name for v in (*g.value_info, *g.input, *g.output))
            outputs.discard(tensor)
            outputs.add(clones[-1].name)

    changed = False
    first = g.input[0].name
    if len(view.find_consumers(first)) >= 2:
        duplicate(first, view.find_consumers(first), False, "DuplicateStreams_" + first, 0)
        changed = True
    inserted = int(changed)
    for k, node in enumerate(list(g.node)[inserted:]):
        for tensor in node.output:
            successors, to_output = view.find_consumers(tensor), tensor in outputs
            if len(successors) + to_output >= 2:
                duplicate(tensor, successors, to_output, "DuplicateStreams_" + node.name, k + inserted + 1)
                inserted += 1
                changed = True
    if changed:
        model = model.transform(SortGraph()).transform(InferShapes()).transform(InferDataTypes())
    return model, changed


def insert_dwc(self: InsertDWC, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
    """FINN's ``InsertDWC.apply`` with the readers of every layer output looked up in one index instead of
    one scan of the graph per output.

    The same converters, with FINN's attributes and output names (drawn as ``make_new_valueinfo_name``
    draws them, in the same order), inserted where FINN inserts them (right after the producer; a second
    output's in front of the first's), the reader rewired the same way. A rewiring changes only the
    readers of the output just converted and of the converter, which no later lookup asks for; FINN's
    second sweep, which finds nothing, is not run.
    """
    g = model.graph
    view = IndexedModel(model)  # its readers as of now: no later lookup asks for a rewired tensor
    names = {v.name for v in (*g.value_info, *g.input, *g.output)}
    inserted = 0  # converters inserted so far, every one in front of the node at hand
    for k, n in enumerate(list(g.node)):
        if not _suitable_node(n):
            continue
        at = k + inserted + 1  # right after ``n`` in the graph as it is now
        for out_idx, output_name in enumerate(n.output):
            consumers = view.find_consumers(output_name)
            if not consumers:
                continue
            assert len(consumers) == 1, n.name + ": HW node with fan-out higher than 1 cannot be stitched"
            consumer = consumers[0]
            if _suitable_node(consumer) is not True:
                continue
            n0, n1 = getCustomOp(n), getCustomOp(consumer)
            in_idx = None
            for idx, n_input in enumerate(consumer.input):
                if output_name == n_input:
                    in_idx = idx
            assert in_idx is not None, "Malformed model"
            if n0.get_folded_output_shape(out_idx)[-1] == n1.get_folded_input_shape(in_idx)[-1]:
                continue
            out_shape = n1.get_normal_input_shape(in_idx)
            name = new_tensor_name(names)
            dwc_out = helper.make_tensor_value_info(name, view.get_tensor_valueinfo(output_name).type.tensor_type.elem_type, out_shape)
            g.value_info.append(dwc_out)
            names.add(name)
            g.node.insert(at, helper.make_node(
                "StreamingDataWidthConverter", [output_name], [name], domain="finn.custom_op.fpgadataflow",
                backend="fpgadataflow", inShape=n0.get_normal_output_shape(out_idx), outShape=out_shape,
                inWidth=n0.get_outstream_width(out_idx), outWidth=n1.get_instream_width(in_idx),
                dataType=str(n0.get_output_datatype(out_idx).name)))
            for idx, inp in enumerate(consumer.input):
                if inp == output_name:
                    consumer.input[idx] = name
            inserted += 1
    return model, False
