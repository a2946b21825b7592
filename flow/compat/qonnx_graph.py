"""qonnx 1.0.0's whole-graph helpers and passes rewritten in linear time: the shape check every
``ModelWrapper`` runs on construction, shape inference, topological sorting, unique parameter
tensors, commutative input order, and ``IntType.allowed`` for scalars.

Each function computes what qonnx's does (see :mod:`flow.compat.qonnx_linear` for why and where
they replace qonnx's; ``tests/compat/test_qonnx_linear.py`` compares them).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.shape_inference as si
from onnx import TensorProto, helper
from qonnx.core.datatype import IntType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import is_custom_op
from qonnx.transformation import general as qonnx_general
from qonnx.transformation import infer_shapes as qonnx_infer_shapes
from qonnx.util import basic as qonnx_util
from toposort import CircularDependencyError

from flow.compat.qonnx_index import IndexedModel

#: Float initializers with more elements than this are shown to onnx's shape inference by
#: shape only; smaller ones (Resize/Upsample scales) keep their values.
SHAPE_ONLY_MIN_ELEMENTS = 64
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


def _elements(t: TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def fix_missing_initializer_shapes(model: ModelWrapper) -> bool:
    """``ModelWrapper.check_all_tensor_shapes_specified(fix_missing_init_shape=True)`` in linear time.

    Every node input and output (in node order) that has no ValueInfo but is an initializer
    gets one appended to ``value_info``; returns whether every such tensor has a shape.
    """
    g = model.graph
    shaped = {v.name for v in g.input} | {v.name for v in g.output} | {v.name for v in g.value_info}
    inits = {t.name: t for t in g.initializer}
    ok = True
    for n in g.node:
        for name in [*(i for i in n.input if i), *n.output]:
            if name in shaped:
                continue
            init = inits.get(name)
            if init is None:
                ok = False
                continue
            g.value_info.append(helper.make_tensor_value_info(name, init.data_type, list(init.dims)))
            shaped.add(name)
    return ok


def check_all_tensor_shapes_specified(self: ModelWrapper, fix_missing_init_shape: bool = False) -> bool:
    """Replacement of ``ModelWrapper.check_all_tensor_shapes_specified`` (same result, linear)."""
    if fix_missing_init_shape:
        return fix_missing_initializer_shapes(self)
    g = self.graph
    shaped = {v.name for v in g.input} | {v.name for v in g.output} | {v.name for v in g.value_info}
    shaped |= {t.name for t in g.initializer}
    return all(name in shaped for n in g.node for name in [*(i for i in n.input if i), *n.output])


def _shape_only_copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every large float initializer reduced to its name, type and dims."""
    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    g, lg = proto.graph, light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    lg.quantization_annotation.extend(g.quantization_annotation)
    lg.sparse_initializer.extend(g.sparse_initializer)
    for t in g.initializer:
        if t.data_type in _FLOAT_TYPES and _elements(t) > SHAPE_ONLY_MIN_ELEMENTS:
            s = lg.initializer.add()
            s.name, s.data_type = t.name, t.data_type
            s.dims.extend(t.dims)
        else:
            lg.initializer.append(t)
    return light


def infer_shapes(model: ModelWrapper) -> ModelWrapper:
    """qonnx's ``InferShapes`` with the same result, without handing the weights to onnx.

    The custom ops are shown to onnx as qonnx's shape-compatible stand-ins (made from the
    full model, as qonnx does), the large float initializers by type and dims only; the
    inferred ``value_info``, inputs and outputs are written back into ``model``'s graph,
    whose nodes and initializers are never touched. As qonnx's result, a new
    ``ModelWrapper`` of the model is returned, initializers without ValueInfo given one.
    """
    light = _shape_only_copy(model.model)
    view = IndexedModel(model)  # the stand-ins look tensors up (IntQuant its output's ValueInfo)
    for i, node in enumerate(model.graph.node):
        if is_custom_op(node.domain):
            stand_in = qonnx_infer_shapes._make_shape_compatible_op(node, view)
            stand_in.name = node.name
            light.graph.node[i].CopyFrom(stand_in)
    inferred = si.infer_shapes(light).graph
    g = model.graph
    del g.value_info[:]
    g.value_info.extend(inferred.value_info)
    for dst, src in ((g.input, inferred.input), (g.output, inferred.output)):
        for d, s in zip(dst, src):
            d.CopyFrom(s)
    result = ModelWrapper(model.model, fix_missing_initializer_valueinfo=False)
    fix_missing_initializer_shapes(result)
    return result


def topological_levels(deps: dict[int, set[int]]) -> dict[int, int]:
    """Kahn's rounds in O(items + dependencies): item -> the round it becomes ready in (0 with nothing
    to wait for, else one after the latest round among ``deps[item]``, which must all be keys).
    Items on or behind a cycle get no round."""
    users: dict[int, list[int]] = {i: [] for i in deps}
    waiting = {i: len(d) for i, d in deps.items()}
    for i, d in deps.items():
        for p in d:
            users[p].append(i)
    level = {i: 0 for i, w in waiting.items() if w == 0}
    reached: dict[int, int] = {}  # the latest round among what an item has waited for so far
    todo = list(level)
    while todo:
        i = todo.pop()
        for u in users[i]:
            reached[u] = max(reached.get(u, 0), level[i] + 1)
            waiting[u] -= 1
            if waiting[u] == 0:
                level[u] = reached[u]
                todo.append(u)
    return level


def sort_graph(model: ModelWrapper) -> None:
    """qonnx's ``SortGraph`` in O(nodes + edges): the same order (each node placed by its longest
    path from the graph's sources, ties by original index, as ``toposort_flatten``), the same
    nodes dropped (no producer and no input that is an initializer or graph input, nothing
    depending on them), the same ``CircularDependencyError``.
    """
    g = model.graph
    nodes = list(g.node)
    order = sorted_nodes(nodes, graph_sources(g))
    if len(order) == len(nodes) and all(a is b for a, b in zip(order, nodes)):
        return
    del g.node[:]
    g.node.extend(order)


def graph_sources(g: onnx.GraphProto) -> set[str]:
    """The names of ``g``'s initializers and inputs: what ``SortGraph`` takes as available from the start."""
    return {t.name for t in g.initializer} | {v.name for v in g.input}


def sorted_nodes(nodes: list, sources: set[str]) -> list:
    """``nodes`` (a graph's, in its order) as :func:`sort_graph` orders them; ``sources``: :func:`graph_sources`."""
    if len(nodes) == 1:
        return list(nodes)
    producer: dict[str, int] = {}
    for idx, n in enumerate(nodes):
        for o in n.output:
            producer.setdefault(o, idx)
    deps: dict[int, set[int]] = {}
    for idx, n in enumerate(nodes):
        preds = {producer[t] for t in n.input if t in producer}
        if preds:
            deps[idx] = preds - {idx}
        elif any(t in sources for t in n.input):
            deps[idx] = set()
    for d in list(deps.values()):
        for p in d:
            deps.setdefault(p, set())
    level = topological_levels(deps)
    if len(level) != len(deps):
        raise CircularDependencyError({i: d for i, d in deps.items() if i not in level})
    return [nodes[i] for i in sorted(level, key=lambda i: (level[i], i))]


def give_unique_parameter_tensors(model: ModelWrapper) -> None:
    """qonnx's ``GiveUniqueParameterTensors``, looking initializers up in a set and copying only
    the weights it duplicates (new names drawn as ``make_new_valueinfo_name`` draws them)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    names = {v.name for v in g.value_info} | {v.name for v in g.input} | {v.name for v in g.output}
    seen: set[str] = set()
    for n in g.node:
        for idx, name in enumerate(list(n.input)):
            if name not in inits:
                continue
            if name not in seen:
                seen.add(name)
                continue
            new = qonnx_util.random_string()
            while new in names:
                new = qonnx_util.random_string()
            model.set_initializer(new, model.get_initializer(name))
            model.set_tensor_datatype(new, model.get_tensor_datatype(name))
            names.add(new)
            n.input[idx] = new


def sort_commutative_inputs(model: ModelWrapper) -> bool:
    """qonnx's ``SortCommutativeInputsInitializerLast`` with a set of initializer names; returns whether an input moved."""
    inits = {t.name for t in model.graph.initializer}
    ops = qonnx_general.SortCommutativeInputsInitializerLast.SUPPORTED_COMMUTATIVE_OPS
    modified = False
    for node in model.graph.node:
        if node.op_type not in ops:
            continue
        ordered = [i for i in node.input if i not in inits] + [i for i in node.input if i in inits]
        for i, name in enumerate(ordered):
            if node.input[i] != name:
                modified = True
            node.input[i] = name
    return modified


_int_allowed = IntType.allowed


def int_allowed(self, value):
    """qonnx's ``IntType.allowed``, with a scalar answered without numpy (same result, a numpy bool).

    FINN checks every threshold of a layer with ``np.vectorize(dt.allowed)``, one Python call per
    value (``minimize_weight_bit_width`` on a 224x224 network makes millions); arrays go to qonnx's own.
    """
    if isinstance(value, np.ndarray):
        return _int_allowed(self, value)
    v = float(value)
    return np.bool_(self.min() <= v <= self.max() and v == round(v))
