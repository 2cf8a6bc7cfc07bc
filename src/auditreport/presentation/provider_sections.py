"""The sections only a provider's feedback report has besides its measures: at a glance, case mix,
data quality and what a flag means (each measure's own section is :mod:`.measure_sections`).

Each function takes the report's :class:`ReportContext` and returns a typed :class:`Section`
(``None`` where the section does not apply); the plain-English readings are text.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from auditreport.analysis.quality import AGE_LABELS
from auditreport.presentation import breakdown_views, figures
from auditreport.presentation.blocks import (
    Count,
    Group,
    Paragraph,
    Section,
    Strong,
    chart,
    paragraph,
    section,
    table,
)
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import pct
from auditreport.presentation.measure_parts import (
    interval_text,
    no_eligible_records,
    statistic_label,
    status_cell,
    value_text,
)
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
        if ctx.public and ctx.low_volume("provider", ctx.provider, m["id"]):
            rows.append([m["label"], statistic_label(m, m["headline"]), "in the low-volume group",
                         value_text(m, m["headline"], nat["value"].get(m["headline"], float("nan"))), "",
                         f"fewer than {ctx.minimum_volume('provider')} {words['activity']}: no status of its own"])
            continue
        for stat in shown:
            if stat not in mine.index:
                continue
            r = mine.loc[stat]
            label = m["label"] if stat == m["headline"] else f"{m['label']}: crude rate (context)"
            rows.append([label, statistic_label(m, stat), value_text(m, stat, r["value"]),
                         value_text(m, stat, nat["value"].get(stat, float("nan"))), interval_text(m, stat, r),
                         status_cell(m, stat, r["flag"])])
    records, hidden = _records_analysed(ctx)
    lead = paragraph(ctx.provider_name, " reported ", Count(ctx.count_text(records, hidden)),
                     f" {words['activity']} in the period.", css_class="lead") if records == records or hidden else None
    quality = quality_caveat(ctx)
    return section("At a glance", lead, *provider_notes(ctx), paragraph(quality) if quality else None, table(
        ["Measure", "Statistic", f"This {words['provider']}", words["population"], "95% interval", "Status"], rows,
        numeric=(2, 3), caption=f"Every measure for this {words['provider']} against {words['national_unit_name']}"))


def provider_notes(ctx: ReportContext) -> list[Paragraph]:
    """Whether the provider signed off its data ("Data validated by the provider on 25 June 2026", or "not
    validated") when the audit has a validation file, and the provider's statement, as written, when it gave one:
    its right to respond, beside its results in both reports (issue #15)."""
    note = ctx.provider_note()
    words = ctx.wording
    out = []
    if note["validated"] and note["validated_on"]:
        day = dt.date.fromisoformat(note["validated_on"])
        out.append(paragraph(f"Data validated by the {words['provider']} on {day.day} {day:%B %Y}.", css_class="note"))
    elif note["validated"]:
        out.append(paragraph(f"Data not validated by the {words['provider']}: it did not sign off its data for the "
                             "audit.", css_class="note"))
    if note["statement"]:
        out.append(paragraph(Strong(f"Statement from the {words['provider']}: "), note["statement"]))
    return out


def _records_analysed(ctx: ReportContext) -> tuple[float, bool]:
    """This provider's records analysed (the data quality table; NaN where it has no row or, in public, it is
    suppressed) and whether it is suppressed (a public report then says "*", not nothing)."""
    counts, hidden = breakdown_views.quality(ctx)
    if ctx.provider not in counts.index:
        return float("nan"), False
    return float(counts.loc[ctx.provider, "records_analysed"]), bool(hidden.loc[ctx.provider, "records_analysed"])


def quality_caveat(ctx: ReportContext) -> str:
    """A sentence when this provider's data are notably less complete than the country's (in public, a field
    whose missing count is suppressed is not compared: the comparison would bound the count)."""
    if not ctx.provider:
        return ""
    counts, hidden = breakdown_views.quality(ctx)
    if ctx.provider not in counts.index:
        return ""
    worse = []
    for name in breakdown_views.completeness_fields(counts):
        col = f"missing: {name}"
        if hidden.at[ctx.provider, col] or hidden.at["national", col] or counts.at["national", col] != \
                counts.at["national", col]:
            continue
        mine = 1 - counts.at[ctx.provider, col] / counts.at[ctx.provider, "records_submitted"]
        nat = 1 - counts.at["national", col] / counts.at["national", "records_submitted"]
        if mine < 0.95 and mine < nat - 0.02:
            worse.append(ctx.factor_label(name))
    if not worse:
        return f"Its data were as complete as those of {ctx.wording['national_unit_name']} for the key fields."
    return (f"Its data were less complete than those of {ctx.wording['national_unit_name']} for "
            f"{', '.join(worse)}; missing risk factors were imputed, which can understate how ill or complex its "
            f"{ctx.wording['activity']} were.")


def case_mix_section(ctx: ReportContext) -> Section | None:
    """The share of this provider's records in each risk-factor group against the national share.

    ``None`` when the audit has no risk factors (nothing to show)."""
    mix = breakdown_views.casemix(ctx)
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
        # Public: the national stage suppressed the categories two-way (within this provider's cases and across
        # providers to the national counts); a hidden national count hides its share too.
        hidden = {c for c in order if bool(mine["suppressed"].get((variable, c), False))}
        rows = []
        for category in order:
            share = mine["share"].get((variable, category), 0.0)
            nat_hidden = bool(nat.loc[(variable, category), "suppressed"])
            nat_share = float("nan") if nat_hidden else nat.loc[(variable, category), "share"]
            rows.append([levels.get(str(category), category), ctx.count_text(counts[category], category in hidden),
                         SUPPRESSED if category in hidden else pct(share),
                         SUPPRESSED if nat_hidden else pct(nat_share)])
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
    """Records submitted and analysed, exclusions, completeness of key fields and imputation.

    Public: the counts of ``quality_public``, suppressed two-way by the national stage (exclusion reasons add
    up to the records excluded, and every count of the providers to the national count)."""
    counts, hidden = breakdown_views.quality(ctx)
    mine, nat = counts.loc[ctx.provider], counts.loc["national"]
    mine_hidden, nat_hidden = hidden.loc[ctx.provider], hidden.loc["national"]
    words = ctx.wording

    def row(label: str, item: str) -> list[str]:
        return [label, ctx.count_text(mine[item], bool(mine_hidden[item])),
                ctx.count_text(nat[item], bool(nat_hidden[item]))]

    rows = [row("Records submitted", "records_submitted"), row("Records analysed", "records_analysed")]
    rows += [row(f"Excluded: {c.removeprefix('excluded: ')}", c) for c in counts.columns if c.startswith("excluded: ")]
    rows += [[f"Completeness: {ctx.factor_label(name)}", breakdown_views.completeness_text(mine, mine_hidden, name),
              breakdown_views.completeness_text(nat, nat_hidden, name)]
             for name in breakdown_views.completeness_fields(counts)]
    rows += [row(f"Imputed: {ctx.factor_label(c.removeprefix('imputed: '))}", c) for c in counts.columns
             if c.startswith("imputed: ")]
    note = paragraph(f"Counts from 1 to {ctx.threshold} are shown as *, and so are others wherever a hidden count "
                     f"could be worked out from a total or from the other {words['providers']}' counts; "
                     "completeness is * where the number of records lacking the field is hidden, since the "
                     "percentage with the number of records would give it.",
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
