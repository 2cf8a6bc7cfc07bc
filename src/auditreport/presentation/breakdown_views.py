"""The breakdowns (case mix, data quality, exclusions) as one report's audience may read them.

A public report reads only the bundle's ``casemix_public``, ``quality_public`` and ``exclusions_public``: the
tables the national stage suppressed two-way, within each provider and across providers to the national counts
(``auditreport.analysis.breakdowns``), so no report can reopen a cell by subtracting the others from a national
total. A confidential (local) report reads the full tables, every cell shown. Both views have the same form, with
a ``suppressed`` flag (always false in a local view).
"""

from __future__ import annotations

import pandas as pd

from auditreport.analysis.breakdowns import quality_counts
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import pct
from auditreport.rules.disclosure import SUPPRESSED


def casemix(ctx: ReportContext) -> pd.DataFrame:
    """Case mix: unit_id, variable, category, n, share, suppressed (public: blank where suppressed)."""
    if ctx.public:
        return ctx.bundle.casemix_public
    return ctx.bundle.casemix.assign(n=ctx.bundle.casemix["n"].astype(float), suppressed=False)


def quality(ctx: ReportContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Data quality counts by unit (rows) and item (columns: ``records_submitted``, ``records_analysed``,
    ``excluded: <reason>``, ``records_excluded``, ``missing: <field>``, ``imputed: <factor>``), and the same
    shape saying which are suppressed (public: blank where suppressed)."""
    long = ctx.bundle.quality_public if ctx.public else quality_counts(ctx.bundle.quality).assign(suppressed=False)
    items = list(dict.fromkeys(long["item"]))
    units = list(dict.fromkeys(long["unit_id"]))  # the national row first, then providers, as the table has them
    counts = long.pivot(index="unit_id", columns="item", values="records").reindex(index=units, columns=items)
    hidden = long.pivot(index="unit_id", columns="item", values="suppressed").reindex(index=units, columns=items)
    return counts, hidden.fillna(False).astype(bool)


def exclusions(ctx: ReportContext, measure_id: str, unit: str) -> pd.DataFrame:
    """A measure's records left out of one unit, by reason: reason, records, suppressed (public: blank where
    suppressed). Reasons with no record and nothing hidden are left out."""
    if ctx.public:
        ex = ctx.bundle.measure_exclusions_public(measure_id)
        ex = ex[(ex["unit_id"] == unit) & ((ex["records"] > 0) | ex["suppressed"])]
    else:
        ex = ctx.bundle.measure_exclusions(measure_id)
        ex = ex[(ex["unit_id"] == unit) & (ex["records"] > 0)].assign(suppressed=False)
    return ex[["reason", "records", "suppressed"]].astype({"records": float}).reset_index(drop=True)


def completeness_text(counts: pd.Series, hidden: pd.Series, field: str) -> str:
    """A field's completeness (share of records submitted that have it) as a percentage, or the suppression
    mark when its missing count is hidden (the share with the records submitted would give the count)."""
    item = f"missing: {field}"
    submitted = counts.get("records_submitted", float("nan"))
    if bool(hidden.get(item, False)) or not submitted == submitted or not submitted:
        return SUPPRESSED if bool(hidden.get(item, False)) else ""
    return pct(1 - float(counts[item]) / float(submitted))


def completeness_fields(counts: pd.DataFrame) -> list[str]:
    """The fields whose completeness is reported, in the quality table's order."""
    return [c.removeprefix("missing: ") for c in counts.columns if c.startswith("missing: ")]
