"""finn-examples' networks (models.catalogue) folded by qflow --auto, by FINN's SetFolding and by finn-examples' own hand.

    python benchmarks/finn_examples.py [--networks NAME ...] [--skip-large] [--all-boards] [--skip-sweep]
        [--finn-examples DIR] [--work DIR] [--samples N] [--update | --out FILE]
    python benchmarks/finn_examples.py --table [--out FILE]

Each network is exported once as the conformance corpus does (``tests.corpus.cases``, case
``fe_<name>``) and measured on its finn-examples board (``--all-boards``: every board), at
finn-examples' clock, against the same board caps:

* **qflow --auto**: ``qflow build --auto`` in a child process: max cycles, FPS, LUT (with the
  data-width converters), BRAM18, URAM, DSP, whether it fits and verifies, and any
  cycle-bound field report.json carries.
* **FINN SetFolding**: the best fitting design over a target_fps sweep with bisection at the fit
  boundary (``benchmarks/folding_optimizer.py``'s sweep) on the same specialized graph.
* **finn-examples' folding**: its specialize-layers and folding configs applied by FINN
  (``step_specialize_layers``, ``step_apply_folding_config``) to qflow's dataflow partition,
  entries whose layer names are in that graph (the others are counted and listed; FIFO and
  data-width-converter entries belong to FINN's later stitching steps), then FINN's rules,
  bit-width minimization and the same estimates.
* **FINN's builder** with finn-examples' build options and step list (estimate steps only:
  nothing after them runs without Vivado); custom steps are imported from the network's
  ``custom_steps.py`` in the finn-examples checkout given with ``--finn-examples`` (a
  checkout, or a git directory whose ``HEAD`` is unpacked into ``--work``).

Every child's wall time and peak resident memory (``wait4``'s ``ru_maxrss``) are recorded.
Results go to ``--out`` (default: a scratch folder), to ``benchmarks/results/finn_examples.json``
only with ``--update``; rows of networks a run does not measure are kept from that file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _common import add_output_args, kept, result_path, stamp, write_results  # noqa: E402

FIFO_OPS = ("StreamingFIFO", "StreamingDataWidthConverter")


# ----------------------------------------------------------------------------- children


def run_child(cmd: list[str], log: Path, timeout: float) -> dict:
    """Run ``cmd``; its exit status, wall seconds, peak RSS (MiB) and last stdout line (JSON when it is)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    with open(log, "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env)
        deadline, status, usage = t0 + timeout, None, None
        while status is None:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
            elif time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
            else:
                time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(status)
    lines = log.read_text(errors="replace").strip().splitlines()
    errs = [s for s in log.with_suffix(".err").read_text(errors="replace").splitlines() if s.strip()]
    res = {"exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    try:
        res["result"] = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        res["result"] = None
    if proc.returncode != 0:
        res["error"] = (errs[-1] if errs else "no output")[:400] if proc.returncode > 0 else f"killed after {timeout:.0f} s"
    return res


def _setup_child():
    warnings.filterwarnings("ignore")
    from flow.compat.finn import build_steps, ensure_finn_settings, quiet_finn_logging

    quiet_finn_logging()
    return build_steps, ensure_finn_settings


def _board(net_name: str, board: str):
    from models.catalogue import example

    net = example(net_name)
    return net, next(b for b in net.boards if b.finn_board == board)


def _target(b):
    from hw_targets import load_target

    return load_target(b.target).with_clock(b.clock_mhz)


def _summary(e) -> dict:
    """A flow.fold.estimate.Estimates as the benchmark records designs."""
    conv = e.converter_totals
    return {"max_cycles": e.max_cycles, "throughput_fps": e.throughput_fps, "fits": e.fits, "over_budget": e.over_budget,
            "lut": round(e.totals["lut"] + conv["lut"]), "dwc_lut": round(conv["lut"]),
            **{k: round(e.totals[k] + conv[k]) for k in ("bram_18k", "uram", "dsp")}, "bottleneck": e.bottleneck}


def sweep_child(net_name: str, board: str, spec: Path, out: Path, bisect: int) -> dict:
    """FINN's SetFolding at its best fitting target_fps (folding_optimizer.py's sweep)."""
    build_steps, ensure = _setup_child()
    ensure(out / "finn_tmp")
    from folding_optimizer import setfolding_point, setfolding_sweep
    from qonnx.core.modelwrapper import ModelWrapper

    target = _target(_board(net_name, board)[1])
    model = ModelWrapper(str(spec))
    best = setfolding_sweep(model, target, out, bisect)
    if best["found"]:
        best |= _summary(setfolding_point(model, target, best["target_fps"], best["mvau_wwidth_max"], out))
    return best


def hand_child(net_name: str, board: str, partition: Path, out: Path, fe: Path) -> dict:
    """finn-examples' specialize and folding configs applied by FINN to qflow's dataflow partition."""
    build_steps, ensure = _setup_child()
    ensure(out / "finn_tmp")
    from qonnx.core.modelwrapper import ModelWrapper

    from flow.compat.finn_builder import finn_config
    from flow.core.pipeline import BuildContext
    from flow.fold.estimate import estimate
    from flow.core.config import build_config
    from flow.core.vocab import is_hw_node
    from flow.fold.rules import check_folding_rules

    _, b = _board(net_name, board)
    target, steps = _target(b), build_steps()
    model = ModelWrapper(str(partition))
    res: dict = {}
    files = {}
    for kind, rel in (("specialize", b.specialize), ("folding", b.folding)):
        cfg = json.loads((fe / rel).read_text()) if rel else {}
        entries = [k for k in cfg if k != "Defaults"]
        names = {n.name for n in model.graph.node if is_hw_node(n)}
        later = [k for k in entries if k.startswith(FIFO_OPS)]
        matched = [k for k in entries if k in names]
        res[kind] = {"entries": len(entries), "matched": len(matched), "fifo_dwc_entries": len(later),
                     "unmatched": sorted(set(entries) - set(matched) - set(later)),
                     "layers_not_named": sorted(names - set(matched))}
        files[kind] = out / f"{kind}.json"
        files[kind].write_text(json.dumps({"Defaults": cfg.get("Defaults", {}), **{k: cfg[k] for k in matched}}))
        if kind == "specialize":
            ctx = BuildContext(build_config(target=b.target, specialize_file=files[kind]), target, out)
            model = steps.step_specialize_layers(model, finn_config(ctx))
    ctx = BuildContext(build_config(target=b.target, folding_file=files["folding"]), target, out)
    fcfg = finn_config(ctx)
    Path(fcfg.output_dir, "report").mkdir(parents=True, exist_ok=True)
    model = steps.step_apply_folding_config(model, fcfg)
    try:
        check_folding_rules(model)
    except Exception as e:  # noqa: BLE001 - the hand folding does not fit this graph: say why
        return res | {"applies": False, "error": " ".join(str(e).split())[:300]}
    return res | {"applies": True} | _summary(estimate(steps.step_minimize_bit_width(model, fcfg), target))


def finn_child(net_name: str, board: str, model_path: Path, out: Path, fe: Path | None) -> dict:
    """FINN's own builder with finn-examples' options and step list, up to its estimate reports."""
    build_steps, ensure = _setup_child()
    ensure(out / "finn_tmp")
    build_steps()
    from conformance import _finn_summary
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType, estimate_only_dataflow_steps
    from finn.builder.build_dataflow_steps import build_dataflow_step_lookup
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.insert_topk import InsertTopK
    from qonnx.util.cleanup import cleanup_model

    net, b = _board(net_name, board)
    needs_fe = b.folding or b.specialize or any(s not in build_dataflow_step_lookup for s in b.steps or ())
    if needs_fe and fe is None:
        return {"ran": False, "reason": "needs finn-examples' configs and custom steps: pass --finn-examples"}
    steps: list = list(estimate_only_dataflow_steps)
    if b.steps is not None:
        spec = importlib.util.spec_from_file_location("finn_examples_custom_steps", fe / net.finn_examples_dir / "custom_steps.py")
        custom = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(custom)
        steps = ["step_qonnx_to_finn", *(s if s in build_dataflow_step_lookup else getattr(custom, s) for s in b.steps)]
    m = cleanup_model(ModelWrapper(str(model_path)))
    if net.input_dtype:
        m.set_tensor_datatype(m.graph.input[0].name, DataType[net.input_dtype])
    if net.output.startswith("top"):  # finn-examples' model files end in TopK, as its READMEs say
        m = m.transform(InsertTopK(k=int(net.output[3:])))
    m.save(str(out / "finn_input.onnx"))
    opt = {k: v for k, v in (("target_fps", b.target_fps), ("mvau_wwidth_max", b.mvau_wwidth_max)) if v is not None}
    cfg = DataflowBuildConfig(
        output_dir=str(out / "build"), synth_clk_period_ns=b.clock_ns, fpga_part=_target(b).part, steps=steps,
        folding_config_file=str(fe / b.folding) if b.folding else None,
        specialize_layers_config_file=str(fe / b.specialize) if b.specialize else None,
        standalone_thresholds=b.standalone_thresholds, generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS], **opt)
    t0 = time.perf_counter()
    try:
        build_dataflow_cfg(str(out / "finn_input.onnx"), cfg)
    except Exception:  # noqa: BLE001, S110 - its last step needs XILINX_VIVADO; the reports decide
        pass
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    res = {"ran": True} | _finn_summary(out / "build", time.perf_counter() - t0)
    report = out / "build" / "report" / "estimate_layer_resources.json"
    if res["builds"]:
        total = json.loads(report.read_text())["total"]
        res |= {k: round(float(total.get(f, 0))) for k, f in (("bram_18k", "BRAM_18K"), ("uram", "URAM"), ("dsp", "DSP"))}
        res["throughput_fps"] = b.clock_mhz * 1e6 / res["max_cycles"]
        cycles = json.loads((report.parent / "estimate_layer_cycles.json").read_text())
        res["bottleneck"] = max(cycles, key=cycles.get)
    return res


# ----------------------------------------------------------------------------- orchestration


def finn_examples_dir(given: Path | None, work: Path) -> Path | None:
    """A finn-examples checkout: ``given`` itself, or its ``HEAD`` unpacked into ``work`` when it is a git directory."""
    if given is None or (given / "build").is_dir():
        return given
    dest = work / "finn-examples"
    if not (dest / "build").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        tar = subprocess.run(["git", "--git-dir", str(given), "archive", "HEAD", "build"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


def _checkpoint(build: Path, step: str) -> Path | None:
    found = sorted((build / "checkpoints").glob(f"*_{step}.onnx"))
    return found[-1] if found else None


def qflow_auto(model: Path, net, b, out: Path, samples: int, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "flow", "build", str(model), "--target", b.target, "--clock-mhz", str(b.clock_mhz),
           "--auto", "--samples", str(samples), "--out", str(out)] + (["--input-dtype", net.input_dtype] if net.input_dtype else [])
    res = run_child(cmd, out.parent / "auto.log", timeout)
    report = out / "report.json"
    if res["exit"] in (0, 3) and report.is_file():
        r = json.loads(report.read_text())
        dwc = r.get("data_width_converters", {}).get("totals", {})
        res |= {"max_cycles": r["max_cycles"], "throughput_fps": r["throughput_fps"], "fits": r["fits"],
                "verified": r["verification"]["passed"], "lut": round(r["totals"]["lut"] + dwc.get("lut", 0)),
                "dwc_lut": round(dwc.get("lut", 0)), **{k: round(r["totals"][k] + dwc.get(k, 0)) for k in ("bram_18k", "uram", "dsp")},
                "layers": len(r["layers"]), "cycle_bound": {k: v for k, v in r.items() if "bound" in k}}
    return res


def measure(net, b, model: Path, work: Path, fe: Path | None, a) -> dict:
    me, row = [sys.executable, __file__, "--child"], {"network": net.name, "board": b.finn_board, "target": b.target, "clock_mhz": b.clock_mhz}
    auto_dir = work / "auto"
    row["qflow_auto"] = qflow_auto(model, net, b, auto_dir, a.samples, a.timeout)
    spec, part = _checkpoint(auto_dir, "specialize_layers"), _checkpoint(auto_dir, "create_dataflow_partition")
    if a.skip_sweep:
        row["setfolding"] = {"ran": False, "reason": "--skip-sweep"}
    elif spec is None:
        row["setfolding"] = {"ran": False, "reason": "qflow's build stopped before specialize_layers"}
    else:
        row["setfolding"] = run_child([*me, "sweep", net.name, b.finn_board, str(spec), str(work / "sweep"), str(a.bisect)],
                                      work / "sweep.log", a.timeout)
    if net.finn_examples_dir is None:
        row["hand"] = {"ran": False, "reason": "not in finn-examples: no folding config of its own"}
    elif b.folding is None:
        row["hand"] = {"ran": False, "reason": "finn-examples folds this network with target_fps, not a folding config"}
    elif fe is None:
        row["hand"] = {"ran": False, "reason": "needs finn-examples' folding config: pass --finn-examples"}
    else:
        if b.standalone_thresholds:  # finn-examples' graph keeps thresholds as layers: so must the partition
            base = work / "standalone"
            run_child([sys.executable, "-m", "flow", "build", str(model), "--target", b.target, "--standalone-thresholds",
                       "--samples", "0", "--out", str(base)] + (["--input-dtype", net.input_dtype] if net.input_dtype else []),
                      work / "standalone.log", a.timeout)
            part = _checkpoint(base, "create_dataflow_partition")
        row["hand"] = ({"ran": False, "reason": "qflow's build stopped before create_dataflow_partition"} if part is None else
                       run_child([*me, "hand", net.name, b.finn_board, str(part), str(work / "hand"), str(fe)], work / "hand.log", a.timeout))
    row["finn_builder"] = run_child([*me, "finn", net.name, b.finn_board, str(model), str(work / "finn"), str(fe or "")],
                                    work / "finn.log", a.timeout)
    auto, hand = row["qflow_auto"], (row["hand"].get("result") or {})
    if auto.get("throughput_fps") and hand.get("throughput_fps"):
        row["auto_over_hand"] = auto["throughput_fps"] / hand["throughput_fps"]
    return row


def _num(v, fmt="{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def table(payload: dict) -> str:
    """The README table: every number comes from ``payload``."""
    lines = ["| network | board | qflow --auto FPS | LUT (DWC) | BRAM18 | URAM | DSP | fits, verified | SetFolding best FPS | "
             "finn-examples folding FPS (names matched) | FINN builder FPS | --auto / hand | --auto bound fraction | qflow s, MiB | FINN s, MiB |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in payload["rows"]:
        q, sf, h, f = r["qflow_auto"], r["setfolding"].get("result") or {}, r["hand"].get("result") or {}, r["finn_builder"].get("result") or {}
        why = q.get("error", "").removeprefix("qflow: error: ")
        state = f"{'yes' if q.get('fits') else 'no'}, {'yes' if q.get('verified') else 'no'}" if "fits" in q else f"no: {why[:90]}{'...' if len(why) > 90 else ''}"
        names = f" ({h['folding']['matched']}/{h['folding']['entries'] - h['folding']['fifo_dwc_entries']})" if "folding" in h else ""
        hand = (_num(h.get("throughput_fps")) + ("" if h.get("fits", True) else " (over caps)")) if h.get("applies") else (
            "does not apply" if "applies" in h else "-")
        lines.append(
            f"| {r['network']} | {r['board']} | {_num(q.get('throughput_fps'))} | {_num(q.get('lut'))} ({_num(q.get('dwc_lut'))}) | "
            f"{_num(q.get('bram_18k'))} | {_num(q.get('uram'))} | {_num(q.get('dsp'))} | {state} | {_num(sf.get('throughput_fps'))} | "
            f"{hand}{names} | {_num(f.get('throughput_fps'))} | {_num(r.get('auto_over_hand'), '{:.2f}')} | "
            f"{_num((q.get('cycle_bound', {}).get('cycle_bound') or {}).get('fraction'), '{:.2f}')} | "
            f"{_num(q.get('seconds'))}, {_num(q.get('peak_rss_mb'))} | {_num(r['finn_builder'].get('seconds'))}, {_num(r['finn_builder'].get('peak_rss_mb'))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", nargs="*", default=None, help="catalogue names (default: all)")
    ap.add_argument("--skip-large", action="store_true", help="leave out the 224x224-class networks")
    ap.add_argument("--all-boards", action="store_true", help="every finn-examples board of each network, not only its first")
    ap.add_argument("--skip-sweep", action="store_true", help="no SetFolding sweep")
    ap.add_argument("--bisect", type=int, default=6, help="bisection steps at the SetFolding fit boundary")
    ap.add_argument("--finn-examples", type=Path, default=None, help="a finn-examples checkout or git directory")
    ap.add_argument("--work", type=Path, default=None, help="keep exports and builds here (default: a temporary folder)")
    ap.add_argument("--samples", type=int, default=20, help="qflow verification samples per build")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per child process")
    add_output_args(ap, "finn_examples.json")
    ap.add_argument("--table", action="store_true", help="print the README table of --out (or the committed results with --update) and exit")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    out = result_path(a, "finn_examples.json")
    if a.child:
        kind, name, board, *rest = a.child
        fn = {"sweep": lambda: sweep_child(name, board, Path(rest[0]), Path(rest[1]), int(rest[2])),
              "hand": lambda: hand_child(name, board, Path(rest[0]), Path(rest[1]), Path(rest[2])),
              "finn": lambda: finn_child(name, board, Path(rest[0]), Path(rest[1]), Path(rest[2]) if rest[2] else None)}[kind]
        Path(rest[1]).mkdir(parents=True, exist_ok=True)
        print(json.dumps(fn()), flush=True)
        return
    if a.table:
        print(table(json.loads(out.read_text())))
        return
    from models.catalogue import NETWORKS, example
    from tests.corpus.cases import BY_NAME, materialize

    nets = [example(n) for n in a.networks] if a.networks else list(NETWORKS.values())
    nets = [n for n in nets if not (a.skip_large and n.large)]
    rows, t0 = [], time.perf_counter()
    old = json.loads(out.read_text()) if out.is_file() else {}
    previous = [kept(r, old) for r in old.get("rows", [])]

    def save() -> dict:
        """Write every row measured so far, keeping the earlier rows of networks this run has not measured."""
        measured = {(r["network"], r["board"]) for r in rows}
        payload = {"what": "finn-examples networks: qflow --auto vs FINN SetFolding (best fitting target_fps) vs finn-examples' "
                           "folding configs applied by FINN vs FINN's builder with finn-examples' steps; FINN estimates, same caps",
                   "goal": "qflow --auto FPS >= finn-examples' hand folding FPS on every network, within the board's caps",
                   "finn_examples": str(a.finn_examples) if a.finn_examples else None, "samples": a.samples,
                   "seconds_total": round(time.perf_counter() - t0),
                   "rows": [r for r in previous if (r["network"], r["board"]) not in measured] + rows}
        write_results(out, payload)
        return payload

    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        fe = finn_examples_dir(a.finn_examples, work)
        for net in nets:
            model = materialize(BY_NAME["fe_" + net.name.replace("-", "_")], work / "models" / net.name)
            for b in net.boards if a.all_boards else net.boards[:1]:
                row = measure(net, b, model, work / "runs" / f"{net.name}-{b.target}", fe, a)
                rows.append(stamp(row))
                save()  # a run stopped part-way keeps what it measured
                print(table({"rows": [row]}).splitlines()[-1], flush=True)
    payload = save()
    print(f"results: {out}\n" + table(payload))


if __name__ == "__main__":
    main()
