"""The qonnx workaround is still needed, and works."""

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model
from qonnx.util.inference_cost import inference_cost as qonnx_inference_cost

from flow.compat import qonnx as qonnx_compat


def _bipolar_matmul(tmp_path, scale: float):
    vi = helper.make_tensor_value_info
    w = np.sign(np.random.default_rng(0).standard_normal((8, 4))).astype(np.float32)
    nodes = [
        helper.make_node("BipolarQuant", ["w", "s"], ["wq"], domain="qonnx.custom_op.general"),
        helper.make_node("MatMul", ["x", "wq"], ["y"]),
    ]
    g = helper.make_graph(nodes, "g", [vi("x", TensorProto.FLOAT, [1, 8])], [vi("y", TensorProto.FLOAT, [1, 4])],
                          initializer=[helper.make_tensor("w", TensorProto.FLOAT, [8, 4], w.flatten()),
                                       helper.make_tensor("s", TensorProto.FLOAT, [], [scale])])
    path = tmp_path / f"bipolar_{scale}.onnx"
    ModelWrapper(qonnx_make_model(g)).save(str(path))
    return path


def test_qonnx_counts_scaled_bipolar_weights_as_32_bit(tmp_path):
    """Why with_unit_bipolar_scales exists: a scaled BipolarQuant is typed FLOAT32 by qonnx."""
    scaled = qonnx_inference_cost(ModelWrapper(str(_bipolar_matmul(tmp_path, 0.25))), discount_sparsity=False)
    unit = qonnx_inference_cost(ModelWrapper(str(_bipolar_matmul(tmp_path, 1.0))), discount_sparsity=False)
    assert scaled["total_cost"]["total_mem_w_bits"] == 32 * unit["total_cost"]["total_mem_w_bits"]


def test_costs_count_bipolar_weights_as_one_bit(tmp_path):
    cost = qonnx_compat.inference_cost(_bipolar_matmul(tmp_path, 0.25), discount_sparsity=False)["total_cost"]
    assert cost["total_mem_w_bits"] == 8 * 4
