"""The folding wing's build steps: ``specialize_layers`` (HLS or RTL per layer, FINN's step), ``fold`` (FINN's SetFolding toward a frame rate, a folding file,
qflow's optimizer, or FINN's defaults), ``minimize_bit_width``, ``design`` (the folded design and
its FINN configs written out) and ``estimate`` (FINN's analyses of it).

>>> [s.name for s in STEPS]
['specialize_layers', 'fold', 'minimize_bit_width', 'design', 'estimate']
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.compat import finn as _finn_compat
from flow.compat.finn_builder import finn_config, finn_step
from flow.compat.finn_mvu import queue_overflow
from flow.compile.registry import model_step
from flow.core.fileio import atomic_write_bytes, atomic_write_json
from flow.core.pipeline import BuildContext, BuildState, StepSpec
from flow.core.stages import Stage
from flow.core.vocab import HW_DOMAIN, IMPL_ATTR
from flow.fold.estimate import estimate
from flow.fold.optimizer import apply_auto_folding, cycle_bound
from flow.fold.rules import check_folding_rules, extract_folding, read_folding_file, resolve_folding
from flow.fold.specialize import apply_folding, check_specialize_file, respecialize, specialize_config

#: What the ``design`` step writes: the folded partition and FINN's configs that rebuild it.
DESIGN_FILES = ("design.onnx", "folding.json", "specialize_layers.json")


def step_specialize_layers(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Choose HLS or RTL variants of each layer for the target part (FINN's step).

    A ``specialize_file`` (FINN's specialize-layers config) is checked first: it must name
    this design's HW layers and ask for ``hls`` or ``rtl``. With ``prefer_rtl`` every layer
    asks for its RTL variant (FINN keeps HLS where RTL cannot be built; the file, applied
    by FINN after this, wins where it names a layer).
    """
    if ctx.cfg.specialize_file is not None:
        check_specialize_file(model, ctx.cfg.specialize_file)
    if ctx.cfg.prefer_rtl:
        for node in model.graph.node:
            if node.domain == HW_DOMAIN:
                getCustomOp(node).set_nodeattr(IMPL_ATTR, "rtl")
    return finn_step("specialize_layers", model, ctx)


def step_fold(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Set PE/SIMD (and memory/implementation options) of every layer, then check FINN's rules.

    A folding (file or optimizer) may also set a layer's ``preferred_impl_style``; such
    layers are re-specialized by FINN first (:func:`flow.fold.specialize.apply_folding`).
    """
    fcfg = finn_config(ctx)
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


def step_minimize_bit_width(model: ModelWrapper, ctx: BuildContext) -> ModelWrapper:
    """Tighten weight/accumulator widths for the chosen folding (FINN's step)."""
    return finn_step("minimize_bit_width", model, ctx)


def write_design(state: BuildState, ctx: BuildContext) -> None:
    """Write the folded dataflow partition (``design.onnx``) and FINN's folding and specialize-layers
    configs that rebuild it (``--specialize specialize_layers.json --folding folding.json``)."""
    assert state.model is not None
    state.design = ctx.will_write("design.onnx")
    atomic_write_bytes(state.design, state.model.model.SerializeToString())
    state.stages[Stage.SPECIALIZED] = state.design
    atomic_write_json(ctx.will_write("folding.json"), extract_folding(state.model))
    atomic_write_json(ctx.will_write("specialize_layers.json"), specialize_config(state.model))


def estimate_design(state: BuildState, ctx: BuildContext) -> None:
    """FINN's resource and cycle estimates of the folded design (and, with ``--auto``, the optimizer's cycle bound)."""
    assert state.model is not None
    est = estimate(state.model, ctx.target)
    state.estimate = replace(est, cycle_bound=cycle_bound(state.model)) if ctx.cfg.auto else est


#: The folding wing's build steps, in the order of a build.
STEPS: tuple[StepSpec, ...] = (
    model_step("specialize_layers", step_specialize_layers),
    model_step("fold", step_fold),
    model_step("minimize_bit_width", step_minimize_bit_width),
    StepSpec("design", write_design, requires=("model",), provides=("design",), doc="write design.onnx, folding.json and specialize_layers.json", shown=False),
    StepSpec("estimate", estimate_design, requires=("model",), provides=("estimate",), doc="FINN's resource and cycle estimates of the folded design"),
)
