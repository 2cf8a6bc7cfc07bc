"""Local feedback never leaks into public output: every public file (the site, the national report,
providers/*/public.*) is read back and searched for consultant detail (not published in this audit),
small counts and the figures derived from them, and patient identifiers."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader

from auditreport.presentation.formatting import pct

from .conftest import INTERNAL_MEASURE, small_definition

pytestmark = pytest.mark.slow


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag, attrs):
        self._skip = tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip = False

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def read_back(path: Path) -> str:
    """What a reader of ``path`` sees: HTML text, PDF text, CSV or notebook as written."""
    if path.suffix == ".html":
        parser = _Text()
        parser.feed(path.read_text(encoding="utf-8"))
        return re.sub(r"\s+", " ", " ".join(parser.parts))
    if path.suffix == ".pdf":
        # pypdf returns text in a font that needed two-byte codes (the Welsh name's) with NUL bytes between.
        text = " ".join(p.extract_text() for p in PdfReader(path).pages).replace("\x00", "")
        return re.sub(r"\s+", " ", text)
    return path.read_text(encoding="utf-8")


def public_files(period: Path) -> list[Path]:
    files = [p for p in (period / "site").rglob("*") if p.is_file()]
    files += sorted((period / "providers").glob("*/public.*")) + sorted((period / "national").glob("national.*"))
    return files


@pytest.fixture(scope="module")
def texts(hostile_build):
    _, summary = hostile_build
    period = summary.period_dir
    public = {p: read_back(p) for p in public_files(period)}
    local = {p: read_back(p) for p in sorted((period / "providers").glob("*/local.*"))}
    return period, public, local


def test_public_files_are_all_there(texts):
    period, public, _ = texts
    names = {p.relative_to(period).as_posix() for p in public}
    assert {"site/index.html", "site/indicators.csv", "site/national.pdf", "national/national.html"} <= names
    assert len([n for n in names if n.startswith("providers/") and n.endswith("public.pdf")]) == 3
    assert len([n for n in names if n.startswith("site/reports/")]) == 6  # public reports; site/providers/: pages
    for path, text in public.items():  # the read-back works: every report says what it is
        if path.suffix in (".pdf", ".html") and path.name != "index.html":
            assert "For publication" in text.replace(" ", " "), path


def test_no_consultant_detail_in_public_files(texts, hostile_build):
    audit, _ = hostile_build
    period, public, local = texts
    records = pd.read_csv(audit.parent / "data" / "records.csv", dtype=str)
    consultants = sorted(records["consultant_code"].unique())
    # Positive control: the confidential reports do show them.
    assert "Consultants" in " ".join(t for p, t in local.items() if p.suffix == ".html")
    assert any(c in " ".join(local.values()) for c in consultants)
    for path, text in public.items():
        leaked = [c for c in consultants if c in text or json.dumps(c)[1:-1] in text]
        assert not leaked, (path, leaked)
        assert "Risk-adjusted mortality by consultant" not in text, path
    site_csv = pd.read_csv(period / "site" / "indicators.csv")
    assert "consultant" not in set(site_csv["level"])


def test_no_patient_identifier_in_public_files(texts, hostile_build):
    audit, _ = hostile_build
    _, public, _ = texts
    ids = pd.read_csv(audit.parent / "data" / "records.csv", dtype=str)["patient_id"]
    pattern = re.compile("|".join(re.escape(i) for i in ids))
    for path, text in public.items():
        assert not pattern.search(text), (path, pattern.search(text).group(0))


def test_internal_measure_only_in_confidential_reports(texts):
    """A measure with ``published: false`` is in the bundle and the local reports, nowhere public: not on the
    site, in its index, open data or data dictionary, nor in a public report."""
    period, public, local = texts
    internal = INTERNAL_MEASURE
    bundle = pd.read_parquet(period / "bundle" / "indicators.parquet")
    assert internal["id"] in set(bundle["measure"])
    assert internal["label"] in " ".join(t for p, t in local.items() if p.suffix == ".html")  # positive control
    for path, text in public.items():
        assert internal["label"] not in text and internal["id"] not in text, path
    published = {m["id"] for m in small_definition()["measures"]}
    for path in (period / "indicators.csv", period / "site" / "indicators.csv"):
        assert set(pd.read_csv(path)["measure"]) == published, path
    dictionary = pd.read_csv(period / "site" / "data_dictionary.csv", keep_default_na=False)
    assert list(dictionary.loc[dictionary["entry"] == "measure", "name"]) == list(dict.fromkeys(
        m["id"] for m in small_definition()["measures"]))


def test_small_counts_and_their_figures_are_not_public(texts):
    period, public, local = texts
    bundle = pd.read_parquet(period / "bundle" / "indicators.parquet")
    crude = bundle[(bundle["level"] == "provider") & (bundle["measure"] == "mortality") & (bundle["statistic"] == "rate")]
    small = crude[(crude["numerator"] >= 1) & (crude["numerator"] <= 7)]
    assert len(small) >= 2, "the fixture should have providers with small death counts"
    site_csv = pd.read_csv(period / "site" / "indicators.csv", dtype={"unit_id": str})
    all_public = " ".join(public.values())
    all_local = " ".join(local.values())
    for row in small.itertuples():
        interval = f"{pct(row.lower95)} to {pct(row.upper95)}"
        deaths = f": {int(row.numerator)} of {int(row.denominator):,} procedures ({pct(row.value)})"
        assert interval in all_local and deaths in all_local  # positive control
        assert interval not in all_public and deaths not in all_public, row.unit_id
        published = site_csv[(site_csv["unit_id"].str.lstrip("'") == row.unit_id) & (site_csv["measure"] == "mortality")
                             & (site_csv["statistic"].isin(["rate", "oe_ratio", "adjusted_rate"]))]
        assert len(published) == 3 and published["suppressed"].all()
        assert published[["numerator", "observed", "value", "lower95", "upper95"]].isna().all().all()
    assert re.search(r": \* of [\d,*]+ procedures \(\*\)", all_public)


def test_public_survival_figure_does_not_reveal_small_counts(hostile_build):
    """Figures are images, so the text read-back cannot see them: read the figure's own text instead.

    (The numbers at risk of a provider whose survival is suppressed once gave its small death count away.)
    """
    import matplotlib.pyplot as plt

    from auditreport.presentation.blocks import Chart
    from auditreport.presentation.context import load_context
    from auditreport.presentation.survival_sections import survival_section

    _, summary = hostile_build
    bundle = summary.period_dir / "bundle"
    table = pd.read_parquet(bundle / "indicators.parquet")
    surv = table[(table["level"] == "provider") & (table["measure"] == "survival") & (table["statistic"] == "survival_30d")]
    leaks = []
    for row in surv[(surv["numerator"] >= 1) & (surv["numerator"] <= 7)].itertuples():
        section = survival_section(load_context(bundle, "public", row.unit_id), "survival")
        figs = [block.figure for block in section.blocks if isinstance(block, Chart)]
        assert figs, "the survival section has a figure"
        numbers = {t.get_text().replace(",", "") for fig in figs for ax in fig.axes for t in ax.texts}
        for fig in figs:
            plt.close(fig)
        # Nobody is censored before 30 days here, so 'at risk at 30 days' = cases - deaths by 30 days.
        if str(int(row.denominator - row.numerator)) in numbers:
            leaks.append((row.unit_id, int(row.denominator), int(row.numerator)))
    assert not leaks, f"at-risk numbers give the suppressed deaths by 30 days: {leaks}"


def test_public_quality_table_suppresses_small_national_counts(audit_copy, tmp_path):
    from auditreport.analysis.national import run_national
    from auditreport.bundle import write_bundle
    from auditreport.config import load_config
    from auditreport.presentation.context import load_context
    from auditreport.presentation.display import outputs
    from auditreport.presentation.provider_sections import quality_section

    def one_missing(f):
        f["urgency"] = f["urgency"].replace("", "elective")
        f.loc[0, "urgency"] = ""
    audit_copy.edit(one_missing)
    result = run_national(load_config(audit_copy.yaml))
    provider = result.indicators.loc[result.indicators["level"] == "provider", "unit_id"].iloc[0]
    html = "".join(map(str, outputs(quality_section(load_context(write_bundle(tmp_path / "out", result), "public", provider)))))
    row = re.search(r"Imputed: Urgency</td>(.*?)</tr>", html).group(1)  # the factor by its label
    assert not re.search(r">1<", row), row
