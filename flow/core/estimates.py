"""What an estimate of a folded design holds: per layer, per data-width converter, and in total.

:func:`flow.fold.estimate.estimate` fills these from FINN's analyses; the report, the
folding optimizer and the explorers read them.

>>> c = Converter("a", "b", 8, 32, lut=12.0, bram_18k=0.0, uram=0.0, dsp=0.0)
>>> e = Estimates(layers=[], totals=dict.fromkeys(RESOURCES, 0.0), budget={}, over_budget=[], max_cycles=0, bottleneck="",
...               critical_path_cycles=0, throughput_fps=0.0, latency_us=0.0, clock_mhz=100.0, converters=[c])
>>> e.fits, e.converter_totals["lut"]
(True, 12.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flow.core.vocab import RESOURCES


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
    totals: dict[str, float]
    budget: dict[str, int]
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
    def converter_totals(self) -> dict[str, float]:
        return {k: float(sum(getattr(c, k) for c in self.converters)) for k in RESOURCES}
