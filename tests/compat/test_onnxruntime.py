"""The onnxruntime workaround is still needed, and works: a session on an opset-1 model logs a
coloured warning to stderr unless the command line has asked for quiet."""

import subprocess
import sys

_SESSION = (
    "import onnx, onnxruntime\n"
    "from onnx import helper, TensorProto\n"
    "g = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g',\n"
    "    [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])], [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])\n"
    "m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 1)], ir_version=3)\n"
    "try:\n"
    "    onnxruntime.InferenceSession(m.SerializeToString())\n"
    "except Exception:\n"
    "    pass\n"
)


def _stderr(prefix: str) -> str:
    return subprocess.run([sys.executable, "-c", prefix + _SESSION], capture_output=True, text=True, timeout=120).stderr


def test_onnxruntime_warns_on_an_opset_1_model():
    assert "onnxruntime" in _stderr("")


def test_the_warning_is_gone_after_the_cli_asks():
    assert _stderr("from flow.compat.onnxruntime import quiet_onnxruntime; quiet_onnxruntime()\n") == ""
