"""Linear-time equivalents of qonnx 1.0.0's whole-graph passes (and of FINN's threshold rounding)
that are quadratic in graph size or copy every weight, and the context in which qonnx and FINN
use them.

qonnx's ``ModelWrapper.transform`` ends every transformation with a cleanup (``SortGraph``,
``GiveUniqueParameterTensors``, ``SortCommutativeInputsInitializerLast``, ...), and FINN's
passes re-run ``InferShapes`` after their rewrites, so these run thousands of times per
build. In qonnx 1.0.0:

* ``SortGraph`` looks up every input's producer by scanning all nodes, finds each
  producer's index with ``list.index`` and removes the nodes one by one: O(n^2); its
  ``toposort`` walks every remaining node once per level: O(n * depth);
* ``GiveUniqueParameterTensors`` and ``SortCommutativeInputsInitializerLast`` look each
  node input up in the initializer list (O(n) per lookup) and copy every weight into numpy
  on the way;
* ``InferShapes`` hands the whole model, weights included, to onnx's shape inference
  (serialized and parsed back), and wraps the result in a new ``ModelWrapper``, whose
  constructor checks every tensor's shape with a linear search (O(n^2));
* ``InferDataTypes``, ``InferDataLayouts``, ``RemoveIdentityOps``, ``FoldConstants`` and the
  tensor renaming passes look tensors up by scanning (:mod:`flow.compat.qonnx_index`,
  :mod:`flow.compat.qonnx_names`); the last two also restart after every single change;
* ``ModelWrapper``'s lookups by tensor name (value_info, shapes, consumers) build several Python
  lists over the whole graph per call (:mod:`flow.compat.qonnx_scan` makes one);
* FINN's ``FoldQuantWeights`` converts every weight of the model to numpy once per weight it
  folds (qonnx's ``make_empty_exec_context``; :class:`flow.compat.qonnx_index.LazyExecContext`)
  and infers the shapes of the whole graph after each (here once, after the last);
* FINN's ``RoundAndClipThresholds``, ``AbsorbScalarBiasIntoMultiThreshold`` and
  ``MoveScalesPastIm2Col`` restart after every layer, and ``MinimizeAccumulatorWidth`` re-infers
  every datatype after every layer (:mod:`flow.compat.finn_linear`), and FINN checks every threshold with ``np.vectorize(IntType.allowed)``, one numpy
  round-trip per value;
* FINN's ``InferDuplicateStreamsLayer`` and ``InsertDWC`` scan the graph for the readers of every tensor
  (:func:`flow.compat.finn_linear.infer_duplicate_streams`, :func:`flow.compat.finn_linear.insert_dwc`);
* FINN's ``ConvertQuantActToMultiThreshold`` converts one activation per ``apply``, with a dozen
  whole-graph scans each (:mod:`flow.compat.finn_quant_act`);
* qonnx's ``PartitionFromLambda`` (FINN's dataflow partition) scans the graph for every input and output
  of the partition (:mod:`flow.compat.qonnx_partition`);
* FINN's ``dataflow_performance`` and ``unsupported_layers`` analyses look every node's neighbours up by
  scanning (here they read an :class:`~flow.compat.qonnx_index.IndexedModel` view);
* FINN's reorder, absorb and collapse passes scan the graph per candidate node even on a run
  that changes nothing (:mod:`flow.compat.finn_guards` runs them only where their pattern occurs,
  some of them on a list view with dictionary lookups, :mod:`flow.compat.qonnx_view`).

The functions live in :mod:`flow.compat.qonnx_graph`, :mod:`flow.compat.qonnx_index`,
:mod:`flow.compat.qonnx_names` and :mod:`flow.compat.finn_linear`; this module swaps them in.
Each replacement computes the same graph, bit for bit (threshold rounding: the same values
in the same entries), in linear time (the shape inference without copying weights: onnx
sees the weights' shapes, not their values); ``tests/compat/test_qonnx_linear.py`` compares
them with the originals on real models and shows the quadratic growth of qonnx's own.
:func:`linear_qonnx` swaps them in for the duration of a ``with`` block (the compiler steps,
import normalisation and verification run inside it); outside, qonnx and FINN are unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
from finn.analysis.fpgadataflow.unsupported_layers import unsupported_layers
from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
from finn.transformation.qonnx.fold_quant_weights import FoldQuantWeights
from finn.transformation.qonnx.quant_act_to_multithreshold import ConvertQuantActToMultiThreshold
from finn.transformation.streamline.absorb import AbsorbScalarBiasIntoMultiThreshold
from finn.transformation.streamline.reorder import MoveScalesPastIm2Col
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.core.datatype import IntType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation import general as qonnx_general
from qonnx.transformation import infer_shapes as qonnx_infer_shapes
from qonnx.transformation.create_generic_partitions import PartitionFromLambda
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.lower_convs_to_matmul import LowerConvsToMatMul
from qonnx.transformation.remove import RemoveIdentityOps

from flow.compat.finn_linear import (
    InferDuplicateStreamsLayer,
    InferElementwiseBinaryOperation,
    InsertDWC,
    absorb_scalar_bias_into_multithreshold,
    elementwise_apply,
    infer_duplicate_streams,
    insert_dwc,
    minimize_accumulator_width,
    move_scales_past_im2col,
    round_and_clip_thresholds,
)
from flow.compat.finn_quant_act import convert_quant_acts
from flow.compat.qonnx import lower_convs_apply
from flow.compat.qonnx_graph import (
    check_all_tensor_shapes_specified,
    give_unique_parameter_tensors,
    graph_sources,
    infer_shapes,
    int_allowed,
    sort_commutative_inputs,
    sort_graph,
    sorted_nodes,
)
from flow.compat.qonnx_index import IndexedModel, LazyExecContext, fold_constants, infer_data_layouts, infer_datatypes, remove_identity_ops
from flow.compat.qonnx_names import give_readable_tensor_names, give_unique_tensor_names
from flow.compat.qonnx_partition import partition_from_lambda
from flow.compat import finn_guards, qonnx_scan


def _sort_graph_apply(self, model):
    sort_graph(model)
    return model, False


def _unique_params_apply(self, model):
    give_unique_parameter_tensors(model)
    return model, False


def _sort_commutative_apply(self, model):
    return model, sort_commutative_inputs(model)


#: Set while FINN's ``FoldQuantWeights.apply`` runs: its shape inference is then deferred (:func:`_fold_quant_weights_apply`).
_SHAPES_DEFERRED = threading.local()


def _infer_shapes_apply(self, model):
    if getattr(_SHAPES_DEFERRED, "pass_", None) is not None:
        _SHAPES_DEFERRED.pass_.qflow_shapes_pending = True
        return model, False
    return infer_shapes(model), False


def _infer_datatypes_apply(self, model):
    return model, infer_datatypes(model, self.allow_scaledint_dtypes)


def _infer_data_layouts_apply(self, model):
    return model, infer_data_layouts(model)


def _remove_identity_ops_apply(self, model):
    remove_identity_ops(model, self.atol)
    return model.transform(qonnx_infer_shapes.InferShapes()), False


def _fold_constants_apply(self, model):
    if fold_constants(model, self.exclude_op_types):
        model = model.transform(qonnx_infer_shapes.InferShapes())
    return model, False


def _round_thresholds_apply(self, model):
    changed = round_and_clip_thresholds(model)
    return model.transform(InferDataTypes()), changed


def _absorb_scalar_bias_apply(self, model):
    changed = absorb_scalar_bias_into_multithreshold(model, self.max_bitwidth_increase)
    return model.transform(InferDataTypes()).transform(qonnx_infer_shapes.InferShapes()), changed


def _move_scales_past_im2col_apply(self, model):
    changed = move_scales_past_im2col(model)
    return model.transform(qonnx_infer_shapes.InferShapes()).transform(InferDataTypes()), changed


def _minimize_accumulator_width_apply(self, model):
    minimize_accumulator_width(model, self.datatype_only)
    return model, False


_fold_quant_weights = FoldQuantWeights.apply


def _fold_quant_weights_apply(self, model):
    """FINN's own ``FoldQuantWeights.apply``, every weight in one call, with one execution context, its
    entries made on demand (FINN's makes every entry, once per folded weight), and the shape inference
    and cleanup it runs after each folded weight (before starting over) run once, when no weight is left.

    A fold reads no shape or value that an earlier fold changed (only its own weight's and parameters',
    and for a Conv the rank of the Conv's output, which it alone rewires). The order FINN's
    ``SortGraph`` gives the nodes after each fold is followed on the side
    (:func:`flow.compat.qonnx_graph.sorted_nodes`, no rewrite of the graph) and set once at the end:
    every fold inserts where FINN's would, in the order FINN's graph has then, so the nodes come out
    in FINN's order. The cleanup's other passes (unused tensors, static inputs, commutative inputs,
    unique weights) change nothing a later fold reads. A graph with a ``DebugMarker`` (which FINN
    removes with a whole-graph pass of its own) gets the cleanup after every fold, as in FINN."""
    g = model.graph
    per_fold = any(n.op_type == "DebugMarker" for n in g.node)
    pending = False

    def deferred(transformation, *args, **kwargs):
        nonlocal pending
        if type(transformation) is qonnx_infer_shapes.InferShapes:
            pending = True
            if not per_fold:
                return model
        return ModelWrapper.transform(model, transformation, *args, **kwargs)

    context = LazyExecContext(model)  # one for every fold: a fold reads only its own Quant's weight and parameters
    model.make_empty_exec_context = lambda: context
    model.transform = deferred
    finn_order, changed = list(g.node), False
    try:
        while True:
            before = list(g.node)
            result, folded = _fold_quant_weights(self, model)
            if not folded:
                break
            changed = True
            if per_fold:
                return result, changed
            order = _finn_order_after_fold(before, finn_order, g)
            if order is None:  # not one Quant node replaced: the cleanup now, as FINN's
                model.cleanup()
                order = list(g.node)
            finn_order = order
    finally:
        for attr in ("make_empty_exec_context", "transform"):
            model.__dict__.pop(attr, None)
    if len(finn_order) != len(g.node) or not all(a is b for a, b in zip(finn_order, g.node)):
        del g.node[:]
        g.node.extend(finn_order)
    if pending:
        result = infer_shapes(result).cleanup()
    return result, changed


def _finn_order_after_fold(before: list, finn_order: list, g) -> list | None:
    """FINN's node order after one fold: the nodes the fold inserted take the folded Quant's place in FINN's
    order (where FINN inserts them, ``before``'s order being ours), then ``SortGraph`` orders the graph."""
    now = list(g.node)
    kept = {id(n) for n in now}
    old = {id(n) for n in before}
    removed = [n for n in before if id(n) not in kept]
    inserted = [n for n in now if id(n) not in old]
    if len(removed) != 1:
        return None
    at = next(i for i, n in enumerate(finn_order) if n is removed[0])
    return sorted_nodes([*finn_order[:at], *inserted, *finn_order[at + 1:]], graph_sources(g))


def _unique_tensor_names_apply(self, model):
    give_unique_tensor_names(model)
    return model, False


def _readable_tensor_names_apply(self, model):
    return give_readable_tensor_names(model), False


#: FINN analyses that only read the graph and look every node's neighbours up by scanning it.
_READ_ONLY_ANALYSES = (dataflow_performance, unsupported_layers)
_analysis = ModelWrapper.analysis


def _indexed_analysis(self, analysis_fxn, apply_to_subgraphs=False):
    """``ModelWrapper.analysis``; a read-only FINN analysis that scans per node gets an :class:`IndexedModel` view."""
    if not apply_to_subgraphs and analysis_fxn in _READ_ONLY_ANALYSES:
        return analysis_fxn(IndexedModel(self))
    return _analysis(self, analysis_fxn, apply_to_subgraphs)


#: (owner, attribute, replacement): what :func:`linear_qonnx` swaps in.
REPLACEMENTS = (
    (qonnx_general.SortGraph, "apply", _sort_graph_apply),
    (qonnx_general.GiveUniqueParameterTensors, "apply", _unique_params_apply),
    (qonnx_general.SortCommutativeInputsInitializerLast, "apply", _sort_commutative_apply),
    (qonnx_general.GiveUniqueTensorNames, "apply", _unique_tensor_names_apply),
    (qonnx_general.GiveReadableTensorNames, "apply", _readable_tensor_names_apply),
    (qonnx_infer_shapes.InferShapes, "apply", _infer_shapes_apply),
    (InferDataTypes, "apply", _infer_datatypes_apply),
    (InferDataLayouts, "apply", _infer_data_layouts_apply),
    (RemoveIdentityOps, "apply", _remove_identity_ops_apply),
    (FoldConstants, "apply", _fold_constants_apply),
    (ModelWrapper, "check_all_tensor_shapes_specified", check_all_tensor_shapes_specified),
    (IntType, "allowed", int_allowed),
    (RoundAndClipThresholds, "apply", _round_thresholds_apply),
    (AbsorbScalarBiasIntoMultiThreshold, "apply", _absorb_scalar_bias_apply),
    (MoveScalesPastIm2Col, "apply", _move_scales_past_im2col_apply),
    (MinimizeAccumulatorWidth, "apply", _minimize_accumulator_width_apply),
    (FoldQuantWeights, "apply", _fold_quant_weights_apply),
    (InferElementwiseBinaryOperation, "apply", elementwise_apply),
    (InferDuplicateStreamsLayer, "apply", infer_duplicate_streams),
    (InsertDWC, "apply", insert_dwc),
    (ConvertQuantActToMultiThreshold, "apply", convert_quant_acts),
    (LowerConvsToMatMul, "apply", lower_convs_apply),
    (PartitionFromLambda, "apply", partition_from_lambda),
    (ModelWrapper, "get_tensor_valueinfo", qonnx_scan.get_tensor_valueinfo),
    (ModelWrapper, "get_tensor_shape", qonnx_scan.get_tensor_shape),
    (ModelWrapper, "set_tensor_shape", qonnx_scan.set_tensor_shape),
    (ModelWrapper, "set_initializer", qonnx_scan.set_initializer),
    (ModelWrapper, "find_consumers", qonnx_scan.find_consumers),
    (ModelWrapper, "analysis", _indexed_analysis),
    *finn_guards.REPLACEMENTS,
)

class _Patch:
    """Class attributes swapped in while at least one ``with`` block of this patch is open (thread-safe, reentrant)."""

    _lock = threading.Lock()

    def __init__(self, replacements):
        self.replacements = replacements
        self.depth = 0
        self.originals: list[tuple[object, str, object]] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with self._lock:
            if self.depth == 0:
                self.originals = [(owner, attr, owner.__dict__[attr]) for owner, attr, _ in self.replacements]
                for owner, attr, fn in self.replacements:
                    setattr(owner, attr, fn)
            self.depth += 1
        try:
            yield
        finally:
            with self._lock:
                self.depth -= 1
                if self.depth == 0:
                    for owner, attr, fn in self.originals:
                        setattr(owner, attr, fn)


_LINEAR = _Patch(REPLACEMENTS)
_transform = ModelWrapper.transform


def _transform_in_place(self, transformation, make_deepcopy=True, cleanup=True, apply_to_subgraphs=False, use_preorder_traversal=True):
    return _transform(self, transformation, False, cleanup, apply_to_subgraphs, use_preorder_traversal)


_IN_PLACE = _Patch(((ModelWrapper, "transform", _transform_in_place),))


def linear_qonnx():
    """A ``with`` block in which qonnx's quadratic whole-graph passes are replaced by the linear
    equivalents of this module (reentrant; restored when the outermost block exits)."""
    return _LINEAR.active()


def transforms_in_place():
    """A ``with`` block in which ``ModelWrapper.transform`` rewrites the model itself instead of a deep copy.

    qonnx copies the whole model, weights included, on every ``transform`` call, and FINN's
    streamlining makes hundreds of them (each pass, then identity removal, naming, datatype
    and layout inference, and inside the passes their own shape inference): on a 224x224
    network that copying takes longer than the rewriting. FINN's steps and passes use the
    result of ``transform`` in place of the model they called it on (``model =
    model.transform(...)``), so rewriting in place gives the same model; the caller passes a
    model it owns. ``tests/compat/test_qonnx_linear.py`` checks FINN's steps give the same
    graph either way.
    """
    return _IN_PLACE.active()
