"""The ways FINN users export a Brevitas network, each writing one ``.onnx`` file (and its
external data, if any) into an empty folder.

``docs``      FINN's end-to-end flow for bnn_pynq (its notebooks and
              tests/end2end/test_end2end_bnn_pynq.py): ``export_qonnx`` at opset 13, qonnx
              cleanup, ``ConvertQONNXtoFINN``, tidy-up, a ToTensor (x/255) pre-processing graph
              merged in front, the input annotated UINT8, ``InsertTopK(k=1)``. The file is
              FINN-ONNX (MultiThreshold, no Quant) ending in TopK.
``plain``     ``brevitas.export.export_qonnx`` as written (TorchScript, ``dynamo=False``).
``dynamo``    the same with ``dynamo=True`` (Brevitas' default on torch >= 2.9): opset 18+,
              Gemm layers, weights in a side ``.onnx.data`` file.
``topk``      plain, qonnx cleanup, then ``InsertTopK(k=1)``: a QONNX model outputting class indices.
``stripped``  plain, with every intermediate shape (``value_info``) and the output shape removed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import torch
from brevitas.export import export_qonnx
from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.general import (
    GiveReadableTensorNames,
    GiveUniqueNodeNames,
    RemoveStaticGraphInputs,
)
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.insert_topk import InsertTopK
from qonnx.transformation.merge_onnx_models import MergeONNXModels
from qonnx.util.cleanup import cleanup_model
from torch import nn


class ToTensor(nn.Module):
    """FINN's end-to-end pre-processing: uint8 pixels -> [0, 1] (torchvision's ToTensor)."""

    def forward(self, x):
        return x / 255.0


def _tidy(m: ModelWrapper) -> ModelWrapper:
    for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(), InferDataTypes(), RemoveStaticGraphInputs()):
        m = m.transform(t)
    return m


def plain(model: nn.Module, shape: tuple[int, ...], path: Path, *, dynamo: bool = False, opset: int | None = None) -> None:
    """``brevitas.export.export_qonnx`` as a user calls it; nothing else."""
    opts = {"dynamo": dynamo, **({"opset_version": opset} if opset else {})}
    export_qonnx(model, torch.zeros(1, *shape), str(path), **opts)


def docs(model: nn.Module, shape: tuple[int, ...], path: Path, *, dynamo: bool = False) -> None:
    """FINN's bnn_pynq end-to-end export (see the module docstring)."""
    raw, pre = path.with_name("raw.onnx"), path.with_name("pre.onnx")
    opts = {"dynamo": True} if dynamo else {"dynamo": False, "opset_version": 13}
    export_qonnx(model, torch.zeros(1, *shape), str(raw), **opts)
    m = _tidy(cleanup_model(ModelWrapper(str(raw))).transform(ConvertQONNXtoFINN()))
    export_qonnx(ToTensor(), torch.zeros(1, *shape), str(pre), **opts)
    p = cleanup_model(ModelWrapper(str(pre))).transform(ConvertQONNXtoFINN()).transform(InferShapes()).transform(FoldConstants())
    m = m.transform(MergeONNXModels(p))
    m.set_tensor_datatype(m.graph.input[0].name, DataType["UINT8"])
    _tidy(m.transform(InsertTopK(k=1))).save(str(path))
    for f in path.parent.iterdir():
        if f != path:
            f.unlink()


def topk(model: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """Plain export, qonnx cleanup, then a top-1 head: the graph outputs a class index."""
    plain(model, shape, path)
    cleanup_model(ModelWrapper(str(path))).transform(InsertTopK(k=1)).save(str(path))


def stripped(model: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """Plain export without any intermediate shape, and without the output's shape."""
    plain(model, shape, path)
    proto = onnx.load(str(path))
    del proto.graph.value_info[:]
    for out in proto.graph.output:
        out.type.tensor_type.ClearField("shape")
    onnx.save(proto, str(path))


EXPORTERS: dict[str, Callable[[nn.Module, tuple[int, ...], Path], None]] = {
    "docs": docs,
    "docs_dynamo": lambda m, s, p: docs(m, s, p, dynamo=True),
    "plain": plain,
    "opset11": lambda m, s, p: plain(m, s, p, opset=11),
    "opset13": lambda m, s, p: plain(m, s, p, opset=13),
    "dynamo": lambda m, s, p: plain(m, s, p, dynamo=True),
    "topk": topk,
    "stripped": stripped,
}
