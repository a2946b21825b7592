"""finn-plus 1.6.1's ``ConvertQuantActToMultiThreshold`` in one sweep over the graph.

FINN's pass converts one activation ``Quant`` per ``apply`` and starts over from the first node.
Each conversion looks the Quant's producer up by scanning every node, reads its scale, zero
point and bit width by listing every initializer, and draws each new tensor name against a list
of every tensor name: a dozen whole-graph scans per activation, one activation per layer, so
O(nodes^2) on a deep network (8 CPU-s of a 1,329-node residual chain's QONNX-to-FINN step).

:func:`convert_quant_acts` runs FINN's own handlers (``QuantReluHandler``, ``QuantIdentityHandler``)
for every activation Quant, in graph order, each on a view of the model (:class:`_View`) whose
lookups are dictionaries kept current as the handler rewrites (:class:`flow.compat.qonnx_view.EditableView`):
the value infos and initializers it appends, the nodes it inserts and removes. The handler's node edits are collected on the side
(:class:`_Around`): the nodes it inserts take the Quant's place, as FINN inserts them after the
Quant and then removes it; the node list is written once, at the end. A conversion changes
nothing a later one reads but the producer of a Quant that reads an earlier Quant's output, which
the view's index follows. Other handler classes than FINN's two (a package adding its own) get
FINN's pass as it is. ``tests/compat/test_finn_quant_act.py`` compares the graphs byte for byte.
"""

from __future__ import annotations

from finn.transformation.qonnx import quant_act_to_multithreshold as finn_qa
from finn.transformation.qonnx.qonnx_activation_handlers import (
    QuantActBaseHandler,
    QuantIdentityHandler,
    QuantReluHandler,
)
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.qonnx_view import EditableView, GraphView

_finn_apply = finn_qa.ConvertQuantActToMultiThreshold.apply
_FINN_HANDLERS = [QuantReluHandler, QuantIdentityHandler]


class _Around(list):
    """A handler's ``graph.node``: the Quant at index 0, the nodes inserted after it behind; nodes removed
    from elsewhere in the graph (the activation before the Quant) are recorded in ``removed``."""

    def __init__(self, quant):
        super().__init__([quant])
        self.removed: list = []

    def remove(self, node) -> None:
        for k, x in enumerate(self):
            if x is node:
                del self[k]
                return
        self.removed.append(node)


class _View(EditableView):
    """:class:`EditableView` whose ``graph`` is the handler's (``node`` an :class:`_Around`) while a handler runs."""

    def __init__(self, model: ModelWrapper):
        self.around: GraphView | None = None
        super().__init__(model)

    @property
    def graph(self):
        return self.around if self.around is not None else self._model_proto.graph


def _handler_class(predecessor_op_type):
    for cls in QuantActBaseHandler.__subclasses__():
        if predecessor_op_type in cls.valid_predecessor_op_types():
            return cls
    return QuantIdentityHandler


def convert_quant_acts(self: finn_qa.ConvertQuantActToMultiThreshold, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
    """FINN's ``ConvertQuantActToMultiThreshold.apply``, every activation Quant in one call (see the module)."""
    if QuantActBaseHandler.__subclasses__() != _FINN_HANDLERS:
        return _finn_apply(self, model)
    g = model.graph
    nodes = list(g.node)
    view = _View(model)
    after: dict[int, list] = {}
    dead: set[int] = set()
    checked = False
    for i, n in enumerate(nodes):
        if n.op_type not in ("Quant", "BipolarQuant"):
            continue
        if view.get_initializer(n.input[0]) is not None or view.get_initializer(n.output[0]) is not None:
            continue
        predecessor = view.find_direct_predecessors(n)
        predecessor_op_type = predecessor[0].op_type if predecessor is not None else None
        if n.op_type == "Quant" and not view.get_initializer(n.input[2]) == 0:
            raise ValueError("Only Quant nodes with zero-point == 0 are currently supported.")
        if not self._filter_function(view, n):
            finn_qa.log.warning(
                f'The Quant node with name: "{n.name}" was not converted to a MultiThreshold node, '
                "because the filtering function returned False for this node."
            )
            continue
        if not checked:
            valid = [t for cls in QuantActBaseHandler.__subclasses__() for t in cls.valid_predecessor_op_types()]
            if len(valid) != len(set(valid)):
                raise RuntimeError(
                    "Two or more activation handlers declare the same type of valid predecessor node. "
                    "This leads to ambiguity in the handler selection and must thus be avoided."
                )
            checked = True
        around = _Around(n)
        view.around = GraphView(view, around)
        try:
            _handler_class(predecessor_op_type)(view, n, 1).replace_quant_node()
        finally:
            view.around = None
        inserted = [x for x in around if x is not n]
        for x in around.removed + ([] if len(inserted) < len(around) else [n]):
            view.forget_node(x)
            dead.add(id(x))
        for x in inserted:
            view.index_node(x)
        after[i] = inserted
    if after:
        order = []
        for i, n in enumerate(nodes):
            order.extend(x for x in (n, *after.get(i, ())) if id(x) not in dead)
        del g.node[:]
        g.node.extend(order)
    return model, False
