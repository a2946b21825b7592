"""Workarounds for Brevitas 0.13.4 behaviour, each with its reason (tests/compat/test_brevitas.py)."""

from __future__ import annotations

import warnings


def hide_optional_kernel_warning() -> None:
    """Hide Brevitas' import-time warning that the optional ``fast_hadamard_transform`` kernel is missing.

    Reason: Brevitas warns on import when that CUDA kernel package is absent; qflow uses no
    Hadamard rotations, so the warning is noise on every ``qflow`` command. Called once by the
    command-line entry point (an application-level choice, not a library side effect).
    """
    warnings.filterwarnings("ignore", message="fast_hadamard_transform")
