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

Each row runs :func:`flow.explore.run.run` into ``DIR/rows/<name>/`` and yields one result row
(:class:`flow.explore.rows.SweepRow`): accuracy, weight memory (bits), BOPs and MACs (qonnx's
inference cost of the exported QONNX model), the LUT/BRAM/URAM/DSP totals of the layers plus the
data-width converters (``lut_layers``: the layers' own LUT), frames/s and latency on the target, verification,
training/quantization time, the seed and the full resolved recipe. ``DIR`` gets
``results.json``, ``results.csv``, ``results.md`` and two plots (``accuracy_vs_lut.png``,
``accuracy_vs_fps.png``) with the Pareto fronts (per dataset) marked. A finished row leaves
``rows/<name>/row.json``; a rerun reuses every row whose ``row.json`` proves it belongs to the
same recipe (fields added to the recipe format later take their defaults) and to its own
``report.json`` (:mod:`flow.explore.reuse`), so an interrupted sweep resumes where it stopped.
Every row folder that would be rebuilt is checked before anything is written or removed: a
file there that qflow cannot prove it wrote stops the sweep with one line.

A sweep may say ``seeds = [0, 1, 2]`` (then neither ``[defaults]`` nor a row sets ``seed``): every row
runs once per seed, into ``rows/<name>/seed<s>/``, each run reused on its own, and a result row is the
row's runs folded together (:func:`flow.explore.spread.aggregate`: mean accuracy, its standard
deviation and seed range, and every run).

>>> sweep = load_sweep(SMOKE_SWEEP)
>>> list(sweep.rows), sweep.rows["w1a1"].model.weight_bits
(['w1a1', 'w2a2'], 1)
>>> rows = compare(sweep, "runs/smoke", progress=False)       # doctest: +SKIP
>>> rows[0].accuracy, rows[0].lut, rows[0].bops        # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flow.core.config import format_validation_error
from flow.core.errors import (
    ConfigError,
    OverBudgetError,
    QflowError,
    ToolMissingError,
    VerificationError,
)
from flow.core.fileio import atomic_write_json
from flow.core.outdir import OutputDir, retire_results
from flow.core.progress import Bar
from flow.explore.recipe import Recipe, read_toml, recipe_from_dict
from flow.explore.results import COMPARE_FILES, PLOTS, mark_pareto, markdown_table, pareto_front, results_unchanged, write_results
from flow.explore.reuse import ROW_FILE, inference_costs, report_numbers, reusable_row
from flow.explore.rows import SweepRow
from flow.explore.run import check_recipe, run, run_output_dir
from flow.explore.spread import aggregate
from flow.report.schema import Report

__all__ = ["PLOTS", "SMOKE_SWEEP", "Sweep", "check_sweep", "compare", "deep_merge", "load_sweep", "markdown_table",
           "pareto_front", "sweep_from_dict", "write_results"]

#: The tiny sweep of the tests (2 rows on digits, 1 epoch).
SMOKE_SWEEP = Path(__file__).resolve().parents[1] / "recipes" / "smoke_sweep.toml"

_ROW_NAME = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"


class _RowSpec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=_ROW_NAME, max_length=80, description="unique; also the row's folder and recipe name")


class _SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str | None = Field(None, pattern=_ROW_NAME)
    description: str = ""
    defaults: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] | None = Field(None, min_length=1, max_length=100, description="run every row once per seed")
    rows: list[_RowSpec] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if any(isinstance(s, bool) or not 0 <= s < 2**32 for s in v):
                raise ValueError("seeds are integers from 0 to 2**32 - 1")
            if len(set(v)) != len(v):
                raise ValueError(f"seeds must differ from each other, got {v}")
        return v


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: resolved recipes by row name, in file order; ``seeds``: every row once per seed
    (each run in ``rows/<name>/seed<s>/``), or None: each row once with its own seed (in ``rows/<name>/``)."""

    name: str
    rows: dict[str, Recipe]
    description: str = ""
    source: str = "sweep"
    base_dir: Path | None = field(default=None, compare=False)
    seeds: tuple[int, ...] | None = None

    def runs(self) -> list[tuple[str, str, Recipe]]:
        """(row name, folder under ``rows/``, recipe) of every run, row by row, seed by seed."""
        if self.seeds is None:
            return [(name, name, r) for name, r in self.rows.items()]
        return [(name, f"{name}/seed{s}", r.model_copy(update={"seed": s})) for name, r in self.rows.items() for s in self.seeds]


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
    data = read_toml(src, "sweep")
    data.setdefault("name", src.stem.replace("_", "-"))
    return sweep_from_dict(data, source=str(src), base_dir=src.resolve().parent)


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
    seeds = None if spec.seeds is None else tuple(spec.seeds)
    if seeds is not None and ("seed" in spec.defaults or any("seed" in (r.model_extra or {}) for r in spec.rows)):
        raise ConfigError(f"{source}: seeds: the sweep runs every row once per seed in `seeds`; remove `seed` from [defaults] and the rows")
    sweep = Sweep(spec.name or "sweep", rows, spec.description, source, base_dir, seeds)
    if check:
        check_sweep(sweep)
    return sweep


def check_sweep(sweep: Sweep) -> None:
    """Check every row as :func:`flow.explore.run.check_recipe` does before training, without training.

    Errors name the row.
    """
    for name, recipe in sweep.rows.items():
        try:
            check_recipe(recipe, load_train=False, progress=False)
        except (QflowError, ValueError, TypeError) as e:
            msg = f"{sweep.source}: row {name!r}: {' '.join(str(e).split())}"
            try:
                err = type(e)(msg) if isinstance(e, QflowError) else ConfigError(msg)
            except TypeError:
                err = ConfigError(msg)
            raise err from None


# --------------------------------------------------------------------------- one row


def precision_label(recipe: Recipe) -> str:
    """``w2a2``, ``wTa2`` (ternary), ``wXa1`` (XNOR), plus input bits and per-layer overrides when given."""
    m = recipe.model

    def wa(d: Mapping[str, Any]) -> str:
        w, a = d.get("weight_bits"), d.get("act_bits")
        return ("" if w is None else f"w{ {'ternary': 'T', 'xnor': 'X'}.get(w, w)}") + ("" if a is None else f"a{a}")

    parts = [wa({"weight_bits": m.weight_bits, "act_bits": m.act_bits})]
    if m.input_bits is not None and m.input_bits != m.act_bits:
        parts[0] += f" in{m.input_bits}"
    parts += [f"{layer} {wa(bits)}" for layer, bits in m.layers.items()]
    return "; ".join(parts)


def technique_label(recipe: Recipe) -> str:
    """``QAT``, ``PTQ``, ``QAT + KD(float, T=4, a=0.7)``, ``QAT + low-rank(fc0 r=16)``, ..."""
    return recipe.technique.label()


def result_row(name: str, recipe: Recipe, report: Report, costs: Mapping[str, float], *,
               train_seconds: float | None, quantize_seconds: float | None, row_seconds: float,
               error: str | None = None) -> SweepRow:
    """The result of one finished row (a row of ``results.json``); resources are layers plus converters."""
    return SweepRow(name=name, model=recipe.model.name, dataset=recipe.data.dataset, precision=precision_label(recipe),
                    technique=technique_label(recipe), seed=recipe.seed, **costs, **report_numbers(report),
                    train_seconds=train_seconds, quantize_seconds=quantize_seconds, row_seconds=row_seconds, error=error,
                    recipe=recipe.model_dump(mode="json"))


def run_row(name: str, recipe: Recipe, out: OutputDir, *, progress: bool, log: Callable[[str], None]) -> SweepRow:
    """Run one row through :func:`flow.explore.run.run` into its claimed folder ``out``, then write
    ``row.json`` (atomically, recorded in the folder's manifest) and return its result.

    A design that fails verification (or ``strict``/``bitfile`` checks) still has a report: the
    row is recorded with ``verified`` false and the error, and the sweep goes on.
    """
    t0 = time.perf_counter()
    error, train_s, quant_s = None, None, None
    try:
        result = run(recipe, out, progress=progress, log=log)
        report, train_s, quant_s = result.report, result.train_seconds, result.quantize_seconds
    except (VerificationError, OverBudgetError, ToolMissingError) as e:
        report_path = out.path / "report.json"
        if not report_path.is_file():
            raise
        report, error = Report.load(report_path), " ".join(str(e).split())
        log(f"{name}: {type(e).__name__}: {error}")
    costs = inference_costs(out.path / f"{recipe.name}.qonnx.onnx")
    row = result_row(name, recipe, report, costs, train_seconds=train_s, quantize_seconds=quant_s,
                     row_seconds=time.perf_counter() - t0, error=error)
    atomic_write_json(out.will_write(ROW_FILE), row.to_json())
    return row


def compare_output_dir(out_dir: str | Path) -> OutputDir:
    """The top folder of a sweep: its results files (each row has a folder of its own under ``rows/``)."""
    return OutputDir(out_dir, results=COMPARE_FILES)


def plan_rows(sw: Sweep, out: OutputDir) -> dict[str, SweepRow | OutputDir]:
    """Each run's reusable result, or the folder it will be built in, by its folder under ``rows/``, checked
    (nothing is changed): a folder holding files qflow cannot prove it wrote stops the sweep before anything is removed."""
    plan: dict[str, SweepRow | OutputDir] = {}
    for _, rel, recipe in sw.runs():
        row_dir = out.folder(f"rows/{rel}", create=False)
        done = reusable_row(row_dir, recipe)
        if done is None:
            row_out = run_output_dir(recipe, row_dir, extra_files=(ROW_FILE,))
            row_out.check()
            plan[rel] = row_out
        else:
            plan[rel] = done
    return plan


def sweep_rows(sw: Sweep, finished: Mapping[str, SweepRow]) -> list[SweepRow]:
    """The result rows of the sweep from its finished runs (by folder): one per row, over its seeds when the
    sweep has seeds (:func:`flow.explore.spread.aggregate`); rows with no finished run are left out."""
    if sw.seeds is None:
        return [finished[name] for name in sw.rows if name in finished]
    by_row: dict[str, list[SweepRow]] = {}
    for name, rel, _ in sw.runs():
        if rel in finished:
            by_row.setdefault(name, []).append(finished[rel])
    return [aggregate(runs) for runs in by_row.values()]


def compare(sweep: str | Path | Mapping[str, Any] | Sweep, out_dir: str | Path, *, progress: bool = True,
            log: Callable[[str], None] = print) -> list[SweepRow]:
    """Run every row of ``sweep`` (a path, a dict or a :class:`Sweep`) into ``out_dir``; return the result rows.

    Every row is validated, and every row folder checked, before anything is written or removed.
    Rows whose ``row.json`` proves it belongs to the row's recipe and report are reused
    (:func:`flow.explore.reuse.reusable_row`). The results files are rewritten from all finished
    rows at the end, also when a row raises (then ``results.json`` says ``complete: false``);
    when every row was reused and the results would not change, nothing is written.
    """
    try:
        out = compare_output_dir(out_dir)
        sw = sweep if isinstance(sweep, Sweep) else sweep_from_dict(sweep) if isinstance(sweep, Mapping) else load_sweep(sweep)
        out.check()
        plan = plan_rows(sw, out)
    except QflowError:
        retire_results(out_dir, results=COMPARE_FILES)
        raise
    runs = sw.runs()
    if all(isinstance(p, SweepRow) for p in plan.values()):
        rows = mark_pareto(sweep_rows(sw, plan))[0]  # type: ignore[arg-type]
        if results_unchanged(out.path, rows, name=sw.name, description=sw.description, seeds=sw.seeds):
            log(f"all {len(plan)} runs finished before and reused; {out.path / 'results.json'} is up to date")
            return rows
    out.claim()
    finished: dict[str, SweepRow] = {}
    t0 = time.perf_counter()
    try:
        with Bar("sweep", len(runs), enabled=progress) as bar:
            for i, (name, rel, recipe) in enumerate(runs, 1):
                done = plan[rel]
                seed = "" if sw.seeds is None else f" (seed {recipe.seed})"
                bar.update(description=f"row {name}{seed}")
                bar.pause()
                if isinstance(done, SweepRow):
                    log(f"[{i}/{len(runs)}] {name}{seed}: finished before, reusing {out.path / 'rows' / rel / ROW_FILE}")
                    finished[rel] = done
                else:
                    log(f"[{i}/{len(runs)}] {name}{seed}: {recipe.model.name} {precision_label(recipe)}, "
                        f"{technique_label(recipe)}, {recipe.data.dataset}")
                    out.folder(f"rows/{rel}")
                    done.claim()
                    try:
                        finished[rel] = run_row(name, recipe, done, progress=progress, log=log)
                    finally:
                        done.close()
                bar.update(advance=1, description=f"{name}{seed} {'reused' if isinstance(done, SweepRow) else 'done'}")
                bar.resume()
    finally:
        rows = mark_pareto(sweep_rows(sw, finished))[0]
        if rows:
            write_results(rows, out.path, name=sw.name, description=sw.description, source=sw.source,
                          seconds=time.perf_counter() - t0, complete=len(finished) == len(runs), seeds=sw.seeds)
        out.close()
    return rows
