"""Typed, validated build options, and the one way validation errors are worded.

Everything a build needs is a value here, checked when it is built; bad values raise
:class:`flow.core.errors.ConfigError` naming the field and the fix. Recipes (training plus
build) are :mod:`flow.explore.recipe`.

>>> from flow.core.config import BuildConfig
>>> cfg = BuildConfig(target="pynq-z1", target_fps=100_000)
>>> cfg.folding_mode
'fps'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from qonnx.core.datatype import DataType

from flow.core.errors import ConfigError

#: How far a build goes: FINN's estimates, code generation, or (with Vivado) a bitfile.
OutputStage = Literal["estimates", "codegen", "bitfile"]
#: Most verification samples one build runs.
MAX_VERIFY_SAMPLES = 100_000
#: ``qflow build`` without ``--samples``: this many random inputs, capped at VERIFY_GMAC of
#: multiply-accumulates per stage as the streamlined graph executes them, but at least MIN_VERIFY_SAMPLES.
DEFAULT_VERIFY_SAMPLES, VERIFY_GMAC, MIN_VERIFY_SAMPLES = 100, 40.0, 4


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line naming the first bad field of ``err`` and what was wrong with it."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    value = first.get("input")
    shown = repr(value)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":  # the key is the problem, not its value
        return f"{source}: unknown key {where!r}; remove it or fix its spelling"
    says_what = isinstance(value, (dict, list)) or re.search(r"\bgot\b", msg)  # a validator's message that names the value already
    got = "" if says_what else f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
    return f"{source}: {where}: {msg}{got}" if where else f"{source}: {msg}{got}"


#: The widest graph input: every integer up to 2**24 is exact in the float32 that FINN's execution and verification compute in.
MAX_INPUT_BITS = 24


def check_datatype_name(name: str | None) -> str | None:
    """Validate a FINN/QONNX datatype name such as ``UINT8`` or ``INT4``."""
    if name is None:
        return None

    try:
        dt = DataType[name.upper()]
    except KeyError:
        raise ValueError(f"unknown datatype {name!r}; use a FINN datatype such as UINT8, INT8, BIPOLAR") from None
    if not dt.is_integer():
        raise ValueError(f"input datatype must be an integer type, got {name!r}")
    if dt.bitwidth() > MAX_INPUT_BITS:
        raise ValueError(f"input datatype {dt.name} is wider than {MAX_INPUT_BITS} bits, which FINN's layers and float "
                         "verification cannot hold exactly; use the input's real type, e.g. UINT8 for raw pixels")
    return dt.name


class BuildConfig(BaseModel):
    """Options of one QONNX -> FINN build (``qflow build`` and the build half of ``qflow run``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = "pynq-z1"
    clock_mhz: float | None = Field(None, ge=1, le=2000, allow_inf_nan=False, description="override the target's default clock (MHz)")
    input_dtype: str | None = Field(None, description="FINN datatype of the graph input, e.g. UINT8")
    target_fps: int | None = Field(None, gt=0, le=10**12, description="FINN SetFolding towards this frame rate")
    folding_file: Path | None = Field(None, description="FINN folding-config JSON to apply")
    auto: bool = Field(False, description="fold with qflow's resource-constrained optimizer (flow.fold.optimizer)")
    specialize_file: Path | None = Field(None, description="FINN specialize-layers config JSON: preferred_impl_style (hls/rtl) per generic layer name, as each build writes to specialize_layers.json")
    stage: OutputStage = "estimates"
    classify: bool = Field(True, description="end the design with a label select (top-1 index)")
    standalone_thresholds: bool = Field(False, description="keep thresholds as separate layers (FINN's standalone_thresholds), so MVAUs can be MVAU_rtl")
    prefer_rtl: bool = Field(False, description="ask FINN for the RTL variant of every layer that has one (with auto: keep it), so rtlsim covers more of the design")
    rtlsim: bool = Field(False, description="simulate the generated RTL with Verilator: every RTL layer bit for bit against Python, chains stitched, FIFO depths sized")
    rtlsim_samples: int = Field(8, ge=2, le=10_000, description="verification inputs streamed back to back through the RTL")
    mvau_wwidth_max: int = Field(36, gt=0, le=2**20)
    verify_samples: int = Field(1000, ge=0, le=MAX_VERIFY_SAMPLES, description="random or test inputs verified through every stage")
    verify_gmac: float | None = Field(None, gt=0, description="cap random verification inputs at this many GMAC per stage (at least 4 inputs); None: no cap")
    flow: str = Field("default", description="the registered flow a build runs (flow.builder.registry): default, compile, estimate, codegen, bitfile")
    steps: tuple[str, ...] | None = Field(None, description="registered build steps to run instead of the flow's (flow.builder.registry)")
    strict: bool = False

    _check_dtype = field_validator("input_dtype")(classmethod(lambda cls, v: check_datatype_name(v)))

    @model_validator(mode="after")
    def _one_folding_source(self) -> "BuildConfig":
        if self.target_fps is not None and self.folding_file is not None:
            raise ValueError("give either target_fps (--fps) or folding_file (--folding), not both")
        if self.auto and (self.target_fps is not None or self.folding_file is not None):
            raise ValueError("give one of auto (--auto), target_fps (--fps) or folding_file (--folding), not several")
        return self

    @property
    def folding_mode(self) -> Literal["fps", "file", "auto", "default"]:
        if self.auto:
            return "auto"
        if self.folding_file is not None:
            return "file"
        return "fps" if self.target_fps is not None else "default"


def sample_options(samples: int | None) -> dict[str, Any]:
    """The build options for ``--samples``: as given, or, when not given, the default count capped by size."""
    return {"verify_samples": samples} if samples is not None else {"verify_samples": DEFAULT_VERIFY_SAMPLES, "verify_gmac": VERIFY_GMAC}


def build_config(**kwargs: Any) -> BuildConfig:
    """A validated BuildConfig from keyword options, raising ConfigError on bad values."""
    try:
        return BuildConfig(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "build options")) from None
