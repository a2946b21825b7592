"""A kept forward pass, run again downstream of a corrected node input: the same values, bit for bit, as the
graph with an ``Add`` of the correction in front of that node, and only the nodes that read a changed value run."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import QONNX, graph
from qonnx.core.modelwrapper import ModelWrapper

from flow.sim import nodes as xn
from flow.sim.execute import execute_batched
from flow.sim.resume import Resumable

RNG = np.random.default_rng(7)


def forked():
    """x -> Relu -> h; h read by a Mul (node 1) and by an Add after it; a quantizer (node 3); a branch of x alone."""
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="relu"),
        helper.make_node("Mul", ["h", "w"], ["a"], name="mul"),
        helper.make_node("Add", ["h", "a"], ["b"], name="join"),
        helper.make_node("MultiThreshold", ["b", "t"], ["q"], domain=QONNX, out_dtype="UINT2", name="thr"),
        helper.make_node("Neg", ["x"], ["z"], name="side"),
        helper.make_node("Sigmoid", ["q"], ["s"], name="sig"),
        helper.make_node("Add", ["s", "z"], ["y"], name="out"),
    ]
    inits = {"w": RNG.normal(size=(1, 8)), "t": np.sort(RNG.normal(size=(1, 3)), axis=1)}
    return graph(nodes, {"x": (1, 8)}, {"y": (1, 8)}, inits)


def at(model: ModelWrapper, name: str) -> int:
    return [n.name for n in model.graph.node].index(name)


def in_order(model: ModelWrapper, *names: str) -> list[str]:
    """``names`` in the graph's order (qonnx's shape inference sorts the nodes)."""
    return [n.name for n in model.graph.node if n.name in names]


def with_add(model: ModelWrapper, added: dict[int, tuple[str, np.ndarray]]) -> ModelWrapper:
    """``model`` where node ``k`` reads ``tensor + addend`` through an ``Add`` in front of it, for each ``k``."""
    m = ModelWrapper(model.model.__deepcopy__())
    nodes = list(m.graph.node)
    for k, (tensor, addend) in added.items():
        n, fixed, c = nodes[k], f"{tensor}__fixed{k}", f"{tensor}__addend{k}"
        m.graph.initializer.append(numpy_helper.from_array(addend.astype(np.float32), c))
        m.graph.node.insert(list(m.graph.node).index(n), helper.make_node("Add", [tensor, c], [fixed]))
        m.graph.value_info.append(helper.make_tensor_value_info(fixed, TensorProto.FLOAT, m.get_tensor_shape(tensor)))
        n.input[list(n.input).index(tensor)] = fixed
    return m


@pytest.fixture
def ran(monkeypatch):
    """The names of the nodes run since the list was last cleared."""
    names: list[str] = []
    run = xn.Runner.run
    monkeypatch.setattr(xn.Runner, "run", lambda self, ctx, n: names.append(self.node.name) or run(self, ctx, n))
    return names


def test_a_rerun_computes_the_graph_with_the_correction_added_bit_for_bit(ran):
    model, x = forked(), RNG.normal(size=(1, 8)).astype(np.float32)
    run = Resumable(model, x)
    assert run.kept_all
    assert ran == [n.name for n in model.graph.node]
    h = run.value("h")
    plus = np.where(h > 0, RNG.normal(size=h.shape), 0).astype(np.float32)
    ran.clear()
    run.rerun(at(model, "mul"), "h", plus)
    assert ran == in_order(model, "mul", "join", "thr", "sig", "out")  # not relu, nor the branch of x alone
    want = execute_batched(with_add(model, {at(model, "mul"): ("h", plus)}), x, outputs=["h", "a", "b", "q"])
    for t in ("h", "a", "b", "q", "y"):
        np.testing.assert_array_equal(run.value(t), want[t])  # h itself unchanged: only the Mul read it corrected


def test_a_second_addend_for_one_node_replaces_the_first_and_later_ones_stay(ran):
    model, x = forked(), RNG.normal(size=(1, 8)).astype(np.float32)
    run = Resumable(model, x)
    assert run.kept_all
    b = run.value("b")
    late, first, second = (RNG.normal(scale=0.5, size=b.shape).astype(np.float32) for _ in range(3))
    mul, thr = at(model, "mul"), at(model, "thr")
    run.rerun(thr, "b", late)
    run.rerun(mul, "h", first)
    ran.clear()
    run.rerun(mul, "h", second)
    assert ran == in_order(model, "mul", "join", "thr", "sig", "out")
    want = execute_batched(with_add(model, {mul: ("h", second), thr: ("b", late)}), x, outputs=["q"])
    np.testing.assert_array_equal(run.value("q"), want["q"])
    np.testing.assert_array_equal(run.value("y"), want["y"])


def test_a_node_that_does_not_read_the_input_cannot_be_rerun():
    model = graph([helper.make_node("Relu", ["w"], ["c"], name="const"), helper.make_node("Add", ["x", "c"], ["y"], name="add")],
                  {"x": (1, 4)}, {"y": (1, 4)}, {"w": np.ones((1, 4))})
    run = Resumable(model, np.zeros((1, 4), np.float32))
    assert run.steps[at(model, "const")] is None and run.steps[at(model, "add")] == 0
    with pytest.raises(ValueError, match="does not depend on the inputs"):
        run.rerun(at(model, "const"), "w", np.ones((1, 4), np.float32))


def test_a_pass_over_the_budget_keeps_only_what_is_asked_and_runs_whole_again(ran):
    """A 224x224 network's whole pass would not fit: only ``keep`` and the outputs are kept, and a rerun runs
    every node, with the same values as the graph with the ``Add``."""
    model, x = forked(), RNG.normal(size=(1, 8)).astype(np.float32)
    run = Resumable(model, x, keep=["q"], budget=0)
    assert not run.kept_all
    with pytest.raises(KeyError, match="was not kept"):
        run.value("a")
    h = execute_batched(model, x, outputs=["h"])["h"]
    plus = np.where(h > 0, RNG.normal(size=h.shape), 0).astype(np.float32)
    ran.clear()
    run.rerun(at(model, "mul"), "h", plus)
    assert ran == [n.name for n in model.graph.node]
    want = execute_batched(with_add(model, {at(model, "mul"): ("h", plus)}), x, outputs=["q"])
    np.testing.assert_array_equal(run.value("q"), want["q"])
    np.testing.assert_array_equal(run.value("y"), want["y"])
