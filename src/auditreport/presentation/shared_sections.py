"""Sections and charts both reports have: the cover, the methods, the mortality funnel, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.presentation import figures
from auditreport.presentation.blocks import Chart, Cover, Section, chart, paragraph, section
from auditreport.presentation.context import AUDIENCE_LABEL, ReportContext
from auditreport.presentation.formatting import pct
from auditreport.rules.disclosure import SUPPRESSED

MORTALITY = ("crude_mortality", "oe_ratio", "risk_adjusted_mortality")
INDICATOR_LABEL = {"crude_mortality": "Crude mortality", "oe_ratio": "Observed / expected deaths (O/E)",
                   "risk_adjusted_mortality": "Risk-adjusted mortality"}


def cover(ctx: ReportContext) -> Section:
    """Audience, audit, unit and period, and the fingerprints of the code, data and configuration."""
    m = ctx.meta
    audit = m["audit"]
    unit = ctx.provider_name if ctx.provider else "National report"
    return section("", Cover(
        audience=ctx.audience, audience_label=AUDIENCE_LABEL[ctx.audience], audit_name=audit["name"],
        heading=unit, provider_code=ctx.provider, period=audit["period"], outcome=audit["outcome"],
        produced=m["created"], package_version=m["code"]["package_version"], commit=m["code"]["git_commit"][:12],
        data_sha=m["data"]["source"]["sha256"][:12], config_sha=m["config"]["sha256"][:12],
        running=f"{audit['name']} · {unit} · {audit['period']}"))


def funnel(ctx: ReportContext, level: str = "provider", indicator: str = "risk_adjusted_mortality") -> Chart:
    """The funnel plot of one mortality indicator across ``level`` units, this report's provider highlighted.

    Units without a value (suppressed in public) are not plotted.
    """
    t = ctx.indicators
    units = t[(t["level"] == level) & (t["indicator"] == indicator)]
    units = units[units["value"].notna()]
    curves = ctx.bundle.funnels
    curve = curves[(curves["level"] == level) & (curves["indicator"] == indicator)]
    ratio = indicator == "oe_ratio"
    rate = float(ctx.meta["national"]["rate"])
    x = "denominator" if indicator == "crude_mortality" else "expected"
    return chart(figures.funnel_plot(
        units, curve, target=1.0 if ratio else rate, x=x, y="value",
        xlabel="Cases" if x == "denominator" else "Expected deaths (log scale)",
        ylabel="O/E ratio" if ratio else f"{INDICATOR_LABEL[indicator]} (%)",
        title=f"{INDICATOR_LABEL[indicator]}: {level}s", percent=not ratio,
        highlight=ctx.provider if level == "provider" else None,
        highlight_label=ctx.provider_name if ctx.provider else None))


def calibration_hidden(ctx: ReportContext, cal: pd.DataFrame) -> set:
    """Tenths of risk whose deaths are withheld: they add up to the national deaths (public only)."""
    if cal.empty:
        return set()
    return ctx.hidden_cells(dict(zip(cal["group"], cal["observed"].astype(float), strict=True)))


def calibration_chart(ctx: ReportContext) -> Chart:
    """Observed against expected mortality by tenth of predicted risk (public: withheld tenths not drawn)."""
    cal = pd.DataFrame(ctx.bundle.model.get("calibration", []))
    hidden = calibration_hidden(ctx, cal)
    if hidden:
        cal.loc[cal["group"].isin(hidden), ["observed", "observed_rate", "lower95", "upper95"]] = np.nan
    perf = ctx.bundle.model.get("performance", {})
    return chart(figures.calibration_plot(cal, c_statistic=perf.get("c_statistic"),
                                          slope=perf.get("calibration_slope")))


def completeness(ctx: ReportContext, share: float, records: float) -> str:
    """Completeness as a percentage, withheld in public where the number of records missing it is small."""
    missing = round((1 - share) * records) if share == share and records == records else 0
    return SUPPRESSED if ctx.withheld(missing) else pct(share)


def methods(ctx: ReportContext) -> Section:
    """How the figures were made, with references; a provider report also shows the calibration plot
    (the national report has it in its risk-model section already)."""
    m = ctx.meta
    perf = ctx.bundle.model.get("performance", {})
    od = m.get("overdispersion", {}).get("provider", {}).get("ratio", {})
    c = perf.get("c_statistic")
    c_text = (f"c-statistic {c:.3f} (95% CI {perf.get('c_lower', float('nan')):.3f} to "
              f"{perf.get('c_upper', float('nan')):.3f})" if c is not None else "")
    text = (f"Expected deaths are the sum of each patient's predicted risk from a logistic regression fitted once "
            f"on the whole national cohort ({m['national']['cases']:,} patients, {int(m['national']['deaths']):,} "
            f"deaths); {c_text}. The O/E ratio's interval is the exact Poisson interval of the observed deaths "
            f"divided by the expected; the risk-adjusted rate is O/E times the national rate "
            f"({pct(m['national']['rate'], 2)}). Funnel limits at 95% and 99.8% follow Spiegelhalter (2005); "
            f"over-dispersion: {od.get('method', 'none')} (phi = {od.get('phi', 1.0):.3f}, "
            f"tau\u00b2 = {od.get('tau2', 0.0):.4g}). Outliers follow HQIP (2024). Counts from 1 to {ctx.threshold} "
            "are suppressed in published outputs, and so is the next smallest count wherever a suppressed one "
            "could otherwise be worked out from a total.")
    return section(
        "Methods", paragraph(text),
        calibration_chart(ctx) if ctx.provider is not None else None,
        paragraph("References: Spiegelhalter DJ. Funnel plots for comparing institutional performance. "
                  "Stat Med 2005;24:1185-202. HQIP. Detection and management of outliers for national clinical "
                  "audits, 2024. NHS Digital. Disclosure control guidance for small numbers.", css_class="note"))
