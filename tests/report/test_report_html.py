"""report.html: self-contained, escaped, robust, and rendered for real by headless Chromium."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from flow.report.html import render_html
from flow.report.schema import Report
from flow.report.writer import write_report


def R(d) -> Report:
    return Report.from_dict(d)

CHROMIUM = "/usr/bin/chromium"


def _layer(name, op, pe, simd, cycles, lut, bram=0.0, uram=0.0, dsp=0.0):
    return {"name": name, "op_type": op, "pe": pe, "simd": simd, "cycles": cycles,
            "lut": lut, "bram_18k": bram, "uram": uram, "dsp": dsp}


def _stage(name, reference, passed, **kw):
    s = {"name": name, "reference": reference, "samples": 64, "passed": passed, "max_abs_err": None,
         "label_match": None, "bit_exact": None, "first_mismatch": None, "note": None}
    s.update(kw)
    return s


@pytest.fixture
def report():
    layers = [
        _layer("Thresholding_rtl_0", "Thresholding_rtl", 1, None, 784, 76.0),
        _layer("MVAU_hls_0", "MVAU_hls", 4, 16, 3136, 1175.0, 8.0),
        _layer("MVAU_hls_1", "MVAU_hls", 1, 8, 512, 410.0, 1.0),
        _layer("MVAU_hls_2", "MVAU_hls", 1, 8, 512, 410.0, 1.0, dsp=4.0),
        _layer("MVAU_hls_3", "MVAU_hls", 1, 1, 640, 317.0, 1.0),
        _layer("LabelSelect_hls_0", "LabelSelect_hls", 1, None, 10, 0.0),
    ]
    totals = {k: sum(layer[k] for layer in layers) for k in ("lut", "bram_18k", "uram", "dsp")}
    return {
        "schema_version": 1,
        "model": "tfc_w2a2",
        "target": {"name": "pynq-z1", "part": "xc7z020clg400-1", "clock_mhz": 100.0},
        "layers": layers,
        "totals": totals,
        "data_width_converters": {"count": 0, "totals": dict.fromkeys(totals, 0.0), "converters": []},
        "budget": {"lut": 37240, "bram_18k": 224, "uram": 0, "dsp": 176},
        "fits": True,
        "over_budget": [],
        "max_cycles": 3136,
        "bottleneck": "MVAU_hls_0",
        "throughput_fps": 31887.755102040817,
        "latency_us": 55.94,
        "accuracy": 0.9317,
        "verification": {"passed": False, "stages": [
            _stage("streamlined", "qonnx", True, max_abs_err=0.0, label_match=1.0, bit_exact=True),
            _stage("hw_layers", "streamlined", False, max_abs_err=3.0, label_match=0.953125,
                   first_mismatch=7, note="thresholds off by one step"),
        ]},
        "folding": {"mode": "fps", "target_fps": 30000, "file": None},
        "stage": "codegen",
        "skipped": ["bitfile: Vivado not on PATH"],
        "timings_s": {"streamline": 0.43, "fold": 0.01, "codegen": 0.52},
    }


def test_page_is_self_contained(report):
    page = render_html(R(report))
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)


def test_page_shows_the_key_numbers(report):
    page = render_html(R(report))
    assert "31,888 FPS" in page and "55.94" in page and "93.17%" in page
    assert '<tr class=hot><td>MVAU_hls_0 (bottleneck)</td>' in page
    assert "FAILED" in page and "first mismatch at sample 7" in page and "95.31%" in page
    assert "bit-exact" in page and "thresholds off by one step" in page
    assert "bitfile: Vivado not on PATH" in page and "<code>fps</code>" in page


def test_strings_are_escaped(report):
    r = copy.deepcopy(report)
    r["model"] = "<script>alert(1)</script>"
    r["layers"][0]["name"] = "a<b>&$x$"
    r["verification"]["stages"][1]["note"] = '"><img src=x>'
    r["skipped"] = ["<i>codegen</i>"]
    page = render_html(R(r))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&lt;b&gt;&amp;$x$" in page
    assert "<img src=x>" not in page and "&lt;i&gt;codegen&lt;/i&gt;" in page


def test_zero_budget_is_na_or_over(report):
    page = render_html(R(report))
    assert "n/a (cap 0)" in page  # URAM on Pynq, none used
    r = copy.deepcopy(report)
    r["layers"][1]["uram"] = 2.0
    r["totals"]["uram"] = 2.0
    r["fits"], r["over_budget"] = False, ["uram"]
    page = render_html(R(r))
    assert "over (cap 0)" in page and "over: uram" in page and ">no<" in page


def test_over_budget_and_no_verification(report):
    r = copy.deepcopy(report)
    r["totals"]["lut"] = 50000.0
    r["fits"], r["over_budget"] = False, ["lut"]
    r["verification"], r["accuracy"] = None, None
    page = render_html(R(r))
    assert "134.3%" in page and "over: lut" in page
    assert "not run" in page and "Test accuracy" not in page


def test_no_layers_still_renders(report):
    r = copy.deepcopy(report)
    r["layers"], r["bottleneck"], r["max_cycles"] = [], "", 0
    r["throughput_fps"] = r["latency_us"] = 0.0
    page = render_html(R(r))
    assert page.count("data:image/png") == 1 and "0 FPS" in page


def test_write_report_writes_html_before_json(report, tmp_path, monkeypatch):
    import flow.report.writer as rep

    order = []
    real_text, real_json = rep.atomic_write_text, rep.atomic_write_json
    monkeypatch.setattr(rep, "atomic_write_text", lambda p, t: (order.append(Path(p).name), real_text(p, t)))
    monkeypatch.setattr(rep, "atomic_write_json", lambda p, o: (order.append(Path(p).name), real_json(p, o)))
    out = write_report(R(report), tmp_path)
    assert order[-1] == "report.json" and "report.html" in order
    assert json.loads(out.read_text())["model"] == "tfc_w2a2"
    assert "31,888 FPS" in (tmp_path / "report.html").read_text()


def _chromium(args, tmp_path, timeout=120):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _page_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "Uncaught" in line or ("CONSOLE" in line and "error" in line.lower())]


def test_chromium_renders_the_page(report, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed: apt-get install -y chromium")
    page = tmp_path / "report.html"
    page.write_text(render_html(R(report)), encoding="utf-8")
    url = page.as_uri()

    dom = _chromium(["--dump-dom", url], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "31,888 FPS" in dom.stdout and "MVAU_hls_0 (bottleneck)" in dom.stdout
    assert "93.17%" in dom.stdout and "FAILED" in dom.stdout
    assert not _page_errors(dom.stderr), _page_errors(dom.stderr)

    shot = tmp_path / "shot.png"
    run = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not _page_errors(run.stderr), _page_errors(run.stderr)
    assert shot.exists() and shot.stat().st_size > 20_000
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert float(np.var(img[..., :3])) > 0.001
    if os.environ.get("QFLOW_KEEP_SCREENSHOT"):  # a path, for a human to look at the page
        shutil.copyfile(shot, os.environ["QFLOW_KEEP_SCREENSHOT"])
