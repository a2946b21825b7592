"""The float output tail (scale, per-class bias, a TopK on them) stays on the host (KeepFloatTailOnHost)."""

import numpy as np
from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import (
    InferElementwiseBinaryOperation,
)
from finn.transformation.fpgadataflow.convert_to_hw.label_select import (
    InferLabelSelectLayer,
)
from onnx import helper
from onnx_graphs import RNG, apply, graph, ints, ops, same_outputs
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.insert_topk import InsertTopK

from flow.compile.passes import KeepFloatTailOnHost


def biased_head(label: bool, side_branch: bool = False):
    """x (INT4) -> MatMul -> Mul(scale) -> Add(per-class bias) [-> TopK]; ``side_branch``: the scaled
    tensor also feeds an integer-typed join (so that Mul is not only on the way to the output)."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
        helper.make_node("Mul", ["h", "s"], ["hs"], name="scale"),
        helper.make_node("Add", ["hs", "b"], ["logits"], name="bias"),
    ]
    outs = {"logits": (1, 5)}
    inits = {"W": ints("INT4", (4, 5)), "s": np.array(0.25, np.float32), "b": RNG.normal(size=(1, 5)).astype(np.float32)}
    if side_branch:
        nodes.append(helper.make_node("Add", ["hs", "x2"], ["side"], name="join"))
        outs["side"] = (1, 5)
    inputs = {"x": (1, 4), **({"x2": (1, 5)} if side_branch else {})}
    m = graph(nodes, inputs, outs, inits, {"x": "INT4", "W": "INT4", **({"x2": "INT4"} if side_branch else {})})
    return m.transform(InsertTopK(k=1)).transform(InferShapes()) if label else m  # as qflow's insert_label_select ends a classifier


def finn_converted(m):
    return m.transform(InferElementwiseBinaryOperation()).transform(InferLabelSelectLayer())


def test_the_float_tail_before_a_label_goes_back_to_the_host():
    m = biased_head(label=True)
    hw = finn_converted(m)
    assert ops(hw) == ["MatMul", "ElementwiseMul", "ElementwiseAdd", "TopK"]  # FINN's conversion: float layers
    after = apply(hw, KeepFloatTailOnHost())
    assert ops(after) == ["MatMul", "Mul", "Add", "TopK"]
    same_outputs(m, after, {"x": ints("INT4", (1, 4))})


def test_the_float_tail_at_the_output_goes_back_to_the_host():
    m = biased_head(label=False)
    after = apply(finn_converted(m), KeepFloatTailOnHost())
    assert ops(after) == ["MatMul", "Mul", "Add"]
    same_outputs(m, after, {"x": ints("INT4", (1, 4))})


def test_a_float_layer_that_also_feeds_the_accelerator_stays_a_layer():
    m = biased_head(label=False, side_branch=True)
    hw = finn_converted(m)
    assert "ElementwiseAdd" in ops(hw)
    after = apply(hw, KeepFloatTailOnHost())
    assert ops(after).count("ElementwiseMul") == 1  # the scale also feeds the join, which is hardware
    assert "Add" in ops(after)  # the bias only leads to the output
