"""The bounded (logit-shift) risk-adjusted rate of a proportion (METHODS.md section 1), held to brentq and loops."""

import doctest

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.optimize import brentq
from scipy.special import expit, logit

from auditreport.stats import standardisation
from auditreport.stats.intervals import ratio_interval
from auditreport.stats.standardisation import bounded_adjusted_rate, logit_shift, shifted_rate


@pytest.fixture(scope="module")
def cohort():
    """A national cohort with a fitted logistic model (continuous and categorical risk) and 80 units."""
    rng = np.random.default_rng(2024)
    n = 12_000
    age = rng.normal(70, 10, n)
    urgent = rng.random(n) < 0.3
    unit = rng.integers(0, 80, n)
    effect = rng.normal(0, 0.35, 80)[unit]
    y = (rng.random(n) < expit(-6 + 0.06 * age + 0.9 * urgent + effect)).astype(float)
    X = np.column_stack([np.ones(n), age, urgent])
    p = sm.GLM(y, X, family=sm.families.Binomial()).fit().fittedvalues
    observed = pd.Series(np.bincount(unit, weights=y, minlength=80), index=np.arange(80))
    expected = pd.Series(np.bincount(unit, weights=p, minlength=80), index=np.arange(80))
    return {"p": np.asarray(p), "unit": unit, "y": y, "O": observed, "E": expected}


def test_logit_shift_equals_brentq_per_group(cohort):
    p, unit, o = cohort["p"], cohort["unit"], cohort["O"]
    d = logit_shift(p, unit, o)
    for g in o.index:
        lp = logit(p[unit == g])
        want = brentq(lambda x, lp=lp, g=g: expit(lp + x).sum() - o[g], -40, 40, xtol=1e-14)
        assert d[g] == pytest.approx(want, abs=1e-9)


def test_shifted_rate_equals_a_loop_over_shifts(cohort):
    p = cohort["p"]
    d = np.array([-np.inf, -45.0, -2.0, -0.3, 0.0, 0.7, 3.0, 45.0, np.inf, np.nan])
    want = [expit(logit(p) + x).mean() if np.isfinite(x) else {-np.inf: 0.0, np.inf: 1.0}.get(x, np.nan)
            for x in d]
    np.testing.assert_allclose(shifted_rate(d, p), want, rtol=1e-12, atol=1e-300)
    assert shifted_rate(d.reshape(2, 5), p).shape == (2, 5)


def test_rate_is_bounded_and_monotone_in_observed(cohort):
    p, unit, o = cohort["p"], cohort["unit"], cohort["O"]
    n = pd.Series(np.bincount(unit, minlength=80), index=o.index)
    scales = [0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 50.0]
    rates = np.array([bounded_adjusted_rate(p, unit, (o * s).clip(upper=n * 1.5), p) for s in scales])
    assert ((rates >= 0) & (rates <= 1)).all()
    assert (np.diff(rates, axis=0) >= 0).all()
    assert (rates[0] == 0).all()  # O = 0
    assert (rates[-1] == 1).all()  # O at or above n


def test_observed_equal_to_expected_gives_the_national_rate_of_a_fitted_model(cohort):
    """O = E gives d = 0 and the mean predicted risk; for an ML logistic fit with an intercept on the same cohort
    that equals the national crude rate (the intercept's score equation)."""
    p, unit, e, y = cohort["p"], cohort["unit"], cohort["E"], cohort["y"]
    d = logit_shift(p, unit, e)
    np.testing.assert_allclose(d, 0.0, atol=1e-9)
    r = bounded_adjusted_rate(p, unit, e, p)
    np.testing.assert_allclose(r, p.mean(), rtol=1e-9)
    assert p.mean() == pytest.approx(y.mean(), rel=1e-8)


def test_unit_with_the_national_case_mix_gets_its_crude_rate():
    base = np.array([0.02, 0.1, 0.3, 0.6])
    p = np.tile(base, 50)  # every unit of 4 patients has the reference case mix
    unit = np.repeat(np.arange(50), 4)
    o = pd.Series(np.arange(50) % 5 * 0.7, index=np.arange(50))  # 0 to 2.8 events of 4
    r = bounded_adjusted_rate(p, unit, o, base)
    np.testing.assert_allclose(r, o / 4, atol=1e-10)


def test_interval_bounds_map_like_the_oe_interval(cohort):
    """Bounds from the O/E interval: the rate's interval contains the rate and excludes the national rate exactly
    when the O/E interval excludes 1."""
    p, unit, o, e = cohort["p"], cohort["unit"], cohort["O"], cohort["E"]
    lo, hi = ratio_interval(o.to_numpy(), e.to_numpy(), 0.95)
    rate = bounded_adjusted_rate(p, unit, o, p)
    r_lo = bounded_adjusted_rate(p, unit, pd.Series(lo * e.to_numpy(), index=o.index), p)
    r_hi = bounded_adjusted_rate(p, unit, pd.Series(hi * e.to_numpy(), index=o.index), p)
    assert ((r_lo <= rate) & (rate <= r_hi)).all()
    national = p.mean()
    np.testing.assert_array_equal((r_lo > national) | (r_hi < national), (lo > 1) | (hi < 1))


def test_edge_rules():
    p = [0.0, 1.0, 0.5, 0.5, 0.2]
    unit = ["a", "a", "b", "b", "c"]
    o = pd.Series({"b": 2.0, "a": 1.0, "c": np.nan, "ghost": 1.0})
    d = logit_shift(p, unit, o)
    assert list(d.index) == ["b", "a", "c", "ghost"]  # ordered as observed
    assert d["b"] == np.inf
    assert np.isfinite(d["a"])  # risks of exactly 0 and 1 are clipped, so one event of two is reachable
    assert np.isnan(d["c"]) and np.isnan(d["ghost"])
    assert logit_shift([0.3, 0.4], ["x", "x"], {"x": -0.5})["x"] == -np.inf
    with pytest.raises(ValueError, match="probabilities"):
        logit_shift([0.3, 1.2], ["x", "x"], {"x": 1.0})
    with pytest.raises(TypeError, match="indexed by group"):
        logit_shift([0.3, 0.2], ["x", "x"], [1.0])


def test_examples_run():
    assert doctest.testmod(standardisation).failed == 0
