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
    num = out["numerator"].to_numpy(dtype=float)
    den = out["denominator"].to_numpy(dtype=float)
    key = out["level"].astype(str) + "|" + out["unit_id"].astype(str)
    unit_measure = (key + "|" + out["measure"].astype(str)).to_numpy()
    # Integer codes, so that spreading suppression within a unit is array indexing, not set lookups.
    unit_code = pd.factorize(key)[0]
    um_code, um_labels = pd.factorize(unit_measure)
    counted = ~np.isnan(num)
    pair_code = np.full(len(out), -1)
    if counted.any():
        pair_code[counted] = pd.factorize(pd.MultiIndex.from_arrays([unit_code[counted], num[counted]]))[0]
    shared = out["statistic"].isin(SHARED_COUNT).to_numpy()
    small_den = is_small(den, threshold)
    few_records = np.zeros(len(um_labels), bool)
    few_records[um_code[small_den]] = True

    def spread(mask: np.ndarray, codes: np.ndarray, within: np.ndarray, size: int) -> np.ndarray:
        """Rows (of ``within``) whose code is the code of a masked row of ``within``."""
        hit = np.zeros(size, bool)
        hit[codes[mask & within]] = True
        return mask | (within & hit[np.where(codes >= 0, codes, 0)])

    def propagate(mask: np.ndarray) -> np.ndarray:
        """Spread suppression within a unit: few records, a shared event count, an equal numerator."""
        mask = mask | few_records[um_code]
        mask = spread(mask, um_code, shared, len(um_labels))
        return spread(mask, pair_code, counted, int(pair_code.max()) + 1 if counted.any() else 1)

    small = propagate(is_small(num, threshold) | small_den)
    # Secondary suppression of numerators, group by group (level, measure, statistic; a consultant's provider),
    # until nothing changes. Rows without a count (a mean, a ratio of sums) are no group's cells.
    grouping = out["level"].astype(str) + "|" + out["measure"].astype(str) + "|" + out["statistic"].astype(str) + \
        "|" + out["parent_id"].fillna("").astype(str).where(out["level"] == "consultant", "")
    eligible = (out["level"] != "national").to_numpy() & counted
    groups = [np.flatnonzero(eligible & (codes == c)) for codes in [pd.factorize(grouping)[0]]
              for c in np.unique(codes[eligible])]
    for _ in range(10):
        before = small.copy()
        for cells in groups:
            if not small[cells].any():
                continue
            counts = {int(i): num[i] for i in cells}
            hide = secondary_suppress(counts, {int(i) for i in cells if small[i]}, threshold)
            small[list(hide)] = True
        small = propagate(small)
        if (small == before).all():
            break
    # Provider records add up to the national records, consultants' to their provider's, measure by measure:
    # one blanked denominator must not be recoverable by subtraction either. Every statistic of a measure has
    # the same denominator at a unit, so the first statistic's rows stand for the measure's.
    hide_den = small_den.copy()
    first = (out["statistic"] == out.groupby("measure", sort=False)["statistic"].transform("first")).to_numpy()
    cases = out[(out["level"] != "national").to_numpy() & first]
    parents = (cases["measure"].astype(str) + "|" + cases["level"].astype(str) + "|"
               + cases["parent_id"].fillna("").astype(str).where(cases["level"] == "consultant", ""))
    hidden_units = np.zeros(len(um_labels), bool)
    for _, group in cases.groupby(parents, sort=False):
        rows = group.index.to_numpy()
        if not small_den[rows].any():
            continue
        den_counts = {int(um_code[i]): den[i] for i in rows}
        hidden = secondary_suppress(den_counts, {k for k, v in den_counts.items() if is_small(v, threshold)},
                                    threshold)
        hidden_units[list(hidden)] = True
    hide_den |= hidden_units[um_code]

    out["suppressed"] = small | hide_den
    for col in DERIVED:
        if col in out:
            out[col] = out[col].astype(float).where(~out["suppressed"])
    out["denominator"] = pd.Series(den, index=out.index).where(~hide_den)
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
