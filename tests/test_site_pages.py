"""The publication site's pages (issue #15): a page per provider and per consultant, accessible inline SVG
funnels with their tables, low-volume groups, statements and validation, open data per measure.

The unit tests build a small open-data frame by hand (in the bundle's format 3 shape: ``policy`` and
``low_volume`` columns, pooled ``low-volume`` rows); the last test opens pages of a really built small audit
in chromium and uses them with the keyboard.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from auditreport.config import load_config
from auditreport.publication.pages import LOW_VOLUME_ID, write_pages
from auditreport.publication.site import OPEN_COLUMNS
from auditreport.publication.svg import FunnelAxes, FunnelPoint, funnel_svg, x_ticks, y_ticks

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = "Gamma <b>& Sons</b>"


# ------------------------------------------------------------------ the SVG funnel


def _curve(target: float = 0.1) -> pd.DataFrame:
    x = np.geomspace(5, 2000, 60)
    se = np.sqrt(target * (1 - target) / x)
    return pd.DataFrame({"x": x, "lower95": np.clip(target - 1.96 * se, 0, 1), "upper95": target + 1.96 * se,
                         "lower998": np.clip(target - 3.09 * se, 0, 1), "upper998": target + 3.09 * se,
                         "target": target})


def _points() -> list[FunnelPoint]:
    return [FunnelPoint("A1", "Alpha", 400, 0.215, "Alpha: Rate 21.5% (95% interval 17.8% to 25.8%); alarm: worse "
                        "than expected", "worse"),
            FunnelPoint("B2", "Beta", 120, 0.083, "Beta: Rate 8.3% (95% interval 4.6% to 14.7%); as expected",
                        "as_expected"),
            FunnelPoint("C3", HOSTILE, 60, 0.1, f"{HOSTILE}: Rate 10.0%; as expected", "as_expected"),
            FunnelPoint("D4", "Delta", NAN, NAN, "Delta: in the low-volume group", "none")]


def _axes() -> FunnelAxes:
    return FunnelAxes("funnel-rate", "Rate: hospitals", "Admissions analysed (log scale)", "Rate (%)", 0.1,
                      "national", percent=True, description="Funnel plot of 3 hospitals.")


def test_funnel_has_one_focusable_element_per_unit_with_its_figures():
    svg = str(funnel_svg(_points(), _curve(), _axes()))
    units = re.findall(r"<g class='unit ([^']*)' tabindex='0' role='img' aria-label='([^']*)' data-unit='([^']*)'>"
                       r"<title>([^<]*)</title>", svg)
    # Delta has no value to plot (in the low-volume group): the table lists it, the funnel does not.
    assert [u[2] for u in units] == ["A1", "B2", "C3"]
    alpha = next(u for u in units if u[2] == "A1")
    assert alpha[1] == alpha[3] == ("Alpha: Rate 21.5% (95% interval 17.8% to 25.8%); alarm: worse than expected")
    assert "status-worse" in alpha[0]
    # A hostile name is text, never markup.
    assert "<b>" not in svg and html.escape(HOSTILE, quote=True) in svg
    # The limits, the target line, the axes' titles with their units and ticks as percentages.
    assert len(re.findall(r"<path class='limit95' d='M[-\d.,L]+'", svg)) == 2
    assert len(re.findall(r"<path class='limit998' d='M[-\d.,L]+'", svg)) == 2
    assert "<line class='target'" in svg
    assert "Admissions analysed (log scale)</text>" in svg and "Rate (%)</text>" in svg
    assert ">10%</text>" in svg and ">100</text>" in svg
    assert "<desc id='funnel-rate-desc'>Funnel plot of 3 hospitals.</desc>" in svg
    assert "own" not in re.sub(r"<g class='legend'.*?</g>", "", svg, flags=re.S).replace("unit own", "!")


def test_funnel_highlights_its_page_unit_by_shape_and_label():
    svg = str(funnel_svg(_points(), _curve(), _axes(), highlight="B2", highlight_note="Beta is the diamond.",
                         legend="this hospital"))
    own = re.findall(r"<g class='unit [^']*own'[^>]*data-unit='([^']*)'>(.*?)</g>", svg)
    assert [o[0] for o in own] == ["B2"]
    assert "<path class='marker' d='M" in own[0][1] and "<text class='own-label'" in own[0][1]
    assert ">Beta</text>" in own[0][1]  # labelled with its name, not shown by colour only
    assert svg.count("<circle cx=") == 2 and "<circle class='marker'" in svg  # the two others; the legend's
    # Drawn last, so on top of the others; the description and the legend say which it is.
    assert svg.rindex("data-unit='B2'") > svg.rindex("data-unit='C3'")
    assert "Funnel plot of 3 hospitals. Beta is the diamond.</desc>" in svg and ">this hospital</text>" in svg


def test_axis_ticks_are_round_and_within_the_view():
    assert x_ticks(3, 900) == [5, 10, 20, 50, 100, 200, 500]
    assert x_ticks(0.5, 40000) == [1, 10, 100, 1000, 10000]  # over more than three decades: powers of ten
    assert y_ticks(0, 0.25) == [0, 0.05, 0.1, 0.15, 0.2, 0.25]
    assert y_ticks(0.6, 1.9) == [0.75, 1.0, 1.25, 1.5, 1.75]


# ------------------------------------------------------------------ pages from a hand-made frame


def _measure(id: str, label: str, headline: str, statistics: list[str], levels: list[str], **extra) -> dict:
    entry = {"id": id, "label": label, "description": f"{label}, one line", "kind": "proportion",
             "type": "outcome", "direction": "lower_is_better", "target": None, "target_kind": "national",
             "adjusted": False, "carries_status": True, "headline": headline, "statistics": statistics,
             "levels": levels, "published": True, "value_unit": "", "method": f"how {id} was computed"}
    return {**entry, **extra}


def _metadata() -> dict:
    return {"wording": {"activity": "procedures", "activity_singular": "procedure", "provider": "hospital",
                        "providers": "hospitals", "population": "England",
                        "national_unit_name": "England (all hospitals)"},
            "measures": [
                _measure("mortality", "30-day mortality", "adjusted_rate", ["adjusted_rate", "oe_ratio", "rate"],
                         ["provider", "consultant"], adjusted=True),
                _measure("review", "Senior review", "rate", ["rate"], ["provider"], type="process",
                         direction="higher_is_better", target=0.9, target_kind="standard"),
                _measure("secret", "Internal coding audit", "rate", ["rate"], ["provider"], published=False)],
            "publication": {"policy": "outcomes-in-full", "suppression_threshold": 7,
                            "minimum_volume": {"provider": 30, "consultant": 10}, "publish_consultants": True,
                            "measure_policies": {"mortality": "outcomes-in-full", "review": "outcomes-in-full"}},
            "created": "2026-12-02T10:00:00Z", "code": {"package_version": "0.1", "git_commit": "abc"},
            "data": {"source": {"sha256": "f" * 64}}, "config": {"sha256": "e" * 64}}


#: unit -> (level, name, parent, records, events, expected, flag of mortality, low volume)
_UNITS = {
    "A1": ("provider", "Alpha", None, 400, 86, 53.0, "alarm_high", False),
    "B2": ("provider", "Beta", None, 120, 10, 12.5, "as_expected", False),
    "C3": ("provider", HOSTILE, None, 60, 6, 5.9, "as_expected", False),
    "D4": ("provider", "Delta", None, 12, 3, 1.1, "", True),
    LOW_VOLUME_ID: ("provider", "Low-volume hospitals (fewer than 30 procedures)", None, 12, 3, 1.1, "", False),
    "national": ("national", "England (all hospitals)", None, 592, 105, 105.0, "", False),
    "K1": ("consultant", "K1", "A1", 250, 40, 33.0, "alert_high", False),
    "K2": ("consultant", "K2", "B2", 6, 1, 0.6, "", True),
    "K3": ("consultant", "K3", "B2", 100, 9, 10.2, "as_expected", False),
}


def _row(unit: str, measure: str, statistic: str, value: float, **figures) -> dict:
    level, name, parent, records, events, expected, flag, low = _UNITS[unit]
    row = {"audit": "demo", "period": "2025", "measure": measure, "statistic": statistic, "level": level,
           "unit_id": unit, "unit_name": name, "parent_id": parent, "numerator": events, "denominator": records,
           "observed": events, "expected": expected, "value": value, "lower95": value * 0.8, "upper95": value * 1.2,
           "target": 0.17 if statistic != "oe_ratio" else 1.0, "flag": flag, "suppressed": False,
           "method": "m", "policy": "outcomes-in-full", "low_volume": low, **figures}
    if low:  # the unit's own row keeps its records; its figures are in the pool
        row.update({k: NAN for k in ("numerator", "observed", "expected", "value", "lower95", "upper95")},
                   flag=None)
    if unit == LOW_VOLUME_ID:
        row["flag"] = None
    return row


def _open_data() -> pd.DataFrame:
    rows = []
    for unit, (level, _, _, records, events, expected, _, _) in _UNITS.items():
        if level == "consultant":
            continue
        rate = events / records
        rows += [_row(unit, "mortality", "rate", rate), _row(unit, "mortality", "oe_ratio", events / expected),
                 _row(unit, "mortality", "adjusted_rate", 0.17 * events / expected)]
        if unit != LOW_VOLUME_ID:
            review = {"A1": 0.95, "B2": 0.7, "C3": 0.9, "D4": 0.8, "national": 0.88}[unit]
            rows.append(_row(unit, "review", "rate", review, target=0.9, low_volume=False,
                             flag={"A1": "as_expected", "B2": "alarm_low"}.get(unit, "as_expected")
                             if level == "provider" else ""))
    rows.append(_row("A1", "secret", "rate", 0.555))
    for unit in ("K1", "K2", "K3"):
        _, _, _, records, events, expected, _, _ = _UNITS[unit]
        rows += [_row(unit, "mortality", "oe_ratio", events / expected),
                 _row(unit, "mortality", "adjusted_rate", 0.17 * events / expected)]
    frame = pd.DataFrame(rows)
    # D4 is low-volume in mortality only: its review row is its own (and carries its figures).
    review_d4 = (frame["unit_id"] == "D4") & (frame["measure"] == "review")
    frame.loc[review_d4, ["numerator", "value", "lower95", "upper95"]] = [9, 0.75, 0.5, 0.9]
    frame.loc[review_d4, "flag"] = "as_expected"
    # C3's review is published under small-numbers-everywhere with its small counts withheld (and, leak 1, its
    # status and limits with them).
    review_c3 = (frame["unit_id"] == "C3") & (frame["measure"] == "review")
    frame.loc[review_c3, ["numerator", "denominator", "observed", "value", "lower95", "upper95"]] = NAN
    frame.loc[review_c3, ["suppressed", "flag", "policy"]] = [True, None, "small-numbers-everywhere"]
    return frame.reindex(columns=[*OPEN_COLUMNS, "policy", "low_volume"])


def _funnels() -> pd.DataFrame:
    frames = []
    for measure, statistic, level, target in (("mortality", "oe_ratio", "provider", 1.0),
                                             ("mortality", "oe_ratio", "consultant", 1.0),
                                             ("review", "rate", "provider", 0.9)):
        curve = _curve(target if target < 1 else 0.17)
        if target == 1.0:
            curve[["lower95", "upper95", "lower998", "upper998"]] /= 0.17
            curve["target"] = 1.0
        curve["measure"], curve["statistic"], curve["level"] = measure, statistic, level
        frames.append(curve)
    return pd.concat(frames, ignore_index=True)


def _consultants() -> pd.DataFrame:
    """K1 works at A1 and B2 (two rows), K2 at B2 (too few procedures: pooled), K3 at B2."""
    return pd.DataFrame({"consultant_code": ["K1", "K1", "K2", "K3"],
                         "consultant_name": ["Asha Patel", "Asha Patel", "John Smith", "Mary O'Neill"],
                         "registration_number": ["1234567", "1234567", "7654321", "2345678"],
                         "provider_code": ["A1", "B2", "B2", "B2"], "specialty": "General surgery",
                         "records": [200, 50, 6, 100]})


def _notes() -> pd.DataFrame:
    return pd.DataFrame({"provider_code": ["A1", "C3"],
                         "statement": ["Our patients are older than most.\nWe have reviewed every death.", ""],
                         "validated_on": ["2026-03-12", "2026-02-01"]})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    config = load_config(REPO / "params" / "synthetic.yaml")
    write_pages(config, folder, _open_data(), _metadata(), [], _consultants(), _notes(), _funnels())
    return folder


def _read(site: Path, name: str) -> str:
    return (site / name).read_text(encoding="utf-8")


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _section(page: str, label: str) -> str:
    return re.search(rf"<section class='measure' aria-labelledby='[^']*'>\s*<h2 id='[^']*'>{re.escape(label)}</h2>"
                     r"(.*?)</section>", page, re.S).group(1)


def test_every_page_is_written(site):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert pages == ["consultants/K1.html", "consultants/K3.html", "consultants/index.html", "index.html",
                     "providers/A1.html", "providers/B2.html", "providers/C3.html", "providers/D4.html"]
    for name in pages:
        page = _read(site, name)
        assert page.startswith("<!DOCTYPE html>") and "<html lang='en-GB'>" in page
        assert "<main id='main'" in page and "<a class='skip-link' href='#main'>" in page
        assert "<b>" not in page  # the hostile name is escaped everywhere
        assert "Internal coding audit" not in page and "55.5%" not in page  # the internal measure nowhere
        headings = [int(h) for h in re.findall(r"<h([1-6])", page)]
        assert headings[0] == 1 and all(b - a <= 1 for a, b in zip(headings, headings[1:], strict=False)), name


def test_provider_page_has_statement_validation_and_every_measure(site):
    alpha = _read(site, "providers/A1.html")
    assert "<h2 id='statement'>Statement from the hospital</h2>" in alpha
    assert "Our patients are older than most.\nWe have reviewed every death." in alpha  # as written
    assert "Data validated by the hospital on 12 March 2026" in alpha
    assert "Not validated by the hospital" in _read(site, "providers/B2.html")
    assert "Statement from" not in _read(site, "providers/C3.html")  # a blank statement is no statement

    mortality = _text(_section(alpha, "30-day mortality"))
    assert "Status Alarm: worse than expected" in mortality
    # adjusted rate = 0.17 * 86 / 53; interval 0.8x to 1.2x; national 0.17 * 105 / 105
    assert "Risk-adjusted rate 27.6% (95% interval 22.1% to 33.1%)" in mortality
    assert "England (all hospitals) 17.0%" in mortality
    assert "Procedures analysed 400" in mortality and "Events 86" in mortality and "Expected 53.0" in mortality
    review = _text(_section(alpha, "Senior review"))
    assert "Status As expected" in review and "Rate 95.0%" in review

    # The funnel: every hospital with a result (and the pool), Alpha the labelled diamond; the table below.
    svg = re.search(r"<svg.*?</svg>", _section(alpha, "30-day mortality"), re.S).group(0)
    units = re.findall(r"data-unit='([^']*)'", svg)
    assert sorted(units) == sorted(["A1", "B2", "C3", LOW_VOLUME_ID])
    assert re.findall(r"<g class='unit [^']*\bown\b[^']*'[^>]*data-unit='([^']*)'", svg) == ["A1"]
    assert "aria-label='Alpha: Observed / expected (O/E) 1.62 (95% interval 1.30 to 1.95); alarm: worse than " \
           "expected'" in svg
    table = re.search(r"<table class='data sortable' id='table-mortality-provider'>.*?</table>",
                      _section(alpha, "30-day mortality"), re.S).group(0)
    names = [_text(n) for n in re.findall(r"<th scope='row'>(.*?)</th>", table)]
    assert names == ["Alpha (this page)", "Beta", "Delta", HOSTILE, "Low-volume hospitals (fewer than 30 procedures)"]
    assert "<tr class='own'>" in table


def test_every_count_is_marked_with_its_measure(site):
    for name in ("providers/A1.html", "providers/D4.html", "consultants/K1.html", "index.html"):
        page = _read(site, name)
        counts = re.findall(r"<[^>]*\bdata-count\b[^>]*>", page)
        assert counts, name
        assert all(re.search(r"data-count-measure='(mortality|review)'", c) for c in counts), (name, counts)
    alpha = _read(site, "providers/A1.html")
    assert "<span data-count data-count-measure='mortality'>86</span>" in alpha
    assert "<td class='num' data-count data-count-measure='review'>120</td>" in alpha


def test_low_volume_unit_shows_the_pool(site):
    delta = _read(site, "providers/D4.html")
    mortality = _text(_section(delta, "30-day mortality"))
    assert "Fewer than 30 procedures: included in the low-volume group." in mortality
    assert "(Low-volume hospitals (fewer than 30 procedures): 12 procedures, 3 events)" in mortality  # the pool's
    assert "Status In the low-volume group" in mortality
    assert "Low-volume group's risk-adjusted rate 46.4%" in mortality  # 0.17 * 3 / 1.1, the pool's
    assert "Procedures analysed 12" in mortality and "Events" not in mortality.split("Statistic")[0]
    # In the funnel the pool is highlighted (Delta's figures are in it); Delta itself is not a point.
    svg = re.search(r"<svg.*?</svg>", _section(delta, "30-day mortality"), re.S).group(0)
    assert re.findall(r"<g class='unit [^']*\bown\b[^']*'[^>]*data-unit='([^']*)'", svg) == [LOW_VOLUME_ID]
    assert "data-unit='D4'" not in svg
    # Its own review result stands (low volume is per measure).
    assert "Rate 75.0%" in _text(_section(delta, "Senior review"))
    index = _read(site, "index.html")
    row = re.search(r"<tr><th scope='row'><a href='providers/D4.html'>Delta</a>.*?</tr>", index, re.S).group(0)
    assert "Low-volume group" in row and "In the low-volume group" in row


def test_consultant_pages_by_name_with_gmc_number_and_providers(site):
    patel = _read(site, "consultants/K1.html")
    assert "<h1>Asha Patel</h1>" in patel
    facts = _text(re.search(r"<dl class='facts'>.*?</dl>", patel, re.S).group(0))
    assert "GMC number 1234567" in facts and "Specialty General surgery" in facts
    assert "Hospitals Alpha , Beta" in facts  # at both hospitals, linked
    assert "<a href='../providers/A1.html'>Alpha</a>" in patel and "<a href='../providers/B2.html'>Beta</a>" in patel
    mortality = _text(_section(patel, "30-day mortality"))
    assert "Alert: worse than expected" in mortality
    svg = re.search(r"<svg.*?</svg>", patel, re.S).group(0)
    assert sorted(re.findall(r"data-unit='([^']*)'", svg)) == ["K1", "K3"]  # every consultant with a result
    # No consultant's records at each hospital on a public page (a breakdown count, confidential).
    counts = re.findall(r"data-count[^>]*>([^<]*)<", patel)
    assert "250" in counts and "40" in counts and "200" not in counts and "50" not in counts
    # Pooled in every measure: no page, listed under the low-volume group on the index, unlinked at Beta.
    assert not (site / "consultants" / "K2.html").exists()
    index = _read(site, "consultants/index.html")
    pooled = index.split("<h2 id='pooled'>")[1]
    assert "<li>John Smith (<a href='../providers/B2.html'>Beta</a>)</li>" in pooled
    listed = [_text(n) for n in re.findall(r"<tr><th scope='row'>(.*?)</th>",
                                            re.search(r"id='table-consultants'.*?</table>", index, re.S).group(0))]
    assert listed == ["Mary O'Neill", "Asha Patel"]  # by surname
    beta = _read(site, "providers/B2.html")
    at_beta = _text(re.search(r"<h2 id='consultants'>.*?</ul>", beta, re.S).group(0))
    assert "Asha Patel" in at_beta and "John Smith (in the low-volume group)" in at_beta
    assert "<a href='../consultants/K1.html'>Asha Patel</a>" in beta


def test_open_data_per_measure_with_its_dictionary(site):
    data = _open_data()
    mortality = pd.read_csv(site / "data" / "mortality.csv", dtype={"unit_id": str, "parent_id": str})
    assert len(mortality) == (data["measure"] == "mortality").sum()
    assert set(mortality["statistic"]) == {"rate", "oe_ratio", "adjusted_rate"}
    assert list(mortality.columns) == [*OPEN_COLUMNS, "policy", "low_volume"]
    dictionary = pd.read_csv(site / "data" / "mortality_dictionary.csv", keep_default_na=False)
    assert list(dictionary.loc[dictionary["entry"] == "measure", "name"]) == ["mortality"]
    assert set(dictionary.loc[dictionary["entry"] == "statistic", "name"]) == {"rate", "oe_ratio", "adjusted_rate"}
    assert "low_volume" in set(dictionary.loc[dictionary["entry"] == "column", "name"])
    whole = pd.read_csv(site / "data" / "indicators.csv")
    assert "secret" not in set(whole["measure"]) and len(whole) == (data["measure"] != "secret").sum()
    index = _read(site, "index.html")
    assert "<a href='data/mortality.csv'>" in index and "<a href='data/review_dictionary.csv'>" in index


# ------------------------------------------------------------------ in a browser


def test_provider_page_in_a_browser(built_small_audit, tmp_path):
    """A built small audit's site: tab to a funnel point and read its label, sort a table, filter by name."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed: run scripts/system-deps.sh (auditreport system-deps)"
    site = built_small_audit.period_dir / "site"
    data = pd.read_csv(site / "indicators.csv", dtype={"unit_id": str})
    providers = data[(data["level"] == "provider") & (data["unit_id"] != LOW_VOLUME_ID)].drop_duplicates("unit_id")
    code, name = providers.sort_values("unit_name").iloc[0][["unit_id", "unit_name"]]
    oe = data[(data["level"] == "provider") & (data["measure"] == "mortality") & (data["statistic"] == "oe_ratio")]
    plotted = oe["value"].notna().sum()  # every provider with a published O/E (and a low-volume pool, if any)
    page_file = site / "providers" / f"{code}.html"
    assert (site / "reports" / f"{code}.pdf").is_file() and (site / "consultants" / "index.html").is_file()
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=CHROMIUM_ARGS, offline=True)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            assert Path(href.removeprefix("file://").split("#")[0]).is_file(), f"broken link {href}"

        # Keyboard: from the first funnel's skip link, Tab reaches its first point; its label is read out.
        page.locator("figure.funnel-figure a.skip-figure").first.focus()
        page.keyboard.press("Tab")
        label = page.evaluate("document.activeElement.getAttribute('aria-label')")
        assert page.evaluate("document.activeElement.classList.contains('unit')")
        assert re.match(r".+: Observed / expected \(O/E\) \d\.\d\d .*; (as expected|alert|alarm)", label), label
        assert page.locator("[data-readout]").first.inner_text() == label
        units = page.locator("figure.funnel-figure").first.locator("g.unit")
        assert units.count() == plotted >= len(providers) - 1  # every provider with a published value
        own = page.locator("figure.funnel-figure").first.locator("g.unit.own")
        assert own.count() == 1 and own.get_attribute("data-unit") == code
        assert own.locator("text").text_content() == name

        # Sort the funnel's table by its value column, by button, both ways.
        page.locator("details.funnel-table summary").first.click()
        table = page.locator("table.sortable").first
        button = table.locator("thead th button", has_text="Observed / expected")
        button.click()
        # Columns: provider (row heading), code, procedures, events, expected, O/E: the 6th; "*" (withheld) last.
        texts = table.locator("tbody tr > :nth-child(6)").all_inner_texts()
        values = [float(v) for v in texts if v != "*"]
        assert values == sorted(values) and len(values) == plotted and texts[: len(values)] == [f"{v:.2f}" for v in values]
        assert table.locator("thead th", has_text="Observed / expected").get_attribute("aria-sort") == "ascending"
        button.press("Enter")
        values = [float(v) for v in table.locator("tbody tr > :nth-child(6)").all_inner_texts() if v != "*"]
        assert values == sorted(values, reverse=True)

        # The index's search filters providers by name.
        page.goto((site / "index.html").as_uri())
        search = page.get_by_label("Search providers by name or code")
        search.fill(name.split()[0])
        visible = page.eval_on_selector_all("#table-providers tbody tr:not([hidden]) th",
                                            "els => els.map(e => e.textContent.trim())")
        assert name in visible and all(name.split()[0].lower() in v.lower() for v in visible)
        assert page.locator(".search-count").inner_text().startswith(f"Showing {len(visible)} of {len(providers)}")
        search.fill("")
        assert page.locator("#table-providers tbody tr:not([hidden])").count() == len(providers)
        browser.close()
    assert not errors, errors


def test_validation_dates_in_words():
    import datetime as dt

    from auditreport.publication.pages import date_words

    assert date_words("2026-03-12") == "12 March 2026"  # as the provider notes hold it (ISO text)
    assert date_words(pd.Timestamp("2026-03-02")) == "2 March 2026" and date_words(dt.date(2026, 1, 5)) == "5 January 2026"
    assert date_words("") == date_words(None) == date_words(NAN) == ""  # not validated


def test_withheld_figures_are_shown_as_withheld(site):
    gamma = _read(site, "providers/C3.html")
    review = _section(gamma, "Senior review")
    assert "Status Not shown (small numbers)" in _text(review) and "Rate *" in _text(review)
    assert "<span data-count data-count-measure='review'>*</span>" in review
    svg = re.search(r"<svg.*?</svg>", review, re.S).group(0)
    assert "data-unit='C3'" not in svg and "data-unit='A1'" in svg  # no point without its value
    row = re.search(r"<tr class='own'>.*?</tr>", review, re.S).group(0)
    assert "<td class='num' data-count data-count-measure='review'>*</td>" in row
