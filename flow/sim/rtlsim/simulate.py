"""Run a built model on packed stream words: outputs, cycles, latency, FIFO peaks, deadlocks.

The model is a plain executable (:mod:`flow.sim.rtlsim.cache`); a run folder holds its
inputs (``in<k>.hex``), the nodes' memory files (copied from FINN's codegen folders, so a
test can corrupt one) and what it writes back. A deadlock or a crash in the design never
hangs Python: the testbench stops after ``idle`` cycles without any transfer (status
``deadlock``) or at ``maxcycles``, and the process has a wall-clock limit on top.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flow.sim.rtlsim.cache import Model
from flow.sim.rtlsim.stitch import Design

WALL_TIMEOUT_S = 900


class SimulationError(RuntimeError):
    """The model process failed (crashed, stopped on an RTL assertion, or wrote no statistics).

    ``layer`` is the design node whose RTL asserted, when the model said so.
    """

    def __init__(self, message: str, layer: str | None = None):
        super().__init__(message)
        self.layer = layer


#: Verilator's report of a failed SystemVerilog assertion: file, line, instance path, message.
_ASSERTION = re.compile(r"%Error: (?:\S*/)?([\w.]+):(\d+): Assertion failed in (\S+?):? (?:\S+: )?(.*?)(?= %Error|$)")


def assertion_failure(output: str) -> tuple[str | None, str] | None:
    """(layer, one-line description) of the first RTL assertion a model reported, if any.

    The layer is the stitched design's instance under the top (``<node>_i``) named in the
    instance path (None when the path names none).
    """
    m = _ASSERTION.search(" ".join(output.split()))
    if m is None:
        return None
    src, line, path, msg = m.groups()
    inst = next((p for p in path.split(".") if p.endswith("_i")), None)
    layer = inst[:-2] if inst else None
    return layer, f"RTL assertion in {layer or path} ({src}:{line}): {msg.strip().rstrip('.')}"


@dataclass
class Drive:
    """How the testbench drives a run (defaults: inputs always valid, outputs always ready)."""

    pin: int = 100  # percent of cycles an input offers a word
    pout: int = 100  # percent of cycles an output is ready
    seed: int = 1
    pace: int = 0  # > 0: one frame every ``pace`` cycles per input
    idle: int = 10_000  # deadlock bound: cycles without any transfer
    maxcycles: int = 50_000_000


@dataclass
class SimResult:
    """What one run produced and measured."""

    status: str  # ok | deadlock | maxcycles
    cycles: int
    outputs: list[list[int]]  # per output stream, the words
    out_cycles: list[list[int]]  # the cycle each of those words was taken
    in_cycles: list[list[int]]  # the cycle each input word was accepted
    transfers: dict[str, int]  # probe label -> words transferred
    peaks: list[int]  # per monitor, in the order given: peak occupancy
    wall_seconds: float
    idle: int = 0
    first: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)

    def stopped_at(self) -> str:
        """Where data stopped moving (for a deadlock message): words per probe."""
        return ", ".join(f"{k}: {n}" for k, n in self.transfers.items())


def _stats(text: str, labels: list[str]) -> tuple[str, int, dict, dict, dict, list[int]]:
    status, cycles, transfers, first, last, peaks = "?", 0, {}, {}, {}, []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "status":
            status = parts[1]
        elif parts[0] == "cycles":
            cycles = int(parts[1])
        elif parts[0] == "probe":
            lab = labels[int(parts[1])]
            transfers[lab], first[lab], last[lab] = int(parts[2]), int(parts[3]), int(parts[4])
        elif parts[0] == "peak":
            peaks.append(int(parts[2]))
    return status, cycles, transfers, first, last, peaks


def run(model: Model, design: Design, inputs: Sequence[Sequence[int]], expect: Sequence[int], *,
        words_per_frame: Sequence[int] = (), monitors: Sequence[tuple[int, int]] = (),
        memfiles: Mapping[str, Path] | None = None, drive: Drive = Drive()) -> SimResult:
    """Stream ``inputs`` (packed words per input stream) through ``model`` until ``expect`` words per output arrived."""
    with tempfile.TemporaryDirectory(prefix="qflow-rtlsim-run-") as tmp:
        rundir = Path(tmp)
        for k, words in enumerate(inputs):
            (rundir / f"in{k}.hex").write_text("".join(f"{w:x}\n" for w in words))
        (rundir / "monitors.txt").write_text("".join(f"{a} {b}\n" for a, b in monitors))
        for name, src in (design.memfiles if memfiles is None else memfiles).items():
            shutil.copyfile(src, rundir / name)
        args = [str(model.exe), "--idle", str(drive.idle), "--maxcycles", str(drive.maxcycles), "--pin", str(drive.pin),
                "--pout", str(drive.pout), "--seed", str(drive.seed), "--pace", str(drive.pace)]
        for n in expect:
            args += ["--expect", str(n)]
        for n in words_per_frame if drive.pace > 0 else ():
            args += ["--wpf", str(max(1, n))]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(args, cwd=rundir, capture_output=True, text=True, timeout=WALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SimulationError(f"the simulation ran longer than {WALL_TIMEOUT_S} s") from None
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not (rundir / "stats.txt").is_file():
            said = " ".join(f"{proc.stdout.strip()[-2000:]} {proc.stderr.strip()[-600:]}".split())
            failed = assertion_failure(said)
            if failed is not None:
                raise SimulationError(failed[1], layer=failed[0])
            raise SimulationError(f"the simulation exited with {proc.returncode}: {said[-600:] or 'no message'}")
        status, cycles, transfers, first, last, peaks = _stats((rundir / "stats.txt").read_text(), design.probe_labels())
        outs, ocyc = [], []
        for k in range(len(design.outputs)):
            rows = [ln.split() for ln in (rundir / f"out{k}.txt").read_text().splitlines() if ln]
            ocyc.append([int(c) for c, _ in rows])
            outs.append([int(h, 16) for _, h in rows])
        icyc = [[int(x) for x in (rundir / f"in{k}.acc").read_text().split()] for k in range(len(design.inputs))]
    return SimResult(status, cycles, outs, ocyc, icyc, transfers, peaks, wall, drive.idle, first, last)


def frame_timing(res: SimResult, out_words_per_frame: int) -> tuple[float | None, int | None]:
    """Steady-state cycles per frame and the first frame's latency, from per-word cycle stamps.

    Cycles per frame: the spacing of frame completions (the last output word of each frame),
    averaged over frames 2..N, so the pipeline's fill is left out (None for one frame).
    Latency: from the first input word of frame 0 accepted to its last output word, inclusive.
    """
    oc = res.out_cycles[0] if res.out_cycles else []
    n = len(oc) // max(1, out_words_per_frame)
    ends = [oc[(f + 1) * out_words_per_frame - 1] for f in range(n)]
    per_frame = (ends[-1] - ends[0]) / (n - 1) if n > 1 else None
    starts = [c[0] for c in res.in_cycles if c]
    latency = ends[0] - min(starts) + 1 if n and starts else None
    return per_frame, latency
