"""Aggregate-data mode: CSV in, intervals/limits/flags CSV and funnel plot out."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import binom, norm, poisson
from statsmodels.stats.proportion import proportion_confint

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
                                 "limit_upper998", "flag", "status", "method"]
    assert set(res.columns) <= set(measures.INDICATOR_COLUMNS) | {"unit", "status"}
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


# ---------------------------------------------------------------- kind "mean"


def _records(seed: int = 8, units: int = 60, spread: float = 0.0):
    """Patient-level lengths of stay in units of different sizes, two units shifted and the others by a random
    effect of SD ``spread``; and the unit table."""
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 250, units)
    n[0] = 1  # a unit of one record: no standard deviation
    shift = rng.normal(0.0, spread, units)
    shift[[3, 7]] = [4.0, -2.5]
    code = np.repeat([f"U{i:03d}" for i in range(units)], n)
    values = rng.gamma(2.0, 3.0, n.sum()) + np.repeat(shift, n)
    frame = pd.DataFrame({"unit": code, "los": values})
    table = frame.groupby("unit", sort=False)["los"].agg(["mean", "std", "count"]).reset_index()
    table.columns = ["unit", "mean_los", "sd_los", "n"]
    return frame, table


def _z_flags(z):
    z95, z998 = norm.ppf(0.975), norm.ppf(0.999)
    return np.select([z > z998, z > z95, z < -z998, z < -z95], ["alarm_high", "alert_high", "alarm_low", "alert_low"],
                     "as_expected").tolist()


def test_mean_with_sd_and_n_against_the_records(tmp_path):
    frame, table = _records()
    src = tmp_path / "los.csv"
    table.to_csv(src, index=False)  # the unit of one record has a blank standard deviation
    res = run_aggregate(src, tmp_path / "out.csv", unit_col="unit", mean_col="mean_los", sd_col="sd_los",
                        n_col="n", direction="lower_is_better", plot_prefix=tmp_path / "los")
    assert res.attrs["kind"] == "mean" and res.attrs["target_kind"] == "national"
    # The target and the funnel's SD are those of every record, recovered from the table alone.
    assert res.attrs["target"] == pytest.approx(frame["los"].mean(), rel=1e-12)
    assert res.attrs["sd"] == pytest.approx(frame["los"].std(ddof=1), rel=1e-12)
    sd, t = frame["los"].std(ddof=1), frame["los"].mean()
    for i, (unit, group) in enumerate(frame.groupby("unit", sort=False)["los"]):
        row = res.iloc[i]
        assert row["unit"] == unit and row["denominator"] == len(group)
        assert row["value"] == pytest.approx(group.mean(), rel=1e-12)
        if len(group) > 1:
            want = stats.t.interval(0.95, len(group) - 1, loc=group.mean(), scale=stats.sem(group))
            assert (row["lower95"], row["upper95"]) == pytest.approx(want, rel=1e-10)
        else:
            assert np.isnan(row["lower95"]) and np.isnan(row["sd"])
        half = norm.ppf(0.999) * sd / np.sqrt(len(group))
        assert (row["limit_lower998"], row["limit_upper998"]) == pytest.approx((t - half, t + half), rel=1e-10)
    z = (res["value"] - t) / (sd / np.sqrt(res["denominator"]))
    assert res["flag"].tolist() == _z_flags(z)
    assert res.set_index("unit").loc["U003", "status"] == "Alarm: worse than expected"
    assert res.set_index("unit").loc["U007", "status"] == "Alarm: better than expected"
    assert "national sd" in res["method"].iat[0] and "t with the unit's standard deviation" in res["method"].iat[0]
    assert (tmp_path / "los.png").stat().st_size > 1000


def test_mean_with_standard_errors_and_a_standard(tmp_path):
    _, table = _records()
    table = table[table["n"] > 1].copy()
    table["se_los"] = table["sd_los"] / np.sqrt(table["n"])
    src = tmp_path / "se.csv"
    table[["unit", "mean_los", "se_los"]].to_csv(src, index=False)
    res = run_aggregate(src, tmp_path / "out.csv", unit_col="unit", mean_col="mean_los", se_col="se_los",
                        direction="higher_is_better", plot_prefix=tmp_path / "se")
    w = 1 / table["se_los"] ** 2
    assert res.attrs["target"] == pytest.approx((w * table["mean_los"]).sum() / w.sum(), rel=1e-12)
    assert "denominator" not in res.columns
    z = (res["value"] - res.attrs["target"]) / res["se"]
    assert res["flag"].tolist() == _z_flags(z)
    np.testing.assert_allclose(res["upper95"], table["mean_los"] + norm.ppf(0.975) * table["se_los"], rtol=1e-12)
    np.testing.assert_allclose(res["limit_upper95"], res.attrs["target"] + norm.ppf(0.975) * res["se"], rtol=1e-12)
    assert res.set_index("unit").loc["U003", "status"] == "Alarm: better than expected"
    standard = run_aggregate(src, tmp_path / "std.csv", unit_col="unit", mean_col="mean_los", se_col="se_los",
                             target=7.0)
    assert standard.attrs["target"] == 7.0 and standard.attrs["target_kind"] == "standard"
    assert standard["flag"].tolist() == _z_flags((standard["value"] - 7.0) / standard["se"])
    # No direction: the side in words.
    assert set(standard["status"]) <= {"Alarm: higher than expected", "Alert: higher than expected", "As expected",
                                       "Alert: lower than expected", "Alarm: lower than expected"}


def test_mean_overdispersion_widens_by_the_winsorised_phi(tmp_path):
    _, table = _records(seed=21, units=80, spread=1.0)
    src = tmp_path / "los.csv"
    table.to_csv(src, index=False)
    kw = dict(unit_col="unit", mean_col="mean_los", sd_col="sd_los", n_col="n")
    plain = run_aggregate(src, tmp_path / "a.csv", **kw)
    od = run_aggregate(src, tmp_path / "b.csv", overdispersion="multiplicative", **kw)
    z = (plain["value"] - plain.attrs["target"]) / (plain.attrs["sd"] / np.sqrt(plain["denominator"]))
    lo, hi = np.quantile(z, [0.1, 0.9])
    phi = np.mean(np.clip(z, lo, hi) ** 2)
    assert od.attrs["overdispersion"]["phi"] == pytest.approx(phi, rel=1e-12) and phi > 1
    np.testing.assert_allclose(od["limit_upper95"] - od["target"],
                               np.sqrt(phi) * (plain["limit_upper95"] - plain["target"]), rtol=1e-12)
    assert od["flag"].tolist() == _z_flags(z / np.sqrt(phi))


def test_mean_options_and_values(tmp_path):
    _, table = _records()
    src = tmp_path / "los.csv"
    table.to_csv(src, index=False)
    kw = dict(unit_col="unit")
    for options, parameters, message in (
            ({"mean_col": "mean_los"}, ("se_col", "sd_col", "n_col"), "standard error column, or the standard"),
            ({"mean_col": "mean_los", "sd_col": "sd_los"}, ("se_col", "sd_col", "n_col"), "number of records"),
            ({"mean_col": "mean_los", "se_col": "sd_los", "sd_col": "sd_los"}, ("se_col", "sd_col"), "not both"),
            ({"mean_col": "mean_los", "se_col": "sd_los", "observed_col": "n"}, ("observed_col",), "not an observed"),
            ({"mean_col": "mean_los", "se_col": "sd_los", "overdispersion": "shmi"}, ("overdispersion",), "ratios"),
            ({"mean_col": "mean_los", "se_col": "sd_los", "method": "exact"}, ("method",), "('normal',)"),
            ({"mean_col": "mean_los", "se_col": "sd_los", "target": float("nan")}, ("target",), "finite"),
            ({"mean_col": "mean_los", "se_col": "sd_los", "direction": "up"}, ("direction",), "direction"),
            ({"kind": "ratio", "denominator_col": "n", "observed_col": "n"}, ("expected_col",), "needs the expected"),
            ({"kind": "mean", "denominator_col": "n", "mean_col": "mean_los", "se_col": "sd_los"},
             ("denominator_col",), "not the denominator"),
            ({"observed_col": "n", "denominator_col": "n", "se_col": "sd_los"}, ("se_col",), "apply to kind 'mean'"),
            ({"kind": "median", "mean_col": "mean_los"}, ("kind",), "kind must be one of"),
            ({"mean_col": "average", "se_col": "sd_los"}, ("mean_col",), "'average' not found")):
        with pytest.raises(AggregateOptionError, match=message) as caught:
            run_aggregate(src, tmp_path / "o.csv", **kw, **options)
        assert caught.value.parameters == parameters, options
    bad = table.astype({"n": float})
    bad.loc[4, "n"] = 2.5
    bad.to_csv(src, index=False)
    with pytest.raises(AggregateInputError, match=r"column 'n' must hold whole numbers >= 1.*data row\(s\) 5"):
        run_aggregate(src, tmp_path / "o.csv", unit_col="unit", mean_col="mean_los", sd_col="sd_los", n_col="n")
    bad = table.copy()
    bad.loc[2, "sd_los"] = None  # blank where n > 1
    bad.to_csv(src, index=False)
    with pytest.raises(AggregateInputError, match=r"column 'sd_los' must be numeric with no blanks.*data row\(s\) 3"):
        run_aggregate(src, tmp_path / "o.csv", unit_col="unit", mean_col="mean_los", sd_col="sd_los", n_col="n")
    bad = table.assign(se=table["sd_los"].fillna(1.0))
    bad.loc[6, "se"] = 0.0
    bad.to_csv(src, index=False)
    with pytest.raises(AggregateInputError, match=r"column 'se' must be > 0 \(a standard error\).*data row\(s\) 7"):
        run_aggregate(src, tmp_path / "o.csv", unit_col="unit", mean_col="mean_los", se_col="se")


def test_proportion_status_by_direction(tmp_path):
    table = _unit_table()
    src = tmp_path / "units.csv"
    table.to_csv(src, index=False)
    kw = dict(unit_col="unit", observed_col="deaths", denominator_col="cases", target=0.2)
    worse = run_aggregate(src, tmp_path / "a.csv", direction="lower_is_better", **kw).set_index("unit")
    better = run_aggregate(src, tmp_path / "b.csv", kind="proportion", direction="higher_is_better",
                           **kw).set_index("unit")
    assert worse.loc["000040", "flag"] == better.loc["000040", "flag"] == "alarm_high"
    assert worse.loc["000040", "status"] == "Alarm: worse than expected"
    assert better.loc["000040", "status"] == "Alarm: better than expected"
    assert worse.loc["000030", "status"] == "Alert: better than expected"
    assert better.loc["000030", "status"] == "Alert: worse than expected"


# ---------------------------------------------------------------- real published tables


def test_nys_cardiac_ratios_reproduce_the_published_comparison(tmp_path):
    """NYS DOH's hospital comparisons (2,757 hospital rows, 2008-2019): O = deaths, E = cases x expected rate.

    NYS flags a hospital whose RAMR interval (Byars', see test_nys_reference.py) excludes the statewide rate,
    which is the O/E interval against 1: ``flag_method="phe"`` (Byars from 10 deaths, exact below) gives every
    published comparison for hospitals with 10 or more deaths, and below 10 differs only where Byars' and the
    exact interval disagree.  The default discrete rule flags only hospitals NYS flags, in the same direction.
    """
    d = pd.read_csv(reference_file("nys_cardiac_surgery_pci_by_hospital_2008on.csv"), dtype={"Facility ID": str})
    hosp = d[d["Comparison Results"] != "Statewide Rate"].copy()
    hosp["unit"] = hosp["Facility ID"] + " " + hosp["Procedure"] + " " + hosp["Year of Hospital Discharge"].astype(str)
    hosp["Expected"] = hosp["Number of Cases"] * hosp["Expected Mortality Rate"] / 100
    src = tmp_path / "nys.csv"
    hosp.to_csv(src, index=False)
    published = hosp["Comparison Results"].map({"Rate significantly higher than Statewide Rate": "high",
                                                "Rate significantly lower than Statewide Rate": "low",
                                                "Rate not different than Statewide Rate": "same"}).to_numpy()
    assert pd.notna(published).all()
    side = {"alarm_high": "high", "alert_high": "high", "as_expected": "same", "alert_low": "low", "alarm_low": "low"}
    kw = dict(unit_col="unit", observed_col="Number of Deaths", expected_col="Expected", direction="lower_is_better")
    phe = run_aggregate(src, tmp_path / "phe.csv", flag_method="phe", **kw)
    ours = phe["flag"].map(side).to_numpy()
    o, e = hosp["Number of Deaths"].to_numpy(float), hosp["Expected"].to_numpy()
    differ = ours != published
    assert not (differ & (o >= 10)).any()
    # Below 10 deaths the differences are where Byars' interval (Breslow & Day, written out) decides otherwise.
    z = norm.ppf(0.975)
    with np.errstate(divide="ignore", invalid="ignore"):
        byars_lo = np.where(o > 0, o * (1 - 1 / (9 * o) - z / (3 * np.sqrt(o))) ** 3, 0.0) / e
    byars_hi = (o + 1) * (1 - 1 / (9 * (o + 1)) + z / (3 * np.sqrt(o + 1))) ** 3 / e
    byars_side = np.where(byars_lo > 1, "high", np.where(byars_hi < 1, "low", "same"))
    assert (byars_side[differ] == published[differ]).all() and differ.sum() <= 5
    # Status words: higher mortality is worse.
    assert set(phe.loc[ours == "high", "status"]) <= {"Alert: worse than expected", "Alarm: worse than expected"}
    discrete = run_aggregate(src, tmp_path / "discrete.csv", **kw)["flag"].map(side).to_numpy()
    assert ((discrete == "same") | (discrete == published)).all()
    assert (discrete != "same").sum() > 100


def _nchda() -> pd.DataFrame:
    return pd.read_csv(reference_file("nchda_paediatric_cardiac_30day_survival_by_hospital.csv"))


def test_nchda_survival_as_a_proportion(tmp_path):
    """NICOR's 30-day survival by hospital (each three-year period): survivors of operations, higher is better."""
    nchda = _nchda()
    for release, table in nchda.groupby("release"):
        src = tmp_path / f"nchda_{release}.csv"
        table.to_csv(src, index=False)
        res = run_aggregate(src, tmp_path / f"out_{release}.csv", unit_col="code", observed_col="n_survivors",
                            denominator_col="n_ops", direction="higher_is_better")
        # The published survival (per cent, 1 dp) is the value; one row of the transcription is 0.1 off its counts.
        off = np.abs(np.round(res["value"].to_numpy() * 100, 1) - table["survival_pct"].to_numpy())
        assert off.max() <= 0.1 + 1e-9 and (off > 1e-9).sum() <= 1
        target = table["n_survivors"].sum() / table["n_ops"].sum()
        assert res.attrs["target"] == pytest.approx(target)
        lo, hi = proportion_confint(table["n_survivors"], table["n_ops"], alpha=0.05, method="wilson")
        np.testing.assert_allclose(res["lower95"], lo, rtol=1e-10)
        np.testing.assert_allclose(res["upper95"], hi, rtol=1e-10)
        # The discrete rule by hand: binomial tails under the pooled survival, and the Wilson-inverted limits.
        k, n = table["n_survivors"].to_numpy(), table["n_ops"].to_numpy()
        low_tail, high_tail = binom.cdf(k, n, target), binom.sf(k - 1, n, target)
        v = k / n
        want = np.select(
            [(high_tail < 0.001) & (v > res["limit_upper998"]), (high_tail < 0.025) & (v > res["limit_upper95"]),
             (low_tail < 0.001) & (v < res["limit_lower998"]), (low_tail < 0.025) & (v < res["limit_lower95"])],
            ["alarm_high", "alert_high", "alarm_low", "alert_low"], "as_expected")
        assert res["flag"].tolist() == want.tolist(), release
        worse = res["flag"].isin(["alarm_low", "alert_low"])
        assert res.loc[worse, "status"].str.endswith("worse than expected").all()


def test_nchda_deaths_against_the_published_predictions(tmp_path):
    """O/E of deaths with E = operations x (1 - PRAiS predicted survival), the last three periods (38 rows).

    NICOR marks a hospital whose survival lies outside its predicted 95% (inner) or 99.8% (outer) range. The
    discrete rule agrees on 36 of 38, and never on the other side: NICOR's ranges come from each child's risk
    (a Poisson-binomial, narrower than the Poisson around E), and the predicted survival is published to 1 dp.
    """
    table = _nchda().dropna(subset=["predicted_pct"]).copy()
    table["unit"] = table["code"] + " " + table["release"].astype(str)
    table["expected_deaths"] = table["n_ops"] * (1 - table["predicted_pct"] / 100)
    src = tmp_path / "nchda.csv"
    table.to_csv(src, index=False)
    res = run_aggregate(src, tmp_path / "out.csv", unit_col="unit", observed_col="n_deaths",
                        expected_col="expected_deaths", direction="lower_is_better")
    s = table["survival_pct"]
    published = np.select([s < table["outer_low_998"], s < table["inner_low_95"], s > table["outer_high_998"],
                           s > table["inner_high_95"]], [2, 1, -2, -1], 0)  # more deaths: positive
    severity = res["flag"].map({"alarm_high": 2, "alert_high": 1, "as_expected": 0, "alert_low": -1,
                                "alarm_low": -2}).to_numpy()
    assert len(res) == 38 and (severity == published).sum() >= 36
    # Where they differ, this rule is the milder by one step, on the same side.
    assert (severity * published >= 0).all() and (np.abs(severity - published) <= 1).all()
    assert (np.abs(severity) <= np.abs(published)).all()
    assert (published != 0).sum() >= 12  # the comparison is not vacuous
    assert set(res.loc[severity < 0, "status"]) <= {"Alert: better than expected", "Alarm: better than expected"}
