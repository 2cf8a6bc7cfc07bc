"""Accessibility checked, not assumed (issue #15, item 6): axe-core in Debian's chromium on every kind of
HTML page a build writes, against WCAG 2.2 level AA.

axe-core 4.12 comes from the PyPI package ``axe-playwright-python`` (its bundled ``axe.min.js``; only the
script is used, loaded into each page before the page's own scripts). The browser is /usr/bin/chromium
driven by Playwright, as in tests/test_reports.py: Playwright never downloads a browser, and CI installs
chromium with scripts/system-deps.sh.

The site's pages are found, not listed: under ``site/`` every page at the top (each is of its own kind) and,
in every folder below, its ``index.html`` and one other page (a provider's page stands for every provider's).
A page kind added to the site is checked without changing this file.

axe cannot judge everything WCAG asks (reading order, meaningful alt text, reflow...): what it reports as
"incomplete" (needs a person to look) is printed, not failed; tests/test_pdf.py and tests/test_sections.py
hold the checks of alt text and tagged PDFs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: As tests/test_reports.py: a headless browser that talks to nothing.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: WCAG 2.0, 2.1 and 2.2 at levels A and AA, as axe-core tags its rules (axe-core docs, "Axe-core Tags").
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

#: Rules axe files under "best practice" (not WCAG success criteria by themselves) that every page must
#: pass too: they are what a screen-reader user navigates by (one main landmark, all content in
#: landmarks, one h1 and headings in order) and what tells them which header belongs to a cell.
STRUCTURE_RULES = ["landmark-one-main", "landmark-no-duplicate-main", "region", "page-has-heading-one",
                   "heading-order", "empty-heading", "empty-table-header", "td-has-header",
                   "th-has-data-cells", "scope-attr-valid", "table-duplicate-name", "image-redundant-alt"]


def axe_script() -> str:
    """axe-core's script as the ``axe-playwright-python`` package ships it."""
    import axe_playwright_python

    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8")


def site_page_kinds(site: Path) -> list[Path]:
    """One page of every kind under ``site``: every page at the top, and in each folder below its
    ``index.html`` and the first other page (by name)."""
    pages = sorted(site.glob("*.html"))
    for folder in sorted(p for p in site.rglob("*") if p.is_dir()):
        here = sorted(folder.glob("*.html"))
        pages += [p for p in here if p.name == "index.html"]
        pages += [p for p in here if p.name != "index.html"][:1]
    return pages


def report_pages(out: Path) -> list[Path]:
    """The pages a build writes outside the site: a provider's local (confidential) and public reports, the
    national report, the audit team's index of the period and of every period, and a consultant summary
    where the build writes them."""
    provider = sorted(p.parent for p in (out / "providers").glob("*/local.html"))[0]
    pages = [provider / "local.html", provider / "public.html", out / "national" / "national.html",
             out / "index.html", out.parents[1] / "index.html"]
    return pages + sorted(out.glob("consultants/*/summary.html"))[:1]


def describe(page: Path, root: Path, results: list[dict]) -> list[str]:
    """Each violation as a line: page, rule id, impact, what the rule asks, and the nodes it failed on."""
    lines = []
    for rule in results:
        nodes = "; ".join(" ".join(map(str, node["target"])) for node in rule["nodes"][:8])
        more = f" (+{len(rule['nodes']) - 8} more)" if len(rule["nodes"]) > 8 else ""
        lines.append(f"{page.relative_to(root)}: {rule['id']} ({rule['impact']}): {rule['help']}; "
                     f"nodes: {nodes}{more}; see {rule['helpUrl']}")
    return lines


def run_axe(pages: list[Path], profile: Path, options: dict) -> dict[Path, dict]:
    """axe-core's results for each page (``axe.run(document, options)``), in one headless chromium."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed: run scripts/system-deps.sh (auditreport system-deps)"
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, offline=True,
            viewport={"width": 1280, "height": 800})
        browser.add_init_script(script=axe_script())
        page = browser.new_page()
        for path in pages:
            page.goto(path.as_uri())
            results[path] = page.evaluate("options => axe.run(document, options)", options)
        browser.close()
    return results


@pytest.fixture(scope="module")
def out(built_small_audit) -> Path:
    return built_small_audit.period_dir


@pytest.mark.slow
def test_every_page_kind_meets_wcag_22_aa_in_axe(out, tmp_path):
    """No axe-core violation of WCAG 2.2 A/AA on the site's index, every other kind of site page (national
    report, provider and consultant pages, public reports...) and the reports outside the site."""
    site = site_page_kinds(out / "site")
    assert {"index.html", "national.html"} <= {p.name for p in site if p.parent == out / "site"}
    assert len(site) >= 3, site
    pages = site + report_pages(out)
    top = out.parents[1]  # the reports folder: pages are named from there
    results = run_axe(pages, tmp_path / "profile", {"runOnly": {"type": "tag", "values": WCAG_AA}})
    violations, review = [], []
    for page, result in results.items():
        assert result["testEngine"]["version"].startswith("4.12"), result["testEngine"]
        assert {"html-has-lang", "document-title"} <= {r["id"] for r in result["passes"]}, page  # it ran
        violations += describe(page, top, result["violations"])
        review += describe(page, top, result["incomplete"])
    print(f"\naxe-core {WCAG_AA} on {len(pages)} pages: " + ", ".join(str(p.relative_to(top)) for p in pages))
    print("for a person to review (axe could not decide):\n  " + "\n  ".join(review or ["nothing"]))
    assert not violations, f"{len(violations)} axe-core violation(s):\n" + "\n".join(violations)


@pytest.mark.slow
def test_every_page_kind_has_landmarks_headings_in_order_and_table_headers(out, tmp_path):
    """axe's structure rules that are best practice rather than WCAG criteria, on the same pages: one main
    landmark holding everything, an h1, headings that do not skip a level, no empty header cell, every data
    cell with its header."""
    pages = site_page_kinds(out / "site") + report_pages(out)
    results = run_axe(pages, tmp_path / "profile", {"runOnly": {"type": "rule", "values": STRUCTURE_RULES}})
    violations = []
    for page, result in results.items():
        assert {"landmark-one-main", "page-has-heading-one"} <= {
            r["id"] for r in result["passes"]}, (page, [r["id"] for r in result["passes"]])
        violations += describe(page, out.parents[1], result["violations"])
    assert not violations, f"{len(violations)} axe-core violation(s):\n" + "\n".join(violations)


def test_site_page_kinds_take_one_page_of_each_kind(tmp_path):
    """Every page at the top of the site; in a folder, its index and one other page."""
    for name in ("index.html", "national.html", "national.pdf", "providers/A.html", "providers/B.html",
                 "consultants/index.html", "consultants/C1.html", "consultants/C2.html", "data/x.csv",
                 "reports/A.html", "reports/A.pdf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [str(p.relative_to(tmp_path)) for p in site_page_kinds(tmp_path)] == [
        "index.html", "national.html", "consultants/index.html", "consultants/C1.html", "providers/A.html",
        "reports/A.html"]


def test_figure_alt_text_says_what_the_colours_and_the_legend_abbreviate():
    """A funnel's alt text counts the flagged units on each side (the colours of the points); a survival
    chart's names the provider in full, where its legend shortens the name."""
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from auditreport.presentation import figures

    units = pd.DataFrame({"unit_id": ["A", "B", "C", "D", "E"],
                          "flag": ["alarm_high", "alert_high", "as_expected", "alarm_low", None],
                          "x": [40.0, 80.0, 120.0, 300.0, 60.0], "value": [0.30, 0.2, 0.1, 0.02, 0.1]})
    x = np.geomspace(1, 400, 50)
    curve = pd.DataFrame({"x": x, "lower95": 0.1 - 0.5 / np.sqrt(x), "upper95": 0.1 + 0.5 / np.sqrt(x),
                          "lower998": 0.1 - 0.8 / np.sqrt(x), "upper998": 0.1 + 0.8 / np.sqrt(x)})
    fig = figures.funnel_plot(units, curve, target=0.1, x="x", y="value", xlabel="Procedures", ylabel="Rate",
                              title="Mortality", highlight="C", highlight_label="Hospital C", percent=True)
    try:
        assert fig.alt_text.endswith(" Units flagged: 1 alarm and 1 alert high; 1 alarm low.")
        assert "Hospital C is shown as a blue diamond at 120 x, 10.0%." in fig.alt_text
    finally:
        plt.close(fig)
    km = pd.DataFrame({"time": [0.0, 30.0, 90.0], "survival": [1.0, 0.95, 0.9], "lower": [1.0, 0.9, 0.85],
                       "upper": [1.0, 0.98, 0.95], "at_risk": [100, 90, 80]})
    name = "Pendle University Hospitals NHS Foundation Trust"
    fig = figures.km_plot(km, km, unit_label=name, horizon_max=90, title="Survival")
    try:
        assert f"National and {name}, to 90 days" in fig.alt_text
        assert name not in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]  # shortened there
    finally:
        plt.close(fig)


def test_keyboard_focus_on_a_sortable_header_is_visible(tmp_path):
    """The sort script makes header cells focusable; a keyboard user sees where focus is (a yellow outline
    on the dark header, not the browser's ring, which barely shows there) and sorts with Enter."""
    from playwright.sync_api import sync_playwright

    from auditreport.rendering.html import SORT_SCRIPT, stylesheet

    assert CHROMIUM, "chromium is not installed: run scripts/system-deps.sh (auditreport system-deps)"
    page_html = ("<!DOCTYPE html><html lang='en-GB'><head><title>t</title><style>" + stylesheet() + "</style></head>"
                 "<body class='report'><main><h1>t</h1><table class='data sortable'><caption>Units</caption>"
                 "<thead><tr><th scope='col'>Unit</th><th scope='col' class='num'>Cases</th></tr></thead><tbody>"
                 "<tr><td>A</td><td class='num'>20</td></tr><tr><td>B</td><td class='num'>3</td></tr></tbody>"
                 "</table></main><script>" + SORT_SCRIPT.read_text(encoding="utf-8") + "</script></body></html>")
    (tmp_path / "t.html").write_text(page_html, encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=CHROMIUM_ARGS, offline=True)
        page = browser.new_page()
        page.goto((tmp_path / "t.html").as_uri())
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        focused = page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
            return [e.textContent, s.outlineStyle, s.outlineWidth, s.outlineColor]; }""")
        assert focused == ["Cases", "solid", "4px", "rgb(255, 235, 59)"]
        page.keyboard.press("Enter")
        assert page.eval_on_selector_all("tbody td:first-child", "els => els.map(e => e.textContent)") == ["B", "A"]
        browser.close()
