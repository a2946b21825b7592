"""The host tail of a design: what runs after its last integer tensor, and the affine map it applies.

FINN leaves the dequantizing scale and offset of a design's output (and pure data movement)
on the host, after the accelerator. Verification reads the design's integer outputs where
that tail starts (:func:`output_tail`), looking into dataflow partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.onnx_nodes import const_operand
from flow.core.vocab import PARTITION_OP

#: Host ops a design may end with between its last integer tensor and its label or output:
#: the rescaling FINN leaves outside the accelerator, and pure data movement.
TAIL_OPS = ("Mul", "Add", "Sub", "Div", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
#: Host ops that only reorder values: a tail may pass them while its scale and offset are scalars.
REORDER_OPS = ("Transpose", "DepthToSpace", "SpaceToDepth")

def design_graphs(model: ModelWrapper):
    """The model, then the child models of its dataflow partitions."""
    yield model
    for node in model.get_nodes_by_op_type(PARTITION_OP):
        yield ModelWrapper(getCustomOp(node).get_nodeattr("model"))


def _is_integer(m: ModelWrapper, tensor: str) -> bool:
    if m.get_tensor_datatype(tensor).is_integer():
        return True
    node = m.find_producer(tensor)  # a partition's output: the child's annotation counts
    if node is not None and node.op_type == PARTITION_OP:
        child = ModelWrapper(getCustomOp(node).get_nodeattr("model"))
        return child.get_tensor_datatype(child.graph.output[list(node.output).index(tensor)].name).is_integer()
    return False


@dataclass(frozen=True)
class OutputTail:
    """The host tail from a design's last integer tensor to one of its outputs: ``out == tensor * scale + bias``.

    ``scale`` and ``bias`` are accumulated off the constant Mul/Add/Sub/Div nodes of the tail
    (layout nodes keep them); both are ``None`` when a tail node is not affine in its input.
    """

    tensor: str
    scale: np.ndarray | None
    bias: np.ndarray | None


def _affine_step(m: ModelWrapper, node, scale, bias):
    """(dynamic input, scale, bias) of ``out == input * scale + bias`` through one tail node; None to stop."""
    dynamic = [i for i in node.input if i and m.get_initializer(i) is None]
    if node.op_type in REORDER_OPS and len(dynamic) == 1 and scale is not None and np.size(scale) == np.size(bias) == 1:
        return dynamic[0], scale, bias  # uniform scale and offset: the order of the values does not matter
    if node.op_type not in TAIL_OPS or len(dynamic) != 1:
        return None
    if node.op_type not in ("Mul", "Add", "Sub", "Div"):
        return dynamic[0], scale, bias  # layout: the same values
    co = const_operand(m, node)
    if co is None:
        return None
    idx, _, c = co
    c = np.asarray(c, dtype=np.float64)
    if scale is None:
        return node.input[idx], None, None
    if node.op_type == "Mul":  # out = (t * c) * scale + bias
        return node.input[idx], scale * c, bias
    if node.op_type == "Add":  # out = (t + c) * scale + bias
        return node.input[idx], scale, bias + c * scale
    if node.op_type == "Sub":  # out = (t - c) or (c - t)
        return (node.input[idx], scale, bias - c * scale) if idx == 0 else (node.input[idx], -scale, bias + c * scale)
    if idx == 0:  # out = (t / c) * scale + bias
        return node.input[idx], scale / c, bias
    return node.input[idx], None, None  # c / t is not affine in t


def output_tail(model: ModelWrapper, tensor: str) -> OutputTail | None:
    """The last integer tensor on the way back from ``tensor`` through host tail ops, with the affine map.

    ``tensor`` itself (scale 1, bias 0) if it is integer; else walk back through
    :data:`TAIL_OPS` nodes (their one non-constant input) to an integer tensor, looking into
    dataflow partitions; ``None`` if there is none.
    """
    m = next((g for g in design_graphs(model) if g.find_producer(tensor) is not None or tensor in [i.name for i in g.graph.input]), None)
    scale, bias = np.float64(1.0), np.float64(0.0)
    while m is not None:
        if _is_integer(m, tensor):
            return OutputTail(tensor, scale, bias)
        node = m.find_producer(tensor)
        step = _affine_step(m, node, scale, bias) if node is not None else None
        if step is None:
            return None
        tensor, scale, bias = step
    return None
