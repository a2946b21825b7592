"""Refusing what cannot become integer hardware exactly, with the node, op, neighbours, why and the fix.

:func:`check_lowerable_convs` runs on the QONNX graph (before FINN's conversion), where a
grouped conv would otherwise fail inside FINN's streamlining with a numpy reshape error.
:func:`check_mappable` runs on the streamlined graph (after
:func:`flow.compile.passes.streamline.streamline_structures`), before FINN's
``convert_to_hw``, which would otherwise fail later with its own errors or build float
hardware.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from flow.compat.qonnx_index import IndexedModel
from flow.compile.host_input import is_input_quantizer
from flow.compile.passes.deconv import lowering_problem
from flow.compile.passes.diagnose import (
    CONVERTIBLE_OPS,
    HOST_TAIL_OPS,
    TRANSPARENT_OPS,
    Unmapped,
    const_summary,
    dynamic_inputs,
    feeds_integer_compute,
    float_origins,
    grid,
    has_compute_upstream,
    is_consequence,
    is_depthwise,
    node_label,
    unmapped,
)
from flow.compile.passes.graph import (
    LINEAR_OPS,
    attr,
    compress,
    const_operand,
    is_integer,
    is_join_add,
)
from flow.compile.passes.input_pad import why_padding_blocks
from flow.compile.passes.pools import averages_every_window_alike, pads_of
from flow.compile.passes.upsample import UPSAMPLE_OPS, upsample_problem
from flow.core.errors import InputDatatypeError, StructureError
from flow.core.vocab import is_hw_node

#: How many problems one error message lists.
MAX_LISTED = 3

SHARED_QUANTIZER_FIX = (
    "quantize both inputs of the Add with one shared quantizer (the same QuantIdentity/QuantReLU instance), "
    "as Brevitas' ProxylessNAS does"
)
STREAMLINE_FIRST = "run streamline_structures on the streamlined graph first"


def raise_problems(problems: list[Unmapped]) -> None:
    """Raise one error listing the first problems: InputDatatypeError when the float graph input
    is the cause (it usually explains the rest), StructureError otherwise."""
    if not problems:
        return
    from_input = [p for p in problems if p.from_input]
    shown = (from_input or problems)[:MAX_LISTED]
    more = len(from_input or problems) - len(shown)
    message = "; ".join(str(p) for p in shown) + (f"; and {more} more" if more else "")
    raise (InputDatatypeError if from_input else StructureError)(message)


def check_lowerable_convs(model: ModelWrapper) -> None:
    """Raise StructureError for convs FINN's lowering cannot handle: grouped convs other than dense
    (group 1) or depthwise with one output per input channel (group = in = out channels)."""
    problems = []
    model = IndexedModel(model.transform(InferShapes()))
    for n in model.get_nodes_by_op_type("Conv"):
        g = attr(n, "group", 1)
        ishape, oshape = model.get_tensor_shape(n.input[0]), model.get_tensor_shape(n.output[0])
        if g == 1 or not ishape or not oshape or len(ishape) < 2 or len(oshape) < 2:
            continue  # without shapes FINN's own conversion reports the conv
        cin, cout = ishape[1], oshape[1]
        if g == cin == cout:
            continue
        kind = f"a depthwise conv with channel multiplier {cout // cin}" if g == cin else f"a grouped conv ({g} groups)"
        problems.append(unmapped(model, n, (
            f"it is {kind} ({cin} -> {cout} channels, group={g}); FINN lowers only dense convs and depthwise convs "
            "with one output per input channel: split it into a depthwise conv and a 1x1 conv, or use groups=1"
        )))
    raise_problems(problems)


def why_join_is_float(model: ModelWrapper, node) -> str:
    a, b = (grid(model, t) for t in node.input[:2])
    if a.split(" (")[0] == b.split(" (")[0]:
        return f"both inputs carry the same scale ({a}  vs  {b}) but it was not moved past the Add; {STREAMLINE_FIRST}"
    return (
        f"it joins two branches that are not on one integer grid ({a}  vs  {b}); an integer adder needs both inputs "
        f"as integers at the same scale: {SHARED_QUANTIZER_FIX}"
    )


def why_scale_stays(model: ModelWrapper, node, src, c: np.ndarray) -> str:
    """Why the scale ``c`` of Mul ``src`` did not move past ``node``."""
    W = model.get_initializer(node.input[1]) if node.op_type == "MatMul" else None
    if node.op_type == "MatMul" and compress(c).size == 1:
        return f"the scalar scale of {node_label(src)} was not moved past this MatMul (e.g. it sits on a branch point); {STREAMLINE_FIRST}"
    if W is not None and W.ndim == 2 and is_depthwise(W):
        return f"the per-channel scale of {node_label(src)} can move past this depthwise conv but was not moved; {STREAMLINE_FIRST}"
    if node.op_type == "MatMul":
        return (
            f"the {const_summary(c)} scale of {node_label(src)} reaches this MatMul (a conv or dense layer), whose weights "
            "mix inputs of different scale: it can neither move past it nor be folded into its integer weights (only "
            "depthwise/grouped convs with group-constant scales allow that); use a per-tensor quantizer for the "
            "activation feeding it, or requantize (QuantIdentity) right before it"
        )
    if node.op_type == "ConvTranspose":
        return (
            f"the {const_summary(c)} scale of {node_label(src)} reaches this transposed conv, whose weights mix channels: "
            "only a scalar scale moves past it; use a per-tensor quantizer for the activation feeding it"
        )
    if node.op_type == "MultiThreshold" and (c < 0).any():
        return f"the scale of {node_label(src)} has negative entries ({const_summary(c)}), which thresholds cannot absorb; make the quantizer scale positive"
    return f"the {const_summary(c)} scale of {node_label(src)} cannot move past it: no exact rewrite for {node.op_type}"


def comes_from_float_input(model: ModelWrapper, tensor: str) -> bool:
    """True if the non-integer values of ``tensor`` start at the float graph input."""
    seen, todo = set(), [tensor]
    while todo:
        t = todo.pop()
        producer = model.find_producer(t)
        if producer is None:
            return True
        if t not in seen:
            seen.add(t)
            todo.extend(i for i in dynamic_inputs(model, producer) if not is_integer(model, i))
    return False


def why_float(model: ModelWrapper, node, tensor: str) -> str:
    """Why ``node`` receives the non-integer ``tensor`` (not from the graph input) that no rewrite moves into thresholds."""
    if is_join_add(model, node):
        return why_join_is_float(model, node)
    layout_problem = why_not_convertible(model, node) if node.op_type in (*UPSAMPLE_OPS, *PIXEL_SHUFFLE_OPS) else None
    if layout_problem:
        return layout_problem
    if node.op_type == "ConvTranspose" and lowering_problem(node):
        return why_not_convertible(model, node)
    im2col = model.find_producer(node.input[0]) if node.op_type == "MatMul" else None
    padding_problem = why_padding_blocks(model, im2col) if im2col is not None else None
    if padding_problem:
        return padding_problem
    origins = float_origins(model, tensor)
    src = origins[0] if origins else model.find_producer(tensor)
    co = const_operand(model, src) if src.op_type in LINEAR_OPS else None
    if co is not None and src.op_type == "Mul":
        return why_scale_stays(model, node, src, np.asarray(co[2]))
    if co is not None:
        return (
            f"the offset ({const_summary(co[2])}) of {node_label(src)} cannot move past it: an offset does not commute "
            f"with {node.op_type} (e.g. padding adds zeros, not the offset); quantize before {node.name}"
        )
    return f"{node_label(src)} produces non-integer values that no rewrite moves into thresholds; quantize its output"


#: Ops that move channels into pixels (and back): FINN has no hardware layer for them.
PIXEL_SHUFFLE_OPS = ("DepthToSpace", "SpaceToDepth")


def why_not_convertible(model: ModelWrapper, node) -> str | None:
    """Why FINN's conversion cannot make ``node`` a hardware layer; None if it can."""
    if node.op_type in UPSAMPLE_OPS:
        return upsample_problem(model, node)
    if node.op_type == "ConvTranspose":
        why = lowering_problem(node) or "its weights or bias are not constant integers"
        return f"FINN cannot lower this transposed conv: {why}"
    if node.op_type in PIXEL_SHUFFLE_OPS:
        return (
            f"FINN has no hardware layer for {node.op_type} (a pixel shuffle) and this one sits between layers; upsample "
            "with a nearest-neighbour resize and a conv (Brevitas' QuantNearestNeighborConvolution) instead, or make the "
            "pixel shuffle the network's last layer (only elementwise ops such as the output quantizer after it), so that "
            "it runs on the host"
        )
    return None if node.op_type in CONVERTIBLE_OPS else why_unconvertible(node)


def why_unconvertible(node) -> str:
    """Why FINN has no hardware layer for ``node`` (which reads integers)."""
    if node.op_type == "AveragePool" and not averages_every_window_alike(node):
        if attr(node, "ceil_mode", 0):
            return "ceil_mode=1 gives border windows fewer elements, so no single 1/k scale exists; use ceil_mode=False"
        if any(pads_of(node)) and not attr(node, "count_include_pad", 0):
            return (
                "padding with count_include_pad=0 divides border windows by fewer elements, so no single 1/k scale "
                "exists; use count_include_pad=True or no padding"
            )
        return "dilated average pooling has no FINN hardware layer; use dilation 1"
    return f"FINN has no hardware layer for {node.op_type}; replace that op in the model"


def explain_unmapped(model: ModelWrapper) -> list[Unmapped]:
    """Why a streamlined graph cannot become integer hardware; empty when every node that must be hardware computes on integers.

    Reports (1) a node outside the host-side tail that reads non-integer data, traced back to
    where the non-integer values start, and (2) a node FINN has no hardware layer for, between
    hardware layers or making floats for them.
    Consequences of an already reported node are not repeated.
    """
    model = IndexedModel(model)  # read only: every lookup by dictionary
    found: list[Unmapped] = []
    for v in model.graph.node:
        if v.op_type in PIXEL_SHUFFLE_OPS and feeds_integer_compute(model, v):
            found.append(unmapped(model, v, why_not_convertible(model, v)))
            continue
        if not is_hw_node(v) and (v.op_type in TRANSPARENT_OPS or (v.op_type in HOST_TAIL_OPS and not is_join_add(model, v))):
            continue  # host tail or data movement: a problem shows at the consumer
        if is_input_quantizer(model, v):
            continue  # the model's own input quantizer stays on the host (flow.compile.host_input)
        floats = [t for t in dynamic_inputs(model, v) if not is_integer(model, t)]
        if floats and all(is_consequence(model, t) for t in floats):
            continue
        if floats and comes_from_float_input(model, floats[0]):
            inp = model.graph.input[0].name
            found.append(unmapped(model, v, (
                f"it computes on the float graph input {inp!r}; FINN's hardware needs integer inputs: pass --input-dtype "
                "(e.g. --input-dtype UINT8 for raw 0..255 pixels)"
            ), from_input=True))
        elif floats:
            found.append(unmapped(model, v, why_float(model, v, floats[0])))
        elif (
            not is_hw_node(v) and feeds_integer_compute(model, v)
            and (has_compute_upstream(model, v) or not all(is_integer(model, t) for t in v.output))
            and (why := why_not_convertible(model, v))
        ):  # an integer op in front of the hardware may stay on the host
            found.append(unmapped(model, v, why))
    return found


def check_mappable(model: ModelWrapper) -> None:
    """Raise StructureError naming the nodes that keep the streamlined graph from being integer hardware."""
    raise_problems(explain_unmapped(model))
