"""Every ``>>>`` example in flow/, models/ and hw_targets/ runs (or is marked ``# doctest: +SKIP``)."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Modules with examples; ``flow.__main__`` runs the CLI on import and has none.
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for pkg in ("flow", "models", "hw_targets")
    for p in (ROOT / pkg).rglob("*.py")
    if p.name != "__main__.py" and ">>>" in p.read_text()
)


def test_the_examples_are_found():
    assert {"flow.core.pipeline", "flow.builder.registry", "flow.verifiers.registry", "hw_targets"} <= set(MODULES)
    assert len(MODULES) > 50


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes, writes here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (see the output above)"
