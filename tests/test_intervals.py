"""Intervals against METHODS.md section 1 reference figures (PHEindicatormethods test sheets)."""

import numpy as np
import pytest

from auditreport.stats.intervals import Z95, Z998, byars, exact_poisson, ramr, ratio_interval, wilson

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
