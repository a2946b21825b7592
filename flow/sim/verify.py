"""Simulation-based verification: every stage of the flow computes what the network computes.

The same batch of inputs runs through each stage (PyTorch, QONNX, FINN-ONNX, streamlined,
HW layers, the specialized and folded design) with :func:`flow.sim.execute.execute_batched`.
What a stage outputs is read from its graph, not assumed:

* a graph ending in a label node (``TopK``, ``ArgMax``, FINN's ``LabelSelect``) outputs class
  indices; the node's input (the class scores) is collected beside them, so a model exported
  with a TopK head is compared as labels plus the scores they were chosen from;
* an integer stage's *integer outputs* are the last integer tensor of the design: the label
  node's input, or, when a float tail (a per-class scale or bias the label select cannot
  absorb) runs on the host after the accelerator, the tensor that tail starts from.

The rules (a sample fails for a real difference, never for an argmax tie; :mod:`flow.sim.labels`):

* float stages agree with the stage before within a relative tolerance, on all but a few
  samples (values landing on a quantizer's rounding boundary), up to the positive scale and
  offset streamlining absorbs into the label select;
* labels: a sample fails only when its label is not among the reference's maximal classes;
  every check counts the samples whose reference ties (``ties``);
* the first integer stage: its integer outputs are integers and, rescaled per class
  (``float = a_c * int + b_c``), equal the last float stage's scores;
* later integer stages (HW layers, the specialized design) match it bit for bit.

A model whose output is not one score per class (an image, a signal: anything with spatial
extent after the channel axis) has no labels: its stages are compared on their outputs only,
and no check reports label matches or ties.

A mismatch names the stage and the first differing sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.qonnx import release_memory
from flow.core.checks import StageCheck, StageOutputs, Verification
from flow.core.errors import VerificationError
from flow.core.vocab import LABEL_OPS
from flow.sim.execute import execute_batched, python_fallback_nodes
from flow.sim.labels import (
    RESCALE_RTOL,
    count_ties,
    global_affine_residual,
    label_failures,
    rescale_residual,
)
from flow.sim.forced import FedQuantizers
from flow.sim.rounding import KNIFE_EDGE, replay_roundings
from flow.sim.tail import design_graphs, output_tail

FLOAT_RTOL = 1e-3
FLOAT_TIE_FRACTION = 0.01  # float stages: share of samples that may round a tie differently
#: Integer outputs rescaled to float scores may be off by this many integer steps.
RESCALE_STEPS = 0.5
#: Said when outputs alone (no network to run again) differ: how to show them to be rounding ties.
OUTPUTS_ONLY = ("; outputs alone cannot show a difference to be a rounding tie (a large network rounds values on a "
                "quantizer's boundary apart in nearly every sample); build from Python with reference=torch_reference(network, "
                "inputs) (flow.nn.reference) to check each differing sample quantizer by quantizer")
#: Failing samples of a float stage replayed for rounding ties (the rest count as failures).
MAX_REPLAYED = 64


def label_select_input(model: ModelWrapper) -> str | None:
    """Name of the tensor feeding the final label node (TopK, ArgMax or LabelSelect), if any."""
    for m in design_graphs(model):
        nodes = [n for n in m.graph.node if n.op_type in LABEL_OPS or n.op_type == "ArgMax"]
        if nodes:
            return nodes[-1].input[0]
    return None


def class_scores(shape) -> bool:
    """True if outputs of ``shape`` (samples first) are one score per class: nothing after the class axis
    but unit axes. An image or a signal (``(N, C, H, W)``, ``(N, C, L)``) is not."""
    return shape is not None and len(shape) >= 2 and all(d == 1 for d in shape[2:])


def fit_inputs(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """Reshape a sample batch to the model's input shape (same data order)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return np.asarray(x, dtype=np.float32).reshape((x.shape[0], *shape[1:]))


def _labels(final: np.ndarray) -> np.ndarray:
    return final.reshape(final.shape[0], -1)[:, 0].astype(np.int64)


def run_float_stage(name: str, model: ModelWrapper, x: np.ndarray, values: Callable[[str], np.ndarray] | None = None) -> StageOutputs:
    """Execute a float graph: its scores (the label node's input, if it has one) and labels. ``values``: the
    tensors of a run of ``model`` on ``x`` already made, by name (nothing is executed again)."""
    n = x.shape[0]
    label_in = label_select_input(model)
    if values is None:
        out = execute_batched(model, fit_inputs(model, x), outputs=[label_in] if label_in else [])
    else:
        out = {t: values(t) for t in (model.graph.output[0].name, label_in) if t}
    raw = out[model.graph.output[0].name]
    final = raw.reshape(n, -1)
    if label_in is not None:
        return StageOutputs(name, logits=out[label_in].reshape(n, -1), labels=_labels(final))
    labeled = class_scores(raw.shape) and final.shape[1] > 1
    return StageOutputs(name, logits=final, labels=final.argmax(axis=1) if labeled else None)


def run_integer_stage(name: str, model: ModelWrapper, x: np.ndarray) -> StageOutputs:
    """Execute a graph (usually ending in a label select): its integer outputs, scores and labels."""
    n = x.shape[0]
    out_name = model.graph.output[0].name
    label_in = label_select_input(model)
    tail = output_tail(model, label_in or out_name)
    int_out = tail.tensor if tail is not None else None
    wanted = [t for t in dict.fromkeys([label_in, int_out]) if t is not None and t != out_name]
    out = execute_batched(model, fit_inputs(model, x), outputs=wanted)
    final = out[out_name].reshape(n, -1)
    scores = out[label_in].reshape(n, -1) if label_in is not None else final
    ints = out[int_out].reshape(n, -1) if int_out is not None else scores
    labels = _labels(final) if label_in is not None else None
    steps = None
    if label_in is None and tail is not None and ints.shape == final.shape:
        try:  # the tail keeps the data order, so its scale, broadcast, gives each output's step
            steps = np.abs(np.broadcast_to(np.asarray(tail.scale, np.float64), out[int_out].shape)).reshape(n, -1)
        except ValueError:
            steps = None
    return StageOutputs(name, int_logits=ints, scores=scores, labels=labels, fallback=python_fallback_nodes(model), steps=steps)


def _failures(cur: StageOutputs, ref: StageOutputs) -> np.ndarray:
    return label_failures(cur.labels, cur.label_scores, ref.labels, ref.label_scores)


def _ties(ref: StageOutputs) -> int | None:
    """Tied reference samples, for stages that have labels (a model without class scores has none)."""
    return count_ties(ref.label_scores) if ref.labels is not None else None


def _label_match(cur: StageOutputs, ref: StageOutputs) -> float | None:
    if cur.labels is None or ref.labels is None:
        return None
    return float(np.mean(cur.labels == ref.labels))


def finite_max(err: np.ndarray) -> float | None:
    """The largest finite entry of ``err`` (None when there is none): reports stay valid JSON."""
    finite = err[np.isfinite(err)]
    return float(finite.max()) if finite.size else None


def compare_float(cur: StageOutputs, ref: StageOutputs, rounding_ties: Callable[[np.ndarray], np.ndarray] | None = None) -> StageCheck:
    """Float stages agree within a relative tolerance, but for rounding ties.

    Float graphs evaluate in different orders, so a value that lands on a quantizer's
    rounding boundary can round to the neighbouring level in one stage and shift that
    sample's outputs. ``rounding_ties`` (:func:`flow.sim.rounding.replay_roundings` on both
    graphs, or :func:`recorded_tie_finder` against a PyTorch network run again) returns the
    differing samples it proves to be such ties; they pass and are counted. Up to
    ``FLOAT_TIE_FRACTION`` of the samples may differ without that proof (PyTorch outputs alone
    cannot be replayed); a wrong transformation shifts far more. Labels
    are compared with ties allowed; a labels-only reference (user-given class indices) is
    compared as labels.
    """
    n = len(cur.labels) if cur.labels is not None else len(cur.logits)
    bad, err, note = _failures(cur, ref), None, "compared as labels"
    if cur.logits is not None and ref.logits is not None:
        if cur.logits.shape != ref.logits.shape:
            return StageCheck(cur.name, ref.name, n, False, note=f"outputs have shape {cur.logits.shape[1:]}, the reference {ref.logits.shape[1:]}")
        e = np.abs(cur.logits - ref.logits).max(axis=1)
        tol = FLOAT_RTOL * max(1.0, finite_max(np.abs(ref.logits)) or 0.0)
        note = f"tolerance {tol:.3g}"
        if not np.all(e <= tol) and cur.labels is not None and ref.labels is not None:
            # streamlining absorbs a final positive scale and offset into the label select
            # (AbsorbScalarMulAddIntoTopK): the scores then equal the reference's up to that map
            a, r = global_affine_residual(cur.logits, ref.logits)
            if a > 0 and (r <= tol).sum() > (e <= tol).sum():
                e, note = r, f"scores up to the positive scale and offset absorbed into the label select, {note}"
        err = finite_max(e)
        bad = np.union1d(np.flatnonzero(~(e <= tol)), bad)  # NaN is never within the tolerance
    elif cur.labels is None or ref.labels is None:
        return StageCheck(cur.name, ref.name, n, False, note="nothing comparable: one side has neither scores nor labels")
    tied = rounding_ties(bad) if rounding_ties is not None and bad.size else np.array([], dtype=np.int64)
    if tied.size:
        bad = np.setdiff1d(bad, tied)
        note += (f"; {tied.size} sample(s) differ only by values within {KNIFE_EDGE:g} of a quantizer step from a rounding "
                 "boundary (float evaluation order), shown by replaying those roundings alike")
    allowed = int(FLOAT_TIE_FRACTION * n)
    if bad.size:
        note += f"; {bad.size} sample(s) beyond it (rounding ties allowed: {allowed})"
    return StageCheck(
        name=cur.name, reference=ref.name, samples=n, passed=bad.size <= allowed, max_abs_err=err,
        label_match=_label_match(cur, ref), first_mismatch=int(bad[0]) if bad.size else None, ties=_ties(ref), note=note,
        rounding_ties=int(tied.size) if rounding_ties is not None else None,
    )


def rounding_tie_finder(ref_model: ModelWrapper, cur_model: ModelWrapper, x: np.ndarray, cur: StageOutputs, name: str):
    """The samples among ``bad`` whose difference between the two float graphs is only rounding ties: each is
    replayed (:func:`flow.sim.rounding.replay_roundings`) and compared again under the same rules."""

    scores = [t for t in (label_select_input(ref_model),) if t]  # what run_float_stage reads besides the output

    def one_tied(i: int) -> bool:  # the replay (and the sample's tensors its run holds) goes when this returns
        rep = replay_roundings(ref_model, cur_model, fit_inputs(ref_model, x[i:i + 1]), fit_inputs(cur_model, x[i:i + 1]),
                               keep=scores)
        if rep is None or rep.flips == 0:
            return False
        again = run_float_stage(name, rep.model, x[i:i + 1], rep.run.value)  # the replay's own run
        one = StageOutputs(cur.name, logits=cur.logits[i:i + 1] if cur.logits is not None else None,
                           labels=cur.labels[i:i + 1] if cur.labels is not None else None)
        return compare_float(one, again).passed

    def tied(bad: np.ndarray) -> np.ndarray:
        return np.asarray([int(i) for i in bad[:MAX_REPLAYED] if one_tied(int(i))], dtype=np.int64)

    return tied


def recorded_tie_finder(model: ModelWrapper, x: np.ndarray, cur: StageOutputs, reference: StageOutputs):
    """The samples among ``bad`` on which ``model`` (run as ``cur`` on ``x``) differs from a PyTorch ``reference``
    that can run again only by rounding ties: each sample is run again with its quantizers' inputs recorded, the
    graph is fed them (:class:`flow.sim.forced.FedQuantizers`), and its scores must equal that run's within the
    tolerance (no scale or offset allowed: nothing absorbs one between a network and its export)."""
    record = reference.record
    assert record is not None
    tol = FLOAT_RTOL * max(1.0, finite_max(np.abs(reference.logits)) or 0.0) if reference.logits is not None else None

    def tied(bad: np.ndarray) -> np.ndarray:
        found: list[int] = []
        if tol is None:
            return np.asarray(found, dtype=np.int64)
        fed = FedQuantizers(model, label_select_input(model) or model.graph.output[0].name)  # only when a sample differs
        for i in bad[:MAX_REPLAYED]:
            run = record(np.array([i]))
            scores = fed.scores(fit_inputs(model, x[i:i + 1]), run)
            if scores is not None and scores.shape == run.outputs.shape and np.abs(scores - run.outputs).max() <= tol:
                found.append(int(i))
        return np.asarray(found, dtype=np.int64)

    return tied


def compare_integer(cur: StageOutputs, ref: StageOutputs) -> StageCheck:
    """Integer stages: integer outputs bit for bit, labels up to ties in the reference's scores."""
    a, b = cur.int_logits, ref.int_logits
    diff = np.flatnonzero(np.any(a != b, axis=1)) if a.shape == b.shape else np.arange(len(a))
    diff = np.union1d(diff, _failures(cur, ref))
    note = None
    if cur.fallback:
        note = "executed in Python with the abstract op's semantics (cppsim/rtlsim need Vitis/Vivado): " + ", ".join(cur.fallback)
    return StageCheck(
        name=cur.name,
        reference=ref.name,
        samples=len(a),
        passed=diff.size == 0,
        max_abs_err=finite_max(np.abs(a - b)) if a.shape == b.shape else None,
        label_match=_label_match(cur, ref),
        bit_exact=diff.size == 0,
        first_mismatch=int(diff[0]) if diff.size else None,
        ties=_ties(ref),
        note=note,
    )


def compare_integer_with_float(cur: StageOutputs, ref: StageOutputs) -> StageCheck:
    """The first integer stage against the last float stage: its integer outputs, rescaled per
    class, equal the float scores (within :data:`RESCALE_STEPS` integer steps), and its labels are
    among the float scores' maximal classes."""
    n = len(cur.int_logits)
    bad, err, note = _failures(cur, ref), None, None
    if ref.logits is not None and cur.steps is not None and ref.logits.shape == cur.scores.shape:
        slack = RESCALE_RTOL * max(1.0, finite_max(np.abs(ref.logits)) or 0.0)
        off = np.maximum(np.abs(cur.scores.astype(np.float64) - ref.logits) - slack, 0.0)
        steps = np.where(off > 0, off / np.where(cur.steps > 0, cur.steps, np.nan), 0.0).max(axis=1)
        err = finite_max(steps)
        bad = np.union1d(bad, np.flatnonzero(~(steps <= RESCALE_STEPS)))
        note = f"integer outputs through the design's own output scale and offset, within {RESCALE_STEPS} integer steps of the float outputs"
    elif ref.logits is not None and ref.logits.shape == cur.int_logits.shape:
        steps = rescale_residual(cur.int_logits, ref.logits)
        err = finite_max(steps)
        bad = np.union1d(bad, np.flatnonzero(~(steps <= RESCALE_STEPS)))
        note = f"integer outputs rescaled per class to the float scores, within {RESCALE_STEPS} integer steps"
    elif ref.logits is not None:
        note = f"integer outputs {cur.int_logits.shape[1:]} and float scores {ref.logits.shape[1:]} differ in shape: labels compared"
    return StageCheck(
        name=cur.name, reference=ref.name, samples=n, passed=bad.size == 0, max_abs_err=err,
        label_match=_label_match(cur, ref), first_mismatch=int(bad[0]) if bad.size else None, ties=_ties(ref), note=note,
    )


def check_integer_valued(stage: StageOutputs) -> StageCheck | None:
    """After streamlining the label-select input must be integer; name the first sample that is not."""
    v = stage.int_logits
    bad = np.flatnonzero(np.any(v != np.round(v), axis=1))
    if bad.size == 0:
        return None
    return StageCheck(stage.name, "integer", len(v), False, first_mismatch=int(bad[0]), note="streamlined outputs are not integers")


#: A stage's model, or a function loading it when its turn comes.
StageModel = ModelWrapper | Callable[[], ModelWrapper]


def _loaded(stage: StageModel) -> ModelWrapper:
    return stage if isinstance(stage, ModelWrapper) else stage()


def verify_stages(
    x: np.ndarray,
    *,
    float_stages: Sequence[tuple[str, StageModel]],
    integer_stages: Sequence[tuple[str, StageModel]],
    reference: StageOutputs | None = None,
) -> Verification:
    """Run each stage on ``x`` and compare it with the stage before.

    A stage's model may be given as a function that loads it: it is then loaded when its
    turn comes and dropped when no longer needed, so that at most two stages (one compared
    with the one before) are in memory at once.

    ``float_stages`` run in order (e.g. QONNX, FINN-ONNX, streamlined); ``reference`` (e.g.
    PyTorch logits or labels) comes first when given. ``integer_stages`` (streamlined with its
    label select, HW layers, the specialized design): the first is checked against the last
    float stage, the others bit for bit against the first.
    """
    checks: list[StageCheck] = []
    prev, prev_model = reference, None
    for name, stage in float_stages:
        model = _loaded(stage)
        cur = run_float_stage(name, model, x)
        if prev is not None:
            if prev is reference and cur.labels is None and prev.logits is not None:  # outputs, not class scores
                prev = replace(prev, logits=prev.logits.reshape(len(prev.logits), -1), labels=None)
            if prev_model is not None:
                ties = rounding_tie_finder(prev_model, model, x, cur, prev.name)
            else:
                ties = recorded_tie_finder(model, x, cur, prev) if prev.record is not None else None
            check = compare_float(cur, prev, ties)
            if not check.passed and prev_model is None and prev.record is None and prev.logits is not None:
                check.note = (check.note or "") + OUTPUTS_ONLY
            checks.append(check)
            del ties  # it holds both models
        prev, prev_model = cur, model
        del model
        release_memory()
    prev_model = None
    int_ref = None
    for name, stage in integer_stages:
        cur = run_integer_stage(name, _loaded(stage), x)
        release_memory()
        if int_ref is None:
            int_ref = cur
            bad = check_integer_valued(cur)
            if bad is not None:
                checks.append(bad)
            if prev is not None and (prev.labels is not None or prev.logits is not None):
                checks.append(compare_integer_with_float(cur, prev))
            continue
        checks.append(compare_integer(cur, int_ref))
    return Verification(passed=all(c.passed for c in checks), stages=checks)


def raise_on_failure(v: Verification) -> None:
    """Raise VerificationError naming the first failing stage and sample."""
    for s in v.stages:
        if not s.passed:
            where = f" at sample {s.first_mismatch}" if s.first_mismatch is not None else ""
            where += f" in layer {s.layer}" if s.layer else ""
            raise VerificationError(
                f"verification failed: stage {s.name!r} differs from {s.reference!r}{where}"
                + (f" (max abs err {s.max_abs_err:.3g})" if s.max_abs_err is not None else "")
                + (f"; {s.note}" if s.note else "")
            )
