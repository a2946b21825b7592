import numpy as np
import pytest

from flow.core.errors import VerificationError
from flow.sim.verify import (
    StageOutputs,
    Verification,
    compare_float,
    compare_integer,
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
