"""The Python verifier: every stage a build produced, run on the same inputs and compared.

Float stages within a tolerance, the first integer stage against the float scores rescaled
per class, later integer stages bit for bit, labels up to argmax ties (:mod:`flow.sim.verify`).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compile.steps import assemble_design
from flow.core.pipeline import BuildContext, BuildState
from flow.core.stages import FLOAT_STAGES, INTEGER_STAGES, Stage
from flow.sim.verify import StageOutputs, Verification, verify_stages
from flow.verifiers.registry import Verifier, VerifierResult


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
            float_stages=[(s.value, functools.partial(model_of, s)) for s in FLOAT_STAGES if s in stages],
            integer_stages=[(s.value, functools.partial(model_of, s)) for s in INTEGER_STAGES if s in stages],
            reference=reference,
        )


class PythonVerifier(Verifier):
    """Every stage executed in Python on the same inputs and compared (bit for bit where integer)."""

    name = "verify"
    options = ("verify_samples",)

    def enabled(self, ctx: BuildContext) -> bool:
        return ctx.cfg.verify_samples > 0 or ctx.inputs_given

    def samples(self, ctx: BuildContext) -> int:
        return ctx.cfg.verify_samples

    def run(self, state: BuildState, ctx: BuildContext) -> VerifierResult:
        assert state.model is not None and state.inputs is not None
        v = verify_design(state.stages, state.model, state.inputs, reference=state.reference)
        return VerifierResult(checks=v.stages)
