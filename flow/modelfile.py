"""Loading ONNX model files safely, and checking that they are quantized QONNX.

>>> from flow.modelfile import QUANT_OPS
>>> "Quant" in QUANT_OPS
True
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx.external_data_helper import load_external_data_for_model, uses_external_data
from qonnx.core.modelwrapper import ModelWrapper

from flow.errors import ModelFileError, UnquantizedModelError

QUANT_OPS = ("Quant", "BipolarQuant", "BinaryQuant", "Trunc", "MultiThreshold")


def load_onnx(path: str | Path) -> ModelWrapper:
    """Read an ONNX file into a ModelWrapper.

    External-data tensors must live inside the model's folder: a location that is
    absolute or climbs out of it (``../``) is refused, as is a file that is not ONNX.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such file")
    try:
        proto = onnx.load_model(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ModelFileError(f"{p} is not an ONNX model ({type(e).__name__}); pass a .onnx file exported by Brevitas") from None
    if len(proto.graph.node) == 0:
        raise ModelFileError(f"{p} is not an ONNX model with a graph; pass a .onnx file exported by Brevitas")
    base = p.resolve().parent
    for tensor in _all_initializers(proto):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(base):
            raise ModelFileError(
                f"{p}: tensor {tensor.name!r} points its external data outside the model folder "
                f"({location!r}); keep external data files beside the model"
            )
        if not target.is_file():
            raise ModelFileError(f"{p}: external data file {location!r} of tensor {tensor.name!r} is missing")
    load_external_data_for_model(proto, str(base))
    return ModelWrapper(proto)


def _all_initializers(proto: onnx.ModelProto):
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from attr.g.initializer


def check_quantized(model: ModelWrapper, source: str = "model") -> None:
    """Raise UnquantizedModelError unless the graph holds quantization nodes."""
    if not any(n.op_type in QUANT_OPS for n in model.graph.node):
        ops = sorted({n.op_type for n in model.graph.node})
        raise UnquantizedModelError(
            f"{source} has no quantization nodes (ops: {', '.join(ops)}); FINN needs a quantized "
            "QONNX model: build it from Brevitas quantized layers and export it with "
            "brevitas.export.export_qonnx"
        )
