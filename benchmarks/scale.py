"""Time and peak memory of every build step as networks get deeper, with a fitted growth exponent per step.

Families (untrained Brevitas networks on 1x8x8 raw pixels, built for a Pynq-Z1 with FINN's
SetFolding and verified on 4 random inputs at every stage):

* ``conv``: a chain of conv-BN-ReLU blocks;
* ``residual``: residual blocks sharing one quantizer (as Brevitas' ProxylessNAS);
* ``dws``: depthwise-separable blocks (MobileNet units, per-channel scales before each depthwise conv);
* ``identity``: a quantized input, a chain of ONNX ``Identity`` ops, a quantized MatMul (up to 2,000 nodes).

Each case runs in a child process: ``import`` (load and normalise) is timed on its own, then
:func:`flow.builder.build` step by step. Per step it records wall seconds (the build's own
timings), CPU seconds and the peak resident memory while the step ran (sampled every 5 ms);
a least-squares fit of ``log(cpu) ~ k log(nodes)`` over the depths gives each step's exponent
``k`` (1 is linear), and the same fit over the three deepest cases its exponent where graphs
are large (``tail_exponents``). With ``--whole``, 224x224 networks are built and verified on 4 inputs:
brevitas_examples' MobileNet-v1 (4-bit) and ProxylessNAS mobile14 (4-bit) and a ResNet-50
(1-bit weights, 2-bit activations, a shared quantizer at every residual join, 8-bit first and
last layers), recording wall time and peak RSS of the whole build (``qflow build`` in a child).

    python benchmarks/scale.py                    # the depth sweep -> benchmarks/results/.scratch/scale.json
    python benchmarks/scale.py --whole            # and the 224x224 networks (minutes each)
    python benchmarks/scale.py --update [--whole] # -> benchmarks/results/scale.json
    python benchmarks/scale.py --update --whole --families ""  # only the 224x224 builds; the sweep rows are kept
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_output_args, kept, result_path, write_results  # noqa: E402

#: Depths (blocks; Identity ops for ``identity``) of the sweep.
SWEEP = {
    "conv": [10, 20, 40, 80, 160, 240],
    "residual": [5, 10, 20, 40, 80, 120],
    "dws": [5, 10, 20, 40, 80, 120],
    "identity": [250, 500, 1000, 2000],
}
WHOLE = ["mobilenet_v1", "proxylessnas", "resnet50"]
SAMPLES = 4
PAGE = os.sysconf("SC_PAGE_SIZE")


class RssSampler(threading.Thread):
    """Peak resident memory of this process per labelled interval (read from /proc every 5 ms)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.label, self.peaks, self.stop = "start", {}, threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def mark(self, label: str) -> None:
        self.label = label
        self.peaks[label] = max(self.peaks.get(label, 0), self.rss())

    def run(self):
        while not self.stop.wait(0.005):
            label = self.label
            self.peaks[label] = max(self.peaks.get(label, 0), self.rss())


def export_network(family: str, depth: int, path: Path) -> None:
    """Write the sweep network ``family`` at ``depth`` to ``path``."""
    if family == "identity":
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper
        from qonnx.util.basic import qonnx_make_model

        vi = helper.make_tensor_value_info
        q = dict(domain="qonnx.custom_op.general", rounding_mode="ROUND", narrow=0)
        nodes = [helper.make_node("Quant", ["x", "s", "z", "b8"], ["t0"], signed=0, **q)]
        nodes += [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(depth)]
        nodes += [helper.make_node("Quant", ["w", "ws", "z", "b2"], ["wq"], signed=1, **q),
                  helper.make_node("MatMul", [f"t{depth}", "wq"], ["y"])]
        w = np.random.default_rng(0).integers(-2, 2, size=(64, 10)).astype(np.float32)
        inits = [numpy_helper.from_array(np.float32(v), n) for v, n in ((1 / 255, "s"), (0, "z"), (8, "b8"), (2, "b2"), (0.5, "ws"))]
        g = helper.make_graph(nodes, "identity_chain", [vi("x", TensorProto.FLOAT, [1, 64])], [vi("y", TensorProto.FLOAT, [1, 10])],
                              initializer=[*inits, numpy_helper.from_array(w, "w")])
        onnx.save(qonnx_make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
        return
    import torch
    from torch import nn

    from flow.nn.export import export_qonnx

    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import structures as S

    torch.manual_seed(0)
    c = 8
    if family == "conv":
        blocks = [nn.Sequential(S.conv(c, c, 3), nn.BatchNorm2d(c), S.uact(4)) for _ in range(depth)]
        net = nn.Sequential(S.InputQuant(), S.conv(1, c, 3), nn.BatchNorm2d(c), S.uact(4), *blocks, nn.Flatten(), S.linear(c * 64, 10))
    elif family == "residual":
        net = S.ResNet(blocks=depth, c=c)
    elif family == "dws":
        net = S.DwsNet(strides=(1,), c=c)
        net.blocks = nn.Sequential(*[S.DwsBlock(c, c, 1, last=i == depth - 1) for i in range(depth)])
        net.fc = S.linear(c * 64, 10)
    else:
        raise SystemExit(f"unknown family {family!r}")
    export_qonnx(net.eval(), path, (1, 8, 8))


def whole_network(name: str, path: Path) -> None:
    """Export a 224x224 network (untrained, BatchNorm statistics drawn at random) to ``path``: raw
    pixels, x/255, an 8-bit input quantizer."""
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat
    from brevitas_examples.imagenet_classification.models import model_with_cfg
    from torch import nn

    from flow.nn.export import export_qonnx

    class Pixels(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.q, self.net = qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=8, return_quant_tensor=True), net

        def forward(self, x):
            return self.net(self.q(x / 255.0))

    def conv(cin, cout, k, s=1, wbits=1):
        if wbits == 1:
            return qnn.QuantConv2d(cin, cout, k, stride=s, padding=k // 2, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
        return qnn.QuantConv2d(cin, cout, k, stride=s, padding=k // 2, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=wbits)

    def relu():
        return qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, bit_width=2)

    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, cout, stride, shared, proj):
            super().__init__()
            self.body = nn.Sequential(conv(cin, mid, 1), nn.BatchNorm2d(mid), relu(), conv(mid, mid, 3, stride), nn.BatchNorm2d(mid), relu(),
                                      conv(mid, cout, 1), nn.BatchNorm2d(cout))
            self.shared = shared
            self.proj = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout)) if proj else None

        def forward(self, x):
            skip = x if self.proj is None else self.shared(self.proj(x))
            return self.shared(self.shared(self.body(x)) + skip)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv(3, 64, 7, 2, wbits=8), nn.BatchNorm2d(64), relu(), nn.MaxPool2d(3, 2, 1))
            blocks, cin = [], 64
            for i, n in enumerate((3, 4, 6, 3)):
                shared = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, bit_width=4)
                for j in range(n):
                    blocks.append(Bottleneck(cin, 64 * 2**i, 256 * 2**i, 2 if j == 0 and i > 0 else 1, shared, j == 0))
                    cin = 256 * 2**i
            self.blocks = nn.Sequential(*blocks)
            self.fc = qnn.QuantLinear(cin, 1000, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=8)

        def forward(self, x):
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))

    torch.manual_seed(0)
    if name == "resnet50":
        net = ResNet50()
    else:
        net, _ = model_with_cfg({"mobilenet_v1": "quant_mobilenet_v1_4b", "proxylessnas": "quant_proxylessnas_mobile14_4b"}[name])
    g = torch.Generator().manual_seed(1)
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):  # statistics as after training, not 0/1
        c = bn.num_features
        bn.weight.data, bn.bias.data = 0.5 + torch.rand(c, generator=g), 0.1 * torch.randn(c, generator=g)
        bn.running_mean.data, bn.running_var.data = 0.1 * torch.randn(c, generator=g), 0.5 + torch.rand(c, generator=g)
    export_qonnx(Pixels(net).eval(), path, (3, 224, 224))


def measure(path: Path, target: str, target_fps: int, work: Path, out: Path) -> None:
    """Build and verify the model at ``path`` in this process; write per-step wall/CPU seconds and peak RSS to ``out``.

    ``import`` is load and normalisation (up to the first step), every other entry a build step,
    ``verify`` included (the estimate runs between the last step and verification and is
    counted with the last step's CPU time; its wall time is ``estimate_wall_s``).
    """
    import warnings

    warnings.simplefilter("ignore")
    from qonnx.core.modelwrapper import ModelWrapper

    from flow.builder import build
    from flow.core.config import build_config
    from flow.core.errors import VerificationError

    sampler = RssSampler()
    sampler.start()
    sampler.mark("import")
    marks: list[tuple[str, float, float]] = [("import", time.perf_counter(), time.process_time())]

    def progress(step: str) -> None:
        marks.append((step, time.perf_counter(), time.process_time()))
        sampler.mark(step)

    cfg = build_config(target=target, target_fps=target_fps, verify_samples=SAMPLES)
    t0 = time.perf_counter()
    try:
        build(path, cfg, work / "out", progress=progress)
        failure = None
    except VerificationError as e:  # the report is written; the timings stand
        failure = str(e)
    wall = time.perf_counter() - t0
    marks.append(("end", time.perf_counter(), time.process_time()))
    sampler.stop.set()
    report = json.loads((work / "out" / "report.json").read_text())
    timings = report.get("timings_s") or {}
    steps = {}
    for (name, w, c), (_, w_next, c_next) in zip(marks, marks[1:]):
        steps[name] = {"wall_s": round(timings.get(name, w_next - w), 3), "cpu_s": round(c_next - c, 3),
                       "peak_rss_mb": round(sampler.peaks.get(name, 0) / 2**20, 1)}
    verification = report.get("verification") or {}
    out.write_text(json.dumps({
        "nodes": len(ModelWrapper(str(work / "out" / "checkpoints" / "00_qonnx.onnx")).graph.node),
        "hw_layers": len(report.get("layers", [])), "build_wall_s": round(wall, 1), "estimate_wall_s": timings.get("estimate"),
        "verified": bool(verification.get("passed")), "verification_failure": failure,
        "stages": {st["name"]: st["passed"] for st in verification.get("stages", [])}, "steps": steps,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


def run_child(args: list[str], timeout: float) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True, timeout=timeout, cwd=ROOT)


def case(kind: str, name: str, depth: int, work: Path, timeout: float) -> dict:
    """Export (in one child) and build (in another, so its peak memory is the build's own) one case; its
    folder (a 224x224 build's checkpoints take gigabytes) is removed once its result is read."""
    folder = work / f"{name}-{depth}"
    folder.mkdir(parents=True, exist_ok=True)
    model, result = folder / "model.onnx", folder / "result.json"
    try:
        run_child(["--export", kind, name, str(depth), str(model)], timeout)
        run_child(["--measure", kind, str(model), str(result)], timeout)
        return json.loads(result.read_text())
    except subprocess.CalledProcessError as e:
        return {"error": f"exit {e.returncode}"}
    except subprocess.TimeoutExpired:
        return {"error": f"not done in {timeout:.0f} s"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fit_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) over log(x): y ~ x^k."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len(pts) < 3:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx, 2) if sxx else None


def exponents(rows: list[dict], last: int | None = None) -> dict[str, float | None]:
    """Per step, the fitted exponent of CPU seconds over graph nodes (steps under 50 ms everywhere are noise and left out);
    with ``last``, over the ``last`` deepest cases only: the growth where the graph is large, which a fit over every depth
    hides when a step's fixed cost (imports, a first call) dominates the small cases."""
    rows = sorted((r for r in rows if "steps" in r), key=lambda r: r["nodes"])[-last if last else 0:]
    names = dict.fromkeys(n for r in rows for n in r["steps"])
    found = {}
    for name in names:
        pts = [(r["nodes"], r["steps"][name]["cpu_s"]) for r in rows if name in r["steps"]]
        if max((t for _, t in pts), default=0) >= 0.05:
            found[name] = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
    total = [(r["nodes"], sum(s["cpu_s"] for s in r["steps"].values())) for r in rows]
    found["total"] = fit_exponent([p[0] for p in total], [p[1] for p in total])
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "scale.json")
    ap.add_argument("--whole", action="store_true", help="also build the 224x224 networks (minutes each)")
    ap.add_argument("--families", default=",".join(SWEEP), help="comma-separated sweep families (empty: none)")
    ap.add_argument("--max-depth", type=int, default=None, help="skip deeper sweep cases")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    ap.add_argument("--export", nargs=4, metavar=("KIND", "NAME", "DEPTH", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--measure", nargs=3, metavar=("KIND", "MODEL", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.export:
        kind, name, depth, path = args.export
        if kind == "sweep":
            export_network(name, int(depth), Path(path))
        else:
            whole_network(name, Path(path))
        return
    if args.measure:
        kind, model, result = args.measure
        target, fps = ("pynq-z1", 10_000) if kind == "sweep" else ("alveo-u250", 1000)
        measure(Path(model), target, fps, Path(model).parent, Path(result))
        return
    out = result_path(args, "scale.json")
    work = Path(tempfile.mkdtemp(prefix="qflow-scale-"))
    sweep: dict[str, dict] = {}
    for family in [f for f in args.families.split(",") if f]:
        rows = []
        for depth in SWEEP[family]:
            if args.max_depth and depth > args.max_depth:
                continue
            rows.append({"family": family, "depth": depth, **case("sweep", family, depth, work, args.timeout)})
            r = rows[-1]
            if "error" in r:
                print(f"{family} depth {depth}: {r['error']}", flush=True)
                continue
            print(f"{family} depth {depth}: {r['nodes']} nodes, {sum(s['cpu_s'] for s in r['steps'].values()):.1f} CPU-s, "
                  f"peak {r['peak_rss_mb']:.0f} MB, verified {r['verified']}", flush=True)
        sweep[family] = {"rows": rows, "exponents": exponents(rows), "tail_exponents": exponents(rows, last=3)}
        print(f"{family} exponents: {sweep[family]['exponents']}, over the 3 deepest: {sweep[family]['tail_exponents']}", flush=True)
    whole_rows = []
    if args.whole:
        for name in WHOLE:
            whole_rows.append({"network": name, **case("whole", name, 224, work, args.timeout)})
            r = whole_rows[-1]
            if "error" in r:
                print(f"{name}: {r['error']}", flush=True)
                continue
            print(f"{name}: {r['nodes']} nodes, build {r['build_wall_s']} s, peak {r['peak_rss_mb']:.0f} MB, verified {r['verified']}", flush=True)
    # what this run did not measure is kept from the file, dated by the run that measured it
    old = json.loads(out.read_text()) if out.is_file() else {}
    for family, entry in old.get("sweep", {}).items():
        if family not in sweep:
            sweep[family] = kept(entry, old)
    if not args.whole:
        whole_rows = old.get("whole", [])
    write_results(out, {
        "benchmark": "scale",
        "what": "per-step time (wall and CPU) and peak RSS of qflow build as networks deepen; fitted exponent of CPU time "
                "over graph nodes per step, over every depth and over the three deepest (tail_exponents); whole 224x224 "
                "builds with 4 verified inputs",
        "sweep": sweep, "whole": whole_rows,
    })
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
