"""Conformance: every corpus model (tests/corpus) builds and verifies with --fps and with --auto.

With ``--fps`` the build is verified on the case's own held-out inputs against the PyTorch
network's outputs (``--reference-outputs``), with ``--auto`` on random inputs. Exports are
made once per session; the large networks (SFC, LFC, CNV, the MobileNet slice, finn-examples'
224x224 networks) run with ``pytest -m slow``. Each case builds for its own board. A case with a
``known_failure`` is expected to stop with that error class while its fix is pending; once it
builds, it must verify like any other.
"""

from pathlib import Path

import numpy as np
import pytest

from flow.builder.pipeline import build
from flow.core.config import build_config
from tests.corpus.cases import CASES, materialize


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


def _params():
    for case in CASES:
        marks = [pytest.mark.slow] if case.slow else []
        if case.known_failure:
            marks.append(pytest.mark.xfail(raises=case.failure, strict=False, reason=case.known_failure))
        for mode in ("fps", "auto"):
            yield pytest.param(case, mode, id=f"{case.name}-{mode}", marks=marks)


@pytest.mark.parametrize("case, mode", _params())
def test_corpus_model_builds_and_verifies(case, mode, corpus_dir, tmp_path):
    path = materialize(case, corpus_dir / case.name)
    if mode == "fps":
        cfg = build_config(target=case.target, input_dtype=case.input_dtype, target_fps=10_000)
        x, y = np.load(path.parent / "inputs.npy"), np.load(path.parent / "torch_outputs.npy")
        r = build(path, cfg, tmp_path, verify_inputs=x, reference_outputs=y).report
        assert r.verification.stages[0].reference == "pytorch"
    else:
        r = build(path, build_config(target=case.target, input_dtype=case.input_dtype, auto=True, verify_samples=50), tmp_path).report
        assert r.fits
    assert r.verification.passed and r.max_cycles > 0
    assert [s.name for s in r.verification.stages][-2:] == ["hw", "specialized"]
    if case.head == "none":  # a value or an image, not a choice among classes
        assert not any(layer.op_type.startswith("LabelSelect") for layer in r.layers)
