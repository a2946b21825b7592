"""The build's step registry, assembled from the steps each wing exports, and its named flows.

=============  ===================================================================================
flow           steps
=============  ===================================================================================
``compile``    QONNX in, a specialized dataflow partition out (``qonnx_to_finn`` .. ``specialize_layers``)
``estimate``   ``compile``, then ``fold``, ``minimize_bit_width``, ``design``, ``estimate``, ``report``
``default``    ``estimate`` with the verifiers (``inputs``, ``verify``, ``rtlsim``), ``codegen`` and ``bitfile``
               (each step runs when the build asks for it): ``qflow build``
``codegen``    ``estimate`` plus ``codegen`` (with ``--stage codegen``)
``bitfile``    ``estimate`` plus ``codegen`` and ``bitfile`` (with ``--stage bitfile``)
=============  ===================================================================================

>>> [s.name for s in REGISTRY.flow_steps("compile")][-1]
'specialize_layers'
>>> REGISTRY.get_step("streamline").produces.value
'streamlined'
"""

from __future__ import annotations

from collections.abc import Sequence

from flow.compile import codegen as _codegen
from flow.compile import steps as _compile
from flow.core.pipeline import StepRegistry, StepSpec
from flow.fold import step as _fold
from flow.report import step as _report
from flow.verifiers import builtin as _verifiers
from flow.verifiers.registry import Verifier, verifier_step

#: Import to the specialized design: the compiler's steps, then the folding wing's first (``specialize_layers``).
COMPILE_FLOW = (*(s.name for s in _compile.STEPS), _fold.STEPS[0].name)
_FOLDED = (*(s.name for s in _compile.STEPS), *(s.name for s in _fold.STEPS))
_VERIFY = tuple(s.name for s in _verifiers.STEPS)

REGISTRY = StepRegistry(
    steps=(*_compile.STEPS, *_fold.STEPS, *_verifiers.STEPS, *_codegen.STEPS, *_report.STEPS),
    flows={
        "compile": COMPILE_FLOW,
        "estimate": (*_FOLDED, "report"),
        "default": (*_FOLDED, *_VERIFY, "codegen", "bitfile", "report"),
        "codegen": (*_FOLDED, *_VERIFY, "codegen", "report"),
        "bitfile": (*_FOLDED, *_VERIFY, "codegen", "bitfile", "report"),
    },
)
#: Files the verifiers write at the top of the output folder.
VERIFIER_FILES = _verifiers.FILES


def register_step(spec: StepSpec) -> StepSpec:
    """Add a step to the build's registry (a name registers once)."""
    return REGISTRY.register_step(spec)


def register_flow(name: str, steps: Sequence[str]) -> None:
    """Register a named flow: a tuple of registered step names."""
    REGISTRY.register_flow(name, steps)


def register_verifier(v: Verifier) -> StepSpec:
    """Add a verifier: its build step, named as it is (put it in a flow or ``BuildConfig.steps``)."""
    return REGISTRY.register_step(verifier_step(v))


def get_step(name: str) -> StepSpec:
    return REGISTRY.get_step(name)
