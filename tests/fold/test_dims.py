"""Every FINN op with a folding attribute is a dimension of ``--auto`` (or named, with the reason it is not),
and the residual layers FINN folds (ElementwiseAdd, DuplicateStreams, GlobalAccPool, ...) are folded."""

from __future__ import annotations

import ast
import inspect
import textwrap

import finn.custom_op.fpgadataflow as abstract_ops
import finn.custom_op.fpgadataflow.hls as hls_ops
import finn.custom_op.fpgadataflow.rtl as rtl_ops
import pytest

from flow.fold.cost_model import CostModel
from flow.fold.dims import DIMENSIONS, NOT_DIMENSIONS, divisors, family, fold_limits, fold_values
from flow.fold.optimizer import optimize
from hw_targets import load_target

PARALLELISM = ("PE", "SIMD")


def _finn_ops_with_parallelism():
    for registry in (abstract_ops.custom_op, hls_ops.custom_op, rtl_ops.custom_op):
        for op_type, cls in sorted(registry.items()):
            inst = object.__new__(cls)  # the attribute table needs no node,
            inst.bodies = 0  # except the container ops' (FINNLoop, NodeContainer), sized by their bodies
            types = cls.get_nodeattr_types(inst)
            attrs = [a for a in PARALLELISM if a in types]
            if attrs:
                yield pytest.param(op_type, cls, attrs, id=op_type)


@pytest.mark.parametrize("op_type, cls, attrs", list(_finn_ops_with_parallelism()))
def test_every_finn_op_with_a_folding_attribute_is_a_dimension_or_says_why_not(op_type, cls, attrs):
    fam = family(cls)
    assert fam is not None, f"{op_type} has {attrs} but is neither in DIMENSIONS nor NOT_DIMENSIONS"
    if fam in NOT_DIMENSIONS:
        assert len(NOT_DIMENSIONS[fam]) > 20, f"{fam}: the reason it is not a dimension"
    else:
        assert set(attrs) <= set(DIMENSIONS[fam]), f"{op_type}: {attrs} are not all dimensions of {fam}"


def _setfolding_lists() -> dict[str, list[str]]:
    """The op-type lists in FINN's SetFolding.apply (``pe_ops``, ``simd_ops``, ...), read from its source."""
    from finn.transformation.fpgadataflow.set_folding import ELEMENTWISE_BINARY_OPS, SetFolding

    tree = ast.parse(textwrap.dedent(inspect.getsource(SetFolding.apply)))
    lists = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and isinstance(node.targets[0], ast.Name):
            names = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
            if any(isinstance(e, ast.Starred) for e in node.value.elts):
                names += ELEMENTWISE_BINARY_OPS
            lists[node.targets[0].id] = names
    lists["other"] = [c.value for c in ast.walk(tree) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return lists


def test_every_op_setfolding_folds_is_a_dimension_with_its_attribute():
    registry = {**abstract_ops.custom_op, **hls_ops.custom_op, **rtl_ops.custom_op}
    lists = _setfolding_lists()
    assert {"pe_ops", "simd_ops", "depthwise_op_exceptions"} <= set(lists) and "ElementwiseAdd_hls" in lists["pe_ops"]
    for attr, ops in (("PE", lists["pe_ops"]), ("SIMD", lists["simd_ops"]), ("PE", lists["depthwise_op_exceptions"])):
        for op in ops:
            if op in registry:  # SetFolding also names ops this finn-plus no longer registers
                assert attr in DIMENSIONS[family(registry[op])], (op, attr)
    folded = [op for op in lists["other"] if op in registry]
    assert "MVAU_hls" in folded and "LabelSelect_hls" in folded
    assert all(family(registry[op]) in DIMENSIONS for op in folded)


def test_divisors():
    assert divisors(12) == [1, 2, 3, 4, 6, 12] and divisors(1) == [1] and divisors(49) == [1, 7, 49]
    assert all(divisors(n) == [d for d in range(1, n + 1) if n % d == 0] for n in range(1, 200))


def test_residual_layers_fold_along_their_channels(residual_specialized):
    cm = CostModel(residual_specialized, load_target("pynq-z1").part)
    kinds = {}
    for name in cm.layers:
        inst = cm.instance(name)
        kinds.setdefault(family(inst), []).append(name)
        for attr, values in fold_values(inst).items():
            assert values == divisors(fold_limits(inst)[attr]), name
    for fam in ("ElementwiseBinaryOperation", "DuplicateStreams", "GlobalAccPool", "Thresholding", "MVAU", "FMPadding", "LabelSelect"):
        assert fam in kinds, f"the residual network should have a {fam}"
        for name in kinds[fam]:
            pes = {a.get("PE", a.get("SIMD")) for a, _ in cm.options(name)}
            assert max(pes) > 1, f"{name} has no parallel setting"


def test_auto_folds_the_adder_of_a_residual_block(residual_specialized):
    plan = optimize(residual_specialized, load_target("zcu104"))
    adds = [n for n in plan.folding if n.startswith("ElementwiseAdd")]
    assert adds and all(plan.folding[n]["PE"] > 1 for n in adds)
    assert not plan.predicted.bottleneck.startswith("ElementwiseAdd")
    assert plan.optimal and plan.limit.fraction == 1.0 and plan.limit.source == "fastest_layer"
