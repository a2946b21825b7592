"""Conformance: every corpus model (tests/corpus) builds and verifies with --fps and with --auto, and
--auto is never slower than --fps where both fit the board.

With ``--fps`` the build is verified on the case's own held-out inputs against the PyTorch
network itself (its outputs, and a sample that differs run again with its quantizers'
inputs recorded: :mod:`flow.sim.forced`), with ``--auto`` on random inputs. Exports are
made once per session, and each build once. Each case builds for its own board. The larger
networks (SFC, LFC, CNV, the MobileNet slice) run with ``pytest -m slow``; finn-examples'
full-size networks (224x224 inputs, minutes and gigabytes each) with ``pytest -m large``.

The speed check puts ``--auto`` against FINN's SetFolding at three frame rates: the
conformance build's 10,000 FPS, 1.5x what ``--auto`` reached (SetFolding asked to beat it),
and 10^9 FPS (every layer as parallel as SetFolding makes it); each is ``--fps``'s own fold
and bit-width steps on the same specialized design, estimated by FINN's analyses.
"""

from pathlib import Path

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper

from flow.builder.pipeline import BuildResult, build
from flow.builder.registry import get_step
from flow.core.config import build_config
from flow.core.pipeline import BuildContext
from flow.fold.estimate import estimate
from hw_targets import load_target
from tests.corpus.cases import CASES, Case, materialize, reference

CONFORMANCE_FPS = 10_000


@pytest.fixture(scope="session")
def corpus_builds(tmp_path_factory):
    """``get(case, mode)``: the case's --fps or --auto build, made once per session."""
    root = tmp_path_factory.mktemp("corpus")
    cache: dict[tuple[str, str], BuildResult] = {}

    def get(case: Case, mode: str) -> BuildResult:
        if (case.name, mode) not in cache:
            path = materialize(case, root / "models" / case.name)
            out = root / f"{case.name}-{mode}"
            if mode == "fps":
                cfg = build_config(target=case.target, input_dtype=case.input_dtype, target_fps=CONFORMANCE_FPS)
                x = np.load(path.parent / "inputs.npy")
                cache[case.name, mode] = build(path, cfg, out, verify_inputs=x, reference=reference(case, path.parent))
            else:
                cache[case.name, mode] = build(path, build_config(target=case.target, input_dtype=case.input_dtype, auto=True, verify_samples=50), out)
        return cache[case.name, mode]

    return get


def _marks(case: Case):
    return [pytest.mark.large] if case.large else [pytest.mark.slow] if case.slow else []


def _params():
    for case in CASES:
        for mode in ("fps", "auto"):
            yield pytest.param(case, mode, id=f"{case.name}-{mode}", marks=_marks(case))


@pytest.mark.parametrize("case, mode", _params())
def test_corpus_model_builds_and_verifies(case, mode, corpus_builds):
    r = corpus_builds(case, mode).report
    if mode == "fps":
        assert r.verification.stages[0].reference == "pytorch"
    else:
        assert r.fits and r.cycle_bound is not None and 0 < r.cycle_bound.fraction <= 1.0
    assert r.verification.passed and r.max_cycles > 0
    assert [s.name for s in r.verification.stages][-2:] == ["hw", "specialized"]
    if case.head == "none":  # a value or an image, not a choice among classes
        assert not any(layer.op_type.startswith("LabelSelect") for layer in r.layers)


def setfolding(spec: Path, target: str, target_fps: int, input_dtype: str | None, out: Path):
    """FINN's estimates of ``--fps target_fps``'s folding of the specialized design ``spec`` (its fold and bit-width steps)."""
    ctx = BuildContext(build_config(target=target, input_dtype=input_dtype, target_fps=target_fps), load_target(target), out)
    model = ModelWrapper(str(spec))
    for step in ("fold", "minimize_bit_width"):
        model = get_step(step)(model, ctx)
    return estimate(model, ctx.target)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=_marks(c)) for c in CASES])
def test_auto_is_never_slower_than_fps(case, corpus_builds, tmp_path):
    auto = corpus_builds(case, "auto")
    fps = corpus_builds(case, "fps").report
    assert auto.report.fits
    spec = auto.checkpoints["specialize_layers"]
    rivals = {CONFORMANCE_FPS: (fps.max_cycles, fps.fits)}
    for target_fps in (int(1.5 * auto.report.throughput_fps) + 1, 10**9):
        est = setfolding(spec, case.target, target_fps, case.input_dtype, tmp_path / str(target_fps))
        rivals[target_fps] = (est.max_cycles, est.fits)
    slower = {f: c for f, (c, fits) in rivals.items() if fits and c < auto.report.max_cycles}
    assert not slower, f"--auto {auto.report.max_cycles} cycles/frame; --fps that fit with fewer: {slower}"
