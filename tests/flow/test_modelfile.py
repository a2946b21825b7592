import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
import numpy as np

from flow.errors import ModelFileError, UnquantizedModelError
from flow.modelfile import check_quantized, load_onnx


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
    with pytest.raises(ModelFileError, match="outside the model folder"):
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
