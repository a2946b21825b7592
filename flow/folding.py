"""Folding (PE/SIMD parallelism): FINN's target-fps heuristic, FINN folding JSON files,
validation of a folding against FINN's own rules, and export of the folding used.

The folding-config format is FINN's: ``{"Defaults": {}, "<node name>": {"PE": 4, "SIMD": 16, ...}}``.

>>> from flow.folding import FOLDING_ATTRS
>>> "PE" in FOLDING_ATTRS and "SIMD" in FOLDING_ATTRS
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow import _finn_compat
from flow.compile import BuildContext, is_hw_node
from finn.util.exception import FINNInternalError, FINNUserError

from flow.errors import FoldingError

# The node attributes FINN's builder writes to its folding-config JSON.
FOLDING_ATTRS = (
    "PE", "SIMD", "parallel_window", "ram_style", "ram_style_thresholds", "resType",
    "mem_mode", "runtime_writeable_weights", "depth_trigger_uram", "depth_trigger_bram",
)


def read_folding_file(path: str | Path) -> dict[str, Any]:
    """Read a FINN folding-config JSON, raising FoldingError if it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise FoldingError(f"folding file {p} does not exist") from None
    except json.JSONDecodeError as e:
        raise FoldingError(f"folding file {p} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise FoldingError(f"folding file {p} must map node names to attribute objects, as FINN's folding config does")
    return data


def check_folding_names(model: ModelWrapper, folding: dict[str, Any], source: str = "folding") -> None:
    """Every node the folding names must exist, and PE/SIMD must be positive integers."""
    names = {n.name for n in model.graph.node}
    missing = sorted(k for k in folding if k != "Defaults" and k not in names)
    if missing:
        hw = ", ".join(n.name for n in model.graph.node if is_hw_node(n))
        raise FoldingError(f"{source} names nodes that are not in the design: {', '.join(missing)}; its layers are: {hw}")
    for node_name, attrs in folding.items():
        for key in ("PE", "SIMD"):
            v = attrs.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise FoldingError(f"{source}: {node_name}.{key} must be a positive integer, got {v!r}")
        if node_name == "Defaults":
            continue
        inst = getCustomOp(model.get_node_from_name(node_name))
        known = inst.get_nodeattr_types()
        unknown = sorted(a for a in attrs if a not in known)
        if unknown:
            raise FoldingError(f"{source}: node {node_name} has no attribute {', '.join(unknown)}")


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


def step_fold(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Set folding: FINN's SetFolding toward ``target_fps``, a folding file, qflow's optimizer, or FINN's defaults.

    A folding (file or optimizer) may also set a layer's ``preferred_impl_style``; such
    layers are re-specialized by FINN first (:func:`flow.specialize.apply_folding`).
    """
    steps = _finn_compat.build_steps()
    fcfg = ctx.finn_config()
    Path(fcfg.output_dir, "report").mkdir(parents=True, exist_ok=True)
    mode = ctx.cfg.folding_mode
    if mode == "fps":
        model = steps.step_target_fps_parallelization(model, fcfg)
    elif mode == "file":
        from flow.specialize import apply_folding

        folding = read_folding_file(ctx.cfg.folding_file)
        check_folding_names(model, folding, source=str(ctx.cfg.folding_file))
        model, _ = apply_folding(model, folding, fcfg, Path(fcfg.output_dir) / "report" / "applied_folding_config.json")
    elif mode == "auto":
        from flow.optimizer import apply_auto_folding

        model = apply_auto_folding(model, ctx)
    check_folding_rules(model)
    return model


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
