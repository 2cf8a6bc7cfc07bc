"""Statistical disclosure control for public outputs (METHODS.md section 8).

NHS Digital's small-numbers convention: a count from 1 to the threshold
(default 7) is suppressed in anything published, and so is every figure from
which it could be recovered: a rate with its denominator, an O/E ratio with
its expected count, an interval that brackets it. Zero is not suppressed (it
discloses nothing about an individual). Local feedback to a provider about
itself is not suppressed; it is marked confidential instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SUPPRESSED = "*"
#: Columns recomputable from a unit's numerator, blanked with it.
DERIVED = ("numerator", "observed", "value", "lower95", "upper95", "lower998", "upper998")


def is_small(count: pd.Series | np.ndarray, threshold: int) -> np.ndarray:
    """True where a count is between 1 and ``threshold`` (a disclosive small number)."""
    c = np.asarray(count, dtype=float)
    with np.errstate(invalid="ignore"):
        return (c >= 1) & (c <= threshold)


def suppress_indicators(table: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Blank every figure of a unit-indicator row whose counts are small.

    A row is suppressed when its numerator (deaths) or denominator (cases) is
    between 1 and ``threshold``; then its numerator, observed count, value and
    intervals are removed and ``suppressed`` is True. Where a unit's cases are
    small every indicator of that unit goes, since the others would bound the
    count. The result keeps the flag, which discloses no count.
    """
    out = table.copy()
    small = is_small(out["numerator"], threshold) | is_small(out["denominator"], threshold)
    small_units = set(out.loc[is_small(out["denominator"], threshold), "unit_id"])
    small |= out["unit_id"].isin(small_units).to_numpy()
    # Mortality indicators of one unit share one death count: if one is suppressed, all are.
    mortality = out["indicator"].isin(["crude_mortality", "oe_ratio", "risk_adjusted_mortality"])
    key = out["level"].astype(str) + "|" + out["unit_id"].astype(str)
    bad_keys = set(key[small & mortality])
    small |= (mortality & key.isin(bad_keys)).to_numpy()
    out["suppressed"] = small
    for col in DERIVED:
        if col in out:
            out[col] = out[col].astype(float).where(~small)
    small_denominator = is_small(out["denominator"], threshold)
    out["denominator"] = out["denominator"].astype(float).where(~small_denominator)
    return out


def format_count(value: float, threshold: int, public: bool) -> str:
    """A count as text, or the suppression mark when published and small."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return SUPPRESSED if public else "-"
    if public and 1 <= value <= threshold:
        return SUPPRESSED
    return f"{int(round(value)):,}"
