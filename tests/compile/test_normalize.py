"""Import normalisation: every way Brevitas and FINN users export a model becomes one executable form."""

import numpy as np
import onnx
import pytest
import torch
from brevitas.export import export_qonnx
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.insert_topk import InsertTopK
from qonnx.util.cleanup import cleanup_model

from flow.compile.load import load_onnx
from flow.compile.normalize import argmax_to_topk, check_shapes, normalize
from flow.core.errors import InputDatatypeError, ModelFileError
from flow.sim.execute import execute_batched


def _export(model, path, **kw):
    kw.setdefault("dynamo", False)
    with torch.no_grad():
        export_qonnx(model.eval(), torch.zeros(1, 1, 8, 8), str(path), **kw)
    return path


def _run(model, x):
    return execute_batched(model, x)[model.graph.output[0].name]


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).integers(0, 256, size=(16, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(tiny_mlp_model, x):
    with torch.no_grad():
        return tiny_mlp_model(torch.from_numpy(x)).detach().numpy()


def test_raw_torchscript_export_lacks_shapes_and_normalizes(tiny_mlp_model, tmp_path, x, reference):
    raw = load_onnx(_export(tiny_mlp_model, tmp_path / "m.onnx"))
    assert not raw.check_all_tensor_shapes_specified()
    m = normalize(raw)
    assert m.check_all_tensor_shapes_specified() and len(m.graph.input) == 1  # weights are no graph inputs
    assert np.allclose(_run(m, x), reference, atol=1e-4)


def test_shape_stripped_export_normalizes(tiny_mlp_model, tmp_path, x, reference):
    path = _export(tiny_mlp_model, tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    del proto.graph.value_info[:]
    for out in proto.graph.output:
        out.type.tensor_type.ClearField("shape")
    onnx.save(proto, str(path))
    m = normalize(load_onnx(path))
    assert m.get_tensor_shape(m.graph.output[0].name) == [1, 10]
    assert np.allclose(_run(m, x), reference, atol=1e-4)


def test_dynamo_export_with_side_data_file_normalizes(tiny_mlp_model, tmp_path, x, reference):
    path = _export(tiny_mlp_model, tmp_path / "m.onnx", dynamo=True)
    assert (tmp_path / "m.onnx.data").is_file()  # Brevitas' dynamo export writes external data
    m = normalize(load_onnx(path))
    assert len(m.graph.input) == 1
    assert np.allclose(_run(m, x), reference, atol=1e-4)


@pytest.mark.parametrize("opset", [11, 13, 17, 18])
def test_every_opset_normalizes_to_the_same_function(tiny_mlp_model, tmp_path, x, reference, opset):
    m = normalize(load_onnx(_export(tiny_mlp_model, tmp_path / "m.onnx", opset_version=opset)))
    assert np.allclose(_run(m, x), reference, atol=1e-4)


def test_normalize_is_idempotent(tiny_mlp_onnx):
    once = normalize(ModelWrapper(str(tiny_mlp_onnx)))
    twice = normalize(ModelWrapper(once.model))
    assert helper.printable_graph(once.graph) == helper.printable_graph(twice.graph)


def test_input_dtype_is_annotated(tiny_mlp_onnx):
    m = normalize(ModelWrapper(str(tiny_mlp_onnx)), input_dtype="INT4")
    assert m.get_tensor_datatype(m.graph.input[0].name) == DataType["INT4"]


def test_topk_head_is_kept(tiny_mlp_onnx):
    n = normalize(cleanup_model(ModelWrapper(str(tiny_mlp_onnx))).transform(InsertTopK(k=1)))
    assert n.graph.node[-1].op_type == "TopK"
    assert n.get_tensor_datatype(n.graph.output[0].name).is_integer()  # class indices


def _argmax_graph(axis, keepdims):
    g = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["y"], axis=axis, keepdims=keepdims, name="am")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [1, 1] if keepdims else [1])],
    )
    return ModelWrapper(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def test_final_argmax_becomes_topk_with_the_same_labels():
    x = np.array([[0, 3, 1, 3, 2], [5, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float32)  # ties: the lowest index
    m = argmax_to_topk(_argmax_graph(axis=1, keepdims=1), None)
    assert [n.op_type for n in m.graph.node] == ["TopK"]
    assert _run(m, x).ravel().tolist() == [1, 0, 0]


def test_argmax_without_keepdims_is_left_alone():
    m = argmax_to_topk(_argmax_graph(axis=1, keepdims=0), None)
    assert [n.op_type for n in m.graph.node] == ["ArgMax"]


def test_a_tensor_without_inferable_shape_is_named():
    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="dyn_reshape")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]), helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(ModelFileError, match="'y', output of node 'dyn_reshape' \\(Reshape\\)"):
        check_shapes(ModelWrapper(helper.make_model(g)), None)


def test_a_model_without_input_quantizer_needs_input_dtype(tiny_cnn_onnx):
    m = ModelWrapper(str(tiny_cnn_onnx))
    quant = next(n for n in m.graph.node if n.op_type == "Quant" and m.get_initializer(n.input[0]) is None)  # the input quantizer
    for c in m.find_consumers(quant.output[0]):
        c.input[list(c.input).index(quant.output[0])] = quant.input[0]
    m.graph.node.remove(quant)
    m.set_tensor_datatype(m.graph.input[0].name, DataType["FLOAT32"])
    with pytest.raises(InputDatatypeError, match=r"no input quantizer: node '\w+' \(Conv\).*--input-dtype"):
        normalize(ModelWrapper(m.model))
    assert normalize(ModelWrapper(m.model), input_dtype="UINT8").get_tensor_datatype("global_in") == DataType["UINT8"]
