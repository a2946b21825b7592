"""finn-plus still skips InferUpsample for Resize nodes (flow/compat/finn_upsample.py), and still makes an image
network's output Transpose a Shuffle layer (flow/compat/finn_shuffle.py); each workaround undoes that."""

import numpy as np
from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType
from onnx import helper
from onnx_graphs import graph, ints, outputs
from qonnx.transformation.infer_data_layouts import InferDataLayouts

from flow.compat.finn import build_steps, ensure_finn_settings, finn_output_to
from flow.compat.finn_shuffle import KeepOutputTransposeOnHost
from flow.compat.finn_upsample import infer_upsample_layers


def finn_convert(model, tmp_path):
    ensure_finn_settings(tmp_path)
    cfg = DataflowBuildConfig(output_dir=str(tmp_path / "finn"), synth_clk_period_ns=10.0, fpga_part="xc7z020clg400-1",
                              generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS])
    with finn_output_to(tmp_path / "finn.log"):
        return build_steps().step_convert_to_hw(model, cfg)


def nhwc_upsample():
    """Thresholds -> nearest Resize (NHWC, as after streamlining) -> thresholds."""
    mt = {"domain": "qonnx.custom_op.general", "out_dtype": "UINT2", "data_layout": "NHWC"}
    nodes = [
        helper.make_node("MultiThreshold", ["x", "t0"], ["a"], **mt),
        helper.make_node("Resize", ["a", "", "sc"], ["b"], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("MultiThreshold", ["b", "t1"], ["y"], **mt),
    ]
    inits = {"t0": np.array([[-1.0, 0.0, 1.0]] * 3, np.float32), "t1": np.array([[0.5, 1.5, 2.5]] * 3, np.float32),
             "sc": np.array([1, 2, 2, 1], np.float32)}
    m = graph(nodes, {"x": (1, 4, 4, 3)}, {"y": (1, 8, 8, 3)}, inits, {"x": "INT4"})
    for t in ("x", "a", "b", "y"):
        m.set_tensor_layout(t, ["N", "H", "W", "C"])
    return m.transform(InferDataLayouts())


def test_finn_convert_to_hw_leaves_a_nearest_resize_unconverted(tmp_path):
    model = finn_convert(nhwc_upsample(), tmp_path)
    assert "Resize" in [n.op_type for n in model.graph.node]


def test_infer_upsample_layers_makes_it_upsample_nearest_neighbour_with_the_same_outputs(tmp_path):
    before = nhwc_upsample()
    x = ints("INT4", (1, 4, 4, 3))
    model = finn_convert(infer_upsample_layers(nhwc_upsample()), tmp_path)
    ops = [n.op_type for n in model.graph.node]
    assert "Resize" not in ops and "UpsampleNearestNeighbour" in ops
    np.testing.assert_array_equal(outputs(before, {"x": x})[0], outputs(model, {"x": x})[0])


def output_transpose():
    """Thresholds (NHWC) -> the NCHW Transpose an image output ends with."""
    nodes = [
        helper.make_node("MultiThreshold", ["x", "t"], ["a"], domain="qonnx.custom_op.general", out_dtype="UINT2", data_layout="NHWC"),
        helper.make_node("Transpose", ["a"], ["y"], perm=[0, 3, 1, 2]),
    ]
    m = graph(nodes, {"x": (1, 4, 4, 3)}, {"y": (1, 3, 4, 4)}, {"t": np.array([[-1.0, 0.0, 1.0]] * 3, np.float32)}, {"x": "INT4"})
    m.set_tensor_layout("x", ["N", "H", "W", "C"])
    return m.transform(InferDataLayouts())


def test_finn_convert_to_hw_makes_the_output_transpose_a_shuffle_layer_and_the_workaround_returns_it_to_the_host(tmp_path):
    model = finn_convert(output_transpose(), tmp_path)
    assert [n.op_type for n in model.graph.node][-1] == "Shuffle"
    kept = model.transform(KeepOutputTransposeOnHost())
    assert [n.op_type for n in kept.graph.node][-1] == "Transpose"
    x = ints("INT4", (1, 4, 4, 3))
    np.testing.assert_array_equal(outputs(output_transpose(), {"x": x})[0], outputs(kept, {"x": x})[0])


def test_a_shuffle_between_hardware_layers_stays_one(tmp_path):
    nodes = [
        helper.make_node("MultiThreshold", ["x", "t"], ["a"], domain="qonnx.custom_op.general", out_dtype="UINT2", data_layout="NHWC"),
        helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3]),
        helper.make_node("MultiThreshold", ["b", "t"], ["y"], domain="qonnx.custom_op.general", out_dtype="UINT2", data_layout="NHWC"),
    ]
    m = graph(nodes, {"x": (1, 4, 4, 3)}, {"y": (1, 4, 4, 3)}, {"t": np.array([[-1.0, 0.0, 1.0]] * 3, np.float32)}, {"x": "INT4"})
    m.set_tensor_layout("x", ["N", "H", "W", "C"])
    model = finn_convert(m.transform(InferDataLayouts()), tmp_path).transform(KeepOutputTransposeOnHost())
    assert "Shuffle" in [n.op_type for n in model.graph.node]
