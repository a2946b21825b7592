"""The rows of ``qflow compare`` and ``qflow search`` as typed records, and their JSON.

* :class:`SweepRow`: one result of a sweep (``row.json``, a row of ``results.json``): one run
  on one seed, or a row's runs on several seeds folded together
  (:func:`flow.explore.spread.aggregate`, then ``seeds``, the accuracy's spread and ``runs`` are set).
* :class:`TwinComparison`: a technique row against its plain-QAT twin.
* :class:`TrialRow`: one trial of a search (a line of ``all_trials.csv``, a point of ``pareto.json``).
* :class:`Finalist`: a front point retrained, rebuilt and verified at the full budget (``search.json``).

**LUT** (:data:`LUT_MEANING`) means the same in every row: the LUTs of the layers plus the
data-width converters FINN inserts between them, which is what the board must hold and what a
report's ``fits`` compares with the budget. BRAM, URAM and DSP are counted the same way. A
sweep row keeps the layers' own LUTs apart as ``lut_layers``.

``to_json`` writes the keys in a fixed order (the files are compared byte for byte when a
sweep is rerun); ``from_json`` reads a row back as untrusted data: a value of the wrong type
is a :class:`~flow.core.errors.ConfigError` naming the field. A ``row.json`` written before
``lut`` counted the converters (it has ``lut`` for the layers and ``lut_with_converters``) is
read in today's meaning; one older still (neither) is refused with one line.

>>> old = {"name": "a", "lut": 100.0, "lut_with_converters": 120.0, "accuracy": 0.9}
>>> row = SweepRow.from_json(old)
>>> row.lut, row.lut_layers
(120.0, 100.0)
>>> SweepRow.from_json(row.to_json()) == row
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flow.core.errors import ConfigError
from flow.core.vocab import RESOURCES

__all__ = ["COST_FIELDS", "LUT_MEANING", "RESOURCE_FIELDS", "TRIAL_METRICS", "Finalist", "SweepRow", "TrialRow", "TwinComparison"]

#: What ``lut`` (and every resource count) of a row means.
LUT_MEANING = "layers + data-width converters (FINN's estimates): what fits compares with the board's budget"
#: qonnx inference costs of a row's QONNX model.
COST_FIELDS = ("weight_mem_bits", "bops", "macs", "weight_mem_bits_nonzero", "bops_nonzero")
#: Resource counts of a row: layers plus converters.
RESOURCE_FIELDS = RESOURCES
#: The hardware metrics of a search trial (``all_trials.csv`` columns after the parameters).
TRIAL_METRICS = ("accuracy", "cost", "fps", *RESOURCE_FIELDS, "latency_us", "max_cycles", "fits", "epochs_run", "train_s", "build_s")


def _fail(what: str, key: str, want: str, got: Any) -> ConfigError:
    return ConfigError(f"{what}: {key} must be {want}, got {type(got).__name__} {str(got)[:60]!r}")


def _num(d: Mapping[str, Any], key: str, what: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(what, key, "a number or null", v)
    return v


def _int(d: Mapping[str, Any], key: str, what: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(what, key, "an integer or null", v)
    return v


def _str(d: Mapping[str, Any], key: str, what: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise _fail(what, key, "a string or null", v)
    return v


def _bool(d: Mapping[str, Any], key: str, what: str) -> bool | None:
    v = d.get(key)
    if v is not None and not isinstance(v, bool):
        raise _fail(what, key, "true, false or null", v)
    return v


def _list(d: Mapping[str, Any], key: str, what: str) -> list[Any] | None:
    v = d.get(key)
    if v is not None and not isinstance(v, list):
        raise _fail(what, key, "a list or null", v)
    return v


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class SweepRow:
    """One result of ``qflow compare`` (see the module docstring); resources are layers plus converters."""

    name: str
    model: str | None = None
    dataset: str | None = None
    precision: str | None = None
    technique: str | None = None
    seed: int | None = None
    accuracy: float | None = None
    weight_mem_bits: float | None = None
    bops: float | None = None
    macs: float | None = None
    weight_mem_bits_nonzero: float | None = None
    bops_nonzero: float | None = None
    lut: float | None = None
    bram_18k: float | None = None
    uram: float | None = None
    dsp: float | None = None
    lut_layers: float | None = None
    target: str | None = None
    fits: bool | None = None
    throughput_fps: float | None = None
    latency_us: float | None = None
    verified: bool | None = None
    train_seconds: float | None = None
    quantize_seconds: float | None = None
    row_seconds: float | None = None
    error: str | None = None
    recipe: Mapping[str, Any] | None = None
    rebuild_seconds: float | None = None
    seeds: tuple[int | None, ...] | None = None
    accuracy_std: float | None = None
    accuracy_min: float | None = None
    accuracy_max: float | None = None
    accuracy_by_seed: tuple[float | None, ...] | None = None
    runs: tuple[SweepRow, ...] | None = None
    pareto_lut: bool | None = None
    pareto_fps: bool | None = None

    @property
    def seeded(self) -> bool:
        """Whether this row folds a row's runs on several seeds together."""
        return self.seeds is not None

    def replace(self, **changes: Any) -> SweepRow:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The row as ``row.json`` / ``results.json`` hold it (a fixed key order)."""
        head = ("name", "model", "dataset", "precision", "technique", *(() if self.seeded else ("seed",)), "accuracy", *COST_FIELDS,
                *RESOURCE_FIELDS, "lut_layers", "target", "fits", "throughput_fps", "latency_us", "verified", "train_seconds",
                "quantize_seconds", "row_seconds", "error")
        out: dict[str, Any] = {k: getattr(self, k) for k in head}
        recipe = None if self.recipe is None else dict(self.recipe)
        if self.seeded:
            if self.rebuild_seconds is not None:
                out["rebuild_seconds"] = self.rebuild_seconds
            out.update(seeds=list(self.seeds or ()), accuracy_std=self.accuracy_std, accuracy_min=self.accuracy_min,
                       accuracy_max=self.accuracy_max, accuracy_by_seed=list(self.accuracy_by_seed or ()), recipe=recipe,
                       runs=[r.to_json() for r in self.runs or ()])
        else:
            out["recipe"] = recipe
            if self.rebuild_seconds is not None:
                out["rebuild_seconds"] = self.rebuild_seconds
        if self.pareto_lut is not None or self.pareto_fps is not None:
            out.update(pareto_lut=self.pareto_lut, pareto_fps=self.pareto_fps)
        return out

    @classmethod
    def from_json(cls, data: Any, what: str = "row") -> SweepRow:
        """A row read back from JSON (untrusted); ConfigError naming the field when a value has the wrong type."""
        d = _object(data, what)
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what}: name must be a non-empty string")
        what = f"{what} {name!r}"
        lut, lut_layers = _num(d, "lut", what), _num(d, "lut_layers", what)
        if "lut_layers" not in d and "lut" in d:  # written when ``lut`` counted the layers alone
            if "lut_with_converters" not in d:
                raise ConfigError(f"{what}: written before rows counted the converters' LUT (no lut_layers, no lut_with_converters); "
                                  "run the sweep again")
            lut, lut_layers = _num(d, "lut_with_converters", what), lut
        recipe = d.get("recipe")
        if recipe is not None and not isinstance(recipe, Mapping):
            raise _fail(what, "recipe", "an object or null", recipe)
        runs, seeds, by_seed = _list(d, "runs", what), _list(d, "seeds", what), _list(d, "accuracy_by_seed", what)
        return cls(
            name=name, **{k: _str(d, k, what) for k in ("model", "dataset", "precision", "technique", "target", "error")},
            seed=_int(d, "seed", what),
            **{k: _num(d, k, what) for k in ("accuracy", *COST_FIELDS, "bram_18k", "uram", "dsp", "throughput_fps", "latency_us",
                                             "train_seconds", "quantize_seconds", "row_seconds", "rebuild_seconds", "accuracy_std",
                                             "accuracy_min", "accuracy_max")},
            lut=lut, lut_layers=lut_layers, recipe=recipe,
            **{k: _bool(d, k, what) for k in ("fits", "verified", "pareto_lut", "pareto_fps")},
            seeds=None if seeds is None else tuple(_int({"seeds": s}, "seeds", what) for s in seeds),
            accuracy_by_seed=None if by_seed is None else tuple(_num({"accuracy_by_seed": a}, "accuracy_by_seed", what) for a in by_seed),
            runs=None if runs is None else tuple(cls.from_json(r, f"{what} run") for r in runs),
        )


@dataclass(frozen=True)
class TwinComparison:
    """A technique row against its QAT twin: the mean difference and the verdict (see :mod:`flow.explore.spread`)."""

    row: str
    technique: str | None
    twin: str
    delta: float | None
    seeds: int
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class TrialRow:
    """One trial of ``qflow search``: its parameters, hardware and training metrics, and why it did not complete.

    ``lut`` .. ``dsp`` are layers plus converters (:data:`LUT_MEANING`); ``cost`` is the search's cost axis.
    """

    number: int
    state: str
    params: Mapping[str, Any]
    accuracy: float | None = None
    cost: float | None = None
    fps: float | None = None
    lut: float | None = None
    bram_18k: float | None = None
    uram: float | None = None
    dsp: float | None = None
    latency_us: float | None = None
    max_cycles: int | None = None
    fits: bool | None = None
    epochs_run: int | None = None
    train_s: float | None = None
    build_s: float | None = None
    retry_of: int | None = None
    duplicate_of: int | None = None
    reason: str | None = None

    @property
    def completed(self) -> bool:
        """Whether the trial completed with an accuracy (a candidate for the front)."""
        return self.state == "COMPLETE" and _finite(self.accuracy)

    def metrics_json(self) -> dict[str, Any]:
        """Number, state and metrics (``pareto.json``'s point, before its parameters)."""
        return {"number": self.number, "state": self.state, **{k: getattr(self, k) for k in TRIAL_METRICS}}

    def to_json(self) -> dict[str, Any]:
        """One flat record: number, state, every parameter, the metrics, retry_of, duplicate_of, reason (``all_trials.csv``)."""
        return {"number": self.number, "state": self.state, **dict(self.params), **{k: getattr(self, k) for k in TRIAL_METRICS},
                "retry_of": self.retry_of, "duplicate_of": self.duplicate_of, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Any, params: Sequence[str], what: str = "trial") -> TrialRow:
        """A flat record (as :meth:`to_json` writes it) with the parameters named ``params``."""
        d = _object(data, what)
        number, state = _int(d, "number", what), _str(d, "state", what)
        if number is None or state is None:
            raise ConfigError(f"{what}: number and state are required")
        return cls(number=number, state=state, params={k: d.get(k) for k in params},
                   **{k: _num(d, k, what) for k in ("accuracy", "cost", "fps", *RESOURCE_FIELDS, "latency_us", "train_s", "build_s")},
                   **{k: _int(d, k, what) for k in ("max_cycles", "epochs_run", "retry_of", "duplicate_of")},
                   fits=_bool(d, "fits", what), reason=_str(d, "reason", what))


@dataclass(frozen=True)
class Finalist:
    """A front point retrained at the full budget, rebuilt and verified (``search.json``'s ``finalists``).

    ``search_accuracy`` is the trial's validation accuracy (what chooses); ``accuracy`` the test
    accuracy after the full budget (only reported). ``lut``: layers plus converters. A finalist
    that failed has ``error`` and ``verified`` false, and no numbers.
    """

    trial: int
    name: str
    search_accuracy: float
    report: str
    accuracy: float | None = None
    fps: float | None = None
    cost: float | None = None
    lut: float | None = None
    fits: bool | None = None
    verified: bool = False
    train_s: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        head = {"trial": self.trial, "name": self.name, "search_accuracy": self.search_accuracy, "report": self.report}
        if self.error is not None:
            return {**head, "error": self.error, "verified": self.verified}
        return {**head, "accuracy": self.accuracy, "fps": self.fps, "cost": self.cost, "lut": self.lut, "fits": self.fits,
                "verified": self.verified, "train_s": self.train_s}

    @classmethod
    def from_json(cls, data: Any, what: str = "finalist") -> Finalist:
        d = _object(data, what)
        trial, name, acc, report = _int(d, "trial", what), _str(d, "name", what), _num(d, "search_accuracy", what), _str(d, "report", what)
        if trial is None or name is None or acc is None or report is None:
            raise ConfigError(f"{what}: trial, name, search_accuracy and report are required")
        return cls(trial=trial, name=name, search_accuracy=acc, report=report,
                   **{k: _num(d, k, what) for k in ("accuracy", "fps", "cost", "lut", "train_s")},
                   fits=_bool(d, "fits", what), verified=bool(_bool(d, "verified", what)), error=_str(d, "error", what))
