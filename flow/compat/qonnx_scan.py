"""qonnx 1.0.0's ``ModelWrapper`` lookups by tensor name, each in one pass over the graph instead of several.

qonnx answers ``get_tensor_valueinfo``, ``get_tensor_shape`` and ``set_tensor_shape`` by building a
list of ``(name, ValueInfoProto)`` pairs over every graph input, output and value_info, then a
second list of the names, then counting and indexing it; ``set_tensor_shape`` then scans the
value_info twice more to remove the old entry (``remove_by_name``: a list of names and a list of
matching indices, then ``RepeatedField.remove``, which compares messages). ``find_consumers``
walks every input of every node in Python. FINN's passes call these once or more per node and
per rewrite, so on a graph of thousands of tensors they are most of the time of QONNX-to-FINN
conversion and streamlining (a 120-block residual chain: 4,225 value_infos, 1.6 ms per
``get_tensor_shape``).

The functions here give the same answers and make the same edits (the same entry removed, the
new one appended or inserted at the same place, the same assertion on a name given twice),
each with one pass of names: a list comprehension whose ``count``/``index``/``in`` run in C.
They are still linear per call; :mod:`flow.compat.qonnx_linear` swaps them in.
``tests/compat/test_qonnx_scan.py`` compares them with qonnx's on real models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnx import TensorProto
from onnx import helper as oh
from onnx import numpy_helper as np_helper
from qonnx.core.modelwrapper import ModelWrapper


def _valueinfo(graph, name: str):
    """(container, index, ValueInfoProto) of ``name`` among the graph's inputs, outputs and value_info, or
    (None, None, None); asserts as qonnx does when the name is there more than once."""
    found = None
    count = 0
    for field in (graph.input, graph.output, graph.value_info):
        names = [x.name for x in field]
        n = names.count(name)
        if n and found is None:
            i = names.index(name)
            found = (field, i, field[i])
        count += n
    assert count <= 1, "Multiple ValueInfoProto found for " + name
    return found or (None, None, None)


def get_tensor_valueinfo(self: ModelWrapper, tensor_name: str):
    return _valueinfo(self._model_proto.graph, tensor_name)[2]


def get_tensor_shape(self: ModelWrapper, tensor_name: str, fix_missing_init_shape: bool = False) -> list[int] | None:
    vi = _valueinfo(self._model_proto.graph, tensor_name)[2]
    if vi is not None:
        return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    init, dtype = self.get_initializer(tensor_name, return_dtype=True)
    if init is None:
        return None
    if fix_missing_init_shape:
        self.set_tensor_shape(tensor_name, init.shape, dtype=dtype)
    return list(init.shape)


def set_tensor_shape(self: ModelWrapper, tensor_name: str, tensor_shape: Sequence[int], dtype: int | None = None) -> None:
    graph = self._model_proto.graph
    field, i, old = _valueinfo(graph, tensor_name)
    if dtype is None:
        dtype = TensorProto.FLOAT if old is None else old.type.tensor_type.elem_type
    new = oh.make_tensor_value_info(tensor_name, dtype, tensor_shape)
    if field is None or field is graph.value_info:  # value_info: the old entry goes, the new one comes last
        if field is not None:
            del field[i]
        graph.value_info.append(new)
    else:  # a graph input or output keeps its place
        del field[i]
        field.insert(i, new)


def set_initializer(self: ModelWrapper, tensor_name: str, tensor_value: np.ndarray) -> None:
    graph = self._model_proto.graph
    proto = np_helper.from_array(tensor_value)
    proto.name = tensor_name
    names = [x.name for x in graph.initializer]
    if tensor_name in names:
        del graph.initializer[names.index(tensor_name)]
    graph.initializer.append(proto)
    self.set_tensor_shape(tensor_name, list(tensor_value.shape), proto.data_type)


def find_consumers(self: ModelWrapper, tensor_name: str) -> list:
    consumers = []
    for n in self._model_proto.graph.node:
        if tensor_name in n.input:
            consumers.extend([n] * list(n.input).count(tensor_name))  # once per input it feeds, as qonnx
    return consumers
