"""`qflow sensitivity`: per-layer accuracy drops, minimum precision, the map's files, and its use by the search."""

import json

import pytest

from flow.cli import main
from flow.core.errors import ConfigError
from flow.explore.recipe import recipe_from_dict
from flow.explore.search import read_floors
from flow.explore.sensitivity import against_reference, markdown, minimum_precision, sensitivity
from flow.explore.space import search_space

RECIPE = {"name": "sens", "model": {"name": "tfc", "options": {"hidden": [16]}}, "data": {"dataset": "digits"},
          "train": {"epochs": 2, "batch_size": 64, "lr": 0.02, "threads": 1}}


@pytest.mark.parametrize("drops, tol, expected", [
    ({"1": 5.0, "ternary": 2.0, "2": 0.5, "4": 0.1}, 1.0, 2),
    ({"1": 0.2, "ternary": 0.1, "2": 0.5, "4": 0.1}, 1.0, 1),
    ({"1": 0.2, "ternary": 3.0, "2": 0.5, "4": 0.1}, 1.0, 2),  # within tolerance at 1 bit, but not at ternary: not monotone
    ({"1": 9.0, "4": 2.0}, 1.0, None),
    ({"1": 0.9, "ternary": 0.9, "2": 9.0, "4": 0.0}, 1.0, 4),
])
def test_minimum_precision_is_the_lowest_within_tolerance_all_the_way_up(drops, tol, expected):
    assert minimum_precision(drops, tol) == expected


def test_a_map_is_measured_written_and_read_back(tmp_path):
    said: list[str] = []
    res = sensitivity(recipe_from_dict(RECIPE), tmp_path, bits=(1, 4), epochs=0, val_samples=200, progress=False, log=said.append)
    data = json.loads((tmp_path / "sensitivity.json").read_text())
    for layer, per in data["drops"].items():  # each point's line states its drop as a drop, a gain as a gain
        for kind, d in per.items():
            for k, drop in d.items():
                line = next(x for x in said if x.startswith(f"{layer} {kind} = {k}: "))
                word = "drop" if round(drop, 2) > 0 else "gain" if round(drop, 2) < 0 else "no change"
                assert word in line and f"{abs(drop):.2f} pt" in line or word == "no change", line
    assert set(data["drops"]) == {"fc0", "fc1"} and set(data["drops"]["fc0"]) == {"weight_bits", "act_bits"}
    assert set(data["drops"]["fc1"]) == {"weight_bits"}  # the output layer has no activation
    assert set(data["drops"]["fc0"]["weight_bits"]) == {"1", "4"}
    assert data["min_precision"] == res.min_precision and 0 < res.reference_accuracy <= 1
    assert (tmp_path / "sensitivity.png").stat().st_size > 5000 and "| fc0 | weight_bits |" in (tmp_path / "sensitivity.md").read_text()
    floors = read_floors(tmp_path / "sensitivity.json")
    space = search_space(recipe_from_dict(RECIPE), weight_bits=(1, "ternary", 2, 4), act_bits=(1, 2, 4), floors=floors)
    for layer, bits in floors.items():
        if bits.get("weight_bits") is not None:
            assert min(space.params[f"{layer}.weight_bits"], key=lambda b: 1.5 if b == "ternary" else b) in (bits["weight_bits"],)


def test_a_drop_reads_as_a_drop_and_a_gain_as_a_gain():
    assert against_reference(0.3) == "a drop of 0.30 pt" and against_reference(-0.3) == "a gain of 0.30 pt"
    md = markdown({"fc0": {"weight_bits": {"2": 0.3, "4": -0.12}}}, {"fc0": {"weight_bits": 2}}, 1.0)
    assert "| fc0 | weight_bits | 0.30 | -0.12 | 2 |" in md and "a negative drop is a gain" in md


def test_bad_options_are_one_line(tmp_path, capsys):
    r = tmp_path / "r.toml"
    r.write_text('name = "s"\n[model]\nname = "tfc"\n[data]\ndataset = "digits"\n')
    assert main(["sensitivity", str(r), "--out", str(tmp_path / "o"), "--kinds", "weights,bias"]) == 2
    assert "--kinds" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="reference-bits"):
        sensitivity(recipe_from_dict(RECIPE), tmp_path / "o2", reference_bits=9, progress=False)
