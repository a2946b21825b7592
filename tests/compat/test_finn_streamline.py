"""Each finn-plus streamlining behaviour that flow/compat/finn_streamline.py works around is still there.

When FINN fixes one, its test here fails: then the workaround (or the avoidance listed in
AVOIDED_FINN_PASSES) can go.
"""

import numpy as np
import pytest
from onnx import helper
from onnx_graphs import (
    apply,
    assert_unchanged,
    floats,
    graph,
    ints,
    ops,
    outputs,
    same_outputs,
)

from flow.compat.finn_streamline import (
    AVOIDED_FINN_PASSES,
    ConvertSingletonTransposeToReshape,
    MoveEqualTransposesPastJoinAdd,
    MoveForkFreeLinearPastEltwiseAdd,
)
from flow.compile.passes.streamline import structure_passes


def two_transposes_into_add(p0, p1):
    nodes = [
        helper.make_node("Transpose", ["x"], ["tx"], perm=p0),
        helper.make_node("Transpose", ["y"], ["ty"], perm=p1),
        helper.make_node("Add", ["tx", "ty"], ["z"]),
    ]
    return graph(nodes, {"x": (1, 3, 3, 3), "y": (1, 3, 3, 3)}, {"z": (1, 3, 3, 3)})


def test_finn_move_transpose_past_join_add_moves_different_perms():
    from finn.transformation.streamline.reorder import MoveTransposePastJoinAdd

    m = two_transposes_into_add([0, 2, 3, 1], [0, 3, 1, 2])
    feeds = {"x": floats((1, 3, 3, 3)), "y": floats((1, 3, 3, 3))}
    assert not np.allclose(outputs(m, feeds)[0], outputs(apply(m, MoveTransposePastJoinAdd()), feeds)[0])
    assert_unchanged(m, MoveEqualTransposesPastJoinAdd())


def test_move_equal_transposes_past_join_add_moves_equal_perms():
    m = two_transposes_into_add([0, 2, 3, 1], [0, 2, 3, 1])
    after = apply(m, MoveEqualTransposesPastJoinAdd())
    assert ops(after) == ["Add", "Transpose"]
    same_outputs(m, after, {"x": floats((1, 3, 3, 3)), "y": floats((1, 3, 3, 3))})


def forked_scale_graph():
    """``mx = x*c`` feeds the Add and a second consumer: moving it past the Add must not change ``side``."""
    nodes = [
        helper.make_node("Mul", ["x", "c0"], ["mx"]),
        helper.make_node("Mul", ["y", "c1"], ["my"]),
        helper.make_node("Add", ["mx", "my"], ["z"]),
        helper.make_node("Relu", ["mx"], ["side"]),
    ]
    inits = {"c0": np.full((1,), 0.5, np.float32), "c1": np.full((1,), 0.5, np.float32)}
    return graph(nodes, {"x": (1, 4), "y": (1, 4)}, {"z": (1, 4), "side": (1, 4)}, inits)


def test_finn_move_linear_past_eltwise_add_breaks_a_forking_scale():
    from finn.transformation.streamline.reorder import MoveLinearPastEltwiseAdd

    m = forked_scale_graph()
    feeds = {"x": floats((1, 4)), "y": floats((1, 4))}
    assert not np.allclose(outputs(m, feeds)[1], outputs(apply(m, MoveLinearPastEltwiseAdd()), feeds)[1])
    after = apply(m, MoveForkFreeLinearPastEltwiseAdd())
    join = after.get_nodes_by_op_type("Add")[0]
    assert set(join.input) == {"x", "y"}  # the scale moved past the join; the side branch kept its own copy
    same_outputs(m, after, feeds, exact=False)


def test_finn_move_mul_past_join_add_fails_on_per_channel_scales():
    from finn.transformation.streamline.reorder import MoveMulPastJoinAdd

    c = np.array([0.5, 0.25, 2.0], np.float32).reshape(1, 3)
    nodes = [helper.make_node("Mul", ["x", "c0"], ["a"]), helper.make_node("Mul", ["y", "c1"], ["b"]), helper.make_node("Add", ["a", "b"], ["z"])]
    m = graph(nodes, {"x": (1, 3), "y": (1, 3)}, {"z": (1, 3)}, {"c0": c, "c1": c.copy()})
    with pytest.raises(ValueError, match="truth value"):
        apply(m, MoveMulPastJoinAdd())
    assert ops(apply(m, MoveForkFreeLinearPastEltwiseAdd())) == ["Add", "Mul"]


def test_finn_move_mul_past_dwconv_ignores_the_channel_multiplier():
    from finn.transformation.streamline.reorder import MoveMulPastDWConv

    conv = helper.make_node("Conv", ["m", "w"], ["y"], group=2, kernel_shape=[3, 3], pads=[1] * 4)
    m = graph(
        [helper.make_node("Mul", ["x", "s"], ["m"]), conv], {"x": (1, 2, 4, 4)}, {"y": (1, 4, 4, 4)},
        {"s": np.array([0.5, 2.0], np.float32).reshape(1, 2, 1, 1), "w": ints("INT4", (4, 1, 3, 3))},
    )
    moved = apply(m, MoveMulPastDWConv())
    assert ops(moved) == ["Conv", "Mul"]  # a 2-channel scale behind a 4-channel output
    with pytest.raises(Exception, match="Incompatible dimensions"):
        outputs(moved, {"x": ints("INT4", (1, 2, 4, 4))})


def test_finn_absorb_transpose_into_flatten_raises_on_other_reshapes():
    from finn.transformation.streamline.absorb import AbsorbTransposeIntoFlatten

    m = graph([helper.make_node("Reshape", ["x", "s"], ["y"])], {"x": (1, 2, 3)}, {"y": (1, 3, 2)}, {"s": np.array([1, 3, 2], dtype=np.int64)})
    with pytest.raises(ValueError, match="broadcast"):
        apply(m, AbsorbTransposeIntoFlatten())
    assert_unchanged(m, ConvertSingletonTransposeToReshape())


def test_finn_streamline_plus_swaps_a_transpose_and_a_scalar_mul_forever():
    """One round of StreamlinePlus moves the Mul before the Transpose and the next moves it back:
    it reports a change every round, so ModelWrapper.transform never returns."""
    from finn.transformation.streamline.streamline_plus import StreamlinePlus

    m = graph([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), helper.make_node("Mul", ["t", "c"], ["y"])],
              {"x": (1, 2, 3, 3)}, {"y": (1, 3, 3, 2)}, {"c": np.float32(0.5)}, {"x": "INT4"})
    seen = []
    for _ in range(4):
        m, changed = StreamlinePlus().apply(m)
        assert changed
        seen.append(ops(m))
    assert seen[0] == seen[2] and seen[1] == seen[3]


def test_qonnx_cannot_lower_a_grouped_conv():
    """Why prepare_qonnx refuses grouped convs before FINN's step_streamline lowers them."""
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul

    conv = helper.make_node("Conv", ["x", "w"], ["y"], group=2, kernel_shape=[3, 3], pads=[1] * 4, strides=[1, 1])
    m = graph([conv], {"x": (1, 4, 5, 5)}, {"y": (1, 4, 5, 5)}, {"w": ints("INT4", (4, 2, 3, 3))})
    with pytest.raises(ValueError, match="cannot reshape"):
        m.transform(LowerConvsToMatMul())


def test_finn_convert_to_hw_makes_float_layers_of_the_output_tail():
    """Why KeepFloatTailOnHost exists: FINN converts a float Mul + Add tail into ElementwiseMul/ElementwiseAdd."""
    from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import (
        InferElementwiseBinaryOperation,
    )

    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Mul", ["h", "s"], ["hs"]), helper.make_node("Add", ["hs", "b"], ["y"])]
    inits = {"W": ints("INT4", (4, 3)), "s": np.float32(0.1), "b": np.ones((1, 3), np.float32)}
    m = graph(nodes, {"x": (1, 4)}, {"y": (1, 3)}, inits, {"x": "UINT4", "W": "INT4"})
    assert ops(m.transform(InferElementwiseBinaryOperation())) == ["MatMul", "ElementwiseMul", "ElementwiseAdd"]


def test_the_structure_passes_run_none_of_the_avoided_finn_passes():
    names = {type(t).__name__ for t in structure_passes()}
    assert not names & set(AVOIDED_FINN_PASSES)
