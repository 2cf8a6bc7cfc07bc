"""What readers get: every section of REPORTS.md in HTML and PDF, disclosure control on what was written,
the publication site in a real browser, and PDF pages rendered for eyeballing (test-artifacts/)."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from auditreport.config import load_config
from auditreport.publication.checker import check_files, check_period, pdf_text
from auditreport.rules.disclosure import secondary_suppress, suppress_indicators

from conftest import skip_outside_ci

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

# The provider report's fixed sections as headings or fixed text; each measure's section is found by its label.
PROVIDER_SECTIONS = {
    "cover": "Data fingerprint",
    "at a glance": "At a glance",
    "a measure's statistics": "statistics",
    "survival": "Kaplan-Meier survival",
    "consultants": "Consultants",
    "case mix": "Case mix",
    "data quality": "Data quality",
    "next steps": "What a flag means and what happens next",
    "methods": "Methods",
}
NATIONAL_SECTIONS = ["Summary", "Funnel plot", "All providers", "Alerts and alarms", "Risk model",
                     "Calibration", "Over-dispersion", "Kaplan-Meier survival", "Data completeness"]


def _html_text(path: Path) -> str:
    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag, attrs):
            self.skip += tag in ("script", "style")

        def handle_endtag(self, tag):
            self.skip -= tag in ("script", "style")

        def handle_data(self, data):
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split())


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def out(built_small_audit) -> Path:
    return built_small_audit.period_dir


@pytest.fixture(scope="module")
def biggest(out) -> str:
    data = pd.read_parquet(out / "bundle" / "indicators.parquet")
    rows = data[(data["level"] == "provider") & (data["measure"] == "mortality") & (data["statistic"] == "rate")]
    return str(rows.sort_values("denominator").iloc[-1]["unit_id"])


@pytest.fixture(scope="module")
def measures(out) -> list[dict]:
    return json.loads((out / "bundle" / "metadata.json").read_text())["measures"]


@pytest.mark.slow
@pytest.mark.parametrize("audience", ["local", "public"])
def test_every_provider_section_in_html_and_pdf(out, biggest, measures, audience):
    for suffix, text_of in ((".html", _html_text), (".pdf", lambda p: _flat(pdf_text(p)))):
        text = text_of(out / "providers" / biggest / f"{audience}{suffix}")
        missing = [name for name, marker in PROVIDER_SECTIONS.items() if marker not in text]
        assert not missing, f"{audience}{suffix} lacks {missing}"
        shown = [m for m in measures if audience == "local" or m["published"]]
        absent = [m["label"] for m in shown if f"{m['label']}: statistics" not in text]
        assert not absent, f"{audience}{suffix} lacks the sections of {absent}"
        hidden = [m["label"] for m in measures if m not in shown and f"{m['label']}: statistics" in text]
        assert not hidden, f"{audience}{suffix} shows internal measures {hidden}"
        label = "Confidential: local feedback" if audience == "local" else "For publication"
        assert label in text


@pytest.mark.slow
def test_monitoring_section_in_provider_report(out, biggest):
    assert "Monitoring" in _html_text(out / "providers" / biggest / "local.html")


@pytest.mark.slow
def test_every_national_section_in_html_and_pdf(out, measures):
    for text in (_html_text(out / "national" / "national.html"), _flat(pdf_text(out / "national" / "national.pdf"))):
        missing = [s for s in NATIONAL_SECTIONS if s not in text]
        missing += [m["label"] for m in measures if m["published"] and m["label"] not in text]
        assert not missing, missing


@pytest.mark.slow
def test_national_report_shows_each_calibration_plot_once(out, measures):
    html = (out / "national" / "national.html").read_text(encoding="utf-8")
    adjusted = [m for m in measures if m["published"] and m["kind"] == "proportion" and m["adjusted"]]
    for m in adjusted:
        assert len(re.findall(rf'alt="{re.escape(m["label"])}: calibration of the risk model', html)) == 1


@pytest.mark.slow
def test_figures_have_alt_text(out, biggest):
    for path in (out / "providers" / biggest / "local.html", out / "national" / "national.html"):
        alts = re.findall(r"<img [^>]*alt=\"([^\"]*)\"", path.read_text())
        assert len(alts) >= 3 and all(len(a) > 30 for a in alts), (path, alts)


@pytest.mark.slow
def test_public_outputs_pass_the_checker_and_local_ones_carry_full_counts(out, small_audit):
    config = load_config(small_audit)
    report = check_period(config, out)
    assert report.ok, "\n".join(map(str, report.findings))
    assert any(p.suffix == ".pdf" for p in map(Path, report.files))
    # The same checker on the confidential reports finds small counts: they are shown in full there.
    local = sorted((out / "providers").glob("*/local.html")) + sorted((out / "providers").glob("*/local.pdf"))
    found = check_files(local, config.suppression_threshold).findings
    assert found, "local reports should carry small counts in full"
    # ... and no confidential file reached the site.
    assert not [p for p in (out / "site").rglob("*") if "local" in p.name]


@pytest.mark.slow
def test_pdf_pages_rendered_for_review(out, biggest):
    import pypdfium2 as pdfium

    folder = ARTIFACTS / "pdf-pages" / biggest
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for audience in ("local", "public"):
        pdf = pdfium.PdfDocument(str(out / "providers" / biggest / f"{audience}.pdf"))
        for i, page in enumerate(pdf):
            width, height = page.get_size()
            assert abs(width - 595) < 2 and abs(height - 842) < 2  # A4 portrait in points
            page.render(scale=1.2).to_pil().save(folder / f"{audience}-p{i + 1}.png")
        assert len(pdf) >= 4
        text = pdf_text(out / "providers" / biggest / f"{audience}.pdf")
        assert f"page 1 of {len(pdf)}" in text


# Disclosure control: the rule and the checker on small made-up inputs -----------------------------

def test_secondary_suppression_hides_a_complement():
    counts = {"A": 50.0, "B": 5.0, "C": 20.0, "D": 12.0}
    hidden = secondary_suppress(counts, {"B"}, threshold=7)
    assert hidden == {"B", "D"}  # the next smallest goes with it; hidden total 17 > 7
    # Two small cells whose sum is still small: a third goes too.
    assert secondary_suppress({"A": 2.0, "B": 3.0, "C": 9.0, "D": 40.0}, {"A", "B"}, 7) == {"A", "B", "C"}
    assert secondary_suppress(counts, set(), 7) == set()


def test_suppress_indicators_leaves_nothing_recoverable():
    rows = [("national", "national", "", 100, 1000)] + [
        ("provider", p, "", d, n) for p, d, n in [("P1", 3, 100), ("P2", 40, 400), ("P3", 25, 250), ("P4", 32, 250)]]
    table = pd.DataFrame(rows, columns=["level", "unit_id", "parent_id", "numerator", "denominator"])
    table["measure"], table["statistic"] = "mortality", "rate"
    for col in ("observed", "value", "lower95", "upper95", "lower998", "upper998"):
        table[col] = table["numerator"] / (table["denominator"] if col != "observed" else 1)
    out = suppress_indicators(table, 7).set_index("unit_id")
    assert out.loc[["P1", "P3"], "suppressed"].all() and not out.loc[["P2", "P4"], "suppressed"].any()
    assert out.loc[["P1", "P3"], ["numerator", "value", "lower95"]].isna().all().all()
    hidden = 100 - out.loc[["P2", "P4"], "numerator"].sum()
    assert hidden > 7


def test_checker_finds_counts_ids_and_recoverable_cells(tmp_path):
    html = tmp_path / "r.html"
    html.write_text("<table><tr><td>C1</td><td data-count>5</td></tr><tr><td>C2</td><td data-count>*</td></tr>"
                    "</table><p>There were 3 deaths in total, for patient P123.</p>")
    csv = tmp_path / "indicators.csv"
    csv.write_text("measure,statistic,level,unit_id,parent_id,numerator,denominator\n"
                   "mortality,rate,national,national,,100,1000\nmortality,rate,provider,A,,,300\n"
                   "mortality,rate,provider,B,,95,700\nmortality,rate,provider,C,,2,50\n")
    report = check_files([html, csv], threshold=7, patient_ids={"P123", "P999"})
    found = {(Path(f.path).name, f.where) for f in report.findings}
    assert ("r.html", "count cell") in found
    assert ("r.html", "sentence") in found
    assert ("r.html", "patient identifier") in found
    assert ("indicators.csv", "row 5 column numerator") in found
    assert any(w.startswith("mortality rate numerator under national") for _, w in found)
    with pytest.raises(Exception, match="disclosure check failed"):
        report.raise_if_failed()
    clean = tmp_path / "ok.html"
    clean.write_text("<table><tr><td>C1</td><td data-count>15</td></tr></table><p>Counts from 1 to 7 are hidden.</p>")
    assert check_files([clean], 7, {"P123"}).ok


def test_checker_reads_pdf_table_rows(tmp_path):
    from auditreport.rendering.pdf import html_to_pdf

    html = ("<html lang='en-GB'><head><title>r</title></head><body><table><tr><th>Consultant</th><th>Deaths</th></tr>"
            "<tr><td>C2480300</td><td data-count>4</td></tr><tr><td>C2066401</td><td data-count>12</td></tr>"
            "</table></body></html>")
    (tmp_path / "r.html").write_text(html.replace(">4<", ">*<"))  # the HTML is clean, the PDF is not
    html_to_pdf(html, tmp_path / "r.pdf")
    report = check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7)
    assert [f.where for f in report.findings] == ["PDF table row 'C2480300'"]


def test_checker_tells_a_sentence_that_starts_with_a_row_label_from_the_row(tmp_path):
    """A sentence about a provider (its log-rank test has 1 degree of freedom) is not its table row."""
    from auditreport.rendering.pdf import html_to_pdf

    html = ("<html lang='en-GB'><head><title>r</title></head><body><table><tr><th>Unit</th><th>Deaths</th></tr>"
            "<tr><td>Institution 21</td><td data-count>*</td></tr></table>"
            "<p>Institution 21 had more deaths than expected: chi-squared 7.28 on 1 degree of "
            "freedom, p = 0.007.</p></body></html>")
    (tmp_path / "r.html").write_text(html)
    html_to_pdf(html, tmp_path / "r.pdf")
    assert "on 1 degree" in " ".join(pdf_text(tmp_path / "r.pdf").split())
    assert check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7).ok
    # The same row with a small count still fails.
    html_to_pdf(html.replace(">*<", ">3<"), tmp_path / "r.pdf")
    report = check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7)
    assert [f.where for f in report.findings] == ["PDF table row 'Institution 21'"]


# The publication site in a real headless browser ---------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
@skip_outside_ci(CHROMIUM is None, "chromium is not installed (scripts/system-deps.sh installs it)")
def test_site_in_a_browser(out, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed: run scripts/system-deps.sh (auditreport system-deps)"
    top = out.parents[1] / "index.html"
    assert top.is_file()  # publishing refreshes the top-level index
    site = out / "site" / "index.html"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS[1:],
            offline=True)
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        for start in (site, top, out / "national" / "national.html"):
            page.goto(start.as_uri())
            hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            for href in hrefs:
                assert href.startswith("file://"), href
                target = Path(href.removeprefix("file://").split("#")[0])
                assert target.is_file(), f"{start.name}: broken link {href}"
        assert not [u for u in requests if not u.startswith(("file:", "data:"))], "page fetched from the network"

        page.goto(site.as_uri())
        data = pd.read_csv(out / "site" / "indicators.csv", dtype={"unit_id": str})
        providers = data[data["level"] == "provider"]["unit_id"].unique()
        codes = page.eval_on_selector_all("table.sortable tbody tr td:nth-child(2)", "els => els.map(e => e.textContent)")
        assert sorted(codes) == sorted(providers)
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        assert {"national.html", "indicators.csv", "data_dictionary.csv"} <= set(links)
        assert all(not re.search(r"local\.(html|pdf)$", h) for h in links)
        assert "Data fingerprint" in page.inner_text("body")

        def column(n: int) -> list[str]:
            return page.eval_on_selector_all(f"table.sortable tbody tr td:nth-child({n})",
                                             "els => els.map(e => e.textContent.trim())")

        header = page.locator("table.sortable thead th", has_text="Code")
        header.click()
        assert column(2) == sorted(column(2))
        header.click()
        assert column(2) == sorted(column(2), reverse=True)
        page.locator("table.sortable thead th", has_text="Cases").click()
        cases = [float(c.replace(",", "")) for c in column(3) if c != "*"]
        assert cases == sorted(cases) and column(3)[: len(cases)] == [f"{int(c):,}" for c in cases]
        page.screenshot(path=str(ARTIFACTS / "site.png"), full_page=True)

        # The national report's ranked table: flags sort by severity (data-sort), by keyboard too.
        page.goto((out / "national" / "national.html").as_uri())
        status = page.locator("table.sortable").first.locator("thead th", has_text="Status")
        status.focus()
        page.keyboard.press("Enter")
        ranks = page.eval_on_selector_all("table.sortable >> nth=0 >> tbody tr [data-sort]",
                                          "els => els.map(e => Number(e.dataset.sort))")
        assert ranks and ranks == sorted(ranks)
        page.screenshot(path=str(ARTIFACTS / "national.png"), full_page=False)
        browser.close()
    assert (ARTIFACTS / "site.png").stat().st_size > 10_000


def test_small_denominator_takes_a_complement_with_it():
    rows = [("national", "national", "", 50, 1000)] + [
        ("provider", p, "", d, n) for p, d, n in [("P1", 0, 5), ("P2", 20, 395), ("P3", 10, 100), ("P4", 20, 500)]]
    table = pd.DataFrame(rows, columns=["level", "unit_id", "parent_id", "numerator", "denominator"])
    table["measure"], table["statistic"] = "mortality", "rate"
    out = suppress_indicators(table, 7).set_index("unit_id")
    assert out.loc["P1", "denominator"] != out.loc["P1", "denominator"]  # NaN: small
    assert out["denominator"].isna().sum() == 2  # and the next smallest (P3) with it
    assert out.loc["P3", "denominator"] != out.loc["P3", "denominator"]
