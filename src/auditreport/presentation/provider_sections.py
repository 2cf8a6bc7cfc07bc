"""The sections only a provider's feedback report has: at a glance, its funnel, case mix,
consultants, data quality and what a flag means.

Each function takes the report's :class:`ReportContext` and returns a typed :class:`Section`
(``None`` where the section does not apply); the plain-English readings are text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.analysis.quality import AGE_LABELS
from auditreport.presentation import figures
from auditreport.presentation.blocks import (
    Chart,
    Count,
    Flag,
    Group,
    Section,
    Strong,
    chart,
    paragraph,
    section,
    table,
)
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import num, pct
from auditreport.presentation.shared_sections import INDICATOR_LABEL, MORTALITY, completeness, funnel
from auditreport.rules.disclosure import SUPPRESSED


def survival_days(indicator: str) -> int:
    """"survival_365d" -> 365: the horizon, to order survival indicators by time (as text, 1825 < 730)."""
    return int(indicator.removeprefix("survival_").removesuffix("d"))


def survival_label(indicator: str) -> str:
    """"survival_365d" -> "Survival at 365 days"."""
    return f"Survival at {indicator.removeprefix('survival_').removesuffix('d')} days"


def at_a_glance(ctx: ReportContext) -> Section:
    """Each indicator: this provider's value, the national value, the interval and the flag."""
    mine = ctx.unit_rows("provider", ctx.provider)
    nat = ctx.unit_rows("national", "national")
    rows = []
    for indicator in list(MORTALITY) + sorted((i for i in mine.index if i.startswith("survival_")), key=survival_days):
        if indicator not in mine.index:
            continue
        r, n = mine.loc[indicator], nat.loc[indicator]
        fmt = num if indicator == "oe_ratio" else pct
        label = INDICATOR_LABEL.get(indicator, survival_label(indicator))
        interval = SUPPRESSED if r["suppressed"] else f"{fmt(r['lower95'])} to {fmt(r['upper95'])}"
        rows.append([label, fmt(r["value"]), fmt(n["value"]), interval, Flag(r["flag"])])
    cases = mine.loc["crude_mortality"]
    sentences = [crude_reading(cases, nat.loc["crude_mortality"]), reading(mine.loc["risk_adjusted_mortality"]),
                 survival_reading(ctx), small_numbers_caveat(ctx), quality_caveat(ctx)]
    lead = paragraph(ctx.provider_name, " reported ", Count(ctx.count_text(cases["denominator"])),
                     " procedures in the period, with ", Count(ctx.count_text(cases["numerator"])),
                     f" deaths within {ctx.meta['audit']['outcome_days']} days.", css_class="lead")
    return section("At a glance", lead, *(paragraph(x) for x in sentences if x), table(
        ["Indicator", "This provider", "National", "95% interval", "Outlier status"], rows,
        numeric=(1, 2), caption="Indicators for this provider against the national figure"))


def reading(row: pd.Series) -> str:
    """A plain-English sentence about a risk-adjusted mortality row."""
    if row.get("suppressed", False) or row["value"] != row["value"]:
        return ("Its risk-adjusted mortality is not shown because it involves small numbers, or could be used with "
                "other published figures to work them out.")
    value = pct(row["value"])
    sentences = {
        "as_expected": f"Its risk-adjusted mortality of {value} is within the expected range.",
        "alert_high": f"Its risk-adjusted mortality of {value} is higher than expected: above the 95% "
                      "control limit (an alert).",
        "alarm_high": f"Its risk-adjusted mortality of {value} is much higher than expected: above the 99.8% "
                      "control limit (an alarm).",
        "alert_low": f"Its risk-adjusted mortality of {value} is lower than expected: below the 95% control "
                     "limit (a positive alert).",
        "alarm_low": f"Its risk-adjusted mortality of {value} is much lower than expected: below the 99.8% "
                     "control limit (a positive alarm).",
    }
    return sentences.get(row["flag"], f"Its risk-adjusted mortality is {value}.")


def crude_reading(row: pd.Series, national: pd.Series) -> str:
    """A sentence comparing the crude rate with the national one, and why it is not the verdict."""
    if row.get("suppressed", False) or row["value"] != row["value"]:
        return ""
    mine, nat = row["value"], national["value"]
    side = "higher than" if mine > nat * 1.005 else "lower than" if mine < nat * 0.995 else "about the same as"
    return (f"Its crude (unadjusted) mortality of {pct(mine)} is {side} the national {pct(nat)}; crude rates do "
            "not allow for how ill the patients were, so the risk-adjusted figure is the fair comparison.")


def survival_reading(ctx: ReportContext) -> str:
    """A sentence on survival at the longest horizon against the country."""
    horizons = ctx.meta.get("survival", {}).get("horizons") or []
    if not horizons or not ctx.provider:
        return ""
    ind = f"survival_{max(horizons)}d"
    mine, nat = ctx.unit_rows("provider", ctx.provider), ctx.unit_rows("national", "national")
    if ind not in mine.index or mine.loc[ind, "suppressed"] or mine.loc[ind, "value"] != mine.loc[ind, "value"]:
        return ""
    r, n = mine.loc[ind], nat.loc[ind]
    overlap = r["lower95"] <= n["value"] <= r["upper95"]
    verdict = ("the national figure lies within its 95% interval" if overlap else
               "the national figure lies outside its 95% interval, though survival is not risk-adjusted")
    return (f"Survival at {max(horizons)} days was {pct(r['value'])} ({pct(r['lower95'])} to {pct(r['upper95'])}) "
            f"against {pct(n['value'])} nationally: {verdict}.")


def small_numbers_caveat(ctx: ReportContext) -> str:
    """Warn where small numbers make the results imprecise, or (public) where figures were withheld."""
    if not ctx.provider:
        return ""
    mine = ctx.unit_rows("provider", ctx.provider)
    row = mine.loc["risk_adjusted_mortality"]
    if ctx.public and bool(mine["suppressed"].any()):
        return (f"Some figures are shown as * because they involve between 1 and {ctx.threshold} patients, or "
                "could be worked out from figures that do; this protects patients' confidentiality.")
    expected = row.get("expected", np.nan)
    if expected == expected and expected < 10:
        return (f"With fewer than 10 expected deaths ({num(expected, 1)}), a few deaths either way move the rate a "
                "lot: the interval is wide and the result should be read with caution.")
    return ""


def quality_caveat(ctx: ReportContext) -> str:
    """A sentence when this provider's data are notably less complete than the country's."""
    if not ctx.provider:
        return ""
    q = ctx.bundle.quality.set_index("unit_id")
    if ctx.provider not in q.index:
        return ""
    mine, nat = q.loc[ctx.provider], q.loc["national"]
    worse = [c.removeprefix("complete: ") for c in q.columns if c.startswith("complete: ")
             and mine[c] < 0.95 and mine[c] < nat[c] - 0.02]
    if not worse:
        return "Its data were as complete as the country's for the key fields."
    return (f"Its data were less complete than the country's for {', '.join(worse)}; missing risk factors were "
            "imputed, which can understate how ill its patients were.")


def funnel_section(ctx: ReportContext) -> Section:
    """This provider's risk-adjusted mortality on the funnel of all providers, with its control limits."""
    row = ctx.unit_rows("provider", ctx.provider).loc["risk_adjusted_mortality"]
    hidden = int((ctx.indicators.query("level == 'provider' and indicator == 'risk_adjusted_mortality'")
                  ["value"].isna()).sum())
    limits = None if row["suppressed"] else paragraph(
        f"Control limits at this provider's expected deaths: 95% {pct(row['limit_lower95'])} to "
        f"{pct(row['limit_upper95'])}; 99.8% {pct(row['limit_lower998'])} to {pct(row['limit_upper998'])}.")
    note = paragraph(f"{hidden} provider(s) with small numbers are not plotted.", css_class="note") if hidden else None
    return section("Risk-adjusted mortality: funnel plot", paragraph(reading(row)), limits, note, funnel(ctx))


def case_mix_section(ctx: ReportContext) -> Section:
    """The share of this provider's patients in each risk-factor group against the country's."""
    mix = ctx.bundle.casemix
    mine = mix[mix["unit_id"] == ctx.provider].set_index(["variable", "category"])
    nat = mix[mix["unit_id"] == "national"].set_index(["variable", "category"])
    shares = []
    tables = []
    for variable in nat.index.get_level_values(0).unique():
        order = _category_order(nat.loc[variable].index)
        counts = {c: float(mine["n"].get((variable, c), 0)) for c in order}
        # The categories add up to the provider's cases, which are published: hide complements too.
        hidden = ctx.hidden_cells(counts)
        rows = []
        for category in order:
            share = mine["share"].get((variable, category), 0.0)
            nat_share = nat.loc[(variable, category), "share"]
            rows.append([category, ctx.count_text(counts[category], category in hidden),
                         SUPPRESSED if category in hidden else pct(share), pct(nat_share)])
            shares.append({"variable": _variable_label(variable), "category": str(category),
                           "share": np.nan if category in hidden else share, "national": nat_share})
        tables.append(table([_variable_label(variable), "Patients", "Share", "National share"], rows,
                            numeric=(2, 3), counts=(1,), css_class="data compact"))
    return section(
        "Case mix",
        paragraph("Share of this provider's patients in each group, against the country. Groups are the risk "
                  "factors of the national model; a provider with a sicker case mix has more expected deaths."),
        chart(figures.case_mix_chart(pd.DataFrame(shares), unit_label=ctx.provider_name)),
        Group(tuple(tables), "casemix-tables"))


def _variable_label(variable: str) -> str:
    special = {"asa": "ASA grade", "bmi": "BMI", "predicted risk (national tenths)": "Predicted risk (national tenths)"}
    return special.get(variable, variable.replace("_", " ").capitalize())


def _category_order(categories: pd.Index) -> list[str]:
    """Age bands in age order, other categories alphabetically, "missing" last."""
    rank = {label: i for i, label in enumerate(AGE_LABELS)}
    return sorted(categories, key=lambda c: (c == "missing", rank.get(c, len(rank)), str(c)))


def quality_section(ctx: ReportContext) -> Section:
    """Records submitted and analysed, exclusions, completeness of key fields and imputation."""
    q = ctx.bundle.quality.set_index("unit_id")
    mine, nat = q.loc[ctx.provider], q.loc["national"]
    excluded = [c for c in q.columns if c.startswith("excluded: ")]
    # Exclusion reasons add up to submitted minus analysed, both published: suppress complements too.
    hidden = ctx.hidden_cells({c: float(mine[c]) for c in excluded})
    rows = [["Records submitted", ctx.count_text(mine["records_submitted"]), f"{int(nat['records_submitted']):,}"],
            ["Records analysed", ctx.count_text(mine["records_analysed"]), f"{int(nat['records_analysed']):,}"]]
    for col in excluded:
        rows.append([f"Excluded: {col.removeprefix('excluded: ')}", ctx.count_text(mine[col], col in hidden),
                     ctx.count_text(nat[col])])
    for col in q.columns:
        if col.startswith("complete: "):
            rows.append([f"Completeness: {col.removeprefix('complete: ')}",
                         completeness(ctx, mine[col], mine["records_analysed"]),
                         completeness(ctx, nat[col], nat["records_analysed"])])
    for col in q.columns:
        if col.startswith("imputed: "):
            rows.append([f"Imputed: {col.removeprefix('imputed: ')}", ctx.count_text(mine[col]),
                         ctx.count_text(nat[col])])
    note = paragraph(f"Completeness is shown as * where between 1 and {ctx.threshold} records lack the field, "
                     "since the percentage with the number of records would give the count.",
                     css_class="note") if ctx.public else None
    return section("Data quality", table(["Measure", "This provider", "National"], rows, numeric=(1, 2),
                                         counts=(1, 2), caption="Records, completeness of key fields and imputation"),
                   note)


def consultant_section(ctx: ReportContext) -> Section | None:
    """This provider's consultants' risk-adjusted mortality, and the funnel of every consultant.

    ``None`` in a public report when the audit does not publish consultants, or when there are none.
    """
    if ctx.public and not ctx.meta["publication"]["publish_consultants"]:
        return None
    t = ctx.indicators
    rows = t[(t["level"] == "consultant") & (t["parent_id"] == ctx.provider)
             & (t["indicator"] == "risk_adjusted_mortality")].sort_values("unit_id")
    if rows.empty:
        return None
    body = [[r.unit_id, ctx.count_text(r.denominator), ctx.count_text(r.observed, bool(r.suppressed)),
             num(r.expected, 1), pct(r.value), SUPPRESSED if r.suppressed else f"{pct(r.lower95)} to {pct(r.upper95)}",
             Flag(r.flag)] for r in rows.itertuples()]
    # The explanation is the caption, so the heading stays on the page of its table.
    return section("Consultants", table(
        ["Consultant", "Cases", "Deaths", "Expected", "Risk-adjusted", "95% interval", "Status"], body,
        numeric=(3, 4), counts=(1, 2), caption="Risk-adjusted mortality by consultant (identified by code), "
        "with the national risk model and limits used for providers"), consultants_funnel(ctx, set(rows["unit_id"])))


def consultants_funnel(ctx: ReportContext, mine: set[str]) -> Chart:
    """Funnel of every consultant nationally, this provider's consultants highlighted."""
    t = ctx.indicators
    units = t[(t["level"] == "consultant") & (t["indicator"] == "risk_adjusted_mortality") & t["value"].notna()]
    curves = ctx.bundle.funnels
    curve = curves[(curves["level"] == "consultant") & (curves["indicator"] == "risk_adjusted_mortality")]
    return chart(figures.funnel_plot(
        units, curve, target=float(ctx.meta["national"]["rate"]), x="expected", y="value",
        xlabel="Expected deaths (log scale)", ylabel="Risk-adjusted mortality (%)",
        title="Risk-adjusted mortality: consultants", percent=True, highlight_set=mine,
        highlight_label="this provider's consultants"))


def next_steps(ctx: ReportContext) -> Section:
    """What an alert or alarm starts under the HQIP outlier process, and whom to ask."""
    contact = ctx.meta["audit"].get("contact") or "the audit team"
    return section(
        "What a flag means and what happens next",
        paragraph("Under the HQIP outlier process an ", Strong("alert"), " (beyond the 95% limit) or an ",
                  Strong("alarm"), " (beyond the 99.8% limit) starts a staged review before anything is published: "
                  "the audit checks the data; the provider's clinical lead is told and asked to check the data and "
                  "respond; if the flag stands, the chief executive is told and, for a confirmed alarm, the Care "
                  "Quality Commission. Results lower than expected are reported too, as positive outliers."),
        paragraph(f"Questions about this report: {contact}."))
