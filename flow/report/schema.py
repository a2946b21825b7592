"""The build report as a typed object, serialised to report.json in a stable, documented schema.

Schema (``schema_version`` 4)::

    model                 str     model name or file stem
    target                {name, part, clock_mhz, resources, caps}
                                  resources: the device's totals {lut, ff, bram_18k, uram, dsp}; caps: the
                                  fraction of each a design may use (the budget is floor(total x cap))
    layers                [{name, op_type, pe, simd, cycles, lut, bram_18k, uram, dsp,
                            lut_basis, sim_cycles, sim_note}]
                                  cycles: FINN's estimate per frame; lut_basis: where ``lut`` comes
                                  from: finn | qflow-yosys-fit | qflow-structural | none (FINN has no
                                  model and neither has qflow: 0 counted, not an estimate), see
                                  flow.fold.lut_model; sim_cycles: cycles per frame measured in
                                  RTL simulation (--rtlsim), null with the reason in sim_note
    totals, budget        {lut, bram_18k, uram, dsp}   sum of layers / target caps
    data_width_converters {count, totals: {lut, bram_18k, uram, dsp},
                           converters: [{after, before, in_width, out_width, lut, bram_18k, uram, dsp}]}
                                  the stream-width converters FINN inserts between layers, FINN's estimate
    fits                  bool    layers + converters within budget on every resource
    over_budget           [str]   resources over the caps
    max_cycles            int     cycles per frame of the slowest layer
    bottleneck            str     that layer (the first in dataflow order when several tie)
    bottlenecks           [str]   every layer at max_cycles: speeding up one of several gains nothing
    throughput_fps        float   clock / max_cycles
    latency_us            float   critical-path cycles / clock
    accuracy              float | null   test accuracy, when the flow trained the model
    verification          {passed, stages: [{name, reference, samples, passed, max_abs_err,
                           label_match, bit_exact, first_mismatch, ties, note, layer, rounding_ties,
                           skipped}]} | null
                                  stage "rtlsim" (--rtlsim): the generated RTL against the
                                  specialized design's Python execution; ``layer`` names the layer
                                  of the first mismatch; ``skipped``: nothing was simulated (no RTL
                                  layer), so nothing failed and nothing was checked
    rtlsim                {simulator, samples, passed, skipped, layers_hw, layers_rtl, layers_simulated,
                           chains: [{name, layers, nodes, fifos, dwcs, status, passed, bit_exact,
                                     cycles_per_frame, latency, exp_cycles, deep_cycles_per_frame,
                                     deep_latency, fifo_depth_deep, fifo_depth_sized, fifo_depths,
                                     fifo_peaks, rate_kept, backpressure_bit_exact, note}],
                           fifo_depths_file, verilate_s, simulate_s} | null
                                  RTL simulation (--rtlsim): chains of RTL layers stitched with FINN's
                                  converters and FIFOs (``skipped``: nothing simulated); cycles in clock cycles per frame, latency in
                                  cycles for the first frame; FIFO depths sized from simulated peaks
    folding               {mode, target_fps, file, specialize_file}
    cycle_bound           {cycles, source, layer, fraction, input_stream_cycles, input_layer,
                           fastest_layer_cycles, fastest_layer, caps_cycles, search_cycles, optimal} | null
                                  --auto: a lower bound on cycles per frame under the board's caps
                                  (``cycles``, the largest of: the input stream at the first layers'
                                  widest legal input, one word per cycle; every layer at its fastest
                                  legal setting; the LP relaxation of the folding choice under the caps;
                                  bounds the exact search proved infeasible), where it comes from
                                  (``source``: input_stream | fastest_layer | caps | search, and
                                  ``layer``), and ``fraction`` = cycles / max_cycles (1.0: the design
                                  is on its bound); ``optimal``: proven fastest within the caps
    stage                 estimates | codegen | bitfile
    skipped               [str]   steps not run, and default verification inputs left out, with the reason
    timings_s             {step: seconds}   every shown step, in the order it ran (:class:`flow.core.timings.Timings`)

:meth:`Report.load` reads a report.json back, validated (a file in an output folder is
untrusted input); :meth:`Report.to_dict` is the JSON-ready dict. Reports of schema version 1
(before ``lut_basis``, ``sim_cycles``, ``rtlsim``), 2 (before ``cycle_bound``) and 3 (before
``bottlenecks``, the target's ``resources`` and ``caps``, the stage's ``skipped``) load with those fields
at their defaults (``bottlenecks`` as ``[bottleneck]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flow.core.config import format_validation_error
from flow.core.errors import ConfigError
from flow.core.estimates import Converter, Estimates, LayerEstimate, Resources
from flow.core.timings import Timings
from flow.core.vocab import RESOURCE_LABELS
from flow.sim.verify import Verification
from flow.verifiers.builtin import view_of
from flow.verifiers.rtlsim_section import RtlsimReport
from hw_targets import RESOURCE_KEYS, Target

SCHEMA_VERSION = 4
#: Largest report.json :meth:`Report.load` reads.
MAX_REPORT_BYTES = 64 * 2**20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetInfo(_Strict):
    name: str
    part: str
    clock_mhz: float = Field(gt=0, allow_inf_nan=False)
    resources: dict[str, int] | None = None
    caps: dict[str, float] | None = None

    @classmethod
    def of(cls, target: Target) -> "TargetInfo":
        return cls(name=target.name, part=target.part, clock_mhz=target.clock_mhz,
                   resources={k: getattr(target.resources, k) for k in RESOURCE_KEYS},
                   caps={k: getattr(target.caps, k) for k in RESOURCE_KEYS})


class ConverterSummary(_Strict):
    count: int = Field(ge=0)
    totals: Resources
    converters: list[Converter]


class FoldingInfo(_Strict):
    mode: str
    target_fps: int | None = None
    file: str | None = None
    specialize_file: str | None = None


class CycleBound(_Strict):
    """``--auto``'s lower bound on cycles per frame under the board's caps, and the design's distance from it."""

    cycles: int = Field(ge=0)
    source: Literal["input_stream", "fastest_layer", "caps", "search"]
    layer: str | None = None
    fraction: float = Field(ge=0, allow_inf_nan=False)
    input_stream_cycles: int = Field(ge=0)
    input_layer: str | None = None
    fastest_layer_cycles: int = Field(ge=0)
    fastest_layer: str | None = None
    caps_cycles: int = Field(ge=0)
    search_cycles: int = Field(ge=0)
    optimal: bool

    def describe(self) -> str:
        """The bound, where it comes from, and how close the design is, in one sentence."""
        what = {
            "input_stream": f"the input stream into {self.layer} (one word per cycle at its widest legal input)",
            "fastest_layer": f"{self.layer} at its fastest legal setting within the caps",
            "caps": "the board's caps (LP relaxation of the folding choice, converters included)",
            "search": "the board's caps (no folding fits at fewer cycles, proven by the exact search)",
        }[self.source]
        if self.fraction >= 1.0:
            at = "on its input-stream bound" if self.source == "input_stream" else "on this bound"
        else:
            at = f"at {100 * self.fraction:.1f}% of it" + ("" if self.optimal else " (not proven optimal)")
        return f"lower bound {self.cycles:,} cycles/frame from {what}; the design is {at}"


def tied_bottlenecks(est: Estimates) -> list[str]:
    """Every layer whose cycles per frame equal the design's maximum, FINN's bottleneck first."""
    tied = [layer.name for layer in est.layers if layer.cycles == est.max_cycles and layer.name != est.bottleneck]
    return [est.bottleneck, *tied] if est.bottleneck else tied


class Report(_Strict):
    """One build: its target, per-layer estimates, converters, verification and timings."""

    schema_version: int = SCHEMA_VERSION
    model: str
    target: TargetInfo
    layers: list[LayerEstimate]
    totals: Resources
    data_width_converters: ConverterSummary
    budget: Resources
    fits: bool
    over_budget: list[str]
    max_cycles: int
    bottleneck: str
    bottlenecks: list[str] = Field(default_factory=list)
    throughput_fps: float = Field(allow_inf_nan=False)
    latency_us: float = Field(allow_inf_nan=False)
    accuracy: float | None = Field(None, allow_inf_nan=False)
    verification: Verification | None = None
    folding: FoldingInfo
    stage: str
    skipped: list[str] = Field(default_factory=list)
    timings_s: Timings = Field(default_factory=Timings)
    rtlsim: RtlsimReport | None = None  # the RTL simulation verifier's section (flow.verifiers.rtlsim_section)
    cycle_bound: CycleBound | None = None
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict)  # other verifiers' own sections, by name

    @classmethod
    def from_estimates(
        cls, *, model: str, target: Target, est: Estimates, folding: FoldingInfo, stage: str,
        accuracy: float | None = None, verification: Verification | None = None,
        skipped: list[str] | None = None, timings: Mapping[str, float] | None = None,
        cycle_bound: dict[str, Any] | None = None, results: Mapping[str, object] | None = None,
    ) -> "Report":
        """The report of an estimate; ``results``: each verifier's result section by verifier name, stored
        and shown as its :class:`~flow.verifiers.section.SectionView` says (its own key, or ``sections.<name>``)."""
        layers, own, sections = list(est.layers), {}, {}
        for name, result in (results or {}).items():
            view = view_of(name)
            layers = view.annotate_layers(layers, result)
            section = view.section(result)
            if section is not None:
                (own if view.report_key else sections)[view.report_key or name] = section
        return cls(
            model=model,
            target=TargetInfo.of(target),
            layers=layers,
            totals=est.totals,
            data_width_converters=ConverterSummary(count=len(est.converters), totals=est.converter_totals, converters=list(est.converters)),
            budget=est.budget,
            fits=est.fits,
            over_budget=est.over_budget,
            max_cycles=est.max_cycles,
            bottleneck=est.bottleneck,
            bottlenecks=tied_bottlenecks(est),
            throughput_fps=est.throughput_fps,
            latency_us=est.latency_us,
            accuracy=accuracy,
            verification=verification,
            folding=folding,
            stage=stage,
            skipped=skipped or [],
            timings_s=Timings.of(timings or {}).rounded(3),
            cycle_bound=CycleBound.model_validate(cycle_bound) if cycle_bound is not None else None,
            sections=sections,
            **own,
        )

    @model_validator(mode="before")
    @classmethod
    def _bottlenecks(cls, data: Any) -> Any:
        if isinstance(data, dict) and "bottlenecks" not in data and isinstance(data.get("bottleneck"), str) and data["bottleneck"]:
            return {**data, "bottlenecks": [data["bottleneck"]]}  # a report of schema version 1 to 3
        return data

    def over_caps(self) -> str:
        """Why the design does not fit, in the summary's totals (layers plus converters), e.g.
        ``LUT 2,693 > 700 (layers 2,621 + converters 72)``; empty when it fits."""
        used, conv = self.resources_used(), self.data_width_converters.totals
        parts = []
        for k in self.over_budget:
            c = float(conv.get(k, 0.0))
            split = f" (layers {used[k] - c:,.0f} + converters {c:,.0f})" if c else ""
            parts.append(f"{RESOURCE_LABELS.get(k, k)} {used[k]:,.0f} > {self.budget.get(k, 0):,.0f}{split}")
        return ", ".join(parts)

    def resources_used(self) -> Resources:
        """Layers plus data-width converters per resource: what ``fits`` compares with the budget."""
        return self.totals + self.data_width_converters.totals

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of report.json."""
        return self.model_dump(mode="json", exclude=set() if self.sections else {"sections"})

    @classmethod
    def from_dict(cls, data: Any, source: str = "report") -> "Report":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, source)) from None

    @classmethod
    def load(cls, path: str | Path) -> "Report":
        """Read and validate a report.json; ConfigError (one line) if it is not one."""
        p = Path(path)
        try:
            if p.stat().st_size > MAX_REPORT_BYTES:
                raise ConfigError(f"{p} is larger than {MAX_REPORT_BYTES:,} bytes; it is not a qflow report")
            data = json.loads(p.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ConfigError(f"{p} is not a qflow report.json ({type(e).__name__})") from None
        return cls.from_dict(data, source=str(p))
