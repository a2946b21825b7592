"""Brevitas' ``TruncAvgPool2d`` with a rounding other than FLOOR, made mappable (QONNX level).

FINN converts AveragePool + Trunc into its ``QuantAvgPool2d`` (a right shift) only for FLOOR
rounding and raises ``ValueError: The Trunc node must have the rounding_mode set to 'FLOOR'``
otherwise; Brevitas' MobileNet and ProxylessNAS examples default to ROUND.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_node

from flow.compile.passes.graph import SweepTransformation, attr

#: Trunc rounding modes rewritten here; FLOOR is left to FINN's cheaper shift.
ROUNDING_MODES = ("ROUND", "CEIL", "ROUND_TO_ZERO", "HALF_EVEN", "HALF_UP")
#: Widest Trunc input whose levels are enumerated.
MAX_TRUNC_INPUT_BITS = 20


def trunc_outputs(model: ModelWrapper, trunc, sums: np.ndarray) -> np.ndarray:
    """What the Trunc node (qonnx's own implementation) outputs for the window sums ``sums`` times its scale."""
    scale = model.get_initializer(trunc.input[1])
    ctx = {t: model.get_initializer(t) for t in trunc.input[1:]}
    ctx[trunc.input[0]] = (sums.astype(np.float64) * scale).astype(np.float32).reshape(1, -1)
    ctx[trunc.output[0]] = np.zeros_like(ctx[trunc.input[0]])
    execute_node(trunc, ctx, model.graph, model.get_opset_imports().get(trunc.domain))
    return ctx[trunc.output[0]].reshape(-1)


def level_thresholds(sums: np.ndarray, levels: np.ndarray) -> tuple[list[float], int, int] | None:
    """Thresholds (half-way below the first sum reaching each level), lowest and highest level; None if not monotonic.

    >>> level_thresholds(np.arange(4), np.array([0.0, 0.0, 1.0, 1.0]))
    ([1.5], 0, 1)
    """
    lv = np.round(levels)
    if not np.allclose(levels, lv, atol=1e-3) or np.any(np.diff(lv) < 0):
        return None
    lo, hi = int(lv.min()), int(lv.max())
    return [float(sums[np.argmax(lv >= k)]) - 0.5 for k in range(lo + 1, hi + 1)], lo, hi


class ConvertRoundingTruncToMultiThreshold(SweepTransformation):
    """AveragePool -> Trunc(ROUND/CEIL/...) becomes AveragePool -> Mul(1/scale) -> MultiThreshold -> Mul(out_scale).

    The Trunc input divided by its scale is the integer window sum y (Trunc rounds it
    first); Trunc then maps y monotonically to output levels, which a MultiThreshold
    computes exactly: the thresholds are read off qonnx's own Trunc on every y of its input
    range (ties included) and put half-way between integers. FINN then maps the pool like
    any average pool. Needs scalar parameters, zero-point 0 and at most
    :data:`MAX_TRUNC_INPUT_BITS` input bits.
    """

    def __init__(self, modes=ROUNDING_MODES):
        super().__init__()
        self.modes = {m.upper() for m in modes}

    def rewrite(self, ed, n):
        if n.op_type != "Trunc" or len(n.input) != 6:
            return
        mode = attr(n, "rounding_mode", b"FLOOR") or b"FLOOR"
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        p = ed.find_producer(n.input[0])
        params = [ed.get_initializer(t) for t in n.input[1:]]
        if mode not in self.modes or p is None or p.op_type != "AveragePool":
            return
        if any(v is None or np.asarray(v).size != 1 for v in params):
            return
        scale, zeropt, ibits, oscale, _ = (float(np.asarray(v).reshape(-1)[0]) for v in params)
        if zeropt != 0 or ibits > MAX_TRUNC_INPUT_BITS:
            return
        sums = np.arange(-(2 ** (int(ibits) - 1)), 2 ** int(ibits), dtype=np.int64)
        found = level_thresholds(sums, trunc_outputs(ed, n, sums) / oscale)
        if found is None:
            return
        thr, lo, hi = found
        odt = DataType.get_smallest_possible(hi) if lo >= 0 else DataType.get_smallest_possible(min(lo, -hi - 1))
        ys, q = ed.new_name(), ed.new_name()
        nodes = [
            helper.make_node("Mul", [n.input[0], ed.new_const(np.float32(1.0 / scale))], [ys]),
            helper.make_node(
                "MultiThreshold", [ys, ed.new_const(np.array(thr).reshape(1, -1))], [q],
                domain="qonnx.custom_op.general", out_dtype=odt.name, out_bias=float(lo),
            ),
            helper.make_node("Mul", [q, ed.new_const(np.float32(oscale))], [n.output[0]]),
        ]
        ed.replace_node(n, nodes)
        ed.set_tensor_datatype(q, odt)
