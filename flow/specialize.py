"""HLS or RTL: which FINN implementation variant each layer uses, and changing it.

FINN picks a variant per HW layer in ``SpecializeLayers`` and lets users override it with
``preferred_impl_style`` set on the *generic* layers, through a specialize-layers config
(``{"MVAU_3": {"preferred_impl_style": "rtl"}}``, applied by FINN's
``step_specialize_layers``). Folding configs name the *specialized* layers
(``MVAU_rtl_0``), so changing a variant after specialization renames layers. This module:

* :func:`unspecialize` turns a specialized graph back into generic HW layers (FINN's
  names before specialization), each asking for its current (or a requested) variant;
* :func:`specialize_config` is the specialize-layers config reproducing a design
  (``qflow build --specialize``), :func:`check_specialize_file` validates one;
* :func:`respecialize` re-runs FINN's ``step_specialize_layers`` with requested variants
  and says how the layers were renamed;
* :func:`alternatives` is the other variant FINN accepts for each layer, if any;
* :func:`apply_folding` applies a folding that may also choose variants.

>>> split_styles({"Defaults": {}, "MVAU_hls_0": {"PE": 2, "preferred_impl_style": "rtl"}})
({'Defaults': {}, 'MVAU_hls_0': {'PE': 2}}, {'MVAU_hls_0': 'rtl'})
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.general import GiveUniqueNodeNames

from flow import _finn_compat
from flow.compile import HW_DOMAIN, is_hw_node
from flow.errors import FoldingError
from flow.fileio import atomic_write_json

IMPL_ATTR = "preferred_impl_style"
STYLES = ("hls", "rtl")


def impl_style(node) -> str | None:
    """``"hls"`` or ``"rtl"`` for a specialized HW node, ``None`` otherwise."""
    if not is_hw_node(node) or node.domain == HW_DOMAIN:
        return None
    return node.domain.rsplit(".", 1)[-1]


def unspecialize(model: ModelWrapper, styles: Mapping[str, str] = {}) -> ModelWrapper:
    """A copy of ``model`` with generic HW layers, each asking for ``styles[name]`` or its current variant.

    Layers get FINN's generic names (``MVAU_0``), as before ``step_specialize_layers``.
    """
    m = ModelWrapper(copy.deepcopy(model.model))
    for i, node in enumerate(list(m.graph.node)):
        style = impl_style(node)
        if style is None:
            continue
        base = node.op_type.removesuffix("_" + style)
        generic = helper.make_node(base, node.input, node.output, domain=HW_DOMAIN, name=node.name)
        generic.attribute.extend(a for a in node.attribute if a.name != IMPL_ATTR)
        inst = getCustomOp(generic)
        known = inst.get_nodeattr_types()
        for a in [a for a in generic.attribute if a.name not in known]:  # the variant's own attributes
            generic.attribute.remove(a)
        inst.set_nodeattr(IMPL_ATTR, styles.get(node.name, style))
        m.graph.node.remove(node)
        m.graph.node.insert(i, generic)
    return m.transform(GiveUniqueNodeNames())


def specialize_config(model: ModelWrapper) -> dict[str, dict[str, str]]:
    """FINN's specialize-layers config (generic names) that reproduces ``model``'s variants."""
    generic = unspecialize(model)
    out: dict[str, dict[str, str]] = {"Defaults": {}}
    for node in generic.graph.node:
        if node.domain == HW_DOMAIN:
            out[node.name] = {IMPL_ATTR: getCustomOp(node).get_nodeattr(IMPL_ATTR)}
    return out


def check_specialize_file(model: ModelWrapper, path: str | Path) -> dict[str, Any]:
    """Read a specialize-layers config and check it against ``model`` (generic HW layers).

    Raises FoldingError if the file is not FINN's config format, names layers the design
    does not have, or asks for a variant other than ``hls``/``rtl``.
    """
    from flow.folding import read_folding_file

    config = read_folding_file(path)
    generic = model.transform(GiveUniqueNodeNames())  # as FINN's step names them before applying it
    layers = [n.name for n in generic.graph.node if n.domain == HW_DOMAIN]
    missing = sorted(k for k in config if k != "Defaults" and k not in layers)
    if missing:
        raise FoldingError(f"specialize file {path} names layers that are not in the design: {', '.join(missing)}; its layers are: {', '.join(layers)}")
    for name, attrs in config.items():
        style = attrs.get(IMPL_ATTR)
        if style is not None and style not in STYLES:
            raise FoldingError(f"specialize file {path}: {name}.{IMPL_ATTR} must be 'hls' or 'rtl', got {style!r}")
    return config


def respecialize(model: ModelWrapper, styles: Mapping[str, str], fpgapart: str) -> tuple[ModelWrapper, dict[str, str]]:
    """``model`` specialized again by FINN with ``styles`` (layer name -> hls/rtl); and old -> new names.

    FINN keeps a layer's current variant where the requested one cannot be built (as its
    ``step_specialize_layers`` does for any preference).
    """
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    bad = {k: v for k, v in styles.items() if v not in STYLES}
    if bad:
        raise FoldingError(f"{IMPL_ATTR} must be 'hls' or 'rtl', got {bad}")
    cfg = DataflowBuildConfig(output_dir="unused", fpga_part=fpgapart, generate_outputs=[])
    finn_log = logging.getLogger("finn_logger")  # FINN warns when it keeps a variant
    level = finn_log.level
    finn_log.setLevel(logging.ERROR)
    try:
        out = _finn_compat.build_steps().step_specialize_layers(unspecialize(model, styles), cfg)
    finally:
        finn_log.setLevel(level)
    by_output = {n.output[0]: n.name for n in out.graph.node}
    return out, {n.name: by_output[n.output[0]] for n in model.graph.node}


def alternatives(model: ModelWrapper, fpgapart: str) -> tuple[ModelWrapper, dict[str, str]]:
    """``model`` with every layer asking FINN for its other variant; and layer -> its alternative's name.

    Only layers FINN can actually build both ways appear in the mapping.
    """
    flipped = {n.name: ("rtl" if impl_style(n) == "hls" else "hls") for n in model.graph.node if impl_style(n)}
    alt, rename = respecialize(model, flipped, fpgapart)
    ops = {n.name: n.op_type for n in alt.graph.node}
    return alt, {old: new for old, new in rename.items() if old in flipped and ops[new] != model.get_node_from_name(old).op_type}


def split_styles(folding: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """A folding without ``preferred_impl_style`` entries, and those entries (layer -> style)."""
    plain, styles = {}, {}
    for name, attrs in folding.items():
        plain[name] = {k: v for k, v in attrs.items() if k != IMPL_ATTR}
        if IMPL_ATTR in attrs:
            styles[name] = attrs[IMPL_ATTR]
    return plain, styles


def apply_folding(model: ModelWrapper, folding: Mapping[str, Mapping[str, Any]], fcfg, config_path: Path) -> tuple[ModelWrapper, dict[str, str]]:
    """Apply ``folding`` (FINN folding config, optionally with variants) with FINN's own steps.

    Layers whose ``preferred_impl_style`` differs from their variant are re-specialized first
    (:func:`respecialize`); the folding is then renamed accordingly, written to
    ``config_path`` (FINN's folding-config JSON) and applied by FINN's
    ``step_apply_folding_config``. Returns the folded model and old -> new layer names.
    """
    plain, styles = split_styles(folding)
    changes = {k: v for k, v in styles.items() if impl_style(model.get_node_from_name(k)) != v}
    rename = {n.name: n.name for n in model.graph.node}
    if changes:
        model, rename = respecialize(model, changes, fcfg._resolve_fpga_part())
    renamed = {rename.get(k, k): v for k, v in plain.items()}
    atomic_write_json(config_path, renamed)
    fcfg = dataclasses.replace(fcfg, folding_config_file=config_path)
    return _finn_compat.build_steps().step_apply_folding_config(model, fcfg), rename
