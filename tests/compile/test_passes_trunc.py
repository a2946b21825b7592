"""Brevitas' TruncAvgPool2d with ROUND/CEIL rounding becomes exact thresholds (QONNX level)."""

import numpy as np
import pytest
from onnx import helper
from onnx_graphs import QONNX, apply, graph, ints, ops, outputs

from flow.compile.passes import prepare_qonnx
from flow.compile.passes.trunc import (
    ConvertRoundingTruncToMultiThreshold,
    level_thresholds,
)


def trunc_pool(k, scale, in_bits, out_scale, out_bits, mode, signed=0):
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node(
            "Trunc", ["a", "sc", "zp", "ib", "osc", "ob"], ["y"], domain=QONNX, rounding_mode=mode, signed=signed, narrow=0
        ),
    ]
    inits = {
        "sc": np.array(scale, np.float32), "zp": np.array(0.0, np.float32), "ib": np.array(float(in_bits), np.float32),
        "osc": np.array(out_scale, np.float32), "ob": np.array(float(out_bits), np.float32),
    }
    return graph(nodes, {"x": (1, 2, 2 * k, 2 * k)}, {"y": (1, 2, 2, 2)}, inits)


@pytest.mark.parametrize("mode", ["ROUND", "CEIL", "FLOOR"])
@pytest.mark.parametrize("k, act_bits, out_bits, signed", [(2, 4, 4, 0), (3, 4, 5, 0), (4, 3, 4, 1), (8, 4, 6, 0)])
def test_rounding_trunc_becomes_thresholds_that_reproduce_it_exactly(mode, k, act_bits, out_bits, signed):
    s = 0.173
    in_bits = act_bits + int(np.ceil(np.log2(k * k)))
    m = trunc_pool(k, s / (k * k), in_bits, s / (k * k) * 2 ** (in_bits - out_bits), out_bits, mode, signed)
    after = apply(m, ConvertRoundingTruncToMultiThreshold(modes=(mode,)))
    assert "Trunc" not in ops(after) and "MultiThreshold" in ops(after)
    for _ in range(20):
        x = ints(f"{'INT' if signed else 'UINT'}{act_bits}", (1, 2, 2 * k, 2 * k)) * np.float32(s)
        np.testing.assert_allclose(outputs(m, {"x": x})[0], outputs(after, {"x": x})[0], rtol=1e-6, atol=1e-7)


def test_prepare_qonnx_leaves_a_floor_trunc_to_finn():
    m = trunc_pool(2, 0.25, 6, 1.0, 4, "FLOOR")
    assert ops(prepare_qonnx(m)) == ["AveragePool", "Trunc"]


def test_a_trunc_too_wide_to_enumerate_is_left_alone():
    m = trunc_pool(2, 0.25, 24, 1.0, 4, "ROUND")
    assert ops(apply(m, ConvertRoundingTruncToMultiThreshold())) == ["AveragePool", "Trunc"]


def test_level_thresholds_refuse_a_map_that_is_not_monotonic():
    assert level_thresholds(np.arange(3), np.array([0.0, 1.0, 0.0])) is None
