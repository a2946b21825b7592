"""Small onnx.helper graphs and checks for the structure-pass tests (tests/compile/test_passes_*.py, tests/compat/test_finn_streamline.py).

Each pass test checks that the rewrite fired the way it should and that qonnx's
``execute_onnx`` gives the same outputs before and after; a refusing pass must leave the
graph as it was (:func:`assert_unchanged`).
"""

from __future__ import annotations

import warnings

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from flow.compile.passes.graph import graph_digest

QONNX = "qonnx.custom_op.general"
RNG = np.random.default_rng(0)


def graph(nodes, inputs, outputs, inits=None, dtypes=None, shapes=None, opset=13) -> ModelWrapper:
    """A model of ``nodes`` (ONNX ``opset``); ``inputs``/``outputs``/``shapes`` map tensor names to shapes, ``dtypes`` to DataType names."""

    def infos(d):
        return [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in (d or {}).items()]

    g = helper.make_graph(nodes, "g", infos(inputs), infos(outputs), value_info=infos(shapes))
    m = ModelWrapper(qonnx_make_model(g, producer_name="qflow-test", opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(QONNX, 2)]))
    for k, v in (inits or {}).items():
        v = np.asarray(v)
        m.set_initializer(k, v.astype(np.float32) if v.dtype.kind == "f" else v)
    for k, v in (dtypes or {}).items():
        m.set_tensor_datatype(k, DataType[v])
    return m.transform(InferShapes()).transform(InferDataTypes()).transform(InferDataLayouts())


def ints(dt: str, shape) -> np.ndarray:
    """Random integers of DataType ``dt`` as float32."""
    d = DataType[dt]
    return RNG.integers(int(d.min()), int(d.max()) + 1, size=shape).astype(np.float32)


def floats(shape) -> np.ndarray:
    return RNG.normal(size=shape).astype(np.float32)


def thresholds(channels, n, lo, hi) -> np.ndarray:
    return np.sort(RNG.uniform(lo, hi, size=(channels, n)), axis=1).astype(np.float32)


def outputs(model: ModelWrapper, feeds: dict) -> list[np.ndarray]:
    """The graph outputs for ``feeds`` given in graph-input order (a pass may rename the inputs)."""
    names = [i.name for i in model.graph.input]
    assert len(names) == len(feeds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = execute_onnx(model, dict(zip(names, feeds.values())))
    return [ctx[o.name] for o in model.graph.output]


def apply(model: ModelWrapper, t) -> ModelWrapper:
    """``model`` transformed by ``t`` (``model`` stays as it was)."""
    return ModelWrapper(model.model.__deepcopy__()).transform(t)


def same_outputs(before: ModelWrapper, after: ModelWrapper, feeds: dict, exact: bool = True) -> None:
    for a, b in zip(outputs(before, feeds), outputs(after, feeds)):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def assert_unchanged(model: ModelWrapper, t) -> None:
    """The pass refuses: the same nodes, wiring and constants after it."""
    assert graph_digest(apply(model, t)) == graph_digest(model)


def ops(model: ModelWrapper) -> list[str]:
    return [n.op_type for n in model.graph.node]


def consts_of(model: ModelWrapper, op: str) -> list[np.ndarray]:
    """The constant inputs of every ``op`` node, in graph order."""
    return [
        model.get_initializer(i) for n in model.graph.node if n.op_type == op for i in n.input if model.get_initializer(i) is not None
    ]


def mul_then(op_node, xshape, yshape, c, dtype="INT4", shapes=None) -> ModelWrapper:
    """``x -> Mul(c) -> m -> op_node -> y``: the usual shape of a scale-moving test."""
    return graph([helper.make_node("Mul", ["x", "c"], ["m"]), op_node], {"x": xshape}, {"y": yshape}, {"c": c}, {"x": dtype}, shapes)
