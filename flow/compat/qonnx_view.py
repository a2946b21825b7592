"""Views of a model on which FINN's own passes run with dictionary lookups while they rewrite it.

:class:`EditableView` is :class:`~flow.compat.qonnx_index.IndexedModel` with the tensor names
``make_new_valueinfo_name`` draws against, and constant-time setters for what passes add (a new
initializer, the shape of the value info appended last).

:class:`ListView` also stands in for ``graph.node`` with a Python list: a list iterates, inserts and
removes as protobuf's repeated field does (by index; ``insert`` stores a copy; ``remove`` takes the first
equal element), so a
pass that walks ``graph.node`` while inserting and removing behaves the same on it. The list keeps
each tensor's producers and readers current as nodes come and go, so ``find_producer``,
``find_consumers``, ``is_fork_node``, ``is_join_node`` ... are dictionary lookups (in graph order,
as qonnx's scans find them). The nodes are written back once, before the pass's closing
``transform`` or when it returns. A pass gets each node as a :class:`WatchedNode`: the node itself
for everything it reads or sets, except that its ``input`` and ``output`` lists report their edits to
the index (:mod:`flow.compat.qonnx_watch`), so a pass that rewires a node in place
(``consumer.input[0] = x``) sees the rewiring in its next lookup. :data:`flow.compat.finn_guards.ON_LIST_VIEW` names the FINN passes that run on it,
and ``tests/compat/test_qonnx_view.py`` compares their graphs with FINN's byte for byte.
"""

from __future__ import annotations

from onnx import NodeProto, TensorProto
from onnx import helper as oh
from onnx import numpy_helper as np_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import random_string

from flow.compat.qonnx_index import _MULTIPLE, IndexedModel
from flow.compat.qonnx_watch import WatchedNode, proto_of


def new_tensor_name(names: set[str]) -> str:
    """A tensor name as qonnx's ``make_new_valueinfo_name`` draws it, against ``names`` (a set, not a list)."""
    candidate = random_string()
    while candidate in names:
        candidate = random_string()
    return candidate


class EditableView(IndexedModel):
    """:class:`IndexedModel` that also draws new tensor names from a set and appends value infos and initializers in O(1)."""

    def __init__(self, model: ModelWrapper):
        super().__init__(model)
        g = self._model_proto.graph
        self._names = {v.name for container in (g.value_info, g.input, g.output) for v in container}

    def add_valueinfo(self, vi) -> None:
        """``graph.value_info.append(vi)``, indexed."""
        value_info = self._model_proto.graph.value_info
        value_info.append(vi)
        self._vi[vi.name] = _MULTIPLE if vi.name in self._vi else value_info[len(value_info) - 1]
        self._names.add(vi.name)

    def make_new_valueinfo_name(self) -> str:
        return new_tensor_name(self._names)

    def set_tensor_shape(self, tensor_name, tensor_shape, dtype=None):
        value_info = self._model_proto.graph.value_info
        old = self._vi.get(tensor_name)
        last = value_info[len(value_info) - 1] if len(value_info) else None
        if old is _MULTIPLE or (old is not None and (last is None or last.name != tensor_name)):
            super().set_tensor_shape(tensor_name, tensor_shape, dtype)  # an input, an output, or not the last entry
            self._names.add(tensor_name)
            return
        if dtype is None:
            dtype = TensorProto.FLOAT if old is None else old.type.tensor_type.elem_type
        if old is not None:  # the last value info: qonnx removes it and appends the new one
            del value_info[len(value_info) - 1]
        value_info.append(oh.make_tensor_value_info(tensor_name, dtype, tensor_shape))
        self._vi[tensor_name] = value_info[len(value_info) - 1]
        self._names.add(tensor_name)

    def set_initializer(self, tensor_name, tensor_value):
        if tensor_name in self._init:
            super().set_initializer(tensor_name, tensor_value)
            return
        proto = np_helper.from_array(tensor_value)
        proto.name = tensor_name
        inits = self._model_proto.graph.initializer
        inits.append(proto)
        self._init[tensor_name] = inits[len(inits) - 1]
        self.set_tensor_shape(tensor_name, list(tensor_value.shape), proto.data_type)


class _Nodes(list):
    """``graph.node`` as a Python list; inserts and removals reach the view's producer and reader index."""

    def __init__(self, view: ListView, nodes: list):
        super().__init__(nodes)
        self._view = view

    def _copy(self, node) -> WatchedNode:
        """What protobuf's field stores: a copy (a pass's later edits to the node it made do not reach the graph)."""
        stored = NodeProto()
        stored.CopyFrom(proto_of(node))
        return WatchedNode(self._view, stored)

    def insert(self, index, node) -> None:
        stored = self._copy(node)
        super().insert(index, stored)
        self._view.added(stored)

    def append(self, node) -> None:
        stored = self._copy(node)
        super().append(stored)
        self._view.added(stored)

    def remove(self, node) -> None:
        ids = [id(x) for x in self]
        if id(node) in ids:
            k = ids.index(id(node))
        else:  # an equal node, as protobuf's remove finds it
            k = super().index(node)
        gone = self[k]
        super().__delitem__(k)
        self._view.dropped(gone)

    def _refuse(self, *args, **kwargs):
        raise NotImplementedError("a pass on a ListView inserts, appends and removes nodes only")

    extend = pop = clear = sort = reverse = __setitem__ = __delitem__ = __iadd__ = _refuse


class IndexedValueInfos:
    """``graph.value_info`` whose appends reach the view's index; everything else is the field's own."""

    def __init__(self, view: EditableView):
        self._view, self._field = view, view.model.graph.value_info

    def append(self, vi) -> None:
        self._view.add_valueinfo(vi)

    def __iter__(self):
        return iter(self._field)

    def __len__(self):
        return len(self._field)

    def __getitem__(self, k):
        return self._field[k]

    def __delitem__(self, k):
        del self._field[k]

    def __contains__(self, vi):
        return vi in self._field

    def __getattr__(self, name):
        return getattr(self._field, name)


class GraphView:
    """The graph as a pass sees it: ``node`` a stand-in list, ``value_info`` appends indexed, the rest the graph's own."""

    def __init__(self, view: EditableView, node: list):
        self._graph = view.model.graph
        self.node = node
        self.value_info = IndexedValueInfos(view)

    def __getattr__(self, name):
        return getattr(self._graph, name)


class ListView(EditableView):
    """A model whose ``graph.node`` is a Python list with a producer and reader index (see the module)."""

    def __init__(self, model: ModelWrapper):
        self._proxy = None
        super().__init__(model)
        self.owner = model
        self.nodes = _Nodes(self, [WatchedNode(self, n) for n in self._model_proto.graph.node])
        self._prod: dict[str, list] = {}
        self._cons: dict[str, list] = {}
        self._unordered: set[str] = set()  # tensors whose producer or reader list may be out of graph order
        for n in self.nodes:
            self.added(n)
        self._unordered.clear()  # the lists were filled in graph order
        self._proxy = GraphView(self, self.nodes)

    @property
    def graph(self):
        return self._proxy if self._proxy is not None else self._model_proto.graph

    def _tables(self, node: WatchedNode, kinds: tuple[str, ...] | None):
        if kinds is None:
            kinds = ("both",)
        if "both" in kinds or "output" in kinds:
            yield self._prod, node.proto.output
        if "both" in kinds or "input" in kinds:
            yield self._cons, node.proto.input

    def added(self, node: WatchedNode, kinds: tuple[str, ...] | None = None) -> None:
        """Index ``node`` (joining the graph; with ``kinds``, its ``input`` or ``output`` just rewired)."""
        node.live = node.live or kinds is None
        for table, tensors in self._tables(node, kinds):
            for t in tensors:
                found = table.setdefault(t, [])
                found.append(node)
                if len(found) > 1:
                    self._unordered.add(t)

    def dropped(self, node: WatchedNode, kinds: tuple[str, ...] | None = None) -> None:
        """Forget ``node`` (leaving the graph; with ``kinds``, its ``input`` or ``output`` about to be rewired)."""
        if kinds is None:
            node.live = False
        for table, tensors in self._tables(node, kinds):
            for t in tensors:
                found = table.get(t, [])
                for k, x in enumerate(found):
                    if x is node:
                        del found[k]
                        break

    def _ordered(self, table: dict, tensor: str) -> list:
        found = table.get(tensor, [])
        if tensor in self._unordered:
            if len(found) > 1:
                position = {id(x): k for k, x in enumerate(self.nodes)}
                found.sort(key=lambda x: position[id(x)])
            self._unordered.discard(tensor)  # in order until a node joins the list
        return found

    def find_producer(self, tensor_name):
        found = self._ordered(self._prod, tensor_name)
        return found[0] if found else None

    def find_consumers(self, tensor_name):
        return list(self._ordered(self._cons, tensor_name))

    def find_direct_successors(self, node):
        return [c for o in node.output for c in self.find_consumers(o)] or None

    def find_direct_predecessors(self, node):
        found = [self.find_producer(i) for i in node.input]
        return [p for p in found if p is not None] or None

    def write_back(self) -> None:
        """Put the list's nodes into the graph (once; the view is done after)."""
        if self._proxy is None:
            return
        g = self._model_proto.graph
        if len(self.nodes) != len(g.node) or not all(a.proto is b for a, b in zip(self.nodes, g.node)):
            nodes = [n.proto for n in self.nodes]
            del g.node[:]
            g.node.extend(nodes)
        self._proxy = None

    def transform(self, *args, **kwargs):
        self.write_back()
        return self.owner.transform(*args, **kwargs)

    def release(self) -> None:
        """Write the nodes back and drop everything the view holds. Its nodes point back at it, so without this
        the view, the model it wraps and every weight it indexed would wait for Python's cycle collector: a
        224x224 build, whose steps each replace the model, would hold several models at once."""
        self.write_back()
        self.__dict__.clear()


def on_list_view(apply):
    """A pass's ``apply`` run on a :class:`ListView` of the model (its result the model's own)."""

    def run(self, model: ModelWrapper):
        view = ListView(model)
        try:
            result, changed = apply(self, view)
        finally:
            view.release()
        return (model if result is view else result), changed

    run.__doc__ = f"{apply.__qualname__} on a :class:`flow.compat.qonnx_view.ListView` of the model."
    return run
