"""The one vocabulary of qflow: FPGA resources, FINN's hardware domain, node kinds.

Every wing names resources, hardware layers and label nodes with these constants, so a
resource is spelt one way in reports, the cost model and the optimizer, and converted to
FINN's spelling (``BRAM_18K``) in one place.

>>> RESOURCES
('lut', 'bram_18k', 'uram', 'dsp')
>>> finn_resources({"LUT": 120, "BRAM_18K": 2})
{'lut': 120.0, 'bram_18k': 2.0, 'uram': 0.0, 'dsp': 0.0}
>>> RESOURCE_LABELS["bram_18k"]
'BRAM18'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Resources a design is estimated and budgeted on, in report order.
RESOURCES: tuple[str, ...] = ("lut", "bram_18k", "uram", "dsp")
#: FINN's keys for the same resources (``res_estimation``, ``node_res_estimation``).
FINN_RESOURCE_KEYS: dict[str, str] = {"lut": "LUT", "bram_18k": "BRAM_18K", "uram": "URAM", "dsp": "DSP"}
#: How tables and plots label them.
RESOURCE_LABELS: dict[str, str] = {"lut": "LUT", "bram_18k": "BRAM18", "uram": "URAM", "dsp": "DSP"}

#: ONNX domain of FINN's hardware layers; specialized ones add ``.hls`` or ``.rtl``.
HW_DOMAIN = "finn.custom_op.fpgadataflow"
#: Implementation variants of a specialized hardware layer.
IMPL_STYLES: tuple[str, ...] = ("hls", "rtl")
#: The node attribute that asks FINN for a variant.
IMPL_ATTR = "preferred_impl_style"

#: Nodes that end a classifier with its top-1 label.
LABEL_OPS: tuple[str, ...] = ("TopK", "LabelSelect", "LabelSelect_hls", "LabelSelect_rtl")
#: QONNX quantization nodes: a model without any is not a quantized network.
QUANT_OPS: tuple[str, ...] = ("Quant", "BipolarQuant", "BinaryQuant", "Trunc", "MultiThreshold")
#: The node FINN's ``CreateDataflowPartition`` leaves in the parent graph.
PARTITION_OP = "StreamingDataflowPartition"


def finn_resources(res: Mapping[str, Any]) -> dict[str, float]:
    """FINN's resource dict (``{"LUT": .., "BRAM_18K": ..}``) in qflow's spelling, missing keys as 0."""
    return {k: float(res.get(FINN_RESOURCE_KEYS[k], 0) or 0) for k in RESOURCES}


def is_hw_node(node) -> bool:
    """True for FINN hardware layers, generic (``MVAU``) or specialized (``MVAU_hls``)."""
    return node.domain.startswith(HW_DOMAIN)


def hw_nodes(model) -> list:
    """The hardware layers of a ModelWrapper's graph, in graph order."""
    return [n for n in model.graph.node if is_hw_node(n)]


def impl_style(node) -> str | None:
    """``"hls"`` or ``"rtl"`` for a specialized hardware layer, ``None`` otherwise."""
    if not is_hw_node(node) or node.domain == HW_DOMAIN:
        return None
    return node.domain.rsplit(".", 1)[-1]
