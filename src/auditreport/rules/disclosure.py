"""Statistical disclosure control for public outputs (METHODS.md section 8).

NHS Digital's small-numbers convention: a count from 1 to the threshold
(default 7) is suppressed in anything published (primary suppression), and so
is every figure from which it could be recovered: a rate with its denominator,
an O/E ratio with its expected count, an interval that brackets it. Zero is not
suppressed (it discloses nothing about an individual). Local feedback to a
provider about itself is not suppressed; it is marked confidential instead.

Secondary (complementary) suppression. Whenever the cells of a group add up
to a total that is also published (providers to the national figure,
consultants to their provider, case-mix categories to the provider's cases,
exclusion reasons to the records excluded), one suppressed cell could be
recovered as the total minus the others. The rule, applied group by group:

    while a group has suppressed cells and either fewer than two of them, or
    their combined count is no more than the threshold, also suppress the
    smallest cell not yet suppressed (zeros last, since hiding a zero adds
    nothing to the hidden total).

So the hidden total is spread over at least two cells and is itself not a
small number: the total minus the others gives only that hidden sum, which
neither pins down any one cell nor is disclosive itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import pandas as pd

SUPPRESSED = "*"
#: Columns recomputable from a unit's numerator, blanked with it.
DERIVED = ("numerator", "observed", "value", "lower95", "upper95", "lower998", "upper998")
MORTALITY = ("crude_mortality", "oe_ratio", "risk_adjusted_mortality")


def is_small(count: pd.Series | np.ndarray | float, threshold: int) -> np.ndarray:
    """True where a count is between 1 and ``threshold`` (a disclosive small number)."""
    c = np.asarray(count, dtype=float)
    with np.errstate(invalid="ignore"):
        return (c >= 1) & (c <= threshold)


def secondary_suppress(counts: Mapping[Hashable, float], primary: set, threshold: int) -> set:
    """The cells of one additive group to hide: ``primary`` plus complementary cells.

    ``counts`` maps each cell of a group whose total is published to its count.
    Returns the set of keys to suppress (see the module docstring for the rule).
    Cells with an unknown (NaN) count are treated as already hidden.
    """
    hidden = {k for k in primary if k in counts}
    hidden |= {k for k, v in counts.items() if v != v}
    if not hidden:
        return hidden

    def hidden_total() -> float:
        return sum(float(counts[k]) for k in hidden if counts[k] == counts[k])

    # Candidates: smallest non-zero first (they hide most with least loss), then zeros.
    candidates = sorted((k for k in counts if k not in hidden),
                        key=lambda k: (float(counts[k]) == 0, float(counts[k]), str(k)))
    while (len(hidden) < 2 or hidden_total() <= threshold) and candidates:
        hidden.add(candidates.pop(0))
    return hidden


def suppress_indicators(table: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """Blank every figure of a unit-indicator row that is small or could reveal a small one.

    Primary: a row is suppressed when its numerator (deaths) or denominator
    (cases) is between 1 and ``threshold``; where a unit's cases are small every
    indicator of that unit goes, since the others would bound the count. The
    mortality indicators of one unit share one death count, and any other
    indicator of the unit with the same numerator (30-day survival counts the
    same deaths) goes with them. Secondary: within each level and indicator,
    provider rows add up to the national row and a provider's consultants to
    (about) the provider, so ``secondary_suppress`` is applied to each such
    group's numerators, and separately to the provider denominators. The
    result keeps the flag (which discloses no count) and a ``suppressed``
    column.
    """
    out = table.copy().reset_index(drop=True)
    num = out["numerator"].astype(float)
    den = out["denominator"].astype(float)
    key = out["level"].astype(str) + "|" + out["unit_id"].astype(str)
    small = pd.Series(is_small(num, threshold) | is_small(den, threshold), index=out.index)
    small_den_units = set(key[is_small(den, threshold)])

    def propagate(mask: pd.Series) -> pd.Series:
        """Spread suppression within a unit: small cases, a shared death count, an equal numerator."""
        mask = mask | key.isin(small_den_units)
        mortality = out["indicator"].isin(MORTALITY)
        mask = mask | (mortality & key.isin(set(key[mask & mortality])))
        hidden_numerators = set(zip(key[mask], num[mask], strict=True))
        mask = mask | pd.Series([(k, n) in hidden_numerators for k, n in zip(key, num, strict=True)],
                                index=out.index)
        return mask

    small = propagate(small)
    # Secondary suppression of numerators, group by group, until nothing changes.
    for _ in range(10):
        before = small.copy()
        for (level, _indicator), group in out.groupby(["level", "indicator"]):
            if level == "national":
                continue
            parents = group["parent_id"].fillna("") if level == "consultant" else pd.Series("", index=group.index)
            for _, cells in group.groupby(parents):
                counts = {i: num[i] for i in cells.index}
                hide = secondary_suppress(counts, {i for i in cells.index if small[i]}, threshold)
                small.loc[list(hide)] = True
        small = propagate(small)
        if small.equals(before):
            break
    # Provider cases add up to the national cases, consultants' to their provider's: one blanked
    # denominator must not be recoverable by subtraction either.
    hide_den = pd.Series(is_small(den, threshold), index=out.index)
    cases = out[(out["level"] != "national") & (out["indicator"] == "crude_mortality")]
    parents = cases["level"].astype(str) + "|" + cases["parent_id"].fillna("").astype(str).where(
        cases["level"] == "consultant", "")
    for _, group in cases.groupby(parents):
        den_counts = {key[i]: den[i] for i in group.index}
        hidden = secondary_suppress(den_counts, {k for k, v in den_counts.items() if is_small(v, threshold)},
                                    threshold)
        hide_den |= key.isin(hidden)

    out["suppressed"] = small.to_numpy() | hide_den.to_numpy()
    for col in DERIVED:
        if col in out:
            out[col] = out[col].astype(float).where(~out["suppressed"])
    out["denominator"] = den.where(~hide_den)
    # Expected deaths are not a count of patients, but with the O/E ratio they bound the death count;
    # the ratio is blanked above, so expected stays (it is needed to place the unit on the funnel).
    return out


def suppress_group(counts: Mapping[Hashable, float], threshold: int) -> set:
    """Primary plus secondary suppression of one additive group (e.g. a case-mix variable)."""
    primary = {k for k, v in counts.items() if is_small(v, threshold)}
    return secondary_suppress(counts, primary, threshold)


def format_count(value: float | None, threshold: int, public: bool, hidden: bool = False) -> str:
    """A count as text, or the suppression mark when published and small (or hidden as a complement)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return SUPPRESSED if public else "-"
    if public and (hidden or 1 <= value <= threshold):
        return SUPPRESSED
    return f"{int(round(value)):,}"
