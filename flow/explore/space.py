"""What ``qflow search`` searches over: per-layer precision, hidden widths and the technique.

A point sets every layer's weight bits (``1`` binary, ``"xnor"``, ``"ternary"``, ``2`` .. ``8``), every
hidden layer's activation bits, the hidden widths of an MLP (when width choices are given)
and, when several techniques are given, the technique (registered names, see
:mod:`flow.nn.techniques.registry`). The input quantizer uses the first layer's activation
bits. Folding is not a search variable: every point is compiled with ``auto=True``, so
qflow's optimizer picks the fastest folding that fits the board, or (``fold_to_fps``) folded by
FINN's SetFolding toward the search's frame-rate floor, so that its cost is what that
precision costs at the required throughput.

A sensitivity map (``qflow sensitivity``) can set per-layer floors: choices below a layer's
minimum precision are left out of the space.

>>> from flow.explore.recipe import recipe_from_dict
>>> space = search_space(recipe_from_dict({"model": {"name": "tfc"}}), weight_bits=(1, "ternary", 2, 4), act_bits=(2, 4))
>>> space.layers, space.size
(('fc0', 'fc1', 'fc2', 'fc3'), 2048)
>>> p = space.point({"fc0.weight_bits": 4, "fc0.act_bits": 2, "fc1.weight_bits": "ternary", "fc1.act_bits": 2,
...                  "fc2.weight_bits": 2, "fc2.act_bits": 4, "fc3.weight_bits": 1})
>>> p.layer_bits["fc1"], p.precision_at_least(p)
({'weight_bits': 'ternary', 'act_bits': 2}, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flow.core.errors import ConfigError
from flow.explore.recipe import Recipe, recipe_from_dict
from flow.nn.techniques import registry as techniques_registry
from models import build_model

WEIGHT_CHOICES: tuple[int | str, ...] = (1, "ternary", 2, 3, 4, 5, 6, 7, 8)
ACT_CHOICES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
TECHNIQUE_PARAM = "technique"
#: The order of weight precisions (a ternary weight carries log2(3) bits; XNOR is binary with per-channel scales).
WEIGHT_RANK = {1: 1.0, "xnor": 1.0, "ternary": 1.58, **{b: float(b) for b in range(2, 9)}}
#: Named weight choices on the command line.
NAMED_WEIGHTS = {"t": "ternary", "ternary": "ternary", "x": "xnor", "xnor": "xnor"}


def parse_bits(text: str, what: str, *, ternary: bool) -> tuple[int | str, ...]:
    """``"1,X,T,2,4"`` -> ``(1, "xnor", "ternary", 2, 4)``; ConfigError naming ``what`` otherwise.

    ``ternary=True`` (weights) also accepts T (ternary) and X (XNOR).
    """
    out: list[int | str] = []
    for part in (p.strip() for p in str(text).split(",")):
        if ternary and part.lower() in NAMED_WEIGHTS:
            out.append(NAMED_WEIGHTS[part.lower()])
            continue
        if not part.isdigit() or not 1 <= int(part) <= 8:
            raise ConfigError(f"search: {what} choices are bit widths 1..8{' or T (ternary), X (XNOR)' if ternary else ''}, got {part[:20]!r}")
        out.append(int(part))
    return tuple(sorted(set(out), key=lambda b: (WEIGHT_RANK[b], str(b))))


@dataclass(frozen=True)
class Point:
    """One design point: per-layer bits, hidden widths (or None: the recipe's) and the technique (None: the recipe's)."""

    layer_bits: dict[str, dict[str, int | str]]
    hidden: tuple[int, ...] | None = None
    technique: str | None = None

    def precision_at_least(self, other: "Point") -> bool:
        """Every layer at least as precise and (when searched) every width at least as wide, same technique.

        Such a point is expected to reach at least ``other``'s accuracy: the search does not
        train ``other`` when this point is also at least as good on hardware.
        """
        if self.technique != other.technique:
            return False
        if (self.hidden is None) != (other.hidden is None):
            return False
        if self.hidden is not None and (len(self.hidden) != len(other.hidden) or any(a < b for a, b in zip(self.hidden, other.hidden))):
            return False
        for layer, bits in other.layer_bits.items():
            mine = self.layer_bits.get(layer, {})
            if WEIGHT_RANK[mine.get("weight_bits", 8)] < WEIGHT_RANK[bits.get("weight_bits", 8)]:
                return False
            if int(mine.get("act_bits", 8)) < int(bits.get("act_bits", 8)):
                return False
        return True


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters and their choices (see the module docstring)."""

    layers: tuple[str, ...]
    weight_bits: tuple[int | str, ...] = WEIGHT_CHOICES
    act_bits: tuple[int, ...] = ACT_CHOICES
    widths: tuple[int, ...] = ()
    hidden_layers: int = 0
    techniques: tuple[str, ...] = ()
    floors: Mapping[str, Mapping[str, int | str]] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, tuple]:
        """Parameter name -> choices, in a fixed order (choices below a layer's floor left out)."""
        out: dict[str, tuple] = {}
        for i, name in enumerate(self.layers):
            floor = self.floors.get(name, {})
            w_floor = WEIGHT_RANK[floor.get("weight_bits", 1)]
            out[f"{name}.weight_bits"] = tuple(b for b in self.weight_bits if WEIGHT_RANK[b] >= w_floor) or (self.weight_bits[-1],)
            if i < len(self.layers) - 1:
                a_floor = int(floor.get("act_bits", 1))
                out[f"{name}.act_bits"] = tuple(b for b in self.act_bits if b >= a_floor) or (self.act_bits[-1],)
        if self.widths:
            for i in range(self.hidden_layers):
                out[f"hidden{i}"] = self.widths
        if len(self.techniques) > 1:
            out[TECHNIQUE_PARAM] = self.techniques
        return out

    @property
    def size(self) -> int:
        n = 1
        for choices in self.params.values():
            n *= len(choices)
        return n

    def sample(self, trial) -> Point:
        """Suggest every parameter on an Optuna trial (an enqueued point's fixed values are kept)."""
        return self.point({k: trial.suggest_categorical(k, list(c)) for k, c in self.params.items()})

    def point(self, params: Mapping[str, Any]) -> Point:
        """The :class:`Point` of a parameter dict (as sampled or as stored by Optuna)."""
        bits: dict[str, dict[str, int | str]] = {}
        for key, value in params.items():
            if "." not in key:
                continue
            layer, kind = key.split(".", 1)
            bits.setdefault(layer, {})[kind] = value if value in ("ternary", "xnor") else int(value)
        hidden = tuple(int(params[f"hidden{i}"]) for i in range(self.hidden_layers)) if self.widths else None
        technique = self.techniques[0] if len(self.techniques) == 1 else params.get(TECHNIQUE_PARAM)
        return Point({name: bits[name] for name in self.layers if name in bits}, hidden, technique)

    def params_of(self, point: Point) -> dict[str, Any]:
        """The parameter dict of ``point`` (inverse of :meth:`point`), e.g. to enqueue it."""
        out: dict[str, Any] = {}
        for name, bits in point.layer_bits.items():
            out.update({f"{name}.{k}": v for k, v in bits.items()})
        if self.widths and point.hidden is not None:
            out.update({f"hidden{i}": w for i, w in enumerate(point.hidden)})
        if len(self.techniques) > 1 and point.technique is not None:
            out[TECHNIQUE_PARAM] = point.technique
        return out


def search_space(recipe: Recipe, weight_bits=WEIGHT_CHOICES, act_bits=ACT_CHOICES, techniques: Sequence[str] = (),
                 widths: Sequence[int] = (), floors: Mapping[str, Mapping[str, int | str]] | None = None) -> SearchSpace:
    """The space for ``recipe``'s model, every choice checked against the model before any trial runs."""
    techs = tuple(dict.fromkeys(techniques))
    known = techniques_registry.names()
    bad = [t for t in techs if t not in known]
    if bad:
        raise ConfigError(f"search: unknown technique {', '.join(map(repr, bad))}; choose from {', '.join(known)}")
    for t in techs:  # every technique table must be valid for this recipe before any trial runs
        recipe_from_dict({**recipe.model_dump(mode="json", exclude_unset=True), "technique": techniques_registry.section_for(t, recipe.technique)},
                         source=f"search technique {t!r}")
    if any(b == "ternary" for b in act_bits):
        raise ConfigError("search: activations have no ternary choice; use bit widths 1..8")
    model = build_model(recipe.model.name, **recipe.model.build_kwargs())
    hidden = getattr(model, "hidden", None)
    if widths and not hidden:
        raise ConfigError(f"search: --widths needs an MLP with hidden layers; {recipe.model.name} has none to widen")
    if any(not (isinstance(w, int) and 1 <= w <= 4096) for w in widths):
        raise ConfigError(f"search: widths must be integers from 1 to 4096, got {list(widths)}")
    floors = dict(floors or {})
    unknown = sorted(set(floors) - set(model.layer_names))
    if unknown:
        raise ConfigError(f"search: the sensitivity map names layers this model does not have: {', '.join(unknown)}")
    return SearchSpace(tuple(model.layer_names), tuple(weight_bits), tuple(int(b) for b in act_bits), tuple(sorted(set(widths))),
                       len(hidden) if widths else 0, techs, floors)


def point_recipe(recipe: Recipe, point: Point, *, target: str, name: str | None = None, epochs: int | None = None,
                 max_train_samples: int | None = None, threads: int | None = None, verify_samples: int | None = None,
                 fold_to_fps: float | None = None) -> Recipe:
    """``recipe`` at ``point``: its bits, widths and technique, for ``target``, optional training overrides.

    Folded with qflow's optimizer (``auto``: the fastest folding that fits), or, with ``fold_to_fps``,
    with FINN's SetFolding toward that frame rate, rounded down to a whole frame: FINN turns it into
    ``int(clock / target_fps)`` cycles per frame, so rounding up could ask for one cycle fewer than needed."""
    d = recipe.model_dump(mode="json", exclude_unset=True)
    for section in ("model", "train", "build"):
        d.setdefault(section, {})
    first = next(iter(point.layer_bits.values()), {})
    d["model"]["layers"] = {k: dict(v) for k, v in point.layer_bits.items()}
    if "act_bits" in first:
        d["model"]["input_bits"] = first["act_bits"]
    if point.hidden is not None:
        d["model"]["options"] = {**d["model"].get("options", {}), "hidden": list(point.hidden)}
    d["technique"] = techniques_registry.section_for(point.technique, recipe.technique)
    if name is not None:
        d["name"] = name
    for key, value in (("epochs", epochs), ("max_train_samples", max_train_samples), ("threads", threads)):
        if value is not None:
            d["train"][key] = value
    b = d["build"]
    for key in ("target_fps", "folding_file", "specialize_file", "auto"):  # the search folds and picks each point's variants
        b.pop(key, None)
    b.update(target=target, **({"auto": True} if fold_to_fps is None else {"target_fps": max(1, math.floor(fold_to_fps))}))
    if verify_samples is not None:
        b["verify_samples"] = verify_samples
    return recipe_from_dict(d, source="search point")
