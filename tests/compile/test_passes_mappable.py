"""Refusals: the error names the node, its op, its neighbours, why and the fix."""

import numpy as np
import pytest
from onnx import helper
from onnx_graphs import QONNX, RNG, graph, ints, thresholds

from flow.compile.passes import check_mappable, explain_unmapped, streamline_structures
from flow.core.errors import InputDatatypeError, StructureError, UnsupportedOpError


def threshold(x, t, y, name, dtype="UINT4"):
    return helper.make_node("MultiThreshold", [x, t], [y], domain=QONNX, out_dtype=dtype, name=name)


def refusal(m) -> str:
    with pytest.raises(StructureError) as e:
        check_mappable(streamline_structures(m))
    return str(e.value)


def test_structure_errors_are_unsupported_op_errors_with_exit_code_2():
    assert issubclass(StructureError, UnsupportedOpError) and StructureError.exit_code == 2


def test_a_per_channel_scale_before_a_dense_matmul_is_refused_naming_its_origin():
    nodes = [
        threshold("x", "t", "a", "act"),
        helper.make_node("Mul", ["a", "s"], ["as"], name="scale"),
        helper.make_node("MatMul", ["as", "W"], ["h"], name="fc"),
        threshold("h", "t2", "y", "act2"),
    ]
    inits = {"t": thresholds(1, 15, -5, 5), "s": RNG.uniform(0.1, 1, size=(1, 4)), "W": ints("INT4", (4, 3)), "t2": thresholds(1, 15, -5, 5)}
    msg = refusal(graph(nodes, {"x": (1, 4)}, {"y": (1, 3)}, inits, {"x": "INT8", "W": "INT4"}))
    assert "node 'fc' (MatMul)" in msg and "4 different values" in msg and "of scale (Mul)" in msg
    assert "inputs from: scale (Mul); feeds: act2 (MultiThreshold)" in msg
    assert "per-tensor quantizer" in msg and "\n" not in msg


def test_a_join_of_two_scales_is_refused_naming_both():
    nodes = [
        threshold("x", "t", "a", "qa"),
        threshold("x", "t", "b", "qb"),
        helper.make_node("Mul", ["a", "sa"], ["as"], name="scale_a"),
        helper.make_node("Mul", ["b", "sb"], ["bs"], name="scale_b"),
        helper.make_node("Add", ["as", "bs"], ["r"], name="join"),
        threshold("r", "t2", "y", "q"),
    ]
    inits = {"t": thresholds(1, 15, -5, 5), "sa": np.array(0.5, np.float32), "sb": np.array(0.3, np.float32), "t2": thresholds(1, 15, 0, 10)}
    msg = refusal(graph(nodes, {"x": (1, 4)}, {"y": (1, 4)}, inits, {"x": "INT8"}))
    assert "node 'join' (Add)" in msg and "scalar 0.5 (scale_a)" in msg and "scalar 0.3 (scale_b)" in msg
    assert "shared quantizer" in msg and "feeds: q (MultiThreshold)" in msg


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"pads": [1] * 4, "count_include_pad": 0}, "count_include_pad=True or no padding"),
        ({"ceil_mode": 1, "strides": [2, 2], "kernel_shape": [2, 2]}, "ceil_mode=False"),
    ],
)
def test_an_average_pool_without_one_divisor_is_refused(kw, words):
    kw = {"kernel_shape": [3, 3], **kw}
    nodes = [helper.make_node("AveragePool", ["x"], ["p"], name="pool", **kw), threshold("p", "t", "y", "q")]
    m = graph(nodes, {"x": (1, 2, 5, 5)}, {"y": None}, {"t": thresholds(1, 15, 0, 9)}, {"x": "UINT4"})
    msg = refusal(m)
    assert "node 'pool' (AveragePool)" in msg and words in msg


def test_an_op_without_a_hardware_layer_between_layers_is_refused():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"), helper.make_node("Sin", ["h"], ["s"], name="the_sin"), threshold("s", "t", "y", "q")]
    m = graph(nodes, {"x": (1, 4)}, {"y": (1, 3)}, {"W": ints("INT4", (4, 3)), "t": thresholds(1, 15, -3, 3)}, {"x": "UINT4", "W": "INT4"})
    msg = refusal(m)
    assert "node 'the_sin' (Sin)" in msg and "no hardware layer for Sin" in msg
    assert "'q'" not in msg  # the thresholds after it are a consequence, not reported again


def test_a_float_graph_input_asks_for_an_input_datatype():
    m = graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="fc")], {"x": (1, 4)}, {"y": (1, 3)}, {"W": ints("INT4", (4, 3))})
    with pytest.raises(InputDatatypeError, match=r"'fc' \(MatMul\).*float graph input 'x'.*--input-dtype"):
        check_mappable(m)


def test_a_float_tail_on_the_host_is_accepted():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Mul", ["h", "s"], ["hs"]),
        helper.make_node("Add", ["hs", "b"], ["y"]),
    ]
    inits = {"W": ints("INT4", (4, 3)), "s": np.array(0.1, np.float32), "b": np.ones((1, 3), np.float32)}
    m = graph(nodes, {"x": (1, 4)}, {"y": (1, 3)}, inits, {"x": "UINT4"})
    assert explain_unmapped(m) == []


def test_many_problems_make_one_bounded_line():
    nodes = []
    for i in range(5):
        nodes += [helper.make_node("Sin", ["x" if i == 0 else f"q{i - 1}"], [f"s{i}"], name=f"sin{i}"), threshold(f"s{i}", "t", f"q{i}", f"q{i}")]
    nodes[-1].output[0] = "y"
    m = graph(nodes, {"x": (1, 4)}, {"y": (1, 4)}, {"t": thresholds(1, 15, -1, 1)}, {"x": "UINT4"})
    msg = refusal(m)
    assert msg.count("cannot be mapped") == 3 and msg.endswith("; and 2 more")
