"""Aggregate-data mode: CSV in, intervals/limits/flags CSV and funnel plot out."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import poisson

from auditreport.aggregate import AggregateInputError, AggregateOptionError, run_aggregate
from auditreport.analysis import measures
from auditreport.rules.flags import PHE_LABELS
from auditreport.stats.funnel import proportion_limits, ratio_limits
from auditreport.stats.intervals import ratio_interval, wilson
from auditreport.stats.overdispersion import estimate_proportion, estimate_ratio

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
    # Named as indicators.csv names them: the unit's interval, the target, then the funnel limits.
    assert list(res.columns) == ["unit", "observed", "expected", "value", "lower95", "upper95", "lower998",
                                 "upper998", "target", "limit_lower95", "limit_upper95", "limit_lower998",
                                 "limit_upper998", "flag", "method"]
    assert set(res.columns) <= set(measures.INDICATOR_COLUMNS) | {"unit"}
    written = pd.read_csv(out_csv)
    assert written["unit"].tolist() == list("ABCDEF")
    np.testing.assert_allclose(written["value"], LITERAL["deaths"] / LITERAL["expected"])
    lo, hi = ratio_limits(112.0, 0.998)
    assert written.loc[1, "limit_lower998"] == pytest.approx(float(lo))
    assert written.loc[1, "limit_upper998"] == pytest.approx(float(hi))
    lo, hi = ratio_interval(150, 112, 0.95, method="exact")
    assert written.loc[1, "lower95"] == pytest.approx(float(lo)) and written.loc[1, "upper95"] == pytest.approx(float(hi))
    assert (written["target"] == 1.0).all()
    # B: 150 / 112 = 1.34 is above the 99.8% exact limit at E = 112 (1.31), and P(X >= 150 | 112) = 0.0006.
    assert poisson.sf(149, 112) < 0.001
    assert written["flag"].tolist() == ["as_expected", "alarm_high", "as_expected", "as_expected", "as_expected", "as_expected"]
    assert "exact Poisson" in written.loc[0, "method"] and "overdispersion none" in written.loc[0, "method"]
    assert "flag discrete" in written.loc[0, "method"]
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
    assert res.loc[1, "limit_lower95"] == pytest.approx(float(lo))
    assert res.loc[1, "limit_upper95"] == pytest.approx(float(hi))
    lo, hi = wilson(150, 1100, 0.998)
    assert res.loc[1, "lower998"] == pytest.approx(float(lo)) and res.loc[1, "upper998"] == pytest.approx(float(hi))
    assert "denominator" in res.columns and (res["target"] == p0).all()
    res2 = run_aggregate(literal_csv, tmp_path / "p2.csv", unit_col="unit", observed_col="deaths",
                         denominator_col="cases", target=0.1, method="exact", overdispersion="multiplicative")
    assert res2.attrs["target"] == 0.1 and "exact binomial" in res2.loc[0, "method"]
    assert (tmp_path / "prop.svg").exists()


def test_errors(tmp_path, literal_csv):
    kw = dict(unit_col="unit", observed_col="deaths")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        run_aggregate(tmp_path / "nope.csv", tmp_path / "o.csv", expected_col="expected", **kw)
    # Options: each error names the parameter it is about.
    for options, parameter, message in (
            ({"expected_col": "E"}, "expected_col", r"'E' not found in .*units\.csv"),
            ({"expected_col": "expected", "denominator_col": "cases"}, ("expected_col", "denominator_col"),
             "exactly one"),
            ({"denominator_col": "cases", "overdispersion": "shmi"}, "overdispersion", "shmi"),
            ({"expected_col": "expected", "method": "wilson"}, "method", "method"),
            ({"expected_col": "expected", "flag_method": "spc"}, "flag_method", "flag method"),
            ({"expected_col": "expected", "target": 0.0}, "target", "target ratio must be > 0"),
            ({"denominator_col": "cases", "target": 20.0}, "target", "strictly between 0 and 1")):
        with pytest.raises(AggregateOptionError, match=message) as caught:
            run_aggregate(literal_csv, tmp_path / "o.csv", **kw, **options)
        assert caught.value.parameters == (parameter if isinstance(parameter, tuple) else (parameter,))
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
    # The discrete rule: an alarm where both the value is above the 99.8% limit and P(X >= O | E) < 0.001;
    # the limits alone (FunnelPlotR) call an alarm on the value alone.
    lo, hi = ratio_limits(res["expected"], 0.998)
    tail = poisson.sf(res["observed"] - 1, res["expected"])
    assert ((res["flag"] == "alarm_high") == ((res["value"] > hi) & (tail < 0.001))).all()
    assert (res["flag"] != "as_expected").any()
    by_limits = run_aggregate(inp, tmp_path / "cabg_limits.csv", unit_col="Hospital", observed_col="Deaths",
                              expected_col="Expected", flag_method="limits")
    assert ((by_limits["flag"] == "alarm_high") == (by_limits["value"] > hi)).all()
    assert (tmp_path / "cabg.png").exists() and (tmp_path / "cabg.svg").exists()
    od = run_aggregate(inp, tmp_path / "cabg_od.csv", unit_col="Hospital", observed_col="Deaths",
                       expected_col="Expected", overdispersion="additive")
    # Over-dispersion can only widen the funnel, so it cannot add flags.
    assert (od["flag"] != "as_expected").sum() <= (res["flag"] != "as_expected").sum()


def test_phe_prop_inputs_proportion_mode(tmp_path):
    path = reference_file("phe_testdata_funnel_prop_inputs.csv")
    want = pd.read_csv(path, encoding="utf-8-sig")["significance"].map(PHE_LABELS)
    for flag_method in ("phe", "limits"):
        res = run_aggregate(path, tmp_path / "phe_out.csv", unit_col="Area", observed_col="numerator",
                            denominator_col="denominator", flag_method=flag_method,
                            plot_prefix=tmp_path / "phe" if flag_method == "phe" else None)
        assert len(res) == 303
        assert (res["flag"].to_numpy() == want.to_numpy()).all(), flag_method
        assert res.attrs["target"] * 100 == pytest.approx(80.642448, abs=1e-6)
    # PHE's test numerators are not whole numbers: the discrete rule, which needs counts, says so.
    with pytest.raises(AggregateInputError, match=r"'numerator' must hold whole numbers.*data row\(s\) 1"):
        run_aggregate(path, tmp_path / "phe_out.csv", unit_col="Area", observed_col="numerator",
                      denominator_col="denominator")


def _unit_table() -> pd.DataFrame:
    """Units around a 20% rate: METHODS' examples (0 of 30, 3 of 3 with code 030001, 20 of 40) and 40 others."""
    rng = np.random.default_rng(2024)
    cases = rng.integers(20, 400, 40)
    deaths = rng.binomial(cases, 0.2 * rng.lognormal(0, 0.35, 40))
    table = pd.DataFrame({"unit": ["000030", "030001", "000040"] + [f"{i:06d}" for i in range(100, 140)],
                          "cases": np.r_[30, 3, 40, cases], "deaths": np.r_[0, 3, 20, deaths]})
    # Expected deaths as a risk model would give them (they need not be cases x the rate).
    table["expected"] = table["cases"] * 0.2 * rng.uniform(0.8, 1.25, len(table))
    return table


@pytest.mark.parametrize("overdispersion", ["none", "multiplicative"])
def test_same_flags_as_the_national_stage(tmp_path, overdispersion):
    """One unit table through aggregate mode and through the national stage's indicator functions."""
    table = _unit_table()
    src = tmp_path / "units.csv"
    table.to_csv(src, index=False)
    totals = table.set_index("unit").rename(columns={"deaths": "observed"})[["cases", "observed", "expected"]]
    rate = table["deaths"].sum() / table["cases"].sum()
    o, n, e = (totals[c].to_numpy(float) for c in ("observed", "cases", "expected"))

    national = measures.rate_statistics(totals, rate, estimate_proportion(o, n, rate, overdispersion))
    agg = run_aggregate(src, tmp_path / "p.csv", unit_col="unit", observed_col="deaths", denominator_col="cases",
                        overdispersion=overdispersion)
    assert agg.attrs["target"] == rate
    assert agg["unit"].tolist() == national["unit_id"].tolist()
    assert agg["flag"].tolist() == national["flag"].tolist()
    assert national["flag"].nunique() >= 3
    for col in ("value", "lower95", "upper95", "lower998", "upper998", "target", "limit_lower95", "limit_upper95",
                "limit_lower998", "limit_upper998"):
        np.testing.assert_allclose(agg[col], national[col], rtol=1e-12, err_msg=col)

    national = measures.oe_statistics(totals, estimate_ratio(o, e, overdispersion))
    agg = run_aggregate(src, tmp_path / "r.csv", unit_col="unit", observed_col="deaths", expected_col="expected",
                        overdispersion=overdispersion)
    assert agg["flag"].tolist() == national["flag"].tolist()
    assert (national["flag"] != "as_expected").any()
    for col in ("value", "lower95", "upper95", "lower998", "upper998", "target", "limit_lower95", "limit_upper95",
                "limit_lower998", "limit_upper998"):
        np.testing.assert_allclose(agg[col], national[col], rtol=1e-12, err_msg=col)


def test_three_of_three_at_20_percent_is_an_alert_not_an_alarm(tmp_path):
    table = _unit_table()
    src = tmp_path / "units.csv"
    table.to_csv(src, index=False)
    totals = table.set_index("unit").rename(columns={"deaths": "observed"})[["cases", "observed", "expected"]]
    national = measures.rate_statistics(totals, 0.2, None).set_index("unit_id")["flag"]
    flags = {}
    for method in ("discrete", "limits", "phe"):
        res = run_aggregate(src, tmp_path / f"{method}.csv", unit_col="unit", observed_col="deaths",
                            denominator_col="cases", target=0.2, flag_method=method)
        flags[method] = res.set_index("unit")["flag"]
    assert flags["discrete"]["030001"] == national["030001"] == "alert_high"  # P(3 of 3 | 20%) = 0.008
    assert flags["discrete"]["000030"] == national["000030"] == "alert_low"  # P(0 of 30 | 20%) = 0.00124
    assert flags["discrete"]["000040"] == national["000040"] == "alarm_high"  # P(>= 20 of 40 | 20%) = 2.2e-05
    # The smooth limits and PHE's Wilson intervals alone make 3 of 3 an alarm.
    assert flags["limits"]["030001"] == flags["phe"]["030001"] == "alarm_high"


def test_unit_codes_stay_text(tmp_path):
    """Codes with leading zeros, and a unit called NA, survive: returned table, CSV output and plot labels."""
    table = _unit_table()
    table.loc[3, "unit"] = "NA"
    src = tmp_path / "units.csv"
    table.to_csv(src, index=False)
    res = run_aggregate(src, tmp_path / "out.csv", unit_col="unit", observed_col="deaths", denominator_col="cases",
                        target=0.2, plot_prefix=tmp_path / "funnel")
    assert res["unit"].tolist() == table["unit"].tolist()
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == table["unit"].tolist()
    # Flagged units are labelled on the plot; the SVG keeps each label's text.
    svg = (tmp_path / "funnel.svg").read_text()
    flagged = res.loc[res["flag"] != "as_expected", "unit"]
    assert "030001" in flagged.tolist() and "000030" in flagged.tolist()
    for code in flagged:
        assert f"<!-- {code} -->" in svg, code
    assert "<!-- 30001 -->" not in svg and "<!-- 30 -->" not in svg


def test_discrete_rule_needs_counts(tmp_path):
    table = _unit_table()
    table["deaths"] = table["deaths"].astype(float)
    table.loc[4, "deaths"] += 0.5
    src = tmp_path / "units.csv"
    table.to_csv(src, index=False)
    kw = dict(unit_col="unit", observed_col="deaths", expected_col="expected")
    with pytest.raises(AggregateInputError, match=r"units\.csv: column 'deaths' must hold whole numbers.*row\(s\) 5"):
        run_aggregate(src, tmp_path / "o.csv", **kw)
    assert len(run_aggregate(src, tmp_path / "o.csv", flag_method="limits", **kw)) == len(table)
