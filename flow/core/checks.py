"""What verification finds: each stage's outputs on a batch, each stage's check, and the verdict.

:mod:`flow.sim.verify` computes them; verifiers (:mod:`flow.verifiers`) return them; the
report shows them.

>>> v = Verification(passed=True, stages=[StageCheck("hw", "streamlined_integer", 4, True, bit_exact=True)])
>>> v.stages[0].bit_exact, StageOutputs("qonnx").label_scores is None
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StageCheck:
    """One stage compared with its reference on the same inputs."""

    name: str
    reference: str
    samples: int
    passed: bool
    max_abs_err: float | None = None
    label_match: float | None = None
    bit_exact: bool | None = None
    first_mismatch: int | None = None
    ties: int | None = None
    note: str | None = None
    layer: str | None = None  # the layer of the first mismatch, where the stage checks layer by layer (rtlsim)
    rounding_ties: int | None = None  # float stages: samples that differ only by values on a rounding boundary
    skipped: bool = False  # nothing was checked (rtlsim of a design with no RTL layer): nothing failed, nothing passed


@dataclass
class Verification:
    """Every stage's check; passed when all passed."""

    passed: bool
    stages: list[StageCheck] = field(default_factory=list)


@dataclass(frozen=True)
class Recorded:
    """A PyTorch run on some samples, with what each of its activation quantizers read.

    ``quantizer_inputs``: one array per quantizer call, in the order the network made them,
    samples first. ``outputs``: the run's outputs, samples first (class scores for a classifier).
    """

    quantizer_inputs: list[np.ndarray]
    outputs: np.ndarray


@dataclass
class StageOutputs:
    """What one stage computed on the batch.

    ``logits``: a float stage's class scores (the graph output, or the input of its label
    node). ``int_logits``: an integer stage's integer outputs. ``scores``: an integer stage's
    input of the label node (``int_logits`` unless a float tail runs on the host).
    ``labels``: top-1 class per sample, ``None`` when the stage is no classifier.
    ``record``: a reference that can run again (a PyTorch network in hand), the run on the
    given sample indices with its quantizers' inputs, for checking a differing sample
    quantizer by quantizer (:mod:`flow.sim.forced`).
    """

    name: str
    logits: np.ndarray | None = None
    int_logits: np.ndarray | None = None
    labels: np.ndarray | None = None
    fallback: list[str] | None = None
    scores: np.ndarray | None = None
    steps: np.ndarray | None = None  # without a label node: one integer step of each output, through the host tail
    record: Callable[[np.ndarray], Recorded] | None = None

    @property
    def label_scores(self) -> np.ndarray | None:
        """The values the labels are the argmax of."""
        if self.logits is not None:
            return self.logits
        return self.scores if self.scores is not None else self.int_logits
