"""The optimizer's dimensions: which attributes of each FINN HW layer fold it (PE/SIMD), the values
FINN accepts, and the implementation choices FINN exposes per op type (:data:`CHOICES`).

Every finn-plus op with a ``PE`` or ``SIMD`` attribute is listed in :data:`DIMENSIONS`, by
the abstract FINN op it derives from (``ElementwiseAdd_hls`` -> ``ElementwiseAdd``, every
``ElementwiseBinaryOperation`` alike), with the size its attribute folds: an attribute
(``NumChannels``, ``MH``, ...) or the innermost axis of the layer's input or output, as
FINN's ``SetFolding`` reads it. The values are that size's divisors, further restricted
where FINN's ``SetFolding`` states a rule the op's own checks do not (``StreamingConcat``/
``StreamingSplit``: a common divisor of every stream's channels; ``LayerNorm``: more than
12 elements per lane). Every candidate is then still checked by FINN's own op code
(:func:`flow.fold.rules.folding_rule_violation`), so a value FINN's asserts refuse is never
planned. ``tests/fold/test_dims.py`` checks that every op of the installed finn-plus with a
folding attribute is a dimension here or named in :data:`NOT_DIMENSIONS` with a reason.

Coupled layers (FINN's rule: a depthwise ``ConvolutionInputGenerator`` runs at the SIMD of
the ``VVAU``/``Pool`` it feeds) are one unit of the optimizer, see :mod:`flow.fold.units`.
The data-width converters have no folding attribute: FINN sizes each from the words on its
two sides, so they follow from their neighbours' settings and are priced with them
(:mod:`flow.fold.converters`), as are FIFOs.

>>> divisors(12)
[1, 2, 3, 4, 6, 12]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import reduce

# How a dimension's size is read from a layer: an attribute, a product of an attribute's
# entries, or the innermost axis of the normal input/output shape.
_Size = Callable[[object], int]


def _attr(name: str) -> _Size:
    return lambda inst: int(inst.get_nodeattr(name))


def _prod(name: str) -> _Size:
    return lambda inst: int(math.prod(inst.get_nodeattr(name)))


def _channels(inst) -> int:
    """``NumChannels`` where the op has it, else its output's innermost axis (SetFolding's PE ops)."""
    if "NumChannels" in inst.get_nodeattr_types():
        return int(inst.get_nodeattr("NumChannels"))
    return int(inst.get_normal_output_shape()[-1])


def _in_channels(inst) -> int:
    """``NumChannels`` where the op has it, else its input's innermost axis (SetFolding's SIMD ops)."""
    if "NumChannels" in inst.get_nodeattr_types():
        return int(inst.get_nodeattr("NumChannels"))
    return int(inst.get_normal_input_shape()[-1])


def _out_axis(inst) -> int:
    return int(inst.get_normal_output_shape()[-1])


def _in_axis(inst) -> int:
    return int(inst.get_normal_input_shape()[-1])


def divisors(n: int) -> list[int]:
    """All divisors of ``n``, ascending (FINN's folding factors must divide their dimension)."""
    n = int(n)
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0] if n > 0 else []
    return small + [n // d for d in reversed(small) if d * d != n]


def _common_divisors(inst) -> list[int]:
    """SetFolding's rule for concat/split: SIMD divides every stream's channel count."""
    return divisors(reduce(math.gcd, (int(c) for c in inst.get_nodeattr("ChannelsPerStream"))))


def _layernorm_values(inst) -> list[int]:
    """SetFolding's rule for LayerNorm: SIMD divides the normalized axis and leaves more than 12 elements per lane."""
    dim = _in_axis(inst)
    return [s for s in divisors(dim) if s == 1 or dim // s > 12]


#: abstract FINN op -> {attribute: size of the dimension it folds} (values: the size's divisors)
DIMENSIONS: dict[str, dict[str, _Size]] = {
    "MVAU": {"PE": _attr("MH"), "SIMD": _attr("MW")},
    "VVAU": {"PE": _attr("Channels"), "SIMD": _prod("Kernel")},
    "Pool": {"PE": _attr("Channels")},
    "LabelSelect": {"PE": _attr("Labels")},
    "ConvolutionInputGenerator": {"SIMD": _attr("IFMChannels")},
    **{op: {"PE": _channels} for op in ("Thresholding", "DuplicateStreams", "GlobalAccPool", "PWPolyF", "Requant")},
    **{op: {"PE": _out_axis} for op in ("ElementwiseBinaryOperation", "ReplicateStream", "Squeeze", "Unsqueeze", "Reshape", "HWWhere")},
    **{op: {"SIMD": _in_channels} for op in (
        "FMPadding", "FMPadding_Pixel", "Crop", "HWSoftmax", "OuterShuffle", "Pad1D", "SelectToken", "Shuffle", "UpsampleNearestNeighbour",
    )},
    "InnerShuffle": {"SIMD": _out_axis},
    "StreamingConcat": {"SIMD": lambda inst: reduce(math.gcd, (int(c) for c in inst.get_nodeattr("ChannelsPerStream")))},
    "StreamingSplit": {"SIMD": lambda inst: reduce(math.gcd, (int(c) for c in inst.get_nodeattr("ChannelsPerStream")))},
    "LayerNorm": {"SIMD": _in_axis},
}
#: ops whose values are not all divisors of the size (SetFolding's extra rules)
_VALUES: dict[str, Callable[[object], list[int]]] = {
    "StreamingConcat": _common_divisors,
    "StreamingSplit": _common_divisors,
    "LayerNorm": _layernorm_values,
}
#: abstract FINN ops with a PE/SIMD attribute that are not folding dimensions, and why
NOT_DIMENSIONS: dict[str, str] = {}


def family(inst) -> str | None:
    """The entry of :data:`DIMENSIONS` (or :data:`NOT_DIMENSIONS`) for a FINN op (instance or class), by its FINN base classes."""
    for cls in (inst if isinstance(inst, type) else type(inst)).__mro__:
        if cls.__name__ in DIMENSIONS or cls.__name__ in NOT_DIMENSIONS:
            return cls.__name__
    return None


def fold_limits(inst) -> dict[str, int]:
    """The folding attributes of a layer and the size each must divide (as SetFolding reads them)."""
    fam = family(inst)
    if fam in NOT_DIMENSIONS:
        return {}
    if fam is None:
        return _fallback(inst)
    types = inst.get_nodeattr_types()
    return {attr: int(size(inst)) for attr, size in DIMENSIONS[fam].items() if attr in types}


def fold_values(inst) -> dict[str, list[int]]:
    """The candidate values of each folding attribute of a layer (FINN's op checks still apply)."""
    fam = family(inst)
    extra = _VALUES.get(fam or "")
    return {attr: (extra(inst) if extra else divisors(size)) for attr, size in fold_limits(inst).items()}


def _fallback(inst) -> dict[str, int]:
    """An op this table does not know: SetFolding's generic rule (PE over output channels, SIMD over input channels)."""
    types = inst.get_nodeattr_types()
    if "PE" in types:
        return {"PE": _channels(inst)}
    if "SIMD" in types:
        return {"SIMD": _in_channels(inst)}
    return {}


_INT_MAX = 2**31 - 1
_DEC = "internal_decoupled"
_MEM_CHOICES = (
    {"mem_mode": _DEC, "ram_style": "auto"},
    {"mem_mode": _DEC, "ram_style": "distributed"},
    {"mem_mode": _DEC, "ram_style": "ultra", "runtime_writeable_weights": 1},
)
_HLS_MEM_CHOICES = (*_MEM_CHOICES, {"mem_mode": "internal_embedded", "ram_style": "auto"})
_RES_CHOICES = ({"resType": "lut"}, {"resType": "dsp"})
# Implementation choices FINN exposes per op type, as groups of alternatives (first = kept
# by default). ram_style "block" is left out for MVAU/VVAU: FINN estimates it as "auto".
# internal_embedded (HLS only) costs what internal_decoupled does in FINN's model but has no
# weight stream, so FINN's AP_INT_MAX_W rule allows wider PE x SIMD with it. "ultra" is
# offered only when the target has URAM; on UltraScale+ FINN requires
# runtime_writeable_weights=1 with it.
CHOICES: dict[str, tuple[tuple[dict, ...], ...]] = {
    "MVAU_hls": (_HLS_MEM_CHOICES, _RES_CHOICES),
    "MVAU_rtl": (_MEM_CHOICES,),
    "VVAU_hls": (_HLS_MEM_CHOICES, _RES_CHOICES),
    "VVAU_rtl": (_MEM_CHOICES,),
    "ConvolutionInputGenerator_rtl": (({"ram_style": "distributed"}, {"ram_style": "block"}, {"ram_style": "ultra"}),),
    "Thresholding_hls": (
        ({"ram_style": "distributed"}, {"ram_style": "block"}, {"ram_style": "ultra"}),
        ({"mem_mode": _DEC}, {"mem_mode": "internal_embedded"}),
    ),
    "Thresholding_rtl": (
        (
            {"depth_trigger_bram": 0, "depth_trigger_uram": 0},
            {"depth_trigger_bram": 1, "depth_trigger_uram": _INT_MAX},
            {"depth_trigger_bram": 0, "depth_trigger_uram": 1},
        ),
    ),
}
