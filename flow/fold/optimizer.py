"""Resource-constrained folding optimizer (``qflow build --auto``).

Chooses every layer's PE/SIMD, its implementation variant where FINN can build it both as
HLS and RTL (``preferred_impl_style``), and the memory/multiplier choices FINN exposes
(ram_style, mem_mode, resType, Thresholding memory triggers) to minimize the design's max cycles per frame while
the summed LUT/BRAM_18K/URAM/DSP estimates stay within ``target.budget()``. Costs come
from :class:`flow.fold.cost_model.CostModel` (FINN's own per-layer estimates, exact).

Rules respected: folding factors divide their dimension; a depthwise
ConvolutionInputGenerator gets SIMD = PE of the Pool/VVAU it feeds and a VVAU raises SIMD
only at full PE (as FINN's SetFolding couples them); parallel_window only at SIMD =
channels; every option passes FINN's own checks (folded shapes, weight memory, HLS
AP_INT_MAX_W of 8191 bits for every stream). ``wwidth_max`` (SetFolding's
``mvau_wwidth_max``, weight bits per PE) is off by default: it is SetFolding's heuristic
for when to stop raising SIMD, not a rule, and the cost model prices wide weight memories.

The data-width converters FINN inserts between layers whose stream words differ are part
of the budget: layers plus converters must fit (converter prices are FINN's, see
:mod:`flow.fold.converters`).

Algorithm: each unit (a layer, or a coupled SWG+Pool/VVAU pair, :mod:`flow.fold.units`)
keeps its Pareto-optimal options (cycles vs. resources) per choice of its streams to
neighbouring units (:mod:`flow.fold.select`). A greedy incumbent that fits is improved by
rounding the LP relaxation and by an exact MILP per cycle bound (:mod:`flow.fold.program`),
each in a binary search over the bounds (:mod:`flow.fold.search`); a MILP that
hits its time limit is never taken for "does not fit". Lower bounds (:mod:`flow.fold.bound`:
input stream, fastest layer, LP relaxation under the caps, bounds the MILP proved
infeasible) say how far the result is from the limit (``FoldingPlan.limit``); the plan is
``optimal`` when the proven lower bound reaches it. "Nothing fits" is reported only when
proven: a layer that alone breaks a cap, the cheapest settings per resource summed over a
cap, an infeasible LP relaxation, or a MILP that proved no selection fits.

The example is skipped when the doctests run: it needs a specialized design.

>>> plan = optimize(specialized_model, load_target("pynq-z1"))   # doctest: +SKIP
>>> plan.predicted.max_cycles, plan.folding["MVAU_hls_0"]          # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.finn_builder import finn_config
from flow.core.errors import InfeasibleDesignError
from flow.core.fileio import atomic_write_json
from flow.core.vocab import FINN_RESOURCE_KEYS, RESOURCES
from flow.fold.bound import CycleLimit, caps_bound, cycle_limit, separable_fits
from flow.fold.cost_model import CostEstimate, CostModel
from flow.fold.program import Status
from flow.fold.search import Outcome, solve
from flow.fold.select import Selector, Unit
from flow.fold.specialize import apply_folding
from flow.fold.units import build_units
from hw_targets import Target

_NAMES = FINN_RESOURCE_KEYS
#: Model metadata of a design folded by ``--auto``: its lower bound on cycles per frame (JSON).
CYCLE_BOUND_PROP = "qflow.cycle_bound"
#: Seconds the search may take (after pricing every layer) before the optimizer returns its best folding with its gap.
TIME_LIMIT_S = 60.0


@dataclass(frozen=True)
class FoldingPlan:
    """The optimizer's answer: a FINN folding config, the cost model's prediction for it, and its distance from the limit.

    ``optimal``: proven fastest under the caps (no folding fits at fewer max cycles);
    ``limit``: the lower bounds on max cycles and which one binds (:class:`flow.fold.bound.CycleLimit`).
    """

    folding: dict[str, dict[str, Any]]
    predicted: CostEstimate
    budget: dict[str, float]
    seconds: float
    options: int
    optimal: bool
    limit: CycleLimit
    milp_calls: int = 0
    timeouts: int = 0

    def summary(self) -> dict[str, Any]:
        p = self.predicted
        return {
            "max_cycles": p.max_cycles, "bottleneck": p.bottleneck, "totals": p.totals, "converters": p.dwc_totals,
            "budget": self.budget, "seconds": round(self.seconds, 3), "options": self.options, "optimal": self.optimal,
            "gap": round(self.limit.gap, 6), "limit": self.limit.as_dict(), "milp_calls": self.milp_calls, "milp_timeouts": self.timeouts,
        }


def _infeasible(units: list[Unit], cm: CostModel, b: np.ndarray, board: str) -> InfeasibleDesignError:
    """The error naming the resource and the layer that make every folding break the caps."""
    for u in units:
        if len(u.cycles) == 0:
            return InfeasibleDesignError(f"layer {u.names[-1]} ({cm.op_types[u.names[-1]]}) has no folding that FINN's rules accept")
    mins = np.array([u.res.min(axis=0) for u in units])
    frac = lambda x: x / np.maximum(b, 1e-9)  # noqa: E731
    for u, m in zip(units, mins):  # a layer that breaks a cap by itself, whatever its setting
        if np.all(np.any(u.res > b + 1e-9, axis=1)):
            r = int(np.argmax(frac(m)))
            return InfeasibleDesignError(
                f"no folding of the design fits {board}: layer {u.names[-1]} ({cm.op_types[u.names[-1]]}) alone "
                f"needs at least {m[r]:,.0f} {_NAMES[RESOURCES[r]]} at its cheapest setting (budget {b[r]:,.0f}); "
                "pick a larger board or a smaller/narrower layer"
            )
    need = mins.sum(axis=0)
    r = int(np.argmax(frac(need)))
    if need[r] <= b[r]:  # the layers fit alone: the converters between them do not
        return InfeasibleDesignError(
            f"no folding of the design fits {board}: the layers fit fully folded, but not together with the "
            "data-width converters FINN inserts between layers whose stream widths differ; pick a larger board"
        )
    u = units[int(np.argmax(mins[:, r]))]
    return InfeasibleDesignError(
        f"no folding of the design fits {board}: even fully folded the layers need at least "
        f"{need[r]:,.0f} {_NAMES[RESOURCES[r]]} (budget {b[r]:,.0f}); the largest share is layer "
        f"{u.names[-1]} ({cm.op_types[u.names[-1]]}) with {mins[:, r].max():,.0f}; pick a larger board or smaller/narrower layers"
    )


def optimize(
    model: ModelWrapper | None, target: Target, *, wwidth_max: int | None = None, cost_model: CostModel | None = None,
    allow_uram: bool | None = None, variants: bool = True, prefer: str | None = None, time_limit: float = TIME_LIMIT_S,
) -> FoldingPlan:
    """The folding of ``model`` (specialized HW graph) with the fewest max cycles within ``target``'s caps.

    Layers and the data-width converters between them must fit together. ``variants=False``
    keeps every layer's HLS/RTL variant; ``prefer="rtl"`` builds every layer FINN can build as
    RTL in its RTL variant (a constraint, for whole-design RTL simulation). ``time_limit``
    bounds the search once every layer is priced (seconds; the plan then says its gap). Raises
    InfeasibleDesignError, naming the resource and the layer, only when it is proven that
    nothing fits.
    """
    t0 = time.perf_counter()
    cm = cost_model or CostModel(model, target.part, variants=variants, clk_ns=target.clock_period_ns)
    budget = {r: float(target.budget()[r]) for r in RESOURCES}
    if allow_uram is None:
        allow_uram = budget["uram"] > 0
    all_units = build_units(cm, allow_uram=allow_uram, wwidth_max=wwidth_max, prefer=prefer)
    search, out, caps = fastest_selection(all_units, cm, np.array([budget[r] for r in RESOURCES]), target.name, time_limit)
    folding: dict[str, dict[str, Any]] = {"Defaults": {}}
    for u, s in zip(search.units, out.sel):
        for name, attrs in zip(u.names, u.settings[s]):
            folding[name] = dict(attrs)
    pred = cm.estimate(folding)
    bounds = search.bounds
    proven = int(bounds[min(out.lower, len(bounds) - 1)])
    limit = cycle_limit(cm, search.units, pred.max_cycles, int(bounds[caps]), proven, out.optimal)
    options = sum(len(u.cycles) for u in search.units)
    return FoldingPlan(folding, pred, budget, time.perf_counter() - t0, options, out.optimal, limit, out.milp_calls, out.timeouts)


def fastest_selection(all_units: list[Unit], cm: CostModel, b: np.ndarray, board: str, time_limit: float) -> tuple[Selector, Outcome, int]:
    """The search over ``all_units`` under caps ``b``: its Selector, its outcome and the index of the LP bound.

    Raises InfeasibleDesignError when it is proven that no selection fits, and (saying so)
    when none was found within ``time_limit`` without such a proof.
    """
    units = [u.subset(np.flatnonzero(np.all(u.res <= b + 1e-9, axis=1))) for u in all_units]  # drop options that alone break a cap
    if any(len(u.cycles) == 0 for u in units):
        raise _infeasible(all_units, cm, b, board)
    search = Selector(units, b, cm)
    if not separable_fits(search, int(search.bounds[-1])):
        raise _infeasible(all_units, cm, b, board)
    caps = caps_bound(search)
    if caps is None:
        raise InfeasibleDesignError(
            f"no folding of the design fits {board}: every layer fits alone, but no choice of settings keeps "
            f"{', '.join(_NAMES[r] for r in RESOURCES)} and the data-width converters within the caps together "
            "(the LP relaxation is infeasible); pick a larger board"
        )
    out = solve(search, caps, time_limit=time_limit)
    if out.sel is None:
        if out.status is Status.INFEASIBLE:
            raise InfeasibleDesignError(
                f"no folding of the design fits {board}: the layers fit, but no folding fits together with the "
                "data-width converters FINN inserts between layers whose stream widths differ (proven by MILP); pick a larger board"
            )
        raise InfeasibleDesignError(
            f"no folding of the design that fits {board} was found within the optimizer's {time_limit:g} s; it is not "
            "proven that none exists: fold it with --fps or --folding, or pick a larger board"
        )
    return search, out, caps


def apply_auto_folding(model: ModelWrapper, ctx) -> ModelWrapper:
    """``step_fold``'s auto mode: optimize, then apply the plan with FINN's own steps.

    Layers the plan builds in their other variant (HLS/RTL) are re-specialized by FINN
    first (:func:`flow.fold.specialize.apply_folding`), which renames them; the FINN folding
    config, with the final names, goes to ``<out>/finn/report/auto_folding_config.json``
    and is applied by FINN's ``step_apply_folding_config``; ``<out>/auto_folding.json``
    records the plan. ``mvau_wwidth_max`` bounds SIMD x weight bits only when the build
    config sets it explicitly (its default 36 is SetFolding's heuristic, not a FINN rule).
    With ``prefer_rtl`` the plan keeps the RTL variant of every layer FINN can build as RTL.
    """
    cfg = ctx.cfg
    wwidth = cfg.mvau_wwidth_max if "mvau_wwidth_max" in cfg.model_fields_set else None
    pinned = cfg.specialize_file is not None  # the user chose the variants
    plan = optimize(model, ctx.target, wwidth_max=wwidth, variants=not pinned, prefer="rtl" if cfg.prefer_rtl else None)
    fcfg = finn_config(ctx)
    path = Path(fcfg.output_dir) / "report" / "auto_folding_config.json"
    folded, rename = apply_folding(model, plan.folding, fcfg, path)
    summary = plan.summary() | {"bottleneck": rename.get(plan.predicted.bottleneck, plan.predicted.bottleneck)}
    changed = {old: new for old, new in rename.items() if folded.get_node_from_name(new).op_type != model.get_node_from_name(old).op_type}
    atomic_write_json(ctx.out_dir / "auto_folding.json", {"config": str(path), "predicted": summary, "wwidth_max": wwidth, "respecialized": changed})
    bound = {k: rename.get(v, v) if k in ("layer", "input_layer", "fastest_layer") else v for k, v in plan.limit.as_dict().items()}
    folded.set_metadata_prop(CYCLE_BOUND_PROP, json.dumps(bound))
    return folded


def cycle_bound(model: ModelWrapper) -> dict[str, Any] | None:
    """The lower bound on cycles per frame ``--auto`` recorded in a folded design (:class:`CycleLimit` as a dict), or None."""
    raw = model.get_metadata_prop(CYCLE_BOUND_PROP)
    return json.loads(raw) if raw else None
