"""``qflow run``: train (QAT or PTQ) -> test accuracy -> QONNX -> compile -> fold -> estimate -> verify -> report.

The recipe's ``[technique]`` section picks how the quantized network is obtained (see
:mod:`flow.techniques`): low-rank factorization first (optionally after float pretraining),
then QAT (optionally distilled from a float teacher trained first) or PTQ (a float twin
trained, then quantized by Brevitas). Every check of the recipe against the model (layer
names, ranks, teacher) runs before any training.

>>> from flow.run import run              # doctest: +SKIP
>>> result = run(load_recipe(), "runs/default")
>>> result.report["accuracy"], result.report["throughput_fps"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from flow.build import BuildResult, build
from flow.config import Recipe
from flow.data import load_dataset
from flow.export import export_qonnx
from flow.fileio import atomic_write_json
from flow.techniques import distill, lowrank, pretrain_float, ptq
from flow.train import TrainConfig, evaluate, predict_logits, save_checkpoint, train
from flow.verify import StageOutputs
from models import build_model


@dataclass
class RunResult:
    """``train_seconds``: all training (float pretraining, teacher, QAT, or PTQ's float network);
    ``quantize_seconds``: PTQ's quantization steps (0 for QAT)."""

    build: BuildResult
    accuracy: float
    train_seconds: float
    quantize_seconds: float = 0.0

    @property
    def report(self) -> dict:
        return self.build.report


def torch_reference(model: torch.nn.Module, images: np.ndarray) -> StageOutputs:
    """The trained network's own logits and labels on ``images``: verification's first stage."""
    logits = predict_logits(model, images)
    return StageOutputs("pytorch", logits=logits, labels=logits.argmax(axis=1))


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
    shape = {"in_shape": train_set.input_shape, "num_classes": train_set.num_classes, **recipe.model.build_kwargs()}
    model = build_model(recipe.model.name, **shape)
    atomic_write_json(out / "recipe.json", recipe.model_dump(mode="json"))
    tech, cfg, epochs = recipe.technique, train_config(recipe), recipe.train.epochs
    lr_opts = tech.lowrank.model_dump(include={"rank", "energy", "layers"}) if tech.lowrank else {}
    if tech.lowrank:
        lowrank.check_factorization(model, **lr_opts)
    teacher = distill.make_teacher(recipe.model.name, tech.distill.teacher, **shape) if tech.distill else None

    t0, quantize_seconds = time.perf_counter(), 0.0
    if tech.lowrank:
        if tech.lowrank.pretrain_epochs:
            log(f"float pretraining before factorization ({tech.lowrank.pretrain_epochs} epochs)")
            pretrain_float(model, train_set, replace(cfg, epochs=tech.lowrank.pretrain_epochs), progress=progress)
        calib = train_set.subset(min(256, len(train_set)), seed=recipe.seed).images if tech.method == "qat" else None
        ranks = lowrank.factorize(model, **lr_opts, mid_bits=tech.lowrank.mid_bits, calibration_images=calib)
        log("low-rank factorization: " + ", ".join(f"{k} rank {r}" for k, r in ranks.items()))
    if tech.method == "ptq":
        float_epochs = epochs if tech.float_epochs is None else tech.float_epochs
        log(f"PTQ: training the float {recipe.model.name} on {recipe.data.dataset} ({float_epochs} epochs), then quantizing")
        res = ptq.post_training_quantize(
            model, train_set, replace(cfg, epochs=float_epochs), calibration_samples=tech.calibration_samples,
            equalize=tech.equalize, bias_correction=tech.bias_correction, learned_round=tech.learned_round,
            learned_round_iters=tech.learned_round_iters, progress=progress,
        )
        quantize_seconds = res.quantize_seconds
        log(f"float accuracy {100 * evaluate(res.float_model, test_set):.2f}%; quantized in {quantize_seconds:.1f} s")
    else:
        loss_fn = None
        if teacher is not None:
            d = tech.distill
            t_epochs = epochs if d.teacher_epochs is None else d.teacher_epochs
            log(f"training the {d.teacher} teacher ({t_epochs} epochs)")
            distill.train_teacher(teacher, train_set, replace(cfg, epochs=t_epochs), progress=progress)
            log(f"teacher accuracy {100 * evaluate(teacher, test_set):.2f}%")
            loss_fn = distill.distillation_loss(teacher, d.temperature, d.alpha)
        log(f"training {recipe.model.name} on {recipe.data.dataset} ({epochs} epochs{', distilled' if loss_fn else ''})")
        train(model, train_set, cfg, progress=progress, loss_fn=loss_fn)
    train_seconds = time.perf_counter() - t0 - quantize_seconds
    accuracy = evaluate(model, test_set)
    log(f"test accuracy {100 * accuracy:.2f}% after {train_seconds:.0f} s of training")
    save_checkpoint(model, out / "model.pt")

    onnx_path = out / f"{recipe.name}.qonnx.onnx"
    export_qonnx(model, onnx_path, train_set.input_shape)

    n = min(recipe.build.verify_samples, len(test_set.labels))
    x = test_set.images[:n].astype(np.float32)
    reference = torch_reference(model, x) if n else None
    log(f"building for {recipe.build.target}")
    result = build(
        onnx_path, recipe.build, out, model_name=recipe.name, verify_inputs=x if n else None,
        reference=reference, accuracy=accuracy,
        progress=(lambda step: log(f"  {step}")) if progress else None,
    )
    return RunResult(build=result, accuracy=accuracy, train_seconds=train_seconds, quantize_seconds=quantize_seconds)
