"""Every notebook in notebooks/ runs top to bottom without a cell error, and is stored stripped.

Each notebook executes in a fresh Jupyter kernel (nbclient) from the notebooks/ folder, with
QFLOW_NOTEBOOK_OUT pointing its outputs at a temporary folder. Together they take about a
minute on a 2-core CPU; notebooks 01 and 04 read MNIST from data/ (`qflow fetch-data`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # per cell (notebook 04 builds Verilator models when their cache is cold)
NOTEBOOK_TIMEOUT_S = 900  # per notebook (pytest-timeout)


def _ids(path: Path) -> str:
    return path.stem


def test_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"01_quickstart", "04_verification", "05_bring_your_own_model"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has stored outputs"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs_without_errors(path, tmp_path, monkeypatch):
    if "mnist" in path.read_text() and not (REPO / "data" / "mnist").is_dir():
        pytest.skip("MNIST is not in data/ (fetch it with `qflow fetch-data --dest data`)")
    monkeypatch.setenv("QFLOW_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()  # every cell runs; errors are kept in the outputs and checked below
    errors = [(i, o) for i, c in enumerate(nb.cells) if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, "\n".join(f"cell {i}: {o.ename}: {o.evalue}" for i, o in errors)
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type in ("display_data", "execute_result", "stream")]
    assert shown, f"{path.name} ran but showed nothing"
    assert (tmp_path / path.stem).is_dir(), "the notebook should write into QFLOW_NOTEBOOK_OUT"
