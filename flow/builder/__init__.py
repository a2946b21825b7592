"""One model through the flow: the registered steps of a named flow, with instruments around each (``qflow build``).

>>> from flow.builder import REGISTRY
>>> "default" in REGISTRY.flows()
True
"""

from flow.builder.pipeline import BuildResult, build, planned_steps
from flow.builder.registry import REGISTRY, get_step, register_flow, register_step, register_verifier

__all__ = ["REGISTRY", "BuildResult", "build", "get_step", "planned_steps", "register_flow", "register_step", "register_verifier"]
