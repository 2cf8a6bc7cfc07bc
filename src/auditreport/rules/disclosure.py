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
#: A proportion measure's statistics that share one event count: hidden together.
SHARED_COUNT = ("rate", "oe_ratio", "adjusted_rate")


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
    """Blank every figure of a unit's statistic that is small or could reveal a small one.

    ``table`` has one row per unit (``level``, ``unit_id``, ``parent_id``), ``measure`` and ``statistic``.
    Primary: a row is suppressed when its numerator (events) or denominator (records) is between 1 and
    ``threshold``; where a unit's records in a measure are few every statistic of that measure goes for that
    unit, since the others would bound the count. A proportion's rate, O/E and adjusted rate share one event
    count and go together, and any other statistic of the unit with the same numerator (30-day survival counts
    the same deaths as 30-day mortality) goes with them. Secondary: within each level, measure and statistic,
    provider rows add up to the national row and a provider's consultants to (about) the provider, so
    ``secondary_suppress`` is applied to each such group's numerators, and separately to each measure's
    provider (and consultant) denominators. The result keeps the flag (which discloses no count) and a
    ``suppressed`` column.
    """
    out = table.copy().reset_index(drop=True)
    num = out["numerator"].astype(float)
    den = out["denominator"].astype(float)
    key = out["level"].astype(str) + "|" + out["unit_id"].astype(str)
    unit_measure = key + "|" + out["measure"].astype(str)
    small = pd.Series(is_small(num, threshold) | is_small(den, threshold), index=out.index)
    small_den_units = set(unit_measure[is_small(den, threshold)])
    shared = out["statistic"].isin(SHARED_COUNT)

    def propagate(mask: pd.Series) -> pd.Series:
        """Spread suppression within a unit: few records, a shared event count, an equal numerator."""
        mask = mask | unit_measure.isin(small_den_units)
        mask = mask | (shared & unit_measure.isin(set(unit_measure[mask & shared])))
        counted = num.notna()
        hidden_numerators = pd.MultiIndex.from_arrays([key[mask & counted], num[mask & counted]])
        same = pd.MultiIndex.from_arrays([key, num]).isin(hidden_numerators) & counted.to_numpy()
        return mask | pd.Series(same, index=out.index)

    small = propagate(small)
    # Secondary suppression of numerators, group by group, until nothing changes.
    for _ in range(10):
        before = small.copy()
        for (level, _measure, _statistic), group in out.groupby(["level", "measure", "statistic"], sort=False):
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
    # Provider records add up to the national records, consultants' to their provider's, measure by measure:
    # one blanked denominator must not be recoverable by subtraction either. Every statistic of a measure has
    # the same denominator at a unit, so the first statistic's rows stand for the measure's.
    hide_den = pd.Series(is_small(den, threshold), index=out.index)
    first = out.groupby("measure", sort=False)["statistic"].transform("first")
    cases = out[(out["level"] != "national") & (out["statistic"] == first)]
    parents = (cases["measure"].astype(str) + "|" + cases["level"].astype(str) + "|"
               + cases["parent_id"].fillna("").astype(str).where(cases["level"] == "consultant", ""))
    for _, group in cases.groupby(parents):
        den_counts = {unit_measure[i]: den[i] for i in group.index}
        hidden = secondary_suppress(den_counts, {k for k, v in den_counts.items() if is_small(v, threshold)},
                                    threshold)
        hide_den |= unit_measure.isin(hidden)

    out["suppressed"] = small.to_numpy() | hide_den.to_numpy()
    for col in DERIVED:
        if col in out:
            out[col] = out[col].astype(float).where(~out["suppressed"])
    out["denominator"] = den.where(~hide_den)
    # Expected events are not a count of patients, but with the O/E ratio they bound the event count;
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
