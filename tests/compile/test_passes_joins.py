"""Residual joins: scales through branch points and Adds (MoveConstAddPastJoinAdd, UnifyEqualScalesAtJoinAdd, the driver)."""

import numpy as np
from onnx import helper
from onnx_graphs import (
    QONNX,
    apply,
    assert_unchanged,
    floats,
    graph,
    ints,
    ops,
    same_outputs,
    thresholds,
)

from flow.compat.finn_streamline import MoveForkFreeLinearPastEltwiseAdd
from flow.compile.passes import explain_unmapped, streamline_structures
from flow.compile.passes.graph import const_operand, graph_digest
from flow.compile.passes.joins import MoveConstAddPastJoinAdd, UnifyEqualScalesAtJoinAdd


def test_move_const_add_past_join_add_reassociates():
    nodes = [helper.make_node("Add", ["x", "a"], ["xa"]), helper.make_node("Add", ["xa", "y"], ["z"])]
    m = graph(nodes, {"x": (1, 4), "y": (1, 4)}, {"z": (1, 4)}, {"a": floats((1, 4))}, {"x": "INT4", "y": "INT4"})
    after = apply(m, MoveConstAddPastJoinAdd())
    join = after.graph.node[0]
    assert join.op_type == "Add" and const_operand(after, join) is None  # the join comes first now
    assert after.get_tensor_datatype(join.output[0]).is_integer()
    same_outputs(m, after, {"x": ints("INT4", (1, 4)), "y": ints("INT4", (1, 4))}, exact=False)


def test_move_const_add_past_join_add_leaves_a_forking_add():
    nodes = [
        helper.make_node("Add", ["x", "a"], ["xa"]),
        helper.make_node("Add", ["xa", "y"], ["z"]),
        helper.make_node("Relu", ["xa"], ["r"]),
    ]
    m = graph(nodes, {"x": (1, 4), "y": (1, 4)}, {"z": (1, 4), "r": (1, 4)}, {"a": np.ones((1, 4), np.float32)})
    assert_unchanged(m, MoveConstAddPastJoinAdd())


def scaled_join(c0, c1, shape):
    nodes = [
        helper.make_node("Mul", ["x", "c0"], ["a"]),
        helper.make_node("Mul", ["y", "c1"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["z"]),
    ]
    return graph(nodes, {"x": shape, "y": shape}, {"z": shape}, {"c0": c0, "c1": c1})


def test_unify_equal_scales_at_join_add_lets_finn_merge_them():
    m = scaled_join(np.full((1,), 0.5, np.float32), np.full((1, 1, 1, 1), 0.5, np.float32), (1, 2, 2, 3))
    assert_unchanged(m, MoveForkFreeLinearPastEltwiseAdd())  # FINN alone: the shapes differ, nothing merges
    after = apply(apply(m, UnifyEqualScalesAtJoinAdd()), MoveForkFreeLinearPastEltwiseAdd())
    assert ops(after) == ["Add", "Mul"]
    same_outputs(m, after, {"x": floats((1, 2, 2, 3)), "y": floats((1, 2, 2, 3))}, exact=False)


def test_unify_equal_scales_at_join_add_leaves_different_scales():
    m = scaled_join(np.full((1,), 0.5, np.float32), np.array([[0.5, 0.5, 0.25]], np.float32), (1, 3))
    assert_unchanged(m, UnifyEqualScalesAtJoinAdd())


def test_streamline_structures_maps_a_residual_join_with_a_shared_scale_on_a_branch_point():
    """in -> MT -> Mul(s) [branch point] -> {MatMul -> MT -> Mul(s), skip} -> Add -> MT: all integer after."""
    n, s = 8, 0.37
    nodes = [
        helper.make_node("MultiThreshold", ["x", "t0"], ["a"], domain=QONNX, out_dtype="INT4", out_bias=-8.0),
        helper.make_node("Mul", ["a", "s0"], ["as"]),
        helper.make_node("MatMul", ["as", "W"], ["h"]),
        helper.make_node("MultiThreshold", ["h", "t1"], ["b"], domain=QONNX, out_dtype="INT4", out_bias=-8.0),
        helper.make_node("Mul", ["b", "s1"], ["bs"]),
        helper.make_node("Add", ["bs", "as"], ["r"]),
        helper.make_node("MultiThreshold", ["r", "t2"], ["y"], domain=QONNX, out_dtype="UINT4"),
    ]
    inits = {
        "t0": thresholds(1, 15, -60, 60), "s0": np.array(s, np.float32), "W": ints("INT4", (n, n)),
        "t1": thresholds(n, 15, -12, 12), "s1": np.array(s, np.float32), "t2": thresholds(1, 15, -3, 3),
    }
    m = graph(nodes, {"x": (1, n)}, {"y": (1, n)}, inits, {"x": "INT8", "W": "INT4"})
    out = streamline_structures(m)
    assert "Mul" not in ops(out), ops(out)
    add = out.get_nodes_by_op_type("Add")[0]
    assert all(out.get_tensor_datatype(t).is_integer() for t in add.input)
    assert explain_unmapped(out) == []
    for _ in range(5):
        same_outputs(m, out, {"x": ints("INT8", (1, n))})


def test_a_mul_that_becomes_a_fork_on_its_way_is_split_before_the_join():
    """x*c -> Transpose (forking: a side branch and the join): the Mul forks once it moves past the
    Transpose; it must still merge at the Add without changing the side branch."""
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Transpose", ["m"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["y", "c2"], ["my"]),
        helper.make_node("Add", ["t", "my"], ["z"]),
        helper.make_node("Relu", ["t"], ["side"]),
    ]
    m = graph(
        nodes, {"x": (1, 3, 2, 2), "y": (1, 2, 2, 3)}, {"z": (1, 2, 2, 3), "side": (1, 2, 2, 3)},
        {"c": np.full((1,), 0.5, np.float32), "c2": np.full((1,), 0.5, np.float32)}, {"x": "INT4", "y": "INT4"},
    )
    out = streamline_structures(m)
    add = out.get_nodes_by_op_type("Add")[0]
    assert all(out.get_tensor_datatype(t).is_integer() for t in add.input)
    for _ in range(3):
        same_outputs(m, out, {"x": ints("INT4", (1, 3, 2, 2)), "y": ints("INT4", (1, 2, 2, 3))}, exact=False)


def test_streamline_structures_is_idempotent_and_returns_a_plain_graph_unchanged():
    nodes = [
        helper.make_node("Transpose", ["x"], ["tx"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["y"], ["ty"], perm=[0, 2, 3, 1]),
        helper.make_node("Add", ["tx", "ty"], ["z"]),
    ]
    m = graph(nodes, {"x": (1, 3, 3, 3), "y": (1, 3, 3, 3)}, {"z": (1, 3, 3, 3)})
    once = streamline_structures(m)
    assert ops(once) == ["Add", "Transpose"]
    assert streamline_structures(once) is once
    plain = graph([helper.make_node("MatMul", ["x", "W"], ["y"])], {"x": (1, 4)}, {"y": (1, 3)}, {"W": ints("INT4", (4, 3))})
    assert graph_digest(streamline_structures(plain)) == graph_digest(plain)
