"""Workarounds for onnxruntime 1.25 behaviour, each with its reason (tests/compat/test_onnxruntime.py)."""

from __future__ import annotations

import onnxruntime

#: onnxruntime's severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
ERROR = 3


def quiet_onnxruntime() -> None:
    """Keep onnxruntime's own log lines (ANSI-coloured, written by its C++ logger straight to the
    process's stderr) off the console.

    Reason: qonnx and FINN execute graphs through onnxruntime sessions; for an old or odd model
    (opset 1, for example) onnxruntime prints warnings before qflow's one error line, which
    then no longer stands alone. What fails is reported by qflow in its own words. Called once
    by the command-line entry point (an application-level choice, not a library side effect).
    """
    onnxruntime.set_default_logger_severity(ERROR)
