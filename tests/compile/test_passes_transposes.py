"""PushTransposesDownstream: FINN's four Transpose moves in one sweep give the graph FINN's passes give
when repeated to a fixed point, on residual networks after FINN's streamlining, in one apply."""

from __future__ import annotations

import copy
import hashlib
from collections import Counter

import numpy as np
import pytest
import torch
from corpus import structures as S
from finn.transformation.streamline.absorb import AbsorbConsecutiveTransposes, AbsorbTransposeIntoMultiThreshold
from finn.transformation.streamline.reorder import MoveTransposePastFork
from onnx import helper, numpy_helper
from onnx_graphs import QONNX, graph, ints, same_outputs, thresholds
from qonnx.core.modelwrapper import ModelWrapper

import flow.compile.steps  # noqa: F401  (registers the compiler steps)
from flow.builder.registry import get_step
from flow.compat import finn as finn_compat
from flow.compat.finn_streamline import MoveEqualTransposesPastJoinAdd
from flow.compile.load import load_onnx
from flow.compile.normalize import normalize
from flow.compile.passes.transposes import PushTransposesDownstream
from flow.core.config import build_config
from flow.core.pipeline import BuildContext
from flow.nn.export import export_qonnx
from hw_targets import load_target

FINN_MOVES = [MoveTransposePastFork(), MoveEqualTransposesPastJoinAdd(), AbsorbConsecutiveTransposes(), AbsorbTransposeIntoMultiThreshold()]


def structure(model: ModelWrapper) -> Counter:
    """The graph up to tensor and node names: a multiset of node hashes, each over its op, attributes and inputs."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: (n, k) for n in g.node for k, o in enumerate(n.output)}
    memo: dict[str, str] = {}

    def tensor(name: str) -> str:
        if name in inits:
            a = numpy_helper.to_array(inits[name])
            return "c" + hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()
        if name not in producer:
            return "in:" + name
        n, k = producer[name]
        return f"{node(n)}:{k}"

    def node(n) -> str:
        key = n.output[0]
        if key not in memo:
            attrs = sorted((a.name, a.SerializeToString()) for a in n.attribute)
            memo[key] = hashlib.sha1(repr((n.op_type, n.domain, attrs, [tensor(i) for i in n.input])).encode()).hexdigest()
        return memo[key]

    return Counter(node(n) for n in g.node)


def finn_fixed_point(model: ModelWrapper) -> ModelWrapper:
    """FINN's four moves, the list repeated until it changes nothing."""
    while True:
        before = structure(model)
        for t in FINN_MOVES:
            model = model.transform(t)
        if structure(model) == before:
            return model


@pytest.fixture(scope="module")
def streamlined(tmp_path_factory):
    """Residual networks of 1 and 4 blocks (and one with projection convs) as qflow's structure streamlining
    hands them to PushTransposesDownstream the first time it has something to move (scales already
    moved past forks and joins, every Transpose of FINN's conv lowering still in place)."""
    tmp = tmp_path_factory.mktemp("transposes")
    found = {}
    for name, net in (("res1", S.ResNet(blocks=1)), ("res4", S.ResNet(blocks=4)), ("proj3", S.ResNet(blocks=3, proj=True))):
        torch.manual_seed(0)
        path = tmp / f"{name}.onnx"
        export_qonnx(net.eval(), path, S.DIGITS)
        ctx = BuildContext(cfg=build_config(target="pynq-z1", target_fps=10_000), target=load_target("pynq-z1"), out_dir=tmp / name)
        finn_compat.ensure_finn_settings(ctx.out_dir / "finn_build")
        seen = []
        real = PushTransposesDownstream.apply

        def spy(self, model, real=real, seen=seen):
            before = copy.deepcopy(model)
            model, changed = real(self, model)
            if changed and not seen:
                seen.append(before)
            return model, changed

        PushTransposesDownstream.apply = spy
        try:
            model = normalize(load_onnx(path))
            with finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
                for step in ("qonnx_to_finn", "set_input_datatype", "streamline"):
                    model = get_step(step)(model, ctx)
        finally:
            PushTransposesDownstream.apply = real
        found[name] = seen[0]
    return found


@pytest.mark.parametrize("name", ["res1", "res4", "proj3"])
def test_one_sweep_gives_the_graph_finns_moves_give_at_their_fixed_point(streamlined, name):
    model = streamlined[name]
    ours, theirs = model.transform(PushTransposesDownstream()), finn_fixed_point(model)
    assert structure(ours) == structure(theirs) != structure(model)
    x = {model.graph.input[0].name: ints("UINT8", model.get_tensor_shape(model.graph.input[0].name))}
    same_outputs(model, ours, x)


def test_every_transpose_travels_in_the_first_apply(streamlined):
    model = streamlined["res4"]
    applies = []
    push = PushTransposesDownstream()
    real = push.apply
    push.apply = lambda m: applies.append(1) or real(m)
    done = model.transform(push)
    assert sum(n.op_type == "Transpose" for n in done.graph.node) < sum(n.op_type == "Transpose" for n in model.graph.node)
    assert len(applies) == 2  # the second finds nothing left to move
    assert structure(done.transform(push)) == structure(done)


def test_a_forking_transpose_splits_and_each_copy_moves_on():
    """x -T-> (MultiThreshold, MultiThreshold): each branch gets its copy, which moves past its threshold."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("MultiThreshold", ["t", "th0"], ["y0"], domain=QONNX, out_dtype="UINT2"),
        helper.make_node("MultiThreshold", ["t", "th1"], ["y1"], domain=QONNX, out_dtype="UINT2"),
    ]
    m = graph(nodes, {"x": (1, 2, 2, 3)}, {"y0": (1, 3, 2, 2), "y1": (1, 3, 2, 2)},
              {"th0": thresholds(3, 3, -4, 4), "th1": thresholds(3, 3, -4, 4)}, {"x": "INT4"})
    after = m.transform(PushTransposesDownstream())
    ops = [n.op_type for n in after.graph.node]
    assert ops.count("Transpose") == 2 and all(after.find_producer(n.input[0]) is not None and
                                                after.find_producer(n.input[0]).op_type == "MultiThreshold"
                                                for n in after.graph.node if n.op_type == "Transpose")
    same_outputs(m, after, {"x": ints("INT4", (1, 2, 2, 3))})


def test_transposes_with_different_perms_stay_before_a_join():
    nodes = [
        helper.make_node("Transpose", ["a"], ["ta"], perm=[0, 3, 1, 2]),
        helper.make_node("Transpose", ["b"], ["tb"], perm=[0, 1, 3, 2]),
        helper.make_node("Add", ["ta", "tb"], ["y"]),
    ]
    m = graph(nodes, {"a": (1, 2, 2, 3), "b": (1, 3, 2, 2)}, {"y": (1, 3, 2, 2)})
    after = m.transform(PushTransposesDownstream())
    assert [n.op_type for n in after.graph.node] == ["Transpose", "Transpose", "Add"]
    feeds = {"a": np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3), "b": np.ones((1, 3, 2, 2), np.float32)}
    same_outputs(m, after, feeds)
