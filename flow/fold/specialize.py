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
from pathlib import Path
from typing import Any, Mapping

from finn.builder.build_dataflow_config import DataflowBuildConfig
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.general import GiveUniqueNodeNames

from flow.compat import finn as _finn_compat
from flow.core.errors import FoldingError
from flow.core.fileio import atomic_write_json
from flow.core.vocab import HW_DOMAIN, IMPL_ATTR, IMPL_STYLES, impl_style
from flow.fold.nodeconfig import DEFAULTS, read_node_config, shown

STYLES = IMPL_STYLES


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


def check_config_file(path: str | Path) -> dict[str, Any]:
    """Read a specialize-layers config and check its format: FoldingError (one line) if it is not one.

    It may set only ``preferred_impl_style``, to ``hls`` or ``rtl`` (in a layer's entry or in
    FINN's ``Defaults``).
    """
    config = read_node_config(path, "specialize file")
    for name, attrs in config.items():
        other = sorted(a for a in attrs if a != IMPL_ATTR)
        if other:
            raise FoldingError(f"specialize file {path}: {name} sets {shown(other)}; a specialize-layers config sets only {IMPL_ATTR}")
        style = attrs.get(IMPL_ATTR)
        values = [] if style is None else style[::2] if name == DEFAULTS else [style]
        bad = [v for v in values if v not in STYLES]
        if bad:
            raise FoldingError(f"specialize file {path}: {name}.{IMPL_ATTR} must be 'hls' or 'rtl', got {str(bad[0])[:40]!r}")
    return config


def check_specialize_file(model: ModelWrapper, path: str | Path) -> dict[str, Any]:
    """:func:`check_config_file`, and every layer it names must be a generic HW layer of ``model``."""
    config = check_config_file(path)
    generic = model.transform(GiveUniqueNodeNames())  # as FINN's step names them before applying it
    layers = [n.name for n in generic.graph.node if n.domain == HW_DOMAIN]
    missing = sorted(k for k in config if k != DEFAULTS and k not in layers)
    if missing:
        raise FoldingError(f"specialize file {path} names layers that are not in the design: {shown(missing)}; its layers are: {shown(layers)}")
    return config


def respecialize(model: ModelWrapper, styles: Mapping[str, str], fpgapart: str) -> tuple[ModelWrapper, dict[str, str]]:
    """``model`` specialized again by FINN with ``styles`` (layer name -> hls/rtl); and old -> new names.

    FINN keeps a layer's current variant where the requested one cannot be built (as its
    ``step_specialize_layers`` does for any preference).
    """

    bad = {k: v for k, v in styles.items() if v not in STYLES}
    if bad:
        raise FoldingError(f"{IMPL_ATTR} must be 'hls' or 'rtl', got {bad}")
    cfg = DataflowBuildConfig(output_dir="unused", fpga_part=fpgapart, generate_outputs=[])
    with _finn_compat.finn_warnings_silenced():  # FINN warns when it keeps a variant
        out = _finn_compat.build_steps().step_specialize_layers(unspecialize(model, styles), cfg)
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
        model, rename = respecialize(model, changes, fcfg.fpga_part)
    renamed = {rename.get(k, k): v for k, v in plain.items()}
    atomic_write_json(config_path, renamed)
    fcfg = dataclasses.replace(fcfg, folding_config_file=config_path)
    return _finn_compat.build_steps().step_apply_folding_config(model, fcfg), rename
