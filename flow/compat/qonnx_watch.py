"""Nodes of a :class:`flow.compat.qonnx_view.ListView` as FINN's passes get them: each ``NodeProto`` as it is,
but for its ``input`` and ``output`` lists, whose edits reach the view's producer and reader index.

A pass that rewires a node in place (``consumer.input[0] = x``, ``n.output[0] = y``, ``n.CopyFrom(m)``)
changes the node itself, which no index can see; through a :class:`WatchedNode` the view drops the node's
old wiring from its index and adds the new one, as the edit happens. A node taken out of the graph is no
longer indexed, whatever is done to it after (as protobuf's field, which keeps a copy apart).
"""

from __future__ import annotations

import copy

from onnx import NodeProto


def proto_of(node):
    """The ``NodeProto`` behind ``node`` (a :class:`WatchedNode` or a node)."""
    return node.proto if isinstance(node, WatchedNode) else node


class _Wires:
    """A watched node's ``input`` or ``output``: the repeated field, its edits reported to the view's index."""

    __slots__ = ("_node", "_kind")

    def __init__(self, node: WatchedNode, kind: str):
        self._node, self._kind = node, kind

    @property
    def _field(self):
        return getattr(self._node.proto, self._kind)

    def _edit(self, name: str, *args):
        return self._node.rewired(self._kind, lambda: getattr(self._field, name)(*args))

    def __getitem__(self, k):
        return self._field[k]

    def __setitem__(self, k, value):
        self._edit("__setitem__", k, value)

    def __delitem__(self, k):
        self._edit("__delitem__", k)

    def append(self, value):
        self._edit("append", value)

    def extend(self, values):
        self._edit("extend", list(values))

    def insert(self, k, value):
        self._edit("insert", k, value)

    def remove(self, value):
        self._edit("remove", value)

    def pop(self, k=-1):
        return self._edit("pop", k)

    def __len__(self):
        return len(self._field)

    def __iter__(self):
        return iter(self._field)

    def __contains__(self, value):
        return value in self._field

    def __eq__(self, other):
        return list(self._field) == list(other)

    def __repr__(self):
        return repr(list(self._field))

    def __getattr__(self, name):
        return getattr(self._field, name)


class WatchedNode:
    """A node of a :class:`ListView` as a pass gets it: the ``NodeProto`` for everything, but ``input`` and
    ``output``, whose edits keep the view's producer and reader index current (while the node is in the graph)."""

    __slots__ = ("proto", "view", "live")
    __hash__ = None  # as protobuf's messages

    def __init__(self, view, proto: NodeProto):  # view: the ListView whose index the node's edits reach
        for name, value in (("proto", proto), ("view", view), ("live", False)):
            object.__setattr__(self, name, value)

    # made on each access: held by the node, they would make a reference cycle with it, and the node (with the
    # model it belongs to, every weight included) would wait for Python's cycle collector
    @property
    def input(self) -> _Wires:
        return _Wires(self, "input")

    @property
    def output(self) -> _Wires:
        return _Wires(self, "output")

    def rewired(self, kind: str, edit):
        if not self.live:
            return edit()
        self.view.dropped(self, kinds=(kind,))
        try:
            return edit()
        finally:
            self.view.added(self, kinds=(kind,))

    def __getattr__(self, name):
        return getattr(self.proto, name)

    def __setattr__(self, name, value):
        if name == "live":
            object.__setattr__(self, name, value)
        elif name in ("input", "output"):
            raise AttributeError(f"assign to node.{name}[:] instead of node.{name}")
        else:
            setattr(self.proto, name, value)

    def _whole(self, name: str, *args):
        return self.rewired("both", lambda: getattr(self.proto, name)(*(proto_of(a) for a in args)))

    def CopyFrom(self, other):  # noqa: N802 - protobuf's names
        self._whole("CopyFrom", other)

    def MergeFrom(self, other):  # noqa: N802
        self._whole("MergeFrom", other)

    def Clear(self):  # noqa: N802
        self._whole("Clear")

    def ClearField(self, name):  # noqa: N802
        self._whole("ClearField", name)

    def __eq__(self, other):
        return self.proto == proto_of(other)

    def __deepcopy__(self, memo):
        return copy.deepcopy(self.proto, memo)

    def __copy__(self):
        return copy.copy(self.proto)

    def __str__(self):
        return str(self.proto)

    __repr__ = __str__
