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
* FINN's ``RoundAndClipThresholds``, ``AbsorbScalarBiasIntoMultiThreshold`` and
  ``MoveScalesPastIm2Col`` restart after every layer, and ``MinimizeAccumulatorWidth`` re-infers
  every datatype after every layer (:mod:`flow.compat.finn_linear`), and FINN checks every threshold with ``np.vectorize(IntType.allowed)``, one numpy
  round-trip per value.

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

import numpy as np
import onnx
import onnx.shape_inference as si
from finn.transformation.fpgadataflow.minimize_accumulator_width import MinimizeAccumulatorWidth
from finn.transformation.streamline.absorb import AbsorbScalarBiasIntoMultiThreshold
from finn.transformation.streamline.reorder import MoveScalesPastIm2Col
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from onnx import TensorProto, helper
from qonnx.core.datatype import IntType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import is_custom_op
from qonnx.transformation import general as qonnx_general
from qonnx.transformation import infer_shapes as qonnx_infer_shapes
from qonnx.transformation.fold_constants import FoldConstants
from qonnx.transformation.infer_data_layouts import InferDataLayouts
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.remove import RemoveIdentityOps
from qonnx.util import basic as qonnx_util
from toposort import CircularDependencyError

from flow.compat.finn_linear import (
    absorb_scalar_bias_into_multithreshold,
    minimize_accumulator_width,
    move_scales_past_im2col,
    round_and_clip_thresholds,
)
from flow.compat.qonnx_index import IndexedModel, fold_constants, infer_data_layouts, infer_datatypes, remove_identity_ops
from flow.compat.qonnx_names import give_readable_tensor_names, give_unique_tensor_names

#: Float initializers with more elements than this are shown to onnx's shape inference by
#: shape only; smaller ones (Resize/Upsample scales) keep their values.
SHAPE_ONLY_MIN_ELEMENTS = 64
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


def _elements(t: TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def fix_missing_initializer_shapes(model: ModelWrapper) -> bool:
    """``ModelWrapper.check_all_tensor_shapes_specified(fix_missing_init_shape=True)`` in linear time.

    Every node input and output (in node order) that has no ValueInfo but is an initializer
    gets one appended to ``value_info``; returns whether every such tensor has a shape.
    """
    g = model.graph
    shaped = {v.name for v in g.input} | {v.name for v in g.output} | {v.name for v in g.value_info}
    inits = {t.name: t for t in g.initializer}
    ok = True
    for n in g.node:
        for name in [*(i for i in n.input if i), *n.output]:
            if name in shaped:
                continue
            init = inits.get(name)
            if init is None:
                ok = False
                continue
            g.value_info.append(helper.make_tensor_value_info(name, init.data_type, list(init.dims)))
            shaped.add(name)
    return ok


def check_all_tensor_shapes_specified(self: ModelWrapper, fix_missing_init_shape: bool = False) -> bool:
    """Replacement of ``ModelWrapper.check_all_tensor_shapes_specified`` (same result, linear)."""
    if fix_missing_init_shape:
        return fix_missing_initializer_shapes(self)
    g = self.graph
    shaped = {v.name for v in g.input} | {v.name for v in g.output} | {v.name for v in g.value_info}
    shaped |= {t.name for t in g.initializer}
    return all(name in shaped for n in g.node for name in [*(i for i in n.input if i), *n.output])


def _shape_only_copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every large float initializer reduced to its name, type and dims."""
    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    g, lg = proto.graph, light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    lg.quantization_annotation.extend(g.quantization_annotation)
    lg.sparse_initializer.extend(g.sparse_initializer)
    for t in g.initializer:
        if t.data_type in _FLOAT_TYPES and _elements(t) > SHAPE_ONLY_MIN_ELEMENTS:
            s = lg.initializer.add()
            s.name, s.data_type = t.name, t.data_type
            s.dims.extend(t.dims)
        else:
            lg.initializer.append(t)
    return light


def infer_shapes(model: ModelWrapper) -> ModelWrapper:
    """qonnx's ``InferShapes`` with the same result, without handing the weights to onnx.

    The custom ops are shown to onnx as qonnx's shape-compatible stand-ins (made from the
    full model, as qonnx does), the large float initializers by type and dims only; the
    inferred ``value_info``, inputs and outputs are written back into ``model``'s graph,
    whose nodes and initializers are never touched. As qonnx's result, a new
    ``ModelWrapper`` of the model is returned, initializers without ValueInfo given one.
    """
    light = _shape_only_copy(model.model)
    view = IndexedModel(model)  # the stand-ins look tensors up (IntQuant its output's ValueInfo)
    for i, node in enumerate(model.graph.node):
        if is_custom_op(node.domain):
            stand_in = qonnx_infer_shapes._make_shape_compatible_op(node, view)
            stand_in.name = node.name
            light.graph.node[i].CopyFrom(stand_in)
    inferred = si.infer_shapes(light).graph
    g = model.graph
    del g.value_info[:]
    g.value_info.extend(inferred.value_info)
    for dst, src in ((g.input, inferred.input), (g.output, inferred.output)):
        for d, s in zip(dst, src):
            d.CopyFrom(s)
    result = ModelWrapper(model.model, fix_missing_initializer_valueinfo=False)
    fix_missing_initializer_shapes(result)
    return result


def sort_graph(model: ModelWrapper) -> None:
    """qonnx's ``SortGraph`` in O(nodes + edges): the same order (each node placed by its longest
    path from the graph's sources, ties by original index, as ``toposort_flatten``), the same
    nodes dropped (no producer and no input that is an initializer or graph input, nothing
    depending on them), the same ``CircularDependencyError``.
    """
    g = model.graph
    nodes = list(g.node)
    if len(nodes) == 1:
        return
    producer: dict[str, int] = {}
    for idx, n in enumerate(nodes):
        for o in n.output:
            producer.setdefault(o, idx)
    sources = {t.name for t in g.initializer} | {v.name for v in g.input}
    deps: dict[int, set[int]] = {}
    for idx, n in enumerate(nodes):
        preds = {producer[t] for t in n.input if t in producer}
        if preds:
            deps[idx] = preds - {idx}
        elif any(t in sources for t in n.input):
            deps[idx] = set()
    for d in list(deps.values()):
        for p in d:
            deps.setdefault(p, set())
    users: dict[int, list[int]] = {i: [] for i in deps}
    waiting = {i: len(d) for i, d in deps.items()}
    for i, d in deps.items():
        for p in d:
            users[p].append(i)
    level = {i: 0 for i, w in waiting.items() if w == 0}
    todo = list(level)
    while todo:
        i = todo.pop()
        for u in users[i]:
            level[u] = max(level.get(u, 0), level[i] + 1)
            waiting[u] -= 1
            if waiting[u] == 0:
                todo.append(u)
    if len(level) != len(deps):
        raise CircularDependencyError({i: d for i, d in deps.items() if i not in level})
    order = sorted(level, key=lambda i: (level[i], i))
    del g.node[:]
    g.node.extend(nodes[i] for i in order)


def give_unique_parameter_tensors(model: ModelWrapper) -> None:
    """qonnx's ``GiveUniqueParameterTensors``, looking initializers up in a set and copying only
    the weights it duplicates (new names drawn as ``make_new_valueinfo_name`` draws them)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    names = {v.name for v in g.value_info} | {v.name for v in g.input} | {v.name for v in g.output}
    seen: set[str] = set()
    for n in g.node:
        for idx, name in enumerate(list(n.input)):
            if name not in inits:
                continue
            if name not in seen:
                seen.add(name)
                continue
            new = qonnx_util.random_string()
            while new in names:
                new = qonnx_util.random_string()
            model.set_initializer(new, model.get_initializer(name))
            model.set_tensor_datatype(new, model.get_tensor_datatype(name))
            names.add(new)
            n.input[idx] = new


def sort_commutative_inputs(model: ModelWrapper) -> bool:
    """qonnx's ``SortCommutativeInputsInitializerLast`` with a set of initializer names; returns whether an input moved."""
    inits = {t.name for t in model.graph.initializer}
    ops = qonnx_general.SortCommutativeInputsInitializerLast.SUPPORTED_COMMUTATIVE_OPS
    modified = False
    for node in model.graph.node:
        if node.op_type not in ops:
            continue
        ordered = [i for i in node.input if i not in inits] + [i for i in node.input if i in inits]
        for i, name in enumerate(ordered):
            if node.input[i] != name:
                modified = True
            node.input[i] = name
    return modified


_int_allowed = IntType.allowed


def int_allowed(self, value):
    """qonnx's ``IntType.allowed``, with a scalar answered without numpy (same result, a numpy bool).

    FINN checks every threshold of a layer with ``np.vectorize(dt.allowed)``, one Python call per
    value (``minimize_weight_bit_width`` on a 224x224 network makes millions); arrays go to qonnx's own.
    """
    if isinstance(value, np.ndarray):
        return _int_allowed(self, value)
    v = float(value)
    return np.bool_(self.min() <= v <= self.max() and v == round(v))


def _sort_graph_apply(self, model):
    sort_graph(model)
    return model, False


def _unique_params_apply(self, model):
    give_unique_parameter_tensors(model)
    return model, False


def _sort_commutative_apply(self, model):
    return model, sort_commutative_inputs(model)


def _infer_shapes_apply(self, model):
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


def _unique_tensor_names_apply(self, model):
    give_unique_tensor_names(model)
    return model, False


def _readable_tensor_names_apply(self, model):
    return give_readable_tensor_names(model), False


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
