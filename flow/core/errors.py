"""The typed errors qflow raises for bad input.

Every error carries a message that names what is wrong and how to fix it. The CLI
prints ``str(error)`` as one line and exits non-zero; nothing else is shown.

>>> from flow.core.errors import UnknownTargetError
>>> str(UnknownTargetError("no board 'pynq-z9'; run `qflow targets` to list boards"))
"no board 'pynq-z9'; run `qflow targets` to list boards"
"""

from __future__ import annotations


class QflowError(Exception):
    """Base class of every error qflow reports to users."""

    exit_code = 2


class ConfigError(QflowError, ValueError):
    """A recipe, target or option value is invalid."""


class UnknownTargetError(ConfigError):
    """The named board has no TOML file in hw_targets/."""


class UnknownModelError(ConfigError):
    """A recipe names a model that is not registered in models/."""


class DataMissingError(QflowError, FileNotFoundError):
    """A dataset is not on disk; the message names the command that fetches it."""


class ModelFileError(QflowError, ValueError):
    """The input file is not a readable ONNX model, or it is unsafe to load."""


class UnquantizedModelError(QflowError, ValueError):
    """The model has no quantization nodes (Quant/BipolarQuant): FINN needs a QONNX model."""


class UnsupportedOpError(QflowError, ValueError):
    """A node cannot become a hardware layer; the message names the node and op."""


class StructureError(UnsupportedOpError):
    """A graph structure (join, pool, conv) cannot become integer hardware exactly; the message names
    each offending node, its op, its neighbours, why, and the fix."""


class CompileError(QflowError, ValueError):
    """A compiler step (FINN's or qflow's) could not process the model; the message names the step."""


class InputDatatypeError(QflowError, ValueError):
    """The graph input needs an integer datatype (pass --input-dtype)."""


class FoldingError(QflowError, ValueError):
    """A folding configuration names missing nodes or breaks FINN's folding rules."""


class VerificationError(QflowError):
    """A stage of the flow computes something different from the trained network."""

    exit_code = 3


class OverBudgetError(QflowError):
    """The design exceeds the target's utilisation caps and --strict was given."""

    exit_code = 4


class InfeasibleDesignError(QflowError):
    """No folding fits the target's caps (``--auto``); the message names the layer and resource."""

    exit_code = 4


class ToolMissingError(QflowError):
    """A stage needs a vendor tool (Vivado/Vitis) that is not on PATH."""

    exit_code = 5


class BitfileSkipped(ToolMissingError):
    """``--stage bitfile`` without Vivado: everything before the bitfile was written (``result``), the bitfile was not."""

    def __init__(self, message: str, result: object):
        super().__init__(message)
        self.result = result
