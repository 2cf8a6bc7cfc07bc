"""Funnel limits against FunnelPlotR's tests and PHEindicatormethods' reference files."""

import numpy as np
import pytest
from scipy.stats import chi2

from auditreport.rules.flags import PHE_LABELS, flag_units
from auditreport.stats.funnel import (
    funnel_curve,
    normal_limits,
    phe_poisson_funnel,
    proportion_limits,
    ratio_limits,
)
from auditreport.stats.overdispersion import Overdispersion, estimate_ratio

from _stats_shared import read_reference_csv

# FunnelPlotR tests/testthat/test-poisson_limits.R, via METHODS.md section 2.
FPR = {
    15: (0.5596924, 1.649348, 0.3862650, 2.082907),
    20: (0.6108260, 1.544419, 0.4479107, 1.902094),
    30: (0.6746958, 1.427562, 0.5289724, 1.702771),
}


@pytest.mark.parametrize("e", sorted(FPR))
def test_funnelplotr_exact_poisson_limits(e):
    l95, u95, l998, u998 = FPR[e]
    lo, hi = ratio_limits(e, 0.95, method="exact")
    assert float(lo) == pytest.approx(l95, rel=1e-6)
    assert float(hi) == pytest.approx(u95, rel=1e-6)
    lo, hi = ratio_limits(e, 0.998, method="exact")
    assert float(lo) == pytest.approx(l998, rel=1e-6)
    assert float(hi) == pytest.approx(u998, rel=1e-6)


def test_ratio_limits_vectorised_and_invalid():
    lo, hi = ratio_limits(np.array([15.0, 20.0, 0.0, np.nan]), 0.95)
    assert lo[:2] == pytest.approx([FPR[15][0], FPR[20][0]], rel=1e-6)
    assert np.isnan(lo[2:]).all() and np.isnan(hi[2:]).all()
    with pytest.raises(ValueError):
        ratio_limits(10, 0.95, method="byars")


# ---------------------------------------------------------------- PHE ratio

PHE_RATIO_COLS = [
    ("lower_2s", 0.025, "high", 0.95, 0),
    ("upper_2s", 0.025, "low", 0.95, 1),
    ("lower_3s", 0.001, "high", 0.998, 0),
    ("upper_3s", 0.001, "low", 0.998, 1),
]


def _phe_exact_e(obs, p, side):
    """E at which O is on PHE's limit: P(X >= O | E) = p ("low") or P(X <= O | E) = p ("high")."""
    return chi2.ppf(p, 2 * obs) / 2 if side == "low" else chi2.ppf(1 - p, 2 * obs + 2) / 2


def test_phe_ratio_outputs_file():
    """PHE's tabulated expected events, counts and ISRs for 100 observed counts.

    Tolerance: relative 1e-6 on expected events (the file carries 10
    significant digits, except the smallest upper 99.8% values, 7 digits) and
    absolute 1e-6 on the count (O/E - 1) and 1e-4 on the ISR (x 100) columns.
    """
    ref = read_reference_csv("phe_testdata_funnel_ratio_outputs.csv")
    assert len(ref) == 100
    obs = ref["Observed_events"].to_numpy(float)
    for name, p, side, _, _ in PHE_RATIO_COLS:
        e = phe_poisson_funnel(obs, p, side)
        np.testing.assert_allclose(e, ref[f"{name}_exp_events"], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(obs / e - 1, ref[f"{name}_count"], rtol=0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(obs / e * 100, ref[f"{name}_isr"], rtol=0, atol=1e-4, err_msg=name)
        # PHE's bisection stops at dv <= 1e-7 on v = E / (1 + O + E), so its E equals
        # the closed-form Garwood limit to within that step on the v scale (a
        # relative error in E of up to 5e-5 for O = 1, upper 99.8%).
        exact = _phe_exact_e(obs, p, side)
        v, v_exact = e / (1 + obs + e), exact / (1 + obs + exact)
        np.testing.assert_allclose(v, v_exact, rtol=0, atol=1.2e-7)
        np.testing.assert_allclose(ref[f"{name}_exp_events"] / (1 + obs + ref[f"{name}_exp_events"]), v_exact, rtol=0, atol=1.2e-7)


def test_phe_ratio_limits_pass_through_phe_points():
    """ratio_limits(..., "phe") at the E of each of PHE's 100 tabulated points gives its O/E.

    Evaluated at the closed-form E of each point (which PHE's bisection
    approximates, see above), rel 1e-8.
    """
    ref = read_reference_csv("phe_testdata_funnel_ratio_outputs.csv")
    obs = ref["Observed_events"].to_numpy(float)
    for name, p, side, level, which in PHE_RATIO_COLS:
        e = _phe_exact_e(obs, p, side)
        got = ratio_limits(e, level, method="phe")[which]
        np.testing.assert_allclose(got, obs / e, rtol=1e-8, err_msg=name)


def test_phe_ratio_significance_all_300():
    ref = read_reference_csv("phe_testdata_funnel_ratio_inputs.csv")
    assert len(ref) == 300
    want = ref["significance"].map(PHE_LABELS)
    assert want.notna().all()
    o, e = ref["obs"].to_numpy(float), ref["expected"].to_numpy(float)

    # PHE's own rule, the flag method "phe": the unit's (exact if O < 10, else Byars) interval against 1.
    got = flag_units("ratio", o, e, 1.0, None, None, method="phe")
    bad = ref.loc[got != want.to_numpy()]
    assert bad.empty, bad

    # The same labels from the "phe" funnel limits at each unit's E, by the flag method "limits".
    lims95, lims998 = ratio_limits(e, 0.95, method="phe"), ratio_limits(e, 0.998, method="phe")
    got = flag_units("ratio", o, e, 1.0, lims95, lims998, method="limits")
    bad = ref.loc[got != want.to_numpy()]
    assert bad.empty, bad


# ---------------------------------------------------------------- PHE proportions


def _phe_prop():
    inputs = read_reference_csv("phe_testdata_funnel_prop_inputs.csv")
    outputs = read_reference_csv("phe_testdata_funnel_prop_outputs.csv")
    target = inputs["numerator"].sum() / inputs["denominator"].sum()
    return inputs, outputs, target


def test_phe_prop_outputs_file():
    """Wilson-inverted limits in per cent; the file is rounded to 6 dp, so atol 1e-6 per cent."""
    _, ref, target = _phe_prop()
    assert len(ref) == 100
    assert target * 100 == pytest.approx(ref["Baseline"].iloc[0], abs=1e-6)
    n = ref["Population"].to_numpy(float)
    for level, lo_col, hi_col in ((0.95, "Lower2s0025limit", "Upper2s0025limit"), (0.998, "Lower3s0001limit", "Upper3s0001limit")):
        lo, hi = proportion_limits(target, n, level, method="wilson")
        np.testing.assert_allclose(lo * 100, ref[lo_col], rtol=0, atol=1e-6, err_msg=lo_col)
        np.testing.assert_allclose(hi * 100, ref[hi_col], rtol=0, atol=1e-6, err_msg=hi_col)


def test_phe_prop_significance_all_303():
    inputs, _, target = _phe_prop()
    assert len(inputs) == 303
    n = inputs["denominator"].to_numpy(float)
    lims95 = proportion_limits(target, n, 0.95, method="wilson")
    lims998 = proportion_limits(target, n, 0.998, method="wilson")
    want = inputs["significance"].map(PHE_LABELS).to_numpy()
    # PHE's labels by both named methods: the value against the Wilson-inverted limits, and the unit's Wilson
    # interval against the target (the limits are where that interval's bound reaches the target).
    for method in ("limits", "phe"):
        got = flag_units("proportion", inputs["numerator"], n, target, lims95, lims998, method=method)
        bad = inputs.loc[got != want]
        assert bad.empty, (method, bad)


# ---------------------------------------------------------------- exact binomial


def test_exact_binomial_interpolated_limits_definition():
    """Spiegelhalter 2005 App. A.1.1: (r_p - alpha)/n with the interpolation alpha."""
    from scipy.stats import binom

    p0, n = 0.2, 50
    lo, hi = proportion_limits(p0, n, 0.95, method="exact")
    for lim, prob in ((lo, 0.025), (hi, 0.975)):
        r = binom.ppf(prob, n, p0)
        c, c1 = binom.cdf(r, n, p0), binom.cdf(r - 1, n, p0)
        assert float(lim) == pytest.approx((r - (c - prob) / (c - c1)) / n, rel=1e-10)
    # Close to the Wilson-inverted limits for a large n.
    big = proportion_limits(p0, 1e5, 0.998, method="exact")
    wil = proportion_limits(p0, 1e5, 0.998, method="wilson")
    np.testing.assert_allclose(big, wil, rtol=2e-3)


def test_exact_binomial_non_integer_n_is_smooth():
    n = np.geomspace(10, 1000, 60)
    lo, hi = proportion_limits(0.1, n, 0.95, method="exact")
    assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
    assert np.all(hi > 0.1) and np.all(lo < 0.1)


# ---------------------------------------------------------------- over-dispersed limits


def test_multiplicative_inflates_distance_by_sqrt_phi():
    od = Overdispersion("multiplicative", phi=4.0, tau2=0.0, n_units=10, n_trimmed=2, chi2_p=0.0)
    base = ratio_limits(50.0, 0.95)
    lo, hi = ratio_limits(50.0, 0.95, overdispersion=od)
    assert float(1 - lo) == pytest.approx(2 * float(1 - base[0]))
    assert float(hi - 1) == pytest.approx(2 * float(base[1] - 1))
    under = Overdispersion("multiplicative", phi=0.5, tau2=0.0, n_units=10, n_trimmed=2, chi2_p=1.0)
    np.testing.assert_allclose(ratio_limits(50.0, 0.95, overdispersion=under), base)


def test_additive_and_shmi_limits():
    od = Overdispersion("additive", phi=3.0, tau2=0.01, n_units=10, n_trimmed=2, chi2_p=0.0)
    lo, hi = ratio_limits(100.0, 0.998, overdispersion=od)
    half = 3.090232306167813 * np.sqrt(1 / 100 + 0.01)
    assert float(lo) == pytest.approx(1 - half) and float(hi) == pytest.approx(1 + half)

    shmi = estimate_ratio([100, 150, 180, 80, 120, 225], [108, 112, 165, 95, 100, 220], "shmi")
    lo, hi = ratio_limits(100.0, 0.95, overdispersion=shmi)
    half = 1.959963984540054 * np.sqrt(1 / 100 + shmi.tau2)
    assert float(lo) == pytest.approx(np.exp(-half)) and float(hi) == pytest.approx(np.exp(half))

    p_od = Overdispersion("additive", phi=3.0, tau2=0.001, n_units=10, n_trimmed=2, chi2_p=0.0)
    lo, hi = proportion_limits(0.3, 200, 0.95, overdispersion=p_od)
    half = 1.959963984540054 * np.sqrt(0.3 * 0.7 / 200 + 0.001)
    assert float(lo) == pytest.approx(0.3 - half) and float(hi) == pytest.approx(0.3 + half)
    with pytest.raises(ValueError):
        proportion_limits(0.3, 200, 0.95, overdispersion=shmi)


def test_zero_tau2_falls_back_to_unadjusted():
    od = Overdispersion("additive", phi=0.8, tau2=0.0, n_units=10, n_trimmed=2, chi2_p=0.7)
    np.testing.assert_allclose(ratio_limits(30.0, 0.95, overdispersion=od), ratio_limits(30.0, 0.95))


# ---------------------------------------------------------------- curves


@pytest.mark.parametrize("kind, target, method", [("ratio", 1.0, "exact"), ("ratio", 1.0, "phe"), ("proportion", 0.25, "wilson"), ("proportion", 0.25, "exact")])
def test_funnel_curve_shape(kind, target, method):
    df = funnel_curve(kind, target, 1, 5000, n_points=120, method=method)
    assert list(df.columns) == ["x", "lower95", "upper95", "lower998", "upper998"]
    assert len(df) == 120
    assert df["x"].iloc[0] == pytest.approx(1) and df["x"].iloc[-1] == pytest.approx(5000)
    assert np.allclose(np.diff(np.log(df["x"])), np.log(5000) / 119)
    assert (df["lower998"] <= df["lower95"] + 1e-12).all() and (df["upper95"] <= df["upper998"] + 1e-12).all()
    assert (df["lower95"] <= target).all() and (df["upper95"] >= target).all()
    # Funnels narrow with precision.
    assert df["upper998"].iloc[-1] < df["upper998"].iloc[0]


def test_funnel_curve_errors():
    with pytest.raises(ValueError):
        funnel_curve("rate", 1, 1, 10)
    with pytest.raises(ValueError):
        funnel_curve("ratio", 1, 0, 10)


# ---------------------------------------------------------------- means: the normal funnel


def test_normal_limits_are_target_plus_minus_z_standard_errors():
    from scipy.stats import norm

    n = np.array([1.0, 4.0, 25.0, 400.0])
    for level in (0.95, 0.998):
        z = norm.ppf(1 - (1 - level) / 2)
        lo, hi = normal_limits(7.5, 3.0, n, level)
        np.testing.assert_allclose(lo, 7.5 - z * 3.0 / np.sqrt(n), rtol=1e-14)
        np.testing.assert_allclose(hi, 7.5 + z * 3.0 / np.sqrt(n), rtol=1e-14)


def test_normal_limits_overdispersion():
    n = np.array([10.0, 100.0])
    se = 2.0 / np.sqrt(n)
    plain = normal_limits(5.0, 2.0, n, 0.95)
    mult = Overdispersion("multiplicative", phi=4.0, tau2=0.0, n_units=9, n_trimmed=2, chi2_p=0.01)
    lo, hi = normal_limits(5.0, 2.0, n, 0.95, mult)
    np.testing.assert_allclose(hi - 5.0, 2.0 * (plain[1] - 5.0))  # sqrt(phi) = 2
    np.testing.assert_allclose(5.0 - lo, 2.0 * (5.0 - plain[0]))
    shrink = Overdispersion("multiplicative", phi=0.5, tau2=0.0, n_units=9, n_trimmed=2, chi2_p=0.9)
    np.testing.assert_allclose(normal_limits(5.0, 2.0, n, 0.95, shrink), plain)  # phi <= 1 never narrows
    add = Overdispersion("additive", phi=3.0, tau2=0.25, n_units=9, n_trimmed=2, chi2_p=0.01)
    lo, hi = normal_limits(5.0, 2.0, n, 0.998, add)
    np.testing.assert_allclose(hi, 5.0 + 3.090232306167813 * np.sqrt(se**2 + 0.25), rtol=1e-12)
    none_tau = Overdispersion("additive", phi=0.8, tau2=0.0, n_units=9, n_trimmed=2, chi2_p=0.7)
    np.testing.assert_allclose(normal_limits(5.0, 2.0, n, 0.95, none_tau), plain)
    with pytest.raises(ValueError, match="SHMI"):
        normal_limits(5.0, 2.0, n, 0.95, Overdispersion("shmi", 2.0, 0.1, 9, 2, 0.01))


def test_normal_limits_edge_rules():
    lo, hi = normal_limits(1.0, [1.0, np.nan, 1.0, -1.0], [0, 5, np.nan, 5], 0.95)
    assert np.isnan(lo).all() and np.isnan(hi).all()
    lo, hi = normal_limits(1.0, 10.0, 1, 0.95)
    assert float(lo) < 0  # not clipped


def test_funnel_curve_mean_kind():
    curve = funnel_curve("mean", 12.0, 2, 500, n_points=7, sd=6.0)
    lo, hi = normal_limits(12.0, 6.0, curve["x"], 0.998)
    np.testing.assert_allclose(curve["lower998"], lo)
    np.testing.assert_allclose(curve["upper998"], hi)
    with pytest.raises(ValueError, match="standard deviation"):
        funnel_curve("mean", 12.0, 2, 500)
    with pytest.raises(ValueError, match="sd applies"):
        funnel_curve("ratio", 1.0, 2, 500, sd=3.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        funnel_curve("median", 1.0, 2, 500)


def test_examples_run():
    import doctest

    from auditreport.stats import funnel, overdispersion

    for module in (funnel, overdispersion):
        result = doctest.testmod(module)
        assert result.attempted >= 1 and result.failed == 0, module.__name__


def test_overdispersed_ratio_interval_matches_the_limits():
    """A sum's O/E interval is widened as the limits are: with SHMI, 1 lies outside it exactly when the value
    lies outside the limits; multiplicative stretches the exact interval by sqrt(phi); none leaves it exact."""
    from auditreport.stats.funnel import overdispersed_ratio_interval, ratio_limits
    from auditreport.stats.intervals import ratio_interval
    from auditreport.stats.overdispersion import estimate_ratio

    rng = np.random.default_rng(7)
    e = rng.uniform(50, 3000, 60)
    o = np.round(e * np.exp(rng.normal(0, 0.25, 60)))
    shmi = estimate_ratio(o, e, "shmi")
    lo, hi = overdispersed_ratio_interval(o, e, 0.95, shmi)
    llo, lhi = ratio_limits(e, 0.95, overdispersion=shmi)
    value = o / e
    assert shmi.tau2 > 0
    np.testing.assert_array_equal((lo > 1) | (hi < 1), (value > lhi) | (value < llo))
    mult = estimate_ratio(o, e, "multiplicative")
    mlo, mhi = overdispersed_ratio_interval(o, e, 0.95, mult)
    xlo, xhi = ratio_interval(o, e, 0.95, method="exact")
    k = np.sqrt(mult.phi)
    np.testing.assert_allclose(mhi - value, k * (xhi - value))
    np.testing.assert_allclose(value - mlo, k * (value - xlo))
    none = estimate_ratio(o, e, "none")
    nlo, nhi = overdispersed_ratio_interval(o, e, 0.95, none)
    np.testing.assert_array_equal(nlo, xlo)
    np.testing.assert_array_equal(nhi, xhi)
