"""Over-dispersion estimates (METHODS.md section 3; FunnelPlotR tests)."""

import numpy as np
import pytest

from auditreport.stats.overdispersion import (
    NONE,
    Overdispersion,
    dersimonian_laird_tau2,
    estimate_mean,
    estimate_proportion,
    estimate_ratio,
    shmi_truncation_mask,
    winsorise,
)

NUM = [100, 150, 180, 80, 120, 225]
DEN = [108, 112, 165, 95, 100, 220]


def test_funnelplotr_phi_reference():
    """FunnelPlotR tests/testthat/test-classes_methods.R: ``funnel_plot(num, denom, group)``
    with its defaults (data_type "SR", sr_method "SHMI", trim_by 0.1) has
    round(phi, 6) == 2.948033.  Six units: the rank rule truncates none."""
    od = estimate_ratio(NUM, DEN, "shmi")
    assert od.phi == pytest.approx(2.948033, rel=1e-6)
    assert round(od.phi, 6) == 2.948033
    assert od.n_units == 6 and od.n_trimmed == 0
    # tau^2 from tau_func with S = 1/sqrt(E), so w = E.
    e = np.array(DEN, float)
    want = (6 * od.phi - 5) / (e.sum() - (e**2).sum() / e.sum())
    assert od.tau2 == pytest.approx(want, rel=1e-12)
    assert od.chi2_p == pytest.approx(__import__("scipy").stats.chi2.sf(6 * od.phi, 6))


def test_none():
    od = estimate_ratio(NUM, DEN, "none")
    assert od == NONE and od.phi == 1.0 and od.tau2 == 0.0 and od.chi2_p is None
    assert estimate_proportion([1, 2], [10, 10], 0.15, "none").phi == 1.0
    assert od.to_dict() == {"method": "none", "phi": 1.0, "tau2": 0.0, "n_units": 0, "n_trimmed": 0, "chi2_p": None}


def test_multiplicative_ratio_is_winsorised_mean_square():
    rng = np.random.default_rng(1)
    e = rng.uniform(5, 200, 40)
    o = rng.poisson(e * rng.gamma(20, 1 / 20, 40))
    od = estimate_ratio(o, e, "multiplicative")
    z = (o - e) / np.sqrt(e)
    lo, hi = np.quantile(z, [0.1, 0.9])
    assert od.phi == pytest.approx(np.mean(np.clip(z, lo, hi) ** 2), rel=1e-12)
    assert od.n_units == 40 and od.n_trimmed == 8
    add = estimate_ratio(o, e, "additive")
    assert add.phi == od.phi
    assert add.tau2 == pytest.approx(max(0, (40 * od.phi - 39) / (e.sum() - (e**2).sum() / e.sum())))


def test_proportion_z_and_tau2():
    x = np.array([10, 30, 22, 5, 40, 18, 25, 12, 33, 9, 15, 27])
    n = np.array([100, 150, 120, 60, 160, 110, 130, 90, 140, 70, 100, 125])
    p0 = x.sum() / n.sum()
    od = estimate_proportion(x, n, p0, "additive")
    s = np.sqrt(p0 * (1 - p0) / n)
    z = (x / n - p0) / s
    wz, k = winsorise(z)
    assert od.phi == pytest.approx(np.mean(wz**2)) and od.n_trimmed == k == 4
    assert od.tau2 == pytest.approx(dersimonian_laird_tau2(od.phi, 12, s))
    with pytest.raises(ValueError):
        estimate_proportion(x, n, p0, "shmi")
    with pytest.raises(ValueError):
        estimate_proportion(x, n, 1.2, "additive")


def test_shmi_truncation_rule():
    # 20 units: floor(rank * 10 / 21) is 0 for ranks 1-2 and 9 for ranks 19-20.
    z = np.arange(20.0)
    kept = shmi_truncation_mask(z)
    assert kept.sum() == 16 and not kept[[0, 1, 18, 19]].any()
    assert shmi_truncation_mask(np.arange(6.0)).all()


def test_shmi_rounds_expected_to_2dp():
    a = estimate_ratio(NUM, np.array(DEN) + 0.004, "shmi")
    b = estimate_ratio(NUM, DEN, "shmi")
    assert a.phi == b.phi


def test_dl_zero_when_underdispersed():
    assert dersimonian_laird_tau2(0.5, 10, np.ones(10)) == 0.0
    assert dersimonian_laird_tau2(2.0, 0, np.array([])) == 0.0


def test_invalid_method_and_dataclass():
    with pytest.raises(ValueError):
        estimate_ratio(NUM, DEN, "bogus")
    od = Overdispersion("multiplicative", 2.25, 0.0, 10, 2, 0.01)
    assert od.inflation == 1.5
    with pytest.raises(AttributeError):
        od.phi = 3.0  # frozen


def test_estimate_mean_equals_the_z_score_definition():
    """z = (mean - mu0) / (sd / sqrt n), winsorised 10%/90% (numpy type 7), phi = mean z^2, DL with w = n / sd^2."""
    rng = np.random.default_rng(5)
    n = rng.integers(5, 300, size=40).astype(float)
    means = 10.0 + rng.normal(0, 1.5, size=40) + rng.normal(0, 4.0, size=40) / np.sqrt(n)
    sd = 4.0
    z = (means - 10.0) / (sd / np.sqrt(n))
    lo, hi = np.quantile(z, [0.1, 0.9])
    phi = np.mean(np.clip(z, lo, hi) ** 2)
    w = n / sd**2
    tau2 = max(0.0, (40 * phi - 39) / (w.sum() - (w**2).sum() / w.sum()))
    for method in ("multiplicative", "additive"):
        od = estimate_mean(means, n, 10.0, sd, method)
        assert od.method == method and od.n_units == 40
        assert od.phi == pytest.approx(phi, rel=1e-12)
        assert od.tau2 == pytest.approx(tau2, rel=1e-12)
        assert od.n_trimmed == int(np.sum((z < lo) | (z > hi)))
    assert estimate_mean(means, n, 10.0, sd, "none") is NONE
    with pytest.raises(ValueError, match="ratios"):
        estimate_mean(means, n, 10.0, sd, "shmi")


def test_estimate_mean_ignores_unusable_units_and_takes_per_unit_sd():
    od = estimate_mean([9.0, 10.0, 11.0, np.nan, 12.0], [25, 25, 25, 25, 0], 10.0, [5.0, 5.0, 5.0, 5.0, 5.0],
                       "multiplicative")
    assert od.n_units == 3
    assert od.phi == pytest.approx(np.mean(np.clip([-1.0, 0.0, 1.0], -0.8, 0.8) ** 2))
