"""Survival functions against R survival 3.5-3 figures (METHODS.md section 6), lifelines and plain oracles."""

import json

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_lung
from lifelines.statistics import logrank_test, proportional_hazard_test
from oracles import logrank_vs_rest, median_by_scan

from auditreport.stats.survival import (
    CI_TRANSFORMS,
    CoxResult,
    cox_expected,
    cox_oe_by_unit,
    cox_with_baseline,
    fit_cox,
    kaplan_meier,
    logrank_each_vs_rest,
    median_from_km,
    median_survival,
    survival_at,
)


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    d = load_lung()
    # lifelines already recodes R's status (1 = censored, 2 = dead) to 0/1.
    assert set(d["status"].unique()) == {0, 1}
    assert len(d) == 228 and d["status"].sum() == 165
    return d


def test_km_table_shape(lung):
    km = kaplan_meier(lung["time"], lung["status"])
    assert list(km.columns) == ["time", "at_risk", "events", "censored", "survival", "lower", "upper"]
    assert km.iloc[0]["time"] == 0 and km.iloc[0]["survival"] == 1 and km.iloc[0]["at_risk"] == 228
    assert km["events"].sum() == 165 and km["censored"].sum() == 63
    assert (np.diff(km["survival"]) <= 0).all()


@pytest.mark.parametrize("transform", CI_TRANSFORMS)
def test_km_bounds_inside_unit_interval(lung, transform):
    km = kaplan_meier(lung["time"], lung["status"], ci_transform=transform)
    ok = km[["lower", "upper"]].dropna()
    assert ((ok["lower"] >= 0) & (ok["upper"] <= 1) & (ok["lower"] <= ok["upper"])).all()
    assert (km["lower"] <= km["survival"] + 1e-12).all() and (km["survival"] <= km["upper"] + 1e-12).all()


def test_km_matches_lifelines_estimate_and_loglog_ci(lung):
    ours = kaplan_meier(lung["time"], lung["status"], ci_transform="log-log")
    kmf = KaplanMeierFitter().fit(lung["time"], lung["status"])
    np.testing.assert_allclose(ours["time"], kmf.survival_function_.index)
    np.testing.assert_allclose(ours["survival"], kmf.survival_function_.iloc[:, 0], atol=1e-12)
    np.testing.assert_allclose(ours["lower"], kmf.confidence_interval_.iloc[:, 0], atol=1e-12)
    np.testing.assert_allclose(ours["upper"], kmf.confidence_interval_.iloc[:, 1], atol=1e-12)


def test_survival_at_matches_r(lung):
    # R: summary(survfit(Surv(time, status) ~ 1, lung), times = c(180, 365))
    s = survival_at(lung["time"], lung["status"], [180, 365])
    assert round(s.loc[0, "survival"], 3) == 0.722
    assert round(s.loc[1, "survival"], 3) == 0.409
    assert round(s.loc[1, "lower"], 4) == 0.3447
    assert round(s.loc[1, "upper"], 3) == 0.486
    assert list(s["at_risk"]) == [160, 65]


def test_survival_at_edges(lung):
    s = survival_at(lung["time"], lung["status"], [0, 1022, 1023])
    assert s.loc[0, "survival"] == 1.0
    assert s.loc[1, "survival"] == pytest.approx(0.050346, abs=1e-6)  # last follow-up is still estimated
    assert np.isnan(s.loc[2, "survival"]) and s.loc[2, "at_risk"] == 0


def test_right_continuity_and_at_risk():
    s = survival_at([1, 2, 2, 3], [1, 1, 0, 1], [1.999, 2, 2.5])
    np.testing.assert_allclose(s["survival"], [0.75, 0.5, 0.5])
    assert list(s["at_risk"]) == [3, 3, 1]


def test_bad_event_coding_rejected():
    with pytest.raises(ValueError):
        kaplan_meier([1, 2], [1, 2])


@pytest.mark.parametrize("transform, lower, upper", [("log", 285, 363), ("log-log", 284, 361)])
def test_median_matches_r(lung, transform, lower, upper):
    # R: survfit(Surv(time, status) ~ 1, lung, conf.type = transform)
    m = median_survival(lung["time"], lung["status"], ci_transform=transform)
    assert (m["median"], m["lower"], m["upper"]) == (310, lower, upper)
    assert m["convention"] == "r"


def test_median_lifelines_convention_matches_lifelines(lung):
    from lifelines.utils import median_survival_times

    kmf = KaplanMeierFitter().fit(lung["time"], lung["status"])
    m = median_survival(lung["time"], lung["status"], ci_transform="log-log", convention="lifelines")
    ci = median_survival_times(kmf.confidence_interval_)
    assert m["median"] == kmf.median_survival_time_
    assert (m["lower"], m["upper"]) == tuple(ci.iloc[0])


def test_median_conventions_differ_on_flat_half():
    # S = 0.75, 0.5, 0.25, 0: the curve is exactly 0.5 on [2, 3).
    r = median_survival([1, 2, 3, 4], [1, 1, 1, 1], convention="r")
    lf = median_survival([1, 2, 3, 4], [1, 1, 1, 1], convention="lifelines")
    assert r["median"] == 2.5 and lf["median"] == 2.0


def test_median_not_reached_is_nan():
    m = median_survival([1, 2, 3, 4], [1, 0, 0, 0])
    assert np.isnan(m["median"]) and np.isnan(m["upper"])


def test_median_from_km_matches_a_scan_of_the_curve():
    """Random step curves with flat stretches at exactly 0.5, and NaN bands: the R and lifelines readings."""
    rng = np.random.default_rng(6)
    for _ in range(60):
        n = int(rng.integers(2, 12))
        t = rng.integers(1, 30, n).astype(float)
        e = rng.integers(0, 2, n)
        for transform in CI_TRANSFORMS:
            km = kaplan_meier(t, e, ci_transform=transform)
            for convention in ("r", "lifelines"):
                m = median_from_km(km, convention)
                direct = median_survival(t, e, ci_transform=transform, convention=convention)
                for key, col in (("median", "survival"), ("lower", "lower"), ("upper", "upper")):
                    ref = median_by_scan(km["time"], km[col], convention)
                    np.testing.assert_equal(m[key], ref, err_msg=f"{t} {e} {transform} {key}")
                    np.testing.assert_equal(direct[key], ref)


def test_logrank_by_sex_matches_r_and_lifelines(lung):
    # R: survdiff(Surv(time, status) ~ sex, lung): Chisq = 10.3 on 1 df; males O = 112, E = 91.6.
    table = logrank_each_vs_rest(lung["time"], lung["status"], lung["sex"]).set_index("unit_id")
    res = table.loc[1]
    assert round(res["chi2"], 1) == 10.3
    assert res["observed"] == 112 and round(res["expected"], 1) == 91.6
    assert table.loc[2, "chi2"] == pytest.approx(res["chi2"], rel=1e-12)  # two groups: one test, either side
    # Each death is expected somewhere: the women's O and E are the rest of the 165.
    assert table.loc[2, "observed"] == 165 - 112
    assert table.loc[2, "expected"] == pytest.approx(165 - res["expected"], rel=1e-12)
    male = (lung["sex"] == 1).to_numpy()
    ll = logrank_test(lung["time"][male], lung["time"][~male], lung["status"][male], lung["status"][~male])
    assert res["chi2"] == pytest.approx(ll.test_statistic, rel=1e-10)
    assert res["p_value"] == pytest.approx(ll.p_value, rel=1e-8)
    ref = logrank_vs_rest(lung["time"], lung["status"], male)
    assert ref["df"] == 1 and res["chi2"] == pytest.approx(ref["chi2"], rel=1e-12)


def test_logrank_each_vs_rest_matches_event_time_loop():
    """Many units, ties, units without deaths, a one-patient unit: every row equals the oracle's."""
    rng = np.random.default_rng(4)
    t = rng.integers(1, 200, 3000).astype(float)
    e = (rng.random(3000) < 0.6).astype(int)
    units = rng.choice(["a", "b", "c", "d"], 3000, p=[0.5, 0.3, 0.19, 0.01])
    units[:5] = "none"  # a unit whose patients all survive
    e[:5] = 0
    units[5] = "one"
    table = logrank_each_vs_rest(t, e, units).set_index("unit_id")
    assert list(table.index) == sorted(set(units))
    for u in table.index:
        ref = logrank_vs_rest(t, e, units == u)
        for key in ("observed", "expected", "chi2", "p_value"):
            assert table.loc[u, key] == pytest.approx(ref[key], rel=1e-10, abs=1e-12), (u, key)


def test_logrank_needs_two_groups(lung):
    whole = logrank_each_vs_rest(lung["time"], lung["status"], np.zeros(len(lung), dtype=int))
    assert len(whole) == 1 and np.isnan(whole.loc[0, "chi2"]) and np.isnan(whole.loc[0, "p_value"])
    assert whole.loc[0, "observed"] == whole.loc[0, "expected"] == 165
    with pytest.raises(ValueError):
        logrank_vs_rest(lung["time"], lung["status"], np.ones(len(lung), dtype=bool))
    with pytest.raises(ValueError, match="one entry per patient"):
        logrank_each_vs_rest(lung["time"], lung["status"], np.zeros(3))


@pytest.fixture(scope="module")
def cox(lung) -> CoxResult:
    return fit_cox(lung, "time", "status", ["age", "sex"])


def test_cox_matches_r(cox):
    # R: coxph(Surv(time, status) ~ age + sex, lung)  (Efron ties)
    assert round(cox.coef["age"], 6) == 0.017045
    assert round(cox.coef["sex"], 6) == -0.513219
    assert round(cox.log_likelihood, 4) == -742.8482
    assert round(cox.se["sex"], 6) == 0.167458
    assert cox.n == 228 and cox.n_events == 165 and cox.n_dropped == 0
    assert cox.ties == "efron"
    # Likelihood-ratio test 14.12 on 2 df, concordance 0.603 (R prints both).
    assert round(2 * (cox.log_likelihood - cox.log_likelihood_null), 2) == 14.12
    assert round(cox.concordance, 3) == 0.603


def test_cox_ph_test_matches_lifelines_rank(lung, cox):
    cph = CoxPHFitter().fit(lung[["time", "status", "age", "sex"]], "time", "status")
    ref = proportional_hazard_test(cph, lung[["time", "status", "age", "sex"]], time_transform="rank")
    np.testing.assert_allclose(cox.ph_test.loc[["age", "sex"], "chi2"], ref.test_statistic, rtol=1e-4)
    assert cox.ph_test.loc["GLOBAL", "df"] == 2
    assert 0 < cox.ph_test.loc["GLOBAL", "p"] < 1
    assert cox.ph_transform == "rank"


def test_cox_expected_breslow(lung, cox):
    ex = cox_expected(cox, lung, "time")
    # Breslow's estimator makes the national expected deaths equal the observed deaths exactly.
    assert ex.sum() == pytest.approx(lung["status"].sum(), rel=1e-10)
    cph = CoxPHFitter().fit(
        lung[["time", "status", "age", "sex"]],
        "time",
        "status",
        fit_options={"precision": 1e-12, "r_precision": 1e-15},
    )
    ref = np.diag(cph.predict_cumulative_hazard(lung, times=lung["time"].to_numpy()).to_numpy())
    np.testing.assert_allclose(ex, ref, rtol=1e-9)
    # A unit's O/E: one institution.
    unit = lung[lung["inst"] == 1]
    oe = unit["status"].sum() / cox_expected(cox, unit, "time").sum()
    assert 0.5 < oe < 2


def test_cox_result_roundtrip(lung, cox):
    back = CoxResult.from_dict(json.loads(json.dumps(cox.to_dict())))
    np.testing.assert_allclose(cox_expected(back, lung, "time"), cox_expected(cox, lung, "time"))
    pd.testing.assert_frame_equal(back.ph_test, cox.ph_test, check_dtype=False, check_names=False)


def test_cox_drops_missing(lung):
    res = fit_cox(lung, "time", "status", ["age", "sex", "ph.ecog"])
    assert res.n_dropped == 1 and res.n == 227
    ex = cox_expected(res, lung, "time")
    assert np.isnan(ex).sum() == 1


def test_cox_oe_by_unit(lung, cox):
    attributed = lung.dropna(subset=["inst"])
    table = cox_oe_by_unit(cox_expected(cox, attributed, "time"), attributed["status"], attributed["inst"])
    assert table["n"].sum() == 227  # one patient has no institution
    single = lung[lung["inst"] == 1]
    row = table.loc[1.0]
    assert row["observed"] == single["status"].sum()
    assert row["expected"] == pytest.approx(cox_expected(cox, single, "time").sum())
    assert row["oe"] == pytest.approx(row["observed"] / row["expected"])
    # Patients without a unit are left out; one with a missing covariate is left out of O and E and counted.
    ecog = fit_cox(lung, "time", "status", ["age", "sex", "ph.ecog"])
    full = cox_oe_by_unit(cox_expected(ecog, lung, "time"), lung["status"], lung["inst"])
    assert full["n"].sum() + full["n_excluded"].sum() == 227 and full["n_excluded"].sum() == 1
    unit = lung.loc[lung["ph.ecog"].isna(), "inst"].iloc[0]
    kept = lung[(lung["inst"] == unit) & lung["ph.ecog"].notna()]
    assert full.loc[unit, "observed"] == kept["status"].sum()
    assert full.loc[unit, "expected"] == pytest.approx(cox_expected(ecog, kept, "time").sum(), rel=1e-12)


def test_cox_with_baseline_on_a_larger_cohort(lung, cox):
    """Coefficients from a sample, baseline from everyone: national E = O and the fit itself is kept."""
    sample = lung.sample(n=120, random_state=1)
    fitted = fit_cox(sample, "time", "status", ["age", "sex"])
    whole = cox_with_baseline(fitted, lung, "time", "status")
    assert cox_expected(whole, lung, "time").sum() == pytest.approx(lung["status"].sum(), rel=1e-12)
    assert cox_expected(fitted, lung, "time").sum() != pytest.approx(lung["status"].sum(), rel=1e-3)
    pd.testing.assert_series_equal(whole.coef, fitted.coef)
    assert whole.n == 120 and whole.log_likelihood == fitted.log_likelihood
    pd.testing.assert_series_equal(whole.means, lung[["age", "sex"]].astype(float).mean().rename(None))
    # At the full fit's own coefficients, re-estimating on the same cohort gives its baseline back.
    same = cox_with_baseline(cox, lung, "time", "status")
    np.testing.assert_allclose(same.baseline["cumhaz"], cox.baseline["cumhaz"], rtol=1e-14)
