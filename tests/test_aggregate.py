"""Aggregate-data mode: CSV in, limits/flags CSV and funnel plot out."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from auditreport.aggregate import AggregateInputError, run_aggregate
from auditreport.rules.flags import PHE_LABELS
from auditreport.stats.funnel import proportion_limits, ratio_limits

from _stats_shared import reference_file

LITERAL = pd.DataFrame(
    {
        "unit": ["A", "B", "C", "D", "E", "F"],
        "deaths": [100, 150, 180, 80, 120, 225],
        "expected": [108, 112, 165, 95, 100, 220],
        "cases": [1000, 1100, 1500, 900, 1000, 2000],
    }
)


@pytest.fixture
def literal_csv(tmp_path: Path) -> Path:
    p = tmp_path / "units.csv"
    LITERAL.to_csv(p, index=False)
    return p


def test_literal_ratio(tmp_path, literal_csv):
    out_csv = tmp_path / "out" / "ratio.csv"
    res = run_aggregate(literal_csv, out_csv, unit_col="unit", observed_col="deaths", expected_col="expected",
                        plot_prefix=tmp_path / "plots" / "ratio")
    assert list(res.columns) == ["unit", "observed", "expected", "value", "lower95", "upper95", "lower998",
                                 "upper998", "flag", "method"]
    written = pd.read_csv(out_csv)
    assert written["unit"].tolist() == list("ABCDEF")
    np.testing.assert_allclose(written["value"], LITERAL["deaths"] / LITERAL["expected"])
    lo, hi = ratio_limits(112.0, 0.998)
    assert written.loc[1, "lower998"] == pytest.approx(float(lo)) and written.loc[1, "upper998"] == pytest.approx(float(hi))
    # B: 150 / 112 = 1.34 is above the 99.8% exact limit at E = 112 (1.31).
    assert written["flag"].tolist() == ["as_expected", "alarm_high", "as_expected", "as_expected", "as_expected", "as_expected"]
    assert "exact Poisson" in written.loc[0, "method"] and "overdispersion none" in written.loc[0, "method"]
    for ext in ("png", "svg"):
        assert (tmp_path / "plots" / f"ratio.{ext}").stat().st_size > 1000


def test_literal_ratio_shmi(tmp_path, literal_csv):
    res = run_aggregate(literal_csv, tmp_path / "o.csv", unit_col="unit", observed_col="deaths",
                        expected_col="expected", overdispersion="shmi")
    assert res.attrs["overdispersion"]["phi"] == pytest.approx(2.948033, rel=1e-6)
    assert (res["flag"] == "as_expected").all()  # the random-effects funnel absorbs B
    assert "phi 2.948" in res.loc[0, "method"]


def test_literal_proportion(tmp_path, literal_csv):
    res = run_aggregate(literal_csv, tmp_path / "p.csv", unit_col="unit", observed_col="deaths",
                        denominator_col="cases", plot_prefix=tmp_path / "prop")
    p0 = LITERAL["deaths"].sum() / LITERAL["cases"].sum()
    assert res.attrs["target"] == pytest.approx(p0)
    lo, hi = proportion_limits(p0, 1100, 0.95)
    assert res.loc[1, "lower95"] == pytest.approx(float(lo)) and res.loc[1, "upper95"] == pytest.approx(float(hi))
    assert "denominator" in res.columns
    res2 = run_aggregate(literal_csv, tmp_path / "p2.csv", unit_col="unit", observed_col="deaths",
                         denominator_col="cases", target=0.1, method="exact", overdispersion="multiplicative")
    assert res2.attrs["target"] == 0.1 and "exact binomial" in res2.loc[0, "method"]
    assert (tmp_path / "prop.svg").exists()


def test_errors(tmp_path, literal_csv):
    kw = dict(unit_col="unit", observed_col="deaths")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        run_aggregate(tmp_path / "nope.csv", tmp_path / "o.csv", expected_col="expected", **kw)
    with pytest.raises(AggregateInputError, match=r"units\.csv.*'E'.*not found"):
        run_aggregate(literal_csv, tmp_path / "o.csv", expected_col="E", **kw)
    with pytest.raises(ValueError, match="exactly one"):
        run_aggregate(literal_csv, tmp_path / "o.csv", expected_col="expected", denominator_col="cases", **kw)
    with pytest.raises(ValueError, match="shmi"):
        run_aggregate(literal_csv, tmp_path / "o.csv", denominator_col="cases", overdispersion="shmi", **kw)
    with pytest.raises(ValueError, match="method"):
        run_aggregate(literal_csv, tmp_path / "o.csv", expected_col="expected", method="wilson", **kw)
    bad = LITERAL.copy().astype(object)
    bad.loc[2, "expected"] = "n/a"
    bad.loc[4, "deaths"] = -1
    p = tmp_path / "bad.csv"
    bad.to_csv(p, index=False)
    with pytest.raises(AggregateInputError, match=r"bad\.csv: column 'expected' must be numeric.*data row\(s\) 3"):
        run_aggregate(p, tmp_path / "o.csv", expected_col="expected", **kw)
    with pytest.raises(AggregateInputError, match=r"column 'deaths' must be >= 0.*data row\(s\) 5"):
        run_aggregate(p, tmp_path / "o.csv", denominator_col="cases", **kw)
    dup = LITERAL.copy()
    dup.loc[5, "unit"] = "A"
    dup.to_csv(p, index=False)
    with pytest.raises(AggregateInputError, match="one row per unit"):
        run_aggregate(p, tmp_path / "o.csv", expected_col="expected", **kw)
    over = LITERAL.copy()
    over.loc[0, "cases"] = 50
    over.to_csv(p, index=False)
    with pytest.raises(AggregateInputError, match="exceeds 'cases'"):
        run_aggregate(p, tmp_path / "o.csv", denominator_col="cases", **kw)


def test_ny_cabg_ratio_mode(tmp_path):
    src = pd.read_csv(reference_file("ny_cabg_hospitals_03.csv"))
    assert len(src) == 37
    src["Expected"] = src["Cases"] * src["EMR"] / 100
    inp = tmp_path / "cabg.csv"
    src.to_csv(inp, index=False)
    res = run_aggregate(inp, tmp_path / "cabg_out.csv", unit_col="Hospital", observed_col="Deaths",
                        expected_col="Expected", plot_prefix=tmp_path / "cabg")
    assert len(res) == 37
    np.testing.assert_allclose(res["value"], src["Deaths"] / src["Expected"])
    # O/E x statewide rate is the published RAMR; the implied statewide rate is common to all hospitals.
    implied = src["RAMR"] / res["value"]
    assert implied.std() / implied.mean() < 0.02
    lo, hi = ratio_limits(res["expected"], 0.998)
    assert ((res["flag"] == "alarm_high") == (res["value"] > hi)).all()
    assert (tmp_path / "cabg.png").exists() and (tmp_path / "cabg.svg").exists()
    od = run_aggregate(inp, tmp_path / "cabg_od.csv", unit_col="Hospital", observed_col="Deaths",
                       expected_col="Expected", overdispersion="additive")
    # Over-dispersion can only widen the funnel, so it cannot add flags.
    assert (od["flag"] != "as_expected").sum() <= (res["flag"] != "as_expected").sum()


def test_phe_prop_inputs_proportion_mode(tmp_path):
    path = reference_file("phe_testdata_funnel_prop_inputs.csv")
    res = run_aggregate(path, tmp_path / "phe_out.csv", unit_col="Area", observed_col="numerator",
                        denominator_col="denominator", plot_prefix=tmp_path / "phe")
    want = pd.read_csv(path, encoding="utf-8-sig")["significance"].map(PHE_LABELS)
    assert len(res) == 303
    assert (res["flag"].to_numpy() == want.to_numpy()).all()
    assert res.attrs["target"] * 100 == pytest.approx(80.642448, abs=1e-6)
