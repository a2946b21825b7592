"""Normalise any Brevitas/QONNX export on import, before anything executes.

Brevitas writes QONNX in several shapes: the TorchScript exporter (``dynamo=False``) lists
weights as graph inputs and leaves most intermediate tensors without shapes; the dynamo
exporter (Brevitas' default on torch >= 2.9) writes opset 18+, ``Gemm`` layers, local
functions and a side ``.onnx.data`` file (:func:`flow.compile.load.load_onnx` inlines and
checks those); FINN's own end-to-end flow hands over FINN-ONNX files that already end in
``TopK``. :func:`normalize` turns all of them into one form with qonnx's own passes, run
in the order of :data:`NORMALIZE_PASSES`:

* ``cleanup``: qonnx ``cleanup_model`` (what ``qonnx-cleanup`` runs): shape inference, unique
  parameter tensors, constant folding that keeps the quantizers, ``Transpose`` folded into
  weight quantizers, unused tensors and static graph inputs removed, unique node names and
  readable tensor names;
* ``argmax_to_topk``: a final ``ArgMax`` over the classes (``torch.argmax(y, 1, keepdim=True)``)
  becomes ``TopK(k=1)``, the label head FINN maps to ``LabelSelect`` (the same tie rule: the
  lowest index among equal maxima);
* ``annotate_input``: the graph input gets ``--input-dtype`` when one is given;
* ``infer_datatypes``: qonnx ``InferDataTypes``;
* ``check_shapes``: every tensor has a shape now, or the error names the node whose output has none;
* ``check_input_domain``: a float graph input must reach a quantizer before any layer computes
  on it; otherwise the model has no input quantizer and ``--input-dtype`` must say what the
  input holds.

The result is what ``checkpoints/00_qonnx.onnx`` holds and what verification executes as the
``qonnx`` stage. Normalising a normalised model changes nothing.

>>> [p.__name__ for p in NORMALIZE_PASSES]
['cleanup', 'argmax_to_topk', 'annotate_input', 'infer_datatypes', 'check_shapes', 'check_input_domain']
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from flow.compat.qonnx_index import IndexedModel
from flow.compat.qonnx_linear import linear_qonnx, transforms_in_place
from flow.core.errors import InputDatatypeError, ModelFileError
from flow.core.vocab import QUANT_OPS

#: Ops that compute with weights: one of them reading the raw float input needs --input-dtype.
COMPUTE_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def cleanup(model: ModelWrapper, input_dtype: str | None) -> ModelWrapper:
    """qonnx's cleanup (the passes of ``qonnx-cleanup``), quantizers kept."""
    try:
        return cleanup_model(model)
    except Exception as e:  # noqa: BLE001 - shape inference / constant folding on a malformed graph raise many types
        raise ModelFileError(f"qonnx cleanup cannot process this model ({_one_line(e)}); export it again with brevitas.export.export_qonnx") from None


def argmax_to_topk(model: ModelWrapper, input_dtype: str | None) -> ModelWrapper:
    """Replace a graph-ending ``ArgMax`` over the last axis with ``keepdims=1`` by ``TopK(k=1)``."""
    out = model.graph.output[0].name
    node = model.find_producer(out)
    if node is None or node.op_type != "ArgMax":
        return model
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(model.get_tensor_shape(node.input[0]) or [])
    if rank == 0 or attrs.get("axis", 0) % rank != rank - 1 or attrs.get("keepdims", 1) != 1 or attrs.get("select_last_index", 0):
        return model
    k, values = f"{node.name}_k", f"{node.name}_values"
    model.set_initializer(k, np.array([1], dtype=np.int64))
    topk = helper.make_node("TopK", [node.input[0], k], [values, out], axis=-1, largest=1, sorted=1, name=node.name)
    idx = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    model.graph.node.insert(idx, topk)
    model.graph.value_info.append(helper.make_tensor_value_info(values, TensorProto.FLOAT, model.get_tensor_shape(out)))
    return model.transform(InferShapes())


def annotate_input(model: ModelWrapper, input_dtype: str | None) -> ModelWrapper:
    """Annotate the graph input with ``input_dtype`` (``--input-dtype``), if given."""
    if input_dtype is not None:
        model.set_tensor_datatype(model.graph.input[0].name, DataType[input_dtype])
    return model


def infer_datatypes(model: ModelWrapper, input_dtype: str | None) -> ModelWrapper:
    """qonnx's datatype inference (quantizer outputs, integer ops, class indices)."""
    return model.transform(InferDataTypes())


def check_shapes(model: ModelWrapper, input_dtype: str | None) -> ModelWrapper:
    """Raise ModelFileError naming the first node whose output still has no shape."""
    g = model.graph
    shaped = {v.name for v in (*g.value_info, *g.output, *g.input) if v.type.tensor_type.HasField("shape")}
    shaped |= {t.name for t in g.initializer}
    for node in g.node:
        for out in node.output:
            if out and out not in shaped:
                raise ModelFileError(
                    f"shape inference left {out[:60]!r}, output of node {node.name!r} ({node.op_type}), without a shape; "
                    "export with a fixed input shape (brevitas.export.export_qonnx(model, torch.zeros(1, C, H, W), path))"
                )
    return model


def unquantized_compute(model: ModelWrapper) -> object | None:
    """The first weight layer that reads the float graph input without a quantizer in between, if any."""
    model = IndexedModel(model)
    todo, seen = [model.graph.input[0].name], set()
    while todo:
        tensor = todo.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for node in model.find_consumers(tensor):
            if node.op_type in QUANT_OPS:
                continue
            if node.op_type in COMPUTE_OPS:
                return node
            todo += [o for o in node.output if not model.get_tensor_datatype(o).is_integer()]
    return None


def check_input_domain(model: ModelWrapper, input_dtype: str | None) -> ModelWrapper:
    """A float graph input needs an input quantizer, or ``--input-dtype`` saying which integers it holds."""
    name = model.graph.input[0].name
    if model.get_tensor_datatype(name).is_integer():
        return model
    node = unquantized_compute(model)
    if node is not None:
        raise InputDatatypeError(
            f"the model has no input quantizer: node {node.name!r} ({node.op_type}) computes on the float graph input "
            f"{name!r}; pass --input-dtype with the integer type the input holds (e.g. --input-dtype UINT8 for raw "
            "0..255 pixels), or quantize the input in the model (a Brevitas QuantIdentity first)"
        )
    return model


NORMALIZE_PASSES = [cleanup, argmax_to_topk, annotate_input, infer_datatypes, check_shapes, check_input_domain]


def normalize(model: ModelWrapper, input_dtype: str | None = None) -> ModelWrapper:
    """The model in qflow's import form: cleaned up, every tensor shaped and typed, a label head as TopK.

    ``model`` is left as it was: the passes rewrite one copy of it in place, with qonnx's
    whole-graph passes in linear time (:mod:`flow.compat.qonnx_linear`).
    """
    with warnings.catch_warnings(), linear_qonnx(), transforms_in_place():
        warnings.simplefilter("ignore")  # qonnx warns about every datatype it sanitizes; nothing is lost
        model = copy.deepcopy(model)
        for p in NORMALIZE_PASSES:
            model = p(model, input_dtype)
    return model
