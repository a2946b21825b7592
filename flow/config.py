"""Typed, validated configuration: build options and recipes (TOML).

Everything a build or a run needs is a value here, checked when it is loaded; bad
values raise :class:`flow.errors.ConfigError` naming the field and the fix.

>>> from flow.config import BuildConfig
>>> cfg = BuildConfig(target="pynq-z1", target_fps=100_000)
>>> cfg.folding_mode
'fps'
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flow.errors import ConfigError

STAGES = ("estimates", "codegen", "bitfile")


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line naming the first bad field of ``err`` and what was wrong with it."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    value = first.get("input")
    got = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{source}: {where}: {first['msg']}{got}"


def check_datatype_name(name: str | None) -> str | None:
    """Validate a FINN/QONNX datatype name such as ``UINT8`` or ``INT4``."""
    if name is None:
        return None
    from qonnx.core.datatype import DataType

    try:
        dt = DataType[name.upper()]
    except KeyError:
        raise ValueError(f"unknown datatype {name!r}; use a FINN datatype such as UINT8, INT8, BIPOLAR") from None
    if not dt.is_integer():
        raise ValueError(f"input datatype must be an integer type, got {name!r}")
    return dt.name


class BuildConfig(BaseModel):
    """Options of one QONNX -> FINN build (``qflow build`` and the build half of ``qflow run``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = "pynq-z1"
    clock_mhz: float | None = Field(None, gt=0, description="override the target's default clock")
    input_dtype: str | None = Field(None, description="FINN datatype of the graph input, e.g. UINT8")
    target_fps: int | None = Field(None, gt=0, description="FINN SetFolding towards this frame rate")
    folding_file: Path | None = Field(None, description="FINN folding-config JSON to apply")
    auto: bool = Field(False, description="fold with qflow's resource-constrained optimizer (flow.optimizer)")
    specialize_file: Path | None = Field(None, description="FINN specialize-layers config JSON: preferred_impl_style (hls/rtl) per generic layer name, as each build writes to specialize_layers.json")
    stage: Literal["estimates", "codegen", "bitfile"] = "estimates"
    classify: bool = Field(True, description="end the design with a label select (top-1 index)")
    standalone_thresholds: bool = False
    mvau_wwidth_max: int = Field(36, gt=0)
    verify_samples: int = Field(1000, ge=0)
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


class ModelSection(BaseModel):
    """Which registered network, at which bit widths."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "tfc"
    weight_bits: int | Literal["ternary"] = 2
    act_bits: int = 2
    input_bits: int | None = None
    layers: dict[str, dict[str, int | str]] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="extra constructor arguments")

    @field_validator("act_bits", "input_bits")
    @classmethod
    def _bits(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 8:
            raise ValueError(f"bit width must be between 1 and 8, got {v}")
        return v

    @field_validator("weight_bits")
    @classmethod
    def _wbits(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 8:
            raise ValueError(f"bit width must be between 1 and 8 (or 'ternary'), got {v}")
        return v

    def build_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"weight_bits": self.weight_bits, "act_bits": self.act_bits}
        if self.input_bits is not None:
            kw["input_bits"] = self.input_bits
        if self.layers:
            kw["layer_bits"] = {k: dict(v) for k, v in self.layers.items()}
        return {**kw, **self.options}


class DataSection(BaseModel):
    """The dataset, read from local files under ``root``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dataset: Literal["mnist", "fashion-mnist", "digits"] = "mnist"
    root: Path = Path("data")


class TrainSection(BaseModel):
    """QAT budget (see :class:`flow.train.TrainConfig`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_train_samples: int | None = Field(None, gt=0)
    schedule: Literal["onecycle", "constant"] = "onecycle"
    threads: int = Field(2, gt=0)


class DistillSection(BaseModel):
    """Knowledge distillation from a float teacher (see :mod:`flow.techniques.distill`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    teacher: Literal["float", "wider"] = Field("float", description="float twin of the model, or one 2x wider")
    teacher_epochs: int | None = Field(None, ge=0, description="teacher training epochs (default: train.epochs)")
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the KL term; 1 - alpha on cross-entropy")


class LowRankSection(BaseModel):
    """SVD factorization of layers before quantization (see :mod:`flow.techniques.lowrank`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rank: int | None = Field(None, ge=1, description="rank of every factored layer")
    energy: float | None = Field(None, gt=0, le=1, description="or: fraction of squared singular values kept")
    layers: list[str] | None = Field(None, description="layers to factor (default: every hidden Linear layer)")
    mid_bits: int | None = Field(None, ge=2, le=8, description="bits between the factors (default: the layer's act_bits)")
    pretrain_epochs: int = Field(0, ge=0, description="float-train the unfactored network first, then factor it")

    @model_validator(mode="after")
    def _rank_or_energy(self) -> "LowRankSection":
        if (self.rank is None) == (self.energy is None):
            raise ValueError("give exactly one of rank and energy")
        return self


_PTQ_FIELDS = ("float_epochs", "calibration_samples", "bias_correction", "equalize", "learned_round", "learned_round_iters")


class TechniqueSection(BaseModel):
    """How the quantized network is obtained: QAT (default) or PTQ, plus distillation and low-rank."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["qat", "ptq"] = "qat"
    float_epochs: int | None = Field(None, ge=0, description="PTQ: float training epochs (default: train.epochs)")
    calibration_samples: int = Field(1000, gt=0)
    bias_correction: bool = True
    equalize: bool = Field(True, description="cross-layer equalization of the float network")
    learned_round: bool = Field(False, description="AdaRound-style learned rounding (Brevitas)")
    learned_round_iters: int = Field(200, gt=0)
    distill: DistillSection | None = None
    lowrank: LowRankSection | None = None

    @model_validator(mode="after")
    def _method_options(self) -> "TechniqueSection":
        if self.method == "qat":
            given = [f for f in _PTQ_FIELDS if f in self.model_fields_set]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to method = 'ptq'")
        elif self.distill is not None:
            raise ValueError("distill trains the quantized network, so it needs method = 'qat'")
        return self


class Recipe(BaseModel):
    """A whole run: model, data, training budget, target and folding (``qflow run``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "recipe"
    seed: int = 0
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    build: BuildConfig = BuildConfig()
    technique: TechniqueSection = TechniqueSection()


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Load and validate a recipe; ``None`` loads the default (TFC-w2a2 on MNIST, Pynq-Z1)."""
    src = Path(path) if path is not None else default_recipe_path()
    try:
        data = tomllib.loads(src.read_text())
    except FileNotFoundError:
        raise ConfigError(f"recipe {src} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"recipe {src} is not valid TOML: {e}") from None
    return recipe_from_dict(data, source=str(src), base_dir=src.parent)


def recipe_from_dict(data: dict[str, Any], source: str = "recipe", base_dir: Path | None = None) -> Recipe:
    """Validate a recipe given as a dict (as parsed from TOML)."""
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    if base_dir is not None:
        paths = {k: base_dir / p for k in ("folding_file", "specialize_file") if (p := getattr(recipe.build, k)) is not None and not p.is_absolute()}
        if paths:
            recipe = recipe.model_copy(update={"build": recipe.build.model_copy(update=paths)})
    return recipe


def default_recipe_path() -> Path:
    return Path(__file__).resolve().parent / "recipes" / "tfc_w2a2_mnist.toml"


def build_config(**kwargs: Any) -> BuildConfig:
    """A validated BuildConfig from keyword options, raising ConfigError on bad values."""
    try:
        return BuildConfig(**kwargs)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, "build options")) from None
