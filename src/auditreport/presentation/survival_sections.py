"""Survival and monitoring sections of both reports: Kaplan-Meier survival, median survival and the
log-rank test, the Cox O/E, and RA-CUSUM/VLAD monitoring.

A provider's own survival statistics are withheld from a public report when they rest on small
numbers: each step of a Kaplan-Meier curve, and of a CUSUM or VLAD chart, is a death.
"""

from __future__ import annotations

import pandas as pd

from auditreport.presentation import figures
from auditreport.presentation.blocks import Chart, Flag, Paragraph, Section, chart, paragraph, section, table
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import days, num, p_value, pct
from auditreport.rules.disclosure import SUPPRESSED

COX_LABEL = "Cox observed / expected deaths (Cox O/E)"


def survival_section(ctx: ReportContext) -> Section:
    """The Kaplan-Meier curve (this provider's against the national) and survival at each horizon."""
    km = ctx.bundle.km
    horizons = ctx.meta["survival"]["horizons"]
    national = km[km["unit_id"] == "national"]
    mine = km[km["unit_id"] == ctx.provider] if ctx.provider else None
    withheld = None
    if ctx.public and ctx.provider:
        surv = ctx.unit_rows("provider", ctx.provider)
        if bool(surv.loc[surv.index.str.startswith("survival_"), "suppressed"].any()):
            # Each step of a Kaplan-Meier curve is a death: a suppressed provider's curve would show its count.
            mine = None
            withheld = paragraph("This provider's survival curve is not shown in the published report because its "
                                 "numbers are small or could reveal small numbers; the national curve is.",
                                 css_class="note")
    fig = figures.km_plot(national, mine, unit_label=ctx.provider_name if ctx.provider else "",
                          horizon_max=float(max(horizons)), title="Kaplan-Meier survival after the procedure",
                          at_risk_format=ctx.count_text)
    nat_rows = ctx.unit_rows("national", "national")
    own_rows = ctx.unit_rows("provider", ctx.provider) if ctx.provider else nat_rows
    rows = []
    for h in horizons:
        nat, r = nat_rows.loc[f"survival_{h}d"], own_rows.loc[f"survival_{h}d"]
        ci = SUPPRESSED if r["suppressed"] else f"{pct(r['lower95'])} to {pct(r['upper95'])}"
        rows.append([f"{h} days", pct(r["value"]), ci, pct(nat["value"])])  # suppressed rows carry NaN
    return section(
        "Survival", withheld, chart(fig),
        table(["Horizon", "Survival", "95% interval", "National"], rows, numeric=(1, 3),
              caption="Kaplan-Meier survival at each horizon"),
        paragraph(f"Intervals: Greenwood variance with the {ctx.meta['survival']['ci_transform']} transform. "
                  "The curve stops where follow-up ends.", css_class="note"))


def median_logrank_section(ctx: ReportContext) -> Section | None:
    """Median survival (with its convention and interval) and, for a provider, the log-rank test vs the rest."""
    tests = ctx.survival_tests
    if tests.empty:
        return None
    units = [("National", tests.loc["national"])]
    if ctx.provider:
        units.insert(0, (ctx.provider_name, tests.loc[ctx.provider]))
    rows = []
    for label, r in units:
        hidden = ctx.withheld(r["patients"], r["deaths"])
        rows.append([label, ctx.count_text(r["patients"]), SUPPRESSED if hidden else days(r["median"]),
                     SUPPRESSED if hidden else f"{days(r['median_lower'])} to {days(r['median_upper'])}"])
    median = section(
        "Median survival",
        table(["", "Patients", "Median survival", "95% interval"], rows, numeric=(1,), counts=(1,),
              caption="Median survival after the procedure"),
        paragraph("Median: the first time the Kaplan-Meier curve is at or below 50%, or the midpoint where it "
                  "sits at exactly 50% (R survival's convention; lifelines would take the start of that "
                  "stretch). Interval: where the 95% band crosses 50% (Brookmeyer and Crowley), "
                  f"{ctx.meta['survival']['ci_transform']} transform. \"Not reached\": survival stays "
                  "above 50% (or the band above it) for the whole follow-up.", css_class="note"),
        level=3)
    return section("", median, _logrank(ctx, tests.loc[ctx.provider]) if ctx.provider else None)


def _logrank(ctx: ReportContext, r: pd.Series) -> Section | Paragraph:
    """This provider's log-rank test against the rest of the country (withheld on small numbers)."""
    if ctx.withheld(r["patients"], r["deaths"]):
        return paragraph("The log-rank comparison is not shown because the numbers are too small to publish.")
    direction = "more" if r["logrank_observed"] > r["logrank_expected"] else "fewer"
    counts = ("" if ctx.public else
              f" ({r['logrank_observed']:.0f} deaths observed, {r['logrank_expected']:.1f} expected at "
              "the rest of the country's death rates)")
    return section("Log-rank test against the rest of the country", paragraph(
        f"{ctx.provider_name} had {direction} deaths over follow-up than the national death rate over time would "
        f"give{counts}: chi-squared {num(r['logrank_chi2'])} on 1 degree of freedom, {p_value(r['logrank_p'])}. "
        "The log-rank test is not risk-adjusted; the Cox O/E below is."), level=3)


def national_survival_tests(ctx: ReportContext) -> Section | None:
    """All providers: median survival and the log-rank test against the rest, sortable."""
    tests = ctx.survival_tests
    if tests.empty:
        return None
    rows = []
    for unit, r in tests.drop(index="national", errors="ignore").iterrows():
        hidden = ctx.withheld(r["patients"], r["deaths"])
        rows.append([ctx.unit_names.get(unit, unit), unit, ctx.count_text(r["patients"]),
                     SUPPRESSED if hidden else days(r["median"]), SUPPRESSED if hidden else num(r["logrank_chi2"]),
                     SUPPRESSED if hidden else p_value(r["logrank_p"])])
    nat = tests.loc["national"]
    none = int(ctx.meta["survival"].get("records_without_provider", 0))
    note = (f" {ctx.count_text(none)} record(s) had no provider code: they are in the national figures but not "
            "attributed to any provider, and are part of \"the rest\" in every log-rank test." if none else "")
    return section(
        "Median survival and log-rank tests",
        paragraph(f"National median survival {days(nat['median'])} (95% interval {days(nat['median_lower'])} to "
                  f"{days(nat['median_upper'])}; R survival's convention, {ctx.meta['survival']['ci_transform']} "
                  "transform). Each provider's log-rank test compares its survival with the rest of the country "
                  f"(not risk-adjusted; chi-squared on 1 df).{note}"),
        table(["Provider", "Code", "Patients", "Median survival", "Log-rank chi-squared", "p"], rows,
              numeric=(2, 3, 4), counts=(2,), css_class="data sortable compact",
              caption="Median survival and log-rank test of each provider against the rest"))


def cox_funnel(ctx: ReportContext) -> Chart:
    """The funnel of every provider's Cox O/E, this report's provider highlighted."""
    t = ctx.indicators
    units = t[(t["level"] == "provider") & (t["indicator"] == "cox_oe_ratio") & t["value"].notna()]
    curves = ctx.bundle.funnels
    curve = curves[(curves["level"] == "provider") & (curves["indicator"] == "cox_oe_ratio")]
    return chart(figures.funnel_plot(units, curve, target=1.0, x="expected", y="value",
                                     xlabel="Cox-expected deaths over follow-up (log scale)", ylabel="Cox O/E ratio",
                                     title=f"{COX_LABEL}: providers", highlight=ctx.provider,
                                     highlight_label=ctx.provider_name if ctx.provider else None))


def cox_national_section(ctx: ReportContext) -> Section | None:
    """The national Cox model: hazard ratios, the proportional-hazards check, how it was fitted, the funnel."""
    cox = ctx.bundle.model.get("cox")
    if not cox:
        return None
    rows = [[c["term"], num(c["coef"], 4), num(c["hr"], 3), f"{num(c['hr_lower95'], 3)} to "
             f"{num(c['hr_upper95'], 3)}", p_value(c["p"])] for c in cox["coefficients"]]
    ph_rows = [[r["term"], num(r["chi2"]), str(r["df"]), p_value(r["p"])] for r in cox["ph_test"]]
    glob = next((r for r in cox["ph_test"] if r["term"] == "GLOBAL"), None)
    ph_reading = None
    if glob is not None:
        verdict = ("No evidence against proportional hazards overall" if glob["p"] >= 0.05 else
                   "The proportional-hazards assumption is questionable (global test p < 0.05): hazard ratios "
                   "vary over follow-up, so the Cox O/E should be read alongside the logistic O/E")
        ph_reading = paragraph(f"{verdict} (global chi-squared {num(glob['chi2'])} on {glob['df']} df, "
                               f"{p_value(glob['p'])}).")
    return section(
        "Cox proportional hazards",
        paragraph(f"Fitted nationally on the audit's risk factors ({cox['patients']:,} patients, {cox['deaths']:,} "
                  f"deaths over follow-up; {cox['subsample']}; ties: {cox['ties']}; concordance "
                  f"{num(cox['concordance'], 3)}). A provider's expected deaths are the sum of its patients' "
                  "cumulative hazards at their own follow-up times; Cox O/E has exact Poisson limits on the same "
                  "funnel as the logistic O/E."),
        table(["Term", "Coefficient", "Hazard ratio", "95% CI", "p"], rows, numeric=(1, 2, 4),
              caption="National Cox proportional hazards model"),
        ph_reading,
        table(["Term", "Chi-squared", "df", "p"], ph_rows, numeric=(1, 2, 3),
              caption="Proportional-hazards check (Schoenfeld residuals)"),
        paragraph(f"{cox['ph_method']}.", css_class="note"),
        cox_funnel(ctx))


def cox_provider_section(ctx: ReportContext) -> Section | None:
    """This provider's Cox O/E with its interval, limits and flag, and the funnel with it highlighted."""
    mine = ctx.unit_rows("provider", ctx.provider)
    if "cox_oe_ratio" not in mine.index:
        return None
    r = mine.loc["cox_oe_ratio"]
    if r["suppressed"] or r["value"] != r["value"]:
        body = paragraph("Not shown: the numbers are too small to publish.")
    else:
        counts = ("" if ctx.withheld(r["observed"]) else
                  f" ({ctx.count_text(r['observed'])} deaths over follow-up against {num(r['expected'], 1)} expected)")
        body = paragraph(
            f"Cox O/E {num(r['value'])}{counts}, 95% interval {num(r['lower95'])} to {num(r['upper95'])}; control "
            f"limits at this provider's expected deaths: 95% {num(r['limit_lower95'])} to {num(r['limit_upper95'])}, "
            f"99.8% {num(r['limit_lower998'])} to {num(r['limit_upper998'])}. Status: ", Flag(r["flag"]), ".")
    return section(f"Risk-adjusted survival: {COX_LABEL}", body, cox_funnel(ctx))


def monitoring_section(ctx: ReportContext) -> Section | None:
    """RA-CUSUM (upper and lower) and VLAD charts of this provider, with signals marked."""
    info = ctx.meta.get("monitoring")
    if not info:
        return None
    series = ctx.bundle.provider_monitoring(ctx.provider)
    head = "Monitoring over time: RA-CUSUM and VLAD"
    crude = ctx.unit_rows("provider", ctx.provider)
    if series.empty:
        return section(head, paragraph("No patients with a known outcome to chart."))
    if ctx.public and "crude_mortality" in crude.index and crude.loc["crude_mortality", "suppressed"]:
        # Each death is a visible step on these charts, so a small count could be read off them.
        return section(head, paragraph("Not shown: the numbers are too small to publish."))
    n_up, n_lo = int(series["signal_upper"].sum()), int(series["signal_lower"].sum())
    return section(
        head,
        paragraph(f"Taking patients {info['order']}, each moves the charts by how far the outcome differs from the "
                  "national risk model's prediction. The upper CUSUM accumulates evidence that the odds of death are "
                  "doubled, the lower that they are halved; crossing the control limit is a signal, and the chart "
                  f"restarts at zero. {info['description']}. This provider: {n_up} upper and {n_lo} lower "
                  "signal(s). A signal prompts a look at the cases, not a judgement: with doubled odds the upper "
                  f"chart signals after a median of {info['delay_doubled_odds']['median_patients']:.0f} patients "
                  "(simulated), and an in-control chart gives a false signal now and then by design."),
        chart(figures.cusum_plot(series, h_upper=info["h_upper"], h_lower=info["h_lower"],
                                 title=f"RA-CUSUM: {ctx.provider_name}")),
        chart(figures.vlad_plot(series, title=f"VLAD: {ctx.provider_name}")),
        paragraph("VLAD: the running total of expected minus observed deaths (\"statistical lives gained\"; "
                  "Lovegrove et al. 1997). Rising: fewer deaths than predicted.", css_class="note"))


def monitoring_national(ctx: ReportContext) -> Section | None:
    """Every CUSUM signal in the period: provider, chart, patient and date."""
    info = ctx.meta.get("monitoring")
    sig = ctx.monitoring_signals() if info else None
    if sig is None:
        return None
    rows = []
    for r in sig.sort_values(["provider_code", "index"]).itertuples():
        which = "upper (worse than predicted)" if r.signal_upper else "lower (better than predicted)"
        when = "" if pd.isna(r.procedure_date) else str(pd.Timestamp(r.procedure_date).date())
        rows.append([ctx.unit_names.get(r.provider_code, r.provider_code), r.provider_code, which,
                     f"{r.index + 1:,}", when])
    delay = info["delay_doubled_odds"]
    text = paragraph(
        f"Risk-adjusted CUSUM charts (Steiner et al. 2000) of each provider's patients, {info['order']}, with the "
        "national risk model's predictions: upper chart R = 2, lower chart R = 1/2, restarting after a signal. "
        f"{info['description']}. With doubled odds the upper chart signals after a median of "
        f"{delay['median_patients']:.0f} patients (interquartile range {delay['q25_patients']:.0f} to "
        f"{delay['q75_patients']:.0f}; simulated). {info['signals_upper']} upper and {info['signals_lower']} lower "
        "signal(s) in the period.")
    if not rows:
        return section("Monitoring: RA-CUSUM signals", text, paragraph("No provider's chart signalled."))
    return section("Monitoring: RA-CUSUM signals", text, table(
        ["Provider", "Code", "Chart", "Patient number", "Procedure date"], rows, numeric=(3,),
        css_class="data sortable compact", caption="RA-CUSUM signals"))
