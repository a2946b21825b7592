"""qflow's own LUT count for the layers FINN estimates at 0 LUT, and the basis of every layer's count.

FINN's ``lut_estimation`` returns 0 for MVAU_rtl and VVAU_rtl ("DSP-based") and, through
its base class, for every op without a model of its own (Pool_hls, FMPadding_rtl,
LabelSelect_hls, ...). An optimizer that believes 0 treats such a layer as free, and a
report that prints 0 states something nobody measured. Each layer's count therefore
carries its basis (:data:`BASES`):

- ``finn``: FINN's estimate;
- ``qflow-yosys-fit``: qflow's structural count, its coefficients fitted by least squares to
  Yosys ``synth_xilinx`` on FINN's generated HDL (``benchmarks/rtl_luts.py``, results in
  ``benchmarks/results/rtl_luts.json``, checked by ``tests/compile/test_lut_model.py``);
- ``qflow-structural``: qflow's structural count without a synthesis to calibrate it (HLS
  layers: no open tool synthesizes HLS; VVAU_rtl: Versal's DSP58 is no Yosys target);
- ``none``: FINN has no model for the op and qflow none either; the 0 is counted but not
  stated as an estimate (reports print it as not estimated).

The cost model (:mod:`flow.fold.cost_model`) and the report (:mod:`flow.fold.estimate`)
both use :func:`layer_lut`, so ``--auto`` prices what the report shows.

MVAU_rtl (the fabric around the DSP chain; weight memory is FINN's BRAM/LUTRAM estimate):
``LUT = PE * (pe0 + fold * (log2(SF) + 1)) + lane_acc * PE * SIMD * ACC + simd_bits * SIMD * (A + W) + base``
with SF = MW / SIMD: per output lane (PE) the accumulator and output stage, a little smaller
for longer folds; per product lane (PE x SIMD) the adder tree over the DSP outputs, whose
adders are as wide as the accumulator (ACC bits); per input lane (SIMD, shared by the PEs)
the activation/weight registers (A + W bits). Over the calibration sweep (PE 1..16, SIMD
2..72, 2..8-bit operands, folds 1..16) it is within 12% of Yosys.
FMPadding_rtl: ``LUT = base + per_bit * SIMD * bits`` (an output multiplexer per bit of the
word, and the position counters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from flow.compat.finn import finn_lut_blind
from flow.core.vocab import FINN_RESOURCE_KEYS, RESOURCES

BASES = ("finn", "qflow-yosys-fit", "qflow-structural", "none")

#: Fitted to Yosys synth_xilinx -family xcup over benchmarks/rtl_luts.py's sweep (the "fit" of its results).
MVAU_COEFFS = {"pe0": 81.782, "fold": -3.699, "lane_acc": 1.087, "simd_bits": 0.148, "base": -14.128}
FMPAD_COEFFS = {"base": 62.176, "per_bit": 0.824}
_MVAU_TERMS = ("pe0", "fold", "lane_acc", "simd_bits", "base")


def _mvau_features(pe: int, simd: int, mw: int, a_bits: int, w_bits: int, acc_bits: int) -> list[float]:
    return [pe, pe * (math.log2(mw / simd) + 1), pe * simd * acc_bits, simd * (a_bits + w_bits), 1.0]


def structural_mvau(pe: int, simd: int, mw: int, a_bits: int, w_bits: int, acc_bits: int, c: Mapping[str, float] = MVAU_COEFFS) -> float:
    """The MVU core's fabric LUTs (see the module docstring)."""
    x = _mvau_features(pe, simd, mw, a_bits, w_bits, acc_bits)
    return round(max(0.0, sum(c[k] * v for k, v in zip(_MVAU_TERMS, x))), 1)


def structural_fmpadding(simd: int, bits: int, c: Mapping[str, float] = FMPAD_COEFFS) -> float:
    return round(c["base"] + c["per_bit"] * simd * bits, 1)


def fit_mvau(rows: list[Mapping]) -> dict[str, float]:
    """Least-squares MVAU_rtl coefficients from rows with PE, SIMD, MW, A, W, ACC and ``yosys_lut``."""
    x = np.array([_mvau_features(r["PE"], r["SIMD"], r["MW"], r["A"], r["W"], r["ACC"]) for r in rows], dtype=float)
    y = np.array([r["yosys_lut"] for r in rows], dtype=float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return {k: round(float(v), 3) for k, v in zip(_MVAU_TERMS, coef)}


def fit_fmpadding(rows: list[Mapping]) -> dict[str, float]:
    """Least-squares FMPadding_rtl coefficients from rows with SIMD, bits and ``yosys_lut``."""
    x = np.array([[1.0, r["SIMD"] * r["bits"]] for r in rows], dtype=float)
    y = np.array([r["yosys_lut"] for r in rows], dtype=float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return {"base": round(float(coef[0]), 3), "per_bit": round(float(coef[1]), 3)}


def _bits(inst, i: int) -> int:
    return inst.get_input_datatype(i).bitwidth()


def _mvau(inst) -> float:
    """MVAU_rtl, and VVAU_rtl read as channels x kernel (PE x SIMD over the kernel's K*K inputs)."""
    mw = inst.get_nodeattr("MW") if "MW" in inst.get_nodeattr_types() else int(np.prod(inst.get_nodeattr("Kernel")))
    return structural_mvau(inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD"), mw, _bits(inst, 0), _bits(inst, 1),
                           inst.get_output_datatype().bitwidth())


def _pool(inst) -> float:
    """Pool_hls: per PE lane a comparator (max) or adder (average) of the accumulator width and its
    result register multiplexer, plus about 60 LUTs of loop control. Not calibrated."""
    acc = inst.get_nodeattr("AccumBits") if inst.get_nodeattr("Function") != "MaxPool" else 0
    width = max(acc, _bits(inst, 0))
    return float(60 + inst.get_nodeattr("PE") * 2 * width)


def _fmpadding(inst) -> float:
    return structural_fmpadding(inst.get_nodeattr("SIMD"), _bits(inst, 0))


#: op type -> (qflow's count, its basis)
OWN_MODELS = {
    "MVAU_rtl": (_mvau, "qflow-yosys-fit"),
    "VVAU_rtl": (_mvau, "qflow-structural"),  # the same MVU/VVU core; DSP58 only, so no Yosys calibration
    "FMPadding_rtl": (_fmpadding, "qflow-yosys-fit"),
    "Pool_hls": (_pool, "qflow-structural"),
}


def layer_lut(inst, finn_lut: float) -> tuple[float, str]:
    """(LUT count, basis) of FINN layer instance ``inst`` whose FINN estimate is ``finn_lut``."""
    own = OWN_MODELS.get(inst.onnx_node.op_type)
    if own is not None and finn_lut_blind(inst):
        count, basis = own
        return float(count(inst)), basis
    return float(finn_lut), "none" if finn_lut_blind(inst) else "finn"


def qflow_resources(inst, finn_res: Mapping[str, float]) -> tuple[float, ...]:
    """FINN's ``node_res_estimation`` of ``inst`` in :data:`~flow.core.vocab.RESOURCES` order, its LUTs by :func:`layer_lut`."""
    lut, _ = layer_lut(inst, float(finn_res.get("LUT", 0) or 0))
    return tuple(lut if r == "lut" else float(finn_res.get(FINN_RESOURCE_KEYS[r], 0) or 0) for r in RESOURCES)
