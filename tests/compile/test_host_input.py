"""An input quantizer on a float input: FINN makes it a float Thresholding layer, qflow keeps it on the host."""

import numpy as np
from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
    InferThresholdingLayer,
)
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from flow.compile.host_input import keep_input_quantizer_on_host
from flow.sim.execute import execute_batched


def _float_input_quantizer():
    vi = helper.make_tensor_value_info
    node = helper.make_node("MultiThreshold", ["x", "t"], ["y"], domain="qonnx.custom_op.general", out_dtype="UINT2", data_layout="NC")
    g = helper.make_graph([node], "g", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 4])],
                          initializer=[helper.make_tensor("t", TensorProto.FLOAT, [4, 3], np.tile([0.1, 0.5, 0.9], 4))])
    m = ModelWrapper(qonnx_make_model(g)).transform(InferShapes()).transform(InferDataTypes())
    assert m.get_tensor_datatype("x") == DataType["FLOAT32"]
    return m


def test_finn_turns_a_float_input_quantizer_into_a_float_thresholding_layer():
    """Why keep_input_quantizer_on_host exists: finn-plus compares floats in hardware."""
    hw = _float_input_quantizer().transform(InferThresholdingLayer())
    assert [n.op_type for n in hw.graph.node] == ["Thresholding"]
    assert hw.get_tensor_datatype(hw.graph.node[0].input[0]) == DataType["FLOAT32"]


def test_the_input_quantizer_goes_back_to_the_host_unchanged():
    ref = _float_input_quantizer()
    host = keep_input_quantizer_on_host(ref.transform(InferThresholdingLayer()))
    assert [(n.op_type, n.domain) for n in host.graph.node] == [("MultiThreshold", "qonnx.custom_op.general")]
    x = np.random.default_rng(0).uniform(-0.5, 1.5, size=(64, 4)).astype(np.float32)
    assert np.array_equal(execute_batched(host, x)["y"], execute_batched(_float_input_quantizer(), x)["y"])
