"""Chains: consecutive RTL layers with the converters and FIFOs FINN puts between them, as one design.

:func:`with_fifos` does to a folded design what FINN's ``step_set_fifo_depths`` does before
it stitches: each layer's ``inFIFODepths``/``outFIFODepths`` are set (FINN's folding-config
attributes), then FINN's ``InsertDWC`` and ``InsertFIFO(create_shallow_fifos=True)`` insert
the data-width converters and FIFOs (a FIFO's depth is the larger of its two neighbours'
values), which are specialized to their RTL variants. :func:`find_chains` then cuts the
graph into maximal connected groups of RTL nodes with HDL qflow can simulate; an HLS layer
ends a chain. Tensor names are kept, so every chain's edges map back to the design's
tensors (:func:`design_tensor`) and to their Python values.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.general import SortGraph

from flow.core.vocab import HW_DOMAIN, IMPL_ATTR, is_hw_node
from flow.sim.rtlsim.hdl import UnsupportedNode, check_simulable

#: Nodes FINN inserts between layers when it stitches; they carry a layer's values unchanged.
PLUMBING = ("StreamingFIFO", "StreamingDataWidthConverter")
FIFO_ATTRS = ("inFIFODepths", "outFIFODepths")
#: "Very deep" FIFOs: room for two frames of the stream (at least 64, at most 32,768 words).
DEEP_MIN, DEEP_MAX = 64, 32768


def is_plumbing(node) -> bool:
    return node.op_type.startswith(PLUMBING)


def streamed_inputs(model, node) -> list[str]:
    """The inputs of ``node`` that are streams (not initializers such as weights)."""
    return [t for t in node.input if t and model.get_initializer(t) is None]


def deep_depth(words_per_frame: int) -> int:
    """A FIFO depth no schedule of this stream fills: two frames' worth, as a power of two."""
    need = 2 * int(words_per_frame) + 2
    return min(DEEP_MAX, max(DEEP_MIN, 1 << (need - 1).bit_length()))


def deep_config(design: ModelWrapper) -> dict[str, dict[str, list[int]]]:
    """FIFO depths (FINN's folding-config format) that make every FIFO of ``design`` very deep."""
    cfg = {}
    for node in design.graph.node:
        if not is_hw_node(node):
            continue
        inst = getCustomOp(node)
        ins = streamed_inputs(design, node)
        cfg[node.name] = {
            "inFIFODepths": [deep_depth(_words(inst.get_folded_input_shape(i))) for i in range(len(ins))] or [2],
            "outFIFODepths": [deep_depth(_words(inst.get_folded_output_shape(o))) for o in range(len(node.output))],
        }
    return cfg


def _words(folded) -> int:
    n = 1
    for d in list(folded)[:-1]:
        n *= int(d)
    return n


def current_config(design: ModelWrapper) -> dict[str, dict[str, list[int]]]:
    """Every HW layer's FIFO depth attributes as they are now."""
    return {n.name: {a: list(getCustomOp(n).get_nodeattr(a)) for a in FIFO_ATTRS} for n in design.graph.node if is_hw_node(n)}


def apply_config(design: ModelWrapper, config: Mapping[str, Mapping[str, list[int]]]) -> ModelWrapper:
    """``design`` with the FIFO depth attributes of ``config`` set on its layers (in place; returns it)."""
    for name, attrs in config.items():
        node = design.get_node_from_name(name)
        if node is None:
            continue
        inst = getCustomOp(node)
        for a in FIFO_ATTRS:
            if a in attrs:
                inst.set_nodeattr(a, [int(d) for d in attrs[a]])
    return design


def with_fifos(design: ModelWrapper, part: str, config: Mapping[str, Mapping[str, list[int]]]) -> ModelWrapper:
    """A copy of ``design`` with FINN's converters and FIFOs inserted (depths from ``config``), all RTL.

    The design's own layers keep their names and tensors; FIFOs are ``StreamingFIFO_rtl``
    with ``impl_style=rtl`` (FINN would use Vivado's FIFO IP for ``vivado``).
    """
    model = apply_config(ModelWrapper(copy.deepcopy(design.model)), config)
    names = {n.output[0]: n.name for n in model.graph.node}
    model = model.transform(InsertDWC()).transform(InsertFIFO(create_shallow_fifos=True))
    for node in model.graph.node:
        if node.domain == HW_DOMAIN and node.op_type in PLUMBING:
            getCustomOp(node).set_nodeattr(IMPL_ATTR, "rtl")
    # SpecializeLayers renames every node (GiveUniqueNodeNames) and may leave the graph out of
    # topological order: sort it, then give the design's layers their names back.
    model = model.transform(SpecializeLayers(part)).transform(SortGraph())
    for node in model.graph.node:
        if not is_plumbing(node) and node.output[0] in names:
            node.name = names[node.output[0]]
    for vi in model.graph.output:  # InsertFIFO renamed the last layer's output; its FIFO took the name
        fifo = model.find_producer(vi.name)
        last = model.find_producer(fifo.input[0]) if fifo is not None and is_plumbing(fifo) else None
        if last is not None and vi.name in names:
            last.name = names[vi.name]
    taken = set(names.values())
    for node in model.graph.node:
        if is_plumbing(node):
            if node.name in taken:  # a converter or FIFO must not take a layer's name
                node.name = f"{node.name}_i"
            if node.op_type.startswith("StreamingFIFO"):
                getCustomOp(node).set_nodeattr("impl_style", "rtl")
    return model


def simulable(node) -> bool:
    try:
        check_simulable(node)
    except UnsupportedNode:
        return False
    return True


def find_chains(model: ModelWrapper, keep: Callable[[object], bool] = simulable) -> list[list]:
    """Maximal connected groups of nodes passing ``keep`` (in graph order), with at least one layer that is not plumbing."""
    nodes = [n for n in model.graph.node if keep(n)]
    group = {n.name: i for i, n in enumerate(nodes)}

    def root(i: int) -> int:
        while group_of[i] != i:
            group_of[i] = group_of[group_of[i]]
            i = group_of[i]
        return i

    group_of = list(range(len(nodes)))
    for n in nodes:
        for t in n.output:
            for c in model.find_consumers(t) or []:
                if c.name in group:
                    group_of[root(group[c.name])] = root(group[n.name])
    chains: dict[int, list] = {}
    for i, n in enumerate(nodes):
        chains.setdefault(root(i), []).append(n)
    return [c for c in chains.values() if any(not is_plumbing(n) for n in c)]


def design_tensor(model: ModelWrapper, tensor: str, known) -> str:
    """The design's tensor (one of ``known``) whose values ``tensor`` carries: back through converters and FIFOs."""
    node = model.find_producer(tensor)
    while tensor not in known and node is not None and is_plumbing(node):
        tensor = node.input[0]
        node = model.find_producer(tensor)
    return tensor
