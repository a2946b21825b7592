"""Graph helpers shared by qflow's structure passes: constant operands, broadcasting, and the
:class:`GraphEditor` a pass rewrites the graph with, in one sweep per ``apply``.

>>> import numpy as np
>>> compress(np.array([[1.0, 1.0], [2.0, 2.0]])).shape
(2, 1)
>>> materialize(np.array([0.5]), (1, 2, 2)).shape
(1, 2, 2)
"""

from __future__ import annotations

import hashlib

import numpy as np
from onnx import helper
from onnx import numpy_helper as np_helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name, random_string

from flow.compat.qonnx_index import IndexedModel, infer_data_layouts, infer_datatypes
from flow.compat.qonnx_graph import infer_shapes, sort_graph
from flow.core.onnx_nodes import const_operand

#: Ops that only rearrange data (a per-element constant can move past them with the data).
LAYOUT_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
#: Elementwise ops with a constant operand that the passes move.
LINEAR_OPS = ("Mul", "Add")


def attr(node, name, default=None):
    """The value of attribute ``name`` of ``node`` (``default`` when it is absent)."""
    a = get_by_name(node.attribute, name)
    return default if a is None else helper.get_attribute_value(a)


def is_join_add(model: ModelWrapper, node) -> bool:
    """True for an Add of two computed tensors (a residual join), not an Add of a constant."""
    return node.op_type == "Add" and len(node.input) == 2 and const_operand(model, node) is None and all(
        model.get_initializer(t) is None for t in node.input
    )


def sole_consumer(model: ModelWrapper, tensor: str):
    """The only consumer of ``tensor``; None if it has several or none, or is a graph output."""
    if tensor in [o.name for o in model.graph.output]:
        return None
    consumers = model.find_consumers(tensor)
    return consumers[0] if len(consumers) == 1 else None


def compress(c: np.ndarray) -> np.ndarray:
    """Shrink every axis along which ``c`` is constant to length 1 (the rank is kept)."""
    c = np.asarray(c)
    for ax in range(c.ndim):
        if c.shape[ax] > 1 and np.all(c == np.take(c, [0], axis=ax)):
            c = np.take(c, [0], axis=ax)
    return c


def materialize(c: np.ndarray, shape) -> np.ndarray | None:
    """``c`` broadcast to ``shape`` (None if ``c`` does not broadcast to exactly that shape, or no shape is known)."""
    if shape is None:
        return None
    shape = tuple(shape)
    try:
        if np.broadcast_shapes(np.shape(c), shape) != shape:
            return None
    except ValueError:
        return None
    return np.array(np.broadcast_to(np.asarray(c, dtype=np.float32), shape))


def channelwise_vector(c: np.ndarray, shape, axis: int) -> np.ndarray | None:
    """The per-channel vector of ``c`` (broadcast to ``shape``) along ``axis``; None if ``c`` varies on another axis."""
    full = materialize(c, shape)
    if full is None:
        return None
    axis %= len(shape)
    small = compress(full)
    if any(s != 1 for i, s in enumerate(small.shape) if i != axis):
        return None
    return np.broadcast_to(small, [shape[i] if i == axis else 1 for i in range(len(shape))]).reshape(-1)


class GraphEditor(IndexedModel):
    """One sweep of rewrites over ``model``: lookups by dictionary, every edit kept in the index, and
    the bookkeeping done once in :meth:`finish` (removed nodes and forgotten shapes dropped, nodes
    sorted, shapes, datatypes and layouts inferred), so a sweep costs O(nodes + edits).

    A rewrite reads the graph as the index shows it and marks the nodes it changed
    (:meth:`touch`); later rewrites in the same sweep leave touched nodes alone, whose shapes and
    datatypes are only known again after :meth:`finish`.
    """

    def __init__(self, model: ModelWrapper):
        super().__init__(model)
        self.wrapper = model
        self.nodes = list(model.graph.node)
        self.changed = False
        self._taken = set(self._vi) | set(self._init) | {t for n in self.nodes for t in (*n.input, *n.output)}
        self.nodes_added: list = []  # keeps the added nodes' wrappers alive, so their ids stay theirs
        self._touched: set[int] = set()
        self._removed: set[int] = set()
        self._dropped: set[str] = set()
        self._outputs = {o.name for o in model.graph.output}

    def is_fresh(self, *nodes) -> bool:
        """True if none of ``nodes`` was changed in this sweep."""
        return all(id(n) not in self._touched for n in nodes)

    def touch(self, *nodes) -> None:
        self._touched.update(id(n) for n in nodes)
        self.changed = True

    def new_name(self) -> str:
        """A tensor name not in use (drawn as ``ModelWrapper.make_new_valueinfo_name`` draws them)."""
        name = random_string()
        while name in self._taken:
            name = random_string()
        self._taken.add(name)
        return name

    def new_const(self, value, dtype=np.float32) -> str:
        """A new initializer holding ``value`` (float32 unless ``dtype``), with its ValueInfo; returns its name."""
        name, arr = self.new_name(), np.asarray(value, dtype=dtype)
        g = self.graph
        g.initializer.append(np_helper.from_array(arr, name))
        self._init[name] = g.initializer[len(g.initializer) - 1]
        g.value_info.append(helper.make_tensor_value_info(name, self._init[name].data_type, list(arr.shape)))
        self._vi[name] = g.value_info[len(g.value_info) - 1]
        return name

    def new_tensor(self, like: str, shape, datatype, layout=None) -> str:
        """A new tensor with ``like``'s element type, the given shape, datatype and (if given) layout."""
        name, vi = self.new_name(), self.get_tensor_valueinfo(like)
        g = self.graph
        g.value_info.append(helper.make_tensor_value_info(name, vi.type.tensor_type.elem_type if vi is not None else 1, list(shape)))
        self._vi[name] = g.value_info[len(g.value_info) - 1]
        self.set_tensor_datatype(name, datatype)
        if layout is not None:
            self.set_tensor_layout(name, list(layout))
        return name

    def new_int_const(self, value) -> str:
        """A new int64 initializer (a shape or axes input); returns its name."""
        return self.new_const(value, np.int64)

    def forget(self, *tensors: str) -> None:
        """Drop the shape and datatype annotations of rewired tensors so :meth:`finish` infers them again."""
        for t in tensors:
            self.set_tensor_datatype(t, DataType["FLOAT32"])
            if t not in self._outputs and self._vi.pop(t, None) is not None:
                self._dropped.add(t)

    def add_node(self, node):
        """Append ``node`` to the graph and index it; returns the graph's own copy (edit that one)."""
        nodes = self.graph.node
        nodes.append(node)
        added = nodes[len(nodes) - 1]
        self.index_node(added)
        self.nodes_added.append(added)
        return added

    def remove_node(self, node) -> None:
        self.forget_node(node)
        self._removed.add(id(node))

    def replace_node(self, old, new_nodes: list) -> None:
        """Put ``new_nodes`` in place of ``old`` (the order is restored by :meth:`finish`)."""
        self.remove_node(old)
        self.touch(old, *(self.add_node(n) for n in new_nodes))

    def swap_unary(self, first, second, first_dyn: int = 0) -> None:
        """Rewire ``x -first-> m -second-> y`` into ``x -second-> m -first-> y`` (both have one data input)."""
        x, m, y = first.input[first_dyn], first.output[0], second.output[0]
        self.rewire_input(second, 0, x)
        self.rewire_output(second, 0, m)
        self.rewire_input(first, first_dyn, m)
        self.rewire_output(first, 0, y)
        self.forget(m)
        self.touch(first, second)

    def finish(self) -> ModelWrapper:
        """The model after this sweep: removed nodes and dropped ValueInfos gone, sorted, annotations inferred."""
        if not self.changed:
            return self.wrapper
        g = self.graph
        if self._removed:
            keep = [n for n in g.node if id(n) not in self._removed]
            del g.node[:]
            g.node.extend(keep)
        if self._dropped:
            keep_vi = [v for v in g.value_info if v.name not in self._dropped]
            del g.value_info[:]
            g.value_info.extend(keep_vi)
        sort_graph(self.wrapper)
        return refresh(self.wrapper)


class SweepTransformation(Transformation):
    """A pass whose ``apply`` is one sweep of :meth:`rewrite` over the nodes (a :class:`GraphEditor`),
    shapes inferred once at its end; qonnx's ``transform`` repeats it until a sweep changes nothing."""

    def rewrite(self, ed: GraphEditor, node) -> None:
        """Rewrite around ``node`` if the pattern matches (through ``ed``, touching what changed)."""
        raise NotImplementedError

    def apply(self, model):
        ed = GraphEditor(model)
        for node in ed.nodes:
            if ed.is_fresh(node):
                self.rewrite(ed, node)
        return ed.finish(), ed.changed


def refresh(model: ModelWrapper) -> ModelWrapper:
    """Shapes, datatypes and data layouts inferred again after a rewrite (qonnx's passes, in linear time)."""
    model = infer_shapes(model)
    while infer_datatypes(model):
        pass
    while infer_data_layouts(model):
        pass
    return model


def is_integer(model: ModelWrapper, tensor: str) -> bool:
    return model.get_tensor_datatype(tensor).is_integer()


def graph_digest(model: ModelWrapper) -> str:
    """A digest of the nodes, their wiring and attributes, and the initializers (not of annotations)."""
    h = hashlib.sha1()
    for n in model.graph.node:
        h.update(f"{n.op_type}|{n.domain}|{list(n.input)}|{list(n.output)}|".encode())
        for a in n.attribute:
            h.update(a.SerializeToString())
    for init in model.graph.initializer:
        h.update(init.name.encode())
        h.update(init.raw_data if init.raw_data else init.SerializeToString())
    return h.hexdigest()


class MoveConstantPastUnaryOp(SweepTransformation):
    """Base of the passes that move ``x (op) c`` (a Mul/Add of a constant, ``linear_ops``) past the
    single-data-input op it alone feeds (one of ``past``), as ``(op) c'`` after it.

    A subclass says how the constant changes, or that the move is not exact, in
    :meth:`moved_constant`. One sweep moves every constant one op further.
    """

    linear_ops: tuple[str, ...] = LINEAR_OPS
    past: tuple[str, ...] = ()

    def moved_constant(self, model: ModelWrapper, node, nxt, c: np.ndarray, xshape: list[int]) -> np.ndarray | None:
        """The constant to apply after ``nxt``, or None to leave the pair alone."""
        raise NotImplementedError

    def rewrite(self, ed, n):
        co = const_operand(ed, n) if n.op_type in self.linear_ops else None
        nxt = sole_consumer(ed, n.output[0]) if co is not None else None
        if nxt is None or not ed.is_fresh(nxt) or nxt.op_type not in self.past or nxt.input[0] != n.output[0]:
            return
        dyn, _, c = co
        xshape = ed.get_tensor_shape(n.input[dyn])
        moved = self.moved_constant(ed, n, nxt, np.asarray(c), xshape) if xshape is not None else None
        if moved is None:
            return
        ed.rewire_input(n, 1 - dyn, ed.new_const(moved))
        ed.swap_unary(n, nxt, dyn)


class NameUnnamedNodes(Transformation):
    """Give every unnamed node a unique ``<op>_<i>`` name; existing names are kept, so errors and
    reports name the nodes FINN's tidy-up named."""

    def apply(self, model):
        taken = {n.name for n in model.graph.node if n.name}
        for n in model.graph.node:
            if n.name:
                continue
            i = 0
            while f"{n.op_type}_{i}" in taken:
                i += 1
            n.name = f"{n.op_type}_{i}"
            taken.add(n.name)
        return model, False
