"""The survival and monitoring parts of a measure's section: Kaplan-Meier survival, median survival and
the log-rank test, the Cox O/E, and RA-CUSUM/VLAD monitoring.

Each takes the report's context and a measure id, and is ``None`` where it has nothing to show: survival
where the data have no follow-up, monitoring where the measure has none (no dates to order by).

A provider's own survival statistics are withheld from a public report when they rest on small
numbers: each step of a Kaplan-Meier curve, and of a CUSUM or VLAD chart, is an event.
"""

from __future__ import annotations

import pandas as pd

from auditreport.presentation import figures
from auditreport.presentation.blocks import Flag, Paragraph, Section, chart, paragraph, section, table
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import days, num, p_value, pct
from auditreport.presentation.measure_parts import funnel_chart, lower_first, survival_horizon
from auditreport.rules.disclosure import SUPPRESSED

COX_LABEL = "Cox observed / expected deaths (Cox O/E)"


def has_follow_up(ctx: ReportContext, measure_id: str) -> bool:
    """Whether a survival measure's national curve goes beyond day 0 (a curve of one spike is no curve)."""
    km = ctx.km(measure_id)
    national = km[km["unit_id"] == "national"]
    return bool(len(national)) and float(national["time"].max()) > 0


def _ci_transform(ctx: ReportContext, measure: dict) -> str:
    """The transform of a survival measure's Greenwood intervals, as the national stage recorded it."""
    return str((measure.get("survival") or {}).get("ci_transform") or measure.get("ci_transform") or "log-log")


def survival_section(ctx: ReportContext, measure_id: str, level: int = 3) -> Section | None:
    """The Kaplan-Meier curve (this provider's against the national) and survival at each horizon."""
    if not has_follow_up(ctx, measure_id):
        return None
    measure = ctx.measure(measure_id)
    words = ctx.wording
    km = ctx.km(measure_id)
    horizons = sorted(int(h) for h in measure.get("horizons") or [])
    nat_rows = ctx.unit_rows("national", "national", measure_id)
    own_rows = ctx.unit_rows("provider", ctx.provider, measure_id) if ctx.provider else nat_rows
    horizons = [h for h in horizons if f"survival_{h}d" in own_rows.index] or sorted(
        survival_horizon(s) for s in own_rows.index if s.startswith("survival_"))
    national = km[km["unit_id"] == "national"]
    mine = km[km["unit_id"] == ctx.provider] if ctx.provider else None
    withheld = None
    if ctx.public and ctx.provider and bool(own_rows.loc[own_rows.index.str.startswith("survival_"),
                                                         "suppressed"].any()):
        # Each step of a Kaplan-Meier curve is a death: a suppressed provider's curve would show its count.
        mine = None
        withheld = paragraph(f"This {words['provider']}'s survival curve is not shown in the published report "
                             "because its numbers are small or could reveal small numbers; the national curve is.",
                             css_class="note")
    horizon_max = float(max(horizons)) if horizons else float(national["time"].max())
    fig = figures.km_plot(national, mine, unit_label=ctx.provider_name if ctx.provider else "",
                          horizon_max=horizon_max, title=f"{measure['label']}: Kaplan-Meier survival",
                          at_risk_format=ctx.count_text, xlabel=f"Days since the {words['activity_singular']}")
    rows = []
    for h in horizons:
        nat, r = nat_rows.loc[f"survival_{h}d"], own_rows.loc[f"survival_{h}d"]
        ci = SUPPRESSED if r["suppressed"] else f"{pct(r['lower95'])} to {pct(r['upper95'])}"
        rows.append([f"{h} days", pct(r["value"]), ci, pct(nat["value"])])  # suppressed rows carry NaN
    return section(
        "Kaplan-Meier survival", withheld, chart(fig),
        table(["Horizon", "Survival", "95% interval", words["population"]], rows, numeric=(1, 3),
              caption="Kaplan-Meier survival at each horizon"),
        paragraph(f"Intervals: Greenwood variance with the {_ci_transform(ctx, measure)} transform. "
                  "The curve stops where follow-up ends.", css_class="note"), level=level)


def median_logrank_section(ctx: ReportContext, measure_id: str, level: int = 3) -> Section | None:
    """Median survival (with its convention and interval) and, for a provider, the log-rank test vs the rest."""
    tests = ctx.survival_tests(measure_id)
    if tests.empty or not has_follow_up(ctx, measure_id) or (ctx.provider and ctx.provider not in tests.index):
        return None
    measure = ctx.measure(measure_id)
    units = [(ctx.wording["population"], tests.loc["national"])]
    if ctx.provider:
        units.insert(0, (ctx.provider_name, tests.loc[ctx.provider]))
    rows = []
    for label, r in units:
        hidden = ctx.withheld(r["patients"], r["deaths"], measure=measure_id)
        rows.append([label, ctx.count_text(r["patients"], measure=measure_id), SUPPRESSED if hidden else days(r["median"]),
                     SUPPRESSED if hidden else f"{days(r['median_lower'])} to {days(r['median_upper'])}"])
    median = section(
        "Median survival",
        table(["Group", ctx.wording["activity"].capitalize(), "Median survival", "95% interval"], rows, numeric=(1,),
              counts=(1,), count_measures={1: measure_id}, caption=f"Median survival after the {ctx.wording['activity_singular']}"),
        paragraph("Median: the first time the Kaplan-Meier curve is at or below 50%, or the midpoint where it "
                  "sits at exactly 50% (R survival's convention; lifelines would take the start of that "
                  "stretch). Interval: where the 95% band crosses 50% (Brookmeyer and Crowley), "
                  f"{_ci_transform(ctx, measure)} transform. \"Not reached\": survival stays "
                  "above 50% (or the band above it) for the whole follow-up.", css_class="note"),
        level=level)
    return section("", median, _logrank(ctx, tests.loc[ctx.provider], measure_id, level) if ctx.provider else None,
                   level=level)


def _logrank(ctx: ReportContext, r: pd.Series, measure_id: str, level: int) -> Section | Paragraph:
    """This provider's log-rank test against the rest (withheld on small numbers where the measure's policy
    suppresses them)."""
    if ctx.withheld(r["patients"], r["deaths"], measure=measure_id):
        return paragraph("The log-rank comparison is not shown because the numbers are too small to publish.")
    direction = "more" if r["logrank_observed"] > r["logrank_expected"] else "fewer"
    rest = f"the rest of the {ctx.wording['providers']}"
    counts = ("" if ctx.public else
              f" ({r['logrank_observed']:.0f} deaths observed, {r['logrank_expected']:.1f} expected at "
              f"the death rates of {rest})")
    return section(f"Log-rank test against {rest}", paragraph(
        f"{ctx.provider_name} had {direction} deaths over follow-up than the death rate over time of {rest} would "
        f"give{counts}: chi-squared {num(r['logrank_chi2'])} on 1 degree of freedom, {p_value(r['logrank_p'])}. "
        "The log-rank test is not risk-adjusted; the Cox O/E is."), level=level)


def national_survival_tests(ctx: ReportContext, measure_id: str, level: int = 3) -> Section | None:
    """Every provider: median survival and the log-rank test against the rest, sortable."""
    tests = ctx.survival_tests(measure_id)
    if tests.empty or not has_follow_up(ctx, measure_id):
        return None
    measure = ctx.measure(measure_id)
    words = ctx.wording
    rows = []
    for unit, r in tests.drop(index="national", errors="ignore").iterrows():
        hidden = ctx.withheld(r["patients"], r["deaths"], measure=measure_id)
        rows.append([ctx.unit_names.get(unit, unit), unit, ctx.count_text(r["patients"], measure=measure_id),
                     SUPPRESSED if hidden else days(r["median"]), SUPPRESSED if hidden else num(r["logrank_chi2"]),
                     SUPPRESSED if hidden else p_value(r["logrank_p"])])
    nat = tests.loc["national"]
    none = int((measure.get("survival") or {}).get("records_without_provider") or 0)
    note = (f" {ctx.count_text(none)} record(s) had no {words['provider']} code: they are in the national figures "
            f"but not attributed to any {words['provider']}, and are part of \"the rest\" in every log-rank test."
            if none else "")
    return section(
        "Median survival and log-rank tests",
        paragraph(f"Median survival {days(nat['median'])} (95% interval {days(nat['median_lower'])} to "
                  f"{days(nat['median_upper'])}; R survival's convention, {_ci_transform(ctx, measure)} "
                  f"transform). Each {words['provider']}'s log-rank test compares its survival with the rest "
                  f"(not risk-adjusted; chi-squared on 1 df).{note}"),
        table([words["provider"].capitalize(), "Code", words["activity"].capitalize(), "Median survival",
               "Log-rank chi-squared", "p"], rows,
              numeric=(2, 3, 4), counts=(2,), count_measures={2: measure_id}, css_class="data sortable compact",
              caption=f"Median survival and log-rank test of each {words['provider']} against the rest"),
        level=level)


def cox_national_section(ctx: ReportContext, measure_id: str, level: int = 3) -> Section | None:
    """The national Cox model: hazard ratios, the proportional-hazards check, how it was fitted, the funnel."""
    cox = ctx.model(measure_id).get("cox")
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
                   "vary over follow-up, so the Cox O/E should be read with care")
        ph_reading = paragraph(f"{verdict} (global chi-squared {num(glob['chi2'])} on {glob['df']} df, "
                               f"{p_value(glob['p'])}).")
    words = ctx.wording
    return section(
        "Cox proportional hazards",
        paragraph(f"Fitted nationally on the audit's risk factors ({cox['patients']:,} {words['activity']}, "
                  f"{cox['deaths']:,} deaths over follow-up; {cox['subsample']}; ties: {cox['ties']}; concordance "
                  f"{num(cox['concordance'], 3)}). A {words['provider']}'s expected deaths are the sum of its "
                  "cumulative hazards at each record's own follow-up time; the Cox O/E has exact Poisson limits."),
        table(["Term", "Coefficient", "Hazard ratio", "95% CI", "p"], rows, numeric=(1, 2, 4),
              caption="National Cox proportional hazards model"),
        ph_reading,
        table(["Term", "Chi-squared", "df", "p"], ph_rows, numeric=(1, 2, 3),
              caption="Proportional-hazards check (Schoenfeld residuals)"),
        paragraph(f"{cox['ph_method']}.", css_class="note"), level=level)


def cox_provider_section(ctx: ReportContext, measure_id: str, level: int = 3) -> Section | None:
    """This provider's Cox O/E with its interval, limits and flag (the funnel is the measure's own)."""
    mine = ctx.unit_rows("provider", ctx.provider, measure_id)
    if "cox_oe_ratio" not in mine.index:
        return None
    measure = ctx.measure(measure_id)
    r = mine.loc["cox_oe_ratio"]
    if r["suppressed"] or r["value"] != r["value"]:
        body = paragraph("Not shown: the numbers are too small to publish.")
    else:
        counts = ("" if ctx.withheld(r["observed"], measure=measure_id) else
                  f" ({ctx.count_text(r['observed'], measure=measure_id)} deaths over follow-up against {num(r['expected'], 1)} expected)")
        body = paragraph(
            f"Cox O/E {num(r['value'])}{counts}, 95% interval {num(r['lower95'])} to {num(r['upper95'])}; control "
            f"limits at this {ctx.wording['provider']}'s expected deaths: 95% {num(r['limit_lower95'])} to "
            f"{num(r['limit_upper95'])}, 99.8% {num(r['limit_lower998'])} to {num(r['limit_upper998'])}. Status: ",
            Flag(r["flag"], measure.get("direction", "")), ".")
    return section(f"Risk-adjusted survival: {COX_LABEL}", body, level=level)


def cox_funnel_section(ctx: ReportContext, measure_id: str, level: int = 3):
    """The funnel of every provider's Cox O/E (the national report's; a provider's is its measure funnel)."""
    funnel = funnel_chart(ctx, measure_id)
    return section("Cox O/E funnel plot", funnel, level=level) if funnel is not None else None


def monitoring_section(ctx: ReportContext, measure_id: str, level: int = 3) -> Section | None:
    """RA-CUSUM (upper and lower) and VLAD charts of this provider for a measure, with signals marked.

    ``None`` when the measure has no monitoring (it needs an ordering date) or no series.
    """
    measure = ctx.measure(measure_id)
    info = measure.get("cusum")
    if not info or not ctx.provider:
        return None
    series = ctx.monitoring(measure_id, ctx.provider)
    head = "Monitoring over time: RA-CUSUM and VLAD"
    words = ctx.wording
    if series.empty:
        return section(head, paragraph(f"No {words['activity']} with a known outcome to chart."), level=level)
    rows = ctx.unit_rows("provider", ctx.provider, measure_id)
    if ctx.public and bool(rows["suppressed"].any()):
        # Each event is a visible step on these charts, so a small count could be read off them.
        return section(head, paragraph("Not shown: the numbers are too small to publish."), level=level)
    n_up, n_lo = int(series["signal_upper"].sum()), int(series["signal_lower"].sum())
    order = f"{words['activity'].capitalize()}, in order"
    return section(
        head,
        paragraph(f"Taking {words['activity']} {info['order']}, each moves the charts by how far its outcome "
                  f"({lower_first(measure['label'])}) differs from the national risk model's prediction. The upper "
                  "CUSUM accumulates evidence that the odds of the outcome are doubled, the lower that they are "
                  f"halved; crossing the control limit is a signal, and the chart restarts at zero. "
                  f"{info['description']}. This {words['provider']}: {n_up} upper and {n_lo} lower "
                  "signal(s). A signal prompts a look at the records, not a judgement: with doubled odds the upper "
                  f"chart signals after a median of {info['delay_doubled_odds']['median_patients']:.0f} "
                  f"{words['activity']} (simulated), and an in-control chart gives a false signal now and then by "
                  "design."),
        chart(figures.cusum_plot(series, h_upper=info["h_upper"], h_lower=info["h_lower"],
                                         title=f"RA-CUSUM: {ctx.provider_name}", order_label=order)),
        chart(figures.vlad_plot(series, title=f"VLAD: {ctx.provider_name}", order_label=order)),
        paragraph("VLAD: the running total of expected minus observed events (Lovegrove et al. 1997). Rising: "
                  "fewer events than predicted.", css_class="note"), level=level)


def monitoring_national(ctx: ReportContext, measure_id: str, level: int = 3) -> Section | None:
    """Every CUSUM signal of a measure in the period: provider, chart, record number and date."""
    info = ctx.measure(measure_id).get("cusum")
    if not info:
        return None
    words = ctx.wording
    sig = ctx.monitoring_signals(measure_id)
    rows = []
    for r in sig.sort_values(["provider_code", "index"]).itertuples():
        which = "upper (worse than predicted)" if r.signal_upper else "lower (better than predicted)"
        when = "" if pd.isna(r.procedure_date) else str(pd.Timestamp(r.procedure_date).date())
        rows.append([ctx.unit_names.get(r.provider_code, r.provider_code), r.provider_code, which,
                     f"{r.index + 1:,}", when])
    delay = info["delay_doubled_odds"]
    text = paragraph(
        f"Risk-adjusted CUSUM charts (Steiner et al. 2000) of each {words['provider']}'s {words['activity']}, "
        f"{info['order']}, with the national risk model's predictions: upper chart R = 2, lower chart R = 1/2, "
        f"restarting after a signal. {info['description']}. With doubled odds the upper chart signals after a "
        f"median of {delay['median_patients']:.0f} {words['activity']} (interquartile range "
        f"{delay['q25_patients']:.0f} to {delay['q75_patients']:.0f}; simulated). {info['signals_upper']} upper "
        f"and {info['signals_lower']} lower signal(s) in the period.")
    head = "Monitoring: RA-CUSUM signals"
    if not rows:
        return section(head, text, paragraph(f"No {words['provider']}'s chart signalled."), level=level)
    return section(head, text, table(
        [words["provider"].capitalize(), "Code", "Chart", f"{words['activity_singular'].capitalize()} number",
         "Date"], rows, numeric=(3,), css_class="data sortable compact", caption="RA-CUSUM signals"), level=level)
