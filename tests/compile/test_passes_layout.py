"""Scales through layout ops (MoveLinearPastLayoutOp), and Reshapes merged (CollapseRepeatedReshape)."""

import numpy as np
import pytest
from onnx import helper
from onnx_graphs import (
    RNG,
    apply,
    assert_unchanged,
    consts_of,
    floats,
    graph,
    ints,
    mul_then,
    ops,
    same_outputs,
)

from flow.compat.finn_streamline import ConvertSingletonTransposeToReshape
from flow.compile.passes.layout import CollapseRepeatedReshape, MoveLinearPastLayoutOp


@pytest.mark.parametrize(
    "op, layout, xshape, cshape, moved_shape",
    [
        ("Mul", ("Transpose", [0, 2, 3, 1]), (1, 3, 4, 5), (1, 3, 1, 1), (1, 1, 1, 3)),
        ("Add", ("Transpose", [0, 3, 1, 2]), (1, 4, 5, 3), (1, 1, 1, 3), (1, 3, 1, 1)),
        ("Mul", ("Transpose", [0, 2, 3, 1]), (1, 3, 4, 5), (), ()),
        ("Mul", ("Flatten", None), (1, 6, 1, 1), (1, 6, 1, 1), (1, 6)),
        ("Mul", ("Reshape", [1, -1]), (1, 2, 2, 2), (1, 2, 1, 1), (1, 8)),
    ],
)
def test_move_linear_past_layout_op_moves_the_constant_with_the_data(op, layout, xshape, cshape, moved_shape):
    kind, arg = layout
    inits = {"c": RNG.uniform(0.1, 2.0, size=cshape).astype(np.float32)}
    if kind == "Transpose":
        lay, yshape = helper.make_node("Transpose", ["m"], ["y"], perm=arg), [xshape[p] for p in arg]
    elif kind == "Flatten":
        lay, yshape = helper.make_node("Flatten", ["m"], ["y"]), [1, int(np.prod(xshape[1:]))]
    else:
        lay, yshape = helper.make_node("Reshape", ["m", "s"], ["y"]), [1, int(np.prod(xshape[1:]))]
        inits["s"] = np.array(arg, dtype=np.int64)
    m = graph([helper.make_node(op, ["x", "c"], ["m"]), lay], {"x": xshape}, {"y": yshape}, inits, {"x": "INT4"})
    after = apply(m, MoveLinearPastLayoutOp())
    assert ops(after) == [kind, op]
    assert consts_of(after, op)[0].shape == moved_shape
    same_outputs(m, after, {"x": ints("INT4", xshape)})


def test_move_linear_past_layout_op_leaves_a_forking_mul():
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Transpose", ["m"], ["y"], perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["m"], ["z"]),
    ]
    m = graph(nodes, {"x": (1, 3, 2, 2)}, {"y": (1, 2, 2, 3), "z": (1, 3, 2, 2)}, {"c": np.full((1, 3, 1, 1), 0.5)})
    assert_unchanged(m, MoveLinearPastLayoutOp())


def test_move_linear_past_layout_op_leaves_a_mul_whose_constant_widens_the_tensor():
    m = mul_then(helper.make_node("Transpose", ["m"], ["y"], perm=[1, 0]), (1, 3), (3, 1), np.ones((2, 3), np.float32))
    assert_unchanged(m, MoveLinearPastLayoutOp())


def test_singleton_transpose_and_flatten_become_one_reshape():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]), helper.make_node("Flatten", ["t"], ["y"])]
    m = graph(nodes, {"x": (1, 1, 1, 6)}, {"y": (1, 6)})
    after = apply(apply(m, ConvertSingletonTransposeToReshape()), CollapseRepeatedReshape())
    assert ops(after) == ["Reshape"]
    same_outputs(m, after, {"x": floats((1, 1, 1, 6))})


def test_a_transpose_that_moves_data_is_not_a_reshape():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]), helper.make_node("Flatten", ["t"], ["y"])]
    m = graph(nodes, {"x": (1, 2, 2, 3)}, {"y": (1, 12)})
    assert_unchanged(m, ConvertSingletonTransposeToReshape())


def test_collapse_repeated_reshape_leaves_a_forking_reshape():
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("Reshape", ["f", "s"], ["y"]),
        helper.make_node("Relu", ["f"], ["z"]),
    ]
    m = graph(nodes, {"x": (1, 2, 3)}, {"y": (1, 3, 2), "z": (1, 6)}, {"s": np.array([1, 3, 2], np.int64)})
    assert_unchanged(m, CollapseRepeatedReshape())
