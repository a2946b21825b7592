import numpy as np
import pytest

from flow.core.errors import VerificationError
from flow.sim.verify import (
    StageOutputs,
    Verification,
    compare_float,
    compare_integer,
    compare_integer_with_float,
    raise_on_failure,
)


def _float(name, logits):
    return StageOutputs(name, logits=logits, labels=logits.argmax(axis=1))


def test_float_stages_allow_a_few_rounding_ties_and_report_them():
    ref = np.random.default_rng(0).normal(size=(1000, 10)).astype(np.float32)
    cur = ref.copy()
    cur[7, 3] += 0.5  # one sample shifted by a quantization step
    check = compare_float(_float("qonnx", cur), _float("pytorch", ref))
    assert check.passed and check.first_mismatch == 7
    assert "1 sample(s) beyond it" in check.note


def test_float_stage_differing_on_many_samples_fails():
    ref = np.random.default_rng(0).normal(size=(1000, 10)).astype(np.float32)
    cur = ref.copy()
    cur[5:100] *= 2
    check = compare_float(_float("finn_onnx", cur), _float("qonnx", ref))
    assert not check.passed and check.first_mismatch == 5


def test_integer_stages_must_match_bit_for_bit():
    ref = np.arange(40, dtype=np.float32).reshape(4, 10)
    cur = ref.copy()
    cur[2, 9] += 1
    a = StageOutputs("hw", int_logits=cur, labels=cur.argmax(axis=1))
    b = StageOutputs("streamlined_integer", int_logits=ref, labels=ref.argmax(axis=1))
    check = compare_integer(a, b)
    assert not check.passed and not check.bit_exact and check.first_mismatch == 2 and check.max_abs_err == 1
    assert compare_integer(b, b).bit_exact


def test_failure_names_stage_and_sample():
    ref = np.zeros((3, 2), dtype=np.float32)
    cur = ref.copy()
    cur[1, 0] = 5
    a = StageOutputs("hw", int_logits=cur)
    b = StageOutputs("streamlined_integer", int_logits=ref)
    with pytest.raises(VerificationError, match="stage 'hw' differs from 'streamlined_integer' at sample 1"):
        raise_on_failure(Verification(passed=False, stages=[compare_integer(a, b)]))


def test_nan_outputs_never_match():
    from flow.sim.verify import StageOutputs, compare_float, compare_integer

    nan = np.full((4, 3), np.nan, dtype=np.float32)
    a = StageOutputs("a", logits=nan, labels=np.zeros(4, dtype=np.int64))
    b = StageOutputs("b", logits=nan.copy(), labels=np.zeros(4, dtype=np.int64))
    check = compare_float(a, b)
    assert not check.passed and check.max_abs_err is None
    ai = StageOutputs("a", int_logits=nan, labels=np.zeros(4, dtype=np.int64))
    bi = StageOutputs("b", int_logits=nan.copy(), labels=np.zeros(4, dtype=np.int64))
    assert not compare_integer(ai, bi).passed


# --- labels, ties and rescaled integer outputs ----------------------------------------------


def _int(name, ints, labels=None, scores=None):
    return StageOutputs(name, int_logits=ints, scores=scores if scores is not None else ints, labels=labels)


def test_a_tie_in_the_reference_is_not_a_failure_and_is_counted():
    ref_scores = np.array([[3, 3, 0], [0, 1, 2], [5, 5, 5]], dtype=np.float32)
    ref = _int("streamlined_integer", ref_scores, labels=np.array([0, 2, 0]))
    cur = _int("hw", ref_scores, labels=np.array([1, 2, 2]))  # other tie-breaking, same scores
    check = compare_integer(cur, ref)
    assert check.passed and check.ties == 2 and check.label_match == pytest.approx(1 / 3)


def test_a_label_outside_the_maximal_classes_fails_even_among_ties():
    ref_scores = np.array([[3, 3, 0], [0, 1, 2], [4, 4, 1]], dtype=np.float32)
    ref = _int("streamlined_integer", ref_scores, labels=np.array([0, 2, 0]))
    cur = _int("hw", ref_scores, labels=np.array([1, 2, 2]))  # sample 2: class 2 is not maximal
    check = compare_integer(cur, ref)
    assert not check.passed and check.first_mismatch == 2 and check.ties == 2


def test_float_scores_within_a_hair_of_the_maximum_are_ties():
    ref = StageOutputs("streamlined", logits=np.array([[1.0, 1.0 + 1e-7, 0.0]], dtype=np.float32), labels=np.array([1]))
    cur = StageOutputs("finn_onnx", logits=ref.logits.copy(), labels=np.array([0]))
    check = compare_float(cur, ref)
    assert check.passed and check.ties == 1


def test_labels_only_reference_accepts_a_tie_on_the_stage_side():
    ref = StageOutputs("pytorch", labels=np.array([2, 0, 1]))
    cur = StageOutputs("qonnx", logits=np.array([[0, 1, 1], [4, 0, 0], [0, 0, 3]], dtype=np.float32), labels=np.array([1, 0, 2]))
    check = compare_float(cur, ref)
    assert not check.passed and check.first_mismatch == 2  # sample 0: a tie the reference broke the other way


def test_topk_scores_up_to_the_scale_absorbed_into_the_label_select():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 4)).astype(np.float32)
    ref = StageOutputs("finn_onnx", logits=scores, labels=scores.argmax(1))
    cur = StageOutputs("streamlined", logits=scores * 8 + 3, labels=scores.argmax(1))
    check = compare_float(cur, ref)
    assert check.passed and "absorbed into the label select" in check.note
    cur.logits[7, 1] += 1.0  # one wrong score is still caught
    assert compare_float(cur, ref).first_mismatch == 7


def test_integer_outputs_must_equal_the_float_scores_rescaled_per_class():
    rng = np.random.default_rng(0)
    ints = rng.integers(-20, 20, size=(50, 4)).astype(np.float32)
    scale, bias = np.array([0.5, 0.25, 2.0, 0.001], dtype=np.float32), np.array([0.1, -3.0, 0.0, 7.0], dtype=np.float32)
    floats = ints * scale + bias
    ref = StageOutputs("streamlined", logits=floats, labels=floats.argmax(1))
    assert compare_integer_with_float(_int("streamlined_integer", ints, floats.argmax(1), floats), ref).passed
    for c in range(4):  # one integer output off by one, in any class, whatever its scale
        wrong = ints.copy()
        wrong[13, c] += 1
        check = compare_integer_with_float(_int("streamlined_integer", wrong, floats.argmax(1), floats), ref)
        assert not check.passed and check.first_mismatch == 13, c


def test_an_off_by_one_is_caught_among_ties():
    """Integer scores of a binarized net tie often; a wrong integer output still fails its sample."""
    rng = np.random.default_rng(1)
    ints = rng.integers(-2, 3, size=(40, 10)).astype(np.float32) * 2  # many tied maxima
    floats = ints * 0.5
    labels = ints.argmax(1)
    ref = StageOutputs("streamlined", logits=floats, labels=labels)
    good = compare_integer_with_float(_int("streamlined_integer", ints, labels), ref)
    assert good.passed and good.ties > 10
    wrong = ints.copy()
    wrong[5, 3] += 1
    bad = compare_integer_with_float(_int("streamlined_integer", wrong, labels), ref)
    assert not bad.passed and bad.first_mismatch == 5
    hw = compare_integer(_int("hw", wrong, labels), _int("streamlined_integer", ints, labels))
    assert not hw.passed and hw.first_mismatch == 5 and hw.ties == good.ties


def test_a_failure_message_carries_the_note():
    ref = np.zeros((2, 2), dtype=np.float32)
    v = Verification(passed=False, stages=[compare_float(_float("qonnx", ref + 1), _float("pytorch", ref))])
    with pytest.raises(VerificationError, match="tolerance"):
        raise_on_failure(v)
