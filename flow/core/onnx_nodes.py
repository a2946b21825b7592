"""Reading ONNX nodes against their model: which operand of a binary op is a constant.

Shared by the compile passes (which move constants) and verification (which reads the
rescaling a design leaves on the host).
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper


def const_operand(model: ModelWrapper, node) -> tuple[int, str, np.ndarray] | None:
    """(index of the dynamic input, name of the constant, its value) for a binary op with one constant input."""
    if len(node.input) != 2:
        return None
    c0, c1 = model.get_initializer(node.input[0]), model.get_initializer(node.input[1])
    if (c0 is None) == (c1 is None):
        return None
    return (1, node.input[0], c0) if c1 is None else (0, node.input[1], c1)
