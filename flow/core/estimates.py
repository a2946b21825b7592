"""What an estimate of a folded design holds: per layer, per data-width converter, and in total.

:func:`flow.fold.estimate.estimate` fills these from FINN's analyses; the report, the
folding optimizer and the explorers read them.

>>> c = Converter("a", "b", 8, 32, lut=12.0, bram_18k=0.0, uram=0.0, dsp=0.0)
>>> e = Estimates(layers=[], totals=Resources(), budget=Resources(lut=100), over_budget=[], max_cycles=0, bottleneck="",
...               critical_path_cycles=0, throughput_fps=0.0, latency_us=0.0, clock_mhz=100.0, converters=[c])
>>> e.fits, e.converter_totals
(True, Resources(lut=12.0, bram_18k=0.0, uram=0.0, dsp=0.0))
>>> dict(e.totals + e.converter_totals) == {"lut": 12.0, "bram_18k": 0.0, "uram": 0.0, "dsp": 0.0}
True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pydantic_core import core_schema

from flow.core.vocab import RESOURCES


@dataclass(frozen=True, eq=False)
class Resources(Mapping[str, float]):
    """LUT, BRAM18, URAM and DSP of a design or a part of it, or a board's caps: a typed value that
    reads as the mapping report.json holds (``r["lut"]``, ``r.get("dsp")``, ``dict(r)``)."""

    lut: float = 0.0
    bram_18k: float = 0.0
    uram: float = 0.0
    dsp: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, float(getattr(self, f.name)))

    def __getitem__(self, key: str) -> float:
        if key not in RESOURCES:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(RESOURCES)

    def __len__(self) -> int:
        return len(RESOURCES)

    def __add__(self, other: Mapping[str, float]) -> Resources:
        return Resources(**{k: self[k] + float(other.get(k, 0.0)) for k in RESOURCES})

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Resources:
        """The resources of a mapping with (some of) the keys ``lut``, ``bram_18k``, ``uram``, ``dsp``."""
        unknown = sorted(set(values) - set(RESOURCES))
        if unknown:
            raise ValueError(f"unknown resource {unknown[0]!r}; resources are {', '.join(RESOURCES)}")
        return values if isinstance(values, Resources) else cls(**{k: float(v) for k, v in values.items()})

    @classmethod
    def total(cls, parts: Iterable[Any]) -> Resources:
        """The sum over ``parts`` (objects with ``lut``, ``bram_18k``, ``uram``, ``dsp`` attributes)."""
        items = list(parts)
        return cls(**{k: float(sum(getattr(p, k) for p in items)) for k in RESOURCES})

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        def validate(value: Any) -> Resources:
            if not isinstance(value, Mapping):
                raise ValueError("resources must be a mapping of lut, bram_18k, uram, dsp")
            return cls.of(value)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda r: {k: r[k] for k in RESOURCES}))


@dataclass(frozen=True)
class Converter:
    """A data-width converter FINN inserts, with FINN's estimate of its resources."""

    after: str
    before: str
    in_width: int
    out_width: int
    lut: float
    bram_18k: float
    uram: float
    dsp: float

    def resources(self) -> tuple[float, float, float, float]:
        return (self.lut, self.bram_18k, self.uram, self.dsp)


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    op_type: str
    pe: int | None
    simd: int | None
    cycles: int
    lut: float
    bram_18k: float
    uram: float
    dsp: float
    lut_basis: str = "finn"  # flow.fold.lut_model.BASES
    sim_cycles: float | None = None  # measured cycles per frame (--rtlsim)
    sim_note: str | None = None  # why the layer was not simulated, or what the simulation found


@dataclass(frozen=True)
class Estimates:
    layers: list[LayerEstimate]
    totals: Resources  # the layers'
    budget: Resources  # the board's caps
    over_budget: list[str]
    max_cycles: int
    bottleneck: str
    critical_path_cycles: int
    throughput_fps: float
    latency_us: float
    clock_mhz: float
    converters: list[Converter] = field(default_factory=list)
    cycle_bound: dict[str, Any] | None = None  # the lower bound --auto recorded (flow.fold.bound.CycleLimit as a dict)

    @property
    def fits(self) -> bool:
        return not self.over_budget

    @property
    def converter_totals(self) -> Resources:
        return Resources.total(self.converters)
