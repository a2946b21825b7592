"""flow.sim.execute: batched execution computes exactly what FINN's execute_onnx computes.

Real graphs are built in-test: tiny Brevitas networks exported to QONNX and pushed
through FINN's passes (the sequence of FINN's builder steps), one graph per stage.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("finn")

from onnx import TensorProto, helper  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402
from qonnx.util.basic import qonnx_make_model  # noqa: E402

import flow.sim.execute as ex  # noqa: E402
import flow.sim.custom_nodes as xc  # noqa: E402
from flow.core.errors import UnsupportedOpError  # noqa: E402
from flow.sim.execute import (  # noqa: E402
    describe_execution,
    execute_batched,
    python_fallback_nodes,
)
from flow.sim.reference import execute_reference  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")

PART = "xc7z020clg400-1"
N_IMAGES = 16
REF_STAGES = ["qonnx", "finn", "streamlined", "hw", "parent_hw"]


# --------------------------------------------------------------------------- graph building
class _Scale(torch.nn.Module):
    """Raw 0..255 pixels in, 0..1 out: the models take integer pixel values."""

    def forward(self, x):
        return x / 255.0


def _mlp():
    import brevitas.nn as qnn
    from brevitas.quant import Uint8ActPerTensorFloat

    layers = [_Scale(), torch.nn.Flatten(),
              qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=2, return_quant_tensor=True)]
    prev = 64
    for width in (32, 32):
        layers += [qnn.QuantLinear(prev, width, bias=False, weight_bit_width=2), torch.nn.BatchNorm1d(width),
                   qnn.QuantReLU(bit_width=2, return_quant_tensor=True)]
        prev = width
    layers.append(qnn.QuantLinear(prev, 10, bias=False, weight_bit_width=2))
    return torch.nn.Sequential(*layers), (1, 8, 8)


def _cnn():
    """conv -> maxpool -> depthwise conv (VVAU) -> linear."""
    import brevitas.nn as qnn
    from brevitas.quant import Uint8ActPerTensorFloat

    return torch.nn.Sequential(
        _Scale(),
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=2, return_quant_tensor=True),
        qnn.QuantConv2d(1, 4, 3, bias=False, weight_bit_width=2), torch.nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=2, return_quant_tensor=True),
        torch.nn.MaxPool2d(2),
        qnn.QuantConv2d(4, 4, 3, groups=4, bias=False, weight_bit_width=2), torch.nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=2, return_quant_tensor=True),
        torch.nn.Flatten(),
        qnn.QuantLinear(36, 10, bias=False, weight_bit_width=2),
    ), (1, 12, 12)


def _images(n: int, shape, seed: int = 0) -> np.ndarray:
    """Random 0..255 integer images, about half the pixels 0 (like digits)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    return x


def _calibrate(net, shape):
    """Set BatchNorm statistics from data so that the 2-bit activations vary."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(_images(64, shape, seed=1)))
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data.fill_(1.5)
            m.bias.data.fill_(0.75)
    return net.eval()


def build_stages(net, shape, out_dir, standalone_thresholds=False) -> dict[str, ModelWrapper]:
    """Export ``net`` and run FINN's builder sequence; returns one model per stage.

    Stages: qonnx, finn (converted + tidied), streamlined (+ TopK), hw (HW layers),
    parent_hw (dataflow parent; child = the hw graph), specialized (child after
    SpecializeLayers + SetFolding), parent_specialized (parent pointing at it).
    """
    import finn.transformation.streamline.absorb as absorb
    from brevitas.export import export_qonnx
    from finn.transformation.fpgadataflow.convert_to_hw.conv_inp_gen import (
        InferConvInpGen,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.label_select import (
        InferLabelSelectLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.pool import InferPool
    from finn.transformation.fpgadataflow.convert_to_hw.quantized_matrix_vector_activation import (
        InferQuantizedMatrixVectorActivation,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.thresholding import (
        InferThresholdingLayer,
    )
    from finn.transformation.fpgadataflow.convert_to_hw.vector_vector_activation import (
        InferVectorVectorActivation,
    )
    from finn.transformation.fpgadataflow.create_dataflow_partition import (
        CreateDataflowPartition,
    )
    from finn.transformation.fpgadataflow.set_folding import SetFolding
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from finn.transformation.move_reshape import RemoveCNVtoFCFlatten
    from finn.transformation.qonnx.convert_qonnx_to_finn import ConvertQONNXtoFINN
    from finn.transformation.streamline import Streamline
    from finn.transformation.streamline.reorder import MakeMaxPoolNHWC
    from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
    from qonnx.core.datatype import DataType
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveReadableTensorNames,
        GiveUniqueNodeNames,
        RemoveStaticGraphInputs,
        RemoveUnusedTensors,
    )
    from qonnx.transformation.infer_data_layouts import InferDataLayouts
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.insert_topk import InsertTopK
    from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
    from qonnx.util.cleanup import cleanup_model

    from flow.compat.finn import ensure_finn_settings

    ensure_finn_settings(out_dir / "finn_build")

    def tidy(m):
        for t in (InferShapes(), FoldConstants(), GiveUniqueNodeNames(), GiveReadableTensorNames(),
                  InferDataTypes(), RemoveStaticGraphInputs()):
            m = m.transform(t)
        return m

    path = out_dir / "qonnx.onnx"
    export_qonnx(_calibrate(net, shape), torch.zeros(1, *shape), str(path), dynamo=False)
    out = {"qonnx": cleanup_model(ModelWrapper(str(path)))}
    m = tidy(out["qonnx"].transform(ConvertQONNXtoFINN()))
    m.set_tensor_datatype(m.graph.input[0].name, DataType["UINT8"])
    out["finn"] = m = m.transform(InferDataTypes())
    m = m.transform(absorb.AbsorbScalarBiasIntoMultiThreshold()).transform(Streamline())
    if m.get_nodes_by_op_type("Conv"):
        for t in (LowerConvsToMatMul(), MakeMaxPoolNHWC(), absorb.AbsorbTransposeIntoMultiThreshold(),
                  MakeMaxPoolNHWC(), absorb.AbsorbConsecutiveTransposes()):
            m = m.transform(t)
    m = m.transform(Streamline()).transform(InferDataLayouts()).transform(RemoveUnusedTensors())
    m = m.transform(InsertTopK(k=1)).transform(absorb.AbsorbScalarMulAddIntoTopK())
    out["streamlined"] = m = tidy(m.transform(RoundAndClipThresholds()))
    if standalone_thresholds:
        m = m.transform(InferThresholdingLayer())
    for t in (InferQuantizedMatrixVectorActivation(), InferVectorVectorActivation(), InferLabelSelectLayer(),
              InferThresholdingLayer(), InferPool(), InferConvInpGen(), RemoveCNVtoFCFlatten(),
              absorb.AbsorbConsecutiveTransposes(), RemoveCNVtoFCFlatten(), GiveUniqueNodeNames(),
              InferDataLayouts(), InferDataTypes(), InferShapes()):
        m = m.transform(t)
    out["hw"] = m
    parent = m.transform(CreateDataflowPartition(partition_model_dir=str(out_dir / "partitions")))
    out["parent_hw"] = parent
    (sdp,) = parent.get_nodes_by_op_type("StreamingDataflowPartition")
    child = ModelWrapper(getCustomOp(sdp).get_nodeattr("model"))
    child = child.transform(SpecializeLayers(PART)).transform(InferShapes()).transform(InferDataTypes())
    out["specialized"] = child = child.transform(SetFolding(target_cycles_per_frame=100))
    child_path = out_dir / "specialized_child.onnx"
    child.save(str(child_path))
    parent2 = ModelWrapper(copy.deepcopy(parent.model))
    getCustomOp(_sdp(parent2)).set_nodeattr("model", str(child_path))
    out["parent_specialized"] = parent2
    return out


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """Built lazily, once per network: ``stages(name)`` for mlp, cnn, mlp_standalone."""
    cache = {}

    def get(name):
        if name not in cache:
            net, shape = {"mlp": _mlp, "mlp_standalone": _mlp, "cnn": _cnn}[name]()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = build_stages(net, shape, tmp_path_factory.mktemp(name),
                                     standalone_thresholds=name.endswith("standalone"))
            cache[name] = (built, _images(N_IMAGES, shape))
        return cache[name]

    return get


def _input_for(model: ModelWrapper, images: np.ndarray) -> np.ndarray:
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return images.reshape(len(images), *shape[1:])


def _middle_tensor(model: ModelWrapper) -> str:
    return model.graph.node[len(model.graph.node) // 2].output[0]


def _sdp(model):
    return model.get_nodes_by_op_type("StreamingDataflowPartition")[0]


def _with_full_child_context(parent: ModelWrapper) -> tuple[ModelWrapper, str]:
    """A parent copy whose partition node makes FINN return the child's tensors, and the
    requestable name of a child intermediate tensor (``<node>_<tensor>``)."""
    parent = ModelWrapper(copy.deepcopy(parent.model))
    node = _sdp(parent)
    getCustomOp(node).set_nodeattr("return_full_exec_context", 1)
    child = ModelWrapper(getCustomOp(node).get_nodeattr("model"))
    return parent, f"{node.name}_{_middle_tensor(child)}"


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("net", ["mlp", "cnn", "mlp_standalone"])
@pytest.mark.parametrize("stage", REF_STAGES)
def test_batched_equals_finn_execute_onnx(stages, net, stage):
    built, images = stages(net)
    model = built[stage]
    if stage == "parent_hw":
        model, extra = _with_full_child_context(model)
    else:
        extra = _middle_tensor(model)
    x = _input_for(model, images)
    got = execute_batched(model, x, outputs=[extra])
    ref = execute_reference(model, x, outputs=[extra])
    out = model.graph.output[0].name
    for name in (out, extra):
        assert got[name].shape[0] == N_IMAGES
        assert got[name].dtype == ref[name].dtype, name
        assert np.array_equal(got[name], ref[name]), f"{net}/{stage}: {name} differs"
    assert len(np.unique(got[extra])) > 1, "test graph too degenerate to be a meaningful check"


@pytest.mark.parametrize("net", ["mlp", "cnn", "mlp_standalone"])
def test_specialized_graphs_run_python_models(stages, net):
    built, images = stages(net)
    spec, hw_parent = built["specialized"], built["parent_hw"]
    hw_child = ModelWrapper(getCustomOp(_sdp(hw_parent)).get_nodeattr("model"))
    fallback = python_fallback_nodes(spec)
    assert fallback and fallback == [n.name for n in spec.graph.node]
    assert all(n.op_type.endswith(("_hls", "_rtl")) for n in spec.graph.node)
    assert all(how.endswith("(python model)") for _, _, how in describe_execution(spec))
    parent_rows = describe_execution(built["parent_specialized"])
    assert ("partition" in [how for _, _, how in parent_rows]) and len(parent_rows) > len(spec.graph.node)

    # the specialized child computes what the HW-layer child computes (tensor names are kept)
    x = _input_for(spec, images)
    names = [o for n in spec.graph.node for o in n.output]
    got = execute_batched(spec, x, outputs=names)
    ref = execute_reference(hw_child, x, outputs=names)
    for name in names:
        assert np.array_equal(got[name], ref[name]), f"{net}: {name} differs"

    # and so does the parent graph, whose child tensors are requestable by name
    parent, mid = built["parent_specialized"], names[len(names) // 2]
    assert python_fallback_nodes(parent) == fallback
    xp = _input_for(parent, images)
    got_parent = execute_batched(parent, xp, outputs=[mid])
    out = parent.graph.output[0].name
    assert np.array_equal(got_parent[out], execute_reference(hw_parent, xp)[out])
    assert np.array_equal(got_parent[mid], got[mid])


def test_depthwise_channel_order_follows_the_hw_graph(stages):
    """VVAU's Python model reads its input channel order from its producer's op type; a
    specialized graph still computes what the HW-layer graph does when PE < channels."""
    built, images = stages("cnn")
    spec = ModelWrapper(copy.deepcopy(built["specialized"].model))
    (vvau,) = spec.get_nodes_by_op_type("VVAU_hls") or spec.get_nodes_by_op_type("VVAU_rtl")
    getCustomOp(vvau).set_nodeattr("PE", 2)
    getCustomOp(spec.find_producer(vvau.input[0])).set_nodeattr("SIMD", 2)
    hw_child = ModelWrapper(getCustomOp(_sdp(built["parent_hw"])).get_nodeattr("model"))
    x = _input_for(spec, images)
    name = vvau.output[0]
    got, ref = execute_batched(spec, x, outputs=[name]), execute_reference(hw_child, x, outputs=[name])
    assert np.array_equal(got[name], ref[name])


def test_python_fallback_nodes_empty_before_specialization(stages):
    built, _ = stages("mlp")
    for stage in REF_STAGES:
        assert python_fallback_nodes(built[stage]) == []


def test_dataflow_widths_converters_batched(stages):
    """StreamingDataWidthConverters (inserted after folding) run batched and stay exact."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.set_folding import SetFolding
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.transformation.general import GiveUniqueNodeNames

    built, images = stages("mlp")
    hw_child = ModelWrapper(getCustomOp(_sdp(built["parent_hw"])).get_nodeattr("model"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hw_child.transform(SpecializeLayers(PART)).transform(SetFolding(target_cycles_per_frame=20))
        m = m.transform(InsertDWC()).transform(SpecializeLayers(PART)).transform(GiveUniqueNodeNames())
    modes = {op: how for _, op, how in describe_execution(m)}
    assert modes.get("StreamingDataWidthConverter_rtl", "").startswith("batched"), modes
    x = _input_for(m, images)
    out = m.graph.output[0].name
    ref = execute_reference(hw_child, x)[hw_child.graph.output[0].name]
    assert np.array_equal(execute_batched(m, x)[out], ref)


def test_chunking_gives_the_same_result(stages):
    built, _ = stages("cnn")
    model = built["streamlined"]
    x = _input_for(model, _images(23, (1, 12, 12), seed=5))
    extra = _middle_tensor(model)
    whole = execute_batched(model, x, outputs=[extra])
    chunked = execute_batched(model, x, outputs=[extra], chunk_size=5)
    single = execute_batched(model, x, outputs=[extra], chunk_size=1)
    for name in whole:
        assert np.array_equal(whole[name], chunked[name]) and np.array_equal(whole[name], single[name])


def test_default_chunks_keep_tensors_in_flight_within_the_budget(stages, monkeypatch):
    """Without ``chunk_size``, a chunk holds as many samples as fit IN_FLIGHT_BYTES: a
    224x224 network runs a few samples at a time, with the same results."""
    built, _ = stages("cnn")
    model = built["streamlined"]
    x = _input_for(model, _images(23, (1, 12, 12), seed=6))
    out = model.graph.output[0].name
    whole = execute_batched(model, x)[out]
    plan = ex.Plan(model)
    per_sample = plan.bytes_per_sample({out})
    # the input, one sample of float32 12x12, is in flight at the start; the largest tensor later on
    assert per_sample >= 12 * 12 * 4
    assert per_sample >= max(int(np.prod(plan.tensors.batched_shape(t, 1))) * plan.tensors.dtype[t].itemsize
                             for t in plan.batched_all if t in plan.tensors.shape)
    sizes = []
    run = ex.Plan.run
    monkeypatch.setattr(ex.Plan, "run", lambda self, feeds, n, keep=None: sizes.append(n) or run(self, feeds, n, keep))
    monkeypatch.setattr(ex, "IN_FLIGHT_BYTES", 4 * per_sample)
    assert np.array_equal(execute_batched(model, x)[out], whole)
    assert sizes == [4, 4, 4, 4, 4, 3]


@pytest.mark.parametrize("stage", ["qonnx", "finn", "streamlined"])
def test_executed_macs_equal_qonnx_inference_cost_without_sparsity_discount(stages, stage):
    """Conv nodes (qonnx, finn) and the MatMuls they are lowered to (streamlined): qonnx's count, from shapes alone."""
    from qonnx.util.inference_cost import inference_cost

    from flow.sim.inputs import executed_macs

    model = stages("cnn")[0][stage]
    cost = inference_cost(copy.deepcopy(model), discount_sparsity=False)["total_cost"]
    macs = sum(v for k, v in cost.items() if k.startswith("op_mac"))
    assert macs > 0 and executed_macs(model) == macs


def test_all_in_blocks_equals_numpy():
    a = np.arange(-50, 50, dtype=np.float32).reshape(10, 10) / 4
    for block in (1, 7, 100, 1000):
        assert ex._all(a, lambda b: b == np.round(b), block) == bool(np.all(a == np.round(a)))
        assert ex._all(np.round(a), lambda b: b == np.round(b), block)
        assert ex._all(a, lambda b: b < 13, block) and not ex._all(a, lambda b: b < 12, block)


def test_model_is_not_modified(stages):
    built, images = stages("cnn")
    for stage in ("hw", "specialized"):
        model = built[stage]
        before = model.model.SerializeToString()
        execute_batched(model, _input_for(model, images[:3]))
        assert model.model.SerializeToString() == before


def test_spot_check_demotes_a_wrongly_batched_op(stages, monkeypatch, caplog):
    """If an op wrongly listed as batch-safe scrambles samples, the first-chunk spot
    check notices and the node runs per sample: results stay exact."""
    monkeypatch.setattr(xc, "CHANNEL_STACKED", frozenset())
    monkeypatch.setattr(xc, "BATCH_SAFE_CUSTOM", xc.BATCH_SAFE_CUSTOM | {"Im2Col"})
    built, images = stages("cnn")
    model = built["streamlined"]
    x = _input_for(model, images)
    with caplog.at_level(logging.WARNING, logger="flow.sim.nodes"):
        got = execute_batched(model, x)
    assert any("Im2Col" in r.getMessage() for r in caplog.records)
    out = model.graph.output[0].name
    assert np.array_equal(got[out], execute_reference(model, x)[out])


def _tiny(nodes, x_shape=(1, 4), y_shape=(1, 4), domain_opsets=()):
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "g", [vi("x", TensorProto.FLOAT, list(x_shape))],
                          [vi("y", TensorProto.FLOAT, list(y_shape))])
    model = qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 13)]
                             + [helper.make_opsetid(d, 1) for d in domain_opsets])
    return ModelWrapper(model)


@pytest.mark.parametrize(
    "node",
    [
        helper.make_node("FooBar", ["x"], ["y"], name="mystery"),
        helper.make_node("FooBar", ["x"], ["y"], name="mystery", domain="qonnx.custom_op.general"),
        helper.make_node("IODMA_hls", ["x"], ["y"], name="mystery", domain="finn.custom_op.fpgadataflow.hls"),
    ],
    ids=["onnx-domain", "qonnx-domain", "hls-only"],
)
def test_unexecutable_node_raises_unsupported_op(node):
    model = _tiny([node], domain_opsets=[node.domain] if node.domain else [])
    with pytest.raises(UnsupportedOpError) as err:
        execute_batched(model, np.zeros((2, 4), np.float32))
    assert "mystery" in str(err.value) and node.op_type in str(err.value)


def _single_op_model(op, x_shape, y_shape, w, **attrs):
    model = _tiny([helper.make_node(op, ["x", "w"], ["y"], name="op", **attrs)], x_shape, y_shape)
    model.graph.initializer.append(helper.make_tensor("w", TensorProto.FLOAT, list(w.shape), w.ravel()))
    model.graph.value_info.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(w.shape)))
    return model


@pytest.mark.parametrize(
    "op, x_shape, w_shape, y_shape",
    [
        ("MatMul", (1, 64), (64, 32), (1, 32)),
        # a shape where onnxruntime's Conv on one image differs from its Conv on a batch
        ("Conv", (1, 64, 14, 14), (128, 64, 3, 3), (1, 128, 12, 12)),
    ],
)
def test_float_sums_run_per_sample_and_match(op, x_shape, w_shape, y_shape):
    """onnxruntime picks a MatMul/Conv summation order by batch size and thread count, so
    float MatMul/Conv run per sample; integer ones, whose sums are exact, run batched."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(w_shape).astype(np.float32)
    model = _single_op_model(op, x_shape, y_shape, w)
    assert describe_execution(model) == [("op", op, "per-sample")]
    x = rng.standard_normal((3, *x_shape[1:])).astype(np.float32)
    assert np.array_equal(execute_batched(model, x)["y"], execute_reference(model, x)["y"])

    from qonnx.core.datatype import DataType

    model = _single_op_model(op, x_shape, y_shape, np.round(w * 2))
    model.set_tensor_datatype("x", DataType["UINT4"])
    assert describe_execution(model) == [("op", op, "batched")]
    x = rng.integers(0, 16, (3, *x_shape[1:])).astype(np.float32)
    assert np.array_equal(execute_batched(model, x)["y"], execute_reference(model, x)["y"])


def test_input_validation():
    model = _tiny([helper.make_node("Relu", ["x"], ["y"])])
    assert execute_batched(model, np.ones((3, 1, 4)))["y"].shape == (3, 4)  # (N, 1, ...) accepted
    with pytest.raises(ValueError, match="expected"):
        execute_batched(model, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="inputs"):
        execute_batched(model, {"nope": np.ones((3, 4), np.float32)})
    with pytest.raises(KeyError, match="no tensor"):
        execute_batched(model, np.ones((3, 4), np.float32), outputs=["nope"])
