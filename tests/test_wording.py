"""Error messages say each thing once: no doubled word or phrase ("lut lut", "got 9 (got 9)") in the
one-line errors of recipes, board files and build options with a bad value in any field, nor in
the errors of every command's options."""

from __future__ import annotations

import copy
import json

import click
import pytest

from flow.cli import cli, main
from flow.core.config import build_config
from flow.core.errors import ConfigError
from flow.explore.recipe import default_recipe_path, load_recipe, recipe_from_dict
from hw_targets import load_target
from tests.wording import doubled

#: Bad values for any field: out of range, the wrong type, empty, absurd.
BAD = [-1, 0, 9, 10**12, 1.5, "x", "", True, [], {}, None]


def _leaves(d: dict, path: tuple = ()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, (*path, k))
        else:
            yield (*path, k)


def _with(d: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(d)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


RECIPE = load_recipe(None).model_dump(mode="json")
TECHNIQUES = [
    {"method": "ptq", "float_epochs": 1, "calibration_samples": 10, "bias_correction": True, "equalize": True,
     "learned_round": False, "learned_round_iters": 200},
    {"method": "qat", "distill": {"teacher": "float", "teacher_epochs": 1, "temperature": 4.0, "alpha": 0.7, "standardize": False}},
    {"method": "qat", "lowrank": {"rank": 16, "layers": ["fc0"], "mid_bits": 4, "pretrain_epochs": 0}},
]


def _recipes():
    yield RECIPE
    for t in TECHNIQUES:
        yield {**RECIPE, "technique": t}
    yield _with(RECIPE, ("model", "layers"), {"fc0": {"weight_bits": 4, "act_bits": 4}})


def _errors(make, data: dict, skip=()):
    seen = 0
    for path in _leaves(data):
        if path[0] in skip:
            continue
        for bad in BAD:
            try:
                make(_with(data, path, bad))
            except ConfigError as e:
                seen += 1
                yield path, bad, str(e)


def test_recipe_errors_in_any_field_say_each_thing_once():
    found = [(p, b, m) for r in _recipes() for p, b, m in _errors(recipe_from_dict, r)]
    assert len(found) > 100  # most bad values are refused
    assert [(p, b, m) for p, b, m in found if doubled(m)] == []
    assert any("bit width must be between 1 and 8, got 9" in m and "(got 9)" not in m for _, _, m in found)


def test_board_file_errors_in_any_field_say_each_thing_once(tmp_path):
    board = load_target("pynq-z1").model_dump(mode="json")

    def load(data):
        p = tmp_path / "board.toml"
        p.write_text(_toml(data))
        return load_target(p)

    found = list(_errors(load, board))
    assert len(found) > 30
    assert [(p, b, m) for p, b, m in found if doubled(m)] == []


def _toml(data: dict, prefix: str = "") -> str:
    """A TOML text of ``data`` (values None are left out, as TOML has no null)."""
    flat = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
    lines = [f"[{prefix}]"] if prefix else []
    lines += [f"{k} = {json.dumps(v)}" for k, v in flat.items()]
    text = "\n".join(lines) + "\n"
    for k, v in data.items():
        if isinstance(v, dict):
            text += _toml(v, f"{prefix}.{k}" if prefix else k)
    return text


def test_build_option_errors_say_each_thing_once():
    found = list(_errors(lambda d: build_config(**d), build_config().model_dump(mode="json")))
    assert len(found) > 30
    assert [(p, b, m) for p, b, m in found if doubled(m)] == []


def _bad_values(p: click.Option) -> list[str]:
    if isinstance(p.type, click.Choice):
        return ["bogus"]
    if isinstance(p.type, (click.types.IntParamType, click.types.FloatParamType)):
        return ["-1", "x", "1e400"]
    return []


def _option_cases():
    recipe = str(default_recipe_path())
    lead = {"build": ["build", "MODEL"], "search": ["search", recipe], "sensitivity": ["sensitivity", recipe], "fetch-data": ["fetch-data"]}
    for name, cmd in cli.commands.items():
        for p in cmd.params:
            if isinstance(p, click.Option) and name in lead:
                for v in _bad_values(p):
                    yield name, lead[name], p.opts[0], v
    yield "search", lead["search"], "--bits", "9"
    yield "search", lead["search"], "--widths", "a,b"
    yield "sensitivity", lead["sensitivity"], "--kinds", "biases"
    yield "fetch-data", lead["fetch-data"], "--dataset", "cifar-100"


@pytest.mark.parametrize("name,lead,opt,value", list(_option_cases()))
def test_every_commands_option_errors_say_each_thing_once(name, lead, opt, value, tiny_mlp_onnx, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QFLOW_DATA", str(tmp_path / "no-data"))  # nothing trains, whatever passes
    monkeypatch.chdir(tmp_path)
    argv = [str(tiny_mlp_onnx) if a == "MODEL" else a for a in lead] + [opt, value]
    argv += ["--samples", "0"] if name == "build" and opt != "--samples" else []
    argv += ["--out", str(tmp_path / "o")] if name != "fetch-data" else ["--dest", str(tmp_path / "d")]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err and err[-1].startswith("qflow: error: "), (argv, err)
    assert doubled(err[-1]) == [], err[-1]
