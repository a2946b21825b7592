"""Evaluations/s of flow.fold.cost_model.CostModel vs applying the folding with FINN and re-running
FINN's analyses, and their agreement, on random legal foldings (untrained weights).

FINN path per folding: re-specialization where the folding picks a layer's other HLS/RTL
variant (step_specialize_layers), ApplyConfig (step_apply_folding_config) +
step_minimize_bit_width + res_estimation + exp_cycles_per_layer, as the flow does.
Cost model: ``cold`` = first evaluation of each folding on an empty table (FINN's per-node
methods are called for settings not seen yet); ``warm`` = evaluations once the settings are
tabulated (what the optimizer does); ``table`` = time to tabulate every legal setting.

    python benchmarks/cost_model.py --update   # -> benchmarks/results/cost_model.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import add_output_args, result_path, write_results  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402

from flow.builder.pipeline import build  # noqa: E402
from flow.compat import finn as _finn_compat  # noqa: E402
from flow.fold.converters import finn_dwcs  # noqa: E402
from flow.fold.specialize import apply_folding  # noqa: E402
from flow.core.config import build_config  # noqa: E402
from flow.fold.cost_model import CostModel, random_folding  # noqa: E402
from flow.fold.lut_model import layer_lut, qflow_resources  # noqa: E402
from flow.nn.export import export_qonnx  # noqa: E402
from hw_targets import load_target  # noqa: E402
from models import build_model  # noqa: E402

CASES = [
    # (label, model, weight_bits, act_bits, target)
    ("tfc-w1a1", "tfc", 1, 1, "pynq-z1"),
    ("cnv-w1a1", "cnv", 1, 1, "pynq-z1"),
    ("cnv28-w2a2", "cnv28", 2, 2, "zcu104"),
]


def finn_evaluate(model: ModelWrapper, folding: dict, part: str, tmp: Path) -> tuple[dict[str, tuple], ModelWrapper, dict[str, str]]:
    """Apply ``folding`` with FINN: FINN's per-layer (cycles, LUT, BRAM, URAM, DSP) by original layer name, the model, old -> new names.

    Where FINN's LUT estimate is 0 by construction (Pool_hls, MVAU_rtl, ...), the LUTs are qflow's own count of
    the layer FINN built (:func:`flow.fold.lut_model.qflow_resources`), as in the report and the cost model."""
    from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.builder.build_dataflow_config import DataflowBuildConfig

    cfg = DataflowBuildConfig(output_dir=str(tmp / "finn"), fpga_part=part, generate_outputs=[])
    m, rename = apply_folding(ModelWrapper(copy.deepcopy(model.model)), folding, cfg, tmp / "folding.json")
    m = _finn_compat.build_steps().step_minimize_bit_width(m, cfg)
    res = m.analysis(partial(res_estimation, fpgapart=part))
    cyc = m.analysis(exp_cycles_per_layer)
    return {old: (cyc[new], *qflow_resources(getCustomOp(m.get_node_from_name(new)), res[new]))
            for old, new in rename.items() if new in cyc}, m, rename


def run_case(label, name, wb, ab, target_name, tmp: Path, n_finn: int, warm_seconds: float) -> dict:
    model = build_model(name, weight_bits=wb, act_bits=ab)
    onnx_path = tmp / f"{label}.onnx"
    export_qonnx(model, onnx_path, model.input_shape)
    r = build(onnx_path, build_config(target=target_name, verify_samples=0), tmp / label)
    spec = ModelWrapper(str(r.checkpoints["specialize_layers"]))
    part = load_target(target_name).part
    (tmp / "finn" / "report").mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    cm = CostModel(spec, part)
    init_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    foldings = [random_folding(cm, rng) for _ in range(n_finn)]

    cold_cm = CostModel(spec, part)
    cold = []
    for f in foldings:
        t0 = time.perf_counter()
        cold_cm.estimate(f)
        cold.append(time.perf_counter() - t0)

    finn_times, layers_total, layers_equal, foldings_equal, dwc_total, dwc_equal = [], 0, 0, 0, 0, 0
    own_lut: Counter[str] = Counter()  # where each compared layer's LUT comes from: FINN, or qflow's count where FINN's is 0
    for f in foldings:
        t0 = time.perf_counter()
        got, finn_model, rename = finn_evaluate(spec, f, part, tmp)
        finn_times.append(time.perf_counter() - t0)
        pred = cm.estimate(f)
        eq = [got[n] == (pred.layers[n].cycles, *pred.layers[n].resources()) for n in cm.layers]
        # converters (outside the timed FINN path: FINN's estimate report does not include them)
        finn_dwc = {f"{c.after}->{c.before}": c.resources() for c in finn_dwcs(finn_model, part)}
        ours = {"->".join(rename[x] for x in k.split("->")): v for k, v in pred.dwc.items()}
        dwc_total += len(set(finn_dwc) | set(ours))
        dwc_equal += sum(finn_dwc.get(k) == v for k, v in ours.items())
        for n in cm.layers:
            if n in got:
                own_lut[layer_lut(getCustomOp(finn_model.get_node_from_name(rename[n])), 0.0)[1]] += 1
        layers_total += len(eq)
        layers_equal += sum(eq)
        foldings_equal += all(eq) and finn_dwc == ours

    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < warm_seconds:
        for f in foldings:
            cm.estimate(f)
        n += len(foldings)
    warm = (time.perf_counter() - t0) / n

    t0 = time.perf_counter()
    n_options = sum(sum(1 for _ in cm.options(layer, allow_uram=True)) for layer in cm.layers)
    table_s = time.perf_counter() - t0

    finn_med = statistics.median(finn_times)
    row = {
        "case": label, "target": target_name, "part": part, "layers": len(cm.layers),
        "finn_seconds_per_eval_median": finn_med, "finn_evals": len(finn_times),
        "cost_model_init_seconds": init_s,
        "cold_seconds_per_eval_median": statistics.median(cold),
        "warm_seconds_per_eval": warm, "warm_evals_per_s": 1.0 / warm,
        "speedup_warm": finn_med / warm, "speedup_cold": finn_med / statistics.median(cold),
        "table_all_legal_settings": n_options, "table_seconds": table_s,
        "agreement": {"layers_compared": layers_total, "layers_exact": layers_equal, "converters_compared": dwc_total, "converters_exact": dwc_equal,
                      "foldings_exact": foldings_equal, "foldings": len(foldings),
                      "lut_basis": dict(sorted(own_lut.items()))},
    }
    print(f"{label}: FINN {finn_med * 1e3:.1f} ms/eval, cost model warm {warm * 1e6:.1f} us/eval "
          f"({1 / warm:,.0f}/s, x{row['speedup_warm']:,.0f}), cold {statistics.median(cold) * 1e3:.2f} ms "
          f"(x{row['speedup_cold']:,.0f}); exact {layers_equal}/{layers_total} layers, {dwc_equal}/{dwc_total} converters")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "cost_model.json")
    ap.add_argument("--foldings", type=int, default=20, help="random foldings per network evaluated by FINN")
    ap.add_argument("--warm-seconds", type=float, default=2.0)
    args = ap.parse_args()
    args.out = result_path(args, "cost_model.json")
    _finn_compat.quiet_finn_logging()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_case(*case, Path(tmp), args.foldings, args.warm_seconds) for case in CASES]
    write_results(args.out, {
        "benchmark": "cost_model",
        "what": "evaluations/s of CostModel.estimate vs FINN (re-specialization where variants change + ApplyConfig + step_minimize_bit_width + res_estimation + exp_cycles_per_layer) on random legal foldings; exact per-layer agreement (LUTs: FINN's, or qflow's own count of the layer FINN built where FINN's is 0 by construction; counted in lut_basis), and agreement of the data-width converters with FINN's InsertDWC",
        "goal": "speedup >= 1000x, 100% exact agreement",
        "rows": rows,
    })


if __name__ == "__main__":
    main()
