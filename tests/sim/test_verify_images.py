"""A model whose output is an image (or any output with spatial extent) has no labels: its stages are compared
on their outputs only, and its integer outputs are checked through the design's own output scale."""

import numpy as np
from onnx import helper
from onnx_graphs import graph, ints

from flow.sim.verify import (
    StageOutputs,
    class_scores,
    compare_integer_with_float,
    run_float_stage,
    run_integer_stage,
    verify_stages,
)


def test_class_scores_are_outputs_without_spatial_extent():
    assert class_scores((8, 10)) and class_scores((8, 10, 1, 1)) and class_scores((8, 10, 1))
    assert not class_scores((8, 3, 16, 16)) and not class_scores((8, 1, 64))


def image_head(scale=1 / 255):
    """Integer pixels (UINT8, NHWC stream) -> the NCHW Transpose -> the output scale."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]), helper.make_node("Mul", ["t", "s"], ["y"])]
    return graph(nodes, {"x": (1, 4, 4, 3)}, {"y": (1, 3, 4, 4)}, {"s": np.float32(scale)}, {"x": "UINT8"})


def test_an_image_stage_has_no_labels_and_its_checks_report_no_ties_or_label_matches():
    m = image_head()
    x = ints("UINT8", (5, 4, 4, 3))
    stage = run_float_stage("qonnx", m, x)
    assert stage.labels is None and stage.logits.shape == (5, 48)
    integer = run_integer_stage("streamlined_integer", m, x)
    assert integer.labels is None and integer.steps is not None
    np.testing.assert_allclose(integer.steps, 1 / 255, rtol=1e-6)
    ref = StageOutputs("pytorch", logits=stage.logits.reshape(5, 3, 4, 4), labels=stage.logits.reshape(5, 3, 4, 4).argmax(axis=1))
    v = verify_stages(x, float_stages=[("qonnx", m)], integer_stages=[("streamlined_integer", m)], reference=ref)
    assert v.passed
    assert all(s.label_match is None and s.ties is None for s in v.stages)


def test_one_pixel_off_by_one_level_fails_the_integer_check_at_its_sample():
    m = image_head()
    x = ints("UINT8", (6, 4, 4, 3))
    x[:, 0, 0, 0] = 100  # every sample's first pixel the same: a fitted map would learn nothing there
    floats = run_float_stage("streamlined", m, x)
    integer = run_integer_stage("streamlined_integer", m, x)
    assert compare_integer_with_float(integer, floats).passed
    wrong = StageOutputs("streamlined", logits=floats.logits.copy())
    wrong.logits[3, 0] += 1 / 255  # pixel (0, 0, 0) of sample 3 one level brighter
    check = compare_integer_with_float(integer, wrong)
    assert not check.passed and check.first_mismatch == 3 and 0.9 < check.max_abs_err < 1.1


def test_half_a_level_of_float_noise_is_still_the_same_image():
    m = image_head()
    x = ints("UINT8", (4, 4, 4, 3))
    floats = run_float_stage("streamlined", m, x)
    noisy = StageOutputs("streamlined", logits=floats.logits + np.float32(0.3 / 255))
    assert compare_integer_with_float(run_integer_stage("streamlined_integer", m, x), noisy).passed
