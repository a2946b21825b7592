"""A hazard in finn-plus 1.6.1's RTL matrix-vector unit (finn-rtllib ``mvu/mvu_vvu_axi.sv``).

``mvu_vvu_axi`` catches the compute core's results in an output queue of
``CORE_PIPELINE_DEPTH + 1`` entries. When the consumer stops taking outputs the wrapper
stops feeding the core, but every result already in the core's pipeline still lands in
the queue. The queue is sized by a formula that does not match the core it wraps in two
cases:

- on DSP58 (``VERSION`` 3), a layer whose weight and activation widths do not fit the
  DSP58's INT8 mode (``genINT8``) is built on the soft-vectorised core ``mvu``, whose
  pipeline is ``3 + clog2(SIMD) + (SIMD == 1) + 1`` deep, while the queue is sized for
  the INT8 core's ``3 + ((SIMD+2)/3 - 1)/SEGMENTLEN``;
- on DSP48E1/E2, the queue's ``3 + clog2(SIMD+1) + (SIMD == 1)`` is one short of the same
  pipeline when SIMD is not a power of two.

A layer producing outputs closer together than the pipeline is deep (``MW/SIMD`` input
cycles per output) then has more results in flight than the queue holds: under
back-pressure one is overwritten. Counting the result the wrapper still accepts in the
cycle its lock engages and the one its queue holds in steady flow, up to
``ceil((depth + 2) / (MW/SIMD))`` results are in flight against ``queue + 1`` entries;
simulated under output stalls, every layer tested overflows exactly when that count is
larger. The RTL asserts on it (``Overflowing output queue``),
and a simulated design that keeps its consumers busy shows the loss. :func:`queue_overflow`
says, from a layer's attributes and part, whether it can happen; qflow then asks FINN for
the HLS variant of that layer. ``tests/compat/test_finn_mvu.py`` simulates both sides of
the rule, so a fixed finn-rtllib is noticed.
"""

from __future__ import annotations

import math

from finn.util.basic import get_dsp_block
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

#: finn-rtllib's compute core version per DSP block (as ``MVAU_rtl._resolve_dsp_version``).
VERSIONS = {"DSP58": 3, "DSP48E2": 2}


def _clog2(n: int) -> int:
    return max(0, math.ceil(math.log2(n))) if n > 1 else 0


def queue_depths(*, version: int, simd: int, mw: int, weight_bits: int, act_bits: int, narrow: bool, segmentlen: int) -> tuple[int, int] | None:
    """(results in flight at worst, output queue entries) of an MVAU_rtl; None where the rule does not apply.

    None for the DSP58 INT8 core (its pipeline matches the queue's formula).
    """
    a_width = 25 + 2 * (version > 1)
    lane = weight_bits + act_bits - 1
    lanes = 1 if a_width == weight_bits else 1 + (a_width - (not narrow) - weight_bits) // lane
    if version > 2 and lanes <= 3 and weight_bits <= 8 and act_bits <= 9:
        return None  # genINT8
    depth = 3 + _clog2(simd) + (simd == 1) + 1  # mvu.sv PIPELINE_DEPTH
    if version == 3:
        core = 3 + (0 if segmentlen == 0 else ((simd + 2) // 3 - 1) // segmentlen)
    else:
        core = 3 + _clog2(simd + 1) + (simd == 1)
    interval = max(1, mw // simd)  # input cycles per output
    return math.ceil((depth + 2) / interval), core + 1


def queue_overflow(model: ModelWrapper, node, part: str, clk_ns: float) -> str | None:
    """Why ``node`` (an ``MVAU_rtl``) can overflow its output queue under back-pressure, or None."""
    if node.op_type != "MVAU_rtl":
        return None
    inst = getCustomOp(node)
    if inst.get_nodeattr("pumpedCompute") or inst.get_nodeattr("TH") > 1:
        return None  # other wrappers and clocking: not covered by the rule
    weights = model.get_initializer(node.input[1])
    wdt = inst.get_input_datatype(1)
    narrow = weights is not None and weights.min() != wdt.min() and inst.get_nodeattr("mem_mode") not in ("dynamic", "external_mem")
    simd = int(inst.get_nodeattr("SIMD"))
    version = VERSIONS.get(get_dsp_block(part), 1)
    found = queue_depths(version=version, simd=simd, mw=int(inst.get_nodeattr("MW")), weight_bits=wdt.bitwidth(),
                         act_bits=inst.get_input_datatype(0).bitwidth(), narrow=narrow,
                         segmentlen=int(inst._resolve_segment_len(clk_ns)) if version == 3 else 0)
    if found is None or found[0] <= found[1]:
        return None
    return (f"finn-rtllib's MVU output queue holds {found[1]} results but up to {found[0]} can be in flight "
            f"(SIMD={simd}, MW={inst.get_nodeattr('MW')}): it overflows under back-pressure")
