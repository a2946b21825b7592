"""A PyTorch reference that can run again: a sample on which the graph differs from it only by rounding ties passes
(and is counted), shown quantizer by quantizer with the network's own quantizer inputs; a real difference is never
excused. The "PyTorch" network here is numpy: the same layers as the graph, its float sums landing ``eps`` away."""

import numpy as np
import pytest
from onnx import helper
from test_rounding import QUANT_INITS, S, W, qonnx_like, quant, samples
from onnx_graphs import graph

from flow.core.checks import Recorded, StageOutputs
from flow.sim.forced import FedQuantizers
from flow.sim.verify import verify_stages


def _q(v: np.ndarray, scale: float) -> np.ndarray:
    """Brevitas' signed 4-bit quantizer (round half to even, as torch.round)."""
    return (np.clip(np.round(v / scale), -8, 7) * scale).astype(np.float32)


def torch_like(x, eps=1e-6, weights=W, head=0.0, calls=2) -> StageOutputs:
    """The network of ``qonnx_like`` in another float order: its first quantizer reads ``x + eps``; ``weights``: its
    matmul's (another than the graph's is a wrong export); ``head``: added to the outputs after the last quantizer; ``calls``: how
    many quantizer inputs a run reports."""

    def run(v):
        r0 = (v + np.float32(eps)).astype(np.float32)
        r1 = (_q(r0, S) @ weights).astype(np.float32)
        return [r0, r1][:calls], (_q(r1, 0.25) + np.float32(head)).astype(np.float32)

    outputs = run(x)[1]

    def record(indices):
        seen, out = run(x[indices])
        return Recorded(seen, out)

    return StageOutputs("pytorch", logits=outputs, labels=outputs.argmax(axis=1), record=record)


def _check(reference):
    v = verify_stages(samples(), float_stages=[("qonnx", qonnx_like())], integer_stages=[], reference=reference)
    return v.stages[0]


def test_outputs_alone_cannot_excuse_the_knife_edge_sample():
    ref = torch_like(samples())
    check = _check(StageOutputs("pytorch", logits=ref.logits, labels=ref.labels))
    assert not check.passed and check.first_mismatch == 1 and check.rounding_ties is None
    assert "torch_reference(network, inputs)" in check.note  # the way to show it


def test_a_sample_that_differs_only_by_a_rounding_tie_passes_and_is_counted():
    check = _check(torch_like(samples()))
    assert check.passed and check.rounding_ties == 1 and check.first_mismatch is None
    assert "torch_reference" not in check.note
    assert check.max_abs_err > 0.1  # the outputs did differ


def test_a_wrong_export_is_not_excused():
    wrong = W.copy()
    wrong[1, 2] += 0.25  # the graph's weight is another
    check = _check(torch_like(samples(), weights=wrong))
    assert not check.passed and check.rounding_ties == 0


@pytest.mark.parametrize("eps", [0.2, -0.3])
def test_a_value_rounded_apart_far_from_a_boundary_is_not_a_tie(eps):
    check = _check(torch_like(samples(), eps=eps))
    assert not check.passed and check.rounding_ties == 0


def test_outputs_that_differ_after_the_last_quantizer_are_not_excused():
    check = _check(torch_like(samples(), head=np.array([0.0, 0.05, 0.0], np.float32)))  # one class's bias
    assert not check.passed and check.rounding_ties == 0


def test_quantizer_calls_that_do_not_pair_prove_nothing():
    model = qonnx_like()
    ref = torch_like(samples(), calls=1)
    fed = FedQuantizers(model, "y")
    assert not fed.pairs(ref.record(np.array([1])))
    assert fed.pairs(torch_like(samples()).record(np.array([1])))
    assert _check(ref).rounding_ties == 0


def test_feeding_the_quantizers_leaves_the_graph_as_it_was():
    model = qonnx_like()
    before = model.model.SerializeToString()
    fed = FedQuantizers(model, "y")
    run = torch_like(samples()).record(np.array([0]))
    np.testing.assert_array_equal(fed.scores(samples()[:1], run), run.outputs)
    assert model.model.SerializeToString() == before
    assert [i.name for i in fed.fed.graph.input] == ["x", "qflow_fed_0", "qflow_fed_1"]


def test_every_reader_of_a_quantizers_input_reads_pytorchs_value():
    """x -> Relu -> r; r feeds the quantizer and an Add: both read the fed value, only the quantizer's copy reads r."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), quant("r", "a", "s"), helper.make_node("Add", ["r", "a"], ["y"])]
    fed = FedQuantizers(graph(nodes, {"x": (1, 4)}, {"y": (1, 4)}, QUANT_INITS), "y").fed
    assert sorted(n.op_type for n in fed.graph.node if "qflow_fed_0" in n.input) == ["Add", "Quant"]
    assert [n.name for n in fed.graph.node if "r" in n.input] == ["_own"]  # the copy of the (unnamed) quantizer
