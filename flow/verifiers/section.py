"""A verifier's own report section: what it stores in report.json and how report.md and report.html show it.

:class:`SectionView` is the part of a :class:`~flow.verifiers.registry.Verifier` the report
reads. ``report_key`` names a key of its own at the top of report.json (the RTL simulation's
``rtlsim``, kept where it always was), validated by ``section_model``; without one the section
is ``sections.<name>``, a JSON object (the verifier's result section has the
:class:`ReportSection` protocol). The defaults show such an object as one line per key, which
is also how a report shows the section of a verifier it does not know.

>>> view = SectionView()
>>> view.name = "toy"
>>> view.markdown({"checked": 3, "note": "all even"}, [])
['', '## toy', '', '- checked: 3', '- note: all even']
>>> view.html({"checked": 3}, [])
'<ul><li>checked: 3</li></ul>'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, Protocol, runtime_checkable

from flow.core.estimates import LayerEstimate


@runtime_checkable
class ReportSection(Protocol):
    """A verifier's result section that is a JSON object in report.json's ``sections``."""

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Card:
    """A headline card of report.html: its title, value, a plain-text detail and its kind (``ok``, ``bad``, ``na``)."""

    title: str
    value: str
    detail: str = ""
    kind: str = ""


@dataclass(frozen=True)
class LayerColumn:
    """A column a verifier adds to the layer table: its header, and per layer its text and a hover hint."""

    header: str
    cell: Callable[[LayerEstimate], str]
    hint: Callable[[LayerEstimate], str]


def default_markdown(name: str, body: Mapping[str, Any]) -> list[str]:
    """A section as a Markdown heading and one line per key."""
    return ["", f"## {name}", ""] + [f"- {k}: {v}" for k, v in body.items()]


def default_html(body: Mapping[str, Any]) -> str:
    """A section as an HTML list, one item per key."""
    return "<ul>" + "".join(f"<li>{escape(str(k))}: {escape(str(v))}</li>" for k, v in body.items()) + "</ul>"


class SectionView:
    """How a verifier's section is stored and shown (see the module docstring); override what differs."""

    #: The verifier's name: its build step, and its key under ``sections``.
    name: str = ""
    #: Its own key at the top of report.json, or None (``sections.<name>``).
    report_key: str | None = None
    #: The heading of its part of report.html (None: shown under its name when it has a section).
    title: str | None = None

    def section(self, result: object) -> Any:
        """What goes into the report from the section the verifier's run returned: a JSON object by default."""
        return result.to_json() if isinstance(result, ReportSection) else None

    def annotate_layers(self, layers: list[LayerEstimate], result: object) -> list[LayerEstimate]:
        """The report's layers with what this verifier measured per layer (``sim_cycles``, ``sim_note``)."""
        return layers

    def markdown(self, section: Any, layers: Sequence[LayerEstimate]) -> list[str]:
        """report.md lines of the section."""
        return default_markdown(self.name, section)

    def html(self, section: Any, layers: Sequence[LayerEstimate]) -> str:
        """report.html's part for the section (``section`` is None when the verifier did not run)."""
        return "" if section is None else default_html(section)

    def card(self, section: Any) -> Card | None:
        """A headline card of report.html, or None."""
        return None

    def layer_column(self, section: Any) -> LayerColumn | None:
        """A column of the layer table, or None."""
        return None

    def summary(self, section: Any) -> str | None:
        """Its part of the one-line summary ``qflow build`` prints, or None."""
        return None
