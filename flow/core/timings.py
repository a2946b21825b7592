"""Seconds per build step: the build's timing instrument records them, report.json keeps them as ``timings_s``.

A :class:`Timings` is an ordered mapping of step name to seconds (the order the steps ran)
with their ``total``; it reads as the ``{step: seconds}`` object report.json holds. A step
timed twice keeps its last time. Read back from a report it is validated: every value a finite
number of seconds, not below 0.

>>> t = Timings()
>>> t.record("streamline", 0.4321)
>>> t.record("fold", 1.0)
>>> list(t), t["fold"], round(t.total, 4)
(['streamline', 'fold'], 1.0, 1.4321)
>>> dict(t.rounded(2))
{'streamline': 0.43, 'fold': 1.0}
>>> Timings.of({"fold": -1})
Traceback (most recent call last):
...
ValueError: timings: fold must be a finite number of seconds, not below 0; got -1
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic_core import core_schema


class Timings(Mapping[str, float]):
    """Seconds per step, in the order the steps ran (see the module docstring)."""

    __slots__ = ("_seconds",)

    def __init__(self, seconds: Mapping[str, float] | None = None) -> None:
        self._seconds: dict[str, float] = {}
        for step, s in (seconds or {}).items():
            self.record(step, s)

    def record(self, step: str, seconds: float) -> None:
        """``step`` took ``seconds`` (a later record of the same step replaces it)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"timings: {step} must be a finite number of seconds, not below 0; got {seconds!r}")
        self._seconds[str(step)] = float(seconds)

    def __getitem__(self, step: str) -> float:
        return self._seconds[step]

    def __iter__(self) -> Iterator[str]:
        return iter(self._seconds)

    def __len__(self) -> int:
        return len(self._seconds)

    def __repr__(self) -> str:
        return f"Timings({self._seconds!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    @property
    def total(self) -> float:
        """The seconds of every step together."""
        return sum(self._seconds.values())

    def rounded(self, digits: int = 3) -> Timings:
        """The same steps, each rounded to ``digits`` decimals (as report.json keeps them)."""
        return Timings({k: round(v, digits) for k, v in self._seconds.items()})

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Timings:
        """The timings of a ``{step: seconds}`` mapping; ValueError naming the first bad value."""
        return values if isinstance(values, Timings) else cls(values)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        def validate(value: Any) -> Timings:
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise ValueError("timings must be a mapping of step name to seconds")
            return cls.of(value)

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(lambda t: dict(t.items())))
