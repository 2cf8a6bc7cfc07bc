"""Tests for auditreport.stats.riskmodel (METHODS.md section 5)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy.special import expit

from auditreport.stats.riskmodel import (
    RiskFactor,
    RiskModel,
    design_matrix,
    fit_logistic,
    fixed_model,
    impute_missing,
    term_names,
)

FACTORS = (
    RiskFactor("age", "numeric"),
    RiskFactor("sex", "categorical", ("F", "M")),
    RiskFactor("asa", "categorical", ("1", "2", "3", "4"), reference="1"),
    RiskFactor("urgency", "categorical", ("elective", "urgent", "emergency")),
)
TRUE = {
    "Intercept": -6.0,
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
            order.append(next(t for t in ref.params.index if t.startswith(f"C({name},") and t.endswith(f"[T.{level}]")))
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
