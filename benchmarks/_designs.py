"""Committed reports that can be checked against today's code: each report.json with its design's shape.

A build's ``design.onnx`` (the folded dataflow partition) holds everything FINN's and qflow's
estimates read: every layer's node attributes (PE, SIMD, MW/MH, datatypes, memory mode,
implementation style), the tensor shapes and the stream widths between layers. Its weight
and threshold *values* are not read by any estimate, and they are most of its bytes. Next to
each committed ``report.json`` the benchmarks keep ``design-nodes.onnx.gz``
(:func:`write_nodes`): the design with every initializer's values set to zero (shapes and
datatypes kept), gzip-compressed, a few kilobytes. :func:`reprice` prices it with today's
estimates (:func:`flow.fold.estimate.estimate`, the numbers a build writes into its report)
and lists every number of the report that differs.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from flow.fold.estimate import estimate
from flow.core.fileio import atomic_write_bytes
from flow.core.vocab import RESOURCES
from flow.report.schema import SCHEMA_VERSION
from hw_targets import load_target

NODES = "design-nodes.onnx.gz"
#: Largest uncompressed design read back.
MAX_DESIGN_BYTES = 256 * 2**20


def write_nodes(design: str | Path, dest: str | Path) -> Path:
    """``design`` (an ONNX file) with every initializer zeroed, gzip-compressed into ``dest`` (atomically)."""
    model = onnx.load(str(design))
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), init.name))
    dest = Path(dest)
    atomic_write_bytes(dest, gzip.compress(model.SerializeToString(), compresslevel=9, mtime=0))
    return dest


def load_nodes(path: str | Path) -> ModelWrapper:
    """The design written by :func:`write_nodes`."""
    with gzip.open(path, "rb") as f:
        data = f.read(MAX_DESIGN_BYTES + 1)
    if len(data) > MAX_DESIGN_BYTES:
        raise ValueError(f"{path}: more than {MAX_DESIGN_BYTES} bytes uncompressed")
    return ModelWrapper(onnx.load_from_string(data))


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a != b


def reprice(report: dict[str, Any], nodes: str | Path) -> list[str]:
    """Every number of ``report`` (a report.json as a dict) that today's estimates of its design disagree with."""
    out: list[str] = []
    if report.get("schema_version") != SCHEMA_VERSION:
        out.append(f"schema_version {report.get('schema_version')} (today: {SCHEMA_VERSION})")
    t = report["target"]
    est = estimate(load_nodes(nodes), load_target(t["name"]).with_clock(t["clock_mhz"]))
    layers = {layer["name"]: layer for layer in report.get("layers", [])}
    if list(layers) != [layer.name for layer in est.layers]:
        out.append(f"layers {list(layers)} (today: {[layer.name for layer in est.layers]})")
    for now in est.layers:
        then = layers.get(now.name)
        if then is None:
            continue
        for key in ("op_type", "pe", "simd", "cycles", *RESOURCES):
            if _differs(then.get(key), getattr(now, key)):
                out.append(f"{now.name}.{key} {then.get(key)} (today: {getattr(now, key)})")
    dwc = (report.get("data_width_converters") or {}).get("totals", {})
    for key in RESOURCES:
        if _differs(report["totals"].get(key), est.totals[key]):
            out.append(f"totals.{key} {report['totals'].get(key)} (today: {est.totals[key]})")
        if _differs(dwc.get(key, 0.0), est.converter_totals[key]):
            out.append(f"data_width_converters.{key} {dwc.get(key)} (today: {est.converter_totals[key]})")
    for key, now in (("fits", est.fits), ("max_cycles", est.max_cycles), ("throughput_fps", est.throughput_fps)):
        if _differs(report.get(key), now):
            out.append(f"{key} {report.get(key)} (today: {now})")
    return out
