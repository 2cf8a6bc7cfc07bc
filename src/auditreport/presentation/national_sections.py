"""The national report's sections: the summary, each measure's national section (funnel, outliers, ranked
table, risk model and calibration, over-dispersion, survival and monitoring where the measure has them)
and data completeness by provider. Every word comes from the audit's wording and the measures' labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.presentation import breakdown_views
from auditreport.presentation.blocks import Flag, Paragraph, Section, paragraph, section, table
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import num, pct
from auditreport.presentation.measure_parts import (
    funnel_chart,
    hidden_units,
    interval_text,
    lower_first,
    statistic_label,
    status_cell,
    value_text,
)
from auditreport.presentation.shared_sections import calibration_chart, calibration_hidden
from auditreport.presentation.survival_sections import (
    cox_national_section,
    has_follow_up,
    monitoring_national,
    national_survival_tests,
    survival_section,
)
from auditreport.rules.flags import flag_direction


def summary(ctx: ReportContext) -> Section:
    """Providers and records nationally, and how many providers are worse or better than expected on each
    measure that carries a status."""
    m = ctx.meta.get("national") or {}
    words = ctx.wording
    lead = None
    if "records_submitted" in m:
        analysed = f"; {m['cases']:,} were analysed" if "cases" in m else ""
        lead = paragraph(f"{m.get('providers', len(ctx.units('provider')))} {words['providers']} submitted "
                         f"{m['records_submitted']:,} records{analysed}.", css_class="lead")
    rows = []
    for measure in ctx.measures:
        if not measure.get("carries_status"):
            continue
        t = ctx.measure_table(measure["id"], "provider")
        sides = t["flag"].fillna("").map(lambda f, d=measure["direction"]: flag_direction(f, d)).value_counts()
        rows.append([measure["label"], str(int(sides.get("worse", 0))), str(int(sides.get("as_expected", 0))),
                     str(int(sides.get("better", 0))), str(int(len(t) - sides.sum() + sides.get("", 0)))])
    flags = table(["Measure", "Worse than expected", "As expected", "Better than expected", "Not assessed"], rows,
                  numeric=(1, 2, 3, 4), caption=f"{words['providers'].capitalize()} by outlier status, each measure "
                                                "with a status") if rows else None
    return section("Summary", lead, flags, _without_cases(ctx, m))


def _without_cases(ctx: ReportContext, national: dict) -> Paragraph | None:
    """A note naming providers with no record analysed in the period (they have no report)."""
    silent = national.get("providers_without_cases") or []
    if not silent:
        return None
    names = ", ".join(f"{p['provider_name']} ({p['provider_code']})" for p in silent)
    return paragraph(f"{len(silent)} {ctx.wording['provider']}(s) had no records to analyse in the period and have "
                     f"no results: {names}.", css_class="note")


def measure_report(ctx: ReportContext, measure_id: str) -> Section | None:
    """A measure's national section: what it is and its national value, the funnel of every provider, the
    providers outside the limits, the ranked table, the risk model and its calibration (adjusted measures),
    over-dispersion, and the survival and monitoring parts where the measure has them.

    ``None`` for a survival measure without follow-up.
    """
    measure = ctx.measure(measure_id)
    if measure["kind"] == "survival" and not has_follow_up(ctx, measure_id):
        return None
    national = ctx.unit_rows("national", "national", measure_id)
    head = measure["headline"]
    value = (f"{statistic_label(measure, head)} for {ctx.wording['national_unit_name']}: "
             f"{value_text(measure, head, national.loc[head, 'value'])}." if head in national.index
             and head not in ("oe_ratio", "cox_oe_ratio") else "")
    intro = " ".join(x for x in (measure.get("description", "").rstrip(".") + "." if measure.get("description")
                                 else "", value, _target_sentence(measure)) if x)
    parts = [paragraph(intro) if intro else None]
    if measure["kind"] == "survival":
        parts += [survival_section(ctx, measure_id), national_survival_tests(ctx, measure_id),
                  cox_national_section(ctx, measure_id)]
    parts += [funnel_section(ctx, measure_id), outlier_list(ctx, measure_id), ranked_table(ctx, measure_id)]
    if measure["kind"] != "survival":
        parts.append(risk_model(ctx, measure_id))
    parts += [overdispersion(ctx, measure_id), monitoring_national(ctx, measure_id)]
    return section(measure["label"], *parts)


def _target_sentence(measure: dict) -> str:
    if measure.get("target_kind") == "standard" and measure.get("target") is not None:
        return (f"Units are held to the standard of {value_text(measure, measure['headline'], measure['target'])}"
                f" ({'higher' if measure['direction'] == 'higher_is_better' else 'lower'} is better).")
    if not measure.get("carries_status"):
        return "Not risk-adjusted: shown for information, with no outlier status."
    return ""


def funnel_section(ctx: ReportContext, measure_id: str) -> Section | None:
    """The funnel of every provider on the measure's headline (an adjusted proportion as O/E)."""
    chart = funnel_chart(ctx, measure_id)
    if chart is None:
        return None
    hidden = hidden_units(ctx, measure_id)
    note = paragraph(f"{hidden} {ctx.wording['providers']} with small numbers or no eligible "
                     f"{ctx.wording['activity']} are not plotted.", css_class="note") if hidden else None
    return section("Funnel plot", note, chart, level=3)


def outlier_list(ctx: ReportContext, measure_id: str) -> Section | None:
    """The providers outside the 95% limits on a measure that carries a status."""
    measure = ctx.measure(measure_id)
    if not measure.get("carries_status"):
        return None
    head = measure["headline"]
    t = ctx.measure_table(measure_id, "provider", head)
    flagged = t[~t["flag"].fillna("").isin(["as_expected", ""])]
    words = ctx.wording
    title = "Alerts and alarms"
    if flagged.empty:
        return section(title, paragraph(f"No {words['provider']} is outside the 95% limits."), level=3)
    rows = [[r.unit_name, r.unit_id, value_text(measure, head, r.value), Flag(r.flag, measure["direction"])]
            for r in flagged.sort_values(["flag", "unit_name"]).itertuples()]
    return section(title, table(
        [words["provider"].capitalize(), "Code", statistic_label(measure, head), "Status"], rows, numeric=(2,),
        caption=f"{words['providers'].capitalize()} outside the 95% (alert) or 99.8% (alarm) limits"), level=3)


def ranked_table(ctx: ReportContext, measure_id: str) -> Section:
    """Every provider ranked on the measure's headline (suppressed values last), with counts and status."""
    measure = ctx.measure(measure_id)
    head = measure["headline"]
    words = ctx.wording
    t = ctx.measure_table(measure_id, "provider", head)
    better_low = measure.get("direction", "lower_is_better") == "lower_is_better"
    t = t.sort_values("value", ascending=better_low, na_position="last")
    counted = measure["kind"] == "proportion" or head == "cox_oe_ratio"
    expected = head in ("oe_ratio", "adjusted_rate", "cox_oe_ratio")
    rows = []
    for r in t.itertuples():
        row = [r.unit_name, r.unit_id, ctx.count_text(r.denominator)]
        if counted:
            row.append(ctx.count_text(r.observed if r.observed == r.observed else r.numerator, bool(r.suppressed)))
        if expected:
            row.append(num(r.expected, 1))
        row += [value_text(measure, head, r.value), interval_text(measure, head, pd.Series(r._asdict())),
                status_cell(measure, head, r.flag)]
        rows.append(row)
    headers = [words["provider"].capitalize(), "Code", words["activity"].capitalize()]
    headers += ["Observed"] * counted + ["Expected"] * expected
    headers += [statistic_label(measure, head), "95% interval", "Status"]
    first = 3 + counted
    return section(f"All {words['providers']}", table(
        headers, rows, numeric=tuple(range(first, first + expected + 1)),
        counts=(2, 3) if counted else (2,), css_class="data sortable",
        caption=f"{words['providers'].capitalize()} ranked by {lower_first(statistic_label(measure, head))}, best first "
                "(click a heading to sort)"), level=3)


def risk_model(ctx: ReportContext, measure_id: str) -> Section | None:
    """An adjusted measure's national model: coefficients, and its calibration by tenths of predicted risk."""
    model = ctx.model(measure_id)
    if not model or "cox" in model:
        return None
    coefs = pd.DataFrame(model.get("coefficients") or [])
    family = model.get("family") or ""
    ratio_name = "Odds ratio" if family in ("", "binomial") else "Rate ratio"
    coef_table = None
    if not coefs.empty:
        # stats.riskmodel.coefficient_table: lower95/upper95 are the Wald interval of exp(coefficient).
        ratio = coefs["odds_ratio"] if "odds_ratio" in coefs else np.exp(coefs["coefficient"])
        rows = [[r.term, num(r.coefficient, 3), num(ratio.iloc[i], 3),
                 f"{num(r.lower95, 3)} to {num(r.upper95, 3)}" if hasattr(r, "lower95") else ""]
                for i, r in enumerate(coefs.itertuples())]
        coef_table = table(["Term", "Coefficient", ratio_name, f"95% CI ({ratio_name.lower()})"], rows,
                           numeric=(1, 2), caption=f"Risk model{f' ({family}, log link)' if family in ('poisson', 'gamma') else ''}")
    cal = pd.DataFrame(model.get("calibration") or [])
    perf = model.get("performance") or {}
    c = perf.get("c_statistic")
    fit = paragraph(f"Fitted once on the whole national cohort; c-statistic {c:.3f}.") if c is not None else None
    if cal.empty:
        return section("Risk model", fit, coef_table, level=3) if coef_table or fit else None
    # Tenths add up to the national total: primary and secondary suppression in public.
    hidden = calibration_hidden(ctx, cal)
    rows = [[int(r.group), ctx.count_text(r.n), ctx.count_text(r.observed, r.group in hidden), f"{r.expected:,.1f}",
             "*" if r.group in hidden else pct(r.observed_rate, 2), pct(r.expected_rate, 2)]
            for r in cal.itertuples()]
    return section("Risk model", fit, coef_table, calibration_chart(ctx, measure_id), table(
        ["Tenth of risk", ctx.wording["activity"].capitalize(), "Observed", "Expected", "Observed rate",
         "Expected rate"], rows, numeric=(3, 4, 5), counts=(1, 2), caption="Calibration by tenths"), level=3)


def overdispersion(ctx: ReportContext, measure_id: str) -> Section | None:
    """A measure's over-dispersion estimates by level (``None`` for a measure without a status)."""
    measure = ctx.measure(measure_id)
    estimates = measure.get("overdispersion") or {}
    if not measure.get("carries_status") or not estimates:
        return None
    rows = []
    for level, e in estimates.items():
        p = e.get("chi2_p")
        rows.append([ctx.wording["providers"] if level == "provider" else f"{level}s", e.get("method", "none"),
                     num(e.get("phi", 1.0), 3), f"{e.get('tau2', 0.0):.4g}", str(e.get("n_units", "")),
                     "" if p is None else f"{p:.3g}"])
    return section("Over-dispersion", table(
        ["Level", "Method", "phi", "tau\u00b2", "Units", "Chi-squared p"], rows, numeric=(2, 3, 4, 5),
        caption="Over-dispersion estimates (phi = 1 and tau\u00b2 = 0 when none is applied)"), level=3)


def quality_by_provider(ctx: ReportContext) -> Section:
    """Records and completeness of each mapped key field, every provider (sortable).

    Public: from ``quality_public`` (records and missing counts suppressed two-way across providers, so the
    national row cannot reopen a provider's hidden count)."""
    counts, hidden = breakdown_views.quality(ctx)
    fields = breakdown_views.completeness_fields(counts)
    words = ctx.wording
    rows = [[unit, ctx.count_text(counts.at[unit, "records_submitted"], bool(hidden.at[unit, "records_submitted"]))]
            + [breakdown_views.completeness_text(counts.loc[unit], hidden.loc[unit], f) for f in fields]
            for unit in counts.index]
    return section("Data completeness", table(
        [words["provider"].capitalize(), "Records"] + [ctx.factor_label(f) for f in fields], rows,
        numeric=tuple(range(2, len(fields) + 2)), counts=(1,), css_class="data sortable compact",
        caption=f"Share of records with each key field, by {words['provider']} (click a heading to sort)"))

