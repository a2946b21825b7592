"""The qonnx workarounds are still needed, and work."""

import subprocess
import sys

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


_ARENA_PROBE = """
import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model
from flow.compat.qonnx import compacted_from, release_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

vi = helper.make_tensor_value_info
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                      [vi("x", TensorProto.FLOAT, [1, 4096])], [vi("y", TensorProto.FLOAT, [1, 4096])])
model = ModelWrapper(qonnx_make_model(g))
model.set_initializer("w", np.zeros((4096, 4096), np.float32))  # 64 MB
release_memory()
start = rss_mb()
for k in range(8):  # what a streamlining pass does to a weight it moves a scale into
    model.set_initializer("w", np.full((4096, 4096), k, np.float32))
release_memory()
grown = rss_mb()
model = compacted_from(model.model.SerializeToString())
release_memory()
print(start, grown, rss_mb(), float(model.get_initializer("w")[0, 0]))
"""


def test_replaced_weights_stay_allocated_until_the_model_is_parsed_again():
    """Why compacted_from and release_memory exist: upb keeps every replaced initializer in the model's arena."""
    out = subprocess.run([sys.executable, "-c", _ARENA_PROBE], capture_output=True, text=True, check=True, timeout=120).stdout
    start, grown, after, value = map(float, out.split())
    assert grown - start > 6 * 64, (start, grown)  # 7 replaced 64 MB weights still held
    assert after - start < 2 * 64, (start, after)  # one weight's worth, and the model's bytes freed
    assert value == 7.0


def test_compacted_is_the_same_model():
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 4])])
    model = ModelWrapper(qonnx_make_model(g))
    model.set_initializer("unused", np.arange(4, dtype=np.float32))
    again = qonnx_compat.compacted_from(model.model.SerializeToString())
    assert again is not model and again.model.SerializeToString() == model.model.SerializeToString()


_HEAP_PROBE = """
from flow.compat.qonnx import release_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

start = rss_mb()
blocks = [bytearray(64 * 1024) for _ in range(8000)]  # 500 MB from the C heap, as an arena's blocks
last = blocks[-1]  # one block still in use at the heap's top
del blocks
freed = rss_mb()
release_memory()
print(start, freed, rss_mb())
"""


def test_freed_heap_memory_stays_with_the_process_until_released():
    """Why release_memory exists: glibc keeps freed heap blocks, so a dropped model's memory is not given back."""
    start, freed, released = map(float, subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True,
                                                       check=True, timeout=120).stdout.split())
    assert freed - start > 400, (start, freed)
    assert released - start < 100, (start, released)


_THRESHOLD_PROBE = """
import sys
from flow.compat.qonnx import return_large_blocks

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "fixed":
    return_large_blocks()
big = bytearray(16 * 2**20)
del big  # one large block freed: glibc raises its mmap threshold
start = rss_mb()
blocks = [bytearray(2 * 2**20) for _ in range(200)]  # 400 MB of activation-sized blocks
last = bytearray(64 * 1024)  # a live block above them
del blocks
print(start, rss_mb())
"""


def test_freed_large_blocks_stay_with_the_process_unless_returned():
    """Why return_large_blocks exists: after one large free, glibc keeps 2 MB blocks on the heap after they are freed."""
    def held(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _THRESHOLD_PROBE, mode], capture_output=True, text=True, check=True, timeout=120)
        start, after = map(float, out.stdout.split())
        return after - start

    assert held("default") > 300
    assert held("fixed") < 50
