"""Unit-level mortality indicators: crude rate, O/E ratio and risk-adjusted rate.

Each function takes per-unit totals (cases, deaths, expected deaths) and
returns tidy rows of the indicator table, with the unit's own confidence
intervals, the funnel control limits at the unit's precision, and the HQIP
flag by the one rule every path uses (``rules.flags.flag_units``, discrete
method): the unit's exact tail probability under the target (binomial for the
crude rate, Poisson on O with mean E for O/E and the risk-adjusted rate) and
the funnel limits, where an audit's over-dispersion adjustment acts
(Spiegelhalter 2005), must both support it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.rules.flags import flag_units
from auditreport.stats import funnel, intervals
from auditreport.stats.overdispersion import Overdispersion

#: Columns of the tidy indicator table, in order.
INDICATOR_COLUMNS = [
    "audit", "period", "level", "unit_id", "unit_name", "parent_id", "indicator", "numerator",
    "denominator", "observed", "expected", "value", "lower95", "upper95", "lower998", "upper998",
    "target", "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998", "flag", "method",
]


def unit_totals(patients: pd.DataFrame, key: str) -> pd.DataFrame:
    """Cases, deaths and expected deaths per unit (``patients`` needs outcome and p)."""
    grouped = patients.groupby(key, sort=True, observed=True)
    return pd.DataFrame({"cases": grouped.size(), "observed": grouped["outcome"].sum(),
                         "expected": grouped["p"].sum()})


def crude_mortality(totals: pd.DataFrame, national_rate: float,
                    overdispersion: Overdispersion | None) -> pd.DataFrame:
    """Deaths / cases with Wilson intervals; flagged by the binomial tail and the proportion funnel limits."""
    n = totals["cases"].to_numpy(float)
    o = totals["observed"].to_numpy(float)
    value = np.divide(o, n, out=np.full_like(o, np.nan), where=n > 0)
    lo95, hi95 = intervals.wilson(o, n, 0.95)
    lo998, hi998 = intervals.wilson(o, n, 0.998)
    l95, u95 = funnel.proportion_limits(national_rate, n, 0.95, overdispersion=overdispersion)
    l998, u998 = funnel.proportion_limits(national_rate, n, 0.998, overdispersion=overdispersion)
    method = "Wilson score interval; PHE Wilson-inverted funnel limits" + _od_note(overdispersion)
    return _rows(totals, "crude_mortality", "proportion", numerator=o, denominator=n, observed=o,
                 precision=n, expected=np.full_like(o, np.nan),
                 value=value, ci=(lo95, hi95, lo998, hi998), target=national_rate,
                 limits=(l95, u95, l998, u998), method=method)


def oe_ratio(totals: pd.DataFrame, overdispersion: Overdispersion | None) -> pd.DataFrame:
    """Observed / expected deaths with exact Poisson intervals; flagged by the Poisson tail and ratio limits."""
    o = totals["observed"].to_numpy(float)
    e = totals["expected"].to_numpy(float)
    value = np.divide(o, e, out=np.full_like(o, np.nan), where=e > 0)
    lo95, hi95 = intervals.ratio_interval(o, e, 0.95, method="exact")
    lo998, hi998 = intervals.ratio_interval(o, e, 0.998, method="exact")
    l95, u95 = funnel.ratio_limits(e, 0.95, overdispersion=overdispersion)
    l998, u998 = funnel.ratio_limits(e, 0.998, overdispersion=overdispersion)
    method = "exact Poisson (Garwood) interval on O, divided by E; exact Poisson funnel limits" + _od_note(
        overdispersion)
    return _rows(totals, "oe_ratio", "ratio", numerator=o, denominator=totals["cases"].to_numpy(float),
                 observed=o, precision=e, expected=e, value=value, ci=(lo95, hi95, lo998, hi998), target=1.0,
                 limits=(l95, u95, l998, u998), method=method)


def risk_adjusted_rate(oe_rows: pd.DataFrame, national_rate: float) -> pd.DataFrame:
    """RAMR = O/E x national crude rate; interval and limits scaled alike (NYS DOH method).

    The flag is the O/E row's (Poisson tail on O with mean E, and the limits): scaling value, limits and
    target by the same rate changes no comparison.
    """
    rows = oe_rows.copy()
    rows["indicator"] = "risk_adjusted_mortality"
    for col in ("value", "lower95", "upper95", "lower998", "upper998", "limit_lower95", "limit_upper95",
                "limit_lower998", "limit_upper998"):
        rows[col] = rows[col] * national_rate
    rows["target"] = national_rate
    rows["method"] = "O/E x national rate (NYS DOH); " + rows["method"]
    return rows


def _rows(totals: pd.DataFrame, indicator: str, kind: str, *, numerator, denominator, observed, precision,
          expected, value, ci, target: float, limits, method: str) -> pd.DataFrame:
    flag = flag_units(kind, observed, precision, target, limits[:2], limits[2:])
    return pd.DataFrame({
        "unit_id": totals.index.astype(str), "indicator": indicator, "numerator": numerator,
        "denominator": denominator, "observed": observed, "expected": expected, "value": value,
        "lower95": ci[0], "upper95": ci[1], "lower998": ci[2], "upper998": ci[3], "target": target,
        "limit_lower95": limits[0], "limit_upper95": limits[1], "limit_lower998": limits[2],
        "limit_upper998": limits[3], "flag": flag, "method": method,
    })


def _od_note(od: Overdispersion | None) -> str:
    if od is None or od.method == "none":
        return " (no over-dispersion adjustment)"
    return f" (over-dispersion: {od.method}, phi={od.phi:.3f}, tau2={od.tau2:.4g})"
