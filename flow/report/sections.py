"""The verifiers' own sections of a report, found through the verifier registry, for report.md and report.html.

Every verifier of :data:`flow.verifiers.builtin.VERIFIERS` shows its section as its
:class:`~flow.verifiers.section.SectionView` says; a section in ``sections`` from a verifier
the registry does not list (one registered by a caller) is shown one line per key.

>>> class R:
...     rtlsim, layers, sections = None, [], {"toy": {"checked": 3}}
>>> [(v.name, s) for v, s in known_sections(R())], [(v.name, s) for v, s in other_sections(R())]
([], [('toy', {'checked': 3})])
"""

from __future__ import annotations

from html import escape
from typing import Any

from flow.verifiers import builtin
from flow.verifiers.section import Card, LayerColumn, SectionView


def section_of(report: Any, view: SectionView) -> Any:
    """The section of ``view``'s verifier in ``report`` (None when it did not run)."""
    return getattr(report, view.report_key, None) if view.report_key else report.sections.get(view.name)


def known_sections(report: Any) -> list[tuple[SectionView, Any]]:
    """(view, section) of every registered verifier whose section the report holds, in registry order."""
    return [(v, s) for v in builtin.VERIFIERS if (s := section_of(report, v)) is not None]


def other_sections(report: Any) -> list[tuple[SectionView, Any]]:
    """(view, section) of every section in ``sections`` from a verifier the registry does not list."""
    known = {v.name for v in builtin.VERIFIERS}
    return [(builtin.view_of(name), body) for name, body in report.sections.items() if name not in known]


def cards(report: Any) -> list[Card]:
    """The headline cards the verifiers' sections add."""
    return [c for v, s in [*known_sections(report), *other_sections(report)] if (c := v.card(s)) is not None]


def layer_columns(report: Any) -> list[LayerColumn]:
    """The layer-table columns the verifiers' sections add."""
    return [c for v, s in [*known_sections(report), *other_sections(report)] if (c := v.layer_column(s)) is not None]


def markdown_rows(sections: list[tuple[SectionView, Any]], report: Any) -> list[str]:
    """report.md lines of ``sections``."""
    return [line for v, s in sections for line in v.markdown(s, report.layers)]


def html_parts(report: Any) -> str:
    """report.html's part of every verifier with a heading of its own (also when it did not run), then every other section."""
    parts = [f"<h2>{escape(v.title)}</h2>{v.html(section_of(report, v), report.layers)}" for v in builtin.VERIFIERS if v.title]
    shown = {v.name for v in builtin.VERIFIERS if v.title}
    parts += [f"<h2>{escape(v.name)}</h2>{v.html(s, report.layers)}" for v, s in [*known_sections(report), *other_sections(report)]
              if v.name not in shown]
    return "".join(parts)


def summaries(report: Any) -> list[str]:
    """The verifiers' parts of the one-line build summary."""
    return [t for v, s in [*known_sections(report), *other_sections(report)] if (t := v.summary(s))]
