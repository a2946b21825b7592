"""Integer stages ending in a float tail ``integers * a + b`` (a dequantizing scale, a per-class bias,
a TopK on them kept on the host) are compared on the integers."""

import numpy as np
from onnx import helper
from onnx_graphs import graph, ints
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.insert_topk import InsertTopK

from flow.sim.verify import (
    check_integer_valued,
    output_tail,
    run_integer_stage,
    verify_stages,
)

W = ints("INT4", (4, 5))


def head(scale=0.25, bias=None, label=False, w=W):
    """x (UINT4) -> MatMul (integers) -> Mul(scale) [-> Add(bias)] [-> TopK]."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Mul", ["h", "s"], ["hs"] if bias is not None else ["y"])]
    inits = {"W": w, "s": np.asarray(scale, np.float32)}
    if bias is not None:
        nodes.append(helper.make_node("Add", ["hs", "b"], ["y"]))
        inits["b"] = np.asarray(bias, np.float32)
    m = graph(nodes, {"x": (1, 4)}, {"y": (1, 5)}, inits, {"x": "UINT4", "W": "INT4"})
    return m.transform(InsertTopK(k=1)).transform(InferShapes()) if label else m


def test_output_tail_reads_the_scale_and_bias_off_the_tail():
    bias = np.arange(5, dtype=np.float32).reshape(1, 5)
    tail = output_tail(head(0.25, bias), "y")
    assert tail.tensor == "h" and float(tail.scale) == 0.25
    np.testing.assert_array_equal(tail.bias, bias)


def test_output_tail_through_sub_div_and_layout_ops_is_the_affine_map_the_graph_computes():
    """``y = flatten((h - 3) / 4)`` and ``z = 2 - h``: the affine maps reproduce the executed outputs."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Sub", ["h", "c"], ["hc"]),
        helper.make_node("Div", ["hc", "d"], ["hd"]),
        helper.make_node("Flatten", ["hd"], ["y"]),
        helper.make_node("Sub", ["two", "h"], ["z"]),
    ]
    inits = {"W": W, "c": np.float32(3), "d": np.float32(4), "two": np.float32(2)}
    m = graph(nodes, {"x": (1, 4)}, {"y": (1, 5), "z": (1, 5)}, inits, {"x": "UINT4", "W": "INT4"})
    x = ints("UINT4", (1, 4))
    h = (x @ W).astype(np.float64)
    for out, want in (("y", (h - 3) / 4), ("z", 2 - h)):
        tail = output_tail(m, out)
        assert tail.tensor == "h"
        np.testing.assert_allclose(h * tail.scale + tail.bias, want)


def test_a_tail_that_is_not_affine_keeps_its_integer_tensor_but_no_map():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Div", ["one", "h"], ["y"])]
    m = graph(nodes, {"x": (1, 4)}, {"y": (1, 5)}, {"W": W, "one": np.float32(1)}, {"x": "UINT4", "W": "INT4"})
    tail = output_tail(m, "y")
    assert (tail.tensor, tail.scale, tail.bias) == ("h", None, None)


def test_output_tail_without_an_integer_head_is_none():
    m = graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "s"], ["y"])], {"x": (1, 3)}, {"y": (1, 3)}, {"s": np.float32(0.5)})
    assert output_tail(m, "y") is None


def test_an_integer_stage_with_a_biased_tail_yields_its_integers():
    x = ints("UINT4", (6, 4))
    stage = run_integer_stage("streamlined_integer", head(0.25, np.full((1, 5), 0.3)), x)
    np.testing.assert_array_equal(stage.int_logits, x @ W)
    assert check_integer_valued(stage) is None and stage.labels is None


def test_a_label_behind_a_biased_tail_is_compared_with_its_integers():
    x = ints("UINT4", (6, 4))
    bias = np.linspace(-3, 3, 5).reshape(1, 5)
    stage = run_integer_stage("hw", head(0.25, bias, label=True), x)
    np.testing.assert_array_equal(stage.int_logits, x @ W)
    np.testing.assert_array_equal(stage.labels, np.argmax((x @ W) * 0.25 + bias.astype(np.float32), axis=1))


def test_integer_stages_differing_only_in_their_integers_fail():
    x = ints("UINT4", (6, 4))
    other = W.copy()
    other[0, 0] += 1
    same = verify_stages(x, float_stages=[], integer_stages=[("streamlined_integer", head(0.25, np.zeros((1, 5)))), ("hw", head(0.25, np.zeros((1, 5))))])
    assert same.passed and same.stages[0].bit_exact
    differ = verify_stages(x, float_stages=[], integer_stages=[("streamlined_integer", head(0.25, np.zeros((1, 5)))), ("hw", head(0.25, np.zeros((1, 5)), w=other))])
    assert not differ.passed
