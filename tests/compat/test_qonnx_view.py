"""flow.compat.qonnx_view: FINN's passes that rewire by inserting and removing nodes run on a list view
with dictionary lookups, and give FINN's graph byte for byte."""

from __future__ import annotations

import copy
import gc
import random
import sys

import pytest
from corpus.samples import exported
from finn.transformation.streamline import absorb, reorder
from finn.transformation.streamline.collapse_repeated import CollapseRepeatedOp
from finn.transformation.streamline.reorder import MoveScalarMulPastMatMul
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.batchnorm_to_affine import BatchNormToAffine

from flow.builder import build
from flow.compat import finn_guards, qonnx_view
from flow.compat.qonnx_linear import linear_qonnx
from flow.compat.qonnx_view import ListView, on_list_view
from flow.core.config import build_config


def relu_chain(n: int) -> ModelWrapper:
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"n{i}") for i in range(n)]
    return ModelWrapper(helper.make_model(helper.make_graph(nodes, "g", [], [])))


def test_the_list_iterates_inserts_and_removes_as_protobufs_repeated_field():
    """A pass walks graph.node while inserting after the current node, removing it and removing an earlier
    one: protobuf's field visits and keeps the same nodes as the view's list."""
    def walk(nodes) -> list[str]:
        seen = []
        for k, n in enumerate(nodes):
            seen.append(n.name)
            if n.name in ("n1", "n4"):
                nodes.insert(k + 1, helper.make_node("Relu", ["a"], [f"new_{n.name}"], name=f"new_{n.name}"))
                nodes.remove(n)
            if n.name == "n3":
                nodes.remove(nodes[0])
        return seen

    model = relu_chain(7)
    view = ListView(ModelWrapper(model.model.SerializeToString()))
    assert walk(view.graph.node) == walk(model.graph.node)
    view.write_back()
    assert [n.name for n in view.model.graph.node] == [n.name for n in model.graph.node]


def test_lookups_follow_inserts_and_removals_in_graph_order():
    model = relu_chain(4)  # t0 -> n0 -> t1 -> n1 -> t2 -> n2 -> t3 -> n3 -> t4
    view = ListView(model)
    early = helper.make_node("Abs", ["t2"], ["x"], name="early")
    view.graph.node.insert(1, early)  # reads t2 ahead of its other reader n2
    assert [n.name for n in view.find_consumers("t2")] == ["early", "n2"]
    view.graph.node.insert(0, helper.make_node("Neg", ["t0"], ["t3"], name="second_producer"))
    assert view.find_producer("t3").name == "second_producer"
    view.graph.node.remove(view.find_producer("t3"))
    assert view.find_producer("t3").name == "n2" and view.is_fork_node(view.find_producer("t2")) is True
    made = helper.make_node("Relu", ["t4"], ["t5"], name="made")
    view.graph.node.append(made)
    assert view.graph.node[-1] is not made and view.find_producer("t5") == made  # protobuf stores a copy
    view.graph.node.remove(made)  # the first equal node goes: the copy
    assert view.find_producer("t5") is None
    view.graph.node.append(made)
    made.output[0] = "elsewhere"  # an edit after the insert does not reach the graph
    assert view.find_producer("t5").output[0] == "t5" and view.find_producer("elsewhere") is None
    with pytest.raises(NotImplementedError):
        view.graph.node.extend([early])


@pytest.fixture(scope="module")
def pass_inputs(tmp_path_factory):
    """Each pass of ON_LIST_VIEW and VIEW_ONLY that ran on the view in builds of TFC, a MobileNet slice and stacked residual
    blocks (where its pattern occurred), with the graphs qflow's streamlining handed it."""
    tmp = tmp_path_factory.mktemp("view")
    found = exported(tmp)
    seen: list[tuple[object, bytes]] = []

    class Recording(ListView):
        def __init__(self, model):
            the_pass = sys._getframe(1).f_locals["self"]  # on_list_view's run(self, model)
            seen.append((copy.deepcopy(the_pass), model.model.SerializeToString()))
            super().__init__(model)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(qonnx_view, "ListView", Recording)
        for name, (path, dtype) in found.items():
            build(path, build_config(target="pynq-z1", target_fps=10_000, verify_samples=0, input_dtype=dtype), tmp / f"{name}_out")
    return seen


PASSES = [
    MoveScalarMulPastMatMul, BatchNormToAffine, reorder.MoveScalarMulPastConv, reorder.MoveOpPastFork,
    reorder.MoveLinearPastEltwiseAdd, CollapseRepeatedOp, absorb.AbsorbMulIntoMultiThreshold, absorb.AbsorbAddIntoMultiThreshold,
    absorb.AbsorbTransposeIntoMultiThreshold, absorb.AbsorbConsecutiveTransposes, reorder.MoveScalarLinearPastInvariants,
]


@pytest.mark.parametrize("owner", PASSES, ids=[c.__name__ for c in PASSES])
def test_finns_pass_on_the_list_view_gives_finns_graph_without_a_scan(owner, pass_inputs, monkeypatch):
    """Why: each of these passes scans the graph (is_fork_node, is_join_node, find_consumer) for every
    candidate node. On the view (in-place rewiring included): FINN's graph, byte for byte, before and after
    qonnx's cleanup, no scan."""
    assert set(PASSES) == {*finn_guards.ON_LIST_VIEW, *finn_guards.VIEW_ONLY}  # every pass on the view is compared here
    original = finn_guards.ORIGINAL[owner]
    changed = finn_scans = 0
    cases = [(p, b) for p, b in pass_inputs if isinstance(p, owner)]
    assert cases, f"no build ran {owner.__name__} on the view"
    for i, (the_pass, graph) in enumerate(cases):
        for cleanup in (False, True):
            outs = []
            for apply in (original, on_list_view(original)):
                random.seed(0)
                scans = {"n": 0}
                with linear_qonnx(), monkeypatch.context() as m:
                    m.setattr(owner, "apply", apply)
                    for lookup in ("find_consumers", "find_producer"):
                        real = getattr(ModelWrapper, lookup)
                        m.setattr(ModelWrapper, lookup, lambda self, t, _f=real: scans.__setitem__("n", scans["n"] + 1) or _f(self, t))
                    out = ModelWrapper(graph).transform(copy.deepcopy(the_pass), cleanup=cleanup)
                outs.append((out.model.SerializeToString(), scans["n"]))
            assert outs[0][0] == outs[1][0], (i, cleanup)
            assert outs[1][1] == 0, i
            finn_scans += outs[0][1]
        with linear_qonnx():
            changed += original(copy.deepcopy(the_pass), ModelWrapper(graph))[1]
    assert changed >= 1 and finn_scans > 0  # FINN's own pass scans where the view looks up: still needed


def test_a_node_rewired_in_place_is_found_by_its_new_wiring():
    """FINN's passes edit ``node.input[k]`` / ``node.output[k]`` of nodes they hold: the next lookup sees it;
    a node taken out of the graph is no longer indexed, whatever is done to it."""
    view = ListView(relu_chain(4))  # t0 -> n0 -> t1 -> n1 -> t2 -> n2 -> t3 -> n3 -> t4
    n1, n3 = view.find_consumer("t1"), view.find_consumer("t3")
    n3.input[0] = "t1"  # n3 now reads t1 after n1 does
    assert [n.name for n in view.find_consumers("t1")] == ["n1", "n3"] and view.find_consumers("t3") == []
    n1.output[0] = "t9"
    assert view.find_producer("t9").name == "n1" and view.find_producer("t2") is None
    n1.input.extend(["t0"])
    assert [n.name for n in view.find_consumers("t0")] == ["n0", "n1"]
    view.graph.node.remove(n3)
    n3.input[0] = "t0"  # an edit after the removal does not reach the graph
    assert [n.name for n in view.find_consumers("t0")] == ["n0", "n1"] and view.find_consumers("t1") == [n1]
    view.find_producer("t1").CopyFrom(helper.make_node("Neg", ["t4"], ["t5"], name="m"))
    assert view.find_producer("t5").name == "m" and view.find_producer("t1") is None and view.find_consumer("t4").name == "m"
    view.write_back()
    assert [(n.name, list(n.input), list(n.output)) for n in view.model.graph.node] == [
        ("m", ["t4"], ["t5"]), ("n1", ["t1", "t0"], ["t9"]), ("n2", ["t2"], ["t3"])]


def test_a_released_view_leaves_no_reference_cycle():
    """Why: a node or view in a cycle keeps the model it wraps, every weight included, until Python's cycle
    collector runs; a 224x224 build replaces its model at every step and would hold several at once."""
    model = relu_chain(4)
    gc.collect()
    gc.disable()
    try:
        view = ListView(model)
        node = view.find_consumer("t1")
        node.input[0] = "t0"
        view.graph.node.remove(view.find_consumer("t2"))
        view.graph.node.insert(0, helper.make_node("Neg", ["t4"], ["t5"]))
        assert [n.name for n in view.find_consumers("t0")] == ["n0", "n1"]
        view.release()
        del view, node
        assert gc.collect() == 0
    finally:
        gc.enable()
