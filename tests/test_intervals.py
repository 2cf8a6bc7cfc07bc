"""Intervals against METHODS.md section 1 reference figures (PHEindicatormethods test sheets)."""

import numpy as np
import pandas as pd
import pytest

from auditreport.stats.intervals import (
    Z95,
    Z998,
    byars,
    exact_poisson,
    mean_sd_by_group,
    median_interval,
    median_rank_pair,
    ramr,
    ratio_interval,
    t_interval,
    wilson,
)

REL = 1e-6


def test_z_constants():
    assert Z95 == pytest.approx(1.959964, rel=1e-6)
    assert Z998 == pytest.approx(3.090232, rel=1e-6)


@pytest.mark.parametrize(
    "o, level, lo, hi",
    [
        (65, 0.95, 50.163187710459454, 82.849138545939837),
        (1045, 0.95, 982.59320180733255, 1110.3312129856499),
        (65, 0.998, 42.880261471480203, 94.000290844318016),
        (10, 0.998, 2.916318374695686, 24.193724927880535),
    ],
)
def test_byars_reference(o, level, lo, hi):
    got = byars(o, level)
    assert float(got[0]) == pytest.approx(lo, rel=REL)
    assert float(got[1]) == pytest.approx(hi, rel=REL)


@pytest.mark.parametrize(
    "x, n, level, lo, hi",
    [
        (65, 100, 0.95, 0.55254443296887967, 0.73635751756902468),
        (1045, 5000, 0.998, 0.19179381799015244, 0.22731562902525818),
    ],
)
def test_wilson_reference(x, n, level, lo, hi):
    got = wilson(x, n, level)
    # PHE's figures to the last digit they print (the riskmodel tests held its former copy of Wilson to 1e-12).
    assert float(got[0]) == pytest.approx(lo, rel=0, abs=1e-12)
    assert float(got[1]) == pytest.approx(hi, rel=0, abs=1e-12)


E_ISR = 835.88356123117433


def test_isr_byars_reference():
    assert 895 / E_ISR == pytest.approx(1.0707232939020275, rel=REL)
    lo, hi = ratio_interval(895, E_ISR, 0.95, method="phe")
    assert float(lo) == pytest.approx(1.0017147712553987, rel=REL)
    assert float(hi) == pytest.approx(1.1432332872498949, rel=REL)
    lo, hi = ratio_interval(895, E_ISR, 0.998, method="phe")
    assert float(lo) == pytest.approx(0.96351556196144372, rel=REL)
    assert float(hi) == pytest.approx(1.1860070415876287, rel=REL)
    # O >= 10: "phe" is Byars
    np.testing.assert_allclose(ratio_interval(895, E_ISR, 0.95, "phe"), ratio_interval(895, E_ISR, 0.95, "byars"))


def test_isr_exact_reference():
    assert 9 / E_ISR == pytest.approx(0.010767049882813684, rel=REL)
    for method in ("phe", "exact"):  # O < 10: "phe" is exact
        lo, hi = ratio_interval(9, E_ISR, 0.95, method=method)
        assert float(lo) == pytest.approx(0.0049233808250957762, rel=REL)
        assert float(hi) == pytest.approx(0.02043921455549973, rel=REL)


def test_vectorised_and_edge_cases():
    lo, hi = wilson([0, 5, 10], [10, 10, 10])
    assert lo.shape == (3,) and lo[0] == 0.0 and hi[2] == pytest.approx(1.0)
    lo, hi = wilson(3, 0)
    assert np.isnan(lo) and np.isnan(hi)
    lo, hi = exact_poisson([0, 1, 5])
    assert lo[0] == 0.0 and hi[0] == pytest.approx(-np.log(0.025), rel=1e-9)
    lo, hi = byars(0)
    assert float(lo) == 0.0
    lo, hi = ratio_interval(5, 0)
    assert np.isnan(lo) and np.isnan(hi)
    with pytest.raises(ValueError):
        ratio_interval(5, 5, method="nope")
    with pytest.raises(ValueError):
        wilson(1, 2, level=95)


def test_exact_poisson_coverage_definition():
    # P(X >= lo | lo) = a/2 and P(X <= o | hi) = a/2 define the Garwood limits.
    from scipy.stats import poisson

    lo, hi = exact_poisson(7, 0.95)
    assert poisson.sf(6, lo) == pytest.approx(0.025, rel=1e-8)
    assert poisson.cdf(7, hi) == pytest.approx(0.025, rel=1e-8)


def test_ramr_is_ratio_interval_times_rate():
    o, e, rate = np.array([4, 17]), np.array([10.336, 10.336]), 1.6
    value, lo, hi = ramr(o, e, rate)
    rlo, rhi = ratio_interval(o, e)
    np.testing.assert_allclose(value, o / e * rate)
    np.testing.assert_allclose(lo, rlo * rate)
    np.testing.assert_allclose(hi, rhi * rate)


# ---------------------------------------------------------------- continuous values: t and median intervals


def test_t_interval_equals_scipy_t_on_random_samples():
    from scipy import stats

    rng = np.random.default_rng(7)
    samples = [rng.gamma(2.0, 3.0, size=n) for n in (2, 3, 10, 57, 400)]
    means = [s.mean() for s in samples]
    sds = [s.std(ddof=1) for s in samples]
    ns = [s.size for s in samples]
    for level in (0.95, 0.998):
        lo, hi = t_interval(means, sds, ns, level)
        for s, a, b in zip(samples, lo, hi, strict=True):
            want = stats.t.interval(level, s.size - 1, loc=s.mean(), scale=stats.sem(s))
            assert (a, b) == pytest.approx(want, rel=1e-12)


def test_t_interval_edge_rules():
    lo, hi = t_interval([5.0, 5.0, 5.0, np.nan], [1.0, 0.0, np.nan, 1.0], [1, 4, 4, 4])
    assert np.isnan(lo[0]) and np.isnan(hi[0])  # n < 2: no interval
    assert (lo[1], hi[1]) == (5.0, 5.0)  # sd 0: degenerate
    assert np.isnan(lo[2]) and np.isnan(lo[3])  # NaN in, NaN out
    assert np.shape(t_interval(1.0, 1.0, 3)[0]) == ()


def test_mean_sd_by_group_equals_pandas_groupby():
    rng = np.random.default_rng(3)
    values = rng.normal(1e6, 2.0, size=3000)  # large mean, small spread: a one-pass formula would lose digits
    values[::97] = np.nan
    groups = rng.choice(["b", "a", "c", "solo"], size=3000, p=[0.4, 0.3, 0.2999, 0.0001])
    got = mean_sd_by_group(values, groups)
    want = pd.Series(values).groupby(groups).agg(["count", "mean", "std"])
    assert list(got.index) == sorted(set(groups))
    np.testing.assert_array_equal(got["n"], want["count"])
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-14)
    np.testing.assert_allclose(got["sd"], want["std"], rtol=1e-9, equal_nan=True)


def _median_ranks_brute_force(n: int, level: float) -> tuple[int, int, float]:
    """The largest j with 1 - 2 P(B <= j - 1) >= level, B ~ binomial(n, 1/2), by summing the binomial terms."""
    from math import comb

    best = (0, 0, float("nan"))
    tail = 0.0  # P(B <= j - 1)
    for j in range(1, n // 2 + 2):
        tail += comb(n, j - 1) / 2.0**n
        coverage = 1.0 - 2.0 * tail
        if j <= n + 1 - j and coverage >= level - 1e-15:
            best = (j, n + 1 - j, coverage)
    return best


@pytest.mark.parametrize("level", [0.95, 0.998, 0.9])
def test_median_rank_pair_equals_brute_force_binomial_sums(level):
    ns = np.arange(0, 161)
    j, k, coverage = median_rank_pair(ns, level)
    for n, jj, kk, cc in zip(ns, j, k, coverage, strict=True):
        want = _median_ranks_brute_force(int(n), level)
        assert (jj, kk) == want[:2], n
        if jj:
            assert cc == pytest.approx(want[2], rel=1e-12) and cc >= level
        else:
            assert np.isnan(cc)


def test_median_rank_pair_smallest_samples():
    # 95%: 2 x 0.5^5 = 0.0625 > 0.05, so n = 5 has no interval; n = 6 gives (x1, x6) with coverage 31/32.
    j, k, coverage = median_rank_pair([5, 6], 0.95)
    assert j.tolist() == [0, 1] and k.tolist() == [0, 6] and coverage[1] == 1 - 2 / 64
    # 99.8%: n = 9 none (2/512 > 0.002), n = 10 (x1, x10).
    assert median_rank_pair([9, 10], 0.998)[0].tolist() == [0, 1]


def test_median_interval_equals_a_per_group_loop():
    rng = np.random.default_rng(11)
    n = 5000
    groups = rng.integers(0, 60, size=n).astype(str)
    values = np.round(rng.lognormal(1.5, 0.8, size=n), 1)  # ties, as lengths of stay have
    values[rng.random(n) < 0.02] = np.nan
    groups[:4] = "tiny"  # 4 records: no 95% interval exists
    for level in (0.95, 0.998):
        got = median_interval(values, groups, level)
        for g, row in got.iterrows():
            x = np.sort(values[(groups == g) & ~np.isnan(values)])
            assert row["n"] == x.size
            assert row["median"] == np.median(x)
            j, k, coverage = _median_ranks_brute_force(x.size, level)
            if j:
                assert (row["lower"], row["upper"]) == (x[j - 1], x[k - 1])
                assert row["coverage"] == pytest.approx(coverage, rel=1e-12)
            else:
                assert np.isnan(row["lower"]) and np.isnan(row["upper"]) and np.isnan(row["coverage"])
    assert np.isnan(median_interval(values, groups).loc["tiny", "lower"])


def test_median_interval_group_of_only_missing_values():
    got = median_interval([np.nan, 1.0, 2.0], ["empty", "x", "x"])
    assert got.loc["empty", "n"] == 0 and np.isnan(got.loc["empty", "median"])
    assert got.loc["x", "median"] == 1.5


def test_continuous_interval_examples_run():
    import doctest

    from auditreport.stats import grouping, intervals

    for module in (intervals, grouping):
        result = doctest.testmod(module)
        assert result.attempted >= 1 and result.failed == 0, module.__name__
