"""Benchmarks write to a scratch folder unless told --update, and a rerun that measures nothing new re-stamps nothing."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import RESULTS, SCRATCH, add_output_args, result_path, stamp, write_results  # noqa: E402


def _args(*argv):
    ap = argparse.ArgumentParser()
    add_output_args(ap, "x.json")
    return ap.parse_args(list(argv))


def test_results_go_to_the_scratch_folder_unless_update_or_out():
    assert result_path(_args(), "x.json") == SCRATCH / "x.json"
    assert result_path(_args("--update"), "x.json") == RESULTS / "x.json"
    assert result_path(_args("--out", "/elsewhere/y.json"), "x.json") == Path("/elsewhere/y.json")
    with pytest.raises(SystemExit, match="either --update or --out"):
        result_path(_args("--update", "--out", "y.json"), "x.json")
    assert ".scratch/" in (ROOT / "benchmarks" / "results" / ".gitignore").read_text()


def test_rewriting_the_same_numbers_keeps_the_file_and_its_machine_stamp(tmp_path):
    path = tmp_path / "r.json"
    write_results(path, {"rows": [{"a": 1.5}]})
    first = path.read_bytes()
    old = json.loads(first)
    old["machine"]["date"] = "2000-01-01T00:00:00+00:00"
    path.write_text(json.dumps(old))
    kept = path.read_bytes()
    write_results(path, {"rows": [{"a": 1.5}]})
    assert path.read_bytes() == kept
    write_results(path, {"rows": [{"a": 2.5}]})
    new = json.loads(path.read_text())
    assert new["rows"] == [{"a": 2.5}] and new["machine"]["date"] != "2000-01-01T00:00:00+00:00"


def test_a_result_records_the_load_average_at_the_start_and_end_of_its_run(tmp_path):
    path = write_results(tmp_path / "r.json", {"rows": []})
    load = json.loads(path.read_text())["machine"]["load_average"]
    assert set(load) == {"start", "end"}
    assert all(len(v) == 3 and all(isinstance(x, float) and x >= 0 for x in v) for v in load.values())


def test_a_measured_row_carries_its_own_date_and_machine():
    row = stamp({"case": "x"})
    assert row["case"] == "x" and set(row["measured"]) == {"date", "platform", "cpus"}


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")))
def test_every_benchmark_offers_update_and_writes_to_scratch_by_default(script):
    text = (ROOT / "benchmarks" / script).read_text()
    if script in ("regenerate.py",):
        assert "--update" in text
        return
    assert "add_output_args(" in text and "result_path(" in text, f"{script} must take --update/--out from benchmarks/_common.py"
    assert 'default=RESULTS /' not in text


def test_a_benchmarks_help_names_its_scratch_default():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "build_time.py"), "--help"], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert "--update" in out.stdout and ".scratch/build_time.json" in out.stdout


def test_regenerate_runs_rounding_ties_with_its_whole_build():
    from regenerate import command

    cmd = command("rounding_ties", update=True)
    assert cmd[-3:] == ["--build", "4", "--update"] and cmd[1].endswith("rounding_ties.py")
    assert "--build" not in command("build_time", update=True)


def test_scale_fits_the_growth_over_every_depth_and_over_the_three_deepest():
    """A step with a fixed cost that hides quadratic growth over every depth shows it over the deepest three."""
    import scale

    rows = [{"nodes": n, "steps": {"step": {"cpu_s": 2.0 + 1e-5 * n * n}, "flat": {"cpu_s": 0.01}}} for n in (50, 100, 200, 400, 800, 1600)]
    every, deepest = scale.exponents(rows), scale.exponents(rows, last=3)
    assert every["step"] < 1.0 < 1.4 < deepest["step"] < 2.0
    assert "flat" not in every and set(deepest) == {"step", "total"}
    assert scale.exponents(rows[:2], last=3) == {"step": None, "total": None}  # fewer than three depths: no fit
