"""Sections and parts both reports have: the cover, the methods, calibration, completeness."""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.presentation import figures
from auditreport.presentation.blocks import Chart, Cover, Section, chart, paragraph, section
from auditreport.presentation.context import AUDIENCE_LABEL, ReportContext
from auditreport.presentation.formatting import pct
from auditreport.presentation.measure_parts import lower_first
from auditreport.rules.disclosure import SUPPRESSED


def cover(ctx: ReportContext) -> Section:
    """Audience, audit, unit and period, and the fingerprints of the code, data and configuration."""
    m = ctx.meta
    audit = m["audit"]
    unit = ctx.provider_name if ctx.provider else "National report"
    n = len(ctx.measures)
    return section("", Cover(
        audience=ctx.audience, audience_label=AUDIENCE_LABEL[ctx.audience], audit_name=audit["name"],
        heading=unit, provider_code=ctx.provider, code_label=f"{ctx.wording['provider'].capitalize()} code",
        period=audit["period"], measures=f"{n} measure{'s' if n != 1 else ''}",
        produced=m["created"], package_version=m["code"]["package_version"], commit=m["code"]["git_commit"][:12],
        data_sha=m["data"]["source"]["sha256"][:12], config_sha=m["config"]["sha256"][:12],
        running=f"{audit['name']} · {unit} · {audit['period']}"))


def calibration_hidden(ctx: ReportContext, cal: pd.DataFrame) -> set:
    """Tenths of risk whose observed counts are withheld: they add up to the national total (public only)."""
    if cal.empty:
        return set()
    return ctx.hidden_cells(dict(zip(cal["group"], cal["observed"].astype(float), strict=True)))


def calibration_chart(ctx: ReportContext, measure_id: str) -> Chart | None:
    """Observed against expected by tenth of predicted risk for an adjusted proportion (public: withheld
    tenths not drawn); ``None`` when the measure's model has no calibration table."""
    model = ctx.model(measure_id)
    cal = pd.DataFrame(model.get("calibration") or [])
    if cal.empty:
        return None
    hidden = calibration_hidden(ctx, cal)
    if hidden:
        cal.loc[cal["group"].isin(hidden), ["observed", "observed_rate", "lower95", "upper95"]] = np.nan
    perf = model.get("performance") or {}
    label = ctx.measure(measure_id)["label"]
    return chart(figures.calibration_plot(cal, c_statistic=perf.get("c_statistic"),
                                          slope=perf.get("calibration_slope"), what=lower_first(label),
                                          title=f"{label}: calibration of the risk model"))


def completeness_columns(quality: pd.DataFrame) -> list[str]:
    """The quality table's completeness columns of fields the audit maps: a field never mapped has no
    national completeness (NaN) and is left out rather than shown as 0%."""
    by_unit = quality.set_index("unit_id") if "unit_id" in quality.columns else quality
    cols = [c for c in by_unit.columns if c.startswith("complete: ")]
    national = by_unit.loc["national"] if "national" in by_unit.index else None
    return [c for c in cols if national is None or national[c] == national[c]]


def completeness(ctx: ReportContext, share: float, records: float) -> str:
    """Completeness as a percentage, withheld in public where the number of records missing it is small."""
    missing = round((1 - share) * records) if share == share and records == records else 0
    return SUPPRESSED if ctx.withheld(missing) else pct(share)


def methods(ctx: ReportContext) -> Section:
    """How each measure's figures were made, with references; a provider report also shows the
    calibration of each adjusted proportion's risk model (the national report has it in the measure's
    section already)."""
    parts = []
    for m in ctx.measures:
        line = m.get("method") or ""
        od = _overdispersion_text(m)
        parts.append(paragraph(f"{m['label']}: {line}{'; ' if line and od else ''}{od}."))
        if ctx.provider is not None and m["kind"] == "proportion" and m.get("adjusted"):
            parts.append(calibration_chart(ctx, m["id"]))
    return section(
        "Methods",
        paragraph("Funnel limits at 95% and 99.8% follow Spiegelhalter (2005) around the national value, or around "
                  "a measure's fixed standard where it has one; outlier status follows HQIP (2024), in words by "
                  "each measure's direction (higher or lower is better). Only risk-adjusted measures and process "
                  "measures carry a status; the crude rate of a risk-adjusted measure is context. Counts from 1 to "
                  f"{ctx.threshold} are suppressed in published outputs, and so is the next smallest count wherever "
                  "a suppressed one could otherwise be worked out from a total."),
        *parts,
        paragraph("References: Spiegelhalter DJ. Funnel plots for comparing institutional performance. "
                  "Stat Med 2005;24:1185-202. HQIP. Detection and management of outliers for national clinical "
                  "audits, 2024. NHS Digital. Disclosure control guidance for small numbers.", css_class="note"))


def _overdispersion_text(measure: dict) -> str:
    od = (measure.get("overdispersion") or {}).get("provider") or {}
    if not od or od.get("method", "none") == "none":
        return "no over-dispersion adjustment" if measure.get("carries_status") else ""
    return (f"over-dispersion: {od['method']} (phi = {od.get('phi', 1.0):.3f}, "
            f"tau\u00b2 = {od.get('tau2', 0.0):.4g})")
