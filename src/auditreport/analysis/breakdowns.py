"""The public breakdowns: case mix, data quality and exclusions after two-way small-number suppression.

A breakdown (the records of each case-mix category, each exclusion reason, each risk factor imputed) is
published per provider and nationally. Suppressing a provider's small cell within its own report is not enough:
the national count of the category is published too (the national report, the national share beside each
provider's), so the hidden cell is the national count minus every other provider's published cell (issue #15,
leaks 2 and 3). Each breakdown is therefore a provider x category grid whose row totals (a provider's records)
and column totals (the national counts) are published, suppressed by
:func:`auditreport.rules.disclosure.two_way_suppress`. A count that two tables both publish (a data-level
exclusion reason is in the data quality table and in every measure's exclusions; a risk factor's "missing"
case-mix category is its imputed count) is hidden in both whenever either hides it, and the grids are solved
again until no table hides anything more.

The national stage writes the result as the bundle's ``casemix_public``, ``quality_public`` and
``exclusions_public`` (long form, a ``suppressed`` flag per cell, the hidden figures blank); public reports read
only these. Under every publication policy (breakdowns are not a unit's outcome).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from auditreport.rules.disclosure import is_small, two_way_suppress

NATIONAL = "national"
#: The grid row of records without a provider code: in the national totals, in no provider's row; never shown.
UNATTRIBUTED = "(no provider code)"
#: The data quality items whose per-provider counts are additive grids (prefix, rows add up to a published total).
QUALITY_GRIDS = (("excluded: ", True), ("imputed: ", False), ("missing: ", False))
#: The quality table's totals: records analysed and excluded add up to records submitted.
TOTAL_ITEMS = ("records_submitted", "records_analysed", "records_excluded")

CASEMIX_PUBLIC_COLUMNS = ["unit_id", "variable", "category", "n", "share", "suppressed"]
QUALITY_PUBLIC_COLUMNS = ["unit_id", "item", "records", "suppressed"]
EXCLUSIONS_PUBLIC_COLUMNS = ["measure", "unit_id", "reason", "records", "suppressed"]


@dataclass
class Grid:
    """One additive breakdown: counts by unit (rows: providers, maybe ``UNATTRIBUTED``) and category.

    ``link(unit, category)`` names the count a cell shares with another table (``None``: none); ``rows`` says
    each provider's total of the grid is published, ``national`` the published national count per category.
    """

    name: str
    counts: pd.DataFrame
    national: pd.Series
    rows: bool = True
    link: Callable[[str, str], Hashable | None] = lambda unit, category: None
    cells: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    totals: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def solve(self, threshold: int, forced: set) -> set:
        """Suppress the grid (hiding every cell or national total whose link is in ``forced``); return the
        links of what it hides."""
        units, cats = list(self.counts.index), list(self.counts.columns)
        primary = is_small(self.counts.to_numpy(dtype=float), threshold)
        primary_totals = np.array([self.link(NATIONAL, c) in forced for c in cats], bool)
        for i, u in enumerate(units):
            for j, c in enumerate(cats):
                key = self.link(u, c)
                if key is not None and key in forced:
                    primary[i, j] = True
        if UNATTRIBUTED in units:  # never published: as good as hidden, and its records need protecting too
            i = units.index(UNATTRIBUTED)
            primary[i] |= self.counts.iloc[i].to_numpy(dtype=float) > 0
        self.cells, self.totals = two_way_suppress(self.counts, threshold, primary, rows=self.rows,
                                                   primary_totals=primary_totals)
        hidden = {self.link(units[i], cats[j]) for i, j in zip(*np.nonzero(self.cells), strict=True)}
        hidden |= {self.link(NATIONAL, cats[j]) for j in np.flatnonzero(self.totals)}
        return hidden - {None}

    def long(self) -> pd.DataFrame:
        """Every provider's cell and the national totals, long: unit_id, category, count, suppressed."""
        providers = self.counts.drop(index=[UNATTRIBUTED], errors="ignore")
        keep = [u != UNATTRIBUTED for u in self.counts.index]
        cells = pd.DataFrame(self.cells[keep], index=providers.index, columns=providers.columns)
        out = pd.concat([
            pd.DataFrame({"unit_id": NATIONAL, "category": self.national.index,
                          "count": self.national.to_numpy(dtype=float), "suppressed": self.totals}),
            providers.stack().rename("count").reset_index().set_axis(["unit_id", "category", "count"], axis=1)
            .assign(suppressed=cells.stack().to_numpy())], ignore_index=True)
        out["count"] = out["count"].astype(float)
        return out


def grid_of(name: str, long: pd.DataFrame, unit: str, category: str, count: str, rows: bool = True,
            link: Callable[[str, str], Hashable | None] | None = None, categories: list | None = None) -> Grid:
    """A ``Grid`` from a long table with a national row (``unit_id`` "national") and provider rows.

    Categories a provider lacks are zeros; ``UNATTRIBUTED`` is the national count minus the providers' where
    that is more than zero (records without a provider code count nationally only).
    """
    national = long[long[unit] == NATIONAL].groupby(category, sort=False)[count].sum().astype(float)
    cats = categories if categories is not None else list(national.index)
    national = national.reindex(cats, fill_value=0.0)
    providers = long[long[unit] != NATIONAL]
    counts = providers.pivot_table(index=unit, columns=category, values=count, aggfunc="sum", fill_value=0,
                                   sort=True).reindex(columns=cats, fill_value=0).astype(float)
    counts.columns.name = None
    rest = (national - counts.sum()).clip(lower=0)
    if (rest > 0).any():
        counts.loc[UNATTRIBUTED] = rest
    return Grid(name, counts, national, rows=rows, link=link or (lambda u, c: None))


def solve_linked(grids: list[Grid], threshold: int) -> None:
    """Suppress every grid, hiding a count shared by two tables in both, until no grid hides anything more."""
    forced: set = set()
    for _ in range(100):
        hidden: set = set()
        for g in grids:
            hidden |= g.solve(threshold, forced)
        if hidden <= forced:
            return
        forced |= hidden


@dataclass(frozen=True)
class PublicBreakdowns:
    """The three public tables and notes on small totals that are published (``notes``)."""

    casemix: pd.DataFrame
    quality: pd.DataFrame
    exclusions: pd.DataFrame
    notes: list[str]
    cells_suppressed: dict[str, int]


def public_breakdowns(casemix: pd.DataFrame, quality: pd.DataFrame, exclusions: pd.DataFrame,
                      threshold: int) -> PublicBreakdowns:
    """The case mix, data quality and exclusions tables as public outputs may show them.

    ``casemix`` (unit_id, variable, category, n, share), ``quality`` (one row per unit, ``records_*``,
    ``excluded: ``, ``complete: `` and ``imputed: `` columns) and ``exclusions`` (measure, unit_id, reason,
    records) are the national stage's full tables. Links between them: a data-level exclusion reason is the
    same count in ``quality`` and in each measure's exclusions; a factor's case-mix category "missing" is its
    ``imputed`` count; a field's records lacking it (``missing: <field>``, from completeness) are hidden with its
    imputed count (they differ by the excluded records lacking it, often none).
    """
    q = quality.set_index("unit_id")
    imputed = {c.removeprefix("imputed: ") for c in q.columns if c.startswith("imputed: ")}
    reasons = {c.removeprefix("excluded: ") for c in q.columns if c.startswith("excluded: ")}
    quality_long = quality_counts(quality)

    def quality_link(prefix: str) -> Callable[[str, str], Hashable | None]:
        def link(unit: str, item: str) -> Hashable | None:
            name = item.removeprefix(prefix)
            if prefix == "excluded: ":
                return ("excluded", unit, name)
            return ("missing", unit, name) if name in imputed else None
        return link

    grids: dict[str, Grid] = {}
    for prefix, rows in QUALITY_GRIDS:
        items = [c for c in quality_long["item"].unique() if c.startswith(prefix)]
        if items:
            part = quality_long[quality_long["item"].isin(items)]
            grids[f"quality {prefix.strip(': ')}"] = grid_of(f"data quality ({prefix.strip(': ')})", part,
                                                             "unit_id", "item", "records", rows,
                                                             quality_link(prefix), items)
    part = quality_long[quality_long["item"].isin(TOTAL_ITEMS[1:])]
    # With one exclusion reason, a unit's records excluded are that reason's count: the same figure, linked.
    only = next(iter(reasons)) if len(reasons) == 1 else None
    grids["quality records"] = grid_of(
        "data quality (records analysed and excluded)", part, "unit_id", "item", "records", True,
        (lambda u, c: ("excluded", u, only) if only is not None and c == "records_excluded" else None),
        categories=list(TOTAL_ITEMS[1:]))
    part = quality_long[quality_long["item"] == TOTAL_ITEMS[0]]
    grids["quality submitted"] = grid_of("data quality (records submitted)", part, "unit_id", "item", "records",
                                         False, categories=[TOTAL_ITEMS[0]])
    for variable in casemix["variable"].unique():
        part = casemix[casemix["variable"] == variable]
        grids[f"casemix {variable}"] = grid_of(
            f"case mix ({variable})", part, "unit_id", "category", "n", True,
            (lambda u, c, v=variable: ("missing", u, v) if c == "missing" and v in imputed else None))
    for measure in exclusions["measure"].unique():
        part = exclusions[exclusions["measure"] == measure]
        grids[f"exclusions {measure}"] = grid_of(
            f"exclusions ({measure})", part, "unit_id", "reason", "records", True,
            (lambda u, r: ("excluded", u, r) if r in reasons else None))
    solve_linked(list(grids.values()), threshold)

    notes = small_total_notes(grids, threshold)
    counted = {name: int(g.cells.sum() + g.totals.sum()) for name, g in grids.items()}
    return PublicBreakdowns(
        casemix=_casemix_public(casemix, {k.removeprefix("casemix "): g for k, g in grids.items()
                                          if k.startswith("casemix ")}),
        quality=_quality_public(quality_long, [g for k, g in grids.items() if k.startswith("quality ")], threshold),
        exclusions=_exclusions_public({k.removeprefix("exclusions "): g for k, g in grids.items()
                                       if k.startswith("exclusions ")}),
        notes=notes, cells_suppressed=counted)


def quality_counts(quality: pd.DataFrame) -> pd.DataFrame:
    """The data quality table as counts, long (unit_id, item, records): completeness becomes ``missing:
    <field>``, the records submitted lacking the field (a share with its records is the count)."""
    q = quality.set_index("unit_id")
    counts = q[[c for c in q.columns if not c.startswith("complete: ")]].astype(float)
    for c in (c for c in q.columns if c.startswith("complete: ")):
        share = q[c].astype(float)
        if share.notna().any():  # a field the audit does not map has no completeness at all
            counts[f"missing: {c.removeprefix('complete: ')}"] = ((1 - share) * q["records_submitted"]).round()
    long = counts.rename_axis("unit_id").reset_index().melt(id_vars="unit_id", var_name="item",
                                                             value_name="records")
    return long.dropna(subset=["records"]).reset_index(drop=True)


def small_total_notes(grids: dict[str, Grid], threshold: int) -> list[str]:
    """A sentence for each published total that is itself small: a provider's total of a grid with rows
    (its records: published with its outcomes) or a national count (hidden in public, with a complement)."""
    notes = []
    for g in grids.values():
        nat = [str(c) for c, v in g.national.items() if is_small(v, threshold)]
        if nat:
            notes.append(f"{g.name}: national count of {', '.join(nat)} is between 1 and {threshold}: hidden in "
                         "public outputs, with another national count so that their sum does not give it")
        if g.rows:
            small = [str(u) for u, v in g.counts.drop(index=[UNATTRIBUTED], errors="ignore").sum(axis=1).items()
                     if is_small(v, threshold)]
            if small:
                notes.append(f"{g.name}: the total of {', '.join(small)} is between 1 and {threshold}; every "
                             "non-zero cell of it is hidden, but the total itself is published where it is a "
                             "provider's records in a measure")
    return notes


def _casemix_public(casemix: pd.DataFrame, grids: dict[str, Grid]) -> pd.DataFrame:
    frames = []
    for variable, g in grids.items():
        long = g.long().rename(columns={"count": "n"})
        total = long.groupby("unit_id")["n"].transform("sum")
        long["share"] = (long["n"] / total.where(total > 0)).where(~long["suppressed"])
        long["n"] = long["n"].where(~long["suppressed"])
        frames.append(long.assign(variable=variable))
    if not frames:
        return _empty(CASEMIX_PUBLIC_COLUMNS, {"n": float, "share": float, "suppressed": bool})
    out = pd.concat(frames, ignore_index=True)[CASEMIX_PUBLIC_COLUMNS]
    return out.astype({"unit_id": str, "variable": str, "category": str, "n": float, "share": float,
                       "suppressed": bool})


def _quality_public(quality_long: pd.DataFrame, grids: list[Grid], threshold: int) -> pd.DataFrame:
    cells = pd.concat([g.long() for g in grids], ignore_index=True).rename(columns={"category": "item"})
    out = quality_long.merge(cells[["unit_id", "item", "suppressed"]], on=["unit_id", "item"], how="left")
    # Items of no grid (the national count of records without a provider code) are hidden only when small.
    out["suppressed"] = out["suppressed"].astype("boolean").fillna(pd.Series(is_small(out["records"], threshold),
                                                                            index=out.index)).astype(bool)
    out["records"] = out["records"].where(~out["suppressed"]).astype(float)
    return out.astype({"unit_id": str, "item": str})[QUALITY_PUBLIC_COLUMNS]


def _exclusions_public(grids: dict[str, Grid]) -> pd.DataFrame:
    frames = [g.long().rename(columns={"category": "reason", "count": "records"}).assign(measure=measure)
              for measure, g in grids.items()]
    if not frames:
        return _empty(EXCLUSIONS_PUBLIC_COLUMNS, {"records": float, "suppressed": bool})
    out = pd.concat(frames, ignore_index=True)
    out["records"] = out["records"].where(~out["suppressed"])
    return out.astype({"measure": str, "unit_id": str, "reason": str, "records": float,
                       "suppressed": bool})[EXCLUSIONS_PUBLIC_COLUMNS]


def _empty(columns: list[str], kinds: dict[str, type]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, object)) for c in columns})
