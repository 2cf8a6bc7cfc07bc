"""Report HTML -> paged A4 PDF with WeasyPrint.

WeasyPrint lays out CSS paged media itself (running headers, "page N of M",
no split figures) with no browser and no TeX, so the project can install its
renderer from PyPI alone; it needs only Pango, which Debian ships.
"""

from __future__ import annotations

from pathlib import Path


def html_to_pdf(html: str, out_path: str | Path) -> Path:
    """Write ``html`` as a PDF to ``out_path`` (the stylesheet's @page rules set the layout)."""
    from weasyprint import HTML  # imported late: loading Pango costs ~0.5 s

    out_path = Path(out_path)
    # base_url=None and no url_fetcher use: every resource is inline, so nothing is fetched.
    HTML(string=html, base_url=str(out_path.parent)).write_pdf(out_path)
    return out_path
