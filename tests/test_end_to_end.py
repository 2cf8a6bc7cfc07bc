"""A small audit built end to end: HTML and PDF for every provider, site, open data, manifest."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from pypdf import PdfReader

pytestmark = pytest.mark.slow


def consultants(out) -> int:
    """How many consultants have results, so a summary each (execution/consultant_summaries.py)."""
    from auditreport.bundle import load_bundle
    from auditreport.presentation.consultant_summary import consultant_codes

    return len(consultant_codes(load_bundle(out / "bundle")))


def test_every_report_built(built_small_audit):
    out = built_small_audit.period_dir
    counts = built_small_audit.counts()
    assert counts == {"built": 1 + 6 * 2 + consultants(out)}  # and each consultant's confidential summary
    for path in [out / "national" / "national.pdf", out / "index.html", out / "indicators.csv",
                 out / "manifest.json", out / "site" / "index.html", out / "site" / "indicators.csv",
                 out / "site" / "data_dictionary.csv"]:
        assert path.is_file(), path
    assert len(list((out / "providers").glob("*/local.pdf"))) == 6
    assert len(list((out / "providers").glob("*/public.pdf"))) == 6


def test_pdf_names_provider_and_shows_its_figures(built_small_audit):
    out = built_small_audit.period_dir
    data = pd.read_csv(out / "indicators.csv", dtype={"unit_id": str})
    ramr = data[(data["level"] == "provider") & (data["measure"] == "mortality") & (data["statistic"] == "adjusted_rate")]
    row = ramr.sort_values("denominator").iloc[-1]
    pdf = out / "providers" / row["unit_id"] / "local.pdf"
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    text = re.sub(r"\s+", " ", text)
    assert row["unit_name"] in text and row["unit_id"] in text
    assert f"{row['value'] * 100:.1f}%" in text
    assert f"{row['lower95'] * 100:.1f}% to {row['upper95'] * 100:.1f}%" in text
    assert "Confidential: local feedback" in text
    assert re.search(r"page 1 of \d+", text)
    public = " ".join(p.extract_text() for p in PdfReader(out / "providers" / row["unit_id"] / "public.pdf").pages)
    assert "For publication" in public


def test_html_is_self_contained_without_code(built_small_audit):
    out = built_small_audit.period_dir
    for html_path in list((out / "providers").glob("*/*.html")) + [out / "national" / "national.html"]:
        html = html_path.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), html_path
        assert "import auditreport" not in html and "load_context" not in html
        assert "data:image/png;base64," in html


def test_indicators_csv_and_manifest(built_small_audit):
    out = built_small_audit.period_dir
    data = pd.read_csv(out / "indicators.csv")
    required = ["audit", "period", "measure", "statistic", "level", "unit_id", "unit_name", "numerator", "denominator",
                "observed", "expected", "value", "lower95", "upper95", "lower998", "upper998", "flag"]
    assert set(required) <= set(data.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    paths = {f["path"]: f for f in manifest["files"]}
    assert "national/national.pdf" in paths and "site/index.html" in paths
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert manifest["data"]["source"]["sha256"] and manifest["config"]
    assert manifest["reports"]["failed"] == []


def test_rerun_skips_everything(built_small_audit, small_audit):
    from auditreport.pipeline import build

    out = built_small_audit.period_dir
    before = {p: p.stat().st_mtime_ns for p in (out / "site" / "index.html", out / "manifest.json")}
    summary = build(small_audit, out.parents[1], workers=2)
    assert summary.national_skipped
    assert summary.counts() == {"skipped": 13 + consultants(out)}
    assert built_small_audit.publish_seconds > 0 and summary.publish_seconds == 0
    # A publication that passed its disclosure check and whose inputs are unchanged is not redone.
    assert (out / ".published").is_file()
    assert {p: p.stat().st_mtime_ns for p in before} == before
