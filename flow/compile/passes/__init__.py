"""qflow's structure streamlining: residual joins, average pools, depthwise convs with per-channel scales.

FINN's default streamlining leaves these structures with float values between hardware
layers (a shared quantizer's scale on a branch point, a pool's 1/N, per-channel scales
before a depthwise conv), so FINN cannot map them. These passes move every such scale into
thresholds or to the host-side output tail, exactly, and refuse what cannot be mapped with
an error naming the node, its op, its neighbours, why and the fix.

In flow order (wired into :mod:`flow.compile.steps`):

* :func:`prepare_qonnx`: before FINN's QONNX->FINN conversion (refuses grouped convs, lifts 1D
  convs, pools and resizes to 2D, turns a rounding ``TruncAvgPool2d`` into exact thresholds);
* :func:`streamline_structures` and :func:`check_mappable`: after FINN's streamlining;
* :class:`KeepFloatTailOnHost`: after FINN's conversion to hardware layers.

Modules by theme: ``conv1d`` (1D layers as 2D), ``layout`` (scales through layout ops), ``joins``
(residual joins), ``depthwise``, ``pools``, ``trunc``, ``upsample`` (nearest-neighbour resize),
``deconv`` (transposed convs), ``pixelshuffle``, ``host_tail``, ``mappable`` (with ``diagnose``),
and ``streamline`` (the driver). Workarounds for FINN's own passes are in
:mod:`flow.compat.finn_streamline`.
"""

from flow.compile.passes.host_tail import KeepFloatTailOnHost
from flow.compile.passes.mappable import check_mappable, explain_unmapped
from flow.compile.passes.streamline import prepare_qonnx, streamline_structures

__all__ = ["KeepFloatTailOnHost", "check_mappable", "explain_unmapped", "prepare_qonnx", "streamline_structures"]
