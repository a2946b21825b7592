"""``qflow compare``: run a sweep of recipes through the whole flow and compare the designs.

A sweep is TOML: shared ``[defaults]`` (a partial recipe) and ``[[rows]]``, each a unique
``name`` plus a partial recipe (model, bits, technique, training overrides)::

    name = "smoke"
    [defaults]
    data = { dataset = "digits" }
    train = { epochs = 1, batch_size = 64 }
    build = { target = "pynq-z1", target_fps = 100000, verify_samples = 50 }

    [[rows]]
    name = "w1a1"
    model = { name = "tfc", weight_bits = 1, act_bits = 1 }

    [[rows]]
    name = "w2a2-kd"
    model = { name = "tfc", weight_bits = 2, act_bits = 2 }
    technique = { distill = { teacher = "float" } }

Each row is the defaults deep-merged with the row (tables merge, values replace), named
after the row and validated as a recipe. Every row is validated and its model built (no
training), with its technique checked against it, before the first row trains: a bad row
fails the sweep at once with its name in the message.

Each row runs :func:`flow.run.run` into ``DIR/rows/<name>/`` and yields one result dict:
accuracy, weight memory (bits), BOPs and MACs (qonnx's inference cost of the exported QONNX
model), the LUT/BRAM/URAM/DSP totals, frames/s and latency on the target, verification,
training/quantization time, the seed and the full resolved recipe. ``DIR`` gets
``results.json``, ``results.csv``, ``results.md`` and two plots (``accuracy_vs_lut.png``,
``accuracy_vs_fps.png``) with the Pareto fronts (per dataset) marked. A finished row leaves
``rows/<name>/row.json``; a rerun reuses every row whose ``row.json`` holds the same resolved
recipe, so an interrupted sweep resumes where it stopped.

>>> sweep = load_sweep(SMOKE_SWEEP)
>>> list(sweep.rows), sweep.rows["w1a1"].model.weight_bits
(['w1a1', 'w2a2'], 1)
>>> rows = compare(sweep, "runs/smoke", progress=False)       # doctest: +SKIP
>>> rows[0]["accuracy"], rows[0]["lut"], rows[0]["bops"]        # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flow.config import Recipe, format_validation_error, recipe_from_dict
from flow.errors import ConfigError, OverBudgetError, QflowError, ToolMissingError, VerificationError
from flow.fileio import atomic_write_json
from flow.pareto import PLOTS, markdown_table, pareto_front, write_results

__all__ = ["PLOTS", "SMOKE_SWEEP", "Sweep", "check_sweep", "compare", "deep_merge", "load_sweep", "markdown_table",
           "pareto_front", "sweep_from_dict", "write_results"]

#: The tiny sweep of the tests (2 rows on digits, 1 epoch).
SMOKE_SWEEP = Path(__file__).resolve().parent.parent / "benchmarks" / "sweeps" / "smoke.toml"

_ROW_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"


class _RowSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=_ROW_NAME, max_length=80, description="unique; also the row's folder and recipe name")


class _SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(None, pattern=_ROW_NAME)
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    rows: list[_RowSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: resolved recipes by row name, in file order."""

    name: str
    rows: dict[str, Recipe]
    description: str = ""
    source: str = "sweep"
    base_dir: Path | None = field(default=None, compare=False)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: nested tables merge, everything else is replaced.

    >>> deep_merge({"model": {"name": "tfc", "act_bits": 2}, "seed": 0}, {"model": {"act_bits": 4}})
    {'model': {'name': 'tfc', 'act_bits': 4}, 'seed': 0}
    """
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load_sweep(path: str | Path) -> Sweep:
    """Read, validate and check a sweep TOML file (see the module docstring); ConfigError on bad input."""
    src = Path(path)
    try:
        data = tomllib.loads(src.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep {src} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"sweep {src} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep {src} is not valid TOML: {e}") from None
    data.setdefault("name", src.stem.replace("_", "-"))
    return sweep_from_dict(data, source=str(src), base_dir=src.parent)


def sweep_from_dict(data: Mapping[str, Any], source: str = "sweep", base_dir: Path | None = None, *, check: bool = True) -> Sweep:
    """Validate a sweep given as a dict (as parsed from TOML); with ``check``, build every row's model too."""
    try:
        spec = _SweepSpec.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    if "name" in spec.defaults:
        raise ConfigError(f"{source}: defaults.name: rows are named by their own `name`; remove it from [defaults]")
    recipe_from_dict(spec.defaults, source=f"{source}: defaults", base_dir=base_dir)
    rows: dict[str, Recipe] = {}
    for i, row in enumerate(spec.rows):
        if row.name in rows:
            first = list(rows).index(row.name)
            raise ConfigError(f"{source}: rows.{i}.name: duplicate row name {row.name!r} (also rows.{first})")
        merged = {**deep_merge(spec.defaults, row.model_extra or {}), "name": row.name}
        rows[row.name] = recipe_from_dict(merged, source=f"{source}: row {row.name!r}", base_dir=base_dir)
    sweep = Sweep(spec.name or "sweep", rows, spec.description, source, base_dir)
    if check:
        check_sweep(sweep)
    return sweep


def check_sweep(sweep: Sweep) -> None:
    """Build each row's model and check its technique and target, without training.

    Mirrors the checks :func:`flow.run.run` makes before training, for every row at once,
    and that each row's dataset is on disk; errors name the row.
    """
    from flow.data import load_dataset
    from flow.techniques import distill, lowrank
    from hw_targets import load_target
    from models import build_model

    shapes: dict[tuple[str, str], tuple] = {}
    for name, recipe in sweep.rows.items():
        try:
            key = (recipe.data.dataset, str(recipe.data.root))
            if key not in shapes:
                ds = load_dataset(recipe.data.dataset, "test", recipe.data.root)
                shapes[key] = (ds.input_shape, ds.num_classes)
            in_shape, classes = shapes[key]
            kw = {"in_shape": in_shape, "num_classes": classes, **recipe.model.build_kwargs()}
            model = build_model(recipe.model.name, **kw)
            tech = recipe.technique
            if tech.lowrank:
                lowrank.check_factorization(model, **tech.lowrank.model_dump(include={"rank", "energy", "layers"}))
            if tech.distill:
                distill.make_teacher(recipe.model.name, tech.distill.teacher, **kw)
            load_target(recipe.build.target)
            ff = recipe.build.folding_file
            if ff is not None and not Path(ff).is_file():
                raise ConfigError(f"build.folding_file {ff} does not exist")
        except (QflowError, ValueError, TypeError) as e:
            msg = f"{sweep.source}: row {name!r}: {' '.join(str(e).split())}"
            try:
                err = type(e)(msg) if isinstance(e, QflowError) else ConfigError(msg)
            except TypeError:
                err = ConfigError(msg)
            raise err from None


# --------------------------------------------------------------------------- one row


def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def precision_label(recipe: Recipe) -> str:
    """``w2a2``, ``wTa2`` (ternary), plus input bits and per-layer overrides when given."""
    m = recipe.model

    def wa(d: Mapping[str, Any]) -> str:
        w, a = d.get("weight_bits"), d.get("act_bits")
        return ("" if w is None else f"w{'T' if w == 'ternary' else w}") + ("" if a is None else f"a{a}")

    parts = [wa({"weight_bits": m.weight_bits, "act_bits": m.act_bits})]
    if m.input_bits is not None and m.input_bits != m.act_bits:
        parts[0] += f" in{m.input_bits}"
    parts += [f"{layer} {wa(bits)}" for layer, bits in m.layers.items()]
    return "; ".join(parts)


def technique_label(recipe: Recipe) -> str:
    """``QAT``, ``PTQ``, ``QAT + KD(float)``, ``QAT + low-rank(r=16)``, ..."""
    t = recipe.technique
    parts = [t.method.upper() + (" (learned round)" if t.learned_round else "")]
    if t.distill:
        parts.append(f"KD({t.distill.teacher})")
    if t.lowrank:
        lr = t.lowrank
        where = ",".join(lr.layers) + " " if lr.layers else ""
        parts.append(f"low-rank({where}{'r=' + str(lr.rank) if lr.rank else 'energy=' + str(lr.energy)})")
    return " + ".join(parts)


def inference_costs(onnx_path: str | Path) -> dict[str, float]:
    """Weight memory, BOPs and MACs of a QONNX model (qonnx's ``inference_cost``).

    ``weight_mem_bits`` / ``bops`` / ``macs`` count every weight (elements x bit width);
    the ``*_nonzero`` variants discount zero weights (qonnx's ``discount_sparsity``),
    which is where ternary weights save.
    """
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    def load() -> ModelWrapper:
        # qonnx types a BipolarQuant with a non-unit scale as FLOAT32 (32-bit weights); costs
        # depend on datatypes and shapes only, so give every BipolarQuant a unit scale: BIPOLAR.
        model = ModelWrapper(str(onnx_path))
        for node in model.get_nodes_by_op_type("BipolarQuant"):
            scale = model.get_initializer(node.input[1])
            if scale is not None and not np.all(scale == 1.0):
                model.set_initializer(node.input[1] + "_unit", np.ones_like(scale))
                node.input[1] += "_unit"
        return model

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for suffix, discount in (("", False), ("_nonzero", True)):
            cost = inference_cost(load(), discount_sparsity=discount)["total_cost"]
            out[f"weight_mem_bits{suffix}"] = float(cost["total_mem_w_bits"])
            out[f"bops{suffix}"] = float(cost["total_bops"])
            if not discount:
                out["macs"] = float(cost["total_macs"])
    return out


def result_row(name: str, recipe: Recipe, report: Mapping[str, Any], costs: Mapping[str, float], *,
               train_seconds: float | None, quantize_seconds: float | None, row_seconds: float,
               error: str | None = None) -> dict[str, Any]:
    """The result dict of one finished row (the schema of ``results.json``'s rows)."""
    totals = report.get("totals") or {}
    v = report.get("verification")
    return {
        "name": name,
        "model": recipe.model.name,
        "dataset": recipe.data.dataset,
        "precision": precision_label(recipe),
        "technique": technique_label(recipe),
        "seed": recipe.seed,
        "accuracy": report.get("accuracy"),
        **costs,
        **{k: totals.get(k) for k in ("lut", "bram_18k", "uram", "dsp")},
        "target": (report.get("target") or {}).get("name"),
        "fits": report.get("fits"),
        "throughput_fps": report.get("throughput_fps"),
        "latency_us": report.get("latency_us"),
        "verified": None if v is None else bool(v.get("passed")),
        "train_seconds": train_seconds,
        "quantize_seconds": quantize_seconds,
        "row_seconds": row_seconds,
        "error": error,
        "recipe": recipe.model_dump(mode="json"),
    }


def finished_row(row_dir: Path, recipe: Recipe) -> dict[str, Any] | None:
    """The row's saved result when ``row_dir/row.json`` exists for this exact recipe, else None."""
    try:
        saved = json.loads((row_dir / "row.json").read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(saved, dict) and saved.get("recipe") == _json_roundtrip(recipe.model_dump(mode="json"))
    return saved if same else None


def run_row(name: str, recipe: Recipe, row_dir: Path, *, progress: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Run one row through :func:`flow.run.run`, then write ``row.json`` (atomically) and return its result.

    A design that fails verification (or ``strict``/``bitfile`` checks) still has a report: the
    row is recorded with ``verified`` false and the error, and the sweep goes on.
    """
    from flow.run import run

    (row_dir / "row.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    error, train_s, quant_s = None, None, None
    try:
        result = run(recipe, row_dir, progress=progress, log=log)
        report, train_s, quant_s = result.report, result.train_seconds, result.quantize_seconds
    except (VerificationError, OverBudgetError, ToolMissingError) as e:
        report_path = row_dir / "report.json"
        if not report_path.is_file():
            raise
        report, error = json.loads(report_path.read_text()), " ".join(str(e).split())
        log(f"{name}: {type(e).__name__}: {error}")
    costs = inference_costs(row_dir / f"{recipe.name}.qonnx.onnx")
    row = result_row(name, recipe, report, costs, train_seconds=train_s, quantize_seconds=quant_s,
                     row_seconds=time.perf_counter() - t0, error=error)
    atomic_write_json(row_dir / "row.json", row)
    return row


class _SweepBar:
    """A rich bar over the rows, paused while a row runs or logs (one live display at a time:
    each training shows its own bar)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.bar, self.task = enabled, total, None, None

    def __enter__(self) -> "_SweepBar":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.description}"), TimeElapsedColumn())
            self.task = self.bar.add_task("", total=self.total)
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def pause(self, description: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=description)
            self.bar.stop()  # leaves the bar's current state on screen

    def resume(self, description: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=description)
            self.bar.start()


def compare(sweep: str | Path | Mapping[str, Any] | Sweep, out_dir: str | Path, *, progress: bool = True,
            log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every row of ``sweep`` (a path, a dict or a :class:`Sweep`) into ``out_dir``; return the result rows.

    Rows already finished with the same recipe are reused. The results files are rewritten
    from all finished rows at the end, also when a row raises.
    """
    if isinstance(sweep, Sweep):
        sw = sweep
    elif isinstance(sweep, Mapping):
        sw = sweep_from_dict(sweep)
    else:
        sw = load_sweep(sweep)
    out = Path(out_dir)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    try:
        with _SweepBar(progress, len(sw.rows)) as bar:
            for i, (name, recipe) in enumerate(sw.rows.items(), 1):
                row_dir = out / "rows" / name
                done = finished_row(row_dir, recipe)
                bar.pause(f"row {name}")
                if done is not None:
                    log(f"[{i}/{len(sw.rows)}] {name}: finished before, reusing {row_dir / 'row.json'}")
                    results.append(done)
                else:
                    log(f"[{i}/{len(sw.rows)}] {name}: {recipe.model.name} {precision_label(recipe)}, "
                        f"{technique_label(recipe)}, {recipe.data.dataset}")
                    results.append(run_row(name, recipe, row_dir, progress=progress, log=log))
                bar.resume(f"{name} {'reused' if done is not None else 'done'}")
    finally:
        if results:
            write_results(results, out, name=sw.name, description=sw.description, source=sw.source,
                          seconds=time.perf_counter() - t0)
    return results
