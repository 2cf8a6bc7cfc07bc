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


# ---------------------------------------------------------------------------------------------------------------
# Two-way secondary suppression of a unit x category grid (issue #15, leaks 2 and 3)


def grid_primary(grid: pd.DataFrame, threshold: int) -> np.ndarray:
    """Primary suppression of a grid of counts: True where a cell is between 1 and ``threshold`` (vectorised)."""
    return is_small(grid.to_numpy(dtype=float), threshold)


def two_way_suppress(grid: pd.DataFrame, threshold: int, primary: np.ndarray | None = None, *,
                     rows: bool = True, columns: bool = True, primary_totals: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a unit x category grid to hide, and the national totals to hide, when totals are published.

    ``grid`` holds counts: one row per unit (a provider), one column per category (a case-mix category, an
    exclusion reason, a risk factor imputed); a missing cell is a zero. ``rows`` says each row's total (the
    unit's records) is published; ``columns`` says each column's total (the national count of the category)
    is published, and, with ``rows``, their sum (the national records). A case-mix cell suppressed within its
    provider could otherwise be recovered as the national count minus every other provider's published cell
    of that category (leak 2 of issue #15), and a provider's imputed or excluded count as the national count
    minus the other providers' (leak 3). ``primary_totals`` marks national totals to hide whatever their size
    (one hidden in another table that publishes the same count). Returns ``(cells, totals)``: a boolean array of the grid's shape
    (``primary``, by default every count from 1 to ``threshold``, and the complementary cells) and one of the
    columns (national totals to hide: a national total is a total, not a cell, but a small one is a small count
    in its own right, and then others of the national row with it, since their sum is published).

    The rule is secondary (complementary) cell suppression of a table whose marginal totals are published
    (Hundepool et al., *Statistical Disclosure Control*, Wiley 2012, chapter 4 "Magnitude tabular data" and
    5 "Frequency tables": a pattern must leave every sensitive cell's feasible interval, given the published
    cells and totals, wider than one value; ONS and NHS Digital disclosure control guidance for small numbers,
    on complementary suppression across totals):

    1. ``secondary_suppress`` on every row and every column whose total is published (a group with a hidden
       non-zero cell gets at least two hidden cells whose hidden total exceeds the threshold), and on the row
       of national totals, repeated until nothing changes: hiding a cell to protect a row can expose its column,
       and the other way round.
    2. An audit of the pattern as an attacker would read it: a hidden non-zero cell (or hidden national total)
       is *determined* when no integer filling that keeps every published total and every count at zero or more
       gives it another value (:func:`determined_cells`). Two hidden cells per row and column do not rule that
       out (a hidden cell that is the only link between two groups of hidden cells is fixed by the totals on
       either side). For each determined cell one more cell is hidden that closes a rectangle with it (the
       smallest non-zero such cell), then back to 1.

    A cell that the published totals fix even when every cell is hidden (the only non-zero cell of its row)
    cannot be protected by suppression; it is left hidden and ``small_totals`` names its total.

    Zeros are not disclosive: a hidden zero is never itself protected (it takes part only as a complement, and
    complements prefer non-zero cells). The result holds for the grid alone; a count shared with another
    published table must be hidden in both (``auditreport.analysis.breakdowns`` links them). Without ``rows``
    the columns are one-way groups (at least two hidden cells each, which no total can separate), and the other
    way round.
    """
    values = grid.fillna(0).to_numpy(dtype=float)
    hidden = (grid_primary(grid, threshold) if primary is None else np.asarray(primary, bool)).copy()
    national = values.sum(axis=0)
    totals = is_small(national, threshold) if columns else np.zeros(values.shape[1], bool)
    if primary_totals is not None:
        totals = totals | np.asarray(primary_totals, bool)
    if not hidden.any() and not totals.any():
        return hidden, totals
    # The augmented table: the grid with the national totals as one more row, negated so that every row and
    # column of it sums to zero (the national row sums to minus the national records, published with rows).
    table = np.vstack([values, national])
    mask = np.vstack([hidden, totals])
    everything = np.ones_like(mask)
    for _ in range(table.size + 1):
        before = mask.copy()
        _fixpoint(table, mask, threshold, rows, columns)
        if rows and columns:
            determined = determined_cells(table, mask, negated_row=len(values))
            # A cell the published totals fix even with every cell hidden (the only non-zero cell of a row: the
            # row total is the cell) cannot be protected here: hiding more would only lose figures.
            lost = set(determined_cells(table, everything, len(values), only=determined)) if determined else set()
            for i, j in (c for c in determined if c not in lost):
                extra = _closing_cell(table, mask, i, j)
                if extra is not None:
                    mask[extra] = True
        if (mask == before).all():
            break
    return mask[:-1].copy(), mask[-1].copy()


def _fixpoint(table: np.ndarray, mask: np.ndarray, threshold: int, rows: bool, columns: bool) -> None:
    """Step 1 of :func:`two_way_suppress`, in place on the augmented table (last row: the national totals).

    Unit rows are groups when ``rows``; a column is a group when ``columns`` and its national total is shown;
    the national row is a group when both (its sum, the national records, is published)."""
    n_units = table.shape[0] - 1
    lines = [(mask[i], table[i]) for i in range(n_units)] if rows else []
    if rows and columns:
        lines.append((mask[n_units], table[n_units]))
    for _ in range(table.size + 1):
        before = mask.copy()
        extra = [(mask[:n_units, j], table[:n_units, j]) for j in range(table.shape[1])
                 if columns and not mask[n_units, j]]
        for line, cells in lines + extra:
            sensitive = line & (cells > 0)  # a hidden zero needs no protection
            if sensitive.any():
                hide = secondary_suppress(dict(enumerate(cells)), set(np.flatnonzero(sensitive)), threshold)
                line[list(hide)] = True  # ``line`` is a view of ``mask``: written in place
        if (mask == before).all():
            return


def determined_cells(values: np.ndarray, hidden: np.ndarray, negated_row: int | None = None,
                     only: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """The hidden non-zero cells whose value the published cells and every row and column sum fix exactly.

    Every row and column of ``values`` has a published sum; the cells of row ``negated_row`` (if any) enter
    their column with a minus sign (a total: the column's cells minus it sum to zero). A hidden cell x can take
    another value exactly when a cycle of hidden cells through it, each changed by +1 or -1 so that every row
    and column still balances, keeps every count at zero or more (the constraint matrix of a two-way table is
    totally unimodular, so any other integer filling decomposes into such cycles). As a directed graph on rows
    and columns: a row -> column edge is a hidden cell lowered by one (it must be at least 1; for a negated
    cell, raised), a column -> row edge a hidden cell raised (a negated cell lowered: at least 1). Lowering x is
    a path from x's column back to its row; raising x, from its row to its column. One breadth-first search per
    hidden cell (of ``only``, if given): no linear programme needed.
    """
    n_rows = values.shape[0]
    cells = [(int(i), int(j)) for i, j in zip(*np.nonzero(hidden), strict=True)]
    row_out: dict[int, list[tuple[int, tuple[int, int]]]] = {}
    col_out: dict[int, list[tuple[int, tuple[int, int]]]] = {}
    for i, j in cells:
        positive = values[i, j] >= 1
        row_to_col, col_to_row = (True, positive) if i == negated_row else (positive, True)
        if row_to_col:
            row_out.setdefault(i, []).append((n_rows + j, (i, j)))
        if col_to_row:
            col_out.setdefault(n_rows + j, []).append((i, (i, j)))

    def reaches(start: int, goal: int, banned: tuple[int, int]) -> bool:
        seen, frontier = {start}, [start]
        while frontier:
            nxt = []
            for v in frontier:
                for w, cell in (row_out if v < n_rows else col_out).get(v, ()):
                    if cell == banned or w in seen:
                        continue
                    if w == goal:
                        return True
                    seen.add(w)
                    nxt.append(w)
            frontier = nxt
        return False

    return [(i, j) for i, j in (cells if only is None else only) if values[i, j] > 0
            and not reaches(n_rows + j, i, (i, j)) and not reaches(i, n_rows + j, (i, j))]
def _closing_cell(values: np.ndarray, hidden: np.ndarray, i: int, j: int) -> tuple[int, int] | None:
    """A visible cell (k, l) that closes a rectangle with hidden (i, j): (k, j) and (i, l) hidden; the smallest
    non-zero one first, then a zero; else the smallest visible cell of row i or column j (``None``: none left)."""
    rows_k = np.flatnonzero(hidden[:, j])
    cols_l = np.flatnonzero(hidden[i])
    sub = ~hidden[np.ix_(rows_k, cols_l)]
    if sub.any():
        ks, ls = np.nonzero(sub)
        vals = values[rows_k[ks], cols_l[ls]]
        best = np.lexsort((vals, vals == 0))[0]
        return int(rows_k[ks[best]]), int(cols_l[ls[best]])
    line = [(values[i, c], (i, int(c))) for c in np.flatnonzero(~hidden[i])]
    line += [(values[k, j], (int(k), j)) for k in np.flatnonzero(~hidden[:, j])]
    if not line:
        return None
    return min(line, key=lambda t: (t[0] == 0, t[0], t[1]))[1]


def small_totals(grid: pd.DataFrame, threshold: int) -> dict[str, list]:
    """Row and column totals of a grid that are themselves small (1..threshold): ``{"rows": [...],
    "columns": [...]}`` by label. A published small total is a small count in its own right; the caller hides
    or notes it (a unit's records and a national category count are shown with the counts they total)."""
    values = grid.fillna(0)
    return {"rows": [k for k, v in values.sum(axis=1).items() if is_small(v, threshold)],
            "columns": [k for k, v in values.sum(axis=0).items() if is_small(v, threshold)]}
