"""Data-width converters: the stream adapters FINN inserts between layers, and their cost.

Where a layer's output word (PE elements) differs from its consumer's input word (SIMD
elements), FINN's ``InsertDWC`` puts a ``StreamingDataWidthConverter`` between them when it
stitches the design (after the estimate reports, so FINN's estimates leave them out).
:func:`finn_dwcs` runs FINN's own ``InsertDWC`` and ``SpecializeLayers`` on a copy of a
folded design and prices every converter with FINN's estimates; :class:`DwcPricer` gives
the same price from two stream widths without touching the graph (for the cost model).

>>> from flow.fold.converters import Stream
>>> Stream(elems=4, width=8) == Stream(4, 8)
True
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from finn.analysis.fpgadataflow.res_estimation import res_estimation
from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.util.basic import qonnx_make_model

from flow.core.estimates import Converter
from flow.core.vocab import FINN_RESOURCE_KEYS, HW_DOMAIN, RESOURCES, is_hw_node

DWC_OP = "StreamingDataWidthConverter"
_FINN_KEYS = tuple(FINN_RESOURCE_KEYS[k] for k in RESOURCES)


class Stream(NamedTuple):
    """One side of a stream between layers: elements per word and word width in bits."""

    elems: int
    width: int


class Edge(NamedTuple):
    """A stream from ``producer``'s output ``out_idx`` to ``consumer``'s input ``in_idx``."""

    producer: str
    out_idx: int
    consumer: str
    in_idx: int


def stream_edges(model: ModelWrapper) -> list[Edge]:
    """Every stream between two HW layers of ``model`` (where FINN may insert a converter)."""
    edges = []
    for node in model.graph.node:
        if not is_hw_node(node):
            continue
        for oi, tensor in enumerate(node.output):
            for consumer in model.find_consumers(tensor):
                if is_hw_node(consumer):
                    edges.append(Edge(node.name, oi, consumer.name, list(consumer.input).index(tensor)))
    return edges


def out_stream(inst, idx: int = 0) -> Stream:
    return Stream(int(inst.get_folded_output_shape(idx)[-1]), int(inst.get_outstream_width(idx)))


def in_stream(inst, idx: int = 0) -> Stream:
    return Stream(int(inst.get_folded_input_shape(idx)[-1]), int(inst.get_instream_width(idx)))


def finn_dwcs(model: ModelWrapper, fpgapart: str) -> list[Converter]:
    """The converters FINN's ``InsertDWC`` adds to the folded ``model``, priced by FINN's ``res_estimation``."""

    layer_of = {n.output[0]: n.name for n in model.graph.node}  # InsertDWC keeps the layers' output tensors
    m = model.transform(InsertDWC()).transform(SpecializeLayers(fpgapart))  # which names the new nodes
    res = m.analysis(partial(res_estimation, fpgapart=fpgapart))
    producer, consumer = {}, {}
    for node in m.graph.node:
        for t in node.output:
            producer.setdefault(t, node)
        for t in node.input:
            consumer.setdefault(t, node)
    found = []
    for node in m.graph.node:
        if not node.op_type.startswith(DWC_OP):
            continue
        inst = getCustomOp(node)
        prod, cons = producer[node.input[0]], consumer[node.output[0]]
        r = res[node.name]
        found.append(Converter(
            layer_of[prod.output[0]], layer_of[cons.output[0]], int(inst.get_nodeattr("inWidth")), int(inst.get_nodeattr("outWidth")),
            *(float(r.get(k, 0)) for k in _FINN_KEYS),
        ))
    return found


class DwcPricer:
    """FINN's estimate of a converter between two streams, memoized per width pair.

    Each new pair is priced on a one-node graph holding the converter exactly as FINN's
    ``InsertDWC`` builds it, specialized by FINN's ``SpecializeLayers``.
    """

    def __init__(self, fpgapart: str):
        self.fpgapart = fpgapart
        self._memo: dict[tuple[int, int], tuple[float, float, float, float]] = {}
        self._variant: tuple[str, str] | None = None  # (op_type, domain) FINN specializes a converter to

    def needed(self, out: Stream, into: Stream) -> bool:
        """FINN's rule: a converter where the words carry different numbers of elements."""
        return out.elems != into.elems

    def price(self, in_width: int, out_width: int) -> tuple[float, float, float, float]:
        """(LUT, BRAM_18K, URAM, DSP) of a converter from ``in_width`` to ``out_width`` bits."""
        key = (int(in_width), int(out_width))
        if key not in self._memo:
            self._memo[key] = self._finn_price(*key)
        return self._memo[key]

    def _finn_price(self, in_width: int, out_width: int) -> tuple[float, float, float, float]:

        # any shape whose last axis both widths divide into whole words of 1-bit elements
        shape = [1, in_width * out_width]
        node = helper.make_node(
            DWC_OP, ["x"], ["y"], domain=HW_DOMAIN, backend="fpgadataflow",
            inShape=shape, outShape=shape, inWidth=in_width, outWidth=out_width, dataType="BINARY",
        )
        if self._variant is None:  # which variant FINN's SpecializeLayers builds a converter as (asked once)
            graph = helper.make_graph([node], "dwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
            spec = ModelWrapper(qonnx_make_model(graph)).transform(SpecializeLayers(self.fpgapart)).graph.node[0]
            self._variant = (spec.op_type, spec.domain)
        node.op_type, node.domain = self._variant
        r = getCustomOp(node).node_res_estimation(self.fpgapart)
        return tuple(float(r.get(k, 0)) for k in _FINN_KEYS)
