"""Where non-integer values in a streamlined graph come from, in words for an error message.

Used by :mod:`flow.compile.passes.mappable`: each helper walks up the graph from a tensor
through constant Mul/Add and data-movement ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compile.passes.graph import (
    LAYOUT_OPS,
    LINEAR_OPS,
    compress,
    const_operand,
    is_integer,
    is_join_add,
)
from flow.core.vocab import is_hw_node

#: Ops that may carry non-integer values at the end of the graph (they stay on the host).
HOST_TAIL_OPS = frozenset(
    "Mul Add Sub Div Transpose Reshape Flatten Squeeze Unsqueeze Identity TopK ArgMax Softmax LogSoftmax DepthToSpace "
    "SpaceToDepth".split()
)
#: Ops finn-plus 1.6.1's step_convert_to_hw tries to turn into hardware layers (given integer inputs),
#: less AveragePool (its InferPool converts only MaxPool and QuantAvgPool2d), plus Resize
#: (FINN's InferUpsample, run for Resize by flow.compat.finn_upsample).
CONVERTIBLE_OPS = frozenset(
    "Add And Concat ConvolutionInputGenerator Crop Div Equal Erf Gather Gelu GlobalAveragePool Greater "
    "GreaterOrEqual Im2Col LayerNormalization Less LessOrEqual MatMul MaxPool MaxPoolNHWC Mul MultiThreshold Or "
    "PWPolyF Pad Quant QuantAvgPool2d ReduceMax ReduceMean ReduceSum Relu Requant Resize Sigmoid Softmax Split Sub "
    "Tanh TopK Upsample Where XnorPopcountMatMul Xor".split()
)
#: Ops that only move or select values: a scale before them is reported at their consumer.
TRANSPARENT_OPS = frozenset(LAYOUT_OPS) | {"Im2Col", "MaxPool", "MaxPoolNHWC", "Pad", "Identity"}
MAX_DEPTH = 50


@dataclass
class Unmapped:
    """One reason a graph cannot become integer hardware: the node, its op, its neighbours, why and the fix."""

    node: str
    op: str
    inputs: list[str]
    outputs: list[str]
    reason: str
    from_input: bool = False  # the non-integer values start at the float graph input

    def __str__(self):
        return (
            f"node {self.node!r} ({self.op}) cannot be mapped to integer hardware: {self.reason} "
            f"[inputs from: {', '.join(self.inputs) or 'graph input'}; feeds: {', '.join(self.outputs) or 'graph output'}]"
        )


def unmapped(model: ModelWrapper, node, reason: str, from_input: bool = False) -> Unmapped:
    ins, outs = neighbours(model, node)
    return Unmapped(node.name, node.op_type, ins, outs, reason, from_input)


def node_label(node) -> str:
    return f"{node.name} ({node.op_type})"


def neighbours(model: ModelWrapper, node) -> tuple[list[str], list[str]]:
    """The nodes (or graph input) feeding ``node``, and the nodes it feeds."""
    ins = []
    for t in node.input:
        if not t or model.get_initializer(t) is not None:
            continue
        p = model.find_producer(t)
        ins.append(node_label(p) if p is not None else f"graph input {t!r}")
    return ins, [node_label(c) for o in node.output for c in model.find_consumers(o)]


def const_summary(c) -> str:
    """``scalar 0.5`` or ``8 different values in 0.01..0.02``."""
    c = compress(np.asarray(c))
    if c.size == 1:
        return f"scalar {float(c.reshape(-1)[0]):.6g}"
    return f"{np.unique(c).size} different values in {float(c.min()):.4g}..{float(c.max()):.4g}"


def grid(model: ModelWrapper, tensor: str, depth: int = 0) -> str:
    """How ``tensor`` relates to integers: ``integers x scale .. (Mul_1)``, walking up constant Mul/Add and layout ops."""
    if is_integer(model, tensor):
        return "integers"
    p = model.find_producer(tensor)
    if p is None:
        return f"the float graph input {tensor!r}"
    if depth > MAX_DEPTH:
        return "float values"
    co = const_operand(model, p) if p.op_type in LINEAR_OPS else None
    if co is not None:
        inner = grid(model, p.input[co[0]], depth + 1)
        if p.op_type == "Mul":
            return f"{inner} x scale {const_summary(co[2])} ({p.name})"
        return f"{inner} + offset {const_summary(co[2])} ({p.name})"
    if p.op_type in LAYOUT_OPS:
        return grid(model, p.input[0], depth + 1)
    return f"float values from {node_label(p)}"


def dynamic_inputs(model: ModelWrapper, node) -> list[str]:
    return [t for t in node.input if t and model.get_initializer(t) is None]


def float_origins(model: ModelWrapper, tensor: str, seen: set | None = None) -> list:
    """The nodes where the non-integer values reaching ``tensor`` start (all their dynamic inputs integer)."""
    seen = set() if seen is None else seen
    p = model.find_producer(tensor)
    if p is None or p.output[0] in seen:
        return []
    seen.add(p.output[0])
    float_in = [t for t in dynamic_inputs(model, p) if not is_integer(model, t)]
    if not float_in:
        return [p]
    return [o for t in float_in for o in float_origins(model, t, seen)]


def feeds_integer_compute(model: ModelWrapper, node, seen: set | None = None) -> bool:
    """True if a node downstream of ``node`` must be hardware (so ``node`` is not in the host-side tail)."""
    seen = set() if seen is None else seen
    for o in node.output:
        for c in model.find_consumers(o):
            if c.output[0] in seen:
                continue
            seen.add(c.output[0])
            if c.op_type not in HOST_TAIL_OPS or is_hw_node(c) or is_join_add(model, c):
                return True
            if feeds_integer_compute(model, c, seen):
                return True
    return False


def has_compute_upstream(model: ModelWrapper, node, seen: set | None = None) -> bool:
    """True if a node that becomes hardware feeds ``node`` (so ``node`` sits between hardware layers,
    not in front of them on the host)."""
    seen = set() if seen is None else seen
    for t in dynamic_inputs(model, node):
        p = model.find_producer(t)
        if p is None or p.output[0] in seen:
            continue
        seen.add(p.output[0])
        if is_hw_node(p) or (p.op_type in CONVERTIBLE_OPS and p.op_type not in TRANSPARENT_OPS):
            return True
        if has_compute_upstream(model, p, seen):
            return True
    return False


def is_consequence(model: ModelWrapper, tensor: str, depth: int = 0) -> bool:
    """True if the non-integer ``tensor`` passed through another reported node on its way here."""
    p = model.find_producer(tensor)
    if p is None or depth > MAX_DEPTH:
        return False
    if p.op_type in TRANSPARENT_OPS:
        return is_consequence(model, p.input[0], depth + 1)
    co = const_operand(model, p) if p.op_type in LINEAR_OPS else None
    if co is not None:
        inner = p.input[co[0]]
        return not is_integer(model, inner) and is_consequence(model, inner, depth + 1)
    if not is_hw_node(p) and p.op_type not in CONVERTIBLE_OPS:
        return True  # reported as a node without a hardware layer
    return any(not is_integer(model, t) for t in dynamic_inputs(model, p))


def is_depthwise(W: np.ndarray) -> bool:
    """A lowered depthwise weight matrix: (k*k*C, C) with W[i, o] != 0 only where i % C == o."""
    rows, cols = np.nonzero(W)
    return W.shape[0] % W.shape[1] == 0 and bool(np.all(rows % W.shape[1] == cols))
