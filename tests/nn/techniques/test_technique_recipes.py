"""The ``[technique]`` recipe section: validation before training, and combined recipes end to end."""

import json

import numpy as np
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from flow.core.errors import ConfigError
from flow.explore.recipe import load_recipe, recipe_from_dict
from flow.explore.run import run
from flow.nn.techniques import distill, lowrank, ptq, qat

BASE = {
    "model": {"name": "tfc", "weight_bits": 2, "act_bits": 2, "options": {"hidden": [32, 32]}},
    "data": {"dataset": "digits"},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.02},
    "build": {"target": "pynq-z1", "target_fps": 10000, "verify_samples": 50},
}


def recipe(technique=None, **overrides):
    data = {**BASE, **overrides}
    if technique is not None:
        data["technique"] = technique
    return recipe_from_dict(data, source="test.toml")


def test_default_technique_is_plain_qat():
    t = recipe().technique
    assert t.method == "qat" and t.modifiers == {}


@pytest.mark.parametrize("technique, match", [
    ({"method": "gptq"}, r"test.toml: technique: method: unknown technique method 'gptq'; registered methods: qat, ptq"),
    ({"lowrank": {"rank": 8, "energy": 0.9}}, r"technique: lowrank: give exactly one of rank and energy"),
    ({"lowrank": {}}, r"technique: lowrank: give exactly one of rank and energy"),
    ({"lowrank": {"rank": -4}}, r"technique: lowrank: rank: Input should be greater than or equal to 1 \(got -4\)"),
    ({"lowrank": {"energy": 1.2}}, r"technique: lowrank: energy: Input should be less than or equal to 1"),
    ({"lowrank": {"rank": 4, "mid_bits": 1}}, r"technique: lowrank: mid_bits"),
    ({"distill": {"alpha": 1.5}}, r"technique: distill: alpha: Input should be less than or equal to 1"),
    ({"distill": {"temperature": 0}}, r"technique: distill: temperature: Input should be greater than 0"),
    ({"distill": {"teacher": "huge"}}, r"technique: distill: teacher: Input should be 'float', 'wider' or 'cnn'"),
    ({"method": "ptq", "distill": {}}, r"technique: distill: needs method = 'qat', not 'ptq'"),
    ({"learned_round": True}, r"technique: learned_round: only applies to method = 'ptq'"),
    ({"method": "ptq", "calibration_samples": 0}, r"technique: calibration_samples: Input should be greater than 0"),
    ({"method": "ptq", "calibraton_samples": 10}, r"technique: unknown key 'calibraton_samples'; remove it or fix its spelling"),
])
def test_bad_technique_sections_raise_config_error_at_load(technique, match):
    with pytest.raises(ConfigError, match=match):
        recipe(technique)


def test_technique_section_loads_from_toml(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "kd-lowrank"\n[model]\nname = "tfc"\n[technique]\nmethod = "qat"\n'
        '[technique.distill]\nteacher = "wider"\ntemperature = 2.0\n[technique.lowrank]\nenergy = 0.9\nlayers = ["fc0"]\n'
    )
    t = load_recipe(path).technique
    kd, lr = t.modifier("distill"), t.modifier("lowrank")
    assert (kd.teacher, kd.temperature, kd.alpha) == ("wider", 2.0, 0.7)
    assert (lr.energy, lr.rank, lr.layers) == (0.9, None, ["fc0"])


@pytest.fixture
def no_training(monkeypatch):
    """Make every training entry point fail loudly: errors must come before any training."""

    def boom(*args, **kwargs):
        raise AssertionError("training started before the recipe was checked")

    for mod, name in [(qat, "train"), (lowrank, "pretrain_float"), (distill, "train_teacher"),
                      (ptq, "post_training_quantize")]:
        monkeypatch.setattr(mod, name, boom)


@pytest.mark.parametrize("technique, match", [
    ({"lowrank": {"rank": 40, "layers": ["fc1"], "pretrain_epochs": 1}}, r"lowrank: fc1: rank 40 is impossible; it must be between 1 and 32"),
    ({"lowrank": {"rank": 4, "layers": ["fc7"]}}, r"lowrank: unknown layer 'fc7'; valid layers: fc0, fc1, fc2"),
    ({"lowrank": {"rank": 4}, "distill": {"teacher": "wider"}}, None),
])
def test_model_dependent_errors_come_before_any_training(technique, match, no_training, tmp_path):
    r = recipe(technique)
    if match is None:  # a valid recipe reaches training (and the guard), proving the guard works
        with pytest.raises(AssertionError, match="training started"):
            run(r, tmp_path, progress=False, log=lambda _: None)
        return
    with pytest.raises(ConfigError, match=match):
        run(r, tmp_path, progress=False, log=lambda _: None)
    assert not (tmp_path / "model.pt").exists()


@pytest.fixture(scope="module")
def combined_run(tmp_path_factory):
    """Low-rank + distillation + mixed precision (8-bit fc0, ternary fc1) in one recipe, end to end."""
    r = recipe(
        {"distill": {"teacher": "float", "teacher_epochs": 2, "temperature": 3.0, "alpha": 0.5},
         "lowrank": {"rank": 8, "layers": ["fc0", "fc1"]}},
        name="combined",
        model={**BASE["model"], "weight_bits": 4, "act_bits": 4,
               "layers": {"fc0": {"weight_bits": 8}, "fc1": {"weight_bits": "ternary"}}},
    )
    out = tmp_path_factory.mktemp("combined")
    lines = []
    result = run(r, out, progress=False, log=lines.append)
    return result, out, lines


def test_combined_recipe_runs_end_to_end_and_verifies(combined_run):
    result, out, lines = combined_run
    assert result.report.verification.passed
    assert result.accuracy > 0.3 and result.train_seconds > 0 and result.quantize_seconds == 0.0
    assert any("teacher accuracy" in line for line in lines)
    assert any("low-rank factorization: fc0 rank 8, fc1 rank 8" in line for line in lines)
    mvaus = [layer for layer in result.report.layers if layer.op_type.startswith("MVAU")]
    assert len(mvaus) == 5  # fc0 and fc1 as two MVAUs each, fc2
    saved = json.loads((out / "recipe.json").read_text())["technique"]
    assert saved["lowrank"]["rank"] == 8 and saved["distill"]["alpha"] == 0.5


def test_combined_recipe_keeps_mixed_precision_and_ternary_takes_exactly_three_values(combined_run):
    _, out, _ = combined_run
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["layers.fc0.linear.first.weight"].shape == (8, 64)
    assert state["layers.fc1.linear.second.weight"].shape == (32, 8)
    design = ModelWrapper(str(out / "design.onnx"))
    mvaus = [n for n in design.graph.node if n.op_type.startswith("MVAU")]
    weights = [(design.get_tensor_datatype(n.input[1]).name, np.unique(design.get_initializer(n.input[1]))) for n in mvaus]
    assert [w[0] for w in weights[:2]] == ["INT8", "INT8"]  # fc0's two factors keep fc0's 8-bit weights
    for dtype, values in weights[2:4]:  # fc1's two factors are ternary
        assert dtype == "INT2" and values.tolist() == [-1, 0, 1]
    assert design.get_tensor_datatype(mvaus[0].output[0]).name == "INT4"  # signed 4-bit between the factors


def test_ptq_recipe_runs_end_to_end_and_reports_quantize_time(tmp_path):
    r = recipe({"method": "ptq", "float_epochs": 2, "calibration_samples": 200, "learned_round": True,
                "learned_round_iters": 10}, model={**BASE["model"], "weight_bits": 8, "act_bits": 8})
    lines = []
    result = run(r, tmp_path, progress=False, log=lines.append)
    assert result.report.verification.passed
    assert result.quantize_seconds > 0 and result.accuracy > 0.8
    assert any(line.startswith("float accuracy") for line in lines)
