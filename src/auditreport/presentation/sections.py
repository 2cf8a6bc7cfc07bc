"""The sections of the provider and national reports, built from a results bundle.

Notebooks call these and display what they return; they compute nothing
statistical themselves. Public-audience output passes through disclosure
control here, at the last step, so the same bundle serves both audiences.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import HTML, display
from matplotlib.figure import Figure

from auditreport.bundle import Bundle, load_bundle
from auditreport.presentation import figures
from auditreport.presentation.tables import count, esc, flag_badge, num, pct, table
from auditreport.rules.disclosure import format_count, is_small, suppress_group
from auditreport.rules.flags import ALARM_HIGH, ALARM_LOW, ALERT_HIGH, ALERT_LOW, AS_EXPECTED, NOT_ASSESSED

AUDIENCES = ("local", "public")
AUDIENCE_LABEL = {"local": "Confidential: local feedback", "public": "For publication"}
MORTALITY = ("crude_mortality", "oe_ratio", "risk_adjusted_mortality")
INDICATOR_LABEL = {"crude_mortality": "Crude mortality", "oe_ratio": "Observed / expected deaths (O/E)",
                   "risk_adjusted_mortality": "Risk-adjusted mortality"}


@dataclass
class ReportContext:
    bundle: Bundle
    audience: str
    provider: str | None = None

    @property
    def meta(self) -> dict:
        return self.bundle.metadata

    @property
    def public(self) -> bool:
        return self.audience == "public"

    @property
    def threshold(self) -> int:
        return int(self.meta["publication"]["suppression_threshold"])

    @cached_property
    def indicators(self) -> pd.DataFrame:
        """The indicator table as this audience may see it.

        The public table is the one the national stage suppressed once for every report and the open data.
        """
        if not self.public:
            return self.bundle.indicators.assign(suppressed=False)
        return self.bundle.indicators_public

    @property
    def provider_name(self) -> str:
        rows = self.bundle.indicators
        match = rows.loc[(rows["level"] == "provider") & (rows["unit_id"] == self.provider), "unit_name"]
        return str(match.iat[0]) if len(match) else str(self.provider)


def load_context(bundle_dir: str | Path, audience: str, provider: str | None = None) -> ReportContext:
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, got {audience!r}")
    bundle = load_bundle(bundle_dir)
    ctx = ReportContext(bundle=bundle, audience=audience, provider=provider)
    if provider is not None:
        known = set(bundle.indicators.loc[bundle.indicators["level"] == "provider", "unit_id"])
        if provider not in known:
            raise KeyError(f"provider {provider!r} has no results in {bundle.path}")
    figures.apply_style()
    return ctx


def show(*parts: str | Figure | list) -> None:
    """Display HTML fragments and figures in order (figures become PNGs with alt text, then close).

    A list is shown item by item, so a section may return one fragment or several.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Image

    from auditreport.presentation.png import figure_png

    for part in parts:
        if isinstance(part, list | tuple):
            show(*part)
        elif isinstance(part, Figure):
            # RGB, not Matplotlib's RGBA: the PDF then embeds the PNG without re-encoding it.
            png = figure_png(figures.only_ticks_in_view(part), dpi=150)
            alt = getattr(part, "alt_text", "") or _figure_title(part)
            display(Image(data=png, format="png"), metadata={"alt": alt})
            plt.close(part)
        else:
            display(HTML(part))


def _figure_title(fig: Figure) -> str:
    titles = [ax.get_title(loc="left") or ax.get_title() for ax in fig.axes]
    return "; ".join(t for t in titles if t) or "Chart"


def cover(ctx: ReportContext) -> str:
    m = ctx.meta
    audit = m["audit"]
    # The code goes on its own line: WeasyPrint breaks a long name badly before an inline span.
    heading = (f"<h1>{esc(ctx.provider_name)}</h1><p class='code'>Provider code {esc(ctx.provider)}</p>"
               if ctx.provider else "<h1>National report</h1>")
    data_sha = m["data"]["source"]["sha256"][:12]
    running = f"{audit['name']} · {ctx.provider_name if ctx.provider else 'National report'} · {audit['period']}"
    return f"""
<div class='cover' data-audience='{esc(ctx.audience)}' data-running='{esc(running)}'>
  <p class='audience audience-{esc(ctx.audience)}'>{esc(AUDIENCE_LABEL[ctx.audience])}</p>
  <p class='audit-name'>{esc(audit['name'])}</p>
  {heading}
  <p class='period'>Period {esc(audit['period'])} &middot; outcome: {esc(audit['outcome'])}</p>
  <dl class='provenance'>
    <dt>Produced</dt><dd>{esc(m['created'])}</dd>
    <dt>Software</dt><dd>auditreport {esc(m['code']['package_version'])}, commit
        {esc(m['code']['git_commit'][:12])}</dd>
    <dt>Data fingerprint</dt><dd><code>{esc(data_sha)}</code> (SHA-256 of the extract)</dd>
    <dt>Configuration</dt><dd><code>{esc(m['config']['sha256'][:12])}</code></dd>
  </dl>
</div>"""


def _unit_rows(ctx: ReportContext, level: str, unit: str) -> pd.DataFrame:
    t = ctx.indicators
    return t[(t["level"] == level) & (t["unit_id"] == unit)].set_index("indicator")


def at_a_glance(ctx: ReportContext) -> str:
    """Each indicator: this provider's value, the national value, the interval and the flag."""
    mine = _unit_rows(ctx, "provider", ctx.provider)
    nat = _unit_rows(ctx, "national", "national")
    rows = []
    for indicator in list(MORTALITY) + sorted(i for i in mine.index if i.startswith("survival_")):
        if indicator not in mine.index:
            continue
        r, n = mine.loc[indicator], nat.loc[indicator]
        fmt = num if indicator == "oe_ratio" else pct
        label = INDICATOR_LABEL.get(indicator, _survival_label(indicator))
        interval = "*" if r["suppressed"] else f"{fmt(r['lower95'])} to {fmt(r['upper95'])}"
        rows.append([esc(label), esc(fmt(r["value"])), esc(fmt(n["value"])), esc(interval),
                     flag_badge(r["flag"])])
    cases = mine.loc["crude_mortality"]
    deaths = format_count(cases["numerator"], ctx.threshold, ctx.public)
    sentences = [crude_reading(cases, nat.loc["crude_mortality"]), reading(mine.loc["risk_adjusted_mortality"]),
                 survival_reading(ctx), small_numbers_caveat(ctx), quality_caveat(ctx)]
    summary = (f"<p class='lead'>{esc(ctx.provider_name)} reported "
               f"{count(format_count(cases['denominator'], ctx.threshold, ctx.public))} "
               f"procedures in the period, with {count(deaths)} deaths within "
               f"{ctx.meta['audit']['outcome_days']} days.</p>"
               + "".join(f"<p>{esc(x)}</p>" for x in sentences if x))
    return "<h2>At a glance</h2>" + summary + table(
        ["Indicator", "This provider", "National", "95% interval", "Outlier status"], rows, raw=True,
        numeric=(1, 2), caption="Indicators for this provider against the national figure")


def reading(row: pd.Series) -> str:
    """A plain-English sentence about a risk-adjusted mortality row."""
    if row.get("suppressed", False) or row["value"] != row["value"]:
        return ("Its risk-adjusted mortality is not shown because it involves small numbers, or could be used with "
                "other published figures to work them out.")
    value = pct(row["value"])
    flag = row["flag"]
    sentences = {
        AS_EXPECTED: f"Its risk-adjusted mortality of {value} is within the expected range.",
        ALERT_HIGH: f"Its risk-adjusted mortality of {value} is higher than expected: above the 95% "
                      "control limit (an alert).",
        ALARM_HIGH: f"Its risk-adjusted mortality of {value} is much higher than expected: above the 99.8% "
                      "control limit (an alarm).",
        ALERT_LOW: f"Its risk-adjusted mortality of {value} is lower than expected: below the 95% control "
                     "limit (a positive alert).",
        ALARM_LOW: f"Its risk-adjusted mortality of {value} is much lower than expected: below the 99.8% "
                     "control limit (a positive alarm).",
    }
    return sentences.get(flag, f"Its risk-adjusted mortality is {value}.")


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
    mine, nat = _unit_rows(ctx, "provider", ctx.provider), _unit_rows(ctx, "national", "national")
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
    mine = _unit_rows(ctx, "provider", ctx.provider)
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


def _survival_label(indicator: str) -> str:
    days = indicator.removeprefix("survival_").removesuffix("d")
    return f"Survival at {days} days"


def funnel(ctx: ReportContext, level: str = "provider", indicator: str = "risk_adjusted_mortality") -> Figure:
    t = ctx.indicators
    units = t[(t["level"] == level) & (t["indicator"] == indicator)]
    units = units[units["value"].notna()]
    curves = ctx.bundle.funnels
    curve = curves[(curves["level"] == level) & (curves["indicator"] == indicator)]
    ratio = indicator == "oe_ratio"
    rate = float(ctx.meta["national"]["rate"])
    x = "denominator" if indicator == "crude_mortality" else "expected"
    return figures.funnel_plot(
        units, curve, target=1.0 if ratio else rate, x=x, y="value",
        xlabel="Cases" if x == "denominator" else "Expected deaths (log scale)",
        ylabel="O/E ratio" if ratio else f"{INDICATOR_LABEL[indicator]} (%)",
        title=f"{INDICATOR_LABEL[indicator]}: {level}s", percent=not ratio,
        highlight=ctx.provider if level == "provider" else None,
        highlight_label=ctx.provider_name if ctx.provider else None)


def funnel_section(ctx: ReportContext) -> list:
    row = _unit_rows(ctx, "provider", ctx.provider).loc["risk_adjusted_mortality"]
    hidden = int((ctx.indicators.query("level == 'provider' and indicator == 'risk_adjusted_mortality'")
                  ["value"].isna()).sum())
    note = (f"<p class='note'>{hidden} provider(s) with small numbers are not plotted.</p>" if hidden else "")
    limits = ("" if row["suppressed"] else
              f"<p>Control limits at this provider's expected deaths: 95% {pct(row['limit_lower95'])} to "
              f"{pct(row['limit_upper95'])}; 99.8% {pct(row['limit_lower998'])} to {pct(row['limit_upper998'])}.</p>")
    return ["<h2>Risk-adjusted mortality: funnel plot</h2>"
            f"<p>{esc(reading(row))}</p>" + limits + note, funnel(ctx)]


def survival_section(ctx: ReportContext) -> list:
    km = ctx.bundle.km
    horizons = ctx.meta["survival"]["horizons"]
    national = km[km["unit_id"] == "national"]
    mine = km[km["unit_id"] == ctx.provider] if ctx.provider else None
    withheld = ""
    if ctx.public and ctx.provider:
        surv = _unit_rows(ctx, "provider", ctx.provider)
        if bool(surv.loc[surv.index.str.startswith("survival_"), "suppressed"].any()):
            # Each step of a Kaplan-Meier curve is a death: a suppressed provider's curve would show its count.
            mine = None
            withheld = ("<p class='note'>This provider's survival curve is not shown in the published report "
                        "because its numbers are small or could reveal small numbers; the national curve is.</p>")
    hmax = float(max(horizons))
    fig = figures.km_plot(national, mine, unit_label=ctx.provider_name if ctx.provider else "",
                          horizon_max=hmax, title="Kaplan-Meier survival after the procedure",
                          at_risk_format=lambda n: format_count(n, ctx.threshold, ctx.public))
    rows = []
    for h in horizons:
        ind = f"survival_{h}d"
        nat = _unit_rows(ctx, "national", "national").loc[ind]
        r = _unit_rows(ctx, "provider", ctx.provider).loc[ind] if ctx.provider else nat
        ci = "*" if r["suppressed"] else f"{pct(r['lower95'])} to {pct(r['upper95'])}"
        rows.append([f"{h} days", pct(r["value"]), ci, pct(nat["value"])])  # suppressed rows carry NaN
    note = (f"<p class='note'>Intervals: Greenwood variance with the {esc(ctx.meta['survival']['ci_transform'])} "
            "transform. The curve stops where follow-up ends.</p>")
    tab = table(["Horizon", "Survival", "95% interval", "National"], rows, numeric=(1, 3),
                caption="Kaplan-Meier survival at each horizon")
    return ["<h2>Survival</h2>" + withheld, fig, tab + note]


def case_mix_section(ctx: ReportContext) -> list:
    mix = ctx.bundle.casemix
    mine = mix[mix["unit_id"] == ctx.provider].set_index(["variable", "category"])
    nat = mix[mix["unit_id"] == "national"].set_index(["variable", "category"])
    parts: list = ["<h2>Case mix</h2><p>Share of this provider's patients in each group, against the country. "
                   "Groups are the risk factors of the national model; a provider with a sicker case mix has more "
                   "expected deaths.</p>"]
    chart = []
    tables = []
    for variable in nat.index.get_level_values(0).unique():
        order = _category_order(nat.loc[variable].index)
        counts = {c: float(mine["n"].get((variable, c), 0)) for c in order}
        # The categories add up to the provider's cases, which are published: hide complements too.
        hidden = suppress_group(counts, ctx.threshold) if ctx.public else set()
        rows = []
        for category in order:
            share = mine["share"].get((variable, category), 0.0)
            nat_share = nat.loc[(variable, category), "share"]
            rows.append([category, format_count(counts[category], ctx.threshold, ctx.public, category in hidden),
                         "*" if category in hidden else pct(share), pct(nat_share)])
            chart.append({"variable": _variable_label(variable), "category": str(category),
                          "share": np.nan if category in hidden else share, "national": nat_share})
        tables.append(table([_variable_label(variable), "Patients", "Share", "National share"], rows,
                            numeric=(2, 3), counts=(1,), css_class="data compact"))
    parts.append(figures.case_mix_chart(pd.DataFrame(chart), unit_label=ctx.provider_name))
    parts.append("<div class='casemix-tables'>" + "".join(tables) + "</div>")
    return parts


def _variable_label(variable: str) -> str:
    special = {"asa": "ASA grade", "bmi": "BMI", "predicted risk (national tenths)": "Predicted risk (national tenths)"}
    return special.get(variable, variable.replace("_", " ").capitalize())


def _category_order(categories: pd.Index) -> list[str]:
    from auditreport.analysis.quality import AGE_LABELS

    rank = {label: i for i, label in enumerate(AGE_LABELS)}
    return sorted(categories, key=lambda c: (c == "missing", rank.get(c, len(rank)), str(c)))


def quality_section(ctx: ReportContext) -> str:
    q = ctx.bundle.quality.set_index("unit_id")
    mine, nat = q.loc[ctx.provider], q.loc["national"]
    t, pub = ctx.threshold, ctx.public
    excluded = [c for c in q.columns if c.startswith("excluded: ")]
    # Exclusion reasons add up to submitted minus analysed, both published: suppress complements too.
    hidden = suppress_group({c: float(mine[c]) for c in excluded}, t) if pub else set()
    rows = [["Records submitted", format_count(mine["records_submitted"], t, pub), f"{int(nat['records_submitted']):,}"],
            ["Records analysed", format_count(mine["records_analysed"], t, pub), f"{int(nat['records_analysed']):,}"]]
    for col in excluded:
        rows.append([f"Excluded: {col.removeprefix('excluded: ')}", format_count(mine[col], t, pub, col in hidden),
                     format_count(nat[col], t, pub)])
    for col in q.columns:
        if col.startswith("complete: "):
            rows.append([f"Completeness: {col.removeprefix('complete: ')}",
                         _completeness(mine[col], mine["records_analysed"], t, pub),
                         _completeness(nat[col], nat["records_analysed"], t, pub)])
    for col in q.columns:
        if col.startswith("imputed: "):
            rows.append([f"Imputed: {col.removeprefix('imputed: ')}", format_count(mine[col], t, pub),
                         format_count(nat[col], t, pub)])
    note = (f"<p class='note'>Completeness is shown as * where between 1 and {t} records lack the field, since "
            "the percentage with the number of records would give the count.</p>" if pub else "")
    return "<h2>Data quality</h2>" + table(["Measure", "This provider", "National"], rows, numeric=(1, 2),
                                            counts=(1, 2), caption="Records, completeness of key fields and imputation") + note


def _completeness(share: float, records: float, threshold: int, public: bool) -> str:
    """Completeness as a percentage, withheld in public where the missing count is small."""
    missing = round((1 - share) * records) if share == share and records == records else 0
    return "*" if public and bool(is_small(missing, threshold)) else pct(share)


def consultant_section(ctx: ReportContext) -> list:
    if ctx.public and not ctx.meta["publication"]["publish_consultants"]:
        return []
    t = ctx.indicators
    rows = t[(t["level"] == "consultant") & (t["parent_id"] == ctx.provider)
             & (t["indicator"] == "risk_adjusted_mortality")].sort_values("unit_id")
    if rows.empty:
        return []
    body = [[esc(r.unit_id), esc(format_count(r.denominator, ctx.threshold, ctx.public)),
             esc(format_count(r.observed, ctx.threshold, ctx.public, bool(r.suppressed))), esc(num(r.expected, 1)),
             esc(pct(r.value)), esc("*" if r.suppressed else f"{pct(r.lower95)} to {pct(r.upper95)}"),
             flag_badge(r.flag)] for r in rows.itertuples()]
    # The explanation is the caption, so the heading stays on the page of its table.
    return ["<h2>Consultants</h2>" + table(
        ["Consultant", "Cases", "Deaths", "Expected", "Risk-adjusted", "95% interval", "Status"], body, raw=True,
        numeric=(3, 4), counts=(1, 2), caption="Risk-adjusted mortality by consultant (identified by code), "
        "with the national risk model and limits used for providers"),
        figures_funnel_consultants(ctx, set(rows["unit_id"]))]


def figures_funnel_consultants(ctx: ReportContext, mine: set[str]) -> Figure:
    """Funnel of every consultant nationally, this provider's consultants highlighted."""
    t = ctx.indicators
    units = t[(t["level"] == "consultant") & (t["indicator"] == "risk_adjusted_mortality") & t["value"].notna()]
    curves = ctx.bundle.funnels
    curve = curves[(curves["level"] == "consultant") & (curves["indicator"] == "risk_adjusted_mortality")]
    return figures.funnel_plot(
        units, curve, target=float(ctx.meta["national"]["rate"]), x="expected", y="value",
        xlabel="Expected deaths (log scale)", ylabel="Risk-adjusted mortality (%)",
        title="Risk-adjusted mortality: consultants", percent=True, highlight_set=mine,
        highlight_label="this provider's consultants")


def next_steps(ctx: ReportContext) -> str:
    contact = esc(ctx.meta["audit"].get("contact") or "the audit team")
    return f"""<h2>What a flag means and what happens next</h2>
<p>Under the HQIP outlier process an <strong>alert</strong> (beyond the 95% limit) or an <strong>alarm</strong>
(beyond the 99.8% limit) starts a staged review before anything is published: the audit checks the data; the
provider's clinical lead is told and asked to check the data and respond; if the flag stands, the chief
executive is told and, for a confirmed alarm, the Care Quality Commission. Results lower than expected are
reported too, as positive outliers.</p><p>Questions about this report: {contact}.</p>"""


def methods(ctx: ReportContext) -> str:
    m = ctx.meta
    model = ctx.bundle.model
    perf = model.get("performance", {})
    od = m.get("overdispersion", {}).get("provider", {}).get("ratio", {})
    c = perf.get("c_statistic")
    c_text = (f"c-statistic {c:.3f} (95% CI {perf.get('c_lower', float('nan')):.3f} to "
              f"{perf.get('c_upper', float('nan')):.3f})" if c is not None else "")
    return [f"""<h2>Methods</h2>
<p>Expected deaths are the sum of each patient's predicted risk from a logistic regression fitted once on the
whole national cohort ({m['national']['cases']:,} patients, {int(m['national']['deaths']):,} deaths); {c_text}.
The O/E ratio's interval is the exact Poisson interval of the observed deaths divided by the expected; the
risk-adjusted rate is O/E times the national rate ({pct(m['national']['rate'], 2)}). Funnel limits at 95% and 99.8%
follow Spiegelhalter (2005); over-dispersion: {esc(od.get('method', 'none'))}
(phi = {od.get('phi', 1.0):.3f}, tau&sup2; = {od.get('tau2', 0.0):.4g}). Outliers follow HQIP (2024).
Counts from 1 to {ctx.threshold} are suppressed in published outputs, and so is the next smallest count
wherever a suppressed one could otherwise be worked out from a total.</p>""",
        # The national report shows the calibration plot in its risk-model section already.
        calibration_figure(ctx) if ctx.provider is not None else "",
        "<p class='note'>References: Spiegelhalter DJ. Funnel plots for comparing institutional performance. "
        "Stat Med 2005;24:1185-202. HQIP. Detection and management of outliers for national clinical audits, "
        "2024. NHS Digital. Disclosure control guidance for small numbers.</p>"]


def calibration_figure(ctx: ReportContext) -> Figure:
    """Observed against expected mortality by tenth of predicted risk (public: small tenths withheld)."""
    cal = pd.DataFrame(ctx.bundle.model.get("calibration", []))
    if ctx.public and not cal.empty:
        hidden = suppress_group(dict(zip(cal["group"], cal["observed"].astype(float), strict=True)), ctx.threshold)
        cal.loc[cal["group"].isin(hidden), ["observed", "observed_rate", "lower95", "upper95"]] = np.nan
    perf = ctx.bundle.model.get("performance", {})
    return figures.calibration_plot(cal, c_statistic=perf.get("c_statistic"),
                                    slope=perf.get("calibration_slope"))


# National report -------------------------------------------------------------------------------

def national_summary(ctx: ReportContext) -> str:
    m = ctx.meta["national"]
    t = ctx.indicators
    prov = t[(t["level"] == "provider") & (t["indicator"] == "risk_adjusted_mortality")]
    counts = prov["flag"].value_counts()
    flagged = ", ".join(f"{n} {label.lower()}" for flag, n in counts.items() if flag != AS_EXPECTED
                        for label in [flag.replace("_", " ")])
    return (f"<h2>Summary</h2><p class='lead'>{m['providers']} providers submitted {m['records_submitted']:,} "
            f"records; {m['cases']:,} were analysed, with {int(m['deaths']):,} deaths within "
            f"{ctx.meta['audit']['outcome_days']} days (national rate {pct(m['rate'], 2)}). "
            f"Risk-adjusted outlier flags: {esc(flagged or 'none')}.</p>" + _without_cases(m) + outlier_list(ctx))


def _without_cases(national: dict) -> str:
    """Caveat naming providers with no case analysed in the period (they have no report)."""
    silent = national.get("providers_without_cases") or []
    if not silent:
        return ""
    names = ", ".join(f"{esc(p['provider_name'])} ({esc(p['provider_code'])})" for p in silent)
    return (f"<p class='note'>{len(silent)} provider(s) had no cases to analyse in the period and have no "
            f"results: {names}.</p>")


def outlier_list(ctx: ReportContext) -> str:
    """The providers with an alert or alarm on any mortality indicator."""
    t = ctx.indicators
    flagged = t[(t["level"] == "provider") & t["indicator"].isin(MORTALITY) & ~t["flag"].isin([AS_EXPECTED, NOT_ASSESSED])]
    if flagged.empty:
        return "<h2>Alert and alarm providers</h2><p>No provider is outside the 95% limits.</p>"
    rows = [[esc(r.unit_name), esc(r.unit_id), esc(INDICATOR_LABEL[r.indicator]),
             esc(num(r.value) if r.indicator == "oe_ratio" else pct(r.value)), flag_badge(r.flag)]
            for r in flagged.sort_values(["flag", "unit_name"]).itertuples()]
    return "<h2>Alert and alarm providers</h2>" + table(
        ["Provider", "Code", "Indicator", "Value", "Status"], rows, raw=True, numeric=(3,),
        caption="Providers outside the 95% (alert) or 99.8% (alarm) limits")


def overdispersion_table(ctx: ReportContext) -> str:
    """Over-dispersion estimates by level and indicator type."""
    od = ctx.meta.get("overdispersion", {})
    rows = []
    for level, kinds in od.items():
        for kind, e in kinds.items():
            p = e.get("chi2_p")
            rows.append([level, kind, e.get("method", "none"), num(e.get("phi", 1.0), 3), f"{e.get('tau2', 0.0):.4g}",
                         str(e.get("n_units", "")), "" if p is None else f"{p:.3g}"])
    return "<h2>Over-dispersion</h2>" + table(
        ["Level", "Indicator type", "Method", "phi", "tau\u00b2", "Units", "Chi-squared p"], rows, numeric=(3, 4, 5, 6),
        caption="Over-dispersion estimates (phi = 1 and tau\u00b2 = 0 when none is applied)")


def ranked_table(ctx: ReportContext) -> str:
    t = ctx.indicators
    prov = t[(t["level"] == "provider") & (t["indicator"] == "risk_adjusted_mortality")].sort_values(
        "value", ascending=False, na_position="last")
    rows = [[esc(r.unit_name), esc(r.unit_id), esc(format_count(r.denominator, ctx.threshold, ctx.public)),
             esc(format_count(r.observed, ctx.threshold, ctx.public, bool(r.suppressed))), esc(num(r.expected, 1)),
             esc(pct(r.value)),
             esc("*" if r.suppressed else f"{pct(r.lower95)} to {pct(r.upper95)}"), flag_badge(r.flag)]
            for r in prov.itertuples()]
    return "<h2>All providers</h2>" + table(
        ["Provider", "Code", "Cases", "Deaths", "Expected", "Risk-adjusted", "95% interval", "Status"], rows,
        raw=True, numeric=(4, 5), counts=(2, 3), css_class="data sortable",
        caption="Providers ranked by risk-adjusted mortality (click a heading to sort)")


def model_section(ctx: ReportContext) -> str:
    model = ctx.bundle.model
    coefs = pd.DataFrame(model.get("coefficients", []))
    parts = ["<h2>Risk model</h2>"]
    if not coefs.empty:
        rows = [[esc(r.term), num(r.coefficient, 3), num(getattr(r, "odds_ratio", np.nan), 2),
                 f"{num(r.lower95, 3)} to {num(r.upper95, 3)}" if hasattr(r, "lower95") else ""]
                for r in coefs.itertuples()]
        parts.append(table(["Term", "Coefficient", "Odds ratio", "95% CI (coefficient)"], rows, numeric=(1, 2)))
    cal = pd.DataFrame(model.get("calibration", []))
    if not cal.empty:
        # Tenths add up to the national deaths: primary and secondary suppression in public.
        hidden = (suppress_group(dict(zip(cal["group"], cal["observed"].astype(float), strict=True)), ctx.threshold)
                  if ctx.public else set())
        rows = [[int(r.group), format_count(r.n, ctx.threshold, ctx.public),
                 format_count(r.observed, ctx.threshold, ctx.public, r.group in hidden), f"{r.expected:,.1f}",
                 "*" if r.group in hidden else pct(r.observed_rate, 2), pct(r.expected_rate, 2)]
                for r in cal.itertuples()]
        parts.append(calibration_figure(ctx))
        parts.append(table(["Tenth of risk", "Patients", "Observed", "Expected", "Observed rate",
                            "Expected rate"], rows, numeric=(3, 4, 5), counts=(1, 2), caption="Calibration by tenths"))
    parts.append(overdispersion_table(ctx))
    return parts


def quality_by_provider(ctx: ReportContext) -> str:
    q = ctx.bundle.quality
    complete = [c for c in q.columns if c.startswith("complete: ")]
    rows = [[esc(r["unit_id"]), format_count(r["records_submitted"], ctx.threshold, ctx.public)]
            + [_completeness(r[c], r["records_analysed"], ctx.threshold, ctx.public) for c in complete]
            for _, r in q.iterrows()]
    return "<h2>Data completeness by provider</h2>" + table(
        ["Provider", "Records"] + [c.removeprefix("complete: ") for c in complete], rows,
        numeric=tuple(range(2, len(complete) + 2)), counts=(1,), css_class="data sortable compact",
        caption="Share of records with each key field (click a heading to sort)")


# Survival tests, Cox O/E and monitoring (issue #4) ---------------------------------------------------------------
# Appended as new functions so the sections above can be restyled independently.

COX_LABEL = "Cox observed / expected deaths (Cox O/E)"


def _survival_tests(ctx: ReportContext) -> pd.DataFrame:
    tests = ctx.bundle.survival_tests
    return tests.set_index("unit_id") if len(tests) else tests


def _small(ctx: ReportContext, patients: float, deaths: float) -> bool:
    """In public outputs, a unit with 1 to threshold patients or deaths shows no survival statistics."""
    from auditreport.rules.disclosure import is_small

    return ctx.public and bool(is_small([patients], ctx.threshold)[0] or is_small([deaths], ctx.threshold)[0])


def _days(value: float) -> str:
    return "not reached" if value != value else f"{value:,.0f} days"


def _p_value(p: float) -> str:
    if p != p:
        return "not computable"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def median_logrank_section(ctx: ReportContext) -> str:
    """Median survival (with its convention and interval) and, for a provider, the log-rank test vs the rest."""
    tests = _survival_tests(ctx)
    if tests.empty:
        return ""
    nat = tests.loc["national"]
    convention = ("Median: the first time the Kaplan-Meier curve is at or below 50%, or the midpoint where it "
                  "sits at exactly 50% (R survival's convention; lifelines would take the start of that "
                  "stretch). Interval: where the 95% band crosses 50% (Brookmeyer and Crowley), "
                  f"{esc(ctx.meta['survival']['ci_transform'])} transform. \"Not reached\": survival stays "
                  "above 50% (or the band above it) for the whole follow-up.")
    rows = []
    units = [("National", nat)]
    if ctx.provider:
        units.insert(0, (ctx.provider_name, tests.loc[ctx.provider]))
    for label, r in units:
        hidden = _small(ctx, r["patients"], r["deaths"])
        rows.append([label, format_count(r["patients"], ctx.threshold, ctx.public),
                     "*" if hidden else _days(r["median"]),
                     "*" if hidden else f"{_days(r['median_lower'])} to {_days(r['median_upper'])}"])
    html = "<h3>Median survival</h3>" + table(["", "Patients", "Median survival", "95% interval"], rows,
                                               numeric=(1,), counts=(1,), caption="Median survival after the procedure")
    html += f"<p class='note'>{convention}</p>"
    if ctx.provider:
        r = tests.loc[ctx.provider]
        if _small(ctx, r["patients"], r["deaths"]):
            html += "<p>The log-rank comparison is not shown because the numbers are too small to publish.</p>"
        else:
            direction = ("more" if r["logrank_observed"] > r["logrank_expected"] else "fewer")
            counts = ("" if ctx.public else
                      f" ({r['logrank_observed']:.0f} deaths observed, {r['logrank_expected']:.1f} expected at "
                      "the rest of the country's death rates)")
            html += (f"<h3>Log-rank test against the rest of the country</h3><p>{esc(ctx.provider_name)} had "
                     f"{direction} deaths over follow-up than the national death rate over time would give"
                     f"{counts}: chi-squared {num(r['logrank_chi2'])} on 1 degree of freedom, "
                     f"{_p_value(r['logrank_p'])}. The log-rank test is not risk-adjusted; the Cox O/E below "
                     "is.</p>")
    return html


def national_survival_tests(ctx: ReportContext) -> str:
    """All providers: median survival and the log-rank test against the rest, sortable."""
    tests = _survival_tests(ctx)
    if tests.empty:
        return ""
    names = ctx.indicators.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
    rows = []
    for unit, r in tests.drop(index="national", errors="ignore").iterrows():
        hidden = _small(ctx, r["patients"], r["deaths"])
        rows.append([esc(names.get(unit, unit)), esc(unit), format_count(r["patients"], ctx.threshold, ctx.public),
                     "*" if hidden else _days(r["median"]),
                     "*" if hidden else num(r["logrank_chi2"]), "*" if hidden else _p_value(r["logrank_p"])])
    nat = tests.loc["national"]
    none = int(ctx.meta["survival"].get("records_without_provider", 0))
    note = (f" {format_count(none, ctx.threshold, ctx.public)} record(s) had no provider code: they are in the national figures but not attributed to any "
            "provider, and are part of \"the rest\" in every log-rank test." if none else "")
    return ("<h2>Median survival and log-rank tests</h2>"
            f"<p>National median survival {_days(nat['median'])} (95% interval {_days(nat['median_lower'])} to "
            f"{_days(nat['median_upper'])}; R survival's convention, {esc(ctx.meta['survival']['ci_transform'])} "
            f"transform). Each provider's log-rank test compares its survival with the rest of the country "
            f"(not risk-adjusted; chi-squared on 1 df).{note}</p>"
            + table(["Provider", "Code", "Patients", "Median survival", "Log-rank chi-squared", "p"], rows,
                    raw=True, numeric=(2, 3, 4), counts=(2,), css_class="data sortable compact",
                    caption="Median survival and log-rank test of each provider against the rest"))


def cox_funnel(ctx: ReportContext) -> Figure:
    t = ctx.indicators
    units = t[(t["level"] == "provider") & (t["indicator"] == "cox_oe_ratio") & t["value"].notna()]
    curves = ctx.bundle.funnels
    curve = curves[(curves["level"] == "provider") & (curves["indicator"] == "cox_oe_ratio")]
    return figures.funnel_plot(units, curve, target=1.0, x="expected", y="value",
                               xlabel="Cox-expected deaths over follow-up (log scale)", ylabel="Cox O/E ratio",
                               title=f"{COX_LABEL}: providers", highlight=ctx.provider,
                               highlight_label=ctx.provider_name if ctx.provider else None)


def cox_national_section(ctx: ReportContext) -> list:
    """The national Cox model: hazard ratios, the proportional-hazards check, how it was fitted, the funnel."""
    cox = ctx.bundle.model.get("cox")
    if not cox:
        return []
    rows = [[esc(c["term"]), num(c["coef"], 4), num(c["hr"], 3), f"{num(c['hr_lower95'], 3)} to "
             f"{num(c['hr_upper95'], 3)}", _p_value(c["p"])] for c in cox["coefficients"]]
    coef = table(["Term", "Coefficient", "Hazard ratio", "95% CI", "p"], rows, numeric=(1, 2, 4),
                 caption="National Cox proportional hazards model")
    ph_rows = [[esc(r["term"]), num(r["chi2"]), str(r["df"]), _p_value(r["p"])] for r in cox["ph_test"]]
    ph = table(["Term", "Chi-squared", "df", "p"], ph_rows, numeric=(1, 2, 3),
               caption="Proportional-hazards check (Schoenfeld residuals)")
    glob = next((r for r in cox["ph_test"] if r["term"] == "GLOBAL"), None)
    ph_reading = ""
    if glob is not None:
        ph_reading = ("No evidence against proportional hazards overall" if glob["p"] >= 0.05 else
                      "The proportional-hazards assumption is questionable (global test p < 0.05): hazard ratios "
                      "vary over follow-up, so the Cox O/E should be read alongside the logistic O/E")
        ph_reading = f"<p>{ph_reading} (global chi-squared {num(glob['chi2'])} on {glob['df']} df, {_p_value(glob['p'])}).</p>"
    text = (f"<h2>Cox proportional hazards</h2><p>Fitted nationally on the audit's risk factors "
            f"({cox['patients']:,} patients, {cox['deaths']:,} deaths over follow-up; {esc(cox['subsample'])}; "
            f"ties: {esc(cox['ties'])}; concordance {num(cox['concordance'], 3)}). A provider's expected deaths are "
            "the sum of its patients' cumulative hazards at their own follow-up times; Cox O/E has exact Poisson "
            "limits on the same funnel as the logistic O/E.</p>")
    return [text + coef + ph_reading + ph + f"<p class='note'>{esc(cox['ph_method'])}.</p>", cox_funnel(ctx)]


def cox_provider_section(ctx: ReportContext) -> list:
    """This provider's Cox O/E with its interval, limits and flag, and the funnel with it highlighted."""
    mine = _unit_rows(ctx, "provider", ctx.provider)
    if "cox_oe_ratio" not in mine.index:
        return []
    r = mine.loc["cox_oe_ratio"]
    if r["suppressed"] or r["value"] != r["value"]:
        body = "<p>Not shown: the numbers are too small to publish.</p>"
    else:
        counts = ("" if ctx.public and 1 <= r["observed"] <= ctx.threshold else
                  f" ({format_count(r['observed'], ctx.threshold, ctx.public)} deaths over follow-up against "
                  f"{num(r['expected'], 1)} expected)")
        body = (f"<p>Cox O/E {num(r['value'])}{counts}, 95% interval {num(r['lower95'])} to {num(r['upper95'])}; "
                f"control limits at this provider's expected deaths: 95% {num(r['limit_lower95'])} to "
                f"{num(r['limit_upper95'])}, 99.8% {num(r['limit_lower998'])} to {num(r['limit_upper998'])}. "
                f"Status: {flag_badge(r['flag'])}.</p>")
    return [f"<h2>Risk-adjusted survival: {COX_LABEL}</h2>" + body, cox_funnel(ctx)]


def monitoring_section(ctx: ReportContext) -> list:
    """RA-CUSUM (upper and lower) and VLAD charts of this provider, with signals marked."""
    info = ctx.meta.get("monitoring")
    if not info:
        return []
    series = ctx.bundle.provider_monitoring(ctx.provider)
    head = "<h2>Monitoring over time: RA-CUSUM and VLAD</h2>"
    crude = _unit_rows(ctx, "provider", ctx.provider)
    if series.empty:
        return [head + "<p>No patients with a known outcome to chart.</p>"]
    if ctx.public and "crude_mortality" in crude.index and crude.loc["crude_mortality", "suppressed"]:
        # Each death is a visible step on these charts, so a small count could be read off them.
        return [head + "<p>Not shown: the numbers are too small to publish.</p>"]
    n_up, n_lo = int(series["signal_upper"].sum()), int(series["signal_lower"].sum())
    text = (f"{head}<p>Taking patients {esc(info['order'])}, each moves the charts by how far the outcome "
            "differs from the national risk model's prediction. The upper CUSUM accumulates evidence that the odds "
            "of death are doubled, the lower that they are halved; crossing the control limit is a signal, and "
            f"the chart restarts at zero. {esc(info['description'])}. "
            f"This provider: {n_up} upper and {n_lo} lower signal(s). A signal prompts a look at the cases, not a "
            "judgement: with doubled odds the upper chart signals after a median of "
            f"{info['delay_doubled_odds']['median_patients']:.0f} patients (simulated), and an in-control chart "
            "gives a false signal now and then by design.</p>")
    return [text, figures.cusum_plot(series, h_upper=info["h_upper"], h_lower=info["h_lower"],
                                     title=f"RA-CUSUM: {ctx.provider_name}"),
            figures.vlad_plot(series, title=f"VLAD: {ctx.provider_name}"),
            "<p class='note'>VLAD: the running total of expected minus observed deaths (\"statistical lives "
            "gained\"; Lovegrove et al. 1997). Rising: fewer deaths than predicted.</p>"]


def monitoring_national(ctx: ReportContext) -> str:
    """Every CUSUM signal in the period: provider, chart, patient and date."""
    info = ctx.meta.get("monitoring")
    path = ctx.bundle.path / "monitoring.parquet"
    if not info or not path.exists():
        return ""
    sig = pd.read_parquet(path, filters=[[("signal_upper", "==", True)], [("signal_lower", "==", True)]])
    names = ctx.indicators.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
    rows = []
    for r in sig.sort_values(["provider_code", "index"]).itertuples():
        chart = "upper (worse than predicted)" if r.signal_upper else "lower (better than predicted)"
        when = "" if pd.isna(r.procedure_date) else str(pd.Timestamp(r.procedure_date).date())
        rows.append([esc(names.get(r.provider_code, r.provider_code)), esc(r.provider_code), esc(chart),
                     f"{r.index + 1:,}", esc(when)])
    delay = info["delay_doubled_odds"]
    text = (f"<h2>Monitoring: RA-CUSUM signals</h2><p>Risk-adjusted CUSUM charts (Steiner et al. 2000) of each "
            f"provider's patients, {esc(info['order'])}, with the national risk model's predictions: upper "
            f"chart R = 2, lower chart R = 1/2, restarting after a signal. {esc(info['description'])}. With doubled "
            f"odds the upper chart signals after a median of {delay['median_patients']:.0f} patients (interquartile "
            f"range {delay['q25_patients']:.0f} to {delay['q75_patients']:.0f}; simulated). "
            f"{info['signals_upper']} upper and {info['signals_lower']} lower signal(s) in the period.</p>")
    if not rows:
        return text + "<p>No provider's chart signalled.</p>"
    return text + table(["Provider", "Code", "Chart", "Patient number", "Procedure date"], rows, raw=True,
                        numeric=(3,), css_class="data sortable compact", caption="RA-CUSUM signals")
