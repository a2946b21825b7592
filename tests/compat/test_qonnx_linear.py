"""qonnx 1.0.0's whole-graph passes do work quadratic in graph size (or copy every weight), and
qflow's replacements (flow.compat.qonnx_linear, qonnx_graph, qonnx_index, qonnx_names, finn_linear) give the same graphs,
byte for byte, on real models at every stage of a build.

Work is counted, not timed: the Python lines a pass executes (``sys.settrace``) grow 4x when
qonnx's pass meets a graph twice as long, 2x with the replacement.
"""

from __future__ import annotations

import copy
import random
import sys

import brevitas.nn as qnn
import numpy as np
import onnx
import onnx.shape_inference
import pytest
import torch
from brevitas.export import export_qonnx as brevitas_export
from corpus import structures as S
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from finn.transformation.fpgadataflow.convert_to_hw.elementwise_binary_operation import InferElementwiseBinaryOperation
from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
from finn.transformation.qonnx.convert_qonnx_to_finn import InferMissingGemmBias
from finn.transformation.qonnx.fold_quant_weights import FoldQuantWeights
from finn.transformation.streamline.absorb import AbsorbScalarBiasIntoMultiThreshold
from finn.transformation.streamline.reorder import MoveScalesPastIm2Col
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.core.datatype import DataType, IntType
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.gemm_to_matmul import GemmToMatMul
from qonnx.transformation.general import (
    GiveReadableTensorNames,
    GiveUniqueNodeNames,
    GiveUniqueParameterTensors,
    GiveUniqueTensorNames,
    SortCommutativeInputsInitializerLast,
    SortGraph,
)
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit
from qonnx.transformation.remove import RemoveIdentityOps
from qonnx.util.basic import qonnx_make_model
from toposort import CircularDependencyError

from flow.builder import build
from flow.compat import finn as finn_compat
from flow.compat.finn_builder import finn_config
from flow.compat.qonnx_graph import int_allowed
from flow.compat.qonnx_linear import REPLACEMENTS, linear_qonnx, transforms_in_place
from flow.core.config import build_config
from flow.core.pipeline import BuildContext
from flow.nn.export import export_qonnx
from hw_targets import load_target

PASSES = [
    InferShapes, SortGraph, GiveUniqueParameterTensors, SortCommutativeInputsInitializerLast, GiveUniqueTensorNames,
    GiveReadableTensorNames, InferDataTypes, InferDataLayouts, RemoveIdentityOps, FoldConstants,
]
STAGES = ["qonnx", "qonnx_to_finn", "streamline", "convert_to_hw", "specialize_layers", "minimize_bit_width"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The checkpoint of every step of qflow builds of a Brevitas MobileNet slice (depthwise convs, a
    rounding average pool, a biased classifier), a residual block with a projection conv and two
    stacked residual blocks (joins one after another)."""
    tmp = tmp_path_factory.mktemp("qonnx_linear")
    found = {}
    for fn in (S.mobilenet_slice, S.residual_projection, S.residual_stacked):
        name, module, shape, dtype, _ = fn()
        path = tmp / f"{name}.onnx"
        export_qonnx(module, path, shape, dtype)
        result = build(path, build_config(target="pynq-z1", target_fps=10_000, verify_samples=0), tmp / name)
        found[name] = {stage: result.checkpoints[stage] for stage in STAGES}
    return found


def run(model: ModelWrapper, transformation, linear: bool) -> bytes:
    """``transformation`` on a copy of ``model`` (qonnx's or the linear one), random names seeded alike."""
    random.seed(0)
    if linear:
        with linear_qonnx():
            out = model.transform(transformation)
    else:
        out = model.transform(transformation)
    return out.model.SerializeToString()


@pytest.mark.parametrize("cls", PASSES, ids=[p.__name__ for p in PASSES])
def test_the_linear_pass_gives_the_graph_qonnxs_pass_gives_at_every_stage(checkpoints, cls):
    for name, stages in checkpoints.items():
        for stage, path in stages.items():
            model = ModelWrapper(str(path)).transform(GiveUniqueNodeNames())
            assert run(model, cls(), linear=True) == run(model, cls(), linear=False), (name, stage)


def as_sets(model: ModelWrapper) -> tuple:
    """The graph as sets: its nodes (a topological order is kept, which one is not compared), the
    initializers, value infos and annotations by name, the inputs and outputs in order."""
    g = model.graph
    return (
        sorted(n.SerializeToString() for n in g.node), [v.SerializeToString() for v in (*g.input, *g.output)],
        {t.name: t.SerializeToString() for t in g.initializer}, {v.name: v.SerializeToString() for v in g.value_info},
        {a.tensor_name: a.SerializeToString() for a in g.quantization_annotation},
    )


FINN_PASSES = [RoundAndClipThresholds, AbsorbScalarBiasIntoMultiThreshold, MoveScalesPastIm2Col, MinimizeAccumulatorWidth,
               InferElementwiseBinaryOperation]


def test_fold_quant_weights_gives_finns_graph_converting_only_what_it_reads_and_inferring_shapes_once(checkpoints, monkeypatch):
    """Why: FINN's FoldQuantWeights converts every initializer of the model to numpy, and infers the shapes
    of the whole graph and cleans it up (sorting every node), for each weight it folds. The replacement
    gives the same model, byte for byte, its nodes in FINN's order, with one shape inference and one
    sort of the graph (the order after each fold followed on the side)."""
    from flow.compat import qonnx_linear

    inferred, infer = [], qonnx_linear.infer_shapes
    monkeypatch.setattr(qonnx_linear, "infer_shapes", lambda m: inferred.append(1) or infer(m))
    sorts, sort = [], qonnx_linear.sort_graph
    monkeypatch.setattr(qonnx_linear, "sort_graph", lambda m: sorts.append(1) or sort(m))
    for name, stages in checkpoints.items():
        model = ModelWrapper(str(stages["qonnx"]))
        for t in (InferMissingGemmBias(), GemmToMatMul(), FoldTransposeIntoQuantInit(), InferDataTypes()):  # as ConvertQONNXtoFINN
            model = model.transform(t)
        weights = sum(1 for n in model.graph.node if n.op_type in ("Quant", "BipolarQuant") and model.get_initializer(n.input[0]) is not None)
        assert weights >= 3 and count_applies(FoldQuantWeights, model, InferShapes) >= weights, name
        assert count_applies(FoldQuantWeights, model, SortGraph) > weights, name
        calls, real = [], numpy_helper.to_array
        numpy_helper.to_array = lambda t, *a, **k: calls.append(t.name) or real(t, *a, **k)
        try:
            random.seed(0)
            theirs = model.transform(FoldQuantWeights())
            qonnx_calls = len(calls)
            calls.clear()
            inferred.clear()
            sorts.clear()
            random.seed(0)
            with linear_qonnx():
                ours = model.transform(FoldQuantWeights())
        finally:
            numpy_helper.to_array = real
        assert ours.model.SerializeToString() == theirs.model.SerializeToString(), name
        assert qonnx_calls >= weights * len(model.graph.initializer) and len(calls) < qonnx_calls / 4, name
        assert len(inferred) == 1 and len(sorts) <= 2, (name, len(inferred), len(sorts))


def test_fold_quant_weights_keeps_finns_order_where_a_fork_feeds_two_folded_layers(monkeypatch):
    """FINN sorts the graph after each fold; one sort after the last fold orders two layers that read one
    tensor the other way round (their scale Muls swap places). The replacement follows FINN's order."""
    from flow.compat import qonnx_linear

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    q = dict(domain="qonnx.custom_op.general", rounding_mode="ROUND", narrow=0, signed=1)
    nodes = [helper.make_node("Quant", [f"w{i}", f"s{i}", "z", "b"], [f"wq{i}"], **q) for i in range(2)]
    nodes += [helper.make_node("Relu", ["x"], ["r"])]
    nodes += [helper.make_node("Conv", ["r", f"wq{i}"], [f"c{i}"], kernel_shape=[1, 1]) for i in range(2)]
    nodes += [helper.make_node("Relu", ["c0"], ["r0"]), helper.make_node("Add", ["r0", "c1"], ["y"])]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-2, 2, (2, 2, 1, 1)).astype(np.float32) * 0.5, f"w{i}") for i in range(2)]
    inits += [numpy_helper.from_array(np.full((2, 1, 1, 1), 0.5, np.float32), f"s{i}") for i in range(2)]
    inits += [numpy_helper.from_array(np.float32(v), n) for v, n in ((0, "z"), (2, "b"))]
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "fork", [inp], [out], initializer=inits)))
    model = model.transform(InferShapes()).transform(InferDataTypes())

    def fold(**patched) -> ModelWrapper:
        random.seed(0)
        with monkeypatch.context() as m, linear_qonnx():
            for attr, fn in patched.items():
                m.setattr(qonnx_linear, attr, fn)
            return model.transform(FoldQuantWeights())

    random.seed(0)
    theirs = model.transform(FoldQuantWeights())
    scaled = [n.input[0] for n in theirs.graph.node if n.op_type == "Mul"]
    assert len(scaled) == 2
    assert fold().model.SerializeToString() == theirs.model.SerializeToString()
    sorted_once = fold(_finn_order_after_fold=lambda before, order, g: list(g.node))
    assert [n.input[0] for n in sorted_once.graph.node if n.op_type == "Mul"] == scaled[::-1]



@pytest.mark.parametrize("cls", FINN_PASSES, ids=[p.__name__ for p in FINN_PASSES])
def test_the_one_sweep_finn_pass_gives_finns_graph_at_every_stage(checkpoints, cls):
    """FINN's pass and the one-sweep replacement give the same nodes, initializers, value infos and
    annotations (the replacement updates entries where they are, FINN re-appends them; independent
    nodes may come out in another topological order)."""
    for name, stages in checkpoints.items():
        for stage, path in stages.items():
            model = ModelWrapper(str(path))
            if cls is MoveScalesPastIm2Col:  # give it scales in front of the Im2Col ops to move
                model = model.transform(ScaleBeforeIm2Col())
            with linear_qonnx():
                ours = model.transform(cls())
            theirs = model.transform(cls())
            assert as_sets(ours) == as_sets(theirs), (name, stage)


class ScaleBeforeIm2Col(Transformation):
    """Put a Mul by a scalar in front of every Im2Col (a scale streamlining left there)."""

    def apply(self, model):
        for k, n in enumerate(list(model.graph.node)):
            if n.op_type == "Im2Col":
                x, c, y = n.input[0], f"scale_{k}", f"scaled_{k}"
                model.set_initializer(c, np.array(0.5 + k, dtype=np.float32))
                model.graph.node.insert(list(model.graph.node).index(n), helper.make_node("Mul", [x, c], [y]))
                n.input[0] = y
        return model.transform(InferShapes()), False


def count_applies(cls, model: ModelWrapper, counted=None) -> int:
    """How many times ``counted`` (default: ``cls``) applies while ``model.transform(cls())`` runs."""
    counted = counted or cls
    calls, real = [], counted.apply
    counted.apply = lambda self, m: calls.append(1) or real(self, m)
    try:
        model.transform(cls())
    finally:
        counted.apply = real
    return len(calls)


def test_finns_passes_restart_after_every_layer_and_the_replacements_sweep_once(checkpoints):
    """Why the one-sweep FINN passes exist: FINN's apply once per changed layer (and re-infers every
    datatype per narrowed layer); the replacements need two applies (the second finds nothing)."""
    stages = checkpoints["mobilenet_slice"]
    hw = ModelWrapper(str(stages["convert_to_hw"]))
    layers = sum(1 for n in hw.graph.node if n.op_type in ("MVAU", "VVAU"))
    assert count_applies(MinimizeAccumulatorWidth, hw, InferDataTypes) >= layers
    scaled = ModelWrapper(str(stages["streamline"])).transform(ScaleBeforeIm2Col())
    im2cols = sum(1 for n in scaled.graph.node if n.op_type == "Im2Col")
    assert count_applies(MoveScalesPastIm2Col, scaled) == im2cols + 1
    with linear_qonnx():
        assert count_applies(MoveScalesPastIm2Col, scaled) == 2
        assert count_applies(MinimizeAccumulatorWidth, hw, InferDataTypes) <= 2
    joined = ModelWrapper(str(checkpoints["res_stacked"]["streamline"]))
    adds = sum(1 for n in joined.graph.node if n.op_type == "Add")
    assert adds >= 2 and count_applies(InferElementwiseBinaryOperation, joined, InferShapes) >= adds
    with linear_qonnx():
        assert count_applies(InferElementwiseBinaryOperation, joined, InferShapes) <= 2


def test_int_allowed_answers_scalars_as_qonnx_does_and_finn_calls_it_per_threshold(checkpoints):
    values = [0, 1, -1, 2.5, 3.0, np.float32(7), -8.0, -9.0, float("nan"), float("inf"), 1e30, np.int64(3), 255.0001]
    for dt in ("INT4", "UINT8", "INT2", "INT32"):
        for v in values:
            expected = IntType.allowed(DataType[dt], v)
            assert type(int_allowed(DataType[dt], v)) is type(expected) and int_allowed(DataType[dt], v) == expected
    calls = []
    real = IntType.allowed
    IntType.allowed = lambda self, value: calls.append(value) or real(self, value)
    try:
        model = ModelWrapper(str(checkpoints["mobilenet_slice"]["specialize_layers"]))
        thresholds = [n for n in model.graph.node if n.op_type.startswith("Thresholding")]
        getCustomOp(thresholds[0]).minimize_weight_bit_width(model)
    finally:
        IntType.allowed = real
    assert len(calls) > model.get_initializer(thresholds[0].input[1]).size  # one Python call per threshold value


def raw_export(tmp_path) -> ModelWrapper:
    """A Brevitas export before any cleanup: flatten as Shape/Gather/Unsqueeze/Concat constants, Identity ops."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(1, 4, 3, weight_bit_width=4)
            self.fc = qnn.QuantLinear(4 * 6 * 6, 10, bias=True, weight_bit_width=4)

        def forward(self, x):
            y = self.conv(self.q(x))
            return self.fc(y.reshape(y.shape[0], -1))

    torch.manual_seed(0)
    path = tmp_path / "raw.onnx"
    brevitas_export(Net().eval(), torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    return ModelWrapper(str(path))


def test_constant_folding_and_cleanup_of_a_raw_export_match_qonnx(tmp_path):
    model = raw_export(tmp_path).transform(InferShapes()).transform(GiveUniqueNodeNames())
    assert any(n.op_type in ("Shape", "Constant", "Gather", "Concat") for n in model.graph.node) or len(model.graph.initializer)
    for cls in (FoldConstants, RemoveIdentityOps, GiveReadableTensorNames, InferDataTypes):
        assert run(model, cls(), linear=True) == run(model, cls(), linear=False), cls.__name__


def identity_chain(n: int, shaped: bool = True) -> ModelWrapper:
    """x -> Relu -> n x (Mul by 1, Identity alternating) -> MatMul(W) -> y, every tensor shaped."""
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Relu", ["x"], ["t0"], name="relu")]
    inits = [numpy_helper.from_array(np.ones((8, 4), np.float32), "W")]
    for i in range(n):
        if i % 2:
            nodes.append(helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=f"id{i}"))
        else:
            inits.append(numpy_helper.from_array(np.ones((1, 8), np.float32), f"one{i}"))
            nodes.append(helper.make_node("Mul", [f"t{i}", f"one{i}"], [f"t{i + 1}"], name=f"mul{i}"))
    nodes.append(helper.make_node("MatMul", [f"t{n}", "W"], ["y"], name="mm"))
    shapes = [vi(f"t{i}", TensorProto.FLOAT, [1, 8]) for i in range(n + 1)] if shaped else []
    g = helper.make_graph(nodes, "chain", [vi("x", TensorProto.FLOAT, [1, 8])], [vi("y", TensorProto.FLOAT, [1, 4])],
                          initializer=inits, value_info=shapes)
    return ModelWrapper(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def lines_run(fn) -> int:
    """Python lines executed by ``fn()`` (a deterministic count of the work it does)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def growth(cls, linear: bool, n: int = 60) -> float:
    """How much more work ``cls`` does on a chain twice as long."""

    def work(m):
        model = identity_chain(m)
        if linear:
            with linear_qonnx():
                return lines_run(lambda: model.transform(cls()))
        return lines_run(lambda: model.transform(cls()))

    return work(2 * n) / work(n)


@pytest.mark.parametrize("cls", [SortGraph, InferDataTypes, InferDataLayouts, GiveReadableTensorNames, RemoveIdentityOps, FoldConstants],
                         ids=lambda c: c.__name__)
def test_qonnx_pass_work_grows_quadratically_and_the_replacement_linearly(cls):
    """Why the replacements exist: each of these qonnx passes scans the graph per node (or per change)."""
    assert growth(cls, linear=False) > 3.0
    assert growth(cls, linear=True) < 2.5


def test_qonnx_infer_shapes_hands_every_weight_to_onnx_and_the_replacement_none():
    model = identity_chain(4)
    big = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    model.set_initializer("W", np.zeros((8, 4), np.float32))
    model.set_initializer("big", big)
    model.graph.node.append(helper.make_node("MatMul", ["y", "big4"], ["z"], name="mm2"))
    model.set_initializer("big4", big[:4])
    seen = []
    real = onnx.shape_inference.infer_shapes

    def spy(proto, *a, **k):
        seen.append(proto.ByteSize())
        return real(proto, *a, **k)

    onnx.shape_inference.infer_shapes = spy
    try:
        a = model.transform(InferShapes())
        with linear_qonnx():
            b = model.transform(InferShapes())
    finally:
        onnx.shape_inference.infer_shapes = real
    assert seen[0] > big.nbytes and seen[1] < big.nbytes // 50
    assert a.model.SerializeToString() == b.model.SerializeToString()


def test_linear_qonnx_swaps_the_passes_in_for_its_block_only_and_nests():
    originals = [owner.__dict__[attr] for owner, attr, _ in REPLACEMENTS]
    with linear_qonnx():
        with linear_qonnx():
            assert all(owner.__dict__[attr] is fn for owner, attr, fn in REPLACEMENTS)
        assert all(owner.__dict__[attr] is fn for owner, attr, fn in REPLACEMENTS)
    assert [owner.__dict__[attr] for owner, attr, _ in REPLACEMENTS] == originals


def count_copies(fn) -> int:
    """ModelWrapper deep copies made while ``fn()`` runs."""
    count = 0
    real = ModelWrapper.__deepcopy__ if "__deepcopy__" in ModelWrapper.__dict__ else None

    def deepcopy(self, memo):
        nonlocal count
        count += 1
        clone = ModelWrapper.__new__(ModelWrapper)
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    ModelWrapper.__deepcopy__ = deepcopy
    try:
        fn()
    finally:
        if real is None:
            del ModelWrapper.__deepcopy__
        else:
            ModelWrapper.__deepcopy__ = real
    return count


def test_finn_streamlining_copies_the_model_for_every_transform_and_in_place_gives_the_same_graph(checkpoints, tmp_path):
    """Why transforms_in_place exists: FINN's step_streamline deep-copies the whole model, weights
    included, hundreds of times; rewriting in place gives the same streamlined graph."""
    finn_compat.ensure_finn_settings(tmp_path / "finn_build")
    steps = finn_compat.build_steps()
    cfg = build_config(target="pynq-z1", target_fps=10_000, verify_samples=0)
    fcfg = finn_config(BuildContext(cfg=cfg, target=load_target("pynq-z1"), out_dir=tmp_path))
    for name, stages in checkpoints.items():
        model = ModelWrapper(str(stages["qonnx_to_finn"]))
        outs, copies = [], []
        for in_place in (False, True):
            random.seed(0)
            with linear_qonnx():
                if in_place:
                    with transforms_in_place():
                        copies.append(count_copies(lambda: outs.append(steps.step_streamline(copy.deepcopy(model), fcfg))))
                else:
                    copies.append(count_copies(lambda: outs.append(steps.step_streamline(copy.deepcopy(model), fcfg))))
        assert copies[0] > 100 and copies[1] <= 1, (name, copies)
        assert outs[0].model.SerializeToString() == outs[1].model.SerializeToString(), name


def test_sort_graph_refuses_a_cycle_as_qonnx_does():
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "c"], ["b"]),
             helper.make_node("Relu", ["b"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [1])])))
    for linear in (False, True):
        with pytest.raises(CircularDependencyError):
            run(model, SortGraph(), linear)


def test_duplicate_streams_gives_finns_graph_without_a_scan_per_tensor(checkpoints, tmp_path):
    """Why: FINN's InferDuplicateStreamsLayer scans the whole graph for the readers of every output of every
    node. The replacement gives FINN's graph byte for byte (random clone names seeded alike) on residual
    blocks (a fork per block), on a graph whose input and output both fork, and without a fork."""
    from finn.transformation.fpgadataflow.convert_to_hw.duplicate_streams import InferDuplicateStreamsLayer

    models = {f"{name}_{stage}": ModelWrapper(str(stages[stage])) for name, stages in checkpoints.items() for stage in ("streamline", "convert_to_hw")}
    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    outs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, [1, 4]) for t in ("r", "s")]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Abs", ["x"], ["a"]),
             helper.make_node("Add", ["r", "a"], ["s"]), helper.make_node("Mul", ["x", "x"], ["m"]), helper.make_node("Add", ["m", "r"], ["z"])]
    both = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "forks", [inp], outs)))
    for t in ("x", "r"):
        both.set_tensor_datatype(t, DataType["INT4"])
    models["input_and_output_fork"] = both.transform(InferShapes())
    forked = 0
    for name, model in models.items():
        scans = {"n": 0}
        real = ModelWrapper.find_consumers
        random.seed(0)
        theirs = model.transform(InferDuplicateStreamsLayer())
        random.seed(0)
        with linear_qonnx():
            counted = ModelWrapper.find_consumers
            ModelWrapper.find_consumers = lambda self, t: scans.__setitem__("n", scans["n"] + 1) or counted(self, t)
            try:
                ours = model.transform(InferDuplicateStreamsLayer())
            finally:
                ModelWrapper.find_consumers = counted
        assert ModelWrapper.find_consumers is real
        assert ours.model.SerializeToString() == theirs.model.SerializeToString(), name
        assert scans["n"] == 0, name
        forked += any(n.op_type == "DuplicateStreams" for n in theirs.graph.node)
    assert forked >= 3
