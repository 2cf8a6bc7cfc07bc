"""Breakdown leaks closed (issue #15, item 7, leaks 2 and 3): two-way suppression across providers.

A provider's small case-mix, imputed or excluded count hidden within its own report used to be recoverable
as the national count minus every other provider's published count. The rule (``two_way_suppress``) is held
to brute force and to linear programming on hand-made and random grids: every hidden non-zero cell can take
at least two values given everything published. The attack is then tried on real national-stage output
(a small synthetic audit with a designed number of CT results missing per provider): it recovers hidden cells
from the figures the old per-provider rule published, and recovers nothing from the public tables the national
stage now writes, nor from the public report sections built from them.
"""

from __future__ import annotations

import html as html_lib
import itertools
import re

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from auditreport.analysis.breakdowns import UNATTRIBUTED, public_breakdowns, quality_counts
from auditreport.analysis.national import run_national
from auditreport.bundle import load_bundle, write_bundle
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec
from auditreport.presentation import measure_sections, national_sections, provider_sections
from auditreport.presentation.context import load_context
from auditreport.presentation.display import outputs
from auditreport.rules.disclosure import (
    SUPPRESSED,
    _fixpoint,
    determined_cells,
    small_totals,
    suppress_group,
    two_way_suppress,
)

from conftest import make_audit

THRESHOLD = 7
#: CT results blanked among each provider's emergency admissions (providers in code order): the first
#: provider's 3 is hidden in its report, the others are published, and the national 59 is published.
CT_BLANKED = [3, 9, 10, 11, 12, 14]
CT_REASON = "event missing ('ct_before_surgery' reads a blank value)"


# ---------------------------------------------------------------------------------------------------------------
# What an attacker can work out


def feasible_range(values: np.ndarray, hidden: np.ndarray, totals: np.ndarray) -> dict[tuple, tuple[float, float]]:
    """Each hidden cell's (and hidden national total's) least and greatest value over every non-negative filling
    that keeps every published figure: visible cells, each row's total, visible national totals and their sum.

    Independent of the rule's own cycle search: scipy's linear programme (the two-way table's constraint matrix
    is totally unimodular, so its bounds are integers and attained by integer fillings)."""
    m, n = values.shape
    national = values.sum(axis=0)
    unknown = [("cell", i, j) for i, j in zip(*np.nonzero(hidden), strict=True)]
    unknown += [("total", None, j) for j in np.flatnonzero(totals)]
    if not unknown:
        return {}
    a, b = [], []
    for i in range(m):
        a.append([1.0 if k[0] == "cell" and k[1] == i else 0.0 for k in unknown])
        b.append(values[i][hidden[i]].sum())
    for j in range(n):
        a.append([1.0 if k[0] == "cell" and k[2] == j else -1.0 if k[0] == "total" and k[2] == j else 0.0
                  for k in unknown])
        b.append(values[:, j][hidden[:, j]].sum() - (national[j] if totals[j] else 0.0))
    a.append([1.0 if k[0] == "total" else 0.0 for k in unknown])
    b.append(national[totals].sum())
    out = {}
    for t, key in enumerate(unknown):
        c = np.zeros(len(unknown))
        c[t] = 1.0
        low = linprog(c, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
        high = linprog(-c, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
        assert low.status == 0 and high.status == 0, (low.message, high.message)
        out[key] = (round(low.fun, 6), round(-high.fun, 6))
    return out


def undetermined(values: np.ndarray, hidden: np.ndarray, totals: np.ndarray) -> list[tuple]:
    """The hidden non-zero cells and totals an attacker pins down exactly (empty: none)."""
    national = values.sum(axis=0)
    pinned = []
    for key, (low, high) in feasible_range(values, hidden, totals).items():
        value = values[key[1], key[2]] if key[0] == "cell" else national[key[2]]
        assert low <= value <= high
        if value > 0 and low == high:
            pinned.append(key)
    return pinned


def subtraction_attack(cells: pd.DataFrame, national: pd.Series) -> dict[tuple[str, str], float]:
    """The attack of the issue: where a category's national count is published and exactly one provider's
    cell of it is not, that cell is the national count minus the others. ``cells`` holds the published
    provider counts (NaN: hidden), ``national`` the published national counts (NaN: hidden)."""
    recovered = {}
    for category in cells.columns:
        column = cells[category]
        if national.get(category) == national.get(category) and column.isna().sum() == 1:
            recovered[(column.index[column.isna()][0], category)] = float(national[category] - column.sum())
    return recovered


def one_way(grid: pd.DataFrame) -> pd.DataFrame:
    """What reports published before: each provider's categories suppressed within the provider only."""
    out = grid.astype(float).copy()
    for unit in grid.index:
        for category in suppress_group(grid.loc[unit].to_dict(), THRESHOLD):
            out.loc[unit, category] = np.nan
    return out


# ---------------------------------------------------------------------------------------------------------------
# The rule on hand-made grids

#: Four providers by three categories; provider A's 3 is small.
GRID = pd.DataFrame([[3, 40, 50], [20, 30, 45], [25, 35, 60], [30, 28, 44]], index=list("ABCD"),
                    columns=["x", "y", "z"])


def test_within_provider_suppression_leaks_and_two_way_does_not():
    before = one_way(GRID)
    # the leak: 78 - (20 + 25 + 30) = 3, and its complement within A, 133 - (30 + 35 + 28) = 40
    assert subtraction_attack(before, GRID.sum()) == {("A", "x"): 3.0, ("A", "y"): 40.0}
    cells, totals = two_way_suppress(GRID, THRESHOLD)
    after = GRID.astype(float).where(~cells)
    assert subtraction_attack(after, GRID.sum().where(~totals)) == {}
    assert cells[0, 0] and cells.sum() >= 4 and not totals.any()
    assert undetermined(GRID.to_numpy(float), cells, totals) == []
    # every row and column with a hidden cell hides at least two, together more than the threshold
    values = GRID.to_numpy(float)
    for line, cells_of in [*zip(cells, values, strict=True), *zip(cells.T, values.T, strict=True)]:
        if line.any():
            assert line.sum() >= 2 and cells_of[line].sum() > THRESHOLD


def test_every_hidden_cell_has_two_integer_fillings_brute_force():
    """Enumerate every filling of the hidden cells that keeps the published row and column totals."""
    grid = pd.DataFrame([[2, 9, 0], [8, 1, 11], [10, 12, 9]], index=list("ABC"), columns=list("xyz"))
    cells, totals = two_way_suppress(grid, THRESHOLD)
    assert not totals.any()  # national 20, 22, 20: none small
    values = grid.to_numpy()
    hidden = list(zip(*np.nonzero(cells), strict=True))
    assert (0, 0) in hidden and (1, 1) in hidden
    seen: dict[tuple, set] = {h: set() for h in hidden}
    rows, cols = values.sum(axis=1), values.sum(axis=0)
    for filling in itertools.product(*(range(min(rows[i], cols[j]) + 1) for i, j in hidden)):
        trial = values.copy()
        for (i, j), v in zip(hidden, filling, strict=True):
            trial[i, j] = v
        if (trial.sum(axis=1) == rows).all() and (trial.sum(axis=0) == cols).all():
            for h, v in zip(hidden, filling, strict=True):
                seen[h].add(v)
    for (i, j), found in seen.items():
        assert values[i, j] in found
        if values[i, j] > 0:
            assert len(found) >= 2, ((i, j), found)


def test_a_cell_linking_two_blocks_of_hidden_cells_is_protected():
    """Two hidden cells per row and column are not enough: a cell that is the only link between two blocks of
    hidden cells is fixed by the totals on either side. The audit finds it and closes a cycle through it."""
    grid = pd.DataFrame([[40, 9, 9, 1], [9, 3, 20, 12], [1, 20, 9, 12], [20, 40, 2, 40]], index=list("ABCD"),
                        columns=list("wxyz"))
    values = grid.to_numpy(float)
    table = np.vstack([values, values.sum(axis=0)])
    mask = np.vstack([(values >= 1) & (values <= THRESHOLD), np.zeros(4, bool)])
    _fixpoint(table, mask, THRESHOLD, True, True)
    pattern = mask[:-1]
    # B's 9 in w is the only link between {A, B} x {x, z} and {C, D} x {w, y}: 9 = B's hidden total - 3 - 12
    assert undetermined(values, pattern, np.zeros(4, bool)) == [("cell", 1, 0)]
    assert determined_cells(table, mask, negated_row=4) == [(1, 0)]
    cells, totals = two_way_suppress(grid, THRESHOLD)
    assert undetermined(values, cells, totals) == []
    assert (cells | pattern).sum() == cells.sum() > pattern.sum()


def test_random_grids_leave_nothing_determined_and_the_cycle_search_agrees_with_linear_programming():
    rng = np.random.default_rng(15)
    for _ in range(120):
        values = rng.choice([0, 0, 1, 2, 3, 5, 8, 12, 20, 40], size=(rng.integers(2, 8), rng.integers(2, 6)))
        cells, totals = two_way_suppress(pd.DataFrame(values), THRESHOLD)
        assert undetermined(values.astype(float), cells, totals) == [], values
        # and on an arbitrary pattern, the cycle search finds exactly the cells linear programming pins down
        pattern = rng.random(values.shape) < 0.4
        table = np.vstack([values.astype(float), values.sum(axis=0)])
        mask = np.vstack([pattern, np.zeros(values.shape[1], bool)])
        assert sorted(determined_cells(table, mask, negated_row=len(values))) == sorted(
            (k[1], k[2]) for k in undetermined(values.astype(float), pattern, np.zeros(values.shape[1], bool)))


def test_zeros_are_not_disclosive_and_small_national_totals_are_hidden_with_a_complement():
    grid = pd.DataFrame([[0, 40, 12], [0, 30, 25], [0, 22, 9]], columns=list("xyz"))
    cells, totals = two_way_suppress(grid, THRESHOLD)
    assert not cells.any() and not totals.any()  # nothing small: nothing hidden, zeros included
    small = pd.DataFrame([[2, 40, 12], [0, 30, 25], [1, 22, 9]], columns=list("xyz"))
    cells, totals = two_way_suppress(small, THRESHOLD)
    assert totals[0] and totals.sum() >= 2  # national x is 3: hidden, and another national count with it
    assert cells[0, 0] and cells[2, 0]
    assert undetermined(small.to_numpy(float), cells, totals) == []
    assert small_totals(small, THRESHOLD) == {"rows": [], "columns": ["x"]}


def test_a_cell_no_suppression_can_protect_is_left_and_its_total_noted():
    """One category: a provider's total is its cell, so hiding more cannot help; the national total stays."""
    grid = pd.DataFrame({"only": [4, 3, 1, 7, 2, 3]}, index=list("ABCDEF"))
    cells, totals = two_way_suppress(grid, THRESHOLD)
    assert cells.all() and not totals.any()
    assert small_totals(grid, THRESHOLD)["rows"] == list("ABCDEF")


# ---------------------------------------------------------------------------------------------------------------
# The attack on real national-stage output


@pytest.fixture(scope="module")
def national(tmp_path_factory):
    """A small synthetic audit (6 providers) with ``CT_BLANKED`` CT results missing per provider, through the
    national stage, and its bundle."""
    folder = tmp_path_factory.mktemp("breakdowns")
    definition = make_audit(folder, SyntheticSpec(records=3000, providers=6, consultants=18, outliers_high=1,
                                                  outliers_low=0, seed=7))
    path = folder / "data" / "records.parquet"
    records = pd.read_parquet(path)
    providers = sorted(records["provider_code"].unique())
    # Every urgency known (no "eligibility not known" exclusions), so that before, nothing but the first
    # provider's small count and its complement were hidden in the CT measure's exclusions.
    records["urgency"] = records["urgency"].fillna("elective")
    for provider, k in zip(providers, CT_BLANKED, strict=True):
        eligible = (records["provider_code"] == provider) & (records["urgency"] == "emergency")
        already = int((eligible & records["ct_before_surgery"].isna()).sum())  # the generator blanks a few
        rows = records.index[eligible & records["ct_before_surgery"].notna()][:k - already]
        records.loc[rows, "ct_before_surgery"] = np.nan
    records.to_parquet(path, index=False)
    results = run_national(load_config(definition))
    return results, write_bundle(folder / "out", results), providers


def _grid(long: pd.DataFrame, category: str, count: str) -> tuple[pd.DataFrame, pd.Series]:
    """Provider x category counts and the national counts of a long table."""
    national = long[long["unit_id"] == "national"].set_index(category)[count].astype(float)
    cells = long[long["unit_id"] != "national"].pivot(index="unit_id", columns=category, values=count)
    return cells.reindex(columns=national.index).astype(float), national


def _public_grid(long: pd.DataFrame, category: str, count: str) -> tuple[pd.DataFrame, pd.Series]:
    cells, national = _grid(long, category, count)
    return cells, national.where(~long[long["unit_id"] == "national"].set_index(category)["suppressed"])


def test_exclusions_subtracted_across_providers_recover_nothing(national):
    results, _, providers = national
    full, nat = _grid(results.exclusions[results.exclusions["measure"] == "ct_before_surgery"], "reason", "records")
    full = full.reindex(providers).fillna(0)
    assert full[CT_REASON].tolist() == CT_BLANKED and nat[CT_REASON] == sum(CT_BLANKED)
    # before: the first provider's 3 is hidden in its report (and its complement), everything else published:
    # 59 - 56 = 3
    before = subtraction_attack(one_way(full), nat)
    assert before[(providers[0], CT_REASON)] == 3.0
    assert all(full.at[unit, reason] == value for (unit, reason), value in before.items())
    public = results.exclusions_public[results.exclusions_public["measure"] == "ct_before_surgery"]
    cells, pub_nat = _public_grid(public, "reason", "records")
    assert subtraction_attack(cells, pub_nat) == {}
    hidden = cells.isna().to_numpy()
    assert hidden[0, list(cells.columns).index(CT_REASON)]
    assert undetermined(full.reindex(cells.index).to_numpy(float), hidden, pub_nat.isna().to_numpy()) == []


def test_imputed_counts_subtracted_across_providers_recover_nothing(national):
    results, _, providers = national
    q = results.quality.set_index("unit_id")
    imputed = q.loc[providers, ["imputed: asa"]].astype(float)
    assert imputed["imputed: asa"].min() <= THRESHOLD < imputed["imputed: asa"].drop(
        imputed["imputed: asa"].idxmin()).min()
    small = imputed["imputed: asa"].idxmin()
    before = imputed.where(imputed > THRESHOLD)  # a lone small count was hidden, the rest published
    assert subtraction_attack(before, q.loc["national", ["imputed: asa"]].astype(float)) == {
        (small, "imputed: asa"): imputed.at[small, "imputed: asa"]}
    cells, pub_nat = _public_grid(results.quality_public, "item", "records")
    assert subtraction_attack(cells[[c for c in cells.columns if c.startswith(("imputed", "missing", "excluded"))]],
                              pub_nat) == {}
    assert np.isnan(cells.at[small, "imputed: asa"])
    # the same count is the case mix's "missing" ASA category: hidden there too
    mix = results.casemix_public.set_index(["unit_id", "variable", "category"])
    assert mix.at[(small, "asa", "missing"), "suppressed"]


def test_case_mix_summed_across_providers_to_the_national_count_recovers_nothing(national):
    results, _, providers = national
    recovered = 0
    for variable, part in results.casemix.groupby("variable"):
        full, nat = _grid(part, "category", "n")
        full = full.reindex(providers).fillna(0)
        for (unit, category), value in subtraction_attack(one_way(full), nat).items():
            assert value == full.at[unit, category]
            recovered += 1
        pub = results.casemix_public[results.casemix_public["variable"] == variable]
        cells, pub_nat = _public_grid(pub, "category", "n")
        assert subtraction_attack(cells, pub_nat) == {}, variable
        hidden = cells.isna().to_numpy()
        assert undetermined(full.reindex(cells.index).to_numpy(float), hidden, pub_nat.isna().to_numpy()) == []
        # a share of a hidden cell is hidden too; national rows are totals, shown unless small
        assert pub.loc[pub["suppressed"], "share"].isna().all() and pub.loc[~pub["suppressed"], "share"].notna().all()
    assert recovered >= 1  # the attack worked on what reports published before


def test_public_tables_blank_every_hidden_figure_and_keep_the_rest(national):
    results, bundle, _ = national
    b = load_bundle(bundle)
    for name, count in (("casemix_public", "n"), ("quality_public", "records"), ("exclusions_public", "records")):
        table = getattr(b, name)
        assert table[count][table["suppressed"]].isna().all()
        assert table[count][~table["suppressed"]].notna().all()
    full = quality_counts(results.quality).set_index(["unit_id", "item"])["records"]
    shown = b.quality_public[~b.quality_public["suppressed"]].set_index(["unit_id", "item"])["records"]
    assert (shown == full.loc[shown.index]).all()
    assert UNATTRIBUTED not in set(b.casemix_public["unit_id"])
    assert b.metadata["breakdowns"]["cells_suppressed"]["exclusions ct_before_surgery"] >= 2


def _cells(html: str) -> dict[str, list[str]]:
    """A report table's rows by their first cell: the other cells' text."""
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S):
        cells = [" ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", c)).split())
                 for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        if cells:
            rows[cells[0]] = cells[1:]
    return rows


def _number(text: str) -> float:
    return float("nan") if text == SUPPRESSED else float(text.replace(",", ""))


def test_the_attack_on_the_public_reports_themselves(national):
    """Read every provider's public data quality table and exclusions note and the national report's: the
    subtraction recovers nothing; the confidential reports show the counts in full."""
    _, bundle, providers = national
    imputed, excluded = {}, {}
    for provider in providers:
        ctx = load_context(bundle, "public", provider)
        rows = _cells("".join(str(p) for p in outputs(provider_sections.quality_section(ctx))))
        imputed[provider] = _number(rows["Imputed: ASA grade"][0])
        nat_imputed = _number(rows["Imputed: ASA grade"][1])
        note = "".join(str(p) for p in outputs(measure_sections.exclusions_note(ctx, "ct_before_surgery")))
        text = " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", note)).split())
        parts = dict((reason, count) for count, reason in
                     (re.match(r"(\S+) (.*)", p.strip(" .")).groups() for p in text.split(": ", 1)[1].split("; ")))
        excluded[provider] = _number(parts.get(CT_REASON, SUPPRESSED))
    national_ctx = load_context(bundle, "public")
    note = "".join(str(p) for p in outputs(measure_sections.exclusions_note(national_ctx, "ct_before_surgery")))
    assert f"{sum(CT_BLANKED)} {CT_REASON}" in " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", note)).split())
    assert subtraction_attack(pd.DataFrame({"ct": excluded}), pd.Series({"ct": float(sum(CT_BLANKED))})) == {}
    assert subtraction_attack(pd.DataFrame({"asa": imputed}), pd.Series({"asa": nat_imputed})) == {}
    assert np.isnan(excluded[providers[0]]) and sum(np.isnan(v) for v in excluded.values()) >= 2
    # the national report's completeness table reads the public counts too
    completeness = _cells("".join(str(p) for p in outputs(national_sections.quality_by_provider(national_ctx))))
    assert set(providers) <= set(completeness)
    # confidential: the provider's own counts in full
    local = load_context(bundle, "local", providers[0])
    rows = _cells("".join(str(p) for p in outputs(provider_sections.quality_section(local))))
    note = "".join(str(p) for p in outputs(measure_sections.exclusions_note(local, "ct_before_surgery")))
    assert f"3 {CT_REASON}" in " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", note)).split())
    assert SUPPRESSED not in rows["Imputed: ASA grade"]


def test_public_breakdowns_of_an_audit_without_breakdowns():
    """No risk factor, no exclusion: empty tables of the declared columns, nothing to note."""
    quality = pd.DataFrame({"unit_id": ["national", "A"], "records_submitted": [10, 10], "records_analysed": [10, 10],
                            "records_excluded": [0, 0], "no provider code": [0, 0]})
    out = public_breakdowns(pd.DataFrame(columns=["unit_id", "variable", "category", "n", "share"]), quality,
                            pd.DataFrame(columns=["measure", "unit_id", "reason", "records"]), THRESHOLD)
    assert out.casemix.empty and out.exclusions.empty and out.notes == []
    assert not out.quality["suppressed"].any()


def test_records_excluded_for_one_reason_are_that_reason_in_every_table():
    """With one exclusion reason (procedure outside the period), a provider's records excluded are the reason's
    count, and records submitted minus records analysed give it: all three are hidden together, in the data
    quality table and in each measure's exclusions, and the national count minus the others recovers nothing."""
    reason = "procedure outside the audit period"
    excluded = {"A": 5, "B": 12, "C": 20, "D": 9}
    submitted = {"A": 400, "B": 380, "C": 500, "D": 450}
    units = ["national", *excluded]
    total = {"national": sum(excluded.values()), **excluded}
    sub = {"national": sum(submitted.values()), **submitted}
    quality = pd.DataFrame({"unit_id": units, "records_submitted": [sub[u] for u in units],
                            "records_analysed": [sub[u] - total[u] for u in units],
                            f"excluded: {reason}": [total[u] for u in units],
                            "records_excluded": [total[u] for u in units], "no provider code": 0})
    exclusions = pd.DataFrame({"measure": "m", "unit_id": units, "reason": reason,
                               "records": [total[u] for u in units]})
    out = public_breakdowns(pd.DataFrame(columns=["unit_id", "variable", "category", "n", "share"]), quality,
                            exclusions, THRESHOLD)
    q = out.quality.set_index(["unit_id", "item"])["suppressed"]
    hidden = {u for u in excluded if q[(u, f"excluded: {reason}")]}
    # A's 5 and the next smallest, D's 9, across providers; B's records analysed are the complement of A's across
    # providers (else the national records analysed give A's), so B's excluded go with them
    assert hidden == {"A", "B", "D"}
    for unit in excluded:
        assert q[(unit, "records_excluded")] == (unit in hidden)
        assert q[(unit, "records_analysed")] == (unit in hidden)  # else submitted - analysed gives it
        assert not q[(unit, "records_submitted")]
    ex = out.exclusions.set_index("unit_id")
    assert set(ex.index[ex["suppressed"]]) == hidden and ex.at["national", "records"] == 46
    published = out.quality[out.quality["item"] == f"excluded: {reason}"].set_index("unit_id")["records"]
    assert subtraction_attack(published.drop("national").to_frame("x"), pd.Series({"x": published["national"]})) == {}
    # and before: only A's 5 hidden, 46 - (12 + 20 + 9) = 5
    before = pd.Series(excluded, dtype=float).where(lambda s: s > THRESHOLD).to_frame("x")
    assert subtraction_attack(before, pd.Series({"x": 46.0})) == {("A", "x"): 5.0}
