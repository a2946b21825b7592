"""Writing a report's files: report.md, report.html, then report.json (which marks completion)."""

from __future__ import annotations

from pathlib import Path

from flow.core.fileio import atomic_write_json, atomic_write_text
from flow.report.html import render_html
from flow.report.markdown import render_markdown
from flow.report.schema import Report

REPORT_FILES = ("report.md", "report.html", "report.json")


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Write report.md, report.html, then report.json, each atomically; report.json last marks completion."""
    out = Path(out_dir)
    atomic_write_text(out / "report.md", render_markdown(report))
    atomic_write_text(out / "report.html", render_html(report))
    atomic_write_json(out / "report.json", report.to_dict())
    return out / "report.json"
