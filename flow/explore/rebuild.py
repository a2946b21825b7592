"""Rebuild a finished sweep's designs with today's builder, without training again.

A finished run of ``qflow compare`` keeps its trained weights (``model.pt``) and the QONNX file
exported from them. When the builder changes (a new report schema, a new estimate) the
designs can be rebuilt from those files alone: :func:`rebuild_run` reads both, checks that
``row.json`` records this recipe, claims the run folder again (which removes the previous
run's files), writes the two files back unchanged, tests the weights again on the test set,
and builds and verifies the QONNX file against the network's own outputs, as ``qflow run``
does after training. ``row.json`` keeps the recorded training times and gets today's report
numbers. :func:`rebuild` does this for every finished run of a sweep and rewrites its
results files; a run that has not finished is left for ``qflow compare``. The weights are
loaded into the recipe's network as built, before the folder is touched: a technique that
changes the network's structure while it trains (low-rank factorization) leaves weights that
do not fit it, and such a run is refused with the folder unchanged (ModelFileError); rerun it
with ``qflow compare``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flow.builder.pipeline import build
from flow.core.errors import ConfigError, OverBudgetError, ToolMissingError, VerificationError
from flow.core.fileio import atomic_write_bytes, atomic_write_json, read_regular
from flow.explore.compare import Sweep, compare_output_dir, load_sweep, result_row, sweep_from_dict, sweep_rows
from flow.explore.recipe import Recipe
from flow.explore.results import mark_pareto, write_results
from flow.explore.reuse import ROW_FILE, inference_costs, read_row, same_recipe
from flow.explore.rows import SweepRow
from flow.explore.run import check_recipe, run_output_dir
from flow.nn.reference import torch_reference
from flow.nn.train import evaluate, load_checkpoint
from flow.report.schema import Report

#: Largest model.pt or QONNX file read back.
MAX_MODEL_BYTES = 1 << 30


def rebuild_run(name: str, recipe: Recipe, row_dir: Path, *, log: Callable[[str], None] = print) -> SweepRow:
    """Rebuild one finished run in ``row_dir`` from its weights and QONNX file (see the module docstring); its new result row."""
    saved = read_row(row_dir)
    if saved.name != name or not same_recipe(saved.recipe, recipe):
        raise ConfigError(f"{row_dir / ROW_FILE} does not record row {name!r} with its recipe today; run qflow compare instead")
    onnx_name = f"{recipe.name}.qonnx.onnx"
    weights = read_regular(row_dir / "model.pt", "weights", ConfigError, limit=MAX_MODEL_BYTES, follow=False)
    qonnx = read_regular(row_dir / onnx_name, "QONNX model", ConfigError, limit=MAX_MODEL_BYTES, follow=False)
    prep = check_recipe(recipe, load_train=False, progress=False, log=lambda _: None)
    model = load_checkpoint(prep.model, row_dir / "model.pt")  # before anything changes: weights that do not fit stop here
    accuracy = evaluate(model, prep.test_set)
    out = run_output_dir(recipe, row_dir, extra_files=(ROW_FILE,))
    out.check()  # a file qflow cannot prove it wrote stops here, before claiming removes the weights read above
    out.claim()
    t0 = time.perf_counter()
    error = None
    try:
        atomic_write_bytes(out.will_write("model.pt"), weights)
        atomic_write_bytes(out.will_write(onnx_name), qonnx)
        atomic_write_json(out.will_write("recipe.json"), recipe.model_dump(mode="json"))
        n = min(recipe.build.verify_samples, len(prep.test_set.labels))
        x = prep.test_set.images[:n].astype(np.float32)
        try:
            report = build(row_dir / onnx_name, recipe.build, out, model_name=recipe.name, verify_inputs=x if n else None,
                           reference=torch_reference(model, x) if n else None, accuracy=accuracy).report
        except (VerificationError, OverBudgetError, ToolMissingError) as e:
            if not (row_dir / "report.json").is_file():
                raise
            report, error = Report.load(row_dir / "report.json"), " ".join(str(e).split())
            log(f"{name}: {type(e).__name__}: {error}")
        row = result_row(name, recipe, report, inference_costs(row_dir / onnx_name), train_seconds=saved.train_seconds,
                         quantize_seconds=saved.quantize_seconds, row_seconds=saved.row_seconds or 0.0, error=error)
        row = row.replace(rebuild_seconds=time.perf_counter() - t0)
        atomic_write_json(out.will_write(ROW_FILE), row.to_json())
    finally:
        out.close()
    return row


def rebuild(sweep: str | Path | Mapping[str, Any] | Sweep, out_dir: str | Path, *, log: Callable[[str], None] = print) -> list[SweepRow]:
    """Rebuild every finished run of ``sweep`` in ``out_dir`` and rewrite the sweep's results files; the result rows."""
    sw = sweep if isinstance(sweep, Sweep) else sweep_from_dict(sweep) if isinstance(sweep, Mapping) else load_sweep(sweep)
    out = compare_output_dir(out_dir)
    out.check()
    finished: dict[str, SweepRow] = {}
    runs = sw.runs()
    for i, (name, rel, recipe) in enumerate(runs, 1):
        row_dir = out.folder(f"rows/{rel}", create=False)
        if not (row_dir / ROW_FILE).is_file():
            log(f"[{i}/{len(runs)}] {rel}: not finished; left for qflow compare")
            continue
        log(f"[{i}/{len(runs)}] {rel}: rebuilding from its weights and QONNX file")
        finished[rel] = rebuild_run(name, recipe, row_dir, log=log)
    rows = mark_pareto(sweep_rows(sw, finished))[0]
    out.claim()
    try:
        if rows:
            write_results(rows, out.path, name=sw.name, description=sw.description, source=sw.source,
                          complete=len(finished) == len(runs), seeds=sw.seeds)
    finally:
        out.close()
    return rows


__all__ = ["rebuild", "rebuild_run"]
