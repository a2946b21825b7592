"""Folding (PE/SIMD parallelism): FINN's target-fps heuristic, FINN folding JSON files,
validation of a folding against FINN's own rules, and export of the folding used.

The folding-config format is FINN's: ``{"Defaults": {}, "<node name>": {"PE": 4, "SIMD": 16, ...}}``.

>>> from flow.fold.rules import FOLDING_ATTRS
>>> "PE" in FOLDING_ATTRS and "SIMD" in FOLDING_ATTRS
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finn.util.exception import FINNInternalError, FINNUserError
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.errors import FoldingError
from flow.core.vocab import IMPL_ATTR, is_hw_node
from flow.fold.nodeconfig import DEFAULTS, expand_defaults, read_node_config, shown

# The node attributes FINN's builder writes to its folding-config JSON.
FOLDING_ATTRS = (
    "PE", "SIMD", "parallel_window", "ram_style", "ram_style_thresholds", "resType",
    "mem_mode", "runtime_writeable_weights", "depth_trigger_uram", "depth_trigger_bram",
)


def read_folding_file(path: str | Path) -> dict[str, Any]:
    """Read a FINN folding-config JSON (``Defaults`` in FINN's syntax allowed), raising FoldingError if it is not one."""
    return read_node_config(path, "folding file")


def resolve_folding(model: ModelWrapper, folding: dict[str, Any], source: str = "folding") -> dict[str, dict[str, Any]]:
    """``folding`` as explicit per-node entries for ``model`` (FINN's ``Defaults`` expanded), checked.

    Every node it names must exist, PE/SIMD must be positive integers, and every attribute
    must be one the node has.
    """
    names = {n.name for n in model.graph.node}
    missing = sorted(k for k in folding if k != DEFAULTS and k not in names)
    if missing:
        layers = [n.name for n in model.graph.node if is_hw_node(n)]
        raise FoldingError(f"{source} names nodes that are not in the design: {shown(missing)}; its layers are: {shown(layers)}")
    hw = [n for n in model.graph.node if is_hw_node(n)]
    types = {n.name: getCustomOp(n).get_nodeattr_types() for n in hw}
    resolved = expand_defaults(folding, [(n.name, n.op_type) for n in hw], has=lambda name, attr: attr in types[name])
    for node_name, attrs in resolved.items():
        for key in ("PE", "SIMD"):
            v = attrs.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise FoldingError(f"{source}: {node_name}.{key} must be a positive integer, got {str(v)[:40]}")
        inst = getCustomOp(model.get_node_from_name(node_name))
        known = inst.get_nodeattr_types()
        unknown = sorted(a for a in attrs if a not in known and a != IMPL_ATTR)
        if unknown:
            raise FoldingError(f"{source}: node {node_name} has no attribute {shown(unknown)}")
        for a, v in attrs.items():
            if a == IMPL_ATTR:
                continue
            problem = attribute_problem(inst, a, v)
            if problem:
                raise FoldingError(f"{source}: {node_name}.{a} {problem}")
    return resolved


def attribute_problem(inst, attr: str, value: Any) -> str | None:
    """Why FINN would reject ``value`` for ``attr`` of ``inst`` (wrong type, not an allowed value), or None."""
    dtype, _required, default, *allowed = inst.get_nodeattr_types()[attr]
    expected = {"i": int, "f": (int, float), "s": str, "ints": list, "floats": list, "strings": list}.get(dtype)
    if expected is not None and (not isinstance(value, expected) or isinstance(value, bool) and dtype != "i"):
        return f"must be {'an integer' if dtype == 'i' else 'a number' if dtype == 'f' else 'a string' if dtype == 's' else 'a list'}, got {str(value)[:40]!r}"
    if dtype == "i" and isinstance(value, bool):
        return f"must be an integer, got {value!r}"
    if allowed and allowed[0] and value not in allowed[0]:
        return f"must be one of {', '.join(map(str, sorted(allowed[0], key=str)))}, got {str(value)[:40]!r}"
    return None


def folding_rule_violation(inst) -> str | None:
    """FINN's own verdict on one HW node's folding: ``None`` if legal, else FINN's reason.

    Runs the op's folded-shape, cycle, memory (``calc_wmem``) and HLS stream-width
    (``get_ap_int_max_w``) computations, in which FINN states its rules as asserts.
    """
    checks = [inst.get_folded_input_shape, inst.get_folded_output_shape, inst.get_exp_cycles]
    for extra in ("calc_wmem", "get_ap_int_max_w"):
        if hasattr(inst, extra):
            checks.append(getattr(inst, extra))
    for check in checks:
        try:
            check()
        except NotImplementedError:
            continue
        except (AssertionError, ZeroDivisionError, ValueError, FINNUserError, FINNInternalError) as e:
            return str(e).strip() or type(e).__name__
    return None


def check_folding_rules(model: ModelWrapper) -> None:
    """Ask FINN's own op code whether each layer's folding is legal (divisibility etc.)."""
    for node in model.graph.node:
        if not is_hw_node(node):
            continue
        inst = getCustomOp(node)
        reason = folding_rule_violation(inst)
        if reason is not None:
            attrs = {k: inst.get_nodeattr(k) for k in ("PE", "SIMD") if k in inst.get_nodeattr_types()}
            raise FoldingError(f"folding of {node.name} ({node.op_type}, {attrs}) breaks FINN's rules: {reason}")


def extract_folding(model: ModelWrapper) -> dict[str, Any]:
    """The folding of every HW layer, in FINN's folding-config format (editable, re-applicable)."""
    out: dict[str, Any] = {"Defaults": {}}
    for node in model.graph.node:
        if not is_hw_node(node):
            continue
        inst = getCustomOp(node)
        known = inst.get_nodeattr_types()
        attrs = {a: inst.get_nodeattr(a) for a in FOLDING_ATTRS if a in known}
        if attrs:
            out[node.name] = attrs
    return out
