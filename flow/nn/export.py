"""Brevitas -> QONNX export, with the graph input annotated as the integer type it carries.

qflow's models take raw pixels (integers 0..255) and scale them internally, so their
QONNX input is annotated UINT8 and FINN can turn the input quantizer into thresholds.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from brevitas.export import export_qonnx as brevitas_export
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.cleanup import cleanup_model

from flow.core.fileio import atomic_write_bytes
from models.weights import bake_quantized_weights


def export_qonnx(model: torch.nn.Module, path: str | Path, input_shape: tuple[int, ...], input_dtype: str = "UINT8") -> ModelWrapper:
    """Export ``model`` (in eval mode) to one self-contained QONNX file at ``path``.

    Uses Brevitas' exporter with the TorchScript path (``dynamo=False``), which writes a
    single file rather than a side ``.onnx.data`` file. A copy of ``model`` is exported with
    its quantized weights written into its float weights
    (:func:`models.weights.bake_quantized_weights`), so every ``Quant`` node reproduces the
    training-time quantizer, thresholded ones (TWN) included.
    """
    p = Path(path)
    was_training = model.training
    model.eval()
    try:  # Brevitas writes its raw export into a private temporary folder, never beside ``path``
        with torch.no_grad(), tempfile.TemporaryDirectory(prefix="qflow-export-") as tmp_dir:
            tmp = Path(tmp_dir) / "export.onnx"
            baked = bake_quantized_weights(copy.deepcopy(model))
            brevitas_export(baked, torch.zeros(1, *input_shape), str(tmp), dynamo=False)
            wrapped = cleanup_model(ModelWrapper(str(tmp)))
        wrapped.set_tensor_datatype(wrapped.graph.input[0].name, DataType[input_dtype])
        atomic_write_bytes(p, wrapped.model.SerializeToString())
    finally:
        model.train(was_training)
    return ModelWrapper(str(p))
