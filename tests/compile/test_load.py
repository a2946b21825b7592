import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from flow.compile.load import check_quantized, load_onnx
from flow.core.errors import ModelFileError, UnquantizedModelError, UnsupportedOpError


def _float_model(path, external_location=None):
    w = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [w],
    )
    m = helper.make_model(g)
    if external_location is not None:
        t = m.graph.initializer[0]
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", external_location
    onnx.save(m, str(path))
    return path


def test_not_onnx_is_a_model_file_error(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a protobuf")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        load_onnx(p)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_onnx(tmp_path / "nope.onnx")


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd"])
def test_external_data_may_not_leave_the_model_folder(tmp_path, location):
    (tmp_path / "m").mkdir()
    p = _float_model(tmp_path / "m" / "model.onnx", external_location=location)
    with pytest.raises(ModelFileError, match="keep external data files beside the model"):
        load_onnx(p)


def test_external_data_beside_the_model_loads(tmp_path):
    np.ones((4, 2), dtype=np.float32).tofile(tmp_path / "w.bin")
    p = _float_model(tmp_path / "model.onnx", external_location="w.bin")
    m = load_onnx(p)
    assert np.array_equal(m.get_initializer("w"), np.ones((4, 2), dtype=np.float32))


def test_float_model_is_rejected_as_unquantized(tmp_path):
    m = load_onnx(_float_model(tmp_path / "f.onnx"))
    with pytest.raises(UnquantizedModelError, match="no quantization nodes.*MatMul"):
        check_quantized(m)


def test_a_symlink_that_leads_out_of_the_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    np.ones((4, 2), dtype=np.float32).tofile(secret)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").symlink_to(secret)
    with pytest.raises(ModelFileError, match="reaches outside the model folder through a link"):
        load_onnx(_float_model(tmp_path / "m" / "model.onnx", external_location="w.bin"))


def test_a_hard_link_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    np.ones((4, 2), dtype=np.float32).tofile(secret)
    (tmp_path / "m").mkdir()
    os.link(secret, tmp_path / "m" / "w.bin")
    with pytest.raises(ModelFileError, match="has other hard links"):
        load_onnx(_float_model(tmp_path / "m" / "model.onnx", external_location="w.bin"))


def test_a_constant_attribute_with_external_data_is_checked_too(tmp_path):
    (tmp_path / "m").mkdir()
    t = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "c")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "../../etc/passwd"
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["w"], value=t), helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
    )
    onnx.save(helper.make_model(g), str(tmp_path / "m" / "model.onnx"))
    with pytest.raises(ModelFileError, match="tensor 'c' points its external data"):
        load_onnx(tmp_path / "m" / "model.onnx")


@pytest.mark.parametrize("domain", ["this", "os", "finn.custom_op.fpgadataflow"])
def test_unknown_domains_are_refused_before_qonnx_imports_them(tmp_path, domain):
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], domain=domain, name="evil")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(g), str(tmp_path / "model.onnx"))
    code = (f"import sys; from flow.compile.load import load_onnx\ntry:\n load_onnx({str(tmp_path / 'model.onnx')!r})\n"
            "except Exception as e: print(type(e).__name__, e)\nprint('this' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("ModelFileError") and "node 'evil'" in out
    assert out.strip().endswith("False")  # the module named by the domain was never imported


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_initializers_are_refused(tmp_path, value):
    p = _float_model(tmp_path / "model.onnx")
    m = onnx.load(str(p))
    w = numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[1, 1] = value
    m.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    onnx.save(m, str(p))
    with pytest.raises(ModelFileError, match="tensor 'w' holds NaN or infinite values"):
        load_onnx(p)


def test_input_shapes_must_be_static_and_a_symbolic_batch_becomes_1(tmp_path):
    def model(shape):
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
        path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.onnx"
        onnx.save(helper.make_model(g), str(path))
        return path

    m = load_onnx(model(["N", 4]))
    assert m.get_tensor_shape("x") == [1, 4]
    with pytest.raises(ModelFileError, match="axis 1 is 'W'"):
        load_onnx(model([1, "W"]))
    with pytest.raises(ModelFileError, match="values per sample"):
        load_onnx(model([1, 1 << 14, 1 << 14]))


def nested_if_model(path, depth: int = 30):
    """``y = If(c) then (If(c) then (... Identity(x)) else x) else x``, ``depth`` levels deep."""
    vi = helper.make_tensor_value_info

    def leaf(out):
        return helper.make_graph([helper.make_node("Identity", ["x"], [out])], f"leaf_{out}", [], [vi(out, TensorProto.FLOAT, [1, 4])])

    branch = leaf("o0")
    for level in range(1, depth):
        node = helper.make_node("If", ["c"], [f"o{level}"], name=f"If_{level}", then_branch=branch, else_branch=leaf(f"e{level}"))
        branch = helper.make_graph([node], f"level_{level}", [], [vi(f"o{level}", TensorProto.FLOAT, [1, 4])])
    top = helper.make_node("If", ["c"], ["y"], name="If_top", then_branch=branch, else_branch=leaf("e_top"))
    g = helper.make_graph([top], "nested", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 4])],
                          initializer=[numpy_helper.from_array(np.array(True), "c")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_control_flow_is_refused_naming_the_node_and_the_fix(tmp_path):
    with pytest.raises(UnsupportedOpError, match=r"node 'If_top' \(If\) is control flow.*export the network without data-dependent"):
        load_onnx(nested_if_model(tmp_path / "nested.onnx"))


def test_a_loop_inside_a_local_function_is_refused(tmp_path):
    vi = helper.make_tensor_value_info
    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                             [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, [])], [vi("cond_out", TensorProto.BOOL, [])])
    loop = helper.make_node("Loop", ["", "c"], [], name="Loop_0", body=body)
    fn = helper.make_function("local", "f", ["x"], ["y"], [loop, helper.make_node("Identity", ["x"], ["y"])],
                              [helper.make_opsetid("", 13)])
    g = helper.make_graph([helper.make_node("f", ["x"], ["y"], domain="local")], "g", [vi("x", TensorProto.FLOAT, [1, 4])],
                          [vi("y", TensorProto.FLOAT, [1, 4])], initializer=[numpy_helper.from_array(np.array(True), "c")])
    path = tmp_path / "loop.onnx"
    onnx.save(helper.make_model(g, functions=[fn], opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("local", 1)]), str(path))
    with pytest.raises(UnsupportedOpError, match=r"node 'Loop_0' \(Loop\) is control flow"):
        load_onnx(path)


def test_qflow_build_refuses_thirty_nested_ifs_with_one_line_and_exit_2(tmp_path):
    """onnxruntime takes minutes to create a session for this file; qflow refuses it before running anything."""
    path = nested_if_model(tmp_path / "nested.onnx")
    proc = subprocess.run([sys.executable, "-m", "flow", "build", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'If_top' (If) is control flow" in lines[0], proc.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_nodes_out_of_order_are_sorted_and_a_cycle_names_its_node(tmp_path):
    vi = helper.make_tensor_value_info
    n = 2000
    nodes = [helper.make_node("Relu", [f"t{i}" if i else "x"], [f"t{i + 1}" if i < n - 1 else "y"], name=f"r{i}") for i in range(n)]
    g = helper.make_graph(nodes[::-1], "g", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g), str(tmp_path / "chain.onnx"))
    assert [node.name for node in load_onnx(tmp_path / "chain.onnx").graph.node] == [f"r{i}" for i in range(n)]
    cyc = [helper.make_node("Relu", ["x"], ["a"], name="first"), helper.make_node("Add", ["a", "c"], ["b"], name="loop_add"),
           helper.make_node("Relu", ["b"], ["c"], name="loop_relu"), helper.make_node("Relu", ["c"], ["y"], name="last")]
    g = helper.make_graph(cyc, "g", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g), str(tmp_path / "cycle.onnx"))
    with pytest.raises(ModelFileError, match="node 'loop_add' \\(Add\\) is on a cycle"):
        load_onnx(tmp_path / "cycle.onnx")
