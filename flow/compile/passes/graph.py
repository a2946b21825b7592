"""Small graph helpers shared by qflow's structure passes: constant operands, broadcasting, rewiring.

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
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import get_by_name

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


def new_const(model: ModelWrapper, value) -> str:
    """A new float32 initializer holding ``value``; returns its name."""
    name = model.make_new_valueinfo_name()
    model.set_initializer(name, np.asarray(value, dtype=np.float32))
    return name


def new_int_const(model: ModelWrapper, value) -> str:
    """A new int64 initializer (a shape or axes input); returns its name."""
    name = model.make_new_valueinfo_name()
    model.set_initializer(name, np.asarray(value, dtype=np.int64))
    return name


def forget(model: ModelWrapper, *tensors: str) -> None:
    """Drop the shape and datatype annotations of rewired tensors so inference recomputes them."""
    outputs = {o.name for o in model.graph.output}
    for t in tensors:
        model.set_tensor_datatype(t, DataType["FLOAT32"])
        vi = model.get_tensor_valueinfo(t)
        if vi is not None and t not in outputs:
            model.graph.value_info.remove(vi)


def move_after(model: ModelWrapper, node, anchor) -> None:
    """Place ``node`` right after ``anchor`` in the node list (keeps the list topologically sorted)."""
    nodes = model.graph.node
    nodes.remove(node)
    nodes.insert(list(nodes).index(anchor) + 1, node)


def replace_node(model: ModelWrapper, old, new_nodes: list) -> None:
    """Put ``new_nodes`` where ``old`` was."""
    nodes = model.graph.node
    at = list(nodes).index(old)
    nodes.remove(old)
    for i, n in enumerate(new_nodes):
        nodes.insert(at + i, n)


def swap_unary(model: ModelWrapper, first, second, first_dyn: int = 0) -> None:
    """Rewire ``x -first-> m -second-> y`` into ``x -second-> m -first-> y`` (both have one data input)."""
    x, m, y = first.input[first_dyn], first.output[0], second.output[0]
    second.input[0] = x
    second.output[0] = m
    first.input[first_dyn] = m
    first.output[0] = y
    forget(model, m)
    move_after(model, first, second)


def refresh(model: ModelWrapper) -> ModelWrapper:
    """Shapes, datatypes and data layouts inferred again after a rewrite."""
    return model.transform(InferShapes()).transform(InferDataTypes()).transform(InferDataLayouts())


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


class MoveConstantPastUnaryOp(Transformation):
    """Base of the passes that move ``x (op) c`` (a Mul/Add of a constant, ``linear_ops``) past the
    single-data-input op it alone feeds (one of ``past``), as ``(op) c'`` after it.

    A subclass says how the constant changes, or that the move is not exact, in
    :meth:`moved_constant`.
    """

    linear_ops: tuple[str, ...] = LINEAR_OPS
    past: tuple[str, ...] = ()

    def moved_constant(self, model: ModelWrapper, node, nxt, c: np.ndarray, xshape: list[int]) -> np.ndarray | None:
        """The constant to apply after ``nxt``, or None to leave the pair alone."""
        raise NotImplementedError

    def apply(self, model):
        for n in model.graph.node:
            co = const_operand(model, n) if n.op_type in self.linear_ops else None
            nxt = sole_consumer(model, n.output[0]) if co is not None else None
            if nxt is None or nxt.op_type not in self.past or nxt.input[0] != n.output[0]:
                continue
            dyn, _, c = co
            xshape = model.get_tensor_shape(n.input[dyn])
            moved = self.moved_constant(model, n, nxt, np.asarray(c), xshape) if xshape is not None else None
            if moved is None:
                continue
            n.input[1 - dyn] = new_const(model, moved)
            swap_unary(model, n, nxt, dyn)
            return refresh(model), True
        return model, False


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
