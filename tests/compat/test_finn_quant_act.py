"""FINN's ``ConvertQuantActToMultiThreshold`` converts one activation per ``apply`` with whole-graph scans;
the one-sweep replacement (flow.compat.finn_quant_act) gives the same graph, byte for byte, without them."""

from __future__ import annotations

import random

import numpy as np
import pytest
from corpus import structures as S
from corpus.cases import BY_NAME
from corpus.export import EXPORTERS
from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
from finn.transformation.qonnx.quant_act_to_multithreshold import ConvertQuantActToMultiThreshold
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from flow.compat import finn_quant_act
from flow.compat.qonnx_linear import linear_qonnx
from flow.compile.normalize import normalize
from flow.compile.passes import prepare_qonnx
from flow.nn.export import export_qonnx

Q = dict(domain="qonnx.custom_op.general", rounding_mode="ROUND", narrow=0)


def every_handler_path() -> ModelWrapper:
    """Activation Quants of every kind FINN's handlers take, on a [1, 4] stream: an identity quantizer on
    the graph input (no predecessor) whose output forks, a ReLU with per-channel scales, a quantizer
    reading a quantizer (its predecessor is the previous conversion's Mul), a BipolarQuant, a 16-bit
    quantizer FINN's filter leaves alone, a SELU, and a join."""
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Quant", ["x", "s_half", "zero", "b4"], ["q1"], signed=1, **Q),
        helper.make_node("Relu", ["q1"], ["r1"]),
        helper.make_node("Quant", ["r1", "s_chan", "zero", "b3"], ["q2"], signed=0, **Q),
        helper.make_node("Quant", ["q2", "s_quarter", "zero", "b4"], ["q3"], signed=1, **Q),
        helper.make_node("BipolarQuant", ["q3", "one"], ["q4"], domain="qonnx.custom_op.general"),
        helper.make_node("Quant", ["q4", "s_half", "zero", "b16"], ["q5"], signed=1, **Q),
        helper.make_node("Selu", ["q5"], ["sl"]),
        helper.make_node("Quant", ["sl", "s_quarter", "zero", "b2"], ["q6"], signed=1, **Q),
        helper.make_node("Add", ["q6", "q1"], ["y"]),
    ]
    values = {"s_half": 0.5, "s_quarter": 0.25, "zero": 0.0, "one": 1.0, "b2": 2.0, "b3": 3.0, "b4": 4.0, "b16": 16.0}
    inits = [numpy_helper.from_array(np.float32(v), name) for name, v in values.items()]
    inits.append(numpy_helper.from_array(np.array([[0.5, 0.25, 1.0, 0.125]], np.float32), "s_chan"))
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "acts", [inp], [out], initializer=inits)))
    return model.transform(InferShapes()).transform(InferDataTypes()).transform(InferDataLayouts())


def brevitas_export(source: str, tmp_path) -> ModelWrapper:
    """A corpus structure or finn-examples case exported from Brevitas (random weights), as qflow hands it to FINN's conversion."""
    path = tmp_path / f"{source}.onnx"
    if hasattr(S, source):
        _, module, shape, dtype, _ = getattr(S, source)()
        export_qonnx(module, path, shape, dtype)
    else:
        case = BY_NAME[source]
        EXPORTERS[case.export](case.build().eval(), case.shape, path)
        dtype = case.input_dtype
    with linear_qonnx():
        return prepare_qonnx(normalize(ModelWrapper(str(path)), dtype))


def converted(model: ModelWrapper, transformation, finns: bool, monkeypatch, cleanup: bool = True) -> bytes:
    random.seed(0)
    with linear_qonnx(), monkeypatch.context() as m:
        if finns:
            m.setattr(ConvertQuantActToMultiThreshold, "apply", finn_quant_act._finn_apply)
        return model.transform(transformation, cleanup=cleanup).model.SerializeToString()


def test_every_handler_path_gives_finns_graph_and_leaves_the_16_bit_quantizer(monkeypatch):
    """The same bytes as FINN's, also before qonnx's cleanup sorts the nodes: the new nodes stand where FINN inserts them."""
    model = every_handler_path()
    for cleanup in (False, True):
        ours = converted(model, ConvertQuantActToMultiThreshold(), False, monkeypatch, cleanup)
        assert ours == converted(model, ConvertQuantActToMultiThreshold(), True, monkeypatch, cleanup), cleanup
    graph = ModelWrapper(qonnx_make_model(helper.make_graph([], "g", [], []))).model
    graph.ParseFromString(ours)
    kinds = [n.op_type for n in graph.graph.node]
    assert kinds.count("MultiThreshold") == 5 and kinds.count("Quant") == 1 and "Relu" not in kinds and "Selu" not in kinds


@pytest.mark.parametrize("source", ["mobilenet_slice", "residual_stacked", "proxyless_slice", "tfc_1w1a", "fe_kws_mlp_w3a3",
                                    "fe_cybsec_mlp_w2a2", "fe_vgg10_radioml_w4a4"])
def test_finns_whole_qonnx_to_finn_conversion_gives_the_same_bytes_with_the_sweep(source, tmp_path, monkeypatch):
    """Brevitas exports: ReLU and identity quantizers, per-channel scales, residual joins sharing one
    quantizer, bipolar activations, 1D convolutions; FINN's whole ConvertQONNXtoFINN, this pass swapped."""
    model = brevitas_export(source, tmp_path)
    ours = converted(model, ConvertQONNXtoFINN(), False, monkeypatch)
    assert ours == converted(model, ConvertQONNXtoFINN(), True, monkeypatch)
    assert b"MultiThreshold" in ours


def test_the_sweep_scans_nothing_where_finns_pass_scans_per_activation(monkeypatch):
    """Why: FINN's pass restarts after each activation and looks producers, initializers and tensor names
    up by scanning the whole graph; the sweep calls none of those scans."""
    calls = {"find_producer": 0, "get_initializer": 0, "get_all_tensor_names": 0}
    for name in calls:
        real = getattr(ModelWrapper, name)
        monkeypatch.setattr(ModelWrapper, name, lambda self, *a, _n=name, _f=real, **k: calls.__setitem__(_n, calls[_n] + 1) or _f(self, *a, **k))
    model = every_handler_path()
    with linear_qonnx():
        random.seed(0)
        finn_quant_act._finn_apply(ConvertQuantActToMultiThreshold(), ModelWrapper(model.model.SerializeToString()))
        assert min(calls.values()) > 0, calls
        for name in calls:
            calls[name] = 0
        random.seed(0)
        _, changed = finn_quant_act.convert_quant_acts(ConvertQuantActToMultiThreshold(), model)
    assert calls == dict.fromkeys(calls, 0) and changed is False
    assert sum(n.op_type == "MultiThreshold" for n in model.graph.node) == 5


def test_handlers_other_than_finns_get_finns_pass(monkeypatch):
    """A package that adds a handler class gets FINN's own pass (the sweep knows FINN's two handlers' edits)."""
    model = every_handler_path()
    used = []
    real = finn_quant_act._finn_apply
    monkeypatch.setattr(finn_quant_act, "_finn_apply", lambda self, m: used.append(1) or real(self, m))
    monkeypatch.setattr(finn_quant_act, "_FINN_HANDLERS", [])
    ours = converted(model, ConvertQuantActToMultiThreshold(), False, monkeypatch)
    assert used
    assert ours == converted(model, ConvertQuantActToMultiThreshold(), True, monkeypatch)
