"""Labels, argmax ties and rescaled outputs: the arithmetic of verification's comparisons.

A classifier's label is the argmax of its class scores. When several classes share the
maximum (an untrained binarized network does that on many inputs), each stage may pick a
different one of them and be right. So a sample fails only when its label is not among the
reference's *maximal classes*; each check counts the samples whose reference ties.

From streamlining on a design computes integers; its float outputs are those integers times
a per-class scale plus an offset that stays on the host (or is absorbed into the label
select). :func:`rescale_residual` fits that map robustly, so one wrong integer is pinned to
its sample instead of being spread over all of them.

>>> import numpy as np
>>> maximal_classes(np.array([[1.0, 3.0, 3.0], [0.0, 2.0, 1.0]])).astype(int).tolist()
[[0, 1, 1], [0, 1, 0]]
>>> count_ties(np.array([[1.0, 3.0, 3.0], [0.0, 2.0, 1.0]]))
1
"""

from __future__ import annotations

import numpy as np

#: Float scores this close (relative) to the maximum count as tied with it.
TIE_RTOL = 1e-5
#: Float32 rounding allowed when integer outputs are rescaled to float scores.
RESCALE_RTOL = 1e-5


def maximal_classes(scores: np.ndarray, rtol: float = 0.0) -> np.ndarray:
    """Boolean mask of the classes attaining each sample's maximum (within ``rtol`` of it)."""
    s = np.asarray(scores, dtype=np.float64)
    top = s.max(axis=1, keepdims=True)
    return s >= top - rtol * np.maximum(1.0, np.abs(top))


def tie_rtol(scores: np.ndarray) -> float:
    """Integer scores tie exactly; float scores within :data:`TIE_RTOL` of the maximum."""
    return 0.0 if np.array_equal(scores, np.round(scores)) else TIE_RTOL


def _has_classes(scores: np.ndarray | None) -> bool:
    return scores is not None and scores.ndim == 2 and scores.shape[1] > 1


def count_ties(scores: np.ndarray | None) -> int | None:
    """Samples whose maximum is attained by more than one class (None without class scores)."""
    if not _has_classes(scores):
        return None
    return int((maximal_classes(scores, tie_rtol(scores)).sum(axis=1) > 1).sum())


def _in_maximal(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per sample: ``labels`` is one of the maximal classes of ``scores`` (an out-of-range label never is)."""
    valid = (labels >= 0) & (labels < scores.shape[1])
    mask = maximal_classes(scores, tie_rtol(scores))
    return valid & mask[np.arange(len(labels)), np.where(valid, labels, 0)]


def label_failures(labels: np.ndarray | None, scores: np.ndarray | None, ref_labels: np.ndarray | None, ref_scores: np.ndarray | None) -> np.ndarray:
    """Samples whose label is a real mismatch: not among the reference's maximal classes.

    With reference scores, a label passes when it is one of the reference's maximal classes.
    With a labels-only reference (user-given class indices), a sample passes when the
    reference's label is among this stage's maximal classes: a tie broken the other way is
    still a tie. With scores on neither side, labels must be equal.
    """
    if labels is None or ref_labels is None:
        return np.array([], dtype=np.int64)
    ok = labels == ref_labels
    if _has_classes(ref_scores):
        ok = ok | _in_maximal(labels, ref_scores)
    elif _has_classes(scores):
        ok = ok | _in_maximal(ref_labels, scores)
    return np.flatnonzero(~ok)


def robust_affine(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``a, b`` of ``y = a * x + b`` for data that should fit it exactly.

    The slope is the median of the slopes between neighbours in ``x`` order, the offset the
    median offset: a few wrong samples cannot move the fit, whereas least squares would spread
    one wrong sample's error over all of them.
    """
    order = np.argsort(x, kind="stable")
    dx, dy = np.diff(x[order]), np.diff(y[order])
    steps = dx != 0
    a = float(np.median(dy[steps] / dx[steps])) if steps.any() else 0.0
    return a, float(np.median(y - a * x))


def global_affine_residual(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """``y = a * x + b`` with one ``a, b`` for every element: ``a`` and each sample's largest residual."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    a, b = robust_affine(x64.ravel(), y64.ravel())
    return a, np.abs(y64 - (a * x64 + b)).max(axis=1)


def _residual(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """The robust fit's slope ``a`` of ``y = a * x + b`` and each sample's residual beyond float32
    rounding of ``y`` (:data:`RESCALE_RTOL`)."""
    a, b = robust_affine(x, y)
    slack = RESCALE_RTOL * max(1.0, float(np.abs(y).max(initial=0.0)))
    return a, np.maximum(np.abs(y - (a * x + b)) - slack, 0.0)


def rescale_residual(ints: np.ndarray, floats: np.ndarray) -> np.ndarray:
    """Per sample, the largest error of ``floats = a_c * ints + b_c`` (fitted per class ``c``) in
    integer steps: an integer output off by one gives 1.0, a correct one about 0.

    The fit runs both ways (floats from integers, in steps of ``|a_c|``, and integers from
    floats), so a class whose floats are constant while its integers are not still fails where
    they differ.
    """
    x, y = ints.astype(np.float64), floats.astype(np.float64)
    err = np.zeros_like(y)
    for c in range(x.shape[1]):
        a, fwd = _residual(x[:, c], y[:, c])
        fwd = fwd / abs(a) if a != 0 else np.where(fwd > 0, np.inf, 0.0)
        err[:, c] = np.maximum(fwd, _residual(y[:, c], x[:, c])[1])
    return err.max(axis=1)
