"""FPGA boards qflow can target, one TOML file each in this folder.

A board file holds the FPGA part, the default clock, the device's resource totals and
the utilisation caps a design may use. Add a board by adding a file (or pass the path
of a TOML file wherever a target name is accepted).

>>> from hw_targets import load_target
>>> t = load_target("pynq-z1")
>>> t.part, t.clock_mhz, t.budget()["lut"]
('xc7z020clg400-1', 100.0, 37240)
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flow.core.config import format_validation_error
from flow.core.errors import ConfigError, UnknownTargetError
from flow.core.fileio import parse_toml, read_regular

TARGET_DIR = Path(__file__).resolve().parent
RESOURCE_KEYS = ("lut", "ff", "bram_18k", "uram", "dsp")


class Resources(BaseModel):
    """Device resource totals."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lut: int = Field(gt=0, le=10**9)
    ff: int = Field(gt=0, le=10**9)
    bram_18k: int = Field(ge=0, le=10**7)
    uram: int = Field(ge=0, le=10**7)
    dsp: int = Field(ge=0, le=10**7)


class Caps(BaseModel):
    """Fraction of each resource a design may use (FINN's DEFAULT_RES_LIMITS by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lut: float = Field(0.7, gt=0, le=1)
    ff: float = Field(0.5, gt=0, le=1)
    bram_18k: float = Field(0.8, gt=0, le=1)
    uram: float = Field(0.8, gt=0, le=1)
    dsp: float = Field(0.8, gt=0, le=1)


class Target(BaseModel):
    """One board: part, clock, resources and caps."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(max_length=80)
    display_name: str = Field(max_length=120)
    part: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    finn_board: str = Field(max_length=80)
    shell: Literal["zynq", "alveo"]
    clock_mhz: float = Field(ge=1, le=2000, allow_inf_nan=False)
    resources: Resources
    caps: Caps = Caps()

    @property
    def clock_period_ns(self) -> float:
        return 1000.0 / self.clock_mhz

    def budget(self) -> dict[str, int]:
        """Resources a design may use: floor(total x cap) per resource."""
        return {
            k: int(math.floor(getattr(self.resources, k) * getattr(self.caps, k) + 1e-9))
            for k in RESOURCE_KEYS
        }

    def with_clock(self, clock_mhz: float | None) -> "Target":
        """This target at another clock (``None`` keeps the default); validated like the file's own."""
        if clock_mhz is None:
            return self
        try:
            return Target.model_validate({**self.model_dump(), "clock_mhz": clock_mhz})
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, f"target {self.name}")) from None


MAX_TARGET_BYTES = 1 << 16


def _read(path: Path) -> Target:
    raw = read_regular(path, "target file", ConfigError, limit=MAX_TARGET_BYTES)  # a regular file only: no pipe or device
    data = parse_toml(raw, f"target file {path}", ConfigError)
    data.setdefault("name", path.stem)
    try:
        return Target.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, f"target file {path}")) from None


def list_targets(directory: Path = TARGET_DIR) -> list[Target]:
    """Every board in ``directory``, sorted by name."""
    return sorted((_read(p) for p in directory.glob("*.toml")), key=lambda t: t.name)


def load_target(name_or_path: str | Path, directory: Path = TARGET_DIR) -> Target:
    """A board by name (``pynq-z1``; case-insensitive) or by the path of a TOML file."""
    p = Path(name_or_path)
    if p.suffix == ".toml":
        if not p.exists():
            raise UnknownTargetError(f"target file {p} does not exist")
        return _read(p)
    key = str(name_or_path).lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._ -]{0,79}", key) or ".." in key:
        raise UnknownTargetError(f"target {str(name_or_path)[:60]!r} is neither a board name nor a .toml file; run `qflow targets` to list boards")
    candidate = directory / f"{key}.toml"
    if candidate.is_file():
        return _read(candidate)
    for t in list_targets(directory):
        if key in (t.name.lower(), t.display_name.lower(), t.finn_board.lower()):
            return t
    names = ", ".join(t.name for t in list_targets(directory))
    raise UnknownTargetError(
        f"unknown target {name_or_path!r}; known boards: {names} "
        f"(add one as a TOML file in {directory})"
    )
