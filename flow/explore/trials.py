"""One trial of ``qflow search``: hardware first, then multi-fidelity training, reported to Optuna.

A point's hardware barely depends on its trained weights, so every trial first exports the
*untrained* network at its point and builds it with ``--auto`` folding (FINN's estimates,
qflow's exact cost model): :func:`estimate_hardware`. It is not trained when

* no folding fits the board (the optimizer's reason is kept),
* its frame rate is below the search's ``min_fps``, or
* an earlier point at least as precise (every layer's bits, every width, the same
  technique) is at least as good on hardware (frames/s and cost): training this one could
  not give a point the front lacks (:func:`dominated_by`).

Otherwise it trains with the recipe's technique on the training set minus a held-out
validation split. In a single-objective study it reports validation accuracy to Optuna after
every epoch and Optuna's pruner (successive halving or Hyperband) stops weak trials early. The
trial's values are its final validation accuracy, and in a three-objective study also its
frames/s and cost; the test set is left for the finalists (:mod:`flow.explore.finalize`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from flow.builder.pipeline import build, output_dir
from flow.core.errors import InfeasibleDesignError
from flow.core.outdir import OutputDir
from flow.core.vocab import RESOURCES
from flow.explore.recipe import Recipe
from flow.explore.rows import TRIAL_METRICS, TrialRow
from flow.explore.run import Prepared, check_recipe, train_recipe
from flow.explore.space import Point, SearchSpace
from flow.nn.export import export_qonnx
from flow.nn.train import evaluate
from flow.report.schema import Report

COSTS = ("lut", "util")
#: Metrics a trial records (user attributes), besides its parameters; resources are layers plus converters.
METRICS = TRIAL_METRICS


def cost_of(report: Report, cost: str, weights: dict[str, float] | None = None) -> float:
    """``lut`` (layers plus converters, FINN's estimate) or ``util`` (weighted mean share of each budgeted resource)."""
    used = report.resources_used()
    if cost == "lut":
        return float(used["lut"])
    w = weights or {}
    num = den = 0.0
    for r, u in used.items():
        budget = report.budget.get(r, 0)
        if budget:
            num += w.get(r, 1.0) * u / budget
            den += w.get(r, 1.0)
    return num / den if den else 0.0


@dataclass(frozen=True)
class Hardware:
    """FINN's estimates of a point's design, built from the untrained network."""

    fps: float
    cost: float
    fits: bool
    metrics: dict[str, Any]


def estimate_hardware(recipe: Recipe, out_dir: Path, *, cost: str = "lut", cost_weights: dict[str, float] | None = None) -> Hardware:
    """Build the recipe's untrained network with auto folding (no verification); InfeasibleDesignError if nothing fits.

    The trial's folder holds the exported model and the build's reports; the build's checkpoints
    and FINN folders are removed afterwards (only the files the build wrote).
    """
    prep = check_recipe(recipe, load_train=False, progress=False, log=lambda _: None)
    trial = OutputDir(out_dir, results=("untrained.qonnx.onnx",))
    trial.claim()
    onnx_path = trial.will_write("untrained.qonnx.onnx")
    export_qonnx(prep.model, onnx_path, prep.test_set.input_shape)
    trial.close()
    cfg = recipe.build.model_copy(update={"verify_samples": 0})
    hw_build = output_dir(trial.folder("build"), cfg)
    hw_build.claim()
    t0 = time.perf_counter()
    try:
        report = build(onnx_path, cfg, hw_build, model_name=recipe.name).report
    finally:
        hw_build.discard(("checkpoints", "finn_build", "finn"))
    used = report.resources_used()
    metrics = {"fps": float(report.throughput_fps), "cost": cost_of(report, cost, cost_weights), **{k: float(used[k]) for k in RESOURCES},
               "latency_us": float(report.latency_us), "max_cycles": int(report.max_cycles), "fits": bool(report.fits),
               "build_s": round(time.perf_counter() - t0, 3), "hardware_report": str(out_dir / "build" / "report.json")}
    return Hardware(metrics["fps"], metrics["cost"], metrics["fits"], metrics)


def dominated_by(point: Point, hw: Hardware, trials: list, space: SearchSpace) -> int | None:
    """The number of an earlier trial at least as precise as ``point`` and at least as good on hardware, if any."""
    for t in trials:
        u = t.user_attrs
        if "fps" not in u or "cost" not in u or t.state not in (TrialState.COMPLETE, TrialState.RUNNING):
            continue
        if u.get("dominated_by") is not None or u.get("pruned_at_epoch") is not None:
            continue
        other = space.point(t.params)
        if other == point:
            continue
        if u["fps"] >= hw.fps and u["cost"] <= hw.cost and other.precision_at_least(point):
            return t.number
    return None


def with_validation(prep: Prepared, n_val: int, seed: int) -> Prepared:
    """``prep`` training on its training set minus ``n_val`` held-out samples, and testing on those."""
    rest, val = prep.train_set.hold_out(min(n_val, len(prep.train_set) // 5), seed=seed)
    prep.job.train_set, prep.job.test_set = rest, val
    return Prepared(prep.recipe, rest, val, prep.model, prep.job)


def train_trial(trial: optuna.Trial, recipe: Recipe, *, val_samples: int) -> dict[str, Any]:
    """Train ``recipe``; in a single-objective study, report validation accuracy to ``trial`` after every
    epoch and raise TrialPruned when Optuna says so (Optuna prunes single-objective studies only)."""
    prep = with_validation(check_recipe(recipe, progress=False, log=lambda _: None), val_samples, recipe.seed)
    epochs_run = [0]
    single = len(trial.study.directions) == 1

    def report_epoch(epoch: int, model: torch.nn.Module) -> None:
        epochs_run[0] = epoch
        if not single:
            return
        acc = evaluate(model, prep.test_set)
        trial.report(acc, epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch)
            trial.set_user_attr("accuracy", acc)
            raise optuna.TrialPruned(f"validation accuracy {100 * acc:.2f}% after epoch {epoch}")

    trained = train_recipe(prep, on_epoch=report_epoch, log=lambda _: None)
    return {"accuracy": float(trained.accuracy), "epochs_run": epochs_run[0] or recipe.train.epochs,
            "train_s": round(trained.train_seconds, 3)}


def prune_before_training(trial: optuna.Trial, reason_key: str, reason: str) -> None:
    trial.set_user_attr(reason_key, reason)
    raise optuna.TrialPruned(reason)


def trial_values(trial, accuracy: float, fps: float, cost: float) -> float | tuple[float, float, float]:
    """What a trial reports to its study: validation accuracy, or (accuracy, frames/s, cost) in a three-objective study."""
    return float(accuracy) if len(trial.study.directions) == 1 else (float(accuracy), float(fps), float(cost))


def run_trial(trial: optuna.Trial, recipe: Recipe, point: Point, space: SearchSpace, trial_dir: Path, *, min_fps: float,
              val_samples: int, cost: str, cost_weights: dict[str, float] | None) -> float | tuple[float, float, float]:
    """Hardware first, then training (see the module docstring); returns :func:`trial_values`."""
    try:
        hw = estimate_hardware(recipe, trial_dir, cost=cost, cost_weights=cost_weights)
    except InfeasibleDesignError as e:
        prune_before_training(trial, "infeasible", " ".join(str(e).split()))
    for k, v in hw.metrics.items():
        trial.set_user_attr(k, v)
    if hw.fps < min_fps:
        prune_before_training(trial, "below_min_fps", f"{hw.fps:,.0f} FPS < {min_fps:,.0f}")
    other = dominated_by(point, hw, trial.study.get_trials(deepcopy=False), space)
    if other is not None:
        trial.set_user_attr("dominated_by", other)
        prune_before_training(trial, "hardware_dominated", f"trial {other} is at least as precise and as good on hardware")
    result = train_trial(trial, recipe, val_samples=val_samples)
    for k, v in result.items():
        trial.set_user_attr(k, v)
    return trial_values(trial, result["accuracy"], hw.fps, hw.cost)


def reason(t) -> str | None:
    """Why a trial did not complete, in words."""
    u = t.user_attrs
    if u.get("pruned_at_epoch") is not None:
        return f"stopped by the pruner after epoch {u['pruned_at_epoch']}"
    for key in ("infeasible", "below_min_fps", "hardware_dominated", "error"):
        if u.get(key):
            return f"{key.replace('_', ' ')}: {u[key]}"
    if u.get("surplus"):
        return "surplus"
    if t.state == TrialState.FAIL:
        return "process died (stale heartbeat); re-queued"
    return None


def trial_rows(study, space: SearchSpace) -> list[TrialRow]:
    """One row per trial: number, state, parameters, metrics and why it did not complete."""
    return [TrialRow(number=t.number, state=t.state.name, params={k: t.params.get(k) for k in space.params},
                     **{k: t.user_attrs.get(k) for k in METRICS}, retry_of=t.system_attrs.get("failed_trial"),
                     duplicate_of=t.user_attrs.get("duplicate_of"), reason=reason(t))
            for t in study.get_trials(deepcopy=False)]
