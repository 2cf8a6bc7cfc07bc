"""Executed notebook -> one self-contained HTML report (no code, nothing fetched)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from auditreport.resources import package_path

TEMPLATES = package_path("rendering", "templates")
STYLESHEET = package_path("rendering", "report.css")
SORT_SCRIPT = package_path("rendering", "sortable.js")

# Anything that would make a browser fetch from elsewhere: a report must open offline.
_REMOTE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""",
                     re.IGNORECASE)


@lru_cache(maxsize=1)
def _exporter() -> HTMLExporter:
    exporter = HTMLExporter(template_name="auditreport", extra_template_basedirs=[str(TEMPLATES)])
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    return exporter


def stylesheet() -> str:
    return STYLESHEET.read_text(encoding="utf-8")


def notebook_to_html(notebook: nbformat.NotebookNode | str | Path, title: str, *, sortable: bool = False) -> str:
    """Render an executed notebook to HTML with the report stylesheet inlined.

    Raises ``ValueError`` if the result would reference anything remote.
    """
    nb = notebook if isinstance(notebook, nbformat.NotebookNode) else nbformat.read(str(notebook), as_version=4)
    resources = {"report_title": title, "report_css": stylesheet(),
                 "report_script": SORT_SCRIPT.read_text(encoding="utf-8") if sortable else ""}
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    check_offline(body)
    return body


def check_offline(html: str) -> None:
    match = _REMOTE.search(html)
    if match:
        raise ValueError(f"report HTML references a remote resource: {match.group(0)[:120]}")
