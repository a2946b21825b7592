"""A model's input quantizer on a float input runs on the host; the accelerator takes its integers.

A network trained on float data (normalised pixels, sensor values) quantizes its input with a
Brevitas ``QuantIdentity``; after streamlining that quantizer is a ``MultiThreshold`` on the
float graph input. finn-plus turns it into a ``Thresholding`` layer that compares floats in
hardware: 784 inputs with 15 thresholds each cost an MLP four times its LUTs. qflow keeps
that one node on the host instead (as FINN always does with nodes at the graph's ends), so
the accelerator starts with integer streams and needs no ``--input-dtype``.

>>> from flow.compile.host_input import keep_input_quantizer_on_host
"""

from __future__ import annotations

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.vocab import is_hw_node

#: Host ops between the graph input and its quantizer that keep the data's values.
_DATA_MOVEMENT = ("Transpose", "Reshape", "Flatten")


def is_input_quantizer(model: ModelWrapper, node) -> bool:
    """True if ``node`` is a thresholding node that reads the float graph input, directly or
    through data movement on the host: it stays on the host as the model's input quantizer."""
    if not node.op_type.startswith(("MultiThreshold", "Thresholding")):
        return False
    tensor = node.input[0]
    while True:
        producer = model.find_producer(tensor)
        if producer is None:
            return tensor == model.graph.input[0].name and not model.get_tensor_datatype(tensor).is_integer()
        if producer.op_type not in _DATA_MOVEMENT or is_hw_node(producer):
            return False
        tensor = producer.input[0]


def float_input_thresholds(model: ModelWrapper) -> list:
    """Thresholding layers that read the float graph input, directly or through data movement on the host."""
    inp = model.graph.input[0].name
    if model.get_tensor_datatype(inp).is_integer():
        return []
    found, todo = [], [inp]
    while todo:
        for node in model.find_consumers(todo.pop()):
            if node.op_type.startswith("Thresholding") and is_hw_node(node):
                found.append(node)
            elif node.op_type in _DATA_MOVEMENT and not is_hw_node(node):
                todo.append(node.output[0])
    return found


def keep_input_quantizer_on_host(model: ModelWrapper) -> ModelWrapper:
    """Turn each :func:`float_input_thresholds` layer back into a qonnx ``MultiThreshold`` (host)."""
    for node in float_input_thresholds(model):
        inst = getCustomOp(node)
        rank = len(model.get_tensor_shape(node.input[0]))
        host = helper.make_node(
            "MultiThreshold", list(node.input[:2]), list(node.output), domain="qonnx.custom_op.general", name=node.name,
            out_dtype=inst.get_nodeattr("outputDataType"), out_bias=float(inst.get_nodeattr("ActVal")),
            data_layout="NHWC" if rank == 4 else "NC",
        )
        idx = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        model.graph.node.insert(idx, host)
    return model
