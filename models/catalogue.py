"""The finn-examples networks, full size: what each one is, how finn-examples builds it, and where its weights come from.

Xilinx's finn-examples repository builds each network with a hand-written script
(``build/<dir>/build.py``, often with ``custom_steps.py``) and a hand-tuned folding per board
(``folding_config/*.json``, ``specialize_layers_config/*.json``). :data:`NETWORKS` names every
one of them (plus the upsampling variants of ESPCN and Brevitas' ProxylessNAS, which
finn-examples does not ship): its Brevitas module, input shape and datatype, and per
finn-examples board the qflow target, clock, folding files and build options, as read from
finn-examples' scripts. Paths are relative to a finn-examples checkout. finn-examples builds
neither ESPCN nor ProxylessNAS; their one board is qflow's choice (ZCU104 at 100 MHz; the
U250 at MobileNet-v1's clock).

Weights: ``mnist`` networks are trained on MNIST (qflow's data, ``qflow fetch-data``); the
others have no dataset any registry serves (CIFAR-10, GTSRB, Speech Commands, UNSW-NB15,
RadioML, ImageNet, BSD300), so they keep seeded random weights, with seeded BatchNorm scales
and shifts and BatchNorm statistics taken from seeded synthetic inputs, so that activations
spread over their levels (``tests/corpus/examples.py`` does this for the corpus and the
benchmark).
Nothing is downloaded.

>>> net = NETWORKS["resnet50-w1a2"]
>>> net.input_shape, net.input_dtype, [b.target for b in net.boards]
((3, 224, 224), 'UINT8', ['alveo-u250'])
>>> net.boards[0].folding
'build/resnet50/folding_config/U250_folding_config.json'
>>> sorted(n for n, e in NETWORKS.items() if e.weights == "mnist")
['tfc-w1a1', 'tfc-w1a2', 'tfc-w2a2']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from torch import nn

from flow.core.errors import UnknownModelError
from models import bnn_pynq, cybsec, espcn, imagenet, kws, radioml, resnet

__all__ = ["Board", "ExampleNetwork", "NETWORKS", "example", "build_example"]

#: What the accelerator returns: a top-k class index, a bipolar verdict, or an image.
Output = Literal["top1", "top5", "bipolar", "image"]


@dataclass(frozen=True)
class Board:
    """How finn-examples builds one network for one board (its ``build.py``).

    ``finn_board``: finn-examples' board name; ``target``: qflow's ``hw_targets`` name;
    ``clock_ns``: ``synth_clk_period_ns``; ``folding``/``specialize``: finn-examples' folding
    and specialize-layers configs (``None``: it folds with ``target_fps``); ``target_fps``,
    ``mvau_wwidth_max``, ``standalone_thresholds``: its build options (``None``/``False``:
    FINN's defaults); ``steps``: its step list when it is not FINN's default, custom steps by
    their function name in the network's ``custom_steps.py``.
    """

    finn_board: str
    target: str
    clock_ns: float
    folding: str | None = None
    specialize: str | None = None
    target_fps: int | None = None
    mvau_wwidth_max: int | None = None
    standalone_thresholds: bool = False
    steps: tuple[str, ...] | None = None

    @property
    def clock_mhz(self) -> float:
        return round(1000.0 / self.clock_ns, 6)


@dataclass(frozen=True)
class ExampleNetwork:
    """One reference network. ``build()`` returns it untrained, in eval mode is the caller's choice.

    ``input_dtype``: ``--input-dtype`` for its export (``None``: a quantizer in the network reads
    its float input, on the host); ``accelerator_input``: the integers the accelerator takes.
    ``layers``: its weight layers by FINN op (``MVAU``, ``VVAU``) as finn-examples' folding
    config for it counts them (``{}`` when finn-examples has none). ``large``: 224x224 or
    similar, minutes per build.
    """

    name: str
    family: str
    description: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    input_dtype: str | None
    accelerator_input: str
    output: Output
    num_classes: int
    weights: Literal["mnist", "random"]
    finn_examples_dir: str | None
    boards: tuple[Board, ...] = ()
    layers: dict[str, int] = field(default_factory=dict)
    large: bool = False


def _bnn_boards(name: str) -> tuple[Board, ...]:
    files = dict(folding=f"build/bnn-pynq/folding_config/{name}_folding_config.json",
                 specialize=f"build/bnn-pynq/specialize_layers_config/{name}_specialize_layers.json")
    return tuple(Board(b, t, 5.0, **files) for b, t in
                 (("Pynq-Z1", "pynq-z1"), ("Ultra96", "ultra96"), ("ZCU104", "zcu104"), ("U250", "alveo-u250")))


def _bnn(kind: str, wb: int, ab: int) -> ExampleNetwork:
    name = f"{kind}-w{wb}a{ab}"
    if kind == "tfc":
        return ExampleNetwork(name, "bnn-pynq", f"TFC 784-64-64-64-10, {wb}-bit weights, {ab}-bit activations (MNIST)",
                              partial(bnn_pynq.tfc, wb, ab), bnn_pynq.MNIST_SHAPE, "UINT8", "UINT8", "top1", 10, "mnist",
                              "build/bnn-pynq", _bnn_boards(name), {"MVAU": 4})
    return ExampleNetwork(name, "bnn-pynq", f"CNV (6 convs, FC 512-512-10), {wb}-bit weights, {ab}-bit activations (CIFAR-10)",
                          partial(bnn_pynq.cnv, wb, ab), bnn_pynq.CIFAR_SHAPE, "UINT8", "UINT8", "top1", 10, "random",
                          "build/bnn-pynq", _bnn_boards(name), {"MVAU": 9})


_VGG10_STEPS = ("step_tidy_up", "step_pre_streamline", "step_streamline", "step_convert_to_hw", "step_convert_final_layers",
                "step_create_dataflow_partition", "step_specialize_layers", "step_target_fps_parallelization",
                "step_apply_folding_config", "step_minimize_bit_width", "step_generate_estimate_reports")
_MOBILENET_HEAD = ("step_mobilenet_streamline", "step_mobilenet_lower_convs")
_ESTIMATE_TAIL = ("step_create_dataflow_partition", "step_specialize_layers", "step_apply_folding_config",
                  "step_minimize_bit_width", "step_generate_estimate_reports")


def _mobilenet_board(finn_board: str, target: str, clock_ns: float, alveo: bool) -> Board:
    convert = "step_mobilenet_convert_to_hw_layers" if alveo else "step_mobilenet_convert_to_hw_layers_separate_th"
    return Board(finn_board, target, clock_ns, f"build/mobilenet-v1/folding_config/{finn_board}_folding_config.json",
                 f"build/mobilenet-v1/specialize_layers_config/{finn_board}_specialize_layers.json",
                 standalone_thresholds=not alveo, steps=(*_MOBILENET_HEAD, convert, *_ESTIMATE_TAIL))


def _espcn(upsample: str) -> ExampleNetwork:
    what = {"resize": "nearest-neighbour resize convolution", "subpixel": "sub-pixel convolution (PixelShuffle)",
            "deconv": "transposed convolution"}[upsample]
    return ExampleNetwork(
        f"espcn-{upsample}", "super-resolution", f"ESPCN x2 w4a4 (brevitas_examples.super_resolution), {what}, 3x256x256 -> 3x512x512",
        partial(espcn.espcn, upsample, 2, 3, (256, 256)), (3, 256, 256), "UINT8", "UINT8", "image", 0, "random", None,
        (Board("ZCU104", "zcu104", 10.0),), large=True)


_ALL: tuple[ExampleNetwork, ...] = (
    *(_bnn(k, wb, ab) for k in ("tfc", "cnv") for wb, ab in bnn_pynq.BITS),
    ExampleNetwork(
        "kws-mlp-w3a3", "kws", "keyword spotting MLP 490-256-256-256-12, 3-bit weights and activations (Speech Commands v2)",
        kws.KwsMlp, kws.KWS_SHAPE, None, "INT8", "top1", kws.KWS_CLASSES, "random", "build/kws",
        (Board("Pynq-Z1", "pynq-z1", 10.0, "build/kws/folding_config/kws_folding_config.json",
               "build/kws/specialize_layers_config/kws_specialize_layers.json"),), {"MVAU": 4}),
    ExampleNetwork(
        "cybsec-mlp-w2a2", "cybersecurity", "UNSW-NB15 intrusion MLP 600-64-64-64-1, 2-bit weights and activations, bipolar in and out",
        cybsec.CybSecMlp, (cybsec.UNSW_FEATURES,), "BIPOLAR", "BIPOLAR", "bipolar", 2, "random", "build/cybersecurity-mlp",
        tuple(Board(b, t, 10.0, target_fps=1_000_000, mvau_wwidth_max=80)
              for b, t in (("Pynq-Z1", "pynq-z1"), ("Ultra96", "ultra96"), ("ZCU104", "zcu104")))),
    ExampleNetwork(
        "vgg10-radioml-w4a4", "radioml", "VGG10 1D CNN (7 x conv1d 32 + max-pool, FC 128-128-24), 4-bit, 2x1024 I/Q (RadioML 2018)",
        radioml.Vgg10, radioml.RADIOML_SHAPE, None, "INT8", "top1", radioml.RADIOML_CLASSES, "random", "build/vgg10-radioml",
        (Board("ZCU104", "zcu104", 4.0, "build/vgg10-radioml/folding_config/ZCU104_folding_config.json",
               "build/vgg10-radioml/specialize_layers_config/ZCU104_specialize_layers.json",
               standalone_thresholds=True, steps=_VGG10_STEPS),), {"MVAU": 10}),
    ExampleNetwork(
        "gtsrb-cnv-w1a1", "gtsrb", "CNV w1a1 with 43 classes (GTSRB traffic signs)", bnn_pynq.gtsrb_cnv, bnn_pynq.CIFAR_SHAPE,
        "UINT8", "UINT8", "top1", bnn_pynq.GTSRB_CLASSES, "random", "build/gtsrb",
        (Board("Pynq-Z1", "pynq-z1", 10.0, "build/gtsrb/folding_config/gtsrb_folding_config.json",
               "build/gtsrb/specialize_layers_config/gtsrb_specialize_layers.json", target_fps=3000),), {"MVAU": 9}),
    ExampleNetwork(
        "mobilenet-v1-w4a4", "imagenet", "MobileNet-v1 w4a4, 8-bit first layer (brevitas_examples quant_mobilenet_v1_4b), ImageNet 3x224x224",
        imagenet.mobilenet_v1, imagenet.IMAGENET_SHAPE, "UINT8", "UINT8", "top5", 1000, "random", "build/mobilenet-v1",
        (_mobilenet_board("U250", "alveo-u250", 3.0, True), _mobilenet_board("ZCU104", "zcu104", 5.4, False),
         _mobilenet_board("ZCU102", "zcu102", 5.4, False)), {"MVAU": 15, "VVAU": 13}, large=True),
    ExampleNetwork(
        "proxylessnas-mobile14-w4a4", "imagenet", "ProxylessNAS-mobile14 w4a4 (brevitas_examples quant_proxylessnas_mobile14_4b), ImageNet 3x224x224",
        imagenet.proxylessnas_mobile14, imagenet.IMAGENET_SHAPE, "UINT8", "UINT8", "top1", 1000, "random", None,
        (Board("U250", "alveo-u250", 3.0),), large=True),
    ExampleNetwork(
        "resnet50-w1a2", "imagenet", "ResNet-50 w1a2, 4-bit residuals, 8-bit first/last layer weights, ImageNet 3x224x224",
        resnet.resnet50, (3, 224, 224), "UINT8", "UINT8", "top1", 1000, "random", "build/resnet50",
        (Board("U250", "alveo-u250", 4.0, "build/resnet50/folding_config/U250_folding_config.json",
               "build/resnet50/specialize_layers_config/U250_specialize_layers.json",
               steps=("step_resnet50_tidy", "step_resnet50_streamline", "step_resnet50_convert_to_hw", *_ESTIMATE_TAIL)),),
        {"MVAU": 54}, large=True),
    *(_espcn(u) for u in espcn.UPSAMPLERS),
)

#: Every reference network, by name.
NETWORKS: dict[str, ExampleNetwork] = {n.name: n for n in _ALL}


def example(name: str) -> ExampleNetwork:
    """The catalogue entry ``name``; UnknownModelError lists the valid names."""
    if name not in NETWORKS:
        raise UnknownModelError(f"unknown finn-examples network {name!r}; available: {', '.join(NETWORKS)}")
    return NETWORKS[name]


def build_example(name: str) -> nn.Module:
    """Network ``name``, untrained, in eval mode."""
    return example(name).build().eval()
