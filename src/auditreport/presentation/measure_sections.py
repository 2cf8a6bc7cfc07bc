"""One presenter for every measure: :func:`measure_section` gives a measure its section in a provider's
report (and, for the national report, its national section).

A provider's measure section reads, in the audit's own words: what was counted and against what, the
statistics table (crude and adjusted for an adjusted proportion, mean and median, O/E), the funnel with
this provider highlighted and the target or the standard, the status in words by the measure's
direction, and the parts only some kinds have: survival curves, median and log-rank, Cox O/E (survival
measures); monitoring (a measure with dates to order by); consultants (a measure with a consultant level,
where consultants are mapped). A part with nothing behind it is left out, and a measure with no results
for this provider has no section (``None``).

Notebooks show every measure in one cell::

    show(*(measure_section(ctx, m["id"]) for m in ctx.measures))
"""

from __future__ import annotations

import pandas as pd

from auditreport.presentation import breakdown_views, national_sections
from auditreport.presentation.blocks import Count, Paragraph, Section, paragraph, section, table
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import num, pct
from auditreport.presentation.measure_parts import (
    funnel_chart,
    funnel_statistic,
    hidden_units,
    interval_text,
    no_eligible_records,
    range_text,
    statistic_label,
    status_cell,
    status_sentence,
    value_text,
)
from auditreport.presentation.survival_sections import (
    cox_provider_section,
    has_follow_up,
    median_logrank_section,
    monitoring_section,
    survival_section,
)
from auditreport.rules.disclosure import SUPPRESSED


def measure_section(ctx: ReportContext, measure_id: str) -> Section | None:
    """A measure's section of this report: the provider's (or, in the national report, the national one).

    ``None`` when the measure has no results for this provider (no eligible records), or is a survival
    measure without follow-up.

    Examples
    --------
    >>> section = measure_section(ctx, "mortality")
    >>> section.title == ctx.measure("mortality")["label"]
    True
    """
    if ctx.provider is None:
        return national_sections.measure_report(ctx, measure_id)
    measure = ctx.measure(measure_id)
    rows = ctx.unit_rows("provider", ctx.provider, measure_id)
    if rows.empty:
        return None
    if measure["kind"] == "survival":
        if not has_follow_up(ctx, measure_id):
            return None
        return section(measure["label"], _description(measure), statistics_table(ctx, measure_id),
                       survival_section(ctx, measure_id), median_logrank_section(ctx, measure_id),
                       cox_provider_section(ctx, measure_id), funnel_chart(ctx, measure_id),
                       exclusions_note(ctx, measure_id))
    national = ctx.unit_rows("national", "national", measure_id)
    if no_eligible_records(rows):
        return section(measure["label"], _description(measure), none_eligible(ctx, measure),
                       exclusions_note(ctx, measure_id))
    return section(
        measure["label"], _description(measure), reading(ctx, measure, rows, national),
        paragraph(status_sentence(ctx, measure, rows.loc[measure["headline"]])) if measure["headline"] in rows.index
        else None,
        caveat(ctx, measure, rows), statistics_table(ctx, measure_id),
        *funnel_parts(ctx, measure_id), monitoring_section(ctx, measure_id),
        consultant_section(ctx, measure_id), exclusions_note(ctx, measure_id))


def none_eligible(ctx: ReportContext, measure: dict) -> Paragraph:
    """The reading of a measure this provider had no records for: said plainly, not shown as blank figures."""
    words = ctx.wording
    which = f" ({measure['eligible']})" if measure.get("eligible") else ""
    return paragraph(f"{ctx.provider_name} had no {words['activity']} eligible for this measure{which} in the "
                     "period, so it has no figures for it.", css_class="lead")


def _description(measure: dict) -> Paragraph | None:
    return paragraph(measure["description"], css_class="note") if measure.get("description") else None


def reading(ctx: ReportContext, measure: dict, rows: pd.DataFrame, national: pd.DataFrame) -> Paragraph | None:
    """The plain-English reading: what this provider had on this measure, against the national value."""
    words = ctx.wording
    kind = measure["kind"]
    against = f"{words['national_unit_name']}"
    if kind == "proportion" and "rate" in rows.index:
        r, n = rows.loc["rate"], national.loc["rate"]
        parts: list = [f"{ctx.provider_name}: ", Count(ctx.count_text(r["numerator"], bool(r["suppressed"]))),
                       " of ", Count(ctx.count_text(r["denominator"])),
                       f" {words['activity']} ({pct(r['value'])}) against {pct(n['value'])} for {against}."]
        if measure.get("adjusted") and "oe_ratio" in rows.index:
            oe = rows.loc["oe_ratio"]
            expected = "" if oe["expected"] != oe["expected"] else f" {num(oe['expected'], 1)} were expected given its case mix;"
            parts.append(f" A crude rate does not allow for how ill or complex the {words['activity']} were, so the "
                         f"risk-adjusted figures are the fair comparison:{expected} observed / expected "
                         f"{num(oe['value'])}.")
        return paragraph(*parts, css_class="lead")
    if kind in ("mean", "ratio"):
        stat = "mean" if "mean" in rows.index else measure["headline"]
        r, n = rows.loc[stat], national.loc[stat]
        parts = [f"{ctx.provider_name}: {statistic_label(measure, stat).split(' (')[0].lower()} "
                 f"{value_text(measure, stat, r['value'])} over ", Count(ctx.count_text(r["denominator"])),
                 f" {words['activity']}, against {value_text(measure, stat, n['value'])} for {against}"]
        if "median" in rows.index:
            parts.append(f"; median {value_text(measure, 'median', rows.loc['median', 'value'])} against "
                         f"{value_text(measure, 'median', national.loc['median', 'value'])}")
        parts.append(".")
        if kind == "ratio" and "oe_ratio" in rows.index:
            oe = rows.loc["oe_ratio"]
            unit = measure.get("value_unit") or "in total"
            if not ctx.withheld(r["denominator"]) and oe["observed"] == oe["observed"]:
                parts.append(f" Observed {oe['observed']:,.0f} {unit} against {oe['expected']:,.1f} expected from "
                             f"the national model given its case mix: observed / expected {num(oe['value'])}.")
        return paragraph(*parts, css_class="lead")
    return None


def caveat(ctx: ReportContext, measure: dict, rows: pd.DataFrame) -> Paragraph | None:
    """Where figures are withheld (public), or small numbers make the result imprecise."""
    if ctx.public and bool(rows["suppressed"].any()):
        return paragraph(f"Some figures are shown as * because they involve between 1 and {ctx.threshold} "
                         f"{ctx.wording['activity']}, or could be worked out from figures that do; this protects "
                         "confidentiality.", css_class="note")
    if measure["kind"] == "proportion" and measure.get("adjusted") and "oe_ratio" in rows.index:
        expected = rows.loc["oe_ratio", "expected"]
        if expected == expected and expected < 10:
            return paragraph(f"With fewer than 10 expected ({num(expected, 1)}), a few either way move the rate a "
                             "lot: the interval is wide and the result should be read with caution.", css_class="note")
    return None


def statistics_table(ctx: ReportContext, measure_id: str, unit: str | None = None) -> Section | None:
    """Every statistic of a measure for one unit (this report's provider, or the nation): value, 95%
    interval, the national value and the status (only the statistic that carries it has one)."""
    measure = ctx.measure(measure_id)
    level, unit = ("provider", unit or ctx.provider) if (unit or ctx.provider) else ("national", "national")
    rows = ctx.unit_rows(level, unit, measure_id)
    national = ctx.unit_rows("national", "national", measure_id)
    order = [s for s in measure.get("statistics") or [] if s in rows.index]
    order += [s for s in rows.index if s not in order]
    if not order:
        return None
    body = []
    for stat in order:
        r = rows.loc[stat]
        nat = national["value"].get(stat, float("nan"))
        row = [statistic_label(measure, stat), value_text(measure, stat, r["value"]),
               interval_text(measure, stat, r), value_text(measure, stat, nat)]
        if level == "provider":
            row.append(status_cell(measure, stat, r["flag"]))
        body.append(row)
    who = "This " + ctx.wording["provider"] if level == "provider" else ctx.wording["population"]
    headers = ["Statistic", who, "95% interval", ctx.wording["population"]] + (["Status"] if level == "provider" else [])
    if level == "national":
        headers, body = headers[:3], [b[:3] for b in body]
    return table(headers, body, numeric=(1, 3) if level == "provider" else (1,),
                 caption=f"{measure['label']}: statistics")


def funnel_parts(ctx: ReportContext, measure_id: str) -> list:
    """The measure's funnel with this provider highlighted, its control limits, and how many providers
    are not plotted."""
    measure = ctx.measure(measure_id)
    chart = funnel_chart(ctx, measure_id)
    if chart is None:
        return []
    stat = funnel_statistic(ctx, measure) or measure["headline"]
    rows = ctx.unit_rows("provider", ctx.provider, measure_id)
    limits = None
    # Limits are given where they judge: a measure without a status is drawn for context only.
    if measure.get("carries_status") and stat in rows.index and not rows.loc[stat, "suppressed"] \
            and rows.loc[stat, "limit_lower95"] == rows.loc[stat, "limit_lower95"]:
        r = rows.loc[stat]
        limits = paragraph(f"Control limits for this {ctx.wording['provider']} ({statistic_label(measure, stat)}): "
                           f"95% {range_text(measure, stat, r['limit_lower95'], r['limit_upper95'])}; 99.8% "
                           f"{range_text(measure, stat, r['limit_lower998'], r['limit_upper998'])}.")
    hidden = hidden_units(ctx, measure_id)
    note = paragraph(f"{hidden} {ctx.wording['providers']} with small numbers or no eligible "
                     f"{ctx.wording['activity']} are not plotted.", css_class="note") if hidden else None
    return [limits, note, chart]


def consultant_section(ctx: ReportContext, measure_id: str) -> Section | None:
    """This provider's consultants on a measure with a consultant level, and the funnel of every consultant.

    Every consultant with records at this provider is listed (``ctx.consultants_at``), by name when the audit
    has a consultants file: one who also operates elsewhere is in each provider's report, with the figures of
    all their records. ``None`` when the measure has no consultant level (or no consultant is mapped), in a
    public report when the audit does not publish consultants, or when this provider has none.
    """
    measure = ctx.measure(measure_id)
    if "consultant" not in (measure.get("levels") or []):
        return None
    if ctx.public and not ctx.meta["publication"]["publish_consultants"]:
        return None
    stat = measure["headline"]
    t = ctx.measure_table(measure_id, "consultant", stat)
    rows = t[t["unit_id"].isin(ctx.consultants_at())]
    if rows.empty:
        return None
    words = ctx.wording
    counted = measure["kind"] == "proportion"
    named = bool((rows["unit_name"] != rows["unit_id"]).any())
    elsewhere = bool((rows["parent_id"] != ctx.provider).any())
    body = []
    for r in rows.itertuples():
        line = [r.unit_name if named else r.unit_id, ctx.count_text(r.denominator)]
        if counted:
            line += [ctx.count_text(r.observed, bool(r.suppressed)), num(r.expected, 1) if r.expected == r.expected
                     else ""]
        line += [value_text(measure, stat, r.value), SUPPRESSED if r.suppressed else
                 interval_text(measure, stat, pd.Series(r._asdict())), status_cell(measure, stat, r.flag)]
        body.append(line)
    headers = ["Consultant", words["activity"].capitalize()] + (["Observed", "Expected"] if counted else []) + [
        statistic_label(measure, stat), "95% interval", "Status"]
    first_value = 4 if counted else 2
    return section("Consultants", table(
        headers, body, numeric=(first_value - 1, first_value) if counted else (first_value,),
        counts=(1, 2) if counted else (1,),
        caption=f"{measure['label']} by consultant{'' if named else ' (identified by code)'}, with the national "
                f"model and limits used for {words['providers']}" + (
                    f"; a consultant who also operates at another {words['provider']} is shown with all their "
                    f"{words['activity']}, at every {words['provider']}" if elsewhere else "")),
        funnel_chart(ctx, measure_id, "consultant", highlight=set(rows["unit_id"])), level=3)


def exclusions_note(ctx: ReportContext, measure_id: str) -> Paragraph | None:
    """Records of this provider the measure left out, with each reason (public: as the national stage
    suppressed them, two-way within the provider and across providers to the national counts)."""
    unit = ctx.provider or "national"
    ex = breakdown_views.exclusions(ctx, measure_id, unit)
    if ex.empty:
        return None
    parts: list = [f"{ctx.wording['activity'].capitalize()} left out of this measure: "]
    for i, r in enumerate(ex.itertuples()):
        parts += ["; " if i else "", Count(ctx.count_text(r.records, bool(r.suppressed))), f" {r.reason}"]
    return paragraph(*parts, ".", css_class="note")
