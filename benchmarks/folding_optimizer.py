"""qflow's folding optimizer (``--auto``) vs FINN's SetFolding and the finn-examples hand
foldings, under the same board caps, by FINN's own estimates (untrained weights: the
hardware estimates do not depend on weight values).

Per (network, board):
  * optimizer: ``build(..., auto=True)``; numbers are from its report.json (FINN's analyses).
  * SetFolding: the best design that fits, over target_fps on a log grid 1e2..1e8
    (4 points/decade), refined by bisection between the best fitting and the next
    non-fitting grid point, for mvau_wwidth_max 36 (FINN's default) and 8191 (FINN's
    AP_INT_MAX_W); each point = FINN's step_target_fps_parallelization +
    step_minimize_bit_width + flow.fold.estimate, as ``build(..., target_fps=...)`` does.
    The best one is then rebuilt with ``build`` and its report.json used.
  * hand: the finn-examples (bnn-pynq) folding configs for tfc-w1a1 and cnv-w1a1 mapped
    onto qflow's node names (see HAND), via ``build(..., folding_file=...)``.

Each optimizer row also records whether the folding is proven optimal, its gap, and its
lower bound on cycles per frame (report.json ``cycle_bound``: where it comes from and the
fraction the design reaches).

``--checkpoint LABEL FILE TARGET`` adds a specialized design (a build's
``checkpoints/NN_specialize_layers.onnx``, e.g. a network whose streamlining takes minutes)
folded by ``--auto`` and by ``--fps`` at each ``--fps-rate``, with the build's own fold and
bit-width steps and FINN's estimates; its rows also say whether the optimizer's prediction
equals FINN's re-estimate.

    python benchmarks/folding_optimizer.py --update  # -> benchmarks/results/folding_optimizer.json
    python benchmarks/folding_optimizer.py --no-networks --checkpoint resnet50 ckpt.onnx alveo-u250 --fps-rate 5000 --out x.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import add_output_args, result_path, write_results  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402

from flow.builder.pipeline import build  # noqa: E402
from flow.builder.registry import get_step  # noqa: E402
from flow.compat import finn as _finn_compat  # noqa: E402
from flow.compat.finn_builder import finn_config  # noqa: E402
from flow.fold.estimate import estimate  # noqa: E402
from flow.core.config import build_config  # noqa: E402
from flow.core.pipeline import BuildContext  # noqa: E402
from flow.nn.export import export_qonnx  # noqa: E402
from flow.report.schema import tied_bottlenecks  # noqa: E402
from hw_targets import load_target  # noqa: E402
from models import build_model  # noqa: E402

NETWORKS = [("tfc-w1a1", "tfc", 1, 1), ("cnv-w1a1", "cnv", 1, 1), ("tfc-w2a2", "tfc", 2, 2), ("cnv28-w2a2", "cnv28", 2, 2)]
TARGETS = ["pynq-z1", "zcu104"]
WWIDTHS = [36, 8191]


def _mvau(pe, simd, ram="auto"):
    return {"PE": pe, "SIMD": simd, "ram_style": ram}


# finn-examples build/bnn-pynq/folding_config/*.json mapped onto qflow's graphs. qflow's
# graphs name layers by op type (MVAU_hls_i, ConvolutionInputGenerator_rtl_i, ...). TFC: the
# input Thresholding (PE 49) and the four MVAUs in order. CNV: SWG SIMD = consumer MVAU SIMD
# as in finn-examples; its StreamingMaxPool_Batch (no folding: all channels per cycle) is
# qflow's depthwise SWG + Pool_hls pair, so both get SIMD = PE = channels; the input
# Thresholding gets PE 1 as finn-examples' Thresholding_Batch_0.
HAND = {
    "tfc-w1a1": {
        "Thresholding_rtl_0": {"PE": 49},
        "MVAU_hls_0": _mvau(16, 49, "block"), "MVAU_hls_1": _mvau(8, 8), "MVAU_hls_2": _mvau(8, 8),
        "MVAU_hls_3": _mvau(10, 8, "distributed"), "LabelSelect_hls_0": {"PE": 1},
    },
    "cnv-w1a1": {
        "Thresholding_rtl_0": {"PE": 1},
        **{f"ConvolutionInputGenerator_rtl_{i}": {"SIMD": s, "ram_style": "distributed"} for i, s in ((0, 3), (1, 32), (3, 32), (4, 32), (6, 32), (7, 32))},
        "ConvolutionInputGenerator_rtl_2": {"SIMD": 64, "ram_style": "distributed"}, "Pool_hls_0": {"PE": 64},
        "ConvolutionInputGenerator_rtl_5": {"SIMD": 128, "ram_style": "distributed"}, "Pool_hls_1": {"PE": 128},
        **{f"MVAU_hls_{i}": _mvau(pe, simd) for i, (pe, simd) in enumerate([(16, 3), (32, 32), (16, 32), (16, 32), (4, 32), (1, 32), (1, 4), (1, 8), (5, 1)])},
        "LabelSelect_hls_0": {"PE": 1},
    },
}


def _summary(report) -> dict:
    d = report.to_dict()
    return {k: d[k] for k in ("throughput_fps", "max_cycles", "totals", "budget", "fits", "over_budget", "bottleneck", "bottlenecks")}


def _plan(case_dir: Path) -> dict:
    """The optimizer's own record: prediction, seconds, proof, gap, bound."""
    plan = json.loads((case_dir / "auto_folding.json").read_text())["predicted"]
    keep = ("max_cycles", "seconds", "optimal", "gap", "limit", "milp_calls", "milp_timeouts", "options")
    return {("optimizer_seconds" if k == "seconds" else k): plan.get(k) for k in keep}


def fold_checkpoint(spec: Path, target, out: Path, **cfg) -> tuple[dict, float]:
    """The build's fold and bit-width steps on a specialized design, estimated by FINN; (summary, fold seconds)."""
    ctx = BuildContext(build_config(target=target.name, **cfg), target, out)
    model = ModelWrapper(str(spec))
    with _finn_compat.finn_output_to(out / "finn.log"):
        t0 = time.perf_counter()
        model = get_step("fold")(model, ctx)
        seconds = time.perf_counter() - t0
        model = get_step("minimize_bit_width")(model, ctx)
        est = estimate(model, target)
    used = {k: est.totals[k] + est.converter_totals[k] for k in est.totals}
    summary = {"max_cycles": est.max_cycles, "throughput_fps": est.throughput_fps, "bottleneck": est.bottleneck,
               "bottlenecks": tied_bottlenecks(est), "fits": est.fits,
               "totals": est.totals, "converters": est.converter_totals, "lut_fraction_of_device": used["lut"] / target.resources.lut}
    return summary, seconds


def checkpoint_row(label: str, spec: Path, tname: str, rates: list[int], tmp: Path) -> dict:
    target = load_target(tname)
    _finn_compat.ensure_finn_settings(tmp / "finn_build")
    auto, seconds = fold_checkpoint(spec, target, tmp / "auto", auto=True)
    plan = _plan(tmp / "auto")
    row = {"network": label, "target": tname, "checkpoint": str(spec), "optimizer": auto | plan | {"fold_seconds": seconds,
           "prediction_matches_finn": plan["max_cycles"] == auto["max_cycles"]
           and json.loads((tmp / "auto" / "auto_folding.json").read_text())["predicted"]["totals"] == auto["totals"]}}
    for rate in rates:
        row[f"fps_{rate}"], _ = fold_checkpoint(spec, target, tmp / f"fps{rate}", target_fps=rate)
        row[f"ratio_vs_fps_{rate}"] = row[f"fps_{rate}"]["max_cycles"] / auto["max_cycles"]
    print(f"{label} on {tname}: --auto {auto['throughput_fps']:,.0f} FPS ({auto['max_cycles']:,} cycles, optimal={plan['optimal']}, "
          f"{seconds:.0f} s), " + ", ".join(f"--fps {r}: {row[f'fps_{r}']['throughput_fps']:,.0f} FPS" for r in rates))
    return row


def setfolding_point(spec: ModelWrapper, target, fps: float, wwidth: int, tmp: Path):
    ctx = BuildContext(build_config(target=target.name, target_fps=int(fps), mvau_wwidth_max=wwidth), target, tmp)
    fcfg = finn_config(ctx)
    Path(fcfg.output_dir, "report").mkdir(parents=True, exist_ok=True)
    steps = _finn_compat.build_steps()
    with _finn_compat.finn_output_to(tmp / "finn.log"):
        m = steps.step_target_fps_parallelization(ModelWrapper(copy.deepcopy(spec.model)), fcfg)
        m = steps.step_minimize_bit_width(m, fcfg)
    return estimate(m, target)


def setfolding_sweep(spec: ModelWrapper, target, tmp: Path, bisect_steps: int) -> dict:
    best, points = None, 0
    for wwidth in WWIDTHS:
        evals = {}
        def ev(fps):  # noqa: E306
            if fps not in evals:
                evals[fps] = setfolding_point(spec, target, fps, wwidth, tmp)
            return evals[fps]
        grid = [float(x) for x in np.logspace(2, 8, 25)]
        fit = [f for f in grid if ev(f).fits]
        if fit:  # refine between the best fitting grid point and the next one up
            lo_fps = max(fit, key=lambda f: ev(f).throughput_fps)
            hi = [f for f in grid if f > lo_fps]
            if hi:
                lo, up = np.log10(lo_fps), np.log10(hi[0])
                for _ in range(bisect_steps):
                    mid = (lo + up) / 2
                    lo, up = (mid, up) if ev(10**mid).fits else (lo, mid)
        points += len(evals)
        for fps, e in evals.items():
            if e.fits and (best is None or e.throughput_fps > best[2].throughput_fps):
                best = (fps, wwidth, e)
    if best is None:
        return {"found": False, "points": points}
    fps, wwidth, e = best
    return {"found": True, "target_fps": int(fps), "mvau_wwidth_max": wwidth, "throughput_fps": e.throughput_fps, "points": points}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "folding_optimizer.json")
    ap.add_argument("--bisect", type=int, default=8)
    ap.add_argument("--no-networks", action="store_true", help="Only the --checkpoint designs.")
    ap.add_argument("--checkpoint", nargs=3, action="append", default=[], metavar=("LABEL", "FILE", "TARGET"),
                    help="A specialized design to fold with --auto and --fps (repeatable).")
    ap.add_argument("--fps-rate", type=int, action="append", default=None, help="--fps rates for the --checkpoint designs [5000].")
    args = ap.parse_args()
    args.out = result_path(args, "folding_optimizer.json")
    _finn_compat.quiet_finn_logging()
    rows, t_start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for label, spec_file, tname in args.checkpoint:
            rows.append(checkpoint_row(label, Path(spec_file), tname, args.fps_rate or [5000], tmp / f"ckpt-{label}-{tname}"))
        for label, name, wb, ab in [] if args.no_networks else NETWORKS:
            torch.manual_seed(0)  # the same untrained weights (so the same minimized datatypes) in every run
            model = build_model(name, weight_bits=wb, act_bits=ab)
            onnx = tmp / f"{label}.onnx"
            export_qonnx(model, onnx, model.input_shape)
            for tname in TARGETS:
                target = load_target(tname)
                case = tmp / f"{label}-{tname}"
                t0 = time.perf_counter()
                auto = build(onnx, build_config(target=tname, auto=True, verify_samples=0), case / "auto")
                auto_s = time.perf_counter() - t0
                plan = json.loads((case / "auto" / "auto_folding.json").read_text())["predicted"]
                spec = ModelWrapper(str(auto.checkpoints["specialize_layers"]))
                t0 = time.perf_counter()
                sf = setfolding_sweep(spec, target, case / "sweep", args.bisect)
                sf["sweep_seconds"] = time.perf_counter() - t0
                bound = auto.report.cycle_bound.model_dump() if auto.report.cycle_bound else None
                row = {"network": label, "target": tname, "optimizer": _summary(auto.report) | _plan(case / "auto") | {
                    "cycle_bound": bound, "build_seconds": auto_s, "prediction_matches_finn": plan["totals"] == auto.report.totals}}
                if sf["found"]:
                    r = build(onnx, build_config(target=tname, target_fps=sf["target_fps"], mvau_wwidth_max=sf["mvau_wwidth_max"], verify_samples=0), case / "sf")
                    sf |= _summary(r.report)
                    row["ratio_vs_setfolding"] = auto.report.throughput_fps / r.report.throughput_fps
                row["setfolding"] = sf
                if label in HAND:
                    f = case / "hand.json"
                    f.write_text(json.dumps({"Defaults": {}, **HAND[label]}))
                    r = build(onnx, build_config(target=tname, folding_file=f, verify_samples=0), case / "hand")
                    row["hand"] = _summary(r.report)
                    row["ratio_vs_hand"] = auto.report.throughput_fps / r.report.throughput_fps
                rows.append(row)
                print(f"{label} on {tname}: optimizer {auto.report.throughput_fps:,.0f} FPS (fits={auto.report.fits}), "
                      f"SetFolding best {sf.get('throughput_fps', 0):,.0f} ({sf['points']} points), ratio {row.get('ratio_vs_setfolding', float('nan')):.2f}"
                      + (f", hand {row['hand']['throughput_fps']:,.0f} (fits={row['hand']['fits']}), ratio {row['ratio_vs_hand']:.2f}" if "hand" in row else ""))
    write_results(args.out, {
        "benchmark": "folding_optimizer",
        "what": "throughput (FINN estimates, report.json) of qflow build --auto vs the best fitting FINN SetFolding over a target_fps sweep and vs finn-examples hand foldings, same caps",
        "goal": "ratios >= 1.0",
        "hand_mapping": {k: v for k, v in HAND.items()},
        "seconds_total": time.perf_counter() - t_start,
        "rows": rows,
    })


if __name__ == "__main__":
    main()
