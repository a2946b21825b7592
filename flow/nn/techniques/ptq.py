"""Post-training quantization with Brevitas' own PTQ tools.

Flow of :func:`post_training_quantize` (every step is a Brevitas utility, applied to qflow's
network structure so the result still exports to QONNX and compiles with FINN):

1. **float twin** (:func:`flow.nn.techniques.twin.float_twin`): a plain-PyTorch copy of the model
   (same module names), trained with :func:`flow.nn.train.train`.
2. **cross-layer equalization** (``equalize``): ``brevitas.graph.equalize.EqualizeGraph`` on the
   float twin traced by ``torch.fx``. In qflow's networks its regions are ``BatchNorm -> ReLU
   -> Linear/Conv`` (the BN is the source: its output channels are rescaled, its successor's
   input channels inversely); a Linear followed by BN is not a region (BN re-normalises).
3. **load** the float weights into the quantized model and give every ``QuantReLU`` a
   runtime-statistics scale (Brevitas ``Uint8ActPerTensorFloat``, 99.999th percentile) in
   place of qflow's max-initialised QAT scale (:func:`use_calibratable_activations`); the
   state-dict keys stay the same.
4. **calibration** (:func:`calibrate`): ``brevitas.graph.calibrate.calibration_mode`` over
   ``calibration_samples`` training images sets those activation scales.
5. **learned round** (``learned_round``, AdaRound): Brevitas' ``LearnedRoundSte`` (hard
   sigmoid), inserted by ``brevitas_examples``' ``insert_learned_round_quantizers`` and fitted
   layer by layer with its ``RoundRegularisationLoss`` + ``MSELoss``: the quantized network's
   input to the layer against the float twin's output of it, as Brevitas'
   ``LearnedRoundTrainer`` does. (That trainer needs ``accelerate``, which qflow does not
   install, so :func:`apply_learned_round` is its loop without offloading and AMP.) Brevitas'
   QONNX export writes float weights and a round-to-nearest ``Quant`` node, so the learned
   rounding is then baked into the weights (``W <- q * scale``, see :func:`_bake_rounding`).
6. **bias correction** (:func:`correct_biases`): ``brevitas.graph.calibrate.bias_correction_mode``
   on every layer followed by BatchNorm. qflow's layers have no bias (FINN maps a BN after a
   bias-free MatMul straight into thresholds), so the correction Brevitas computes is folded
   into the BatchNorm's running mean (``BN(Wx + b) == BN'(Wx)`` with ``mean' = mean - b``).
   The output layer (no BN, no activation after it) is not corrected: a per-class bias would
   be a float ``Add`` in front of FINN's ``TopK``.

Steps 5 and 6 run in the order of Brevitas' own ``ptq_evaluate`` (learned round, then bias
correction, which then corrects the final weights' error).

Weights keep qflow's per-tensor absmax quantizers (``Int8WeightPerTensorFloat``).

>>> import torch
>>> from flow.nn.data import load_dataset
>>> from flow.nn.train import TrainConfig, evaluate
>>> from models import build_model
>>> ds = load_dataset("digits", "train")
>>> model = build_model("tfc", in_shape=ds.input_shape, weight_bits=8, act_bits=8)
>>> result = post_training_quantize(model, ds, TrainConfig(epochs=2, batch_size=64, lr=0.02),
...                                 calibration_samples=200, progress=False)
>>> evaluate(model, load_dataset("digits", "test")) > 0.8
True
>>> sorted(result.timings)
['bias_correction', 'calibration', 'equalize', 'load']
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.graph.calibrate import bias_correction_mode, calibration_mode
from brevitas.graph.equalize import EqualizeGraph
from brevitas.inject.enum import LearnedRoundImplType
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer as QuantWBIOL
from brevitas.quant import Uint8ActPerTensorFloat
from brevitas_examples.common.learned_round.learned_round_method import (
    MSELoss,
    RoundRegularisationLoss,
    insert_learned_round_quantizers,
    return_learned_round_quantizers,
)
from pydantic import Field
from torch import nn

from flow.core.errors import ConfigError
from flow.nn.data import Dataset
from flow.nn.techniques.base import Job, Options, TechniqueBase
from flow.nn.techniques.twin import act_bits as _act_bits
from flow.nn.techniques.twin import float_twin, load_float_weights
from flow.nn.train import TrainConfig, evaluate, train

__all__ = [
    "PTQResult", "apply_learned_round", "calibrate", "correct_biases", "equalize", "post_training_quantize",
    "quantize_from_float", "use_calibratable_activations",
]


@torch.no_grad()
def equalize(float_model: nn.Module, iterations: int = 20, threshold: float = 0.05) -> int:
    """Cross-layer equalization of a float twin in place (Brevitas ``EqualizeGraph``).

    Returns the number of equalized regions (``BN -> ReLU -> Linear/Conv`` chains; regions
    through a flatten that changes the channel count are skipped by Brevitas).
    """
    was_training = float_model.training
    graph = torch.fx.symbolic_trace(float_model.eval())
    _, regions = EqualizeGraph(iterations=iterations, threshold=threshold, return_regions=True).apply(graph)
    float_model.load_state_dict(graph.state_dict(), strict=False)
    float_model.train(was_training)
    return len(regions)


def use_calibratable_activations(model: nn.Module) -> int:
    """Give every ``QuantReLU`` a runtime-statistics scale (``Uint8ActPerTensorFloat``, same bits).

    Returns how many activations were replaced. The new scale parameter has the same
    state-dict key as qflow's QAT scale.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, qnn.QuantReLU) and child.act_quant.is_quant_enabled:
                rep = qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=_act_bits(child),
                                    return_quant_tensor=child.return_quant_tensor)
                setattr(parent, name, rep)
                count += 1
    return count


def _batches(images: np.ndarray, batch_size: int):
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


@torch.no_grad()
def calibrate(model: nn.Module, images: np.ndarray, batch_size: int = 250) -> None:
    """Set every runtime-statistics activation scale from ``images`` (Brevitas ``calibration_mode``)."""
    model.eval()
    with calibration_mode(model):
        for xb in _batches(images, batch_size):
            model(xb)


def _layers_before_bn(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """``(layer, bn)`` for every quantized layer directly followed by BatchNorm in a Sequential."""
    pairs = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq.children())
            for a, b in zip(kids, kids[1:]):
                layer = a[-1] if isinstance(a, nn.Sequential) and len(a) else a  # a factored layer's last factor
                if isinstance(layer, QuantWBIOL) and isinstance(b, nn.modules.batchnorm._BatchNorm):
                    pairs.append((layer, b))
    return pairs


@torch.no_grad()
def correct_biases(model: nn.Module, images: np.ndarray, batch_size: int = 250) -> int:
    """Brevitas bias correction of every layer followed by BatchNorm; returns how many.

    A layer with a bias gets the correction added to it (by Brevitas); for a bias-free
    layer (all of qflow's) Brevitas adds a bias, which is then folded into the BatchNorm's
    running mean and removed again (see the module docstring).
    """
    pairs = _layers_before_bn(model)
    if not pairs:
        return 0
    model.eval()
    fold = [(layer, bn) for layer, bn in pairs if layer.bias is None]
    with ExitStack() as stack:
        for layer, _ in pairs:
            stack.enter_context(bias_correction_mode(layer))
        for xb in _batches(images, batch_size):
            model(xb)
    for layer, bn in fold:
        bn.running_mean -= layer.bias.detach().reshape(-1)
        del layer.bias
        layer.register_parameter("bias", None)
    return len(pairs)


def _weight_bits(layer: nn.Module) -> int:
    return int(layer.quant_weight().bit_width.item())


def _capture(model: nn.Module, layer: nn.Module, images: np.ndarray, batch_size: int, output: bool) -> torch.Tensor:
    """The inputs (or outputs) of ``layer`` while ``model`` runs on ``images``."""
    store: list[torch.Tensor] = []

    def hook(_m, args, out):
        t = out if output else args[0]
        store.append((t.value if hasattr(t, "value") and not isinstance(t, torch.Tensor) else t).detach())

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for xb in _batches(images, batch_size):
                model(xb)
    finally:
        handle.remove()
    return torch.cat(store)


def apply_learned_round(model: nn.Module, float_model: nn.Module, images: np.ndarray, iters: int = 200,
                        batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> int:
    """AdaRound, layer by layer in forward order; returns the number of layers rounded.

    Each layer's rounding is fitted on its input in the quantized ``model`` (earlier layers
    already rounded) against the output of the same-named layer of ``float_model`` (its float
    twin). 1-bit (sign) weight layers have nothing to round and are skipped.
    """

    if iters < 1:
        raise ConfigError(f"learned_round_iters must be >= 1, got {iters}")
    model.eval()
    float_model.eval()
    float_modules = dict(float_model.named_modules())
    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, QuantWBIOL) and m.weight_quant.is_quant_enabled and _weight_bits(m) > 1]
    gen = torch.Generator().manual_seed(seed)
    for name, layer in layers:
        if name not in float_modules:
            raise ConfigError(f"learned round: the float model has no layer {name!r}")
        x_q = _capture(model, layer, images, 250, output=False)
        y_f = _capture(float_model, float_modules[name], images, 250, output=True)
        original_quant = layer.weight_quant.quant_injector
        insert_learned_round_quantizers(layer, LearnedRoundImplType.HARD_SIGMOID)
        (rounder,) = return_learned_round_quantizers(layer)
        losses = [RoundRegularisationLoss(layer, max_count=iters), MSELoss(layer, reduction="none", dim=1)]
        opt = torch.optim.Adam([rounder.value], lr=lr)
        frozen = {p: p.requires_grad for p in layer.parameters()}
        for p in layer.parameters():
            p.requires_grad_(p is rounder.value)
        rounder.train()
        try:
            for _ in range(iters):
                idx = torch.randint(0, len(x_q), (min(batch_size, len(x_q)),), generator=gen)
                out = layer(x_q[idx])
                out = out.value if hasattr(out, "value") and not isinstance(out, torch.Tensor) else out
                loss = sum(fn(out, y_f[idx]) for fn in losses)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        finally:
            rounder.eval()
            for p, req in frozen.items():
                p.requires_grad_(req)
        _bake_rounding(layer, original_quant)
    return len(layers)


@torch.no_grad()
def _bake_rounding(layer: nn.Module, original_quant) -> None:
    """Write the learned rounding into the weights and restore the round-to-nearest quantizer.

    Brevitas' QONNX export writes the float weight and a ``Quant`` node that rounds to
    nearest, so the learned rounding must live in the weight itself: ``W <- q * scale``.
    qflow's weight scale is ``max|W| / qmax``; the largest-magnitude weights are pinned to
    ``+-qmax`` so that scale (and with it the whole grid) is unchanged.
    """
    q = layer.quant_weight()
    scale, ints = q.scale, q.int().float()
    w = layer.weight
    top = w.abs() == w.abs().max()
    qmax = torch.round(w.abs().max() / scale)
    ints[top] = torch.sign(w[top]) * qmax
    layer.weight_quant.quant_injector = original_quant
    layer.weight_quant.init_tensor_quant()
    w.copy_(ints * scale)
    if not torch.equal(layer.quant_weight().int().float(), ints):
        raise RuntimeError("learned round: baking the rounded weights changed the quantization grid")


@dataclass
class PTQResult:
    """What :func:`post_training_quantize` did: float-training and quantization wall times (s)."""

    float_train_seconds: float
    quantize_seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    equalized_regions: int = 0
    corrected_layers: int = 0
    rounded_layers: int = 0
    float_model: nn.Module | None = None


def quantize_from_float(
    model: nn.Module,
    float_model: nn.Module,
    calibration_images: np.ndarray,
    *,
    equalize_first: bool = True,
    bias_correction: bool = True,
    learned_round: bool = False,
    learned_round_iters: int = 200,
    seed: int = 0,
) -> PTQResult:
    """Steps 2-6 of the module docstring: quantize ``model`` in place from a trained float twin."""
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = now - t
        t = now

    regions = corrected = rounded = 0
    if equalize_first:
        regions = equalize(float_model)
        lap("equalize")
    load_float_weights(model, float_model)
    use_calibratable_activations(model)
    lap("load")
    calibrate(model, calibration_images)
    lap("calibration")
    if learned_round:
        rounded = apply_learned_round(model, float_model, calibration_images, learned_round_iters, seed=seed)
        lap("learned_round")
    if bias_correction:
        corrected = correct_biases(model, calibration_images)
        lap("bias_correction")
    model.eval()
    return PTQResult(0.0, sum(timings.values()), timings, regions, corrected, rounded, float_model)


def post_training_quantize(
    model: nn.Module,
    dataset: Dataset,
    float_train: TrainConfig,
    *,
    calibration_samples: int = 1000,
    equalize: bool = True,
    bias_correction: bool = True,
    learned_round: bool = False,
    learned_round_iters: int = 200,
    progress: bool = True,
) -> PTQResult:
    """Train ``model``'s float twin with ``float_train`` (0 epochs: use its current weights), then
    quantize ``model`` in place from it (see the module docstring). Leaves ``model`` in eval mode."""
    if calibration_samples < 1:
        raise ConfigError(f"calibration_samples must be >= 1, got {calibration_samples}")
    twin = float_twin(model)
    t0 = time.perf_counter()
    if float_train.epochs > 0:
        train(twin, dataset, float_train, progress=progress)
    float_seconds = time.perf_counter() - t0
    twin.eval()
    calib = dataset.subset(min(calibration_samples, len(dataset)), seed=float_train.seed).images
    prev = torch.get_num_threads()
    torch.set_num_threads(float_train.threads)
    try:
        result = quantize_from_float(model, twin, calib, equalize_first=equalize, bias_correction=bias_correction,
                                     learned_round=learned_round, learned_round_iters=learned_round_iters, seed=float_train.seed)
    finally:
        torch.set_num_threads(prev)
    result.float_train_seconds = float_seconds
    return result


class PTQOptions(Options):
    float_epochs: int | None = Field(None, ge=0, le=100_000, description="float training epochs (default: train.epochs)")
    calibration_samples: int = Field(1000, gt=0, le=1_000_000)
    bias_correction: bool = True
    equalize: bool = Field(True, description="cross-layer equalization of the float network")
    learned_round: bool = Field(False, description="AdaRound-style learned rounding (Brevitas)")
    learned_round_iters: int = Field(200, gt=0, le=1_000_000)


class PTQ(TechniqueBase):
    """Train the float twin, then quantize with Brevitas (equalization, calibration, bias correction, learned round)."""

    name: ClassVar[str] = "ptq"
    kind: ClassVar[str] = "method"
    options: ClassVar[type[Options]] = PTQOptions
    search_defaults: ClassVar[dict[str, Any]] = {}

    def label(self, opts: PTQOptions) -> str:
        return "PTQ" + (" (learned round)" if opts.learned_round else "")

    def obtain(self, model: nn.Module, opts: PTQOptions, job: Job) -> None:
        epochs = job.train_cfg.epochs if opts.float_epochs is None else opts.float_epochs
        job.log(f"PTQ: training the float {job.model_name} ({epochs} epochs), then quantizing")
        res = post_training_quantize(
            model, job.train_set, replace(job.train_cfg, epochs=epochs), calibration_samples=opts.calibration_samples,
            equalize=opts.equalize, bias_correction=opts.bias_correction, learned_round=opts.learned_round,
            learned_round_iters=opts.learned_round_iters, progress=job.progress,
        )
        job.quantize_seconds += res.quantize_seconds
        job.notes["float_model"] = res.float_model
        if job.test_set is not None:
            job.log(f"float accuracy {100 * evaluate(res.float_model, job.test_set):.2f}%; quantized in {res.quantize_seconds:.1f} s")
