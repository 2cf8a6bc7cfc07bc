"""Tests for auditreport.stats.riskmodel (METHODS.md section 5)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy.special import expit

from auditreport.stats.intervals import Z95, wilson
from auditreport.stats.riskmodel import (
    MISSING_LEVEL,
    RiskFactor,
    RiskModel,
    _auc_delong,
    _auc_se_hanley_mcneil,
    calibration_table,
    coefficient_table,
    design_matrix,
    fit_log_glm,
    fit_logistic,
    fixed_model,
    imputation_values,
    impute_missing,
    model_performance,
    term_names,
)

FACTORS = (
    RiskFactor("age", "numeric"),
    RiskFactor("sex", "categorical", ("F", "M")),
    RiskFactor("asa", "categorical", ("1", "2", "3", "4"), reference="1"),
    RiskFactor("urgency", "categorical", ("elective", "urgent", "emergency")),
)
TRUE = {
    "Intercept": -7.5,
    "age": 0.05,
    "sex[M]": 0.3,
    "asa[2]": 0.4,
    "asa[3]": 0.9,
    "asa[4]": 1.5,
    "urgency[urgent]": 0.5,
    "urgency[emergency]": 1.2,
}


def simulate(n: int, seed: int, coef: dict[str, float] = TRUE) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(68, 10, n).round(),
            "sex": rng.choice(["F", "M"], n, p=[0.35, 0.65]),
            # Integer codes, as a CSV loader would give, to exercise the compare-as-strings rule.
            "asa": rng.choice([1, 2, 3, 4], n, p=[0.15, 0.4, 0.35, 0.1]),
            "urgency": rng.choice(["elective", "urgent", "emergency"], n, p=[0.6, 0.3, 0.1]),
        }
    )
    X = design_matrix(df, FACTORS)
    beta = np.array([coef[t] for t in term_names(FACTORS)])
    df["outcome"] = (rng.random(n) < expit(X @ beta)).astype(float)
    return df


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return simulate(40_000, seed=20240601)


@pytest.fixture(scope="module")
def model(data: pd.DataFrame) -> RiskModel:
    return fit_logistic(data, FACTORS)


def test_term_names():
    assert term_names(FACTORS) == list(TRUE)


def test_recovers_known_coefficients(model: RiskModel):
    assert model.kind == "fitted"
    assert list(model.coefficients.index) == list(TRUE)
    for term, value in TRUE.items():
        # Within 4 standard errors of the truth (the seed is fixed, so this is deterministic).
        assert abs(model.coefficients[term] - value) < 4 * model.std_errors[term], term
    assert model.n == 40_000
    assert model.converged


def test_matches_statsmodels_formula_api(data: pd.DataFrame, model: RiskModel):
    d = data.assign(asa=data["asa"].astype(str))
    ref = smf.glm(
        "outcome ~ age + C(sex, Treatment('F')) + C(asa, Treatment('1'))"
        " + C(urgency, Treatment('elective'), levels=['elective', 'urgent', 'emergency'])",
        data=d,
        family=sm.families.Binomial(),
    ).fit(tol=1e-14)
    # patsy puts numeric terms after categorical ones and spells levels "C(x, ...)[T.level]".
    order = []
    for term in model.coefficients.index:
        if "[" in term:
            name, level = term.rstrip("]").split("[")
            order.append(
                next(t for t in ref.params.index if t.startswith(f"C({name},") and t.endswith(f"[T.{level}]"))
            )
        else:
            order.append(term)
    np.testing.assert_allclose(model.coefficients.to_numpy(), ref.params[order].to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.std_errors.to_numpy(), ref.bse[order].to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        model.conf_int.to_numpy(), ref.conf_int().loc[order].to_numpy(), rtol=0, atol=1e-8
    )
    np.testing.assert_allclose(model.predict(data), ref.fittedvalues.to_numpy(), rtol=0, atol=1e-10)


def test_predict_is_probability_of_linear_predictor(data: pd.DataFrame, model: RiskModel):
    lp = model.linear_predictor(data.head(50))
    np.testing.assert_allclose(model.predict(data.head(50)), 1 / (1 + np.exp(-lp)))


def test_unknown_category_names_factor_and_level(model: RiskModel, data: pd.DataFrame):
    bad = data.head(5).copy()
    bad.loc[bad.index[2], "urgency"] = "salvage"
    with pytest.raises(ValueError, match=r"urgency.*'salvage'"):
        model.predict(bad)


def test_missing_value_at_predict_is_an_error(model: RiskModel, data: pd.DataFrame):
    bad = data.head(5).copy()
    bad.loc[bad.index[0], "age"] = np.nan
    with pytest.raises(ValueError, match=r"'age'.*missing"):
        model.predict(bad)


def test_round_trip_through_json(model: RiskModel, data: pd.DataFrame):
    text = json.dumps(model.to_dict(), allow_nan=False)
    back = RiskModel.from_dict(json.loads(text))
    assert back.kind == model.kind and back.factors == model.factors
    pd.testing.assert_series_equal(back.coefficients, model.coefficients)
    pd.testing.assert_series_equal(back.std_errors, model.std_errors)
    assert np.array_equal(back.predict(data), model.predict(data))


def test_fixed_model_predicts_published_coefficients(data: pd.DataFrame):
    m = fixed_model(TRUE, FACTORS)
    assert m.kind == "fixed" and m.std_errors is None
    X = design_matrix(data, FACTORS)
    np.testing.assert_allclose(m.predict(data), expit(X @ np.array(list(TRUE.values()))))


def test_fixed_model_rejects_wrong_terms():
    with pytest.raises(ValueError, match="asa\\[4\\]"):
        fixed_model({k: v for k, v in TRUE.items() if k != "asa[4]"}, FACTORS)


def test_categorical_floats_match_string_levels():
    f = (RiskFactor("asa", "categorical", ("1", "2", "3")),)
    df = pd.DataFrame({"asa": [1.0, 2.0, 3.0, np.nan]})
    imputed, flags = impute_missing(df, f)
    assert list(imputed["asa"]) == ["1", "2", "3", "1"]
    assert list(flags["asa"]) == [False, False, False, True]


# ---------------------------------------------------------------------------------------------------------------
# Missing values


MISSING_FACTORS = (
    RiskFactor("age", "numeric", missing="median"),
    RiskFactor("creat", "numeric", missing="reference", reference="80"),
    RiskFactor("bmi", "numeric", missing="missing_indicator"),
    RiskFactor("lvef", "categorical", ("good", "moderate", "poor"), missing="reference"),
    RiskFactor("nyha", "categorical", ("1", "2", "3", "4"), reference="2", missing="reference"),
    RiskFactor("smoker", "categorical", ("no", "ex", "current"), missing="missing_indicator"),
    RiskFactor("diabetes", "categorical", ("no", "yes"), missing="exclude"),
)


@pytest.fixture
def messy() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [60.0, np.nan, 70.0, 80.0, np.nan],
            "creat": [100.0, np.nan, 90.0, np.nan, 120.0],
            "bmi": [np.nan, 30.0, 25.0, 20.0, np.nan],
            "lvef": ["poor", None, "good", "", "moderate"],
            "nyha": [3, np.nan, 4, 1, np.nan],
            "smoker": ["no", "current", None, "ex", np.nan],
            "diabetes": ["yes", "no", None, "no", "yes"],
            "outcome": [1.0, 0.0, 0.0, 1.0, 0.0],
        },
        index=[10, 11, 12, 13, 14],
    )


def test_missing_rules_impute_and_count(messy: pd.DataFrame):
    data, flags = impute_missing(messy, MISSING_FACTORS)
    assert list(flags.columns) == [f.name for f in MISSING_FACTORS] + ["excluded"]
    assert flags.index.equals(messy.index)
    counts = flags.sum().to_dict()
    assert counts == {
        "age": 2,
        "creat": 2,
        "bmi": 2,
        "lvef": 2,
        "nyha": 2,
        "smoker": 2,
        "diabetes": 1,
        "excluded": 1,
    }
    # The row with diabetes missing is dropped from the data and flagged.
    assert list(data.index) == [10, 11, 13, 14]
    assert flags.loc[12, "excluded"] and not flags["excluded"].drop(12).any()
    # median of observed 60, 70, 80
    assert data.loc[11, "age"] == 70.0 and data.loc[14, "age"] == 70.0
    assert data.loc[11, "creat"] == 80.0 and data.loc[13, "creat"] == 80.0
    # missing indicator: median of 30, 25, 20 plus the 0/1 column
    assert data.loc[10, "bmi"] == 25.0 and data.loc[14, "bmi"] == 25.0
    assert list(data[f"bmi[{MISSING_LEVEL}]"]) == [1.0, 0.0, 0.0, 1.0]
    # categorical reference: first level by default, the configured one otherwise; blanks count as missing
    assert list(data["lvef"]) == ["poor", "good", "good", "moderate"]
    assert list(data["nyha"]) == ["3", "2", "1", "2"]
    assert list(data["smoker"]) == ["no", "current", "ex", MISSING_LEVEL]
    # The input is not modified.
    assert messy["age"].isna().sum() == 2


def test_imputed_data_fits_and_predicts_with_missing_terms(messy: pd.DataFrame):
    data, _ = impute_missing(messy, MISSING_FACTORS)
    X = design_matrix(data, MISSING_FACTORS)
    assert X.shape == (4, len(term_names(MISSING_FACTORS)))
    assert "bmi[Missing]" in term_names(MISSING_FACTORS)
    assert "smoker[Missing]" in term_names(MISSING_FACTORS)
    assert "nyha[2]" not in term_names(MISSING_FACTORS) and "nyha[1]" in term_names(MISSING_FACTORS)


def test_national_fill_values_are_reused_for_a_unit(messy: pd.DataFrame):
    national = imputation_values(messy, MISSING_FACTORS)
    assert national == {"age": 70.0, "creat": 80.0, "bmi": 25.0}
    unit = messy.loc[[10, 11]]
    data, _ = impute_missing(unit, MISSING_FACTORS, national)
    # The unit's own observed median age would be 60; the national 70 is used.
    assert data.loc[11, "age"] == 70.0


def test_factor_validation():
    with pytest.raises(ValueError, match="numeric factors only"):
        RiskFactor("sex", "categorical", ("F", "M"), missing="median")
    with pytest.raises(ValueError, match="reference"):
        RiskFactor("sex", "categorical", ("F", "M"), reference="X")
    with pytest.raises(ValueError, match="kind"):
        RiskFactor("sex", "binary")
    assert RiskFactor("asa", "categorical", [1, 2, 3]).categories == ("1", "2", "3")


def test_centred_factor_changes_intercept_not_predictions(data: pd.DataFrame, model: RiskModel):
    centred = (RiskFactor("age", "numeric", transform="centre"), *FACTORS[1:])
    m = fit_logistic(data, centred)
    assert m.centres["age"] == pytest.approx(data["age"].mean())
    np.testing.assert_allclose(m.predict(data), model.predict(data), rtol=1e-9)
    assert m.coefficients["age"] == pytest.approx(model.coefficients["age"], rel=1e-9)
    back = RiskModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert np.array_equal(back.predict(data), m.predict(data))


# ---------------------------------------------------------------------------------------------------------------
# Recalibration


def test_intercept_recalibration_fixes_miscalibrated_model(data: pd.DataFrame):
    wrong = dict(TRUE, Intercept=TRUE["Intercept"] + 1.0)  # predicts about e times the odds
    before = fixed_model(wrong, FACTORS)
    y = data["outcome"].to_numpy()
    assert before.predict(data).sum() > 2.2 * y.sum()
    m = fixed_model(wrong, FACTORS, recalibrate="intercept", df=data)
    assert m.kind == "fixed_recalibrated"
    assert m.recalibration["slope"] == 1.0
    assert m.recalibration["intercept"] == pytest.approx(-1.0, abs=0.1)
    assert m.recalibration["published_coefficients"] == wrong
    # Maximum likelihood with an intercept makes expected equal observed exactly (score equation).
    assert m.predict(data).sum() == pytest.approx(y.sum(), rel=1e-8)
    perf = model_performance(m.predict(data), y)
    assert perf["calibration_in_the_large"] == pytest.approx(0.0, abs=1e-6)
    # Non-intercept coefficients are untouched.
    assert m.coefficients.drop("Intercept").to_dict() == pytest.approx(
        {k: v for k, v in wrong.items() if k != "Intercept"}
    )


def test_intercept_slope_recalibration_fixes_overfitted_model(data: pd.DataFrame):
    # Published coefficients twice the truth: predictions too extreme, calibration slope about 1/2.
    wrong = {k: (2 * v if k != "Intercept" else v) for k, v in TRUE.items()}
    wrong["Intercept"] = -12.0
    y = data["outcome"].to_numpy()
    assert model_performance(fixed_model(wrong, FACTORS).predict(data), y)["calibration_slope"] < 0.6
    m = fixed_model(wrong, FACTORS, recalibrate="intercept_slope", df=data)
    assert m.recalibration["slope"] == pytest.approx(0.5, abs=0.06)
    perf = model_performance(m.predict(data), y)
    assert perf["calibration_slope"] == pytest.approx(1.0, abs=1e-6)
    assert perf["calibration_in_the_large"] == pytest.approx(0.0, abs=1e-6)
    assert m.predict(data).sum() == pytest.approx(y.sum(), rel=1e-8)
    back = RiskModel.from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False)))
    assert np.array_equal(back.predict(data), m.predict(data))
    assert back.recalibration == m.recalibration


def test_recalibration_needs_data():
    with pytest.raises(ValueError, match="df"):
        fixed_model(TRUE, FACTORS, recalibrate="intercept")


# ---------------------------------------------------------------------------------------------------------------
# Performance


def brute_force_auc(p: np.ndarray, y: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def brute_force_delong_se(p: np.ndarray, y: np.ndarray) -> float:
    # DeLong et al. 1988, eqs. for the structural components V10, V01 written out pairwise.
    pos, neg = p[y == 1], p[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = psi.mean()
    s10 = ((v10 - auc) ** 2).sum() / (pos.size - 1)
    s01 = ((v01 - auc) ** 2).sum() / (neg.size - 1)
    return float(np.sqrt(s10 / pos.size + s01 / neg.size))


def test_c_statistic_against_brute_force():
    rng = np.random.default_rng(7)
    y = (rng.random(300) < 0.3).astype(float)
    # Rounded to force ties between events and non-events.
    p = np.round(expit(rng.normal(-1, 1, 300) + y), 2)
    auc, se = _auc_delong(p, y)
    assert auc == pytest.approx(brute_force_auc(p, y), abs=1e-12)
    assert se == pytest.approx(brute_force_delong_se(p, y), abs=1e-12)


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.PerfectSeparationWarning")
def test_c_statistic_known_values():
    y = np.array([0, 0, 0, 1, 1], dtype=float)
    assert model_performance([0.1, 0.2, 0.3, 0.8, 0.9], y)["c_statistic"] == 1.0
    assert model_performance([0.9, 0.8, 0.7, 0.2, 0.1], y)["c_statistic"] == 0.0
    assert model_performance([0.5] * 5, y)["c_statistic"] == 0.5
    rng = np.random.default_rng(3)
    yr = (rng.random(20_000) < 0.2).astype(float)
    perf = model_performance(rng.random(20_000), yr)
    assert perf["c_statistic"] == pytest.approx(0.5, abs=0.02)
    assert perf["c_lower"] < 0.5 < perf["c_upper"]


# Hanley & McNeil, Radiology 1982;143:29-36, Table I: CT ratings (1 definitely normal ... 5 definitely abnormal)
# of 58 patients without and 51 with disease; the paper gives area 0.893 and standard error 0.032.
HM_NORMAL = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
HM_ABNORMAL = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])


def test_hanley_mcneil_published_example():
    p = np.concatenate([HM_NORMAL, HM_ABNORMAL]) / 6.0
    y = np.r_[np.zeros(58), np.ones(51)]
    perf = model_performance(p, y, c_ci="hanley_mcneil")
    assert round(perf["c_statistic"], 3) == 0.893
    assert round(perf["c_se"], 3) == 0.032
    assert _auc_se_hanley_mcneil(0.8931710615280595, 51, 58) == pytest.approx(0.032, abs=5e-4)
    assert perf["c_lower"] == pytest.approx(perf["c_statistic"] - 1.959964 * perf["c_se"])
    assert "Hanley" in perf["c_method"]
    # DeLong on the same data: a nonparametric SE of similar size, matching the pairwise definition.
    delong = model_performance(p, y)
    assert "DeLong" in delong["c_method"]
    assert delong["c_se"] == pytest.approx(brute_force_delong_se(p, y), abs=1e-12)
    assert delong["c_se"] == pytest.approx(0.032, abs=0.005)


def test_calibration_on_data_from_the_model(data: pd.DataFrame):
    p = fixed_model(TRUE, FACTORS).predict(data)
    y = data["outcome"].to_numpy()
    perf = model_performance(p, y)
    assert perf["citl_lower"] < 0 < perf["citl_upper"]
    assert perf["slope_lower"] < 1 < perf["slope_upper"]
    assert perf["calibration_in_the_large"] == pytest.approx(0, abs=0.1)
    assert perf["calibration_slope"] == pytest.approx(1, abs=0.1)
    assert perf["n"] == len(y) and perf["events"] == int(y.sum())
    assert perf["expected"] == pytest.approx(p.sum())
    assert perf["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert perf["hosmer_lemeshow_df"] == 8
    assert perf["hosmer_lemeshow_p"] > 0.001


def test_fitted_model_is_calibrated_in_sample(data: pd.DataFrame, model: RiskModel):
    perf = model_performance(model.predict(data), data["outcome"])
    # The score equations of a fitted logistic model force both to their ideal values.
    assert perf["calibration_in_the_large"] == pytest.approx(0, abs=1e-6)
    assert perf["calibration_slope"] == pytest.approx(1, abs=1e-6)


def test_hosmer_lemeshow_against_direct_formula():
    rng = np.random.default_rng(11)
    p = rng.uniform(0.01, 0.4, 1000)
    y = (rng.random(1000) < p * 1.3).astype(float)
    perf = model_performance(p, y)
    # Deciles by sorted position (no ties here, so the same groups as quantile cutting).
    order = np.argsort(p)
    chi = 0.0
    for idx in np.array_split(order, 10):
        o, e, m = y[idx].sum(), p[idx].sum(), idx.size
        chi += (o - e) ** 2 / e + ((m - o) - (m - e)) ** 2 / (m - e)
    assert perf["hosmer_lemeshow"] == pytest.approx(chi, rel=1e-12)
    assert perf["hosmer_lemeshow_p"] < 0.05


def test_calibration_table():
    rng = np.random.default_rng(5)
    p = rng.uniform(0, 0.5, 2000)
    y = (rng.random(2000) < p).astype(float)
    t = calibration_table(p, y)
    assert list(t.columns) == [
        "group",
        "n",
        "observed",
        "expected",
        "observed_rate",
        "expected_rate",
        "lower95",
        "upper95",
    ]
    assert list(t["group"]) == list(range(1, 11))
    assert t["n"].sum() == 2000 and t["observed"].sum() == y.sum()
    assert t["expected"].sum() == pytest.approx(p.sum())
    assert (t["expected_rate"].diff().dropna() > 0).all()
    assert ((t["lower95"] <= t["observed_rate"]) & (t["observed_rate"] <= t["upper95"])).all()


def test_calibration_table_keeps_ties_together():
    p = np.array([0.1] * 50 + [0.2] * 30 + [0.3] * 20)
    y = np.zeros(100)
    y[:5] = 1
    t = calibration_table(p, y)
    assert list(t["n"]) == [50, 30, 20]


def test_calibration_limits_are_the_package_wilson_interval():
    """The reference figures of the interval itself are in test_intervals.py (PHEindicatormethods)."""
    rng = np.random.default_rng(5)
    p = rng.uniform(0.01, 0.6, 2000)
    y = (rng.random(2000) < p).astype(float)
    y[np.argsort(p)[:150]] = 0  # a lowest tenth with few or no deaths
    t = calibration_table(p, y)
    lo, hi = wilson(t["observed"], t["n"], level=0.95)
    np.testing.assert_array_equal(t["lower95"], lo)
    np.testing.assert_array_equal(t["upper95"], hi)
    # Wilson's limits by definition: the rates whose score test just fails to reject, |x - n pi| = z sqrt(n pi (1 - pi)).
    x, n = t["observed"].to_numpy(float), t["n"].to_numpy(float)
    for pi in (lo, hi):
        np.testing.assert_allclose(np.abs(x - n * pi), Z95 * np.sqrt(n * pi * (1 - pi)), rtol=1e-9, atol=1e-12)


def test_coefficient_table(model: RiskModel):
    t = coefficient_table(model)
    assert list(t.columns) == [
        "term",
        "coefficient",
        "std_error",
        "odds_ratio",
        "lower95",
        "upper95",
        "p_value",
    ]
    assert list(t["term"]) == list(TRUE)
    row = t.set_index("term").loc["asa[4]"]
    assert row["odds_ratio"] == pytest.approx(np.exp(model.coefficients["asa[4]"]))
    assert row["lower95"] < row["odds_ratio"] < row["upper95"]
    assert row["p_value"] < 1e-10
    fixed = coefficient_table(fixed_model(TRUE, FACTORS))
    assert fixed["lower95"].isna().all() and fixed["p_value"].isna().all()


# ---------------------------------------------------------------------------------------------------------------
# Failures that must be loud


def test_unconfigured_level_in_fitting_data(data: pd.DataFrame):
    bad = data.copy()
    bad.loc[bad.index[:3], "asa"] = 5
    with pytest.raises(ValueError, match=r"'asa': unexpected level\(s\) '5'"):
        fit_logistic(bad, FACTORS)


def test_configured_level_with_no_patients(data: pd.DataFrame):
    factors = (
        *FACTORS[:3],
        RiskFactor("urgency", "categorical", ("elective", "urgent", "emergency", "salvage")),
    )
    with pytest.raises(ValueError, match=r"urgency\[salvage\]"):
        fit_logistic(data, factors)


def test_collinear_factors(data: pd.DataFrame):
    d = data.assign(age_months=data["age"] * 12)
    with pytest.raises(ValueError, match="collinear"):
        fit_logistic(d, (*FACTORS, RiskFactor("age_months", "numeric")))


def test_separation_is_an_error_naming_the_level(data: pd.DataFrame):
    d = data.copy()
    survivors = d.index[d["outcome"] == 0][:40]
    d["asa"] = d["asa"].astype(object)
    d.loc[survivors, "asa"] = "5"
    factors = (*FACTORS[:2], RiskFactor("asa", "categorical", ("1", "2", "3", "4", "5")), FACTORS[3])
    with pytest.raises(ValueError, match=r"separation.*asa\[5\] \(40 patients, 0 deaths\)"):
        fit_logistic(d, factors)


def test_outcome_must_be_binary(data: pd.DataFrame):
    d = data.head(100).copy()
    d.loc[d.index[0], "outcome"] = np.nan
    with pytest.raises(ValueError, match="0 or 1"):
        fit_logistic(d, FACTORS)


def test_pipeline_impute_fit_then_unit_predict():
    rng = np.random.default_rng(2)
    n = 3000

    def holes(x: np.ndarray, rate: float) -> np.ndarray:
        x = x.astype(object)
        x[rng.random(n) < rate] = None
        return x

    big = pd.DataFrame(
        {
            "age": holes(rng.normal(70, 10, n), 0.05),
            "creat": holes(rng.normal(90, 20, n), 0.1),
            "bmi": holes(rng.normal(27, 4, n), 0.1),
            "lvef": holes(rng.choice(["good", "moderate", "poor"], n), 0.05),
            "nyha": holes(rng.choice([1, 2, 3, 4], n), 0.05),
            "smoker": holes(rng.choice(["no", "ex", "current"], n), 0.05),
            "diabetes": holes(rng.choice(["no", "yes"], n), 0.02),
            "outcome": (rng.random(n) < 0.1).astype(float),
        }
    )
    national = imputation_values(big, MISSING_FACTORS)
    data, flags = impute_missing(big, MISSING_FACTORS, national)
    assert len(data) == n - flags["excluded"].sum()
    m = fit_logistic(data, MISSING_FACTORS, fill_values=national)
    back = RiskModel.from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False)))
    assert back.fill_values == national
    unit = big.head(300)
    unit_data, unit_flags = back.impute(unit)
    pd.testing.assert_frame_equal(unit_flags, flags.head(300))
    np.testing.assert_array_equal(back.predict(unit_data), m.predict(data.loc[unit_data.index]))


# ---------------------------------------------------------------------------------------------------------------
# Log-link GLMs of a value (length of stay): Poisson and gamma

LOS_TRUE = {
    "Intercept": 0.2,
    "age": 0.015,
    "sex[M]": -0.05,
    "asa[2]": 0.1,
    "asa[3]": 0.3,
    "asa[4]": 0.55,
    "urgency[urgent]": 0.25,
    "urgency[emergency]": 0.6,
}

FORMULA_RHS = (
    "age + C(sex, Treatment('F')) + C(asa, Treatment('1'))"
    " + C(urgency, Treatment('elective'), levels=['elective', 'urgent', 'emergency'])"
)


def _patsy_order(model: RiskModel, ref) -> list[str]:
    order = []
    for term in model.coefficients.index:
        if "[" in term:
            name, level = term.rstrip("]").split("[")
            order.append(next(t for t in ref.params.index if t.startswith(f"C({name},") and t.endswith(f"[T.{level}]")))
        else:
            order.append(term)
    return order


@pytest.fixture(scope="module")
def los_data(data: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(77)
    d = data.head(8000).copy()
    mu = np.exp(design_matrix(d, FACTORS) @ np.array([LOS_TRUE[t] for t in term_names(FACTORS)]))
    d["los_days"] = rng.poisson(mu).astype(float)  # counts of days, zeros included
    d["los_hours"] = rng.gamma(shape=2.0, scale=mu * 24 / 2.0)  # positive, continuous
    return d


@pytest.mark.parametrize(
    "family, outcome, sm_family",
    [
        ("poisson", "los_days", sm.families.Poisson()),
        ("poisson", "los_hours", sm.families.Poisson()),  # non-integer values: the quasi-Poisson estimate
        ("gamma", "los_hours", sm.families.Gamma(link=sm.families.links.Log())),
    ],
)
def test_log_glm_equals_statsmodels_formula_glm(los_data, family, outcome, sm_family):
    model = fit_log_glm(los_data, FACTORS, family=family, outcome=outcome)
    d = los_data.assign(asa=los_data["asa"].astype(str))
    ref = smf.glm(f"{outcome} ~ {FORMULA_RHS}", data=d, family=sm_family).fit(tol=1e-12)
    order = _patsy_order(model, ref)
    assert model.family == family and model.link == "log" and model.kind == "fitted" and model.converged
    np.testing.assert_allclose(model.coefficients.to_numpy(), ref.params[order].to_numpy(), rtol=0, atol=1e-7)
    np.testing.assert_allclose(model.std_errors.to_numpy(), ref.bse[order].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(model.predict(los_data), ref.fittedvalues.to_numpy(), rtol=1e-7)
    assert model.scale == pytest.approx(ref.scale, rel=1e-6)
    assert model.n == len(los_data) and model.events == 0
    assert model.outcome_total == pytest.approx(los_data[outcome].sum())
    if family == "poisson":
        # Canonical link with an intercept: fitted values sum to the observed total (national O/E = 1).
        assert model.predict(los_data).sum() == pytest.approx(los_data[outcome].sum(), rel=1e-9)


def test_log_glm_predicts_exp_of_linear_predictor_and_round_trips(los_data):
    model = fit_log_glm(los_data, FACTORS, family="gamma", outcome="los_hours")
    head = los_data.head(40)
    np.testing.assert_allclose(model.predict(head), np.exp(model.linear_predictor(head)))
    text = json.dumps(model.to_dict(), allow_nan=False)
    assert json.loads(text)["family"] == "gamma" and json.loads(text)["link"] == "log"
    back = RiskModel.from_dict(json.loads(text))
    assert back.family == "gamma" and back.link == "log" and back.scale == model.scale
    table = coefficient_table(model)
    assert "odds_ratio" not in table.columns
    np.testing.assert_allclose(table["mean_ratio"], np.exp(model.coefficients.to_numpy()))
    np.testing.assert_allclose(table["upper95"], np.exp(model.conf_int["upper"].to_numpy()))
    assert back.outcome_total == model.outcome_total
    assert np.array_equal(back.predict(los_data), model.predict(los_data))


def test_model_description_without_family_reads_as_logistic(model: RiskModel, data: pd.DataFrame):
    old = model.to_dict()
    for key in ("family", "link", "outcome_total", "scale"):
        del old[key]
    back = RiskModel.from_dict(old)
    assert back.family == "binomial" and back.link == "logit"
    np.testing.assert_array_equal(back.predict(data.head(100)), model.predict(data.head(100)))
    bad = model.to_dict() | {"link": "log"}
    with pytest.raises(ValueError, match="link"):
        RiskModel.from_dict(bad)


def test_log_glm_outcome_rules(los_data):
    bad = los_data.head(200).copy()
    bad.loc[bad.index[3], "los_days"] = -1.0
    with pytest.raises(ValueError, match=r"'los_days' must be a number >= 0.*1 row"):
        fit_log_glm(bad, FACTORS, "poisson", "los_days")
    with pytest.raises(ValueError, match=r"> 0 .*gamma"):
        fit_log_glm(los_data, FACTORS, "gamma", "los_days")  # has zeros
    with pytest.raises(ValueError, match="family must be 'poisson' or 'gamma'"):
        fit_log_glm(los_data, FACTORS, "binomial", "los_days")


def test_log_glm_level_of_only_zeros_is_an_error(los_data):
    d = los_data.copy()
    d.loc[d["asa"] == 4, "los_days"] = 0.0
    with pytest.raises(ValueError, match=r"cannot be fitted: asa\[4\] \(\d+ patients, every value 0\)"):
        fit_log_glm(d, FACTORS, "poisson", "los_days")


def test_fixed_log_model_intercept_recalibration(los_data):
    # Published coefficients with the intercept 0.5 too low: recalibration-in-the-large restores it.
    published = dict(LOS_TRUE, Intercept=LOS_TRUE["Intercept"] - 0.5)
    fixed = fixed_model(published, FACTORS, family="poisson")
    assert fixed.link == "log"
    X = design_matrix(los_data, FACTORS)
    np.testing.assert_allclose(fixed.predict(los_data), np.exp(X @ np.array(list(published.values()))))
    recal = fixed_model(published, FACTORS, "intercept", los_data, "los_days", family="poisson")
    ref = sm.GLM(los_data["los_days"].to_numpy(), np.ones((len(los_data), 1)), family=sm.families.Poisson(),
                 offset=fixed.linear_predictor(los_data)).fit()
    assert recal.recalibration["intercept"] == pytest.approx(float(ref.params[0]), abs=1e-9)
    assert recal.predict(los_data).sum() == pytest.approx(los_data["los_days"].sum(), rel=1e-9)
    assert recal.family == "poisson" and recal.events == 0


def test_examples_run():
    import doctest

    from auditreport.stats import riskmodel

    result = doctest.testmod(riskmodel)
    assert result.attempted >= 1 and result.failed == 0
