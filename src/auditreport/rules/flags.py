"""HQIP outlier flags (METHODS.md section 4).

Reference: Healthcare Quality Improvement Partnership, "Detection and
management of outliers for national clinical audits" (2011; revised 2017 and
2024): alarm beyond the 99.8% limit (about 3 SD), alert beyond the 95% limit
(about 2 SD), on both sides (low outliers are positive outliers and are
reported too).

Boundary rule: a value exactly on a limit is *inside* it (not flagged), i.e.
the comparisons are strict, as in PHEindicatormethods'
``assign_funnel_significance`` (``x/n < lower`` -> "Low", ``x/n > upper`` ->
"High").
"""

from __future__ import annotations

import numpy as np

__all__ = ["FLAGS", "FLAG_LABELS", "PHE_LABELS", "hqip_flag", "hqip_flag_from_interval"]

FLAGS = ("alarm_high", "alert_high", "as_expected", "alert_low", "alarm_low")

FLAG_LABELS = {
    "alarm_high": "Alarm: higher than expected (above 99.8% limit)",
    "alert_high": "Alert: higher than expected (above 95% limit)",
    "as_expected": "As expected (within 95% limits)",
    "alert_low": "Alert: lower than expected (below 95% limit)",
    "alarm_low": "Alarm: lower than expected (below 99.8% limit)",
    "": "Not assessed (no value)",
}

#: PHEindicatormethods significance labels -> flag codes.
PHE_LABELS = {
    "High (0.001)": "alarm_high",
    "High (0.025)": "alert_high",
    "Not significant": "as_expected",
    "Low (0.025)": "alert_low",
    "Low (0.001)": "alarm_low",
}


def hqip_flag(value, lower95, upper95, lower998, upper998) -> np.ndarray:
    """HQIP flag of each ``value`` against its funnel limits.

    value > upper998 -> "alarm_high"; else value > upper95 -> "alert_high";
    value < lower998 -> "alarm_low"; else value < lower95 -> "alert_low";
    otherwise "as_expected".  A value on a limit is inside it.  NaN value ->
    "" (not assessed).  A NaN limit never flags.

    Returns an object array of flag codes (``FLAGS``), broadcast over the inputs.
    """
    v, l95, u95, l998, u998 = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (value, lower95, upper95, lower998, upper998))
    )
    out = np.full(v.shape, "as_expected", dtype=object)
    # NaN comparisons are False, so a missing limit cannot raise a flag.
    out[v < l95] = "alert_low"
    out[v < l998] = "alarm_low"
    out[v > u95] = "alert_high"
    out[v > u998] = "alarm_high"
    out[np.isnan(v)] = ""
    return out


def hqip_flag_from_interval(lower95, upper95, lower998, upper998, target) -> np.ndarray:
    """HQIP flag from a unit's own confidence intervals compared with the target.

    lower998 > target -> "alarm_high", lower95 > target -> "alert_high",
    upper998 < target -> "alarm_low", upper95 < target -> "alert_low".  This is
    how PHEindicatormethods labels ratios (``funnel_ratio_significance``) and
    how NYS DOH flags hospitals; for exact intervals it is the same test as the
    unit lying outside the corresponding funnel limit.  NaN intervals -> "".
    """
    l95, u95, l998, u998, t = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (lower95, upper95, lower998, upper998, target))
    )
    out = np.full(l95.shape, "as_expected", dtype=object)
    out[u95 < t] = "alert_low"
    out[u998 < t] = "alarm_low"
    out[l95 > t] = "alert_high"
    out[l998 > t] = "alarm_high"
    out[np.isnan(l95) | np.isnan(u95) | np.isnan(t)] = ""
    return out
