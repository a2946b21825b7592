"""The technique registry: a new technique is one class, registered; recipes, runs, sweeps and searches use it."""

from typing import Any, ClassVar

import pytest
import torch
from pydantic import Field
from torch import nn

from flow.core.errors import ConfigError
from flow.explore.compare import technique_label
from flow.explore.recipe import recipe_from_dict
from flow.explore.run import run
from flow.explore.space import point_recipe, search_space
from flow.nn.techniques import registry
from flow.nn.techniques.base import Job, Options, TechniqueBase


class ShrinkOptions(Options):
    factor: float = Field(0.5, gt=0, le=1)


class Shrink(TechniqueBase):
    """An example modifier: scales every weight by ``factor`` before the method trains."""

    name: ClassVar[str] = "shrink"
    kind: ClassVar[str] = "modifier"
    options: ClassVar[type[Options]] = ShrinkOptions
    search_defaults: ClassVar[dict[str, Any]] = {"factor": 0.9}
    calls: ClassVar[list[str]] = []

    def label(self, opts: ShrinkOptions) -> str:
        return f"shrink({opts.factor})"

    def check(self, model: nn.Module, opts: ShrinkOptions, job: Job) -> None:
        Shrink.calls.append("check")

    def prepare(self, model: nn.Module, opts: ShrinkOptions, job: Job) -> None:
        Shrink.calls.append("prepare")
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(opts.factor)


@pytest.fixture
def shrink():
    Shrink.calls.clear()
    registry.register(Shrink())
    yield
    registry.unregister("shrink")


RECIPE = {"name": "shrunk", "model": {"name": "tfc", "weight_bits": 2, "act_bits": 2, "options": {"hidden": [16]}},
          "data": {"dataset": "digits"}, "train": {"epochs": 1, "batch_size": 64, "threads": 1},
          "build": {"target_fps": 10_000, "verify_samples": 20}}


def test_an_unregistered_technique_is_an_error():
    with pytest.raises(ConfigError, match="technique: shrink: unknown technique; registered: qat, ptq, distill, lowrank"):
        recipe_from_dict({**RECIPE, "technique": {"shrink": {"factor": 0.5}}})


def test_a_registered_technique_runs_from_a_recipe(shrink, tmp_path):
    r = recipe_from_dict({**RECIPE, "technique": {"shrink": {"factor": 0.5}}})
    assert r.technique.modifier("shrink").factor == 0.5 and technique_label(r) == "QAT + shrink(0.5)"
    with pytest.raises(ConfigError, match="shrink: factor: Input should be less than or equal to 1"):
        recipe_from_dict({**RECIPE, "technique": {"shrink": {"factor": 2}}})
    result = run(r, tmp_path, progress=False, log=lambda _: None)
    assert Shrink.calls == ["check", "prepare"]
    assert result.report.verification.passed
    assert r.model_dump(mode="json")["technique"] == {"method": "qat", "shrink": {"factor": 0.5}}


def test_a_registered_technique_is_searchable(shrink):
    base = recipe_from_dict(RECIPE)
    space = search_space(base, weight_bits=(2,), act_bits=(2,), techniques=("qat", "shrink"))
    bits = {k: 2 for k in space.params if k != "technique"}
    point = point_recipe(base, space.point({**bits, "technique": "shrink"}), target="pynq-z1")
    assert point.technique.modifier("shrink").factor == 0.9  # its search defaults


def test_the_registry_refuses_duplicates_and_non_techniques(shrink):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Shrink())
    with pytest.raises(TypeError):
        registry.register(object())
