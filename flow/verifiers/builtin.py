"""The verifiers a build runs, in order, and their build steps.

Adding a verifier: its module (a :class:`~flow.verifiers.registry.Verifier`), and one line in
:data:`VERIFIERS`. The default flow runs every verifier's step, each when it is enabled, and
the reports show every verifier's section as the verifier says (:func:`view_of`).

>>> [v.name for v in VERIFIERS], [s.name for s in STEPS]
(['verify', 'rtlsim'], ['inputs', 'verify', 'rtlsim'])
"""

from __future__ import annotations

from flow.core.pipeline import StepSpec
from flow.verifiers.python import PythonVerifier
from flow.verifiers.registry import Verifier, inputs_step, verifier_step
from flow.verifiers.rtlsim import RtlsimVerifier
from flow.verifiers.section import SectionView

VERIFIERS: tuple[Verifier, ...] = (
    PythonVerifier(),
    RtlsimVerifier(),
)

#: Random inputs (when none were given), then every verifier.
STEPS: tuple[StepSpec, ...] = (inputs_step(VERIFIERS), *(verifier_step(v) for v in VERIFIERS))
#: Files the verifiers write at the top of the output folder.
FILES: tuple[str, ...] = tuple(f for v in VERIFIERS for f in v.files)


def view_of(name: str) -> SectionView:
    """How the section of the verifier ``name`` is shown: its own view, or one line per key for a verifier not in :data:`VERIFIERS`.

    >>> view_of("rtlsim").title, view_of("parity").report_key
    ('RTL simulation', None)
    """
    for v in VERIFIERS:
        if v.name == name:
            return v
    view = SectionView()
    view.name = name
    return view
