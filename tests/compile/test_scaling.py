"""The compiler's work grows linearly with network depth: counted, not timed.

Each network is built at two depths, the second twice the first, through import and the
compile steps up to the HW layers. Per step it counts what made qflow quadratic before:
deep copies of the whole model (weights included), onnx shape inference runs (each sees
the whole graph) and the Python lines qflow's own passes and qonnx replacements execute.
Copies and shape inference runs must not grow with depth; the lines at most linearly.
``benchmarks/scale.py`` measures the same growth in seconds on deeper networks.
"""

from __future__ import annotations

import copy
import sys
from collections import Counter
from pathlib import Path

import onnx.shape_inference
import pytest
import torch
from corpus import structures as S
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

import flow.compile.passes.streamline as passes_streamline
import flow.compile.steps as compile_steps
from flow.builder.registry import get_step
from flow.compat import finn as finn_compat
from flow.compile.load import load_onnx
from flow.compile.normalize import normalize
from flow.core.config import build_config
from flow.core.pipeline import BuildContext
from flow.nn.export import export_qonnx
from hw_targets import load_target

STEPS = ["qonnx_to_finn", "set_input_datatype", "streamline", "flatten_input_on_host", "insert_label_select", "convert_to_hw"]
QFLOW_CODE = (str(Path(compile_steps.__file__).parent), str(Path(finn_compat.__file__).parent))


def residual(blocks: int) -> nn.Module:
    return S.ResNet(blocks=blocks, c=4)


def depthwise(blocks: int) -> nn.Module:
    net = S.DwsNet(strides=(1,), c=4)
    net.blocks = nn.Sequential(*[S.DwsBlock(4, 4, 1, last=i == blocks - 1) for i in range(blocks)])
    net.fc = S.linear(4 * 64, S.CLASSES)
    return net


class Counts:
    """Deep copies of ModelWrapper, onnx shape inference runs and lines executed in qflow's code, per label."""

    def __init__(self):
        self.label, self.copies, self.infer, self.lines = "import", Counter(), Counter(), Counter()

    def patch(self, mp) -> None:
        real_infer = onnx.shape_inference.infer_shapes
        real_structures = passes_streamline.streamline_structures

        def infer(*a, **k):
            self.infer[self.label] += 1
            return real_infer(*a, **k)

        def deepcopy(model, memo):
            self.copies[self.label] += 1
            clone = ModelWrapper.__new__(ModelWrapper)
            clone.__dict__.update({k: copy.deepcopy(v, memo) for k, v in model.__dict__.items()})
            return clone

        def structures(model, *a, **k):
            outer, self.label = self.label, "streamline_structures"
            try:
                return real_structures(model, *a, **k)
            finally:
                self.label = outer

        mp.setattr(onnx.shape_inference, "infer_shapes", infer)
        mp.setattr(ModelWrapper, "__deepcopy__", deepcopy, raising=False)
        mp.setattr(compile_steps, "streamline_structures", structures)

    def tracer(self, frame, event, arg):
        if not frame.f_code.co_filename.startswith(QFLOW_CODE):
            return None
        return self.local

    def local(self, frame, event, arg):
        if event == "line":
            self.lines[self.label] += 1
        return self.local


def compile_counts(make, depth: int, tmp_path, monkeypatch) -> Counts:
    torch.manual_seed(0)
    path = tmp_path / f"net{depth}.onnx"
    export_qonnx(make(depth).eval(), path, S.DIGITS)
    counts = Counts()
    cfg = build_config(target="pynq-z1", target_fps=10_000, verify_samples=0)
    ctx = BuildContext(cfg=cfg, target=load_target("pynq-z1"), out_dir=tmp_path / f"out{depth}")
    finn_compat.ensure_finn_settings(ctx.out_dir / "finn_build")
    with monkeypatch.context() as mp:
        counts.patch(mp)
        sys.settrace(counts.tracer)
        try:
            model = normalize(load_onnx(path))
            with finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
                for name in STEPS:
                    counts.label = name
                    model = get_step(name)(model, ctx)
        finally:
            sys.settrace(None)
    return counts


@pytest.mark.parametrize("make", [residual, depthwise], ids=["residual", "depthwise"])
def test_copies_and_shape_inference_runs_stay_flat_and_work_grows_linearly_with_depth(make, tmp_path, monkeypatch):
    """Twice the blocks: the same number of whole-model copies in every step and of shape inference
    runs in import and qflow's structure streamlining, at most twice the shape inference runs in
    FINN's own passes (some make one per change, each linear now), at most ~twice the lines."""
    small, large = (compile_counts(make, d, tmp_path, monkeypatch) for d in (3, 6))
    for label in ["import", *STEPS, "streamline_structures"]:
        assert large.copies[label] == small.copies[label], (label, small.copies, large.copies)
        assert large.lines[label] <= 2.3 * small.lines[label] + 200, (label, small.lines, large.lines)
        if label in ("import", "streamline_structures"):
            assert large.infer[label] == small.infer[label], (label, small.infer, large.infer)
        else:
            assert large.infer[label] <= 2.2 * small.infer[label] + 2, (label, small.infer, large.infer)
    assert sum(large.lines.values()) > 1.3 * sum(small.lines.values())  # the counts do see the depth
