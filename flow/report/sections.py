"""Report sections a plug-in verifier adds: the protocol, and their Markdown.

A verifier's section reaches report.json under ``sections.<name>`` when it has the
:class:`ReportSection` protocol (``to_json`` returns a JSON-ready dict); report.md shows one
heading per section and one line per key.

>>> section_rows({"toy": {"checked": 3, "note": "all even"}})
['', '## toy', '', '- checked: 3', '- note: all even']
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ReportSection(Protocol):
    """What a verifier's own report section provides."""

    def to_json(self) -> dict[str, Any]: ...


def section_rows(sections: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines of every plug-in section."""
    lines: list[str] = []
    for name, body in sections.items():
        lines += ["", f"## {name}", ""] + [f"- {k}: {v}" for k, v in body.items()]
    return lines
