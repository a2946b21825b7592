"""The ``fold`` build step: FINN's SetFolding toward a frame rate, a folding file, qflow's optimizer, or FINN's defaults."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper

from flow.compat import finn as _finn_compat
from flow.compat.finn_mvu import queue_overflow
from flow.compile.context import BuildContext
from flow.compile.registry import register_step
from flow.compile.specialize import apply_folding, respecialize
from flow.fold.optimizer import apply_auto_folding
from flow.fold.rules import check_folding_rules, read_folding_file, resolve_folding


@register_step("fold")
def step_fold(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Set PE/SIMD (and memory/implementation options) of every layer, then check FINN's rules.

    A folding (file or optimizer) may also set a layer's ``preferred_impl_style``; such
    layers are re-specialized by FINN first (:func:`flow.compile.specialize.apply_folding`).
    """
    fcfg = ctx.finn_config()
    Path(fcfg.output_dir, "report").mkdir(parents=True, exist_ok=True)
    mode = ctx.cfg.folding_mode
    if mode == "fps":
        model = _finn_compat.build_steps().step_target_fps_parallelization(model, fcfg)
    elif mode == "file":
        source = str(ctx.cfg.folding_file)
        folding = resolve_folding(model, read_folding_file(ctx.cfg.folding_file), source=source)
        model, _ = apply_folding(model, folding, fcfg, Path(fcfg.output_dir) / "report" / "applied_folding_config.json")
    elif mode == "auto":
        model = apply_auto_folding(model, ctx)
    model = avoid_mvu_queue_overflow(model, ctx.target.part, ctx.target.clock_period_ns)
    check_folding_rules(model)
    return model


#: Model metadata: the layers moved from RTL to HLS after folding, and why (JSON, new name -> reason).
RTL_TO_HLS_PROP = "qflow.rtl_to_hls"
log = logging.getLogger(__name__)


def avoid_mvu_queue_overflow(model: ModelWrapper, part: str, clk_ns: float) -> ModelWrapper:
    """``model`` with every ``MVAU_rtl`` whose folding makes finn-rtllib's output queue overflow
    under back-pressure (:mod:`flow.compat.finn_mvu`) specialized as ``MVAU_hls`` instead, same folding."""
    hazards = {n.name: why for n in model.graph.node if (why := queue_overflow(model, n, part, clk_ns))}
    if not hazards:
        return model
    model, rename = respecialize(model, dict.fromkeys(hazards, "hls"), part)
    moved = {rename[k]: f"{k} built as HLS: {why}" for k, why in hazards.items()}
    for note in moved.values():
        log.warning(note)
    model.set_metadata_prop(RTL_TO_HLS_PROP, json.dumps(moved))
    return model
