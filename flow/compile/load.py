"""Loading ONNX model files safely, and checking that they are quantized QONNX.

A model file is untrusted input. Before anything executes or resolves it:

* it must parse as ONNX and hold a graph;
* every node's domain must be one qflow knows (standard ONNX, qonnx's and FINN's general
  custom ops, Brevitas' alias of them): qonnx imports the Python module a domain names,
  so an unknown domain would import arbitrary code. Local functions (``torch.onnx``'s
  dynamo exporter writes them) are inlined first, then checked the same way;
* control flow (``If``, ``Loop``, ``Scan``: any node holding a subgraph) is refused, before
  anything reads or runs a subgraph: a dataflow accelerator has no mapping for it;
* dataflow-partition and hardware nodes, which name other files, are refused;
* external data (initializers, ``Constant`` attributes, sparse tensors, in subgraphs too)
  must be regular files inside the model's folder: no absolute or climbing locations,
  no symlink that leads out, no hard link (it could alias any file on the disk), within
  :data:`MAX_EXTERNAL_BYTES`;
* no float tensor holds NaN or infinity (FINN's threshold rounding never ends on them);
* every tensor a node reads exists, nothing is produced twice, there is no cycle (nodes
  out of order are sorted);
* the graph input has a static shape (a symbolic batch axis becomes 1) of a sane size.

>>> from flow.compile.load import ALLOWED_DOMAINS
>>> "qonnx.custom_op.general" in ALLOWED_DOMAINS
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper
from onnx.external_data_helper import load_external_data_for_model, uses_external_data
from onnx.inliner import inline_local_functions
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import is_custom_op

from flow.compat.qonnx_graph import fix_missing_initializer_shapes, topological_levels
from flow.core.errors import ModelFileError, UnquantizedModelError, UnsupportedOpError
from flow.core.fileio import read_regular
from flow.core.vocab import HW_DOMAIN, PARTITION_OP, QUANT_OPS

#: Node domains a model may use: qonnx resolves a domain by importing it as a module.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas"})
#: Largest model file, and largest sum of its external data files.
MAX_MODEL_BYTES = 2 * 2**30
MAX_EXTERNAL_BYTES = 4 * 2**30
#: Most values one input sample may hold.
MAX_INPUT_ELEMENTS = 2**26
_PARTITION_OPS = (PARTITION_OP, "GenericPartition")


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def _tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model: initializers, sparse initializers, node attributes, in every (sub)graph and function."""
    nodes = [n for g in _graphs(proto.graph) for n in g.node] + [n for f in proto.functions for n in f.node]
    for g in _graphs(proto.graph):
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield sp.values
            yield sp.indices
    for node in nodes:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == AttributeProto.TENSORS:
                yield from attr.tensors
            elif attr.type == AttributeProto.SPARSE_TENSOR:
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices


def _check_control_flow(p: Path, proto: onnx.ModelProto) -> None:
    """Refuse a graph or local function with a node holding a subgraph (``If``, ``Loop``, ``Scan``), without descending into it."""
    for node in [*proto.graph.node, *(n for f in proto.functions for n in f.node)]:
        if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute):
            raise UnsupportedOpError(
                f"{p}: node {node.name or '(unnamed)'!r} ({node.op_type[:40]}) is control flow: it runs a subgraph chosen or "
                "repeated at run time, which a dataflow accelerator cannot map; export the network without data-dependent "
                "control flow (Brevitas' export_qonnx traces one fixed path through the model)"
            )


def _check_external_data(p: Path, proto: onnx.ModelProto) -> None:
    base = p.resolve().parent
    total = 0
    for tensor in _tensors(proto):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        where = f"{p}: tensor {tensor.name!r}"
        if not location or "\x00" in location or os.path.isabs(location) or ".." in Path(location).parts:
            raise ModelFileError(f"{where} points its external data at {location[:80]!r}; keep external data files beside the model")
        target = base / location
        if not target.resolve().is_relative_to(base):
            raise ModelFileError(f"{where}: its external data {location[:80]!r} reaches outside the model folder through a link; copy the data file into the folder")
        try:
            st = target.stat()
        except OSError:
            raise ModelFileError(f"{where}: external data file {location[:80]!r} is missing") from None
        if not target.is_file():
            raise ModelFileError(f"{where}: external data {location[:80]!r} is not a regular file")
        if st.st_nlink > 1:
            raise ModelFileError(f"{where}: external data file {location[:80]!r} has other hard links; give the model its own copy of the file")
        total += st.st_size
        if total > MAX_EXTERNAL_BYTES:
            raise ModelFileError(f"{p}: external data exceeds {MAX_EXTERNAL_BYTES // 2**30} GiB; qflow's models are far smaller")


def _check_domains(p: Path, proto: onnx.ModelProto) -> None:
    for g in _graphs(proto.graph):
        for node in g.node:
            where = f"{p}: node {node.name or '(unnamed)'!r} ({node.op_type})"
            if node.domain.startswith(HW_DOMAIN) or node.op_type in _PARTITION_OPS:
                raise ModelFileError(f"{where} is a FINN hardware node; qflow builds from QONNX as Brevitas exports it, not from FINN's intermediate graphs")
            if node.domain not in ALLOWED_DOMAINS:
                raise ModelFileError(
                    f"{where} has domain {node.domain[:60]!r}, which qflow does not load; allowed: "
                    + ", ".join(repr(d) for d in sorted(ALLOWED_DOMAINS))
                )
            known = onnx.defs.has(node.op_type) if node.domain in ("", "ai.onnx") else is_custom_op(node.domain, node.op_type)
            if not known:
                raise ModelFileError(f"{where}: its op type is neither an ONNX operator nor a QONNX custom op; re-export the model")


def _check_finite(p: Path, proto: onnx.ModelProto) -> None:
    for tensor in _tensors(proto):
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16):
            continue
        try:
            values = numpy_helper.to_array(tensor)
        except Exception as e:  # noqa: BLE001 - malformed tensor payloads raise many kinds
            raise ModelFileError(f"{p}: tensor {tensor.name!r} cannot be read ({type(e).__name__}); re-export the model") from None
        if values.size and not np.all(np.isfinite(values.astype(np.float64))):
            raise ModelFileError(f"{p}: tensor {tensor.name!r} holds NaN or infinite values; retrain or re-export the model (its quantizer scales must be finite)")


def _check_input(p: Path, proto: onnx.ModelProto) -> None:
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelFileError(f"{p} has {len(inputs)} graph inputs; qflow builds single-input networks")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims:
        raise ModelFileError(f"{p}: input {inputs[0].name!r} has no declared shape; export with a fixed input shape")
    if dims[0].HasField("dim_value") and dims[0].dim_value != 1:
        raise ModelFileError(f"{p}: input {inputs[0].name!r} has batch size {dims[0].dim_value}; export with batch 1 (FINN's graphs take one sample at a time)")
    for i, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            continue
        if i == 0:
            d.Clear()
            d.dim_value = 1  # a symbolic batch axis: FINN's graphs are batch-1
            continue
        raise ModelFileError(f"{p}: input {inputs[0].name!r} axis {i} is {d.dim_param or 'unknown'!r}; export with a fixed input shape")
    size = int(np.prod([d.dim_value for d in dims[1:]], dtype=np.float64))
    if size > MAX_INPUT_ELEMENTS:
        raise ModelFileError(f"{p}: input {inputs[0].name!r} holds {size:,} values per sample; at most {MAX_INPUT_ELEMENTS:,} fit a dataflow design")


def _check_arity(p: Path, node: onnx.NodeProto) -> None:
    """A node has as many inputs as its operator takes, and no required one is left empty."""
    where = f"{p}: node {node.name or '(unnamed)'!r} ({node.op_type})"
    if node.domain in ("", "ai.onnx"):
        schema = onnx.defs.get_schema(node.op_type)
        if not schema.min_input <= len(node.input) <= schema.max_input:
            raise ModelFileError(f"{where} has {len(node.input)} inputs; {node.op_type} takes {schema.min_input} to {schema.max_input}")
        optional = {i for i, f in enumerate(schema.inputs) if f.option == onnx.defs.OpSchema.FormalParameterOption.Optional}
        empty = [i for i, t in enumerate(node.input) if not t and i not in optional]
    else:
        empty = [i for i, t in enumerate(node.input) if not t]
    if empty or not node.output or not all(node.output):
        raise ModelFileError(f"{where} has an empty input or output name; re-export the model")


def _check_graph(p: Path, proto: onnx.ModelProto) -> None:
    """Every tensor a node reads exists, no tensor is produced twice, outputs are produced, and the graph has no cycle.

    Nodes out of order are sorted (as qonnx's ``SortGraph`` does); a reference to nothing is
    an error naming the node, since every later pass would fail on it less clearly.
    """
    g = proto.graph
    available = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    producer: dict[str, onnx.NodeProto] = {}
    for node in g.node:
        for t in node.output:
            if t and (t in producer or t in available):
                raise ModelFileError(f"{p}: tensor {t!r} is produced twice (by node {node.name or node.op_type!r}); re-export the model")
            producer[t] = node
    for node in g.node:
        _check_arity(p, node)
        for t in node.input:
            if t not in available and t not in producer:
                raise ModelFileError(f"{p}: node {node.name or '(unnamed)'!r} ({node.op_type}) reads {t[:60]!r}, which no node, initializer or input provides; re-export the model")
    if not g.output:
        raise ModelFileError(f"{p} declares no graph output; re-export the model")
    for o in g.output:
        if o.name not in producer and o.name not in available:
            raise ModelFileError(f"{p}: graph output {o.name[:60]!r} is not computed by any node; re-export the model")
    nodes = list(g.node)
    index = {id(n): k for k, n in enumerate(nodes)}
    level = topological_levels({k: {index[id(producer[t])] for t in n.input if t not in available} for k, n in enumerate(nodes)})
    if len(level) < len(nodes):
        n = next(n for k, n in enumerate(nodes) if k not in level)
        raise ModelFileError(f"{p}: node {n.name or '(unnamed)'!r} ({n.op_type}) is on a cycle; a dataflow graph has none")
    order = [nodes[k] for k in sorted(level, key=lambda k: (level[k], k))]
    if [id(n) for n in order] != [id(n) for n in g.node]:
        sorted_nodes = [onnx.NodeProto() for _ in order]
        for dst, src in zip(sorted_nodes, order):
            dst.CopyFrom(src)
        del g.node[:]
        g.node.extend(sorted_nodes)


def load_onnx(path: str | Path) -> ModelWrapper:
    """Read an ONNX file into a ModelWrapper after the checks in the module docstring."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file")
    data = read_regular(p, "model", ModelFileError, limit=MAX_MODEL_BYTES)  # a regular file only: no pipe or device
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ModelFileError(f"{p} is not an ONNX model ({type(e).__name__}); pass a .onnx file exported by Brevitas") from None
    if len(proto.graph.node) == 0:
        raise ModelFileError(f"{p} is not an ONNX model with a graph; pass a .onnx file exported by Brevitas")
    _check_control_flow(p, proto)
    _check_external_data(p, proto)
    try:
        load_external_data_for_model(proto, str(p.resolve().parent))
        if proto.functions:
            proto = inline_local_functions(proto)
    except Exception as e:  # noqa: BLE001 - onnx's own checks of data offsets and function bodies
        raise ModelFileError(f"{p}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    _check_domains(p, proto)
    _check_graph(p, proto)
    _check_finite(p, proto)
    _check_input(p, proto)
    model = ModelWrapper(proto, fix_missing_initializer_valueinfo=False)
    fix_missing_initializer_shapes(model)  # what ModelWrapper's own check does, in linear time
    return model


def check_quantized(model: ModelWrapper, source: str = "model") -> None:
    """Raise UnquantizedModelError unless the graph holds quantization nodes."""
    if not any(n.op_type in QUANT_OPS for n in model.graph.node):
        ops = sorted({n.op_type for n in model.graph.node})
        raise UnquantizedModelError(
            f"{source} has no quantization nodes (ops: {', '.join(ops)}); FINN needs a quantized "
            "QONNX model: build it from Brevitas quantized layers and export it with "
            "brevitas.export.export_qonnx"
        )
