"""The one flag rule and its vocabulary (METHODS.md section 4), held to METHODS' examples and brute force."""

import doctest
import itertools
import math

import numpy as np
import pytest
from scipy.stats import beta, binom, chi2, norm, poisson

from auditreport.rules import flags
from auditreport.rules.flags import (
    DIRECTIONS,
    FLAG_LABELS,
    FLAG_ORDER,
    FLAG_SHORT_LABELS,
    FLAGS,
    NOT_ASSESSED,
    PHE_LABELS,
    flag_description,
    flag_direction,
    flag_short_words,
    flag_units,
    flag_words,
    tail_probabilities,
)
from auditreport.stats.funnel import normal_limits, proportion_limits, ratio_limits
from auditreport.stats.intervals import ratio_interval
from auditreport.stats.overdispersion import Overdispersion, estimate_mean


def _prop_limits(target, n):
    return proportion_limits(target, n, 0.95), proportion_limits(target, n, 0.998)


def _ratio_limits(e, od=None):
    return ratio_limits(e, 0.95, overdispersion=od), ratio_limits(e, 0.998, overdispersion=od)


def test_vocabulary():
    assert FLAGS == ("alarm_high", "alert_high", "as_expected", "alert_low", "alarm_low")
    assert set(FLAG_LABELS) == set(FLAG_SHORT_LABELS) == set(FLAG_ORDER) == {*FLAGS, NOT_ASSESSED}
    assert FLAG_LABELS["alarm_high"] == "Alarm: higher than expected (above 99.8% limit)"
    assert sorted(FLAG_ORDER, key=FLAG_ORDER.get) == [*FLAGS, ""]
    assert set(PHE_LABELS.values()) == set(FLAGS)


def test_docstring_example_runs():
    result = doctest.testmod(flags)
    assert result.attempted >= 4 and result.failed == 0


def test_methods_examples_at_a_20_percent_target():
    """METHODS.md section 4: 0 of 30 -> alert (lower tail 0.00124), 3 of 3 -> alert (0.0080), 20 of 40 -> alarm."""
    o, n = np.array([0, 3, 20]), np.array([30, 3, 40])
    lower, upper = tail_probabilities("proportion", o, n, 0.2)
    assert lower[0] == pytest.approx(0.00124, abs=5e-6) and lower[0] == pytest.approx(0.8 ** 30)
    assert upper[1] == pytest.approx(0.0080) and upper[1] == pytest.approx(0.2 ** 3)
    assert upper[2] == pytest.approx(2.2e-05, rel=0.02)
    l95, l998 = _prop_limits(0.2, n)
    assert flag_units("proportion", o, n, 0.2, l95, l998).tolist() == ["alert_low", "alert_high", "alarm_high"]
    # The smooth limits alone call 3 of 3 an alarm: the discrete tail is what holds it at an alert.
    assert flag_units("proportion", o, n, 0.2, l95, l998, method="limits")[1] == "alarm_high"
    exact95 = proportion_limits(0.2, n, 0.95, method="exact")
    exact998 = proportion_limits(0.2, n, 0.998, method="exact")
    assert flag_units("proportion", o, n, 0.2, exact95, exact998).tolist() == ["alert_low", "alert_high",
                                                                               "alarm_high"]


def test_tails_match_brute_force_sums():
    for o, n, p in itertools.product(range(0, 13, 3), (12, 25), (0.03, 0.2, 0.6)):
        pmf = [math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1)]
        lower, upper = tail_probabilities("proportion", o, n, p)
        assert float(lower) == pytest.approx(sum(pmf[: o + 1]), rel=1e-10, abs=1e-300)
        assert float(upper) == pytest.approx(sum(pmf[o:]), rel=1e-10, abs=1e-300)
    for o, e, t in itertools.product((0, 1, 4, 17, 40), (0.7, 5.0, 23.5), (1.0, 1.3)):
        mu = t * e
        pmf = [math.exp(-mu) * mu ** k / math.factorial(k) for k in range(o + 1)]
        lower, upper = tail_probabilities("ratio", o, e, t)
        assert float(lower) == pytest.approx(sum(pmf), rel=1e-10)
        assert float(upper) == pytest.approx(1.0 - sum(pmf[:o]), rel=1e-9, abs=1e-15)
        assert float(upper) == pytest.approx(poisson.sf(o - 1, mu), rel=1e-12)


def test_poisson_tail_is_the_test_behind_the_exact_interval():
    """P(X >= O | E) < a/2 exactly when the Garwood interval of O/E lies above 1 (and below, for the lower tail)."""
    o = np.repeat(np.arange(0, 60), 40).astype(float)
    e = np.tile(np.geomspace(0.5, 80, 40), 60)
    lower, upper = tail_probabilities("ratio", o, e, 1.0)
    for level, a in ((0.95, 0.05), (0.998, 0.002)):
        lo, hi = ratio_interval(o, e, level, method="exact")
        np.testing.assert_array_equal(upper < a / 2, lo > 1.0)
        np.testing.assert_array_equal(lower < a / 2, hi < 1.0)


def test_binomial_tail_is_the_test_behind_the_clopper_pearson_interval():
    """P(X >= O | n, p0) < a/2 exactly when the Clopper-Pearson interval of O/n lies above p0 (and below)."""
    n = np.repeat(np.arange(1, 61), 61).astype(float)
    o = np.tile(np.arange(0, 61), 60).astype(float)
    keep = o <= n
    o, n = o[keep], n[keep]
    for p0 in (0.03, 0.2, 0.5):
        lower, upper = tail_probabilities("proportion", o, n, p0)
        for a in (0.05, 0.002):
            lo = np.where(o > 0, beta.ppf(a / 2, np.maximum(o, 1), n - o + 1), 0.0)
            hi = np.where(o < n, beta.ppf(1 - a / 2, o + 1, np.maximum(n - o, 1)), 1.0)
            np.testing.assert_array_equal(upper < a / 2, lo > p0)
            np.testing.assert_array_equal(lower < a / 2, hi < p0)


def _rule_by_hand(kind, o, x, t, l95, u95, l998, u998):
    """The discrete rule, spelled out one unit at a time with scipy's distributions."""
    value = o / x if x > 0 else math.nan
    if math.isnan(value) or math.isnan(t):
        return ""
    by_limits = 2 if value > u998 else 1 if value > u95 else -2 if value < l998 else -1 if value < l95 else 0
    if kind == "proportion":
        lower, upper = binom.cdf(o, x, t), binom.sf(o - 1, x, t)
    else:
        lower, upper = poisson.cdf(o, t * x), poisson.sf(o - 1, t * x)
    by_tail = 2 if upper < 0.001 else 1 if upper < 0.025 else -2 if lower < 0.001 else -1 if lower < 0.025 else 0
    if by_limits * by_tail <= 0:
        return "as_expected"
    sign = 1 if by_limits > 0 else -1
    return {2: "alarm_high", 1: "alert_high", -1: "alert_low", -2: "alarm_low"}[sign * min(abs(by_limits),
                                                                                            abs(by_tail))]


@pytest.mark.parametrize("kind", ["proportion", "ratio"])
def test_vectorised_rule_matches_unit_by_unit(kind):
    rng = np.random.default_rng(13)
    size = 400
    if kind == "proportion":
        x = rng.integers(1, 300, size).astype(float)
        t = 0.08
        o = rng.binomial(x.astype(int), np.clip(t * rng.lognormal(0, 0.6, size), 0, 1)).astype(float)
        od = Overdispersion("multiplicative", phi=1.8, tau2=0.0, n_units=size, n_trimmed=80, chi2_p=0.0)
        l95 = proportion_limits(t, x, 0.95, overdispersion=od)
        l998 = proportion_limits(t, x, 0.998, overdispersion=od)
    else:
        x = rng.uniform(0.3, 60, size)
        t = 1.0
        o = rng.poisson(x * rng.lognormal(0, 0.5, size)).astype(float)
        od = Overdispersion("additive", phi=2.5, tau2=0.02, n_units=size, n_trimmed=80, chi2_p=0.0)
        l95, l998 = _ratio_limits(x, od)
    x[:3] = [0.0, 5.0, 5.0]
    o[:3] = [0.0, 0.0, 5.0]
    got = flag_units(kind, o, x, t, l95, l998)
    want = [_rule_by_hand(kind, o[i], x[i], t, l95[0][i], l95[1][i], l998[0][i], l998[1][i]) for i in range(size)]
    assert got.tolist() == want
    assert got[0] == ""  # no cases / nothing expected: not assessed
    limits_only = flag_units(kind, o, x, t, l95, l998, method="limits")
    severity = {"alarm_high": 2, "alert_high": 1, "as_expected": 0, "alert_low": 1, "alarm_low": 2, "": 0}
    # The discrete rule never goes beyond the limits, never turns a flag round, and here it does hold some back.
    assert all(severity[a] <= severity[b] for a, b in zip(got, limits_only, strict=True))
    assert all(a in ("as_expected", "") or a.split("_")[1] == b.split("_")[1]
               for a, b in zip(got, limits_only, strict=True))
    assert (got != limits_only).any()


def test_no_deaths_with_few_expected_is_not_flagged():
    """O = 0 lies below any smooth lower limit; P(O = 0 | E = 1.9) = 0.15, P(O = 0 | E = 12) = 6e-6."""
    e = np.array([1.9, 12.0])
    l95, l998 = _ratio_limits(e)
    assert flag_units("ratio", [0, 0], e, 1.0, l95, l998, method="limits").tolist() == ["alarm_low", "alarm_low"]
    assert flag_units("ratio", [0, 0], e, 1.0, l95, l998).tolist() == ["as_expected", "alarm_low"]


def test_tail_exactly_on_the_threshold_is_not_flagged():
    # One event in one case: the upper tail is the target itself, 0.025 and 0.001 exactly in floating point.
    for target in (0.025, 0.001):
        assert float(tail_probabilities("proportion", 1, 1, target)[1]) == target
    got, limits_only = [], []
    for target in (0.025, 0.0249, 0.001, 0.00099):
        l95, l998 = _prop_limits(target, 1)
        limits_only.append(flag_units("proportion", 1, 1, target, l95, l998, method="limits").item())
        got.append(flag_units("proportion", 1, 1, target, l95, l998).item())
    assert limits_only == ["alarm_high"] * 4  # the limits would allow an alarm every time
    assert got == ["as_expected", "alert_high", "alert_high", "alarm_high"]


def test_limits_method_boundaries_and_missing_values():
    v = np.array([0.1, 0.5, 0.69, 0.7, 1.0, 1.3, 1.31, 1.6, 2.0, np.nan])
    got = flag_units("ratio", v, 1.0, 1.0, (0.7, 1.3), (0.5, 1.6), method="limits")
    # 0.5, 0.7, 1.3 and 1.6 lie exactly on a limit: inside it.
    assert got.tolist() == ["alarm_low", "alert_low", "alert_low", "as_expected", "as_expected", "as_expected",
                            "alert_high", "alert_high", "alarm_high", ""]
    assert got.dtype == object
    nan = (np.nan, np.nan)
    assert flag_units("ratio", [1.0, 30.0], [1.0, 1.0], 1.0, nan, nan, method="limits").tolist() == [
        "as_expected", "as_expected"]  # a NaN limit never flags
    assert flag_units("ratio", [1.0, 30.0], [1.0, 1.0], 1.0, nan, nan).tolist() == ["as_expected", "as_expected"]
    l95, l998 = _ratio_limits(np.array([10.0, 10.0]))
    assert flag_units("ratio", [30, 30], [10, 10], [1.0, np.nan], l95, l998).tolist() == ["alarm_high", ""]


def test_phe_method_is_the_units_interval_against_the_target():
    # Ratios: exact (Garwood) interval when O < 10, Byars from 10 (PHEindicatormethods); proportions: Wilson.
    o, e = np.array([9.0, 9.0, 30.0, 2.0]), np.array([2.0, 4.0, 19.0, 9.0])
    lo95, hi95 = chi2.ppf(0.025, 2 * o) / 2 / e, chi2.ppf(0.975, 2 * o + 2) / 2 / e
    lo998 = chi2.ppf(0.001, 2 * o) / 2 / e
    assert lo998[0] > 1 and lo95[1] > 1 > lo998[1] and hi95[3] < 1
    byars_lo95 = 30 * (1 - 1 / (9 * 30) - 1.959964 / (3 * math.sqrt(30))) ** 3 / 19
    assert byars_lo95 > 1  # 30 of 19 is an alert by Byars' interval
    got = flag_units("ratio", o, e, 1.0, None, None, method="phe")
    assert got.tolist() == ["alarm_high", "alert_high", "alert_high", "alert_low"]
    # 3 of 3 at 20%: Wilson's 99.8% interval starts at 0.239, above the target: an alarm under PHE's labels.
    assert flag_units("proportion", 3, 3, 0.2, None, None, method="phe").item() == "alarm_high"


def test_errors():
    l95, l998 = _ratio_limits(np.array([2.0]))
    with pytest.raises(ValueError, match="observed counts as whole numbers.*position\\(s\\) 0.*'limits'"):
        flag_units("ratio", [2.5], [2.0], 1.0, l95, l998)
    assert flag_units("ratio", [2.5], [2.0], 1.0, l95, l998, method="limits").item() == "as_expected"
    with pytest.raises(ValueError, match="cases"):
        tail_probabilities("proportion", 2, 10.5, 0.2)
    with pytest.raises(ValueError, match="kind"):
        flag_units("rate", [1], [2], 1.0, l95, l998)
    with pytest.raises(ValueError, match="flag method"):
        flag_units("ratio", [1], [2], 1.0, l95, l998, method="spc")
    with pytest.raises(ValueError, match="needs the funnel limits"):
        flag_units("ratio", [1], [2], 1.0, None, None)


# ---------------------------------------------------------------- kind "mean": the normal funnel of a mean


def _mean_case(seed=9, units=400):
    rng = np.random.default_rng(seed)
    n = rng.integers(2, 400, size=units).astype(float)
    means = 8.0 + rng.normal(0, 0.6, size=units) + rng.normal(0, 5.0, size=units) / np.sqrt(n)
    return means * n, n, means


def _z_rule(z):
    """Flag from z by HQIP's thresholds, written out: |z| beyond the 99.8% quantile alarm, the 95% one alert."""
    z95, z998 = norm.ppf(0.975), norm.ppf(0.999)
    return np.select([z > z998, z > z95, z < -z998, z < -z95], ["alarm_high", "alert_high", "alarm_low", "alert_low"],
                     "as_expected")


def test_mean_flags_equal_the_z_rule_without_overdispersion():
    total, n, means = _mean_case()
    sd, target = 5.0, 8.0
    l95, l998 = normal_limits(target, sd, n, 0.95), normal_limits(target, sd, n, 0.998)
    want = _z_rule((means - target) / (sd / np.sqrt(n)))
    for method in ("discrete", "limits", "phe"):
        got = flag_units("mean", total, n, target, l95, l998, method=method, sd=sd)
        assert got.tolist() == want.tolist(), method
    assert len(set(want)) == 5  # every flag occurs


def test_mean_tails_are_normal_tails_of_the_mean():
    total, n, means = _mean_case(units=30)
    lower, upper = tail_probabilities("mean", total, n, 8.0, sd=5.0)
    se = 5.0 / np.sqrt(n)
    np.testing.assert_allclose(lower, norm.cdf(means, loc=8.0, scale=se), rtol=1e-12)
    np.testing.assert_allclose(upper, norm.sf(means, loc=8.0, scale=se), rtol=1e-12)


def test_mean_overdispersion_acts_through_the_limits():
    total, n, means = _mean_case()
    od = estimate_mean(means, n, 8.0, 5.0, "multiplicative")
    assert od.phi > 1
    l95, l998 = normal_limits(8.0, 5.0, n, 0.95, od), normal_limits(8.0, 5.0, n, 0.998, od)
    got = flag_units("mean", total, n, 8.0, l95, l998, sd=5.0)
    want = _z_rule((means - 8.0) / (5.0 / np.sqrt(n)) / od.inflation)
    assert got.tolist() == want.tolist()
    plain = flag_units("mean", total, n, 8.0, *(normal_limits(8.0, 5.0, n, lev) for lev in (0.95, 0.998)), sd=5.0)
    assert sum(f != "as_expected" for f in got) < sum(f != "as_expected" for f in plain)


def test_mean_edge_rules():
    l95 = normal_limits(8.0, 5.0, [10, 0, 10], 0.95)
    l998 = normal_limits(8.0, 5.0, [10, 0, 10], 0.998)
    got = flag_units("mean", [80.0, 0.0, 80.0], [10, 0, 10], [8.0, 8.0, np.nan], l95, l998, sd=5.0)
    assert got.tolist() == ["as_expected", "", ""]
    # A mean need not be a whole number: no count rule.
    assert flag_units("mean", [95.5], [10], 8.0, *(normal_limits(8.0, 1.0, 10, lev) for lev in (0.95, 0.998)),
                      sd=1.0).tolist() == ["alarm_high"]
    with pytest.raises(ValueError, match="standard deviation"):
        flag_units("mean", [80.0], [10], 8.0, l95, l998)
    with pytest.raises(ValueError, match="sd applies"):
        flag_units("ratio", [3], [2.0], 1.0, l95, l998, sd=1.0)


# ---------------------------------------------------------------- words by direction

WORDS = {
    ("alarm_high", "lower_is_better"): ("Alarm: worse than expected", "Alarm (worse)", "worse"),
    ("alert_high", "lower_is_better"): ("Alert: worse than expected", "Alert (worse)", "worse"),
    ("as_expected", "lower_is_better"): ("As expected", "As expected", "as_expected"),
    ("alert_low", "lower_is_better"): ("Alert: better than expected", "Alert (better)", "better"),
    ("alarm_low", "lower_is_better"): ("Alarm: better than expected", "Alarm (better)", "better"),
    ("", "lower_is_better"): ("", "", ""),
    ("alarm_high", "higher_is_better"): ("Alarm: better than expected", "Alarm (better)", "better"),
    ("alert_high", "higher_is_better"): ("Alert: better than expected", "Alert (better)", "better"),
    ("as_expected", "higher_is_better"): ("As expected", "As expected", "as_expected"),
    ("alert_low", "higher_is_better"): ("Alert: worse than expected", "Alert (worse)", "worse"),
    ("alarm_low", "higher_is_better"): ("Alarm: worse than expected", "Alarm (worse)", "worse"),
    ("", "higher_is_better"): ("", "", ""),
    ("alarm_high", None): ("Alarm: higher than expected", "Alarm (high)", "high"),
    ("alert_low", None): ("Alert: lower than expected", "Alert (low)", "low"),
}


@pytest.mark.parametrize("flag, direction", sorted(WORDS, key=str))
def test_words_for_every_flag_and_direction(flag, direction):
    words, short, way = WORDS[(flag, direction)]
    assert flag_words(flag, direction) == words
    assert flag_short_words(flag, direction) == short
    assert flag_direction(flag, direction) == way


def test_words_cover_every_flag_and_description_names_the_limit():
    assert {f for f, d in WORDS if d in DIRECTIONS} == {*FLAGS, NOT_ASSESSED}
    assert set(DIRECTIONS) == {"lower_is_better", "higher_is_better"}
    assert flag_description("alert_high", "lower_is_better") == "Alert: worse than expected (above the 95% limit)"
    assert flag_description("alarm_low", "higher_is_better") == "Alarm: worse than expected (below the 99.8% limit)"
    assert flag_description("", "higher_is_better") == ""
    # Direction without it, the short words are the flag's short labels.
    assert all(flag_short_words(f, None) == FLAG_SHORT_LABELS[f] for f in FLAGS)
    with pytest.raises(ValueError, match="direction must be one of"):
        flag_words("alarm_high", "up")
    with pytest.raises(ValueError, match="unknown flag"):
        flag_words("red", "lower_is_better")
