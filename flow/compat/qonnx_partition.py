"""qonnx 1.0.0's ``PartitionFromLambda`` (under FINN's ``CreateDataflowPartition``) in linear time.

For every input of every node of a partition qonnx lists every initializer name and scans every node
for a producer; for every output it scans every node for readers; it finds the partition's nodes with
``x not in partition_nodes`` (a list, compared message by message) and walks the graph upstream of the
partition along every path. :func:`partition_from_lambda` makes the same partitions, byte for byte
(the same inputs and outputs in the same order, the same start index, quirks included, the same node
order left in the parent), from sets and dictionaries built once per partition; the cycle check visits
each upstream node once, which raises exactly when qonnx's walk does.
``tests/compat/test_qonnx_partition.py`` compares both on real and hand-made graphs.
"""

from __future__ import annotations

import copy
import pathlib
import tempfile

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.create_generic_partitions import PartitionFromLambda

from flow.compat.qonnx_index import IndexedModel

_qonnx_apply = PartitionFromLambda.apply


def _check_acyclic(partitioning, partition_id, producer: dict, p_in: list) -> None:
    """qonnx's check: nothing upstream of the partition's inputs belongs to the partition."""
    seen: set[int] = set()
    todo = [producer.get(t) for t in p_in]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        assert partitioning(node) != partition_id, """cycle-free graph violated: partition depends on itself"""
        todo.extend(producer[t] for t in node.input if t in producer)


def _boundary(self, model: ModelWrapper, all_nodes: list, inside: list[int], p_nodes: list, partition_id):
    """The partition's inputs, outputs and start index, as qonnx computes them."""
    inits = {x.name for x in model.graph.initializer}
    produced = {o for n in p_nodes for o in n.output}
    outputs = [x.name for x in model.graph.output]
    readers: dict[str, list] = {}
    for n in all_nodes:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    p_in: list[str] = []
    p_out: list[str] = []
    p_start_ind = 0
    for k, node in zip(inside, p_nodes):
        for in_tensor in node.input:
            if in_tensor not in inits and in_tensor not in produced:
                if in_tensor not in p_in:
                    p_in.append(in_tensor)
                if p_start_ind == 0:  # qonnx's test: a partition entered at node 0 takes the next entry's index
                    p_start_ind = k
        for out_tensor in node.output:
            if out_tensor in outputs:
                if out_tensor not in p_out:
                    p_out.append(out_tensor)
            elif any(self.partitioning(c) != partition_id for c in readers.get(out_tensor, ())):
                if out_tensor not in p_out:
                    p_out.append(out_tensor)
    return p_in, p_out, p_start_ind


def partition_from_lambda(self: PartitionFromLambda, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
    """qonnx's ``PartitionFromLambda.apply`` (see the module)."""
    partition_ids = set(list(map(self.partitioning, list(model.graph.node))))
    partition_ids.discard(-1)
    if self.partition_dir is None:
        self.partition_dir = tempfile.mkdtemp(prefix="partitioning_")
    else:
        pathlib.Path(self.partition_dir).mkdir(parents=True, exist_ok=True)
    for partition_id in partition_ids:
        g = model.graph
        all_nodes = list(g.node)
        inside = [k for k, n in enumerate(all_nodes) if self.partitioning(n) == partition_id]
        p_model = copy.deepcopy(model)
        pg = p_model.graph
        p_nodes = [pg.node[k] for k in inside]
        del pg.node[:]
        pg.node.extend(p_nodes)
        p_nodes = list(pg.node)
        p_in, p_out, p_start_ind = _boundary(self, p_model, all_nodes, inside, p_nodes, partition_id)
        view = IndexedModel(p_model)
        p_in_vi = [view.get_tensor_valueinfo(x) for x in p_in]
        p_out_vi = [view.get_tensor_valueinfo(x) for x in p_out]
        producer: dict = {}
        for n in all_nodes:
            for o in n.output:
                producer.setdefault(o, n)
        _check_acyclic(self.partitioning, partition_id, producer, p_in)
        while len(pg.input) > 0:
            pg.input.pop()
        for i in p_in_vi:
            pg.input.append(i)
        while len(pg.output) > 0:
            pg.output.pop()
        for o in p_out_vi:
            pg.output.append(o)
        for vi in (*p_in_vi, *p_out_vi):
            if vi in pg.value_info:
                pg.value_info.remove(vi)
        p_model_filename = self.partition_dir + "/partition_" + str(partition_id) + ".onnx"
        p_model.cleanup()
        p_model.save(p_model_filename)
        p_node = helper.make_node(
            "GenericPartition", p_in, p_out, name="GenericPartition_" + str(partition_id),
            model=p_model_filename, domain="qonnx.custom_op.general",
        )
        members = set(inside)
        order = [n for k, n in enumerate(all_nodes[:p_start_ind]) if k not in members]
        order.append(p_node)
        order += [n for k, n in enumerate(all_nodes[p_start_ind:], p_start_ind) if k not in members]
        del g.node[:]
        g.node.extend(order)
    return model, False
