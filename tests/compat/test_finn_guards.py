"""FINN's streamlining passes, run only where their pattern occurs (flow.compat.finn_guards), give FINN's graph byte for
byte; FINN's own passes scan the graph per candidate node on runs that change nothing, which is why the guards exist."""

import contextlib
import random

import numpy as np
import pytest
import torch
from corpus import structures as S
from corpus.models import CNNMaxPool
from finn.transformation.streamline.absorb import AbsorbMulIntoMultiThreshold
from finn.transformation.streamline import Streamline
from finn.transformation.streamline.reorder import MoveMulPastMaxPool, MoveScalarMulPastMatMul
from onnx import helper
from onnx_graphs import graph
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import GiveReadableTensorNames

from flow.builder import build
from flow.compat import finn_guards
from flow.compat.finn_guards import GUARDS, ORIGINAL, STREAMLINE, Wiring
from flow.compat.qonnx_linear import linear_qonnx
from flow.compile import steps
from flow.core.config import build_config
from flow.core.pipeline import BuildContext
from flow.nn.export import export_qonnx
from hw_targets import load_target


@contextlib.contextmanager
def finns_own_passes():
    """Inside ``linear_qonnx``: FINN's own ``apply`` of every guarded (or viewed) pass and of ``Streamline``, for the duration of the block."""
    guarded = {cls: cls.__dict__["apply"] for cls in (*ORIGINAL, Streamline)}
    for cls, fn in (*ORIGINAL.items(), (Streamline, STREAMLINE)):
        setattr(cls, "apply", fn)
    try:
        yield
    finally:
        for cls, fn in guarded.items():
            setattr(cls, "apply", fn)


@contextlib.contextmanager
def counted_scans():
    """How many times qonnx's ``find_consumers`` and ``find_producer`` (each a scan of the graph) run in the block."""
    count = {"scans": 0}
    consumers, producer = ModelWrapper.find_consumers, ModelWrapper.find_producer

    def c(self, t):
        count["scans"] += 1
        return consumers(self, t)

    def p(self, t):
        count["scans"] += 1
        return producer(self, t)

    ModelWrapper.find_consumers, ModelWrapper.find_producer = c, p
    try:
        yield count
    finally:
        ModelWrapper.find_consumers, ModelWrapper.find_producer = consumers, producer


def _maxpool_cnn():
    torch.manual_seed(0)
    return "cnn_maxpool", CNNMaxPool().eval(), (1, 14, 14), "UINT8", ""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Models as streamlining gets them (after qonnx_to_finn and the input datatype): a MobileNet slice, residual
    blocks with a projection and stacked, the pre-processed ProxylessNAS slice, a CNN with MaxPool."""
    tmp = tmp_path_factory.mktemp("finn_guards")
    found = {}
    for fn in (S.mobilenet_slice, S.residual_projection, S.residual_stacked, S.preprocessed_padded, _maxpool_cnn):
        name, module, shape, dtype, _ = fn()
        path = tmp / f"{name}.onnx"
        export_qonnx(module, path, shape, dtype)
        cfg = build_config(target="pynq-z1", target_fps=10_000, verify_samples=0, input_dtype=dtype)
        result = build(path, cfg, tmp / name, to_step="set_input_datatype")
        found[name] = (result.checkpoints["set_input_datatype"], cfg, tmp / f"{name}_work")
    return found


def streamlined(path, cfg, work, guarded: bool) -> tuple[bytes, int, int]:
    """qflow's streamline step on the model at ``path`` (names seeded alike), the scans it made and the
    tidy-ups (``GiveReadableTensorNames``) it ran."""
    ctx = BuildContext(cfg, load_target(cfg.target), work)
    random.seed(0)
    tidy, named = [], GiveReadableTensorNames.apply
    with linear_qonnx(), counted_scans() as count:
        with contextlib.nullcontext() if guarded else finns_own_passes():
            GiveReadableTensorNames.apply = lambda self, m: tidy.append(1) or named(self, m)
            try:
                out = steps.step_streamline(ModelWrapper(str(path)), ctx)
            finally:
                GiveReadableTensorNames.apply = named
    return out.model.SerializeToString(), count["scans"], len(tidy)


def test_streamlining_with_the_guards_gives_finns_graph_with_fewer_scans_and_tidy_ups(converted):
    for name, (path, cfg, work) in converted.items():
        finn, finn_scans, finn_tidy = streamlined(path, cfg, work, guarded=False)
        ours, our_scans, our_tidy = streamlined(path, cfg, work, guarded=True)
        assert ours == finn, name
        assert our_scans < finn_scans, (name, our_scans, finn_scans)
        assert finn_tidy >= 44 and our_tidy < finn_tidy / 2, (name, our_tidy, finn_tidy)


def _mul_chain(n: int) -> ModelWrapper:
    """x -> Mul -> Relu -> Mul -> Relu ...: n Muls and nothing for MoveMulPastMaxPool or MoveScalarMulPastMatMul to do."""
    nodes, t = [], "x"
    for i in range(n):
        nodes += [helper.make_node("Mul", [t, f"c{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        t = f"r{i}"
    nodes.append(helper.make_node("Identity", [t], ["y"]))
    return graph(nodes, {"x": (1, 4)}, {"y": (1, 4)}, {f"c{i}": np.float32(1.5) for i in range(n)})


@pytest.mark.parametrize("cls", [MoveMulPastMaxPool, MoveScalarMulPastMatMul])
def test_finns_pass_scans_per_candidate_for_nothing_and_the_guard_not_at_all(cls):
    """Why the guards exist: on a graph without its pattern, FINN's pass still scans the graph for every Mul."""
    for n in (10, 20):
        model = _mul_chain(n)
        with linear_qonnx():
            random.seed(0)
            with finns_own_passes(), counted_scans() as finn:
                want = model.transform(cls()).model.SerializeToString()
            random.seed(0)
            with counted_scans() as ours:
                got = model.transform(cls()).model.SerializeToString()
        assert got == want
        assert finn["scans"] >= 3 * n and ours["scans"] == 0


def test_a_pass_whose_pattern_occurs_runs_as_finn_and_changes_the_graph():
    nodes = [helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("MatMul", ["m", "w"], ["y"])]
    model = graph(nodes, {"x": (1, 4)}, {"y": (1, 3)}, {"c": np.float32(2.0), "w": np.ones((4, 3), np.float32)})
    assert GUARDS[MoveScalarMulPastMatMul][0](MoveScalarMulPastMatMul(), Wiring(model))
    with linear_qonnx():
        out = model.transform(MoveScalarMulPastMatMul())
    assert [n.op_type for n in out.graph.node] == ["MatMul", "Mul"]


def test_finns_failure_on_a_mul_without_constant_is_kept():
    """AbsorbMulIntoMultiThreshold asserts on a Mul whose second input is no constant before it looks for a
    MultiThreshold (here a tensor nothing computes, so the Mul is neither a fork nor a join)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "s"], ["y"])]
    model = graph(nodes, {"x": (1, 4)}, {"y": (1, 4)}, shapes={"s": (1, 4)})
    with linear_qonnx(), pytest.raises(AssertionError, match="Initializer for mul weights"):
        model.transform(AbsorbMulIntoMultiThreshold())


def test_the_wiring_answers_forks_as_qonnx_does():
    nodes = [helper.make_node("Mul", ["x", "c"], ["m"]), helper.make_node("Relu", ["m"], ["a"]),
             helper.make_node("Add", ["m", "m"], ["b"]), helper.make_node("Add", ["a", "b"], ["y"])]
    model = graph(nodes, {"x": (1, 4)}, {"y": (1, 4)}, {"c": np.float32(2.0)})
    w = Wiring(model)
    for node in model.graph.node:
        assert w.forks(node) == model.is_fork_node(node), node.name
    assert w.feeds("Mul", "Add") and not w.feeds("Relu", "Mul")


def test_every_guarded_pass_is_one_linear_qonnx_swaps_in():
    with linear_qonnx():
        assert all(cls.__dict__["apply"] is not ORIGINAL[cls] for cls in ORIGINAL)
    assert all(cls.__dict__["apply"] is ORIGINAL[cls] for cls in ORIGINAL)
    assert len(finn_guards.REPLACEMENTS) == len(ORIGINAL) + 1 and Streamline.apply is STREAMLINE
