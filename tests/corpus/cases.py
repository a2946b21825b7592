"""Every corpus case: which network, how it is trained and exported, and what a build needs.

:func:`materialize` writes one case into a folder (once: a folder holding ``case.json`` is
reused): ``model.onnx`` (and ``model.onnx.data`` for dynamo exports), ``inputs.npy`` (held-out
samples in the values the exported graph takes), ``torch_outputs.npy`` (the PyTorch
network's logits on them, for ``--reference-outputs``); :func:`reference` gives the network
itself as verification's first stage. Training and export run on one
thread from fixed seeds, so a case's files are the same in every session.

The ``fe_*`` cases are finn-examples' networks from :mod:`models.catalogue`, at full size
(the 224x224 ones ``slow``) or, where noted, at a smaller input of the same network.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from flow.core.checks import StageOutputs
from flow.nn.reference import torch_reference
from models.bnn_pynq import bnn_pynq_config
from models.catalogue import NETWORKS
from models.espcn import espcn
from tests.corpus import examples
from tests.corpus.export import EXPORTERS
from tests.corpus.models import (
    MLP,
    ArgMaxHead,
    CNNMaxPool,
    ResNetBottlenecks,
    mobilenet_v1_slice,
)

#: Verification samples stored with each case.
SAMPLES = 20


@dataclass(frozen=True)
class Case:
    """One corpus model.

    ``domain``: what the PyTorch network takes, ``"pixels"`` (0..255) or ``"unit"`` ([0, 1]:
    bnn_pynq's networks, and MLPs that quantize a float input themselves), or ``bipolar``,
    ``mfcc``, ``iq`` (:func:`tests.corpus.examples.to_domain`); the ``docs`` export merges
    x/255 in front, so its graph takes pixels. ``input_dtype``: ``--input-dtype`` for exports
    whose input carries no integer type. ``data``: ``synthetic`` (:mod:`tests.corpus.data`)
    or ``mnist`` (training and verification images). ``weights``: ``train`` (``train_steps``
    Adam steps of 64 samples; 0 keeps random weights, the ties case) or ``calibrate`` (random
    weights, BatchNorm statistics from synthetic inputs). ``slow``: more than a few seconds
    per build (``pytest -m slow``). ``large``: a full-size finn-examples network, minutes and
    gigabytes per build (``pytest -m large``; ``benchmarks/finn_examples.py`` measures them).
    ``finn``: FINN's builder is expected to build it. ``target``: the board it is built for.
    ``head``: ``label`` (a classifier) or ``none`` (its output is a value or an image: no
    label select).
    """

    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    export: str
    domain: str = "pixels"
    input_dtype: str | None = "UINT8"
    train_steps: int = 30
    slow: bool = False
    finn: bool = True
    note: str = ""
    data: str = "synthetic"
    weights: str = "train"
    target: str = "pynq-z1"
    head: str = "label"
    large: bool = False


def _bnn(name: str, steps: int, slow: bool = False, config: str | None = None, export: str = "docs", note: str = "") -> Case:
    shape = (1, 28, 28) if "fc" in name else (3, 32, 32)
    return Case(name, lambda: bnn_pynq_config(config or name), shape, export, "unit", None, steps, slow, note=note)


_MLP_SHAPE = (1, 10, 10)


def _mlp(**kw) -> Callable[[], nn.Module]:
    return lambda: MLP(int(np.prod(_MLP_SHAPE)), **kw)


CASES: list[Case] = [
    *[_bnn(f"tfc_{q}", 30) for q in ("1w1a", "1w2a", "2w2a")],
    *[_bnn(f"sfc_{q}", 10, slow=True) for q in ("1w1a", "1w2a", "2w2a")],
    *[_bnn(f"lfc_{q}", 2, slow=True, note="lfc_1w2a with 2-bit weights (brevitas_examples ships no lfc_2w2a)" if q == "2w2a" else "") for q in ("1w1a", "1w2a", "2w2a")],
    *[_bnn(f"cnv_{q}", 3, slow=True) for q in ("1w1a", "1w2a", "2w2a")],
    _bnn("tfc_1w1a_untrained", 0, config="tfc_1w1a", note="random weights: argmax ties in the reference"),
    _bnn("tfc_2w2a_dynamo_docs", 30, config="tfc_2w2a", export="docs_dynamo", note="FINN's docs flow with dynamo=True"),
    Case("mlp_dynamo", _mlp(), _MLP_SHAPE, "dynamo", note="export_qonnx(dynamo=True): opset 18+, Gemm, a side .onnx.data file"),
    Case("mlp_bias", _mlp(bias=True), _MLP_SHAPE, "plain", note="QuantLinear's default bias=True: a float bias after the last layer"),
    Case("mlp_bias_dynamo", _mlp(bias=True), _MLP_SHAPE, "dynamo", note="the same, dynamo=True"),
    Case("mlp_topk", _mlp(), _MLP_SHAPE, "topk", note="a QONNX model ending in TopK"),
    Case("mlp_argmax", lambda: ArgMaxHead(_mlp()()), _MLP_SHAPE, "plain", note="torch.argmax head: the graph outputs class indices"),
    Case("mlp_opset11", _mlp(), _MLP_SHAPE, "opset11"),
    Case("mlp_opset13", _mlp(), _MLP_SHAPE, "opset13"),
    Case("mlp_float_input", _mlp(float_input=True), _MLP_SHAPE, "plain", "unit", None, note="float [0, 1] input quantized by the model: no --input-dtype"),
    Case("cnn_maxpool", CNNMaxPool, (1, 14, 14), "plain", note="4-bit CNN, MaxPool, no input quantizer, per-channel scales"),
    Case("cnn_maxpool_stripped", CNNMaxPool, (1, 14, 14), "stripped", note="the same without intermediate shapes"),
    Case("resnet_bottlenecks", ResNetBottlenecks, (16, 8, 8), "plain", finn=False,
         note="two ResNet-50 w1a2 bottleneck blocks at 16x8x8, shared quantizer at the joins: DuplicateStreams, ElementwiseAdd, GlobalAccPool"),
    Case("mobilenet_v1_slice", mobilenet_v1_slice, (3, 32, 32), "plain", train_steps=3, slow=True, finn=False,
         note="brevitas_examples MobileNet-v1, channels [[8], [16], [32, 32]]: depthwise convs behind per-channel scales"),
]


def _example(key: str, *, name: str | None = None, build: Callable[[], nn.Module] | None = None,
             shape: tuple[int, ...] | None = None, slow: bool = False, large: bool | None = None, note: str = "") -> Case:
    """A finn-examples network from the catalogue as a corpus case (exported as Brevitas writes it)."""
    net = NETWORKS[key]
    mnist = net.weights == "mnist"
    return Case(
        name or "fe_" + key.replace("-", "_"), build or net.build, shape or net.input_shape, "plain",
        examples.DOMAINS.get(net.family, "pixels"), net.input_dtype, train_steps=400 if mnist else 0,
        slow=slow, large=net.large if large is None else large, note=note or net.description,
        data="mnist" if mnist else "synthetic", weights="train" if mnist else "calibrate", target=net.boards[0].target,
        head="label" if net.output.startswith("top") else "none",
    )


def _espcn_small(upsample: str) -> Callable[[], nn.Module]:
    return lambda: espcn(upsample, in_hw=(16, 16))


_UPSAMPLERS = ("resize", "deconv", "subpixel")

CASES += [
    *[_example(f"tfc-w{w}a{a}") for w, a in ((1, 1), (1, 2), (2, 2))],
    *[_example(f"cnv-w{w}a{a}", slow=True) for w, a in ((1, 1), (1, 2), (2, 2))],
    _example("kws-mlp-w3a3"),
    _example("cybsec-mlp-w2a2"),
    _example("vgg10-radioml-w4a4"),
    _example("gtsrb-cnv-w1a1", slow=True),
    _example("mobilenet-v1-w4a4"),
    _example("proxylessnas-mobile14-w4a4"),
    _example("resnet50-w1a2"),
    *[_example(f"espcn-{u}") for u in _UPSAMPLERS],
    *[_example(f"espcn-{u}", name=f"fe_espcn_{u}_16", build=_espcn_small(u), shape=(3, 16, 16), large=False,
               note=f"espcn-{u} on 16x16 inputs") for u in _UPSAMPLERS],
]
BY_NAME = {c.name: c for c in CASES}


def train(model: nn.Module, case: Case, seed: int = 0) -> nn.Module:
    """The case's weights (see :class:`Case`): Adam steps on synthetic data or MNIST, or BatchNorm calibration; eval mode."""
    if case.weights == "calibrate":
        return examples.calibrate_batchnorm(model, case.shape, case.domain)
    if case.train_steps > 0 and case.data == "mnist":
        return examples.train_on_mnist(model, 64 * case.train_steps, seed)
    if case.train_steps > 0:
        torch.manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        x, y = examples.synthetic(64 * case.train_steps, case.shape, case.domain, seed=1)
        model.train()
        for i in range(case.train_steps):
            xb, yb = torch.from_numpy(x[64 * i : 64 * (i + 1)]), torch.from_numpy(y[64 * i : 64 * (i + 1)])
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits.value if hasattr(logits, "value") else logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if hasattr(model, "clip_weights"):
                model.clip_weights(-1.0, 1.0)
    return model.eval()


def held_out(case: Case) -> np.ndarray:
    """The case's verification samples in the network's own domain (MNIST test images, or synthetic)."""
    if case.data == "mnist":
        return examples.mnist("test", SAMPLES)[0]
    return examples.synthetic(SAMPLES, case.shape, case.domain, seed=2)[0]


def logits_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The network's class scores (the ArgMax head's input for ArgMaxHead models)."""
    net = model.net if isinstance(model, ArgMaxHead) else model
    with torch.no_grad():
        y = net(torch.from_numpy(x))
    return (y.value if hasattr(y, "value") else y).numpy().astype(np.float32)


#: The networks :func:`materialize` trained in this session, by folder.
_NETWORKS: dict[Path, nn.Module] = {}


def _trained(case: Case) -> nn.Module:
    """The case's network, trained (:func:`train`) from seed 0 on one thread: the same weights whatever the caller's
    thread count (Brevitas keeps some scales out of its state dict, so the network is trained again, not loaded)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(case.build(), case)
    finally:
        torch.set_num_threads(threads)


def reference(case: Case, folder: Path) -> StageOutputs:
    """The PyTorch network of a case :func:`materialize` wrote into ``folder``, on its held-out samples, as
    verification's first stage: one that can run again on a differing sample (:mod:`flow.sim.forced`)."""
    model = _NETWORKS.get(Path(folder).resolve()) or _trained(case)
    return torch_reference(model.net if isinstance(model, ArgMaxHead) else model, held_out(case))


def materialize(case: Case, folder: Path) -> Path:
    """Train and export ``case`` into ``folder`` (reused when already there); the model's path."""
    folder = Path(folder)
    path = folder / "model.onnx"
    if (folder / "case.json").is_file():
        return path
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    model = _trained(case)
    with torch.no_grad():
        EXPORTERS[case.export](model, case.shape, path)
    domain_x = held_out(case)
    graph_x = np.round(domain_x * 255.0) if case.export.startswith("docs") else domain_x
    np.save(folder / "inputs.npy", graph_x.astype(np.float32))
    np.save(folder / "torch_outputs.npy", logits_of(model, domain_x))
    _NETWORKS[folder.resolve()] = model
    (folder / "case.json").write_text(json.dumps({"name": case.name, "export": case.export, "input_dtype": case.input_dtype}))
    return path
