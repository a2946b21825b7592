"""Recipes: a whole run (model, data, training budget, technique, target, folding) as typed TOML.

A recipe is validated when it is loaded, every field, before anything trains: unknown keys
and bad values are a :class:`~flow.core.errors.ConfigError` naming the field. Paths in a recipe
file (a board TOML file, a folding or specialize file, the data root) are relative to the
recipe's own folder and must stay inside it, links resolved: an absolute path, or one that
climbs out (``../``) or leads out through a link, is refused (a recipe is untrusted: it may
only read what sits beside it). Datasets elsewhere are found through ``$QFLOW_DATA``. The
name is an identifier (letters, digits, ``-``, ``_``, ``.``): it names output folders and files.

>>> r = recipe_from_dict({"name": "tfc-w4", "model": {"name": "tfc", "weight_bits": 4}})
>>> r.model.weight_bits, r.technique.method, r.build.target
(4, 'qat', 'pynq-z1')
>>> recipe_from_dict({"name": "../x"})
Traceback (most recent call last):
...
flow.core.errors.ConfigError: recipe: name: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$' (got '../x')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flow.core.config import BuildConfig, format_validation_error
from flow.core.errors import ConfigError
from flow.core.fileio import parse_toml, read_regular
from flow.nn.techniques.registry import TechniqueSection

#: Named weight quantizers besides the integer bit widths (:mod:`models.weights`).
WEIGHT_KINDS = ("xnor", "ternary")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_RECIPE_BYTES = 1 << 20


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """Which registered network, at which bit widths."""

    name: str = Field("tfc", max_length=80)
    weight_bits: int | Literal["xnor", "ternary"] = 2
    act_bits: int = 2
    input_bits: int | None = None
    layers: dict[str, dict[str, int | str]] = Field(default_factory=dict, max_length=1000)
    options: dict[str, Any] = Field(default_factory=dict, description="extra constructor arguments")

    @field_validator("act_bits", "input_bits")
    @classmethod
    def _bits(cls, v: int | None) -> int | None:
        if v is not None and not 1 <= v <= 8:
            raise ValueError(f"bit width must be between 1 and 8, got {v}")
        return v

    @field_validator("weight_bits", mode="before")
    @classmethod
    def _wbits(cls, v: Any) -> int | str:
        ok = (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8) or v in WEIGHT_KINDS
        if not ok:
            raise ValueError(f"weight bits must be an integer from 1 to 8 or one of {', '.join(map(repr, WEIGHT_KINDS))}")
        return v

    def build_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"weight_bits": self.weight_bits, "act_bits": self.act_bits}
        if self.input_bits is not None:
            kw["input_bits"] = self.input_bits
        if self.layers:
            kw["layer_bits"] = {k: dict(v) for k, v in self.layers.items()}
        return {**kw, **self.options}


class DataSection(_Section):
    """The dataset, read from local files under ``root`` (default: :func:`flow.nn.data.default_data_root`)."""

    dataset: Literal["mnist", "fashion-mnist", "digits"] = "mnist"
    root: Path | None = None


class TrainSection(_Section):
    """The training budget (see :class:`flow.nn.train.TrainConfig`)."""

    epochs: int = Field(10, ge=0, le=100_000)
    batch_size: int = Field(128, gt=0, le=1_000_000)
    lr: float = Field(0.01, gt=0, le=100, allow_inf_nan=False)
    weight_decay: float = Field(0.0, ge=0, le=100, allow_inf_nan=False)
    max_train_samples: int | None = Field(None, gt=0, le=100_000_000)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    threads: int = Field(2, gt=0, le=1024)
    max_shift: float = Field(0.0, ge=0, le=8, allow_inf_nan=False, description="augmentation: random shift, pixels")
    max_degrees: float = Field(0.0, ge=0, le=45, allow_inf_nan=False, description="augmentation: random rotation, degrees")


class Recipe(_Section):
    """A whole run: model, data, training budget, technique, target and folding (``qflow run``)."""

    name: str = Field("recipe", pattern=NAME_PATTERN, max_length=80)
    seed: int = Field(0, ge=0, lt=2**32)
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    build: BuildConfig = BuildConfig()
    technique: TechniqueSection = TechniqueSection()


def _is_file_target(target: str) -> bool:
    return target.endswith(".toml") or "/" in target


def inside(base_dir: Path, path: Path, field: str, source: str) -> Path:
    """``base_dir / path`` when ``path`` is relative and stays inside ``base_dir`` with links resolved;
    ConfigError (one line naming ``field``) otherwise."""
    if path.is_absolute():
        raise ConfigError(f"{source}: {field}: absolute paths are not allowed in a recipe (got {str(path)[:80]!r}); "
                          "give a path relative to the recipe's folder")
    joined = base_dir / path
    if not joined.resolve().is_relative_to(base_dir.resolve()):
        raise ConfigError(f"{source}: {field}: {str(path)[:80]!r} leads outside the recipe's folder {base_dir}; "
                          "keep the file beside the recipe (datasets elsewhere: set $QFLOW_DATA)")
    return joined


def resolve_paths(recipe: Recipe, base_dir: Path, source: str = "recipe") -> Recipe:
    """``recipe`` with its paths (target file, folding/specialize files, data root) under ``base_dir``, each checked by :func:`inside`."""
    build: dict[str, Any] = {k: inside(base_dir, p, f"build.{k}", source) for k in ("folding_file", "specialize_file")
                             if (p := getattr(recipe.build, k)) is not None}
    if _is_file_target(recipe.build.target):
        build["target"] = str(inside(base_dir, Path(recipe.build.target), "build.target", source))
    update: dict[str, Any] = {}
    if build:
        update["build"] = recipe.build.model_copy(update=build)
    if recipe.data.root is not None:
        update["data"] = recipe.data.model_copy(update={"root": inside(base_dir, recipe.data.root, "data.root", source)})
    return recipe.model_copy(update=update) if update else recipe


def recipe_from_dict(data: dict[str, Any], source: str = "recipe", base_dir: Path | None = None) -> Recipe:
    """Validate a recipe given as a dict (as parsed from TOML). With ``base_dir`` (a recipe file's folder)
    its paths must be relative and stay inside that folder (:func:`resolve_paths`); without it they are taken as given."""
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    return resolve_paths(recipe, base_dir, source) if base_dir is not None else recipe


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Parse a user's TOML file, ConfigError (one line) when it is missing, not a regular file, too big, not UTF-8 or not TOML."""
    src = Path(path)
    return parse_toml(read_regular(src, what, ConfigError, limit=MAX_RECIPE_BYTES), f"{what} {src}", ConfigError)


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Load and validate a recipe; ``None`` loads the default (TFC-w2a2 on MNIST, Pynq-Z1)."""
    src = Path(path) if path is not None else default_recipe_path()
    return recipe_from_dict(read_toml(src, "recipe"), source=str(src), base_dir=src.resolve().parent)


def default_recipe_path() -> Path:
    return Path(__file__).resolve().parents[1] / "recipes" / "tfc_w2a2_mnist.toml"
