"""Verification of a build: every stage it produced, run on the same inputs and compared."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compile.steps import assemble_design
from flow.core.stages import FLOAT_STAGES, INTEGER_STAGES, Stage
from flow.sim.verify import StageOutputs, Verification, verify_stages


def verify_design(stages: dict[Stage, Path], design: ModelWrapper, x: np.ndarray, *, reference: StageOutputs | None = None) -> Verification:
    """Run ``x`` through each stage a build produced (the specialized design with its host graph)."""

    def model_of(stage: Stage) -> ModelWrapper:
        if stage is Stage.SPECIALIZED:
            return assemble_design(design, stages[stage])
        return ModelWrapper(str(stages[stage]))

    with warnings.catch_warnings():  # qonnx's datatype sanitizing warns; results are compared below
        warnings.simplefilter("ignore")
        return verify_stages(
            x,
            float_stages=[(s.value, model_of(s)) for s in FLOAT_STAGES if s in stages],
            integer_stages=[(s.value, model_of(s)) for s in INTEGER_STAGES if s in stages],
            reference=reference,
        )
