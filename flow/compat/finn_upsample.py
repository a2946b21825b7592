"""finn-plus 1.6.1 converts a nearest-neighbour ``Resize`` to ``UpsampleNearestNeighbour`` only by luck.

Its ``InferUpsample`` handles ``Resize`` and ``Upsample`` alike, but ``step_convert_to_hw``
runs it only when the graph holds an ``Upsample`` node (``apply_if_relevant(model,
["Upsample"], InferUpsample())``): a ``Resize``, which PyTorch and Brevitas export since
opset 11, stays unconverted between hardware layers. :func:`infer_upsample_layers` runs
FINN's pass for ``Resize`` nodes before the rest of FINN's conversion
(``tests/compat/test_finn_upsample.py`` shows the gap is still there).
"""

from __future__ import annotations

from finn.transformation.fpgadataflow.convert_to_hw.upsample import InferUpsample
from qonnx.core.modelwrapper import ModelWrapper


def infer_upsample_layers(model: ModelWrapper) -> ModelWrapper:
    """FINN's ``InferUpsample`` when the graph has a ``Resize`` (it converts those reading NHWC integers)."""
    if not model.get_nodes_by_op_type("Resize"):
        return model
    return model.transform(InferUpsample())
