"""Rounding ties between float stages: a sample whose stages differ only by values on a rounding boundary passes
(and is counted), shown by replaying those roundings; a real difference is never excused."""

import functools

import numpy as np
import pytest
from onnx import helper
from onnx_graphs import QONNX, graph

from flow.sim import rounding
from flow.sim.execute import execute_batched
from flow.sim.resume import Resumable
from flow.sim.rounding import KNIFE_EDGE, quantizers, replay_roundings
from flow.sim.verify import compare_float, run_float_stage, verify_stages

S = 0.5  # the first quantizer's scale: signed 4-bit, levels -8..7
W = np.array([[1.0, -2.0, 0.5], [0.25, 1.0, -1.0], [2.0, 0.0, 1.0], [-1.0, 1.5, 0.75]], np.float32)


def quant(x, y, scale):
    return helper.make_node("Quant", [x, scale, "zp", "bw"], [y], domain=QONNX, narrow=0, rounding_mode="ROUND", signed=1)


#: The initializers of one ``quant(x, y, "s")``: scale S, zero point 0, 4 bits.
QUANT_INITS = {"s": np.float32(S), "zp": np.float32(0), "bw": np.float32(4)}


def thresholds(shift=None) -> np.ndarray:
    """``quant``'s 15 rounding boundaries as thresholds; ``shift``: (index, amount) moves one (a wrong conversion)."""
    thr = ((np.arange(15) - 8 + 0.5) * S).astype(np.float32).reshape(1, 15)
    if shift is not None:
        thr[0, shift[0]] += shift[1]
    return thr


def nhwc_thresholds(inp: str, out: str) -> list:
    """``inp + e`` through thresholds ``t`` in NHWC between two Transposes (as streamlining leaves them), times ``s``."""
    return [
        helper.make_node("Add", [inp, "e"], ["xe"]),
        helper.make_node("Transpose", ["xe"], ["xt"], perm=[0, 2, 3, 1]),
        helper.make_node("MultiThreshold", ["xt", "t"], ["l"], domain=QONNX, out_dtype="INT4", out_bias=-8.0, data_layout="NHWC"),
        helper.make_node("Transpose", ["l"], ["lt"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["lt", "s"], [out]),
    ]


def assert_tie_replayed(ref, cur, x, flips: int) -> None:
    """``ref`` and ``cur`` differ on ``x``, and ``ref`` with ``flips`` roundings replayed computes ``cur``'s output."""
    want = execute_batched(cur, x)["y"]
    assert not np.array_equal(execute_batched(ref, x)["y"], want)
    rep = replay_roundings(ref, cur, x, x)
    assert rep is not None and rep.flips == flips
    np.testing.assert_array_equal(execute_batched(rep.model, x)["y"], want)
    np.testing.assert_array_equal(rep.run.value("y"), want)  # the replay's own run computes what its model does


def qonnx_like():
    """x -> Quant(0.5) -> MatMul -> Quant(0.25): the quantizers as QONNX has them (round half to even)."""
    nodes = [quant("x", "a", "s"), helper.make_node("MatMul", ["a", "W"], ["m"]), quant("m", "y", "s2")]
    inits = {"s": np.float32(S), "s2": np.float32(0.25), "zp": np.float32(0), "bw": np.float32(4), "W": W}
    return graph(nodes, {"x": (1, 4)}, {"y": (1, 3)}, inits)


def finn_like(eps=1e-6, shift=None):
    """The same as thresholds (FINN-ONNX), evaluated in another order: ``+ eps`` in front of them (as a float
    sum in another order lands a value a few ulps away), ``shift``: one threshold moved (a wrong conversion)."""
    nodes = [
        helper.make_node("Add", ["x", "e"], ["xe"]),
        helper.make_node("MultiThreshold", ["xe", "t"], ["l"], domain=QONNX, out_dtype="INT4", out_bias=-8.0),
        helper.make_node("Mul", ["l", "s"], ["a"]),
        helper.make_node("MatMul", ["a", "W"], ["m"]),
        quant("m", "y", "s2"),
    ]
    inits = {"e": np.float32(eps), "t": thresholds(shift), "s": np.float32(S), "s2": np.float32(0.25), "zp": np.float32(0), "bw": np.float32(4), "W": W}
    return graph(nodes, {"x": (1, 4)}, {"y": (1, 3)}, inits)


def samples():
    """Four inputs; sample 1 has a value exactly on a rounding boundary (2.5 steps), which the two graphs round apart."""
    x = np.array([[0.3, -1.1, 0.8, 1.6], [1.25, 0.4, -0.7, 0.2], [-2.2, 1.3, 0.1, -0.6], [0.9, -0.3, 2.1, -1.4]], np.float32)
    return x


def test_the_two_graphs_round_one_knife_edge_value_apart_and_the_outputs_differ():
    ref, cur = run_float_stage("qonnx", qonnx_like(), samples()), run_float_stage("finn_onnx", finn_like(), samples())
    check = compare_float(cur, ref)
    assert not check.passed and check.first_mismatch == 1


def test_replaying_the_rounding_makes_the_reference_compute_the_other_stage():
    x = samples()[1:2]
    rep = replay_roundings(qonnx_like(), finn_like(), x, x)
    assert rep is not None and rep.flips == 1 and rep.quantizers == ("Quant #0",)  # the first quantizer (unnamed here)
    np.testing.assert_array_equal(run_float_stage("r", rep.model, x).logits, run_float_stage("c", finn_like(), x).logits)
    np.testing.assert_array_equal(run_float_stage("r", rep.model, x, rep.run.value).logits, run_float_stage("r", rep.model, x).logits)


def test_a_sample_that_differs_only_by_a_rounding_tie_passes_and_is_counted():
    v = verify_stages(samples(), float_stages=[("qonnx", qonnx_like()), ("finn_onnx", finn_like())], integer_stages=[])
    check = v.stages[0]
    assert v.passed and check.rounding_ties == 1 and check.first_mismatch is None
    assert "replaying those roundings" in check.note


@pytest.mark.parametrize("shift", [0.15, -0.2], ids=["threshold_up", "threshold_down"])
def test_a_moved_threshold_is_not_excused_as_a_rounding_tie(shift):
    """A value 0.1 step from the moved threshold rounds differently: a real difference, far from any knife edge."""
    x = samples()
    x[2, 1] = np.float32((5 - 8 + 0.5) * S + np.sign(shift) * 0.05)  # between the old and the moved threshold 5
    cur = finn_like(eps=0.0, shift=(5, shift))
    assert replay_roundings(qonnx_like(), cur, x[2:3], x[2:3]) is None
    v = verify_stages(x, float_stages=[("qonnx", qonnx_like()), ("finn_onnx", cur)], integer_stages=[])
    assert not v.passed and v.stages[0].first_mismatch == 2 and v.stages[0].rounding_ties == 1  # sample 1 still ties


def test_the_margin_is_the_distance_to_the_nearest_rounding_boundary_in_steps():
    q, t = quantizers(qonnx_like())[0], quantizers(finn_like())[0]
    x = np.array([[1.25, 1.0, 1.2, -3.75]], np.float32)
    np.testing.assert_allclose(q.margin(x), [[0.0, 0.5, 0.1, 0.0]], atol=1e-6)
    np.testing.assert_allclose(t.margin(x), [[0.0, 0.5, 0.1, 0.0]], atol=1e-6)
    assert (q.margin(x + 1e-6) <= KNIFE_EDGE)[0, 0]


def test_the_input_for_a_level_quantizes_to_it():
    q, t = quantizers(qonnx_like())[0], quantizers(finn_like(eps=0.0))[0]
    x = np.zeros((1, 4), np.float32)
    levels = np.array([[-8.0, -1.0, 0.0, 7.0]])
    counts = levels + 8  # the threshold graph's levels count from 0
    for quantizer, want in ((q, levels), (t, counts)):
        got = execute_batched(quantizer.model, quantizer.input_for(x, want).astype(np.float32), outputs=[quantizer.out])[quantizer.out]
        np.testing.assert_array_equal(quantizer.levels(got), want)


def _nchw_quant():
    """x (1, 2, 2, 2) -> Quant(0.5) -> y: channels, height and width of one size."""
    return graph([quant("x", "y", "s")], {"x": (1, 2, 2, 2)}, {"y": (1, 2, 2, 2)}, QUANT_INITS)


def _nhwc_thresholds(eps):
    """The same quantizer as NHWC thresholds between two Transposes (as streamlining leaves them), ``+ eps`` in front."""
    return graph(nhwc_thresholds("x", "y"), {"x": (1, 2, 2, 2)}, {"y": (1, 2, 2, 2)},
                 {"e": np.float32(eps), "t": thresholds(), "s": np.float32(S)})


def test_quantizers_are_paired_by_their_layouts_when_nhwc_and_nchw_shapes_coincide():
    ref, cur = _nchw_quant(), _nhwc_thresholds(1e-6)
    x = np.array([0.3, -1.1, 0.8, 1.6, 1.25, 0.4, -0.7, 2.9], np.float32).reshape(1, 2, 2, 2)  # 1.25: 2.5 steps, a tie
    assert_tie_replayed(ref, cur, x, flips=1)


def _quant_after_shuffle():
    """x (1, 4, 2, 2) -> DepthToSpace(2) -> Quant(0.5) -> y (1, 1, 4, 4): a sub-pixel network's last layers."""
    nodes = [helper.make_node("DepthToSpace", ["x"], ["d"], blocksize=2, mode="DCR"), quant("d", "y", "s")]
    return graph(nodes, {"x": (1, 4, 2, 2)}, {"y": (1, 1, 4, 4)}, QUANT_INITS)


def _thresholds_before_shuffle(eps, shift=None):
    """The same with the quantizer moved in front of the shuffle as NHWC thresholds (as streamlining leaves it)."""
    nodes = [*nhwc_thresholds("x", "m"), helper.make_node("DepthToSpace", ["m"], ["y"], blocksize=2, mode="DCR")]
    return graph(nodes, {"x": (1, 4, 2, 2)}, {"y": (1, 1, 4, 4)}, {"e": np.float32(eps), "t": thresholds(shift), "s": np.float32(S)})


def _shuffle_input():
    x = np.linspace(-3.3, 3.1, 16).astype(np.float32).reshape(1, 4, 2, 2)
    x[0, 2, 1, 0] = 1.25  # 2.5 steps: a tie the two graphs round apart
    return x


def test_a_quantizer_moved_past_a_pixel_shuffle_is_paired_through_it_and_its_tie_replayed():
    assert_tie_replayed(_quant_after_shuffle(), _thresholds_before_shuffle(1e-6), _shuffle_input(), flips=1)


def test_a_moved_threshold_behind_a_pixel_shuffle_is_not_excused():
    x = _shuffle_input()
    x[0, 1, 0, 1] = np.float32((5 - 8 + 0.5) * S + 0.05)  # between the old and the moved threshold 5
    cur = _thresholds_before_shuffle(0.0, shift=(5, 0.15))
    assert replay_roundings(_quant_after_shuffle(), cur, x, x) is None


def _wide(eps):
    """x (1, 256) -> Quant(0.5) -> y, and the same as thresholds with ``+ eps`` in front: 256 values per quantizer."""
    ref = graph([quant("x", "y", "s")], {"x": (1, 256)}, {"y": (1, 256)}, QUANT_INITS)
    nodes = [
        helper.make_node("Add", ["x", "e"], ["xe"]),
        helper.make_node("MultiThreshold", ["xe", "t"], ["l"], domain=QONNX, out_dtype="INT4", out_bias=-8.0),
        helper.make_node("Mul", ["l", "s"], ["y"]),
    ]
    return ref, graph(nodes, {"x": (1, 256)}, {"y": (1, 256)}, {"e": np.float32(eps), "t": thresholds(), "s": np.float32(S)})


def _wide_input(*ties):
    x = np.linspace(-3.1, 3.3, 256).astype(np.float32).reshape(1, 256)
    for at, v in ties:
        x[0, at] = v
    return x


def test_one_knife_edge_value_at_several_positions_is_one_rounding_tie():
    ref, cur = _wide(1e-6)
    x = _wide_input((10, 1.25), (200, 1.25))  # the same value twice (a repeated pixel): one rounding decision
    assert_tie_replayed(ref, cur, x, flips=2)


def test_more_distinct_knife_edge_values_than_the_share_allows_are_not_excused():
    ref, cur = _wide(1e-6)
    x = _wide_input((10, 1.25), (200, 0.25))  # two values on boundaries of 256: beyond 1e-3 of them
    assert replay_roundings(ref, cur, x, x) is None


def test_a_replay_too_large_to_keep_whole_gives_the_same_answer(monkeypatch):
    """Over the memory budget the reference keeps only the quantizers' tensors and runs whole after each correction."""
    x = samples()[1:2]
    kept = replay_roundings(qonnx_like(), finn_like(), x, x)
    monkeypatch.setattr(rounding, "Resumable", functools.partial(Resumable, budget=0))
    rep = replay_roundings(qonnx_like(), finn_like(), x, x)
    assert kept.run.kept_all and not rep.run.kept_all
    assert (rep.flips, rep.quantizers) == (kept.flips, kept.quantizers) == (1, ("Quant #0",))
    np.testing.assert_array_equal(rep.run.value("y"), kept.run.value("y"))
    np.testing.assert_array_equal(run_float_stage("r", rep.model, x, rep.run.value).logits, run_float_stage("c", finn_like(), x).logits)
