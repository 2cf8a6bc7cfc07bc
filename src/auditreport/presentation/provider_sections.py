"""The sections only a provider's feedback report has besides its measures: at a glance, case mix,
data quality and what a flag means (each measure's own section is :mod:`.measure_sections`).

Each function takes the report's :class:`ReportContext` and returns a typed :class:`Section`
(``None`` where the section does not apply); the plain-English readings are text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.analysis.quality import AGE_LABELS
from auditreport.presentation import figures
from auditreport.presentation.blocks import Count, Group, Section, Strong, chart, paragraph, section, table
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import pct
from auditreport.presentation.measure_parts import (
    interval_text,
    no_eligible_records,
    statistic_label,
    status_cell,
    value_text,
)
from auditreport.presentation.shared_sections import completeness, completeness_columns
from auditreport.rules.disclosure import SUPPRESSED


def survival_days(indicator: str) -> int:
    """"survival_365d" -> 365: the horizon, to order survival indicators by time (as text, 1825 < 730)."""
    return int(indicator.removeprefix("survival_").removesuffix("d"))


def survival_label(indicator: str) -> str:
    """"survival_365d" -> "Survival at 365 days"."""
    return f"Survival at {indicator.removeprefix('survival_').removesuffix('d')} days"


def at_a_glance(ctx: ReportContext) -> Section:
    """Every measure: this provider's headline value, the national value, the interval and the status in
    words by the measure's direction; the crude rate of an adjusted proportion as a context row."""
    words = ctx.wording
    rows = []
    for m in ctx.measures:
        mine = ctx.unit_rows("provider", ctx.provider, m["id"])
        nat = ctx.unit_rows("national", "national", m["id"])
        shown = [m["headline"]] + (["rate"] if m["kind"] == "proportion" and m.get("adjusted") else [])
        if no_eligible_records(mine):
            rows.append([m["label"], "", f"no eligible {words['activity']}", "", "", ""])
            continue
        for stat in shown:
            if stat not in mine.index:
                continue
            r = mine.loc[stat]
            label = m["label"] if stat == m["headline"] else f"{m['label']}: crude rate (context)"
            rows.append([label, statistic_label(m, stat), value_text(m, stat, r["value"]),
                         value_text(m, stat, nat["value"].get(stat, float("nan"))), interval_text(m, stat, r),
                         status_cell(m, stat, r["flag"])])
    records = _records_analysed(ctx)
    lead = paragraph(ctx.provider_name, " reported ", Count(ctx.count_text(records)),
                     f" {words['activity']} in the period.", css_class="lead") if records == records else None
    quality = quality_caveat(ctx)
    return section("At a glance", lead, paragraph(quality) if quality else None, table(
        ["Measure", "Statistic", f"This {words['provider']}", words["population"], "95% interval", "Status"], rows,
        numeric=(2, 3), caption=f"Every measure for this {words['provider']} against {words['national_unit_name']}"))


def _records_analysed(ctx: ReportContext) -> float:
    """This provider's records analysed (the data quality table), NaN where it has no row."""
    q = ctx.bundle.quality.set_index("unit_id")
    return float(q.loc[ctx.provider, "records_analysed"]) if ctx.provider in q.index else float("nan")


def quality_caveat(ctx: ReportContext) -> str:
    """A sentence when this provider's data are notably less complete than the country's."""
    if not ctx.provider:
        return ""
    q = ctx.bundle.quality.set_index("unit_id")
    if ctx.provider not in q.index:
        return ""
    mine, nat = q.loc[ctx.provider], q.loc["national"]
    worse = [ctx.factor_label(c.removeprefix("complete: ")) for c in completeness_columns(q)
             if mine[c] < 0.95 and mine[c] < nat[c] - 0.02]
    if not worse:
        return f"Its data were as complete as those of {ctx.wording['national_unit_name']} for the key fields."
    return (f"Its data were less complete than those of {ctx.wording['national_unit_name']} for "
            f"{', '.join(worse)}; missing risk factors were imputed, which can understate how ill or complex its "
            f"{ctx.wording['activity']} were.")


def case_mix_section(ctx: ReportContext) -> Section | None:
    """The share of this provider's records in each risk-factor group against the national share.

    ``None`` when the audit has no risk factors (nothing to show)."""
    mix = ctx.bundle.casemix
    if mix.empty:
        return None
    words = ctx.wording
    mine = mix[mix["unit_id"] == ctx.provider].set_index(["variable", "category"])
    nat = mix[mix["unit_id"] == "national"].set_index(["variable", "category"])
    shares = []
    tables = []
    named = ctx.risk_factor_wording
    for variable in nat.index.get_level_values(0).unique():
        label = named.get(variable, {}).get("label") or _variable_label(variable)
        levels = named.get(variable, {}).get("labels", {})
        order = _category_order(nat.loc[variable].index)
        counts = {c: float(mine["n"].get((variable, c), 0)) for c in order}
        # The categories add up to the provider's cases, which are published: hide complements too.
        hidden = ctx.hidden_cells(counts)
        rows = []
        for category in order:
            share = mine["share"].get((variable, category), 0.0)
            nat_share = nat.loc[(variable, category), "share"]
            rows.append([levels.get(str(category), category), ctx.count_text(counts[category], category in hidden),
                         SUPPRESSED if category in hidden else pct(share), pct(nat_share)])
            shares.append({"variable": label, "category": levels.get(str(category), str(category)),
                           "share": np.nan if category in hidden else share, "national": nat_share})
        tables.append(table([label, words["activity"].capitalize(), "Share",
                             f"{words['population']} share"], rows,
                            numeric=(2, 3), counts=(1,), css_class="data compact"))
    return section(
        "Case mix",
        paragraph(f"Share of this {words['provider']}'s {words['activity']} in each group, against "
                  f"{words['national_unit_name']}. Groups are the risk factors of the national models; a "
                  f"{words['provider']} with a higher-risk case mix has more expected events."),
        chart(figures.case_mix_chart(pd.DataFrame(shares), unit_label=ctx.provider_name)),
        Group(tuple(tables), "casemix-tables"))


def _variable_label(variable: str) -> str:
    """A risk factor's name where the definition gives it no ``label``."""
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
    words = ctx.wording
    rows = [["Records submitted", ctx.count_text(mine["records_submitted"]), f"{int(nat['records_submitted']):,}"],
            ["Records analysed", ctx.count_text(mine["records_analysed"]), f"{int(nat['records_analysed']):,}"]]
    for col in excluded:
        rows.append([f"Excluded: {col.removeprefix('excluded: ')}", ctx.count_text(mine[col], col in hidden),
                     ctx.count_text(nat[col])])
    for col in completeness_columns(q):
        rows.append([f"Completeness: {ctx.factor_label(col.removeprefix('complete: '))}",
                     completeness(ctx, mine[col], mine["records_analysed"]),
                     completeness(ctx, nat[col], nat["records_analysed"])])
    for col in q.columns:
        if col.startswith("imputed: "):
            rows.append([f"Imputed: {ctx.factor_label(col.removeprefix('imputed: '))}", ctx.count_text(mine[col]),
                         ctx.count_text(nat[col])])
    note = paragraph(f"Completeness is shown as * where between 1 and {ctx.threshold} records lack the field, "
                     "since the percentage with the number of records would give the count.",
                     css_class="note") if ctx.public else None
    return section("Data quality", table(["Item", f"This {words['provider']}", words["population"]], rows,
                                         numeric=(1, 2),
                                         counts=(1, 2), caption="Records, completeness of key fields and imputation"),
                   note)


def next_steps(ctx: ReportContext) -> Section:
    """What an alert or alarm starts under the HQIP outlier process, and whom to ask."""
    contact = ctx.meta["audit"].get("contact") or "the audit team"
    return section(
        "What a flag means and what happens next",
        paragraph("Under the HQIP outlier process an ", Strong("alert"), " (beyond the 95% limit) or an ",
                  Strong("alarm"), " (beyond the 99.8% limit) starts a staged review before anything is published: "
                  f"the audit checks the data; the {ctx.wording['provider']}'s clinical lead is told and asked to check the data and "
                  "respond; if the flag stands, the chief executive is told and, for a confirmed alarm, the Care "
                  "Quality Commission. Results better than expected are reported too, as positive outliers."),
        paragraph(f"Questions about this report: {contact}."))
