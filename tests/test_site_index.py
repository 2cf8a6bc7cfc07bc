"""The publication site's index and data dictionary: every published measure as a reader meets it.

The tables here are made up in the bundle's (format 2) shape: two providers and the national row, five
published measures of every kind and one internal measure, which must appear nowhere.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from auditreport.config import load_config
from auditreport.publication.pages import SiteData, index_page
from auditreport.publication.site import OPEN_COLUMNS, data_dictionary

REPO = Path(__file__).resolve().parents[1]
NAN = float("nan")


def _measure(id: str, label: str, kind: str, headline: str, statistics: list[str], *, type: str = "outcome",
             direction: str = "lower_is_better", adjusted: bool = False, carries_status: bool = False,
             published: bool = True, target: float | None = None, value_unit: str = "") -> dict:
    """A measure's entry in metadata.json, as the national stage writes it."""
    return {"id": id, "label": label, "description": f"{label}, one line", "kind": kind, "type": type,
            "direction": direction, "target": target, "target_kind": "national" if target is None else "standard",
            "adjusted": adjusted, "carries_status": carries_status, "headline": headline, "statistics": statistics,
            "levels": ["provider"], "published": published, "value_unit": value_unit, "overdispersion": {},
            "method": f"how {id} was computed", "national": {}, "horizons": [], "cusum": None}


def _metadata(horizons: tuple[int, ...] = (30, 365)) -> dict:
    survival = [f"survival_{h}d" for h in horizons]
    return {"wording": {"activity": "admissions", "activity_singular": "admission", "provider": "hospital",
                        "providers": "hospitals", "population": "England",
                        "national_unit_name": "England (all hospitals)"},
            "measures": [
                _measure("mortality", "30-day mortality", "proportion", "adjusted_rate",
                         ["rate", "oe_ratio", "adjusted_rate"], adjusted=True, carries_status=True),
                _measure("review", "Senior review within 14 hours", "proportion", "rate", ["rate"], type="process",
                         direction="higher_is_better", carries_status=True, target=0.9),
                _measure("secret", "Internal audit of coding", "proportion", "rate", ["rate"], type="process",
                         carries_status=True, published=False),
                _measure("long_stay", "Stays over 14 days", "proportion", "rate", ["rate"]),
                _measure("los", "Length of stay", "ratio", "oe_ratio", ["oe_ratio", "mean", "median"],
                         adjusted=True, carries_status=True, value_unit="days"),
                _measure("survival", "Survival", "survival", "cox_oe_ratio", [*survival, "cox_oe_ratio"],
                         adjusted=True, carries_status=True),
            ]}


#: (measure, statistic) -> (value for Alpha, flag for Alpha, value for Beta, flag for Beta)
_FIGURES = {
    ("mortality", "rate"): (0.30, "", 0.08, ""),
    ("mortality", "oe_ratio"): (1.62, "alarm_high", 0.95, "as_expected"),
    ("mortality", "adjusted_rate"): (0.214, "alarm_high", 0.122, "as_expected"),
    ("review", "rate"): (0.97, "alarm_high", 0.71, "alert_low"),
    ("secret", "rate"): (0.555, "alarm_low", 0.444, "as_expected"),
    ("long_stay", "rate"): (0.25, "", 0.05, ""),
    ("los", "oe_ratio"): (1.08, "as_expected", 0.87, "alarm_low"),
    ("los", "mean"): (9.44, "", 7.25, ""),
    ("los", "median"): (7.0, "", 6.0, ""),
    ("survival", "cox_oe_ratio"): (1.1, "as_expected", NAN, "as_expected"),
}


def _indicators(horizons: tuple[int, ...] = (30, 365)) -> pd.DataFrame:
    """The public indicator table (as the bundle's) for Alpha (A1), Beta (B2, its survival suppressed)
    and the national row."""
    figures = dict(_FIGURES)
    for h in horizons:
        figures[("survival", f"survival_{h}d")] = (1 - h / 4000, "", NAN, "")
    rows = []
    for (measure, statistic), (a, fa, b, fb) in figures.items():
        for unit, name, value, flag, n in (("A1", "Alpha", a, fa, 120.0), ("B2", "Beta", b, fb, 95.0),
                                           ("national", "England (all hospitals)", (a + b) / 2, "", 215.0)):
            suppressed = measure == "survival" and unit == "B2"
            rows.append({"audit": "demo", "period": "2024", "measure": measure, "statistic": statistic,
                         "level": "national" if unit == "national" else "provider", "unit_id": unit,
                         "unit_name": name, "parent_id": None, "numerator": NAN if suppressed else 12.0,
                         "denominator": NAN if suppressed else n, "value": NAN if suppressed else value,
                         "flag": flag, "suppressed": suppressed})
    return pd.DataFrame(rows).reindex(columns=OPEN_COLUMNS)


def _text(cell: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())


def _index_table(page: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The index's sortable table: its headings, and each row's cells (the name a row heading, the rest
    data cells) by heading, keyed by provider code."""
    table = re.search(r"<table class='data sortable'[^>]*>(.*?)</table>", page, re.S).group(1)
    head, body = table.split("<tbody>")
    headers = [_text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = dict(zip(headers, (_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)),
                         strict=True))
        rows[cells["Code"]] = cells
    return headers, rows


def _page(horizons: tuple[int, ...] = (30, 365)) -> str:
    return index_page(SiteData(load_config(REPO / "params" / "synthetic.yaml"), _indicators(horizons),
                               _metadata(horizons), []))


def test_index_lists_every_published_measure_of_every_provider():
    page = _page()
    headers, rows = _index_table(page)
    assert headers[:3] == ["Hospital", "Code", "Cases"] and headers[-1] == "Public report"
    assert set(rows) == {"A1", "B2"}
    # The headline of each published measure, in declaration order: crude rates of adjusted measures,
    # means and medians of ratios are context, not on the index.
    assert [h for h in headers[3:-1] if not h.endswith(": status")] == [
        "30-day mortality: Risk-adjusted rate", "Senior review within 14 hours: Rate", "Stays over 14 days: Rate",
        "Length of stay: Observed / expected (O/E)", "Survival: Cox observed / expected (Cox O/E)",
        "Survival: Survival at 30 days", "Survival: Survival at 365 days"]
    alpha, beta = rows["A1"], rows["B2"]
    assert alpha["30-day mortality: Risk-adjusted rate"] == "21.4%"
    assert alpha["Senior review within 14 hours: Rate"] == "97.0%"
    assert beta["Length of stay: Observed / expected (O/E)"] == "0.87"
    assert alpha["Survival: Survival at 365 days"] == "90.9%"  # 1 - 365 / 4000
    # Beta's survival figures are suppressed: shown as *, never as a number.
    assert beta["Survival: Cox observed / expected (Cox O/E)"] == "*" and beta["Survival: Survival at 30 days"] == "*"
    assert alpha["Cases"] == "120" and beta["Cases"] == "95"  # the denominator of mortality (no eligibility filter)
    assert "<th scope='col' class='num'>Cases</th>" in page
    # Cases are a count of mortality's unit result: marked for the disclosure checker with their measure.
    assert re.search(r"<td class='num' data-count data-count-measure='mortality'[^>]*>120</td>", page)


def test_status_in_words_by_direction_and_only_where_the_measure_carries_one():
    headers, rows = _index_table(_page())
    assert [h for h in headers if h.endswith(": status")] == [
        "30-day mortality: status", "Senior review within 14 hours: status", "Length of stay: status",
        "Survival: status"]  # the unadjusted outcome measure (stays over 14 days) carries none
    alpha, beta = rows["A1"], rows["B2"]
    # Above the upper limit is worse where lower is better (mortality) and better where higher is (review).
    assert "worse than expected" in alpha["30-day mortality: status"] and "Alarm" in alpha["30-day mortality: status"]
    assert "better than expected" in alpha["Senior review within 14 hours: status"]
    assert "worse than expected" in beta["Senior review within 14 hours: status"]
    assert "Alert" in beta["Senior review within 14 hours: status"]
    assert "better than expected" in beta["Length of stay: status"]  # below the lower limit, lower is better
    assert "As expected" in alpha["Length of stay: status"]


def test_internal_measure_appears_nowhere_on_the_site():
    page = _page()
    assert "Internal audit of coding" not in page and "secret" not in page
    assert "55.5%" not in page  # Alpha's value of the internal measure
    dictionary = data_dictionary(_metadata(), _indicators())
    assert "secret" not in set(dictionary["name"]) and "Internal audit of coding" not in set(dictionary["label"])


def test_survival_columns_in_order_of_time():
    """Horizons of 730 and 1825 days: 730 first (as text, 'survival_1825d' sorts before 'survival_730d')."""
    headers, rows = _index_table(_page((1825, 730, 30)))
    survival = [h for h in headers if "Survival at" in h]
    assert survival == ["Survival: Survival at 30 days", "Survival: Survival at 730 days",
                        "Survival: Survival at 1825 days"]
    assert [rows["A1"][h] for h in survival] == ["99.2%", "81.8%", "54.4%"]


def test_measures_table_says_what_each_measure_is():
    page = _page()
    table = re.search(r"<caption>The published measures</caption>(.*?)</table>", page, re.S).group(1)
    rows = [[_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
            for r in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)]
    by_label = {r[0]: r for r in rows}
    assert list(by_label) == ["30-day mortality", "Senior review within 14 hours", "Stays over 14 days",
                              "Length of stay", "Survival"]
    review = by_label["Senior review within 14 hours"]
    assert review[3] == "higher is better" and "90.0%" in review[4]  # limits around the fixed standard
    assert by_label["Stays over 14 days"][4] == "none (context only)"
    assert by_label["30-day mortality"][5] == "16.8%"  # the national risk-adjusted rate, (21.4 + 12.2) / 2
    assert "England (all hospitals)" in re.search(r"<caption>The published measures</caption>.*?</thead>",
                                                   page, re.S).group(0)


def test_data_dictionary_lists_each_measure_statistic_and_column():
    dictionary = data_dictionary(_metadata(), _indicators())
    measures = dictionary[dictionary["entry"] == "measure"].set_index("name")
    assert list(measures.index) == ["mortality", "review", "long_stay", "los", "survival"]
    review = measures.loc["review"]
    assert (review["label"], review["kind"], review["type"], review["direction"]) == (
        "Senior review within 14 hours", "proportion", "process", "higher is better")
    assert review["description"] == "Senior review within 14 hours, one line"
    assert review["target"] == "0.9 (a fixed standard)" and measures.loc["long_stay", "target"] == "the national value"
    assert measures.loc["mortality", "target"] == "expected for the case mix (O/E = 1)"
    assert measures.loc["los", "unit"] == "days" and measures.loc["los", "statistics"] == "oe_ratio mean median"
    statistics = dictionary[dictionary["entry"] == "statistic"]
    assert list(statistics["name"]) == ["rate", "oe_ratio", "adjusted_rate", "mean", "median", "survival_30d",
                                        "survival_365d", "cox_oe_ratio"]
    assert (statistics["description"] != "").all()
    assert "at 365 days" in statistics.set_index("name").at["survival_365d", "description"]
    columns = dictionary[dictionary["entry"] == "column"]
    assert list(columns["name"]) == OPEN_COLUMNS and (columns["description"] != "").all()
