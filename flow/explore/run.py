"""``qflow run``: train (the recipe's technique) -> test accuracy -> QONNX -> build -> report.

Everything a recipe says is checked before any training (:func:`check_recipe`): the
dataset is on disk, the model builds, every technique accepts its options for that model,
the board exists, folding and specialize files parse, and the output folder can be
written. Then the techniques run (:mod:`flow.nn.techniques.registry`: modifiers such as
low-rank factorization and distillation prepare, the method trains or quantizes), the
network is exported and :func:`flow.builder.build` compiles and verifies it against the
trained network's own outputs.

The example is skipped when the doctests run: it trains a network on MNIST.

>>> from flow.explore.run import run              # doctest: +SKIP
>>> result = run(load_recipe(), "runs/default")  # doctest: +SKIP
>>> result.report.accuracy, result.report.throughput_fps  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from flow.builder.pipeline import BuildResult, build, output_dir, retire_build
from flow.core.errors import QflowError
from flow.core.fileio import atomic_write_json
from flow.core.outdir import OutputDir
from flow.explore.recipe import Recipe
from flow.fold.rules import read_folding_file
from flow.fold.specialize import check_config_file
from flow.nn.data import Dataset, load_dataset
from flow.nn.export import export_qonnx
from flow.nn.reference import torch_reference
from flow.nn.techniques.base import Job
from flow.nn.train import TrainConfig, evaluate, save_checkpoint
from flow.report.schema import Report
from hw_targets import load_target
from models import build_model

#: Files ``qflow run`` writes besides the build's.
RUN_FILES = ("model.pt", "recipe.json")


@dataclass
class RunResult:
    """``train_seconds``: all training (float pretraining, teacher, QAT, or PTQ's float network);
    ``quantize_seconds``: PTQ's quantization steps (0 for QAT); ``train_cpu_seconds``: the
    process's CPU time (all threads) over the techniques' run."""

    build: BuildResult
    accuracy: float
    train_seconds: float
    quantize_seconds: float = 0.0
    train_cpu_seconds: float = 0.0

    @property
    def report(self) -> Report:
        return self.build.report


@dataclass
class Prepared:
    """A checked recipe: its datasets, untrained model, the techniques' shared job."""

    recipe: Recipe
    train_set: Dataset
    test_set: Dataset
    model: torch.nn.Module
    job: Job


def train_config(recipe: Recipe) -> TrainConfig:
    """The training settings of a recipe."""
    t = recipe.train
    return TrainConfig(
        epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, seed=recipe.seed,
        max_train_samples=t.max_train_samples, threads=t.threads, schedule=t.schedule, max_shift=t.max_shift,
        max_degrees=t.max_degrees,
    )


def check_recipe(recipe: Recipe, *, load_train: bool = True, progress: bool = True, log: Callable[[str], None] = print) -> Prepared:
    """Everything a run needs, checked before training; a QflowError names what is wrong."""
    load_target(recipe.build.target).with_clock(recipe.build.clock_mhz)
    if recipe.build.folding_file is not None:
        read_folding_file(recipe.build.folding_file)
    if recipe.build.specialize_file is not None:
        check_config_file(recipe.build.specialize_file)
    test_set = load_dataset(recipe.data.dataset, "test", recipe.data.root)
    train_set = load_dataset(recipe.data.dataset, "train", recipe.data.root) if load_train else test_set
    kwargs = {"in_shape": test_set.input_shape, "num_classes": test_set.num_classes, **recipe.model.build_kwargs()}
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model.name, **kwargs)
    job = Job(
        model_name=recipe.model.name, build_kwargs=kwargs, build=lambda **kw: build_model(recipe.model.name, **{**kwargs, **kw}),
        train_cfg=train_config(recipe), method=recipe.technique.method, train_set=train_set, test_set=test_set,
        progress=progress, log=log,
    )
    for technique, opts in recipe.technique.techniques():
        technique.check(model, opts, job)
    return Prepared(recipe, train_set, test_set, model, job)


def run_files(recipe: Recipe) -> tuple[str, ...]:
    """The files ``qflow run`` writes besides the build's."""
    return (*RUN_FILES, f"{recipe.name}.qonnx.onnx")


def run_output_dir(recipe: Recipe, out_dir: str | Path, extra_files: tuple[str, ...] = ()) -> OutputDir:
    """The output folder of a run of ``recipe`` (plus ``extra_files`` a caller such as ``qflow compare`` writes there)."""
    return output_dir(out_dir, recipe.build, extra_files=(*run_files(recipe), *extra_files))


def run(recipe: Recipe, out_dir: str | Path | OutputDir, *, progress: bool = True, log: Callable[[str], None] = print) -> RunResult:
    """Run a recipe end to end and write its model, QONNX file and report into ``out_dir``.

    Everything is checked before the folder is touched; ``out_dir`` may be an :class:`OutputDir`
    the caller has claimed already (``qflow compare`` claims every row's folder first).
    """
    claimed = isinstance(out_dir, OutputDir)
    try:
        out = out_dir if claimed else run_output_dir(recipe, out_dir)
        prep = check_recipe(recipe, progress=progress, log=log)
    except QflowError:
        if not claimed:
            retire_build(out_dir, extra_files=run_files(recipe))
        raise
    if not claimed:
        out.claim()
    try:
        return _run(prep, out, progress=progress, log=log)
    finally:
        out.close()


@dataclass
class Trained:
    """A network trained by a recipe's techniques: test accuracy, training and quantization seconds, CPU seconds."""

    model: torch.nn.Module
    accuracy: float
    train_seconds: float
    quantize_seconds: float
    cpu_seconds: float = 0.0


def train_recipe(prep: Prepared, *, on_epoch=None, log: Callable[[str], None] = print) -> Trained:
    """Run the recipe's techniques on ``prep.model`` (modifiers prepare, the method trains), then test it.

    ``on_epoch(epoch, model)`` is handed to the method's training (see :class:`flow.nn.techniques.base.Job`).
    """
    recipe, model, job = prep.recipe, prep.model, prep.job
    job.on_epoch = on_epoch
    t0, c0 = time.perf_counter(), time.process_time()
    *modifiers, (method, method_opts) = list(recipe.technique.techniques())
    for technique, opts in modifiers:
        technique.prepare(model, opts, job)
    job.log(f"{recipe.technique.label()} on {recipe.data.dataset}")
    method.obtain(model, method_opts, job)
    train_seconds = time.perf_counter() - t0 - job.quantize_seconds
    cpu_seconds = time.process_time() - c0
    accuracy = evaluate(model, prep.test_set)
    log(f"test accuracy {100 * accuracy:.2f}% after {train_seconds:.0f} s of training")
    return Trained(model, accuracy, train_seconds, job.quantize_seconds, cpu_seconds)


def _run(prep: Prepared, out: OutputDir, *, progress: bool, log: Callable[[str], None]) -> RunResult:
    recipe = prep.recipe
    atomic_write_json(out.will_write("recipe.json"), recipe.model_dump(mode="json"))
    trained = train_recipe(prep, log=log)
    model = trained.model
    save_checkpoint(model, out.will_write("model.pt"))

    onnx_path = out.will_write(f"{recipe.name}.qonnx.onnx")
    export_qonnx(model, onnx_path, prep.train_set.input_shape)

    n = min(recipe.build.verify_samples, len(prep.test_set.labels))
    x = prep.test_set.images[:n].astype(np.float32)
    reference = torch_reference(model, x) if n else None
    log(f"building for {recipe.build.target}")
    result = build(
        onnx_path, recipe.build, out, model_name=recipe.name, verify_inputs=x if n else None,
        reference=reference, accuracy=trained.accuracy,
        progress=(lambda step: log(f"  {step}")) if progress else None,
    )
    return RunResult(build=result, accuracy=trained.accuracy, train_seconds=trained.train_seconds, quantize_seconds=trained.quantize_seconds,
                     train_cpu_seconds=trained.cpu_seconds)
