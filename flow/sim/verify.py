"""Simulation-based verification: every stage of the flow computes what the network computes.

The same batch of inputs runs through each stage (PyTorch, QONNX, FINN-ONNX, streamlined,
HW layers, the specialized and folded design) with :func:`flow.sim.execute.execute_batched`.
Float stages must agree within a tolerance; from streamlining on the arithmetic is
integer, and the integer logits (the input of the label select) and the labels must
match bit for bit. A mismatch names the stage and the first differing sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.errors import VerificationError
from flow.core.vocab import LABEL_OPS, PARTITION_OP
from flow.sim.execute import execute_batched, python_fallback_nodes

FLOAT_RTOL = 1e-3
FLOAT_TIE_FRACTION = 0.01  # float stages: share of samples that may round a tie differently


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


@dataclass
class Verification:
    """Every stage's check; passed when all passed."""

    passed: bool
    stages: list[StageCheck] = field(default_factory=list)


@dataclass
class StageOutputs:
    """What one stage computed on the batch."""

    name: str
    logits: np.ndarray | None = None  # float outputs (float stages)
    int_logits: np.ndarray | None = None  # label-select input (integer stages)
    labels: np.ndarray | None = None
    fallback: list[str] | None = None


def _partition_children(model: ModelWrapper):
    for node in model.get_nodes_by_op_type(PARTITION_OP):
        yield ModelWrapper(getCustomOp(node).get_nodeattr("model"))


def label_select_input(model: ModelWrapper) -> str | None:
    """Name of the tensor feeding the final top-1 node (TopK or FINN's LabelSelect), if any."""
    for m in [model, *_partition_children(model)]:
        nodes = [n for n in m.graph.node if n.op_type in LABEL_OPS]
        if nodes:
            return nodes[-1].input[0]
    return None


def fit_inputs(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """Reshape a sample batch to the model's input shape (same data order)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return np.asarray(x, dtype=np.float32).reshape((x.shape[0], *shape[1:]))


def run_float_stage(name: str, model: ModelWrapper, x: np.ndarray) -> StageOutputs:
    out = execute_batched(model, fit_inputs(model, x))
    logits = out[model.graph.output[0].name].reshape(x.shape[0], -1)
    return StageOutputs(name, logits=logits, labels=logits.argmax(axis=1))


def run_integer_stage(name: str, model: ModelWrapper, x: np.ndarray) -> StageOutputs:
    """Execute a graph ending in a label select; collect its integer input and the labels."""
    tensor = label_select_input(model)
    wanted = [tensor] if tensor else []
    out = execute_batched(model, fit_inputs(model, x), outputs=wanted)
    final = out[model.graph.output[0].name].reshape(x.shape[0], -1)
    fallback = python_fallback_nodes(model)
    if tensor is None:
        return StageOutputs(name, int_logits=final, fallback=fallback)
    return StageOutputs(
        name, int_logits=out[tensor].reshape(x.shape[0], -1), labels=final[:, 0].astype(np.int64), fallback=fallback
    )


def finite_max(err: np.ndarray) -> float | None:
    """The largest finite entry of ``err`` (None when there is none): reports stay valid JSON."""
    finite = err[np.isfinite(err)]
    return float(finite.max()) if finite.size else None


def compare_float(cur: StageOutputs, ref: StageOutputs) -> StageCheck:
    """Float stages agree within a relative tolerance on all but a few samples.

    Float graphs evaluate in different orders, so a value that lands exactly on a
    quantizer's rounding boundary can round to the neighbouring level in one stage and
    shift that sample's logits by a quantization step. Up to ``FLOAT_TIE_FRACTION`` of the
    samples may differ that way; a wrong transformation shifts far more.
    """
    err = np.abs(cur.logits - ref.logits)
    tol = FLOAT_RTOL * max(1.0, finite_max(np.abs(ref.logits)) or 0.0)
    bad = np.flatnonzero(~(err.max(axis=1) <= tol))  # NaN is never within the tolerance
    allowed = int(FLOAT_TIE_FRACTION * len(cur.logits))
    note = f"tolerance {tol:.3g}"
    if bad.size:
        note += f"; {bad.size} sample(s) beyond it (rounding ties allowed: {allowed})"
    return StageCheck(
        name=cur.name,
        reference=ref.name,
        samples=len(cur.logits),
        passed=bad.size <= allowed,
        max_abs_err=finite_max(err),
        label_match=float(np.mean(cur.labels == ref.labels)),
        first_mismatch=int(bad[0]) if bad.size else None,
        note=note,
    )


def compare_integer(cur: StageOutputs, ref: StageOutputs) -> StageCheck:
    a, b = cur.int_logits, ref.int_logits
    diff = np.flatnonzero(np.any(a != b, axis=1)) if a.shape == b.shape else np.arange(len(a))
    if cur.labels is not None and ref.labels is not None:
        diff = np.union1d(diff, np.flatnonzero(cur.labels != ref.labels))
    note = None
    if cur.fallback:
        note = "executed in Python with the abstract op's semantics (cppsim/rtlsim need Vitis/Vivado): " + ", ".join(cur.fallback)
    return StageCheck(
        name=cur.name,
        reference=ref.name,
        samples=len(a),
        passed=diff.size == 0,
        max_abs_err=finite_max(np.abs(a - b)) if a.shape == b.shape else None,
        label_match=float(np.mean(cur.labels == ref.labels)) if cur.labels is not None and ref.labels is not None else None,
        bit_exact=diff.size == 0,
        first_mismatch=int(diff[0]) if diff.size else None,
        note=note,
    )


def check_integer_valued(stage: StageOutputs) -> StageCheck | None:
    """After streamlining the label-select input must be integer; name the first sample that is not."""
    v = stage.int_logits
    bad = np.flatnonzero(np.any(v != np.round(v), axis=1))
    if bad.size == 0:
        return None
    return StageCheck(stage.name, "integer", len(v), False, first_mismatch=int(bad[0]), note="streamlined outputs are not integers")


def verify_stages(
    x: np.ndarray,
    *,
    float_stages: list[tuple[str, ModelWrapper]],
    integer_stages: list[tuple[str, ModelWrapper]],
    reference: StageOutputs | None = None,
) -> Verification:
    """Run each stage on ``x`` and compare it with the stage before.

    ``float_stages`` run in order (e.g. QONNX, FINN-ONNX, streamlined); ``reference`` (e.g.
    PyTorch logits) comes first when given. ``integer_stages`` (streamlined with its label
    select, HW layers, the specialized design) are compared bit for bit with the first.
    """
    checks: list[StageCheck] = []
    prev = reference
    for name, model in float_stages:
        cur = run_float_stage(name, model, x)
        if prev is not None:
            checks.append(compare_float(cur, prev))
        prev = cur
    int_ref = None
    for name, model in integer_stages:
        cur = run_integer_stage(name, model, x)
        if int_ref is None:
            int_ref = cur
            bad = check_integer_valued(cur)
            if bad is not None:
                checks.append(bad)
            if prev is not None and prev.labels is not None and cur.labels is not None:
                checks.append(_labels_check(cur, prev))
            continue
        checks.append(compare_integer(cur, int_ref))
    return Verification(passed=all(c.passed for c in checks), stages=checks)


def _labels_check(cur: StageOutputs, ref: StageOutputs) -> StageCheck:
    """Labels of the integer graph against the last float stage (same arithmetic, rescaled)."""
    diff = np.flatnonzero(cur.labels != ref.labels)
    return StageCheck(
        name=cur.name,
        reference=ref.name,
        samples=len(cur.labels),
        passed=diff.size == 0,
        label_match=float(np.mean(cur.labels == ref.labels)),
        first_mismatch=int(diff[0]) if diff.size else None,
    )


def raise_on_failure(v: Verification) -> None:
    """Raise VerificationError naming the first failing stage and sample."""
    for s in v.stages:
        if not s.passed:
            where = f" at sample {s.first_mismatch}" if s.first_mismatch is not None else ""
            where += f" in layer {s.layer}" if s.layer else ""
            raise VerificationError(
                f"verification failed: stage {s.name!r} differs from {s.reference!r}{where}"
                + (f" (max abs err {s.max_abs_err:.3g})" if s.max_abs_err is not None else "")
            )
