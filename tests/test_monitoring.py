"""RA-CUSUM, VLAD and run-length simulation (METHODS.md section 7), against R vlad's weights and a plain loop."""

import time

import numpy as np
import pytest
from oracles import cusum_recursion

from auditreport.stats.monitoring import (
    arl_threshold,
    cusum_path,
    cusum_values,
    cusum_weights,
    detection_delay,
    ra_cusum,
    run_length,
    simulate_arl,
    simulate_record_highs,
    simulate_run_lengths,
    vlad,
)


def parsonnet_risk(score):
    # The risk model used in R package vlad's tests.
    return 1 / (1 + np.exp(3.68 - 0.077 * np.asarray(score, dtype=float)))


@pytest.mark.parametrize(
    "score, odds_ratio, survive, die",
    [(0, 2, -0.024, 0.669), (50, 2, -0.433, 0.26), (0, 0.5, 0.012, -0.681), (50, 0.5, 0.316, -0.377)],
)
def test_weights_match_vlad(score, odds_ratio, survive, die):
    p = parsonnet_risk([score, score])
    w = cusum_weights(p, [0, 1], odds_ratio)
    assert round(w[0], 3) == survive and round(w[1], 3) == die


def test_vlad_literal():
    np.testing.assert_allclose(vlad([0.1, 0.2, 0.5, 0.05], [0, 1, 0, 1]), [0.1, -0.7, -0.2, -1.15])


def test_ra_cusum_literal_signal_and_reset():
    p = [0.1] * 6
    y = [1, 1, 1, 0, 1, 0]
    die, live = np.log(2 / 1.1), -np.log(1.1)
    out = ra_cusum(p, y, odds_ratio=2, h=1.5)
    assert list(out.columns) == ["index", "p", "y", "weight", "s", "s_signed", "signal"]
    np.testing.assert_allclose(out["weight"], [die, die, die, live, die, live])
    np.testing.assert_allclose(out["s"], [die, 2 * die, 3 * die, 0, die, die + live])
    assert out["signal"].tolist() == [False, False, True, False, False, False]
    no_reset = ra_cusum(p, y, odds_ratio=2, h=1.5, reset=False)
    assert no_reset["signal"].tolist() == [False, False, True, True, True, True]
    assert run_length(p, y, 2, 1.5) == 3
    assert run_length(p, [0] * 6, 2, 1.5) is None


def test_lower_chart_is_negative():
    p = [0.3] * 20
    out = ra_cusum(p, [0] * 20, odds_ratio=0.5, h=2)
    assert (out["s"] >= 0).all() and (out["s_signed"] <= 0).all()
    assert out["signal"].any()  # a run of survivals at 30% risk is evidence of better care
    assert (out["s_signed"] == -out["s"]).all()


def test_block_cusum_matches_recursion():
    rng = np.random.default_rng(3)
    w = rng.normal(-0.05, 0.5, size=(5, 300))
    s0 = rng.uniform(0, 2, size=5)
    expected = np.vstack([cusum_recursion(w[r], np.inf, start=s0[r])[0] for r in range(5)])
    # Across a block boundary too: the state carries.
    first = cusum_values(w[:, :120], s0)
    second = cusum_values(w[:, 120:], first[:, -1])
    np.testing.assert_allclose(np.hstack([first, second]), expected, atol=1e-12)
    np.testing.assert_allclose(cusum_values(w[2]), cusum_recursion(w[2], np.inf)[0], atol=1e-12)


@pytest.mark.parametrize("reset", [True, False])
def test_cusum_path_matches_recursion(reset):
    """Both charts on a series with many signals: values to rounding, the same signals."""
    rng = np.random.default_rng(8)
    p = rng.uniform(0.01, 0.4, 5000)
    u = rng.random(5000)
    for r, h, shift in ((2.0, 3.0, 1.6), (0.5, 2.5, 0.5)):
        y = (u < p * shift).astype(int)  # worse than predicted for the upper chart, better for the lower
        w = cusum_weights(p, y, r)
        s, signal = cusum_path(w, h, reset=reset)
        ref_s, ref_signal = cusum_recursion(w, h, reset=reset)
        np.testing.assert_allclose(s, ref_s, atol=1e-9)
        assert (signal == ref_signal).all() and signal.sum() > (5 if reset else 50)
        table = ra_cusum(p, y, odds_ratio=r, h=h, reset=reset)
        np.testing.assert_array_equal(table["s"], s)
        assert (table["signal"] == signal).all()


def test_cusum_path_rejects_bad_limit():
    with pytest.raises(ValueError, match="h must be positive"):
        cusum_path([0.1, 0.2], 0)


def test_simulated_run_lengths_match_direct_loop():
    # Small ARL so a plain loop is cheap: the vectorised simulator must agree in distribution.
    pool = parsonnet_risk(np.arange(0, 40, 2))
    rng = np.random.default_rng(11)
    direct = []
    for _ in range(1500):
        j = rng.integers(0, pool.size, 2000)
        y = rng.random(2000) < pool[j]
        direct.append(run_length(pool[j], y.astype(int), 2, 1.5))
    vec = simulate_run_lengths(pool, 2, 1.5, n_sim=3000, seed=5, _elements_per_block=5000)
    assert np.mean(vec) == pytest.approx(np.mean(direct), rel=0.08)



def test_record_highs_give_the_direct_loop_run_lengths_at_every_limit():
    # One set of simulated charts read at several limits: each limit's mean run length agrees with a plain loop
    # over patients at that limit, and no chart's run length falls as the limit rises (common random numbers).
    pool = parsonnet_risk(np.arange(0, 40, 2))
    rng = np.random.default_rng(11)
    limits = (0.5, 1.0, 1.5, 2.0)
    direct = {h: [] for h in limits}
    for _ in range(1500):
        j = rng.integers(0, pool.size, 3000)
        y = (rng.random(3000) < pool[j]).astype(int)
        for h in limits:
            direct[h].append(run_length(pool[j], y, 2, h))
    run_lengths = simulate_record_highs(pool, 2, n_sim=3000, seed=5, _elements_per_block=5000)
    previous = np.zeros(3000)
    for h in (1.0, 0.5, 2.0, 1.5):  # out of order: a lower limit is read from charts already run further
        rl, censored = run_lengths(h)
        assert not censored.any()
        assert np.mean(rl) == pytest.approx(np.mean(direct[h]), rel=0.08)
    for h in limits:
        rl, _ = run_lengths(h)
        assert (rl >= previous).all()
        previous = rl


def test_record_highs_censor_at_max_n():
    pool = parsonnet_risk(np.arange(0, 40, 2))
    rl, censored = simulate_record_highs(pool, 2, n_sim=200, seed=3, max_n=50)(6.0)
    assert censored.any() and np.isinf(rl[censored]).all() and (rl[~censored] <= 50).all()

@pytest.fixture(scope="module")
def pool():
    # A cardiac-surgery-like case mix: Parsonnet scores skewed to low values, mean mortality about 5%.
    rng = np.random.default_rng(2024)
    return parsonnet_risk(np.clip(rng.gamma(1.2, 7, 5000), 0, 70))


def test_arl_threshold_and_detection_delay(pool):
    """h for an in-control ARL of 1000; fresh runs confirm it; doubled odds are caught (quotable delay).

    Run with ``pytest -s`` to see the figures printed.
    """
    target = 1000
    t0 = time.perf_counter()
    h = arl_threshold(pool, odds_ratio=2, target_arl=target, n_sim=2000, seed=1)
    check = simulate_arl(pool, 2, h, n_sim=2000, seed=12345)
    assert check["n_censored"] == 0
    assert abs(check["arl"] - target) / target < 0.15

    delay = detection_delay(pool, h, odds_ratio=2, true_odds_ratio=2, n_sim=2000, seed=7, cases_per_year=200)
    assert delay["proportion_signalled"] == 1.0
    # Far faster than the in-control ARL: the chart does detect a doubling of the odds.
    assert delay["median_patients"] < target / 5
    assert delay["median_days"] == pytest.approx(delay["median_patients"] * 365.25 / 200)
    elapsed = time.perf_counter() - t0
    print(
        f"\nRA-CUSUM R=2, target in-control ARL {target}: h = {h:.3f}; fresh in-control ARL "
        f"{check['arl']:.0f} (se {check['se']:.0f}); doubled odds: median delay "
        f"{delay['median_patients']:.0f} patients (IQR {delay['q25_patients']:.0f}-{delay['q75_patients']:.0f}),"
        f" {delay['median_days']:.0f} days at 200 cases/year; {elapsed:.1f} s"
    )
    assert elapsed < 20


def test_lower_chart_threshold(pool):
    h = arl_threshold(pool, odds_ratio=0.5, target_arl=500, n_sim=1000, seed=2)
    check = simulate_arl(pool, 0.5, h, n_sim=1000, seed=99)
    assert abs(check["arl"] - 500) / 500 < 0.2


def test_input_validation():
    with pytest.raises(ValueError):
        cusum_weights([0.1], [2], 2)
    with pytest.raises(ValueError):
        cusum_weights([0.1], [1], 1)
    with pytest.raises(ValueError):
        vlad([1.2], [0])
