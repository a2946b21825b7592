"""``qflow run``: train (QAT) -> test accuracy -> QONNX -> compile -> fold -> estimate -> verify -> report.

>>> from flow.run import run              # doctest: +SKIP
>>> result = run(load_recipe(), "runs/default")
>>> result.report["accuracy"], result.report["throughput_fps"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from flow.build import BuildResult, build
from flow.config import Recipe
from flow.data import load_dataset
from flow.export import export_qonnx
from flow.fileio import atomic_write_json
from flow.train import TrainConfig, evaluate, predict_logits, save_checkpoint, train
from flow.verify import StageOutputs
from models import build_model


@dataclass
class RunResult:
    build: BuildResult
    accuracy: float
    train_seconds: float

    @property
    def report(self) -> dict:
        return self.build.report


def train_config(recipe: Recipe) -> TrainConfig:
    """The training settings of a recipe."""
    t = recipe.train
    return TrainConfig(
        epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, seed=recipe.seed,
        max_train_samples=t.max_train_samples, threads=t.threads, schedule=t.schedule,
    )


def run(recipe: Recipe, out_dir: str | Path, *, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Run a recipe end to end and write its model, QONNX file and report into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    train_set = load_dataset(recipe.data.dataset, "train", recipe.data.root)
    test_set = load_dataset(recipe.data.dataset, "test", recipe.data.root)
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model.name, in_shape=train_set.input_shape, num_classes=train_set.num_classes, **recipe.model.build_kwargs())
    atomic_write_json(out / "recipe.json", recipe.model_dump(mode="json"))

    log(f"training {recipe.model.name} on {recipe.data.dataset} ({recipe.train.epochs} epochs)")
    t0 = time.perf_counter()
    train(model, train_set, train_config(recipe), progress=progress)
    train_seconds = time.perf_counter() - t0
    accuracy = evaluate(model, test_set)
    log(f"test accuracy {100 * accuracy:.2f}% after {train_seconds:.0f} s of training")
    save_checkpoint(model, out / "model.pt")

    onnx_path = out / f"{recipe.name}.qonnx.onnx"
    export_qonnx(model, onnx_path, train_set.input_shape)

    n = min(recipe.build.verify_samples, len(test_set.labels))
    x = test_set.images[:n].astype(np.float32)
    logits = predict_logits(model, x)
    reference = StageOutputs("pytorch", logits=logits, labels=logits.argmax(axis=1))
    log(f"building for {recipe.build.target}")
    result = build(
        onnx_path, recipe.build, out, model_name=recipe.name, verify_inputs=x if n else None,
        reference=reference if n else None, accuracy=accuracy,
        progress=(lambda step: log(f"  {step}")) if progress else None,
    )
    return RunResult(build=result, accuracy=accuracy, train_seconds=train_seconds)
