"""Hostile provider and consultant names and codes, end to end: escaped in every HTML page, safe as file
names (nothing leaves the reports folder), and inert as spreadsheet formulas in the published CSV."""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader

from auditreport.execution.report_job import safe_name
from auditreport.publication.site import neutralise_formulas

from .conftest import HOSTILE_CONSULTANTS, HOSTILE_PROVIDERS

pytestmark = pytest.mark.slow


class _Tags(HTMLParser):
    """Every element, attribute and script body of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def _pages(period: Path) -> list[Path]:
    return sorted(p for p in period.rglob("*.html") if not any(part.startswith(".") for part in p.parts))


def test_every_page_escapes_hostile_names(hostile_build):
    _, summary = hostile_build
    pages = _pages(summary.period_dir)
    assert len(pages) >= 3 * 2 + 1 + 3  # reports, national, team index, site index (+ site copies)
    for page in pages:
        html = page.read_text(encoding="utf-8")
        parser = _Tags()
        parser.feed(html)
        assert "b" not in {t for t, _ in parser.tags}, page  # no element came from the data
        images = [dict(a) for t, a in parser.tags if t == "img"]
        assert all(i.get("src", "").startswith("data:image/png;base64,") for i in images), page
        for tag, attrs in parser.tags:
            assert not [a for a, _ in attrs if a.lower().startswith("on")], (page, tag, attrs)
        assert not [s for s in parser.scripts if "alert(" in s], page
        assert "<script>alert" not in html and "<img src=x" not in html, page
    site_index = (summary.period_dir / "site" / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in site_index  # shown, as text
    assert "Caerdydd a&#39;r Fro \u0174\u0175 \U0001F3E5" in site_index  # Welsh and emoji kept intact (Jinja's escape)
    local = next((summary.period_dir / "providers").glob("*/local.html")).read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(2)&gt;" in local or "&lt;img" in "".join(
        p.read_text(encoding="utf-8") for p in (summary.period_dir / "providers").glob("*/local.html"))


def test_file_names_are_safe_and_nothing_leaves_the_reports_folder(hostile_build):
    audit, summary = hostile_build
    root = audit.parent.parent
    assert sorted(p.name for p in root.iterdir()) == ["audit", "reports"]
    assert sorted(p.name for p in (audit.parent / "data").iterdir()) == ["providers.csv", "records.csv",
                                                                          "truth.json"]
    reports = root / "reports"
    assert sorted(p.name for p in reports.iterdir()) == ["index.html", "synthetic-surgery"]
    folders = sorted(p.name for p in (summary.period_dir / "providers").iterdir())
    assert folders == sorted(safe_name(c) for c in HOSTILE_PROVIDERS)
    for path in reports.rglob("*"):
        assert path.resolve().is_relative_to(reports.resolve()), path
        assert re.fullmatch(r"\.?[A-Za-z0-9_.-]+", path.name), path
        assert ".." not in path.relative_to(reports).parts
    for code in list(HOSTILE_PROVIDERS) + HOSTILE_CONSULTANTS:
        name = safe_name(code)
        assert name and "/" not in name and "\\" not in name and name not in (".", "..")


def test_pdf_shows_hostile_names_as_text(hostile_build):
    _, summary = hostile_build
    texts = {p.parent.name: " ".join(page.extract_text() for page in PdfReader(p).pages)
             for p in (summary.period_dir / "providers").glob("*/local.pdf")}
    joined = re.sub(r"\s+", "", " ".join(texts.values()).replace("\x00", ""))
    assert "<script>alert('name')</script>" in joined
    # The Welsh name's font extracts with NULs and spaces between letters (and \u0174 as junk).
    assert "Caerdydda'rFro" in joined


def _csv_cells(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_published_csv_cannot_run_formulas(hostile_build):
    _, summary = hostile_build
    for path in (summary.period_dir / "indicators.csv", summary.period_dir / "site" / "indicators.csv"):
        rows = _csv_cells(path)
        assert rows
        for row in rows:
            for column, cell in row.items():
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), (path, column, cell)
                if cell.startswith("-"):
                    float(cell)  # only numbers may start with '-'
        names = {r["unit_name"] for r in rows}
        assert "'=HYPERLINK(\"http://evil.example/\",\"click me\")" in names
        assert "'=1+2/R\u0174\U0001F3E5" in {r["unit_id"] for r in rows}
        data = pd.read_csv(path)
        assert pd.api.types.is_float_dtype(data["value"]) and pd.api.types.is_float_dtype(data["lower95"])


def test_neutralise_formulas_leaves_numbers_alone():
    frame = pd.DataFrame({"unit_name": ["=1+1", "+44", "-2+3", "@SUM(A1)", "\tx", "plain", "-", None],
                          "value": [-1.5, 0.0, -2.0, 3.0, float("nan"), 1e308, -0.0, 2.0],
                          "count": [-1, 0, 2, 3, 4, 5, 6, 7]})
    out = neutralise_formulas(frame)
    assert out["unit_name"].tolist() == ["'=1+1", "'+44", "'-2+3", "'@SUM(A1)", "'\tx", "plain", "'-", None]
    pd.testing.assert_series_equal(out["value"], frame["value"])
    pd.testing.assert_series_equal(out["count"], frame["count"])
    assert out.to_csv(index=False).splitlines()[1].startswith("'=1+1,-1.5,-1")
