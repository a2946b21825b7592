"""QONNX -> FINN-ONNX -> streamlined -> HW layers -> the dataflow partition: the compiler steps.

Each step is a plain function ``step_*(model, ctx) -> model`` built from FINN's and
qonnx's own passes (FINN's builder steps are called directly where they fit), exported
as build steps (:data:`STEPS`, :func:`flow.compile.registry.model_step`).
:func:`flow.builder.build` runs them in order and checkpoints the model after each.

>>> [s.name for s in STEPS][:3]
['qonnx_to_finn', 'set_input_datatype', 'streamline']
"""

from __future__ import annotations

from pathlib import Path

import finn.transformation.streamline.absorb as absorb
import numpy as np
import qonnx.core.data_layout as DataLayout
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.insert_topk import InsertTopK

from flow.compat import finn as _finn_compat
from flow.compat.finn_builder import finn_config, finn_step
from flow.compat.finn_shuffle import KeepOutputTransposeOnHost
from flow.compat.finn_upsample import infer_upsample_layers
from flow.compat.qonnx_index import IndexedModel
from flow.compat.qonnx_linear import transforms_in_place
from flow.compile.host_input import keep_input_quantizer_on_host
from flow.compile.load import check_quantized
from flow.compile.passes import (
    KeepFloatTailOnHost,
    check_mappable,
    prepare_qonnx,
    streamline_structures,
)
from flow.compile.registry import model_step
from flow.core.errors import InputDatatypeError, UnsupportedOpError
from flow.core.pipeline import BuildContext, StepSpec
from flow.core.stages import Stage
from flow.core.vocab import PARTITION_OP, is_hw_node

PARENT_PROP = "qflow_dataflow_parent"


def step_qonnx_to_finn(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """QONNX cleanup and conversion to the FINN-ONNX dialect (FINN's steps), then tidy-up.

    qflow's :func:`~flow.compile.passes.prepare_qonnx` runs first: it refuses convs FINN
    cannot lower, lifts 1D layers to 2D and makes a rounding ``TruncAvgPool2d`` mappable.
    """
    check_quantized(model)
    model = prepare_qonnx(model)
    return finn_step("tidy_up", finn_step("qonnx_to_finn", model, ctx), ctx)


def step_set_input_datatype(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Annotate the graph input with ``cfg.input_dtype`` (or keep the model's own annotation)."""
    name = model.graph.input[0].name
    if ctx.cfg.input_dtype is not None:
        model.set_tensor_datatype(name, DataType[ctx.cfg.input_dtype])
        model = model.transform(InferDataTypes())
    return model


def step_streamline(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """FINN's streamlining, then thresholds rounded and clipped to the integer input range, then
    qflow's structure streamlining (residual joins, average pools, depthwise convs) and a check
    that what must become hardware computes on integers.

    The clip right after streamlining keeps a signed input quantizer on an unsigned input
    from leaving negative thresholds that FINN's bit-width minimization rejects. A graph
    without those structures leaves :func:`~flow.compile.passes.streamline_structures`
    unchanged; :func:`~flow.compile.passes.check_mappable` raises a StructureError naming
    each node that cannot be mapped.
    """

    model = finn_step("streamline", model, ctx)
    with transforms_in_place():  # the model is finn_step's private copy
        model = model.transform(RoundAndClipThresholds()).transform(InferDataTypes())
    model = streamline_structures(model, owned=True)
    check_mappable(model)
    return model


def step_insert_label_select(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """End a classifier with a top-1 (TopK) node, absorbing the final scalar scale into it."""

    if not ctx.cfg.classify or model.get_nodes_by_op_type("TopK"):
        return model
    out_shape = model.get_tensor_shape(model.graph.output[0].name)
    if len(out_shape) != 2 or out_shape[1] < 2:  # one output (a score, a bipolar verdict) picks no class
        return model
    with transforms_in_place():  # the step's own model (the pipeline's, checkpointed after the step)
        model = model.transform(InsertTopK(k=1)).transform(absorb.AbsorbScalarMulAddIntoTopK())
        return model.transform(InferShapes()).transform(InferDataTypes())


def step_flatten_input_on_host(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Drop a leading Flatten/Reshape of the graph input: the host sends flat vectors.

    Flattening NCHW to NC keeps the data order, so it needs no hardware; as a FINN layer
    it would stream one pixel per cycle and bound the whole design's throughput.
    """
    inp = model.graph.input[0]
    consumers = model.find_consumers(inp.name)
    if len(consumers) != 1 or consumers[0].op_type not in ("Reshape", "Flatten"):
        return model
    node = consumers[0]
    out_shape = model.get_tensor_shape(node.output[0])
    in_shape = model.get_tensor_shape(inp.name)
    if len(out_shape) != 2 or out_shape[0] != in_shape[0] or int(np.prod(in_shape)) != int(np.prod(out_shape)):
        return model
    dtype = model.get_tensor_datatype(inp.name)
    for succ in model.find_consumers(node.output[0]):
        for i, t in enumerate(succ.input):
            if t == node.output[0]:
                succ.input[i] = inp.name
    model.graph.node.remove(node)
    model.set_tensor_shape(inp.name, out_shape)
    model.set_tensor_datatype(inp.name, dtype)
    model.set_tensor_layout(inp.name, DataLayout.NC)
    return model.transform(InferShapes()).transform(InferDataLayouts())


def step_convert_to_hw(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """FINN's conversion to HW layers (nearest-neighbour Resize included, :mod:`flow.compat.finn_upsample`),
    an input quantizer on a float input kept on the host (:mod:`flow.compile.host_input`), the float
    output tail (scale, bias, a TopK on floats) and an image's output Transpose kept on the host, then
    a check that every compute node converted."""
    model = finn_step("convert_to_hw", infer_upsample_layers(model), ctx)
    model = keep_input_quantizer_on_host(model)
    model = model.transform(KeepFloatTailOnHost()).transform(KeepOutputTransposeOnHost())
    check_hw_coverage(model)
    return model


def check_hw_coverage(model: ModelWrapper) -> None:
    """Raise a typed error for nodes that did not become HW layers.

    Non-HW nodes may only sit at the start or end of the graph (they stay on the host; a
    ``MultiThreshold`` there is the input quantizer of a float input). A hardware layer
    reading a float graph input means the input needs an integer type.
    """
    nodes = list(model.graph.node)
    hw = [is_hw_node(n) for n in nodes]
    if not any(hw):
        first = nodes[0] if nodes else None
        raise UnsupportedOpError(
            "no node became a hardware layer"
            + (f" (first node {first.name!r} is {first.op_type})" if first else "")
        )
    first_hw, last_hw = hw.index(True), len(hw) - 1 - hw[::-1].index(True)
    inp = model.graph.input[0].name
    for node, ok in zip(nodes[first_hw : last_hw + 1], hw[first_hw : last_hw + 1]):
        if not ok:
            raise UnsupportedOpError(
                f"node {node.name!r} ({node.op_type}) has no FINN hardware layer and sits "
                "between hardware layers; replace that op in the model or quantize around it"
            )
    view = IndexedModel(model)
    for k, node in enumerate(nodes[: last_hw + 1]):
        if not is_hw_node(node) and (node.op_type != "MultiThreshold" or k < first_hw):
            continue
        dt = view.get_tensor_datatype(node.input[0])
        if dt.is_integer():
            continue
        if node.input[0] == inp:
            raise InputDatatypeError(
                f"node {node.name!r} ({node.op_type}) reads {dt.name} values from {node.input[0]!r}; "
                "FINN thresholds need integer inputs: pass --input-dtype (e.g. --input-dtype UINT8 "
                "for raw 0..255 pixels)"
            )
        raise UnsupportedOpError(
            f"node {node.name!r} ({node.op_type}) computes on {dt.name} values; quantize its input "
            "(e.g. a Brevitas QuantIdentity before it)"
        )


def step_create_dataflow_partition(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Minimize bit widths, then cut the HW nodes into FINN's dataflow partition.

    Returns the partition (the accelerator); the host-side parent graph is saved and its
    path recorded in the model's metadata so verification can run the whole design.
    """
    steps = _finn_compat.build_steps()
    fcfg = finn_config(ctx)
    (Path(fcfg.output_dir) / "intermediate_models").mkdir(parents=True, exist_ok=True)
    model = steps.step_minimize_bit_width_initial(model, fcfg)
    child = steps.step_create_dataflow_partition(model, fcfg)
    parent = Path(fcfg.output_dir) / "intermediate_models" / "dataflow_parent.onnx"
    child.set_metadata_prop(PARENT_PROP, str(parent.resolve()))
    return child


def dataflow_parent(model: ModelWrapper) -> ModelWrapper | None:
    """The host-side parent graph of a dataflow partition, if the build recorded it."""
    path = model.get_metadata_prop(PARENT_PROP)
    return ModelWrapper(path) if path and Path(path).is_file() else None


def assemble_design(child: ModelWrapper, child_path: Path) -> ModelWrapper:
    """The parent graph with its partition node pointing at ``child_path`` (for execution)."""
    parent = dataflow_parent(child)
    if parent is None:
        return child
    for node in parent.get_nodes_by_op_type(PARTITION_OP):
        getCustomOp(node).set_nodeattr("model", str(Path(child_path).resolve()))
    return parent


#: The compiler's build steps, in the order of a build: QONNX in, the dataflow partition of HW layers out.
STEPS: tuple[StepSpec, ...] = (
    model_step("qonnx_to_finn", step_qonnx_to_finn),
    model_step("set_input_datatype", step_set_input_datatype, produces=Stage.FINN_ONNX),
    model_step("streamline", step_streamline, produces=Stage.STREAMLINED),
    model_step("flatten_input_on_host", step_flatten_input_on_host),
    model_step("insert_label_select", step_insert_label_select, produces=Stage.STREAMLINED_INTEGER),
    model_step("convert_to_hw", step_convert_to_hw, produces=Stage.HW),
    model_step("create_dataflow_partition", step_create_dataflow_partition),
)
