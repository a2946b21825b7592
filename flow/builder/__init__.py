"""One model through the flow: the registered steps with a checkpoint after each, estimates, verification and the report (``qflow build``).

>>> from flow.builder import build, BuildResult      # doctest: +SKIP
"""

from flow.builder.pipeline import BuildResult, build, planned_steps

__all__ = ["BuildResult", "build", "planned_steps"]
