"""A ``ModelWrapper`` whose lookups by tensor name are dictionary lookups, and the qonnx 1.0.0
passes that become linear with it: datatype and layout inference, identity-op removal.

qonnx's ``ModelWrapper`` answers ``get_tensor_datatype``, ``get_tensor_shape``,
``get_initializer``, ``find_producer``, ``find_consumers``, ... by scanning the whole graph
(``get_by_name`` builds a list of every name per call). A pass that asks once per node is
O(n^2): ``InferDataTypes`` takes 16 s on a 250-node chain of Identity ops and does not finish
on 2,000. :class:`IndexedModel` views the same ``ModelProto`` through dictionaries built once;
it is valid while the graph changes only through its own setters, which is what
:func:`infer_datatypes`, :func:`infer_data_layouts` and :func:`remove_identity_ops` guarantee.
Each gives the same graph as qonnx's pass (``tests/compat/test_qonnx_linear.py``).
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import qonnx.core.data_layout as DataLayout
from onnx import TensorProto, helper
from onnx import numpy_helper as np_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core import onnx_exec
from qonnx.transformation.infer_data_layouts import _infer_node_data_layout
from qonnx.transformation.infer_datatypes import _infer_node_datatype
from qonnx.util.basic import get_by_name
from qonnx.util.onnx import valueinfo_to_tensor

_MULTIPLE = object()  # more than one entry of a name: qonnx's get_by_name raises
_ONNX_TO_QONNX = {TensorProto.FLOAT: "FLOAT32", TensorProto.FLOAT16: "FLOAT16"}


def _by_name(containers, field: str = "name") -> dict:
    found: dict = {}
    for container in containers:
        seen: dict = {}
        for item in container:
            key = getattr(item, field)
            seen[key] = _MULTIPLE if key in seen else item
        for key, item in seen.items():
            found.setdefault(key, item)
    return found


def _one(found: dict, name: str):
    item = found.get(name)
    if item is _MULTIPLE:
        raise Exception("Found multiple get_by_name matches, undefined behavior")
    return item


class IndexedModel(ModelWrapper):
    """A view of ``model``'s ``ModelProto`` (shared, not copied) with dictionary lookups by name.

    Lookups give what ``ModelWrapper``'s give; the setters here keep the dictionaries in step
    with the graph. Nodes are found by the tensors they read and write as of construction, plus
    the rewiring done through :meth:`rewire_input` / :meth:`rewire_output`.
    """

    def __init__(self, model: ModelWrapper):  # no super().__init__: the proto is the model's own
        self._model_proto = model.model
        self.fix_float64 = model.fix_float64
        g = self.graph
        self._vi = {}
        for container in (g.input, g.output, g.value_info):
            for v in container:
                self._vi[v.name] = _MULTIPLE if v.name in self._vi else v
        self._qa = _by_name([g.quantization_annotation], "tensor_name")
        self._init = _by_name([g.initializer])
        self._producer: dict[str, onnx.NodeProto] = {}
        self._consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for o in n.output:
                self._producer.setdefault(o, n)
            for i in n.input:
                self._consumers.setdefault(i, []).append(n)

    # tensor metadata -----------------------------------------------------------------
    def get_tensor_valueinfo(self, tensor_name):
        vi = self._vi.get(tensor_name)
        if vi is _MULTIPLE:
            raise AssertionError("Multiple ValueInfoProto found for " + tensor_name)
        return vi

    def get_tensor_shape(self, tensor_name, fix_missing_init_shape=False):
        vi = self.get_tensor_valueinfo(tensor_name)
        if vi is not None:
            return [x.dim_value for x in vi.type.tensor_type.shape.dim]
        init = _one(self._init, tensor_name)
        if init is None:
            return None
        if fix_missing_init_shape:
            self.set_tensor_shape(tensor_name, list(init.dims), dtype=init.data_type)
        return list(init.dims)

    def set_tensor_shape(self, tensor_name, tensor_shape, dtype=None):
        super().set_tensor_shape(tensor_name, tensor_shape, dtype)
        g = self.graph
        for container in (g.input, g.output):
            if _one(_by_name([container]), tensor_name) is not None:
                self._vi[tensor_name] = _one(_by_name([container]), tensor_name)
                return
        self._vi[tensor_name] = g.value_info[len(g.value_info) - 1]

    def set_initializer(self, tensor_name, tensor_value):
        super().set_initializer(tensor_name, tensor_value)
        inits = self.graph.initializer
        self._init[tensor_name] = inits[len(inits) - 1]

    def replace_initializer(self, tensor_name: str, value) -> None:
        """Give initializer ``tensor_name`` a new value in place (its position kept; its ValueInfo takes the new shape)."""
        arr = np.asarray(value)
        self._init[tensor_name].CopyFrom(np_helper.from_array(arr, tensor_name))
        vi = self.get_tensor_valueinfo(tensor_name)
        if vi is not None and [d.dim_value for d in vi.type.tensor_type.shape.dim] != list(arr.shape):
            vi.CopyFrom(helper.make_tensor_value_info(tensor_name, self._init[tensor_name].data_type, list(arr.shape)))

    def get_initializer(self, tensor_name, return_dtype=False):
        init = _one(self._init, tensor_name)
        if init is None:
            return (None, None) if return_dtype else None
        return (np_helper.to_array(init), init.data_type) if return_dtype else np_helper.to_array(init)

    def _annotation_entry(self, tensor_name: str, key: str):
        qa = _one(self._qa, tensor_name)
        return qa, (get_by_name(qa.quant_parameter_tensor_names, key, "key") if qa is not None else None)

    def get_tensor_datatype(self, tensor_name):
        _, entry = self._annotation_entry(tensor_name, "finn_datatype")
        if entry is not None:
            return DataType[entry.value]
        vi = self.get_tensor_valueinfo(tensor_name)
        if vi is None:
            init = _one(self._init, tensor_name)
            onnx_dtype = init.data_type if init is not None else None
        else:
            onnx_dtype = vi.type.tensor_type.elem_type
        return DataType[_ONNX_TO_QONNX.get(onnx_dtype, "FLOAT32")]

    def _set_annotation(self, tensor_name: str, key: str, value: str | None) -> None:
        qa, entry = self._annotation_entry(tensor_name, key)
        if qa is not None:
            if entry is not None:
                if value is None:
                    entry.Clear()
                else:
                    entry.value = value
            elif value is not None:
                qa.quant_parameter_tensor_names.append(onnx.StringStringEntryProto(key=key, value=value))
        elif value is not None:
            qa = onnx.TensorAnnotation(tensor_name=tensor_name)
            qa.quant_parameter_tensor_names.append(onnx.StringStringEntryProto(key=key, value=value))
            anns = self.graph.quantization_annotation
            anns.append(qa)
            self._qa[tensor_name] = anns[len(anns) - 1]

    def set_tensor_datatype(self, tensor_name, datatype):
        self._set_annotation(tensor_name, "finn_datatype", None if datatype is None else datatype.name)

    def get_tensor_layout(self, tensor_name):
        _, entry = self._annotation_entry(tensor_name, "tensor_layout")
        return eval(entry.value) if entry is not None else None  # noqa: S307 - qonnx stores layouts as str(list)

    def set_tensor_layout(self, tensor_name, data_layout):
        assert type(data_layout) is list, "data_layout must be a list"
        self._set_annotation(tensor_name, "tensor_layout", str(data_layout))

    # structure -----------------------------------------------------------------------
    def find_producer(self, tensor_name):
        return self._producer.get(tensor_name)

    def find_consumers(self, tensor_name):
        return list(self._consumers.get(tensor_name, []))

    def find_direct_successors(self, node):
        succ = [c for o in node.output for c in self._consumers.get(o, [])]
        return succ or None

    def find_direct_predecessors(self, node):
        pred = [self._producer[i] for i in node.input if i in self._producer]
        return pred or None

    def _drop_consumer(self, tensor: str, node) -> None:
        users = self._consumers.get(tensor, [])
        for k, c in enumerate(users):
            if c is node:
                del users[k]
                return

    def rewire_input(self, node, index: int, tensor: str) -> None:
        self._drop_consumer(node.input[index], node)
        node.input[index] = tensor
        self._consumers.setdefault(tensor, []).append(node)

    def set_inputs(self, node, tensors: list[str]) -> None:
        """``node.input[:] = tensors``, index kept."""
        for t in node.input:
            self._drop_consumer(t, node)
        node.input[:] = tensors
        for t in tensors:
            self._consumers.setdefault(t, []).append(node)

    def index_node(self, node) -> None:
        """Index a node just added to the graph (its outputs are now produced by it)."""
        for o in node.output:
            self._producer[o] = node
        for i in node.input:
            self._consumers.setdefault(i, []).append(node)

    def forget_node(self, node) -> None:
        """Drop ``node`` from the index (the caller removes it from the graph)."""
        for t in node.input:
            self._drop_consumer(t, node)
        for t in node.output:
            if self._producer.get(t) is node:
                del self._producer[t]

    def rewire_output(self, node, index: int, tensor: str) -> None:
        if self._producer.get(node.output[index]) is node:
            del self._producer[node.output[index]]
        node.output[index] = tensor
        self._producer[tensor] = node


def infer_datatypes(model: ModelWrapper, allow_scaledint_dtypes: bool = False) -> bool:
    """qonnx's ``InferDataTypes.apply`` (every node's rule, in graph order) with indexed lookups; returns whether a datatype changed."""
    view = IndexedModel(model)
    modified = False
    for node in model.graph.node:
        modified |= _infer_node_datatype(view, node, allow_scaledint_dtypes)
    return modified


def infer_data_layouts(model: ModelWrapper) -> bool:
    """qonnx's ``InferDataLayouts.apply`` with indexed lookups; returns whether a layout changed."""
    view = IndexedModel(model)
    modified = False
    inp = model.graph.input[0].name
    if view.get_tensor_layout(inp) is None:
        guesses = {4: ("Assuming 4D input is NCHW", DataLayout.NCHW), 3: ("Assuming 3D input is NWC", DataLayout.NWC),
                   2: ("Assuming 2D input is NC", DataLayout.NC)}
        rank = len(view.get_tensor_shape(inp))
        if rank not in guesses:
            raise Exception("Unknown number of dims for input, don't know how to annotate")
        warnings.warn(guesses[rank][0])
        view.set_tensor_layout(inp, guesses[rank][1])
        modified = True
    for node in model.graph.node:
        modified |= _infer_node_data_layout(view, node)
    return modified


class LazyExecContext(dict):
    """``ModelWrapper.make_empty_exec_context`` computed on demand: a tensor's entry (its initializer's
    value, else zeros of its ValueInfo's shape, ``""`` -> None) is made when it is first read.

    qonnx's makes every entry at once, converting every weight to numpy; FINN's ``FoldQuantWeights``
    makes one per quantized weight it folds, to execute that one Quant node.
    """

    def __init__(self, model: ModelWrapper):
        super().__init__()
        g = model.graph
        self._vis = {v.name: v for v in (*g.input, *g.output, *g.value_info)}
        self._inits = {t.name: t for t in g.initializer}

    def __missing__(self, name: str):
        if name == "":
            value = None
        elif name in self._inits:
            value = np_helper.to_array(self._inits[name])
        elif name in self._vis:
            value = valueinfo_to_tensor(self._vis[name])
        else:
            raise KeyError(name)
        self[name] = value
        return value


def fold_constants(model: ModelWrapper, exclude_op_types) -> bool:
    """qonnx's ``FoldConstants`` in one sweep: every node whose inputs are all constant (or a
    ``Shape`` of a shaped tensor, or a node without inputs), other than ``exclude_op_types``,
    is executed as qonnx executes it and its first output becomes an initializer, in graph
    order, instead of one node per pass with a full execution context and shape inference in
    between. Returns whether a node was folded; shapes are not re-inferred here.
    """
    view = IndexedModel(model)
    opset = model.model.opset_import[0].version
    folded = []
    for n in list(model.graph.node):
        if n.op_type in exclude_op_types:
            continue
        constant = all(view.get_initializer(i) is not None for i in n.input)
        shape_of = n.op_type == "Shape" and len(n.input) > 0 and view.get_tensor_shape(n.input[0]) is not None
        if not (constant or shape_of or len(n.input) == 0):
            continue
        for i in n.input:
            view.get_tensor_shape(i, fix_missing_init_shape=True)
        ctx = {}
        for t in [*n.input, *n.output]:
            value = view.get_initializer(t)
            vi = view.get_tensor_valueinfo(t)
            ctx[t] = value if value is not None else (valueinfo_to_tensor(vi) if vi is not None else None)
        onnx_exec.execute_node(n, ctx, model.graph, opset_version=opset)
        view.set_initializer(n.output[0], ctx[n.output[0]])
        view.forget_node(n)
        folded.append(n)
    if folded:
        gone = {id(n) for n in folded}
        keep = [n for n in model.graph.node if id(n) not in gone]
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return bool(folded)


def _is_identity(view: IndexedModel, node, opset: int, atol: float) -> bool:
    """qonnx's ``RemoveIdentityOps`` test of one node."""
    op = node.op_type
    if op in ("Add", "Sub", "Mul", "Div"):
        a = view.get_initializer(node.input[1])
        neutral = np.zeros_like if op in ("Add", "Sub") else np.ones_like
        return a is not None and bool(np.isclose(a, neutral(a), atol=atol).all())
    if op == "Pad":
        pads = get_by_name(node.attribute, "pads")
        pads = np.asarray(pads.ints, dtype=np.int64) if pads is not None else view.get_initializer(node.input[1])
        return pads is not None and bool((pads == 0).all())
    if op == "Identity":
        return True
    if op == "Dropout":
        if opset < 12:
            ratio = get_by_name(node.attribute, "ratio")
            return ratio is not None and ratio.f == 0
        return len(node.input) == 1 or bool(view.get_initializer(node.input[1]) == 0)
    return False


def _remove_and_rewire(view: IndexedModel, node, outputs: set[str], inputs: set[str]) -> bool:
    """qonnx's ``remove_node_and_rewire`` on the index; False (with qonnx's warning) for a join node."""
    preds = view.find_direct_predecessors(node) or []
    if len(preds) > (0 if node.input[0] in inputs else 1):
        warnings.warn("Removing join-node operation is currently not supported")
        return False
    producer = view.find_producer(node.input[0])
    if producer is not None:
        succ = view.find_direct_successors(producer) or []
        fork = len(succ) > (0 if producer.output[0] in outputs else 1)
    if producer is not None and not fork:
        view.rewire_output(producer, 0, node.output[0])
    else:
        successors = view.find_direct_successors(node)
        assert successors is not None, "Whole graph is one node."
        for s in successors:
            for i, t in enumerate(s.input):
                if t == node.output[0]:
                    view.rewire_input(s, i, node.input[0])
    view.forget_node(node)
    return True


def remove_identity_ops(model: ModelWrapper, atol: float = 1e-05) -> bool:
    """qonnx's ``RemoveIdentityOps`` in one sweep: every identity op (Add/Sub of 0, Mul/Div by 1,
    zero Pad, Identity, inactive Dropout) removed and rewired as qonnx's ``remove_node_and_rewire``
    does, in graph order, instead of one per pass with shape inference in between.

    A join node is left in place with qonnx's warning (qonnx's pass would then repeat forever).
    Returns whether a node was removed; shapes are not re-inferred here.
    """
    view = IndexedModel(model)
    opset = model.model.opset_import[0].version
    outputs, inputs = {o.name for o in model.graph.output}, {i.name for i in model.graph.input}
    nodes = list(model.graph.node)
    gone = [_is_identity(view, n, opset, atol) and _remove_and_rewire(view, n, outputs, inputs) for n in nodes]
    if any(gone):
        del model.graph.node[:]
        model.graph.node.extend(n for n, g in zip(nodes, gone) if not g)
    return any(gone)
