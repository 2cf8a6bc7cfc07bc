"""The top-level index across every audit and period under a reports folder.

It is a public page: it links each period's publication site, national report
and open data, never the audit team's index (which links confidential reports).
"""

from __future__ import annotations

import json
from pathlib import Path

from auditreport.files import atomic_write_text
from auditreport.presentation.tables import esc, table


def published_on(manifest: dict) -> str:
    """When a period's site was published: the last publication that passed its check (a failed one leaves
    the site of the one before); manifests from before publications were recorded give their creation."""
    publication = manifest.get("publication") or {}
    if not publication:
        return str(manifest.get("created", ""))
    when = publication.get("published") if publication.get("status") == "published" else publication.get("site_published")
    return str(when or "")


def write_top_index(reports_root: str | Path) -> Path:
    """Link each audit period's publication site (never the team index, which links confidential reports)."""
    root = Path(reports_root)
    rows = []
    for manifest in sorted(root.glob("*/*/manifest.json")):
        meta = json.loads(manifest.read_text())
        period = manifest.parent.relative_to(root).as_posix()
        site = manifest.parent / "site"
        if not (site / "index.html").is_file():  # every publication of it failed its check: nothing to link
            rows.append([esc(meta.get("audit", "")), esc(meta.get("period", "")), "not published yet", ""])
            continue
        links = [f"<a href='{esc(period)}/site/index.html'>publication site</a>"]
        if (site / "national.html").is_file():
            links.append(f"<a href='{esc(period)}/site/national.html'>national report</a>")
        links.append(f"<a href='{esc(period)}/site/indicators.csv'>open data</a>")
        rows.append([esc(meta.get("audit", "")), esc(meta.get("period", "")), " &middot; ".join(links),
                     esc(published_on(meta))])
    from auditreport.rendering.html import SORT_SCRIPT, stylesheet

    body = ("<h1>Audit reports</h1><p>Published results of each audit and period.</p>"
            + table(["Audit", "Period", "Published outputs", "Published"], rows, raw=True, css_class="data sortable"))
    html = (f"<!DOCTYPE html><html lang='en-GB'><head><meta charset='utf-8'><title>Audit reports</title>"
            f"<style>{stylesheet()}</style></head><body class='report'><main>{body}</main>"
            f"<script>{SORT_SCRIPT.read_text(encoding='utf-8')}</script></body></html>")
    root.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(root / "index.html", html)
