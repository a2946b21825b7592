"""The technique registry and the recipe's ``[technique]`` section it validates.

========================  ====================================================================
name                      technique
========================  ====================================================================
``qat`` (method)          quantization-aware training (:mod:`.qat`)
``ptq`` (method)          post-training quantization with Brevitas (:mod:`.ptq`)
``distill`` (modifier)    knowledge distillation from a float teacher (:mod:`.distill`)
``lowrank`` (modifier)    SVD factorization into two quantized layers (:mod:`.lowrank`)
========================  ====================================================================

A section names one method and its options (flat), and any modifiers as tables::

    [technique]
    method = "ptq"
    float_epochs = 5
    [technique.lowrank]
    rank = 16

>>> s = TechniqueSection.model_validate({"method": "qat", "lowrank": {"rank": 8}})
>>> s.method, list(s.modifiers), s.to_dict()
('qat', ['lowrank'], {'method': 'qat', 'lowrank': {'rank': 8}})
>>> TechniqueSection.model_validate({"method": "sgd"})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for TechniqueSection
  Value error, method: unknown technique method 'sgd'; registered methods: qat, ptq ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    model_serializer,
    model_validator,
)

from flow.core.config import format_validation_error
from flow.core.errors import ConfigError
from flow.nn.techniques.base import Options, Technique
from flow.nn.techniques.distill import Distill
from flow.nn.techniques.lowrank import LowRankTechnique
from flow.nn.techniques.ptq import PTQ
from flow.nn.techniques.qat import QAT

_REGISTRY: dict[str, Technique] = {}


def register(technique: Technique) -> Technique:
    """Add ``technique`` (an instance) to the registry; its name must be new."""
    if not isinstance(technique, Technique):
        raise TypeError(f"{technique!r} does not implement the Technique protocol")
    if technique.kind not in ("method", "modifier"):
        raise ValueError(f"technique {technique.name!r}: kind must be 'method' or 'modifier'")
    if technique.name in _REGISTRY or technique.name == "method":
        raise ValueError(f"technique {technique.name!r} is already registered")
    _REGISTRY[technique.name] = technique
    return technique


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


for _t in (QAT(), PTQ(), Distill(), LowRankTechnique()):
    register(_t)


def get(name: str) -> Technique:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown technique {name!r}; registered: {', '.join(_REGISTRY)}") from None


def names(kind: str | None = None) -> tuple[str, ...]:
    return tuple(n for n, t in _REGISTRY.items() if kind is None or t.kind == kind)


def _options(t: Technique, data: dict[str, Any], where: str | None) -> Options:
    """``t``'s options from ``data``; a ValueError naming the first bad field otherwise."""
    try:
        return t.options.model_validate(data)
    except ValidationError as e:
        msg = format_validation_error(e, where or "options")
        raise ValueError(msg if where else msg.removeprefix("options: ")) from None


class TechniqueSection(BaseModel):
    """A recipe's ``[technique]``: the method with its options, and the modifiers with theirs."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    method: str = "qat"
    options: Options = Options()
    modifiers: dict[str, Options] = {}

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, raw: Any) -> Any:
        if isinstance(raw, TechniqueSection):
            return raw
        if not isinstance(raw, Mapping):
            raise ValueError("must be a table of a method and its options")
        if set(raw) >= {"options", "modifiers"}:  # already parsed (model_copy, re-validation)
            return dict(raw)
        method = raw.get("method", "qat")
        if not isinstance(method, str) or method not in names("method"):
            raise ValueError(f"method: unknown technique method {str(method)[:40]!r}; registered methods: {', '.join(names('method'))}")
        own = get(method).options.model_fields
        flat = {k: v for k, v in raw.items() if k != "method" and k not in _REGISTRY}
        for k, v in flat.items():
            if isinstance(v, Mapping) and k not in own:
                raise ValueError(f"{k}: unknown technique; registered: {', '.join(_REGISTRY)}")
            other = next((t for t in _REGISTRY.values() if t.kind == "method" and t.name != method and k in t.options.model_fields), None)
            if k not in own and other is not None:
                raise ValueError(f"{k}: only applies to method = {other.name!r}")
        as_table = [k for k in raw if k in _REGISTRY and _REGISTRY[k].kind == "method"]
        if as_table:
            raise ValueError(f"{as_table[0]}: is a method; write method = {as_table[0]!r}")
        options = _options(get(method), flat, None)
        modifiers: dict[str, Options] = {}
        for name in (k for k in raw if k in _REGISTRY):
            t = _REGISTRY[name]
            if t.methods and method not in t.methods:
                raise ValueError(f"{name}: needs method = {' or '.join(repr(m) for m in t.methods)}, not {method!r}")
            value = raw[name]
            if not isinstance(value, Mapping):
                raise ValueError(f"{name}: must be a table of its options")
            modifiers[name] = _options(t, dict(value), name)
        return {"method": method, "options": options, "modifiers": modifiers}

    @model_serializer
    def _dump(self) -> dict[str, Any]:
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The section as written in a recipe (options that were given, not defaults)."""
        out: dict[str, Any] = {"method": self.method}
        out |= self.options.model_dump(mode="json", exclude_unset=True)
        for name, opts in self.modifiers.items():
            out[name] = opts.model_dump(mode="json", exclude_unset=True)
        return out

    def techniques(self) -> Iterator[tuple[Technique, Options]]:
        """Every technique of the section with its options: modifiers in order, then the method."""
        for name, opts in self.modifiers.items():
            yield get(name), opts
        yield get(self.method), self.options

    def label(self) -> str:
        """``QAT``, ``PTQ``, ``QAT + KD(float, T=4, a=0.7)``, ``QAT + low-rank(fc0 r=16)``, ..."""
        parts = [get(self.method).label(self.options)]
        parts += [get(n).label(o) for n, o in self.modifiers.items()]
        return " + ".join(parts)

    def modifier(self, name: str) -> Options | None:
        return self.modifiers.get(name)


def section(data: Mapping[str, Any], source: str = "technique") -> TechniqueSection:
    """Validate a technique table, raising ConfigError (one line) naming the problem."""
    try:
        return TechniqueSection.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


def section_for(choice: str | None, base: TechniqueSection) -> dict[str, Any]:
    """The ``[technique]`` table of a search point choosing technique ``choice``.

    ``None`` keeps the recipe's own. A method gives plain training with that method (the
    recipe's options for it kept when it is the recipe's method); a modifier gives it with
    its default method (the first it composes with, else QAT), with the recipe's options for
    it or its search defaults.

    >>> section_for("lowrank", TechniqueSection())
    {'method': 'qat', 'lowrank': {'energy': 0.9}}
    """
    own = base.to_dict()
    if choice is None:
        return own
    t = get(choice)
    if t.kind == "method":
        opts = base.options.model_dump(mode="json", exclude_unset=True) if base.method == choice else {}
        return {"method": choice} | opts
    method = t.methods[0] if t.methods else "qat"
    table = own.get(choice, t.search_defaults)
    return {"method": method, choice: dict(table)}
