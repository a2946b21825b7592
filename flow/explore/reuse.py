"""Reusing a finished row of ``qflow compare``: its ``row.json`` must prove it belongs to the row's
recipe and to its own report, or the row is rebuilt.

A row folder's files are untrusted (a sweep's results may be copied, committed, edited). A
finished row is reused only when

* ``row.json``, ``report.json`` and the row's QONNX file (when there) are files qflow wrote: each
  is a regular file read without following links, within its size bound, whose SHA-256 the row
  folder's manifest records for it (:meth:`flow.core.outdir.OutputDir.read_proven`); a malformed,
  hostile or hand-edited file only means "not reusable";
* the recipe recorded in ``row.json`` is the row's recipe *in substance*: validated as a
  recipe today (fields added to the recipe format since then take their defaults), it
  equals the row's resolved recipe;
* ``report.json`` is a valid report of that design: it names the row, the recipe's board
  and output stage, and its folding target;
* every number the results take from the report (accuracy, LUT/BRAM/URAM/DSP of the layers plus
  converters, the layers' own LUT, fits, frames/s, latency, verification) equals the one
  ``row.json`` records (a ``row.json`` from before LUT counted the converters is read in
  today's meaning, :class:`flow.explore.rows.SweepRow`); when the row's QONNX file is
  there, it is loaded like any model qflow is given (:func:`flow.compile.load.load_onnx`: no
  domain that would import code, no external data outside the folder), and its weight bits,
  BOPs and MACs are recomputed and must match too.

>>> from flow.explore.recipe import recipe_from_dict
>>> same_recipe({"name": "a", "build": {"target": "pynq-z1"}}, recipe_from_dict({"name": "a"}))
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flow.compat import qonnx as qonnx_compat
from flow.compile.load import MAX_MODEL_BYTES, load_onnx
from flow.core.errors import ConfigError, QflowError
from flow.core.fileio import parse_json, read_regular
from flow.core.outdir import OutputDir
from flow.explore.recipe import Recipe
from flow.explore.rows import COST_FIELDS, RESOURCE_FIELDS, SweepRow
from flow.report.schema import MAX_REPORT_BYTES, Report
from hw_targets import load_target

ROW_FILE = "row.json"
#: Largest row.json read back.
MAX_ROW_BYTES = 16 * 2**20
#: The numbers of a result row that come from the row's report.
REPORT_KEYS = ("accuracy", *RESOURCE_FIELDS, "lut_layers", "target", "fits", "throughput_fps", "latency_us", "verified")
COST_KEYS = COST_FIELDS


def report_numbers(report: Report) -> dict[str, Any]:
    """The values a result row takes from ``report`` (see :data:`REPORT_KEYS`): resources are layers plus converters."""
    v, used = report.verification, report.resources_used()
    return {"accuracy": report.accuracy, **{k: used.get(k) for k in RESOURCE_FIELDS},
            "lut_layers": report.totals.get("lut"), "target": report.target.name,
            "fits": report.fits, "throughput_fps": report.throughput_fps, "latency_us": report.latency_us,
            "verified": None if v is None else v.passed}


def inference_costs(onnx_path: str | Path) -> dict[str, float]:
    """Weight memory, BOPs and MACs of a QONNX model (qonnx's ``inference_cost``).

    ``weight_mem_bits`` / ``bops`` / ``macs`` count every weight (elements x bit width);
    the ``*_nonzero`` variants discount zero weights (qonnx's ``discount_sparsity``),
    which is where ternary weights save.
    """
    model = load_onnx(onnx_path)  # a model file in a run folder is untrusted like any other
    out = {}
    for suffix, discount in (("", False), ("_nonzero", True)):
        cost = qonnx_compat.inference_cost(model, discount_sparsity=discount)["total_cost"]
        out[f"weight_mem_bits{suffix}"] = float(cost["total_mem_w_bits"])
        out[f"bops{suffix}"] = float(cost["total_bops"])
        if not discount:
            out["macs"] = float(cost["total_macs"])
    return out


def same_recipe(saved: Any, recipe: Recipe) -> bool:
    """True when ``saved`` (a recipe as recorded) validates today and equals ``recipe``: fields the
    recipe format gained since then take their defaults, so they do not change a row's identity."""
    if not isinstance(saved, Mapping):
        return False
    try:
        then = Recipe.model_validate(dict(saved))
    except (ValidationError, ValueError, TypeError):
        return False
    return then.model_dump(mode="json") == recipe.model_dump(mode="json")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) if math.isfinite(a) else a == b
    return a == b


def read_record(path: Path, what: str, limit: int) -> Any:
    """A JSON file qflow wrote into a run folder, read as untrusted (regular file, no links, bounded); ConfigError otherwise."""
    return parse_json(read_regular(path, what, ConfigError, limit=limit, follow=False), f"{what} {path}", ConfigError)


def read_row(row_dir: Path) -> SweepRow:
    """The result recorded in ``row_dir/row.json``, read as untrusted; ConfigError (one line) when it is not one."""
    return SweepRow.from_json(read_record(row_dir / ROW_FILE, "row", MAX_ROW_BYTES), f"row {row_dir / ROW_FILE}")


def reusable_row(row_dir: Path, recipe: Recipe) -> SweepRow | None:
    """The row's recorded result when it proves it belongs to ``recipe`` and its report (see the module docstring), else None."""
    if not (row_dir / ROW_FILE).exists() and not (row_dir / ROW_FILE).is_symlink():
        return None
    qonnx = f"{recipe.name}.qonnx.onnx"
    try:
        files = OutputDir(row_dir, results=(ROW_FILE, "report.json", qonnx))
    except ConfigError:
        return None
    row_bytes, report_bytes = files.read_proven(ROW_FILE, MAX_ROW_BYTES), files.read_proven("report.json", MAX_REPORT_BYTES)
    if row_bytes is None or report_bytes is None:
        return None
    try:
        saved = SweepRow.from_json(parse_json(row_bytes, f"row {row_dir / ROW_FILE}", ConfigError), f"row {row_dir / ROW_FILE}")
        if saved.name != recipe.name or not same_recipe(saved.recipe, recipe):
            return None
        report = Report.from_dict(parse_json(report_bytes, f"report {row_dir / 'report.json'}", ConfigError), source=str(row_dir / "report.json"))
        board = load_target(recipe.build.target).name
    except QflowError:
        return None
    if report.model != recipe.name or report.target.name != board or report.stage != recipe.build.stage:
        return None
    if report.folding.target_fps != recipe.build.target_fps:
        return None
    if not all(_equal(getattr(saved, k), v) for k, v in report_numbers(report).items()):
        return None
    if (row_dir / qonnx).exists() or (row_dir / qonnx).is_symlink():
        if files.read_proven(qonnx, MAX_MODEL_BYTES) is None:
            return None
        try:
            costs = inference_costs(row_dir / qonnx)
        except Exception:  # noqa: BLE001 - a damaged or refused model file only means the row is not reusable
            return None
        if not all(_equal(getattr(saved, k), v) for k, v in costs.items()):
            return None
    return saved


__all__ = ["COST_KEYS", "MAX_ROW_BYTES", "REPORT_KEYS", "ROW_FILE", "inference_costs", "read_record", "read_row", "report_numbers", "reusable_row",
           "same_recipe"]
