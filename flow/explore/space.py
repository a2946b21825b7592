"""The search space of ``qflow search`` and the evaluation of one design point.

A point is every layer's weight bit width and every hidden layer's activation bit width
(the recipe's ``model.layers``); the input quantizer follows the models' rule and uses the
activation bits of the first layer (``model.input_bits = act bits of layers[0]``). Folding
is not a search variable: every point is compiled with ``auto=True``, so qflow's
resource-constrained optimizer picks the fastest folding that fits the target, and the
objectives are read from FINN's estimates in the build report.

Technique: by default every point is trained with the recipe's own ``[technique]`` (QAT,
PTQ, distillation, low-rank). Given ``techniques`` (registered technique names, :mod:`flow.nn.techniques.registry`), the
technique becomes a searched parameter too (``technique``), each choice being the recipe's
technique section with that method: ``qat`` (plain quantization-aware training), ``ptq``
(float training, then Brevitas post-training quantization), ``distill`` (QAT with
knowledge distillation) and ``lowrank`` (SVD factorization, then QAT); options of the
recipe's own section for that technique (e.g. its ``[technique.lowrank]`` energy) are kept.

>>> from flow.explore.recipe import recipe_from_dict
>>> space = search_space(recipe_from_dict({"model": {"name": "tfc"}}))
>>> space.layers, space.size
(('fc0', 'fc1', 'fc2', 'fc3'), 16384)
>>> search_space(recipe_from_dict({"model": {"name": "tfc"}}), techniques=("qat", "ptq")).size
32768
>>> space.layer_bits({"fc0.weight_bits": 4, "fc0.act_bits": 2, "fc1.weight_bits": 2, "fc1.act_bits": 2,
...                   "fc2.weight_bits": 2, "fc2.act_bits": 2, "fc3.weight_bits": 8})["fc3"]
{'weight_bits': 8}
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flow.core import pareto as fronts
from flow.core.errors import ConfigError
from flow.core.fileio import atomic_write_text
from flow.core.vocab import RESOURCES
from flow.explore.recipe import Recipe, recipe_from_dict
from flow.explore.run import run
from flow.nn.techniques import registry as techniques_registry
from flow.report.schema import Report
from models import build_model

BIT_CHOICES = (1, 2, 4, 8)
COSTS = ("lut", "util")
TECHNIQUE_PARAM = "technique"


@dataclass(frozen=True)
class SearchSpace:
    """Per-layer bit widths (``<layer>.weight_bits`` for every layer, ``<layer>.act_bits`` for
    all but the output layer) and, when several ``techniques`` are given, the technique."""

    layers: tuple[str, ...]
    weight_bits: tuple[int, ...] = BIT_CHOICES
    act_bits: tuple[int, ...] = BIT_CHOICES
    techniques: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, tuple]:
        """Parameter name -> choices, in a fixed order."""
        out: dict[str, tuple] = {}
        for i, name in enumerate(self.layers):
            out[f"{name}.weight_bits"] = self.weight_bits
            if i < len(self.layers) - 1:
                out[f"{name}.act_bits"] = self.act_bits
        if len(self.techniques) > 1:
            out[TECHNIQUE_PARAM] = self.techniques
        return out

    def technique(self, params: dict[str, Any]) -> str | None:
        """The point's technique (``None``: the recipe's own)."""
        if len(self.techniques) == 1:
            return self.techniques[0]
        return params.get(TECHNIQUE_PARAM)

    @property
    def size(self) -> int:
        n = 1
        for choices in self.params.values():
            n *= len(choices)
        return n

    def sample(self, trial) -> dict[str, Any]:
        """Suggest every parameter on an Optuna trial (fixed params of an enqueued retry are kept)."""
        out = {}
        for k, c in self.params.items():
            v = trial.suggest_categorical(k, list(c))
            out[k] = v if k == TECHNIQUE_PARAM else int(v)
        return out

    def layer_bits(self, params: dict[str, Any]) -> dict[str, dict[str, int]]:
        """``params`` as the recipe's ``model.layers`` table."""
        out: dict[str, dict[str, int]] = {}
        for key, value in params.items():
            if key == TECHNIQUE_PARAM:
                continue
            layer, field = key.split(".", 1)
            out.setdefault(layer, {})[field] = int(value)
        return {name: out[name] for name in self.layers if name in out}


def _check_bits(choices, what: str) -> tuple[int, ...]:
    vals = tuple(sorted({int(b) for b in choices}))
    if not vals or any(not 1 <= b <= 8 for b in vals):
        raise ConfigError(f"search: {what} choices must be bit widths 1..8, got {list(choices)!r}")
    return vals


def search_space(recipe: Recipe, weight_bits=BIT_CHOICES, act_bits=BIT_CHOICES, techniques=()) -> SearchSpace:
    """The space for ``recipe``'s model; layer names come from building the model once."""
    techs = tuple(dict.fromkeys(techniques))
    known = techniques_registry.names()
    bad = [t for t in techs if t not in known]
    if bad:
        raise ConfigError(f"search: unknown technique {', '.join(map(repr, bad))}; choose from {', '.join(known)}")
    for t in techs:  # every technique table must be valid for this recipe before any trial runs
        recipe_from_dict({**recipe.model_dump(mode="json", exclude_unset=True), "technique": techniques_registry.section_for(t, recipe.technique)}, source=f"search technique {t!r}")
    model = build_model(recipe.model.name, **recipe.model.build_kwargs())
    return SearchSpace(tuple(model.layer_names), _check_bits(weight_bits, "weight"), _check_bits(act_bits, "activation"), techs)


def point_recipe(recipe: Recipe, space: SearchSpace, params: dict[str, Any], *, target: str, name: str | None = None,
                 epochs: int | None = None, max_train_samples: int | None = None, threads: int | None = None,
                 verify_samples: int | None = None) -> Recipe:
    """``recipe`` with the point's per-layer bits, auto folding for ``target`` and optional training overrides."""
    d = recipe.model_dump(mode="json", exclude_unset=True)
    for section in ("model", "train", "build"):
        d.setdefault(section, {})
    layers = space.layer_bits(params)
    d["model"]["layers"] = layers
    d["model"]["input_bits"] = layers[space.layers[0]]["act_bits"]
    d["technique"] = techniques_registry.section_for(space.technique(params), recipe.technique)
    if name is not None:
        d["name"] = name
    for key, value in (("epochs", epochs), ("max_train_samples", max_train_samples), ("threads", threads)):
        if value is not None:
            d["train"][key] = value
    b = d["build"]
    b.update(target=target, auto=True)
    b.pop("target_fps", None)
    b.pop("folding_file", None)
    b.pop("specialize_file", None)  # the optimizer picks each point's HLS/RTL variants
    if verify_samples is not None:
        b["verify_samples"] = verify_samples
    return recipe_from_dict(d, source="search point")


def cost_of(report: Report, cost: str, weights: dict[str, float] | None = None) -> float:
    """The cost objective: ``lut`` (FINN's LUT estimate) or ``util`` (weighted mean of used/budget over resources with a budget)."""
    if cost == "lut":
        return float(report.totals["lut"])
    if cost != "util":
        raise ConfigError(f"search: cost must be one of {', '.join(COSTS)}, got {cost!r}")
    w = weights or {}
    num = den = 0.0
    for r, used in report.totals.items():
        budget = report.budget.get(r, 0)
        if budget:
            num += w.get(r, 1.0) * used / budget
            den += w.get(r, 1.0)
    return num / den if den else 0.0


def evaluate_point(recipe: Recipe, out_dir: str | Path, *, cost: str = "lut", cost_weights: dict[str, float] | None = None,
                   keep_checkpoints: bool = False) -> dict[str, Any]:
    """Run the recipe (its technique and ``recipe.train`` budget) without verification and read FINN's estimates.

    Raises :class:`flow.core.errors.InfeasibleDesignError` when no folding fits the target.
    """
    out = Path(out_dir)
    no_verify = recipe.build.model_copy(update={"verify_samples": 0})
    try:
        result = run(recipe.model_copy(update={"build": no_verify}), out, progress=False, log=lambda _: None)
    finally:
        if not keep_checkpoints:
            for sub in ("checkpoints", "finn_build"):
                shutil.rmtree(out / sub, ignore_errors=True)
    r = result.report
    return {
        "accuracy": float(result.accuracy),
        "cost": cost_of(r, cost, cost_weights),
        "fps": float(r.throughput_fps),
        **{k: float(r.totals[k]) for k in RESOURCES},
        "latency_us": float(r.latency_us),
        "max_cycles": int(r.max_cycles),
        "fits": bool(r.fits),
        "train_s": round(result.train_seconds, 3),
        "build_s": round(sum(r.timings_s.values()), 3),
        "report": str(out / "report.json"),
    }


def trial_rows(study, space: SearchSpace) -> list[dict[str, Any]]:
    """One flat row per trial: number, state, parameters, metrics and why it did not complete."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        u = t.user_attrs
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        row.update({k: t.params.get(k) for k in space.params})
        for k in ("accuracy", "cost", "fps", "lut", "bram_18k", "uram", "dsp", "latency_us", "max_cycles", "fits", "train_s", "build_s", "trial_s"):
            row[k] = u.get(k)
        row["retry_of"] = t.system_attrs.get("failed_trial")
        row["duplicate_of"] = u.get("duplicate_of")
        row["reason"] = u.get("infeasible") or u.get("error") or ("surplus" if u.get("surplus") else None)
        if t.state.name == "FAIL" and row["reason"] is None:
            row["reason"] = "process died (stale heartbeat); re-queued"
        rows.append(row)
    return rows


#: What the search optimizes: accuracy up, cost down, frames/s up.
OBJECTIVES = {"accuracy": "max", "cost": "min", "fps": "max"}


def pareto(rows: list[dict[str, Any]], space: SearchSpace) -> list[dict[str, Any]]:
    """The non-dominated COMPLETE rows, one per distinct point (lowest trial number), most accurate first."""
    seen, ok = set(), []
    for r in sorted((r for r in rows if r["state"] == "COMPLETE" and r["accuracy"] is not None), key=lambda r: r["number"]):
        key = tuple(r[k] for k in space.params)
        if key not in seen:
            seen.add(key)
            ok.append(r)
    front = fronts.front(ok, OBJECTIVES)
    return sorted(front, key=lambda r: (-r["accuracy"], r["cost"], -r["fps"], r["number"]))


def choose(front: list[dict[str, Any]], acc_tolerance: float = 0.0) -> dict[str, Any] | None:
    """The chosen design: among front points that fit, the cheapest (then fastest) within ``acc_tolerance`` of the best accuracy."""
    fits = [r for r in front if r.get("fits")]
    if not fits:
        return None
    best = max(r["accuracy"] for r in fits)
    near = [r for r in fits if r["accuracy"] >= best - acc_tolerance - 1e-12]
    return min(near, key=lambda r: (r["cost"], -r["fps"], -r["accuracy"], r["number"]))


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
