"""Unit-level mortality indicators: crude rate, O/E ratio and risk-adjusted rate.

Each function takes per-unit totals (cases, deaths, expected deaths) and
returns tidy rows of the indicator table, with the unit's own confidence
intervals, the funnel control limits at the unit's precision, and the HQIP
flag. The flag is decided by the control limits, which is where an audit's
over-dispersion adjustment acts (Spiegelhalter 2005).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.rules.flags import hqip_flag, hqip_flag_from_interval
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
    """Deaths / cases with Wilson intervals, flagged against proportion funnel limits."""
    n = totals["cases"].to_numpy(float)
    o = totals["observed"].to_numpy(float)
    value = np.divide(o, n, out=np.full_like(o, np.nan), where=n > 0)
    lo95, hi95 = intervals.wilson(o, n, 0.95)
    lo998, hi998 = intervals.wilson(o, n, 0.998)
    l95, u95 = funnel.proportion_limits(national_rate, n, 0.95, overdispersion=overdispersion)
    l998, u998 = funnel.proportion_limits(national_rate, n, 0.998, overdispersion=overdispersion)
    method = "Wilson score interval; PHE Wilson-inverted funnel limits" + _od_note(overdispersion)
    return _rows(totals, "crude_mortality", numerator=o, denominator=n, observed=o, expected=np.full_like(o, np.nan),
                 value=value, ci=(lo95, hi95, lo998, hi998), target=national_rate,
                 limits=(l95, u95, l998, u998), method=method)


def oe_ratio(totals: pd.DataFrame, overdispersion: Overdispersion | None) -> pd.DataFrame:
    """Observed / expected deaths with exact Poisson intervals, flagged against ratio funnel limits."""
    o = totals["observed"].to_numpy(float)
    e = totals["expected"].to_numpy(float)
    value = np.divide(o, e, out=np.full_like(o, np.nan), where=e > 0)
    lo95, hi95 = intervals.ratio_interval(o, e, 0.95, method="exact")
    lo998, hi998 = intervals.ratio_interval(o, e, 0.998, method="exact")
    l95, u95 = funnel.ratio_limits(e, 0.95, overdispersion=overdispersion)
    l998, u998 = funnel.ratio_limits(e, 0.998, overdispersion=overdispersion)
    method = "exact Poisson (Garwood) interval on O, divided by E; exact Poisson funnel limits" + _od_note(
        overdispersion)
    return _rows(totals, "oe_ratio", numerator=o, denominator=totals["cases"].to_numpy(float), observed=o,
                 expected=e, value=value, ci=(lo95, hi95, lo998, hi998), target=1.0,
                 limits=(l95, u95, l998, u998), method=method)


def risk_adjusted_rate(oe_rows: pd.DataFrame, national_rate: float) -> pd.DataFrame:
    """RAMR = O/E x national crude rate; interval and limits scaled alike (NYS DOH method)."""
    rows = oe_rows.copy()
    rows["indicator"] = "risk_adjusted_mortality"
    for col in ("value", "lower95", "upper95", "lower998", "upper998", "limit_lower95", "limit_upper95",
                "limit_lower998", "limit_upper998"):
        rows[col] = rows[col] * national_rate
    rows["target"] = national_rate
    rows["method"] = "O/E x national rate (NYS DOH); " + rows["method"]
    return rows


def _rows(totals: pd.DataFrame, indicator: str, *, numerator, denominator, observed, expected, value, ci,
          target: float, limits, method: str) -> pd.DataFrame:
    flag = confirmed_flag(hqip_flag(value, *limits), hqip_flag_from_interval(*ci, target))
    return pd.DataFrame({
        "unit_id": totals.index.astype(str), "indicator": indicator, "numerator": numerator,
        "denominator": denominator, "observed": observed, "expected": expected, "value": value,
        "lower95": ci[0], "upper95": ci[1], "lower998": ci[2], "upper998": ci[3], "target": target,
        "limit_lower95": limits[0], "limit_upper95": limits[1], "limit_lower998": limits[2],
        "limit_upper998": limits[3], "flag": flag, "method": method,
    })


_SEVERITY = {"alarm_high": 2, "alert_high": 1, "as_expected": 0, "alert_low": -1, "alarm_low": -2, "": 0}
_BY_SEVERITY = {2: "alarm_high", 1: "alert_high", 0: "as_expected", -1: "alert_low", -2: "alarm_low"}


def confirmed_flag(by_limits: np.ndarray, by_interval: np.ndarray) -> np.ndarray:
    """The HQIP flag, raised only as far as both the funnel limits and the unit's own interval agree.

    Funnel limits drawn as smooth curves treat the count as continuous, so a unit
    with no deaths always lies below the lower limit, however few deaths were
    expected (with E = 1.9 no deaths happen 15% of the time by chance alone).
    The unit's exact interval is the discrete test (PHEindicatormethods' rule),
    and over-dispersion acts through the limits; a flag stands at the level
    both support, in the same direction.
    """
    out = []
    for a, b in zip(by_limits, by_interval, strict=True):
        if a == "":
            out.append("")
            continue
        sa, sb = _SEVERITY.get(a, 0), _SEVERITY.get(b, 0)
        if sa * sb <= 0:
            out.append("as_expected")
        else:
            out.append(_BY_SEVERITY[min(abs(sa), abs(sb)) * (1 if sa > 0 else -1)])
    return np.asarray(out, dtype=object)


def _od_note(od: Overdispersion | None) -> str:
    if od is None or od.method == "none":
        return " (no over-dispersion adjustment)"
    return f" (over-dispersion: {od.method}, phi={od.phi:.3f}, tau2={od.tau2:.4g})"
