"""A residual network for the folding tests: two ResNet-50 bottleneck blocks, specialized for FINN once per session."""

from __future__ import annotations

import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from flow.builder.pipeline import build
from flow.core.config import build_config
from flow.nn.export import export_qonnx
from tests.corpus.models import ResNetBottlenecks


@pytest.fixture(scope="session")
def residual_onnx(tmp_path_factory):
    """ResNetBottlenecks(8 channels, width 4) on 8x8 raw pixels: DuplicateStreams, ElementwiseAdd, GlobalAccPool."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("residual") / "residual.onnx"
    export_qonnx(ResNetBottlenecks(cin=8, width=4).eval(), path, (8, 8, 8))
    return path


@pytest.fixture(scope="session")
def residual_specialized(residual_onnx, tmp_path_factory) -> ModelWrapper:
    r = build(residual_onnx, build_config(target="pynq-z1", verify_samples=0), tmp_path_factory.mktemp("residual_build"))
    return ModelWrapper(str(r.checkpoints["specialize_layers"]))
