"""``qflow sensitivity``: how much accuracy each layer loses at each precision, and its minimum precision.

The recipe's network is first trained with every layer at ``reference_bits`` (8 by default:
the "full precision" of the map). Then, one layer and one kind (weights or activations) at a
time, that layer is lowered to each precision ``k`` in ``bits`` while every other layer stays
at the reference, the network starts from the reference weights and is fine-tuned for
``epochs`` epochs, and its accuracy on a validation split (held-out training samples) is
recorded, against the reference fine-tuned the same way. A layer's *minimum precision* is the lowest ``k`` whose drop, and every higher
precision's drop, stays within ``tolerance`` (1 point by default) of the reference: the
per-layer choice HAWQ motivates, measured here by training rather than by a Hessian proxy.

Writes ``sensitivity.json`` (the map: drops per layer and precision, and ``min_precision``),
``sensitivity.png`` (accuracy drop against precision, one line per layer and kind) and
``sensitivity.md``. ``qflow search --sensitivity sensitivity.json`` uses the map's floors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from flow.core.errors import ConfigError, QflowError
from flow.core.fileio import atomic_write_json, atomic_write_text
from flow.core.outdir import OutputDir, retire_results
from flow.explore.recipe import Recipe, recipe_from_dict
from flow.explore.run import Prepared, check_recipe, train_config
from flow.explore.space import WEIGHT_RANK
from flow.nn.train import evaluate, train
from flow.report.style import figure, save_png, text
from models import build_model

KINDS = ("weight_bits", "act_bits")
SENSITIVITY_FILES = ("sensitivity.json", "sensitivity.png", "sensitivity.md")


@dataclass
class SensitivityResult:
    reference_accuracy: float
    drops: dict[str, dict[str, dict[str, float]]]  # layer -> kind -> precision -> accuracy drop (points of %)
    min_precision: dict[str, dict[str, int | str | None]]
    files: dict[str, str]


def _at(recipe: Recipe, layer_bits: dict[str, dict[str, Any]]) -> Recipe:
    d = recipe.model_dump(mode="json", exclude_unset=True)
    d.setdefault("model", {})["layers"] = layer_bits
    first = next(iter(layer_bits.values()))
    d["model"]["input_bits"] = first.get("act_bits", recipe.model.act_bits)
    d["technique"] = {"method": "qat"}
    return recipe_from_dict(d, source="sensitivity point")


def minimum_precision(drops: dict[str, float], tolerance: float) -> int | str | None:
    """The lowest precision whose drop, and every higher precision's, is within ``tolerance`` points."""
    ok = None
    for key in sorted(drops, key=lambda k: -WEIGHT_RANK["ternary" if k == "ternary" else int(k)]):
        if drops[key] > tolerance:
            break
        ok = key
    return None if ok is None else (ok if ok == "ternary" else int(ok))


def _finetune(prep: Prepared, reference: torch.nn.Module, recipe: Recipe, epochs: int) -> float:
    model = build_model(recipe.model.name, **{**prep.job.build_kwargs, **recipe.model.build_kwargs()})
    state = {k: v for k, v in reference.state_dict().items() if k in model.state_dict() and model.state_dict()[k].shape == v.shape}
    model.load_state_dict(state, strict=False)
    cfg = replace(train_config(recipe), epochs=epochs)
    if epochs:
        train(model, prep.train_set, cfg, progress=False)
    return evaluate(model, prep.test_set)


def sensitivity(recipe: Recipe, out_dir: str | Path, *, bits: Sequence[int | str] = (1, "ternary", 2, 3, 4, 5, 6), reference_bits: int = 8,
                epochs: int = 1, tolerance: float = 1.0, kinds: Sequence[str] = KINDS, val_samples: int = 5000, progress: bool = True,
                log: Callable[[str], None] = print) -> SensitivityResult:
    """Measure the map (see the module docstring) and write it into ``out_dir``."""
    try:
        out = OutputDir(out_dir, results=SENSITIVITY_FILES)
        if not 1 <= reference_bits <= 8:
            raise ConfigError(f"sensitivity: --reference-bits must be 1..8, got {reference_bits}")
        if not (isinstance(epochs, int) and 0 <= epochs <= 1000) or not 0 < tolerance <= 100:
            raise ConfigError(f"sensitivity: --epochs must be 0..1000 and --tolerance in (0, 100], got {epochs} and {tolerance}")
        if set(kinds) - set(KINDS) or not kinds:
            raise ConfigError(f"sensitivity: kinds must be from {', '.join(KINDS)}, got {list(kinds)}")
        prep = check_recipe(recipe, progress=progress, log=log)
        layers = list(prep.model.layer_names)
        ref_bits = {name: {"weight_bits": reference_bits, **({"act_bits": reference_bits} if i < len(layers) - 1 else {})} for i, name in enumerate(layers)}
        out.check()
    except QflowError:
        retire_results(out_dir, results=SENSITIVITY_FILES)
        raise
    out.claim()
    try:
        rest, val = prep.train_set.hold_out(min(val_samples, len(prep.train_set) // 5), seed=recipe.seed)
        prep = Prepared(prep.recipe, rest, val, prep.model, prep.job)
        ref_recipe = _at(recipe, ref_bits)
        reference = build_model(recipe.model.name, **{**prep.job.build_kwargs, **ref_recipe.model.build_kwargs()})
        log(f"training the {reference_bits}-bit reference ({recipe.train.epochs} epochs)")
        train(reference, rest, train_config(ref_recipe), progress=progress)
        ref_acc = _finetune(prep, reference, ref_recipe, epochs)  # the same fine-tuning as every point, at the reference precision
        log(f"reference validation accuracy {100 * ref_acc:.2f}%")
        drops: dict[str, dict[str, dict[str, float]]] = {}
        for layer in layers:
            for kind in kinds:
                if kind == "act_bits" and "act_bits" not in ref_bits[layer]:
                    continue
                for k in bits:
                    if kind == "act_bits" and k == "ternary":
                        continue
                    trial_bits = copy.deepcopy(ref_bits)
                    trial_bits[layer][kind] = k
                    acc = _finetune(prep, reference, _at(recipe, trial_bits), epochs)
                    drops.setdefault(layer, {}).setdefault(kind, {})[str(k)] = round(100 * (ref_acc - acc), 3)
                    log(f"{layer} {kind} = {k}: {100 * acc:.2f}% ({against_reference(drops[layer][kind][str(k)])})")
        mins = {layer: {kind: minimum_precision(d, tolerance) for kind, d in per.items()} for layer, per in drops.items()}
        payload = {"recipe": recipe.model_dump(mode="json"), "reference_bits": reference_bits, "reference_accuracy": ref_acc,
                   "fine_tune_epochs": epochs, "tolerance_points": tolerance, "validation_samples": len(val), "drops": drops,
                   "min_precision": mins}
        atomic_write_json(out.will_write("sensitivity.json"), payload)
        save_png(plot(drops, tolerance, title=f"{recipe.name}: accuracy drop per layer (reference {reference_bits}-bit, {100 * ref_acc:.2f}%)"),
                 out.will_write("sensitivity.png"))
        atomic_write_text(out.will_write("sensitivity.md"), markdown(drops, mins, tolerance))
    finally:
        out.close()
    return SensitivityResult(ref_acc, drops, mins, {f: str(out.path / f) for f in SENSITIVITY_FILES})


def plot(drops: dict[str, dict[str, dict[str, float]]], tolerance: float, *, title: str):
    """Accuracy drop (points) against precision, one line per layer and kind; the tolerance dashed."""
    fig = figure(7.0, 4.2)
    ax = fig.add_subplot()
    for layer, per in drops.items():
        for kind, d in per.items():
            keys = sorted(d, key=lambda k: WEIGHT_RANK["ternary" if k == "ternary" else int(k)])
            xs = [WEIGHT_RANK["ternary" if k == "ternary" else int(k)] for k in keys]
            ax.plot(xs, [d[k] for k in keys], marker="o" if kind == "weight_bits" else "s", linestyle="-" if kind == "weight_bits" else "--",
                    label=text(f"{layer} {'weights' if kind == 'weight_bits' else 'activations'}"))
    ax.axhline(tolerance, color="#1f2933", linestyle=":", linewidth=1)
    ax.set_xlabel("precision (bits; ternary at log2 3)")
    ax.set_ylabel("accuracy drop (points)")
    ax.set_title(text(title), fontsize=10)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def against_reference(drop: float) -> str:
    """An accuracy drop in points as words: a drop is a drop, a negative drop a gain.

    >>> against_reference(0.3), against_reference(-0.3), against_reference(0.0)
    ('a drop of 0.30 pt', 'a gain of 0.30 pt', 'no change')
    """
    if round(drop, 2) == 0:
        return "no change"
    return f"a {'drop' if drop > 0 else 'gain'} of {abs(drop):.2f} pt"


def markdown(drops: dict[str, dict[str, dict[str, float]]], mins: dict[str, dict[str, Any]], tolerance: float) -> str:
    keys = sorted({k for per in drops.values() for d in per.values() for k in d}, key=lambda k: WEIGHT_RANK["ternary" if k == "ternary" else int(k)])
    lines = [f"Accuracy drop in points against the reference (a negative drop is a gain); minimum precision = lowest within {tolerance:g} pt.", "",
             "| layer | kind | " + " | ".join(keys) + " | minimum |", "|---|---|" + "---:|" * (len(keys) + 1)]
    for layer, per in drops.items():
        for kind, d in per.items():
            cells = [f"{d[k]:.2f}" if k in d else "-" for k in keys]
            lines.append(f"| {layer} | {kind} | " + " | ".join(cells) + f" | {mins[layer][kind] if mins[layer][kind] is not None else 'none'} |")
    return "\n".join(lines) + "\n"
