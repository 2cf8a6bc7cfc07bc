"""The top-level index across every audit and period under a reports folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from auditreport.presentation.tables import esc, table


def write_top_index(reports_root: str | Path) -> Path:
    """Link each audit period's publication site and team index."""
    root = Path(reports_root)
    rows = []
    for manifest in sorted(root.glob("*/*/manifest.json")):
        meta = json.loads(manifest.read_text())
        period = manifest.parent.relative_to(root).as_posix()
        rows.append([esc(meta.get("audit", "")), esc(meta.get("period", "")),
                     f"<a href='{esc(period)}/site/index.html'>publication site</a>",
                     f"<a href='{esc(period)}/index.html'>all outputs (team)</a>", esc(meta.get("created", ""))])
    from auditreport.rendering.html import stylesheet

    body = ("<h1>Audit reports</h1>" + table(["Audit", "Period", "Public", "Team", "Built"], rows, raw=True,
                                             css_class="data"))
    html = (f"<!DOCTYPE html><html lang='en-GB'><head><meta charset='utf-8'><title>Audit reports</title>"
            f"<style>{stylesheet()}</style></head><body class='report'><main>{body}</main></body></html>")
    path = root / "index.html"
    tmp = root / ".index.html.tmp"
    root.mkdir(parents=True, exist_ok=True)
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path
