"""qonnx's ``PartitionFromLambda`` (under FINN's ``CreateDataflowPartition``) scans the graph for every
input and output of a partition; the replacement (flow.compat.qonnx_partition) makes the same parent
graph and partition files, byte for byte, without those scans."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus.samples import exported
from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.create_generic_partitions import PartitionFromLambda
from qonnx.util.basic import qonnx_make_model

from flow.builder import build
from flow.compat import qonnx_partition
from flow.compat.qonnx_linear import linear_qonnx
from flow.core.config import build_config


@pytest.fixture(scope="module")
def hw_graphs(tmp_path_factory):
    """qflow's HW graphs (before the dataflow partition) of a MobileNet slice, stacked residual blocks and TFC."""
    tmp = tmp_path_factory.mktemp("partition")
    found = exported(tmp)
    return {name: ModelWrapper(str(build(path, build_config(target="pynq-z1", target_fps=10_000, verify_samples=0, input_dtype=dtype),
                                         tmp / f"{name}_out").checkpoints["convert_to_hw"])) for name, (path, dtype) in found.items()}


def partitioned(model: ModelWrapper, transformation, folder: Path, ours: bool, monkeypatch, cleanup: bool = True) -> dict[str, bytes]:
    """The parent graph and every partition file ``transformation`` writes into ``folder``."""
    with linear_qonnx(), monkeypatch.context() as m:
        if not ours:
            m.setattr(PartitionFromLambda, "apply", qonnx_partition._qonnx_apply)
        parent = ModelWrapper(model.model.SerializeToString()).transform(transformation, cleanup=cleanup)
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.onnx"))}
    return {"parent": parent.model.SerializeToString(), **files}


def test_finns_dataflow_partition_gives_the_same_parent_and_partition_files(hw_graphs, tmp_path, monkeypatch):
    scans = {"n": 0}
    for name, model in hw_graphs.items():
        folder = tmp_path / name
        theirs = partitioned(model, CreateDataflowPartition(str(folder)), folder, False, monkeypatch)
        real = ModelWrapper.find_producer
        monkeypatch.setattr(ModelWrapper, "find_producer", lambda self, t: scans.__setitem__("n", scans["n"] + 1) or real(self, t))
        ours = partitioned(model, CreateDataflowPartition(str(folder)), folder, True, monkeypatch)
        monkeypatch.setattr(ModelWrapper, "find_producer", real)
        assert ours == theirs, name
        assert len(theirs) >= 2 and b"StreamingDataflowPartition" in theirs["parent"], name
    assert scans["n"] == 0


def chain(ops: int) -> ModelWrapper:
    """x -> Relu_0 -> ... -> Relu_{ops-1} -> y, with a skip Add from Relu_0 into the last node's input, and a
    second input z through Relu_z into a Mul after the Add."""
    inps = [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 4]) for t in ("x", "z")]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["t0"], name="Relu_0")]
    nodes += [helper.make_node("Relu", [f"t{i - 1}"], [f"t{i}"], name=f"Relu_{i}") for i in range(1, ops - 1)]
    nodes += [helper.make_node("Add", [f"t{ops - 2}", "t0"], ["s"], name="Add"), helper.make_node("Relu", ["z"], ["u"], name="Relu_z"),
              helper.make_node("Mul", ["s", "u"], ["y"], name="Mul")]
    inner = [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 4]) for n in nodes[:-1] for t in n.output]
    return ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "chain", inps, [out], value_info=inner)))  # in this order


@pytest.mark.parametrize("ids", [
    {"Relu_1": 0, "Relu_2": 0, "Relu_5": 1, "Add": 1},  # two partitions, both reading one fork from outside
    {"Relu_0": 3, "Relu_1": 3, "Relu_z": 3},  # entered at node 0, and again later: qonnx starts it at the later entry
    {"Relu_2": 0, "Relu_3": 0, "Relu_4": 0},  # its output also read by the host Add
], ids=["two", "at_node_0", "forked_output"])
def test_hand_made_partitions_match_qonnx(ids, tmp_path, monkeypatch):
    """The same parent, node for node in the same order (before qonnx's cleanup sorts it), and partition files."""
    model = chain(7)
    make = lambda: PartitionFromLambda(lambda n: ids.get(n.name, -1), str(tmp_path))  # noqa: E731
    for cleanup in (False, True):
        ours = partitioned(model, make(), tmp_path, True, monkeypatch, cleanup)
        assert ours == partitioned(model, make(), tmp_path, False, monkeypatch, cleanup), cleanup


def test_a_partition_that_depends_on_itself_is_refused_as_qonnx_refuses_it(tmp_path, monkeypatch):
    model = chain(5)
    make = lambda: PartitionFromLambda(lambda n: 0 if n.name in ("Relu_0", "Relu_2") else -1, str(tmp_path))  # noqa: E731
    for ours in (False, True):
        with pytest.raises(AssertionError, match="cycle-free graph violated"):
            partitioned(model, make(), tmp_path, ours, monkeypatch)
