"""The sections only the national report has: summary, outliers, funnels of every provider, the ranked
table, the risk model, over-dispersion and data completeness by provider."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.presentation.blocks import Flag, Section, paragraph, section, table
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import num, pct
from auditreport.presentation.shared_sections import (
    INDICATOR_LABEL,
    MORTALITY,
    calibration_chart,
    calibration_hidden,
    completeness,
    funnel,
)
from auditreport.rules.disclosure import SUPPRESSED


def summary(ctx: ReportContext) -> Section:
    """Providers, records, cases and deaths nationally, and how many providers each flag has."""
    m = ctx.meta["national"]
    t = ctx.indicators
    prov = t[(t["level"] == "provider") & (t["indicator"] == "risk_adjusted_mortality")]
    counts = prov["flag"].value_counts()
    flagged = ", ".join(f"{n} {flag.replace('_', ' ').lower()}" for flag, n in counts.items() if flag != "as_expected")
    return section(
        "Summary",
        paragraph(f"{m['providers']} providers submitted {m['records_submitted']:,} records; {m['cases']:,} were "
                  f"analysed, with {int(m['deaths']):,} deaths within {ctx.meta['audit']['outcome_days']} days "
                  f"(national rate {pct(m['rate'], 2)}). Risk-adjusted outlier flags: {flagged or 'none'}.",
                  css_class="lead"),
        _without_cases(m))


def _without_cases(national: dict):
    """A note naming providers with no case analysed in the period (they have no report)."""
    silent = national.get("providers_without_cases") or []
    if not silent:
        return None
    names = ", ".join(f"{p['provider_name']} ({p['provider_code']})" for p in silent)
    return paragraph(f"{len(silent)} provider(s) had no cases to analyse in the period and have no results: "
                     f"{names}.", css_class="note")


def outlier_list(ctx: ReportContext) -> Section:
    """The providers with an alert or alarm on any mortality indicator."""
    t = ctx.indicators
    flagged = t[(t["level"] == "provider") & t["indicator"].isin(MORTALITY) & ~t["flag"].isin(["as_expected", ""])]
    if flagged.empty:
        return section("Alert and alarm providers", paragraph("No provider is outside the 95% limits."))
    rows = [[r.unit_name, r.unit_id, INDICATOR_LABEL[r.indicator],
             num(r.value) if r.indicator == "oe_ratio" else pct(r.value), Flag(r.flag)]
            for r in flagged.sort_values(["flag", "unit_name"]).itertuples()]
    return section("Alert and alarm providers", table(
        ["Provider", "Code", "Indicator", "Value", "Status"], rows, numeric=(3,),
        caption="Providers outside the 95% (alert) or 99.8% (alarm) limits"))


def funnel_plots(ctx: ReportContext) -> Section:
    """Funnel plots of every provider: risk-adjusted mortality, O/E and crude mortality."""
    return section("Funnel plots", *(funnel(ctx, "provider", indicator) for indicator in
                                     ("risk_adjusted_mortality", "oe_ratio", "crude_mortality")))


def ranked_table(ctx: ReportContext) -> Section:
    """Every provider, ranked by risk-adjusted mortality (suppressed values last)."""
    t = ctx.indicators
    prov = t[(t["level"] == "provider") & (t["indicator"] == "risk_adjusted_mortality")].sort_values(
        "value", ascending=False, na_position="last")
    rows = [[r.unit_name, r.unit_id, ctx.count_text(r.denominator), ctx.count_text(r.observed, bool(r.suppressed)),
             num(r.expected, 1), pct(r.value), SUPPRESSED if r.suppressed else f"{pct(r.lower95)} to {pct(r.upper95)}",
             Flag(r.flag)] for r in prov.itertuples()]
    return section("All providers", table(
        ["Provider", "Code", "Cases", "Deaths", "Expected", "Risk-adjusted", "95% interval", "Status"], rows,
        numeric=(4, 5), counts=(2, 3), css_class="data sortable",
        caption="Providers ranked by risk-adjusted mortality (click a heading to sort)"))


def risk_model(ctx: ReportContext) -> Section:
    """The national logistic model's coefficients and its calibration by tenths of predicted risk."""
    model = ctx.bundle.model
    coefs = pd.DataFrame(model.get("coefficients", []))
    coef_table = None
    if not coefs.empty:
        rows = [[r.term, num(r.coefficient, 3), num(getattr(r, "odds_ratio", np.nan), 2),
                 f"{num(r.lower95, 3)} to {num(r.upper95, 3)}" if hasattr(r, "lower95") else ""]
                for r in coefs.itertuples()]
        coef_table = table(["Term", "Coefficient", "Odds ratio", "95% CI (coefficient)"], rows, numeric=(1, 2))
    cal = pd.DataFrame(model.get("calibration", []))
    if cal.empty:
        return section("Risk model", coef_table)
    # Tenths add up to the national deaths: primary and secondary suppression in public.
    hidden = calibration_hidden(ctx, cal)
    rows = [[int(r.group), ctx.count_text(r.n), ctx.count_text(r.observed, r.group in hidden), f"{r.expected:,.1f}",
             SUPPRESSED if r.group in hidden else pct(r.observed_rate, 2), pct(r.expected_rate, 2)]
            for r in cal.itertuples()]
    return section("Risk model", coef_table, calibration_chart(ctx), table(
        ["Tenth of risk", "Patients", "Observed", "Expected", "Observed rate", "Expected rate"], rows,
        numeric=(3, 4, 5), counts=(1, 2), caption="Calibration by tenths"))


def overdispersion(ctx: ReportContext) -> Section:
    """Over-dispersion estimates by level and indicator type."""
    rows = []
    for level, kinds in ctx.meta.get("overdispersion", {}).items():
        for kind, e in kinds.items():
            p = e.get("chi2_p")
            rows.append([level, kind, e.get("method", "none"), num(e.get("phi", 1.0), 3), f"{e.get('tau2', 0.0):.4g}",
                         str(e.get("n_units", "")), "" if p is None else f"{p:.3g}"])
    return section("Over-dispersion", table(
        ["Level", "Indicator type", "Method", "phi", "tau\u00b2", "Units", "Chi-squared p"], rows, numeric=(3, 4, 5, 6),
        caption="Over-dispersion estimates (phi = 1 and tau\u00b2 = 0 when none is applied)"))


def quality_by_provider(ctx: ReportContext) -> Section:
    """Records and completeness of each key field, every provider (sortable)."""
    q = ctx.bundle.quality
    complete = [c for c in q.columns if c.startswith("complete: ")]
    rows = [[r["unit_id"], ctx.count_text(r["records_submitted"])]
            + [completeness(ctx, r[c], r["records_analysed"]) for c in complete]
            for _, r in q.iterrows()]
    return section("Data completeness by provider", table(
        ["Provider", "Records"] + [c.removeprefix("complete: ") for c in complete], rows,
        numeric=tuple(range(2, len(complete) + 2)), counts=(1,), css_class="data sortable compact",
        caption="Share of records with each key field (click a heading to sort)"))
