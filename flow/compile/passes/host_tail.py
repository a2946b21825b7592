"""The float output tail (dequantizing scale, per-class bias, a TopK on them) stays on the host.

FINN's ``InferElementwiseBinaryOperation`` (in ``convert_to_hw``) turns every Mul/Add into an
``ElementwiseMul``/``ElementwiseAdd`` layer, also the float ones that dequantize the output;
its own filter (``reject_output_dequant``) spares only a single Mul that is the graph
output. A float hardware layer cannot be built, and a biased classifier ends in Mul + Add,
with a TopK after them when a label is wanted (FINN keeps a TopK on floats as ONNX).
"""

from __future__ import annotations

from onnx import helper
from qonnx.transformation.base import Transformation

from flow.compat.qonnx_index import IndexedModel
from flow.compile.passes.graph import const_operand, is_integer
from flow.core.vocab import is_hw_node

FLOAT_TAIL_LAYERS = {"ElementwiseMul": "Mul", "ElementwiseAdd": "Add"}


def is_float_tail_layer(model, node) -> bool:
    """A float ElementwiseMul/ElementwiseAdd with one constant operand (a dequantizing scale or bias)."""
    return node.op_type in FLOAT_TAIL_LAYERS and const_operand(model, node) is not None and not is_integer(model, node.output[0])


class KeepFloatTailOnHost(Transformation):
    """Turn the float ``ElementwiseMul``/``ElementwiseAdd`` layers whose results only reach the graph
    output through host nodes (ONNX ops such as TopK, or other such layers) back into ONNX Mul/Add.

    They then stay in the host-side parent graph when FINN cuts the dataflow partition.
    """

    def apply(self, model):
        view = IndexedModel(model)
        outputs = {o.name for o in model.graph.output}
        tail: set[str] = set()  # (first outputs of) nodes that only lead to the graph output through host nodes
        grew = True
        while grew:
            grew = False
            for n in reversed(list(model.graph.node)):
                if n.output[0] in tail or not (is_float_tail_layer(view, n) or not is_hw_node(n)):
                    continue
                consumers = [c for o in n.output for c in view.find_consumers(o)]
                if all(c.output[0] in tail for c in consumers) and (consumers or any(o in outputs for o in n.output)):
                    tail.add(n.output[0])
                    grew = True
        layers = [n for n in model.graph.node if n.output[0] in tail and is_float_tail_layer(view, n)]
        for n in layers:  # in place: same inputs, outputs, name and position
            n.CopyFrom(helper.make_node(FLOAT_TAIL_LAYERS[n.op_type], list(n.input), list(n.output), name=n.name))
        return model, False
