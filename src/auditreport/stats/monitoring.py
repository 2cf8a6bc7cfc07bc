"""Monitoring outcomes over time: risk-adjusted CUSUM and VLAD (METHODS.md section 7).

References
----------
- Steiner SH, Cook RJ, Farewell VT, Treasure T. Monitoring surgical performance using risk-adjusted cumulative
  sum charts. Biostatistics 2000;1:441-452. (The weight, the chart and choosing h by in-control run length.)
- Lovegrove J, Valencia O, Treasure T, Sherlaw-Johnson C, Gallivan S. Monitoring the results of cardiac surgery
  by variable life-adjusted display. Lancet 1997;350:1128-1130. (VLAD.)
- Page ES. Continuous inspection schemes. Biometrika 1954;41:100-115. (CUSUM.)
- Lindley DV. The theory of queues with a single server. Proc Camb Phil Soc 1952;48:277-289. (The closed form
  of the CUSUM recursion that lets numpy evaluate it without a loop over patients.)
- Wittenberg P, Gan FF, Knoth S. R package ``vlad``. (Reference weights used in the tests.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from auditreport.stats.riskmodel import risks_and_outcomes

CUSUM_COLUMNS = ["index", "p", "y", "weight", "s", "s_signed", "signal"]


def _check_or(odds_ratio: float) -> None:
    if not (odds_ratio > 0) or odds_ratio == 1:
        raise ValueError("odds_ratio must be positive and not 1 (the chart would have nothing to detect)")


def cusum_weights(p: ArrayLike, y: ArrayLike, odds_ratio: float) -> np.ndarray:
    """Steiner et al. (2000) log-likelihood-ratio scores for an odds-ratio shift.

    W = y ln(R / (1 - p + R p)) + (1 - y) ln(1 / (1 - p + R p)), testing odds of death multiplied by R
    (alternative) against the model's odds (null) for a patient with predicted risk p and outcome y (1 = died).
    For R > 1 deaths score positive and survivals negative; for R < 1 the reverse.

    Parameters
    ----------
    p : array-like
        Predicted risks from the national model.
    y : array-like
        Outcomes, 0 or 1.
    odds_ratio : float
        R, e.g. 2 (doubling of the odds) or 0.5 (halving).

    Returns
    -------
    numpy.ndarray
    """
    _check_or(odds_ratio)
    p, y = risks_and_outcomes(p, y)
    log_denom = np.log1p((odds_ratio - 1.0) * p)  # ln(1 - p + R p)
    return y * math.log(odds_ratio) - log_denom


def cusum_values(weights: ArrayLike, start: float | ArrayLike = 0.0) -> np.ndarray:
    """CUSUM S_t = max(0, S_(t-1) + W_t) from S_0 = ``start``, without reset, along the last axis.

    Evaluated with Lindley's closed form S_t = C_t - min(-S_0, min_(k<=t) C_k), C the cumulative weight (Lindley
    1952), so no Python loop runs over patients: the same values as
    the recursion (to rounding, about 1e-15; the tests hold it to a loop). A 2-D ``weights`` holds one chart
    per row, with ``start`` one value per row, as the run-length simulation advances many charts a block of
    patients at a time.

    Parameters
    ----------
    weights : array-like
        W_t (e.g. from :func:`cusum_weights`), 1-D, or 2-D with one chart per row.
    start : float or array-like
        S_0 (>= 0), a number, or one per row of a 2-D ``weights``.

    Returns
    -------
    numpy.ndarray
        S_t, the shape of ``weights``.
    """
    w = np.asarray(weights, dtype=float)
    c = np.cumsum(w, axis=-1)
    floor = -np.asarray(start, dtype=float)[..., None] if w.ndim > 1 else -float(start)
    return c - np.minimum(floor, np.minimum.accumulate(c, axis=-1))


def cusum_path(weights: ArrayLike, h: float, reset: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A CUSUM chart of given weights: S_t = max(0, S_(t-1) + W_t) from 0, its values and its signals.

    A signal is raised when S_t > h (Steiner et al. 2000). With ``reset`` the next patient starts again from 0
    (the usual practice once a signal has been investigated, and METHODS.md section 7's rule); the value on the
    signalling row is the one that crossed h, so the crossing shows on a plot. Without a reset every S_t > h is
    a signal. Computed a stretch between signals at a time with :func:`cusum_values`; signals are few, so a
    million patients need no Python loop over patients.

    Parameters
    ----------
    weights : array-like
        W_t in the order patients were treated, 1-D.
    h : float
        Control limit (> 0).
    reset : bool

    Returns
    -------
    s : numpy.ndarray
        S_t.
    signal : numpy.ndarray of bool
        True where S_t > h.
    """
    if not h > 0:
        raise ValueError("h must be positive")
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1:
        raise ValueError("weights must be 1-D")
    if not reset:
        s = cusum_values(w)
        return s, s > h
    s = np.empty(len(w))
    signal = np.zeros(len(w), dtype=bool)
    start = 0
    while start < len(w):
        seg = cusum_values(w[start:])
        over = np.flatnonzero(seg > h)
        if over.size == 0:
            s[start:] = seg
            break
        end = start + over[0]
        s[start:end + 1] = seg[:over[0] + 1]
        signal[end] = True
        start = end + 1
    return s, signal


def ra_cusum(
    p: ArrayLike, y: ArrayLike, odds_ratio: float = 2.0, h: float = 4.5, reset: bool = True
) -> pd.DataFrame:
    """Risk-adjusted CUSUM chart (Steiner et al. 2000) of one series of patients, as a table.

    S_t = max(0, S_(t-1) + W_t) with W from :func:`cusum_weights`; a signal is raised when S_t > h
    (:func:`cusum_path`). The same recursion serves both charts: with R > 1 (e.g. 2) it accumulates evidence of
    *worse* outcomes than predicted, with R < 1 (e.g. 1/2) evidence of *better* ones. Charts conventionally draw
    the R < 1 chart below the axis, so ``s_signed`` is -S for R < 1 and S otherwise (Steiner et al. write the
    lower chart as min(0, S - W), which is the same quantity). The weights match R package ``vlad``'s
    (METHODS.md section 7, checked in the tests).

    After a signal, if ``reset`` is true the next patient starts from S = 0; the ``s`` value on the signalling
    row is the value that crossed h (so the crossing is visible on the plot), not the reset value.

    Parameters
    ----------
    p, y : array-like
        Predicted risks and outcomes (0/1), in the order patients were treated (procedure date).
    odds_ratio : float
        R, the shift to detect.
    h : float
        Control limit; state in the report whether it was fixed by configuration or chosen by
        :func:`arl_threshold` for an in-control average run length.
    reset : bool
        Restart at 0 after each signal.

    Returns
    -------
    pandas.DataFrame
        Columns ``index`` (0-based position in the input, for joining back to the patients), ``p``, ``y``,
        ``weight``, ``s``, ``s_signed``, ``signal`` (bool).
    """
    w = cusum_weights(p, y, odds_ratio)
    p_arr, y_arr = risks_and_outcomes(p, y)
    s, signal = cusum_path(w, h, reset)
    return pd.DataFrame(
        {
            "index": np.arange(len(w)),
            "p": p_arr,
            "y": y_arr.astype(int),
            "weight": w,
            "s": s,
            "s_signed": -s if odds_ratio < 1 else s,
            "signal": signal,
        },
        columns=CUSUM_COLUMNS,
    )


def vlad(p: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Variable life-adjusted display: cumulative sum of p_t - y_t (Lovegrove et al. 1997).

    The value after patient t is "statistical lives gained" against the model: expected minus observed deaths
    so far; it rises with each survival by p and falls with each death by 1 - p.

    Parameters
    ----------
    p, y : array-like
        Predicted risks and outcomes (0/1), in procedure-date order.

    Returns
    -------
    numpy.ndarray
    """
    p, y = risks_and_outcomes(p, y)
    return np.cumsum(p - y)


def run_length(p: ArrayLike, y: ArrayLike, odds_ratio: float, h: float) -> int | None:
    """Number of patients up to and including the first signal (S_t > h, starting from 0), or None if none.

    Parameters
    ----------
    p, y, odds_ratio, h
        As :func:`ra_cusum`.

    Returns
    -------
    int or None
    """
    s = cusum_values(cusum_weights(p, y, odds_ratio))
    hit = np.flatnonzero(s > h)
    return int(hit[0]) + 1 if hit.size else None


# ---------------------------------------------------------------------------------------------------------------
# Simulation of run lengths


def _shift_risk(p: np.ndarray, odds_ratio: float) -> np.ndarray:
    return odds_ratio * p / (1.0 - p + odds_ratio * p)


def simulate_run_lengths(
    p_pool: ArrayLike,
    odds_ratio: float,
    h: float,
    n_sim: int = 2000,
    seed: int | np.random.Generator | None = None,
    true_odds_ratio: float = 1.0,
    max_n: int = 10_000_000,
    stop_above: float | None = None,
    _elements_per_block: int = 1_000_000,
) -> np.ndarray:
    """Simulated run lengths of an RA-CUSUM chart started from 0 (zero-state).

    Each of ``n_sim`` independent charts monitors a stream of patients whose predicted risks are drawn with
    replacement from ``p_pool`` (the case mix, e.g. the national cohort's predicted risks) and whose outcomes are
    Bernoulli with the model risk shifted by ``true_odds_ratio`` (1 = in control). The charts are advanced
    together, a block of patients at a time, each block with :func:`cusum_values` from the state the last block
    left, so the work is vectorised in numpy; finished charts drop out.

    Parameters
    ----------
    p_pool : array-like
        Predicted risks to sample patients from.
    odds_ratio : float
        R of the chart (the shift it is tuned to detect).
    h : float
        Control limit.
    n_sim : int
    seed : int, Generator or None
    true_odds_ratio : float
        The actual shift in the simulated provider's odds of death (1 for in-control run lengths).
    max_n : int
        Charts still silent after ``max_n`` patients are stopped; their run length is returned as ``inf``.
    stop_above : float, optional
        Stop early, returning ``inf`` for unfinished charts, once the total patients simulated make the mean
        run length certainly exceed this (used by :func:`arl_threshold`, which only needs to know which side
        of the target it is on).

    Returns
    -------
    numpy.ndarray
        Run lengths (float; ``inf`` where censored).
    """
    _check_or(odds_ratio)
    rng = np.random.default_rng(seed)
    pool = np.asarray(p_pool, dtype=float)
    if pool.ndim != 1 or pool.size == 0 or ((pool < 0) | (pool > 1)).any():
        raise ValueError("p_pool must be a non-empty 1-D array of risks")
    p_true = _shift_risk(pool, true_odds_ratio) if true_odds_ratio != 1 else pool
    # Precomputed weight for death and survival of each pool patient.
    log_denom = np.log1p((odds_ratio - 1.0) * pool)
    w_die = math.log(odds_ratio) - log_denom
    w_live = -log_denom

    rl = np.full(n_sim, np.inf)
    active = np.arange(n_sim)
    s0 = np.zeros(n_sim)
    t0 = 0
    budget = None if stop_above is None else stop_above * n_sim
    done_total = 0.0
    while active.size and t0 < max_n:
        block = int(min(max(_elements_per_block // active.size, 64), max_n - t0))
        j = rng.integers(0, pool.size, size=(active.size, block))
        died = rng.random((active.size, block)) < p_true[j]
        s = cusum_values(np.where(died, w_die[j], w_live[j]), s0)
        over = s > h
        hit = over.any(axis=1)
        first = over.argmax(axis=1)
        rl[active[hit]] = t0 + first[hit] + 1
        done_total += float(np.sum(t0 + first[hit] + 1))
        s0 = s[~hit, -1]
        active = active[~hit]
        t0 += block
        if budget is not None and done_total + active.size * t0 > budget:
            break
    return rl


def simulate_arl(
    p_pool: ArrayLike,
    odds_ratio: float,
    h: float,
    n_sim: int = 2000,
    seed: int | np.random.Generator | None = None,
    true_odds_ratio: float = 1.0,
    max_n: int = 10_000_000,
) -> dict:
    """Average run length by simulation, with its Monte Carlo standard error.

    Returns
    -------
    dict
        ``arl``, ``se`` (SD / sqrt(n)), ``median``, ``n_sim``, ``n_censored`` (charts silent at ``max_n``;
        if non-zero the ARL is an underestimate and a warning is issued).
    """
    rl = simulate_run_lengths(p_pool, odds_ratio, h, n_sim, seed, true_odds_ratio, max_n)
    censored = ~np.isfinite(rl)
    if censored.any():
        warnings.warn(
            f"{censored.sum()} of {n_sim} charts did not signal within {max_n} patients", stacklevel=2
        )
    x = np.where(censored, max_n, rl)
    return {
        "arl": float(x.mean()),
        "se": float(x.std(ddof=1) / math.sqrt(n_sim)),
        "median": float(np.median(x)),
        "n_sim": int(n_sim),
        "n_censored": int(censored.sum()),
    }


def simulate_record_highs(
    p_pool: ArrayLike,
    odds_ratio: float,
    n_sim: int = 2000,
    seed: int | np.random.Generator | None = None,
    max_n: int = 10_000_000,
    _elements_per_block: int = 1_000_000,
) -> Callable[[float], tuple[np.ndarray, np.ndarray]]:
    """In-control RA-CUSUM charts simulated once and read at any control limit (common random numbers).

    A zero-state chart without reset first signals at h when its running maximum M_t = max_(k<=t) S_k first
    exceeds h, so one simulated path gives its run length at every h: the patients at which its running maximum
    rose (its record highs) and the heights reached are all that is needed. The charts are simulated as in
    :func:`simulate_run_lengths` (in control: risks resampled from ``p_pool``, Bernoulli outcomes, a block of
    patients at a time) but each chart is only advanced until its running maximum passes the highest limit asked
    for so far; asking for a higher limit later continues the same charts from where they stopped. Every limit is
    thus read from the same charts, so the run length of each chart, and the average run length, never decrease
    as h increases, and a search for h over them is a search over a fixed, monotone function.

    Parameters
    ----------
    p_pool : array-like
        Predicted risks to sample patients from.
    odds_ratio : float
        R of the chart.
    n_sim : int
        Number of charts.
    seed : int, Generator or None
    max_n : int
        Charts still below a limit after ``max_n`` patients count as never signalling there (run length ``inf``).

    Returns
    -------
    callable
        ``run_lengths(h) -> (rl, censored)``: the run length of every chart at limit ``h`` (float, ``inf`` where
        censored at ``max_n``) and a boolean array marking those.
    """
    _check_or(odds_ratio)
    rng = np.random.default_rng(seed)
    pool = np.asarray(p_pool, dtype=float)
    if pool.ndim != 1 or pool.size == 0 or ((pool < 0) | (pool > 1)).any():
        raise ValueError("p_pool must be a non-empty 1-D array of risks")
    log_r, w_live = math.log(odds_ratio), -np.log1p((odds_ratio - 1.0) * pool)  # a death scores log_r more
    # State of every chart: value, running maximum, patients so far; records as (chart, patient, height).
    state = {"s": np.zeros(n_sim), "m": np.zeros(n_sim), "t": np.zeros(n_sim, dtype=np.int64), "cap": 0.0}
    records: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    sorted_records: dict[str, np.ndarray] = {}

    def advance(cap: float) -> None:
        active = np.flatnonzero((state["m"] <= cap) & (state["t"] < max_n))
        while active.size:
            # Blocks grow with the charts' age, so the few long charts left at the end waste little.
            block = int(max(min(_elements_per_block // active.size, 2 * state["t"][active].max()), 64))
            j = rng.integers(0, pool.size, size=(active.size, block))
            died = rng.random((active.size, block)) < pool[j]
            s = cusum_values(w_live[j] + log_r * died, state["s"][active])
            m = np.maximum(np.maximum.accumulate(s, axis=1), state["m"][active][:, None])
            t = state["t"][active]
            over = m > cap
            hit = over.any(axis=1)
            stop = np.where(hit, over.argmax(axis=1), block - 1)  # the last column each chart lives through
            stop = np.minimum(stop, np.maximum(max_n - t - 1, 0))
            previous = np.concatenate([state["m"][active][:, None], m[:, :-1]], axis=1)
            rows, cols = np.nonzero((m > previous) & (np.arange(block) <= stop[:, None]))
            records.append((active[rows], t[rows] + cols + 1, m[rows, cols]))
            last = np.arange(active.size)
            state["s"][active], state["m"][active] = s[last, stop], m[last, stop]
            state["t"][active] = t + stop + 1
            active = active[(~hit) & (state["t"][active] < max_n)]
        state["cap"] = cap
        chart, when, height = (np.concatenate(parts) for parts in zip(*records, strict=True))
        order = np.lexsort((when, chart))
        sorted_records.update(chart=chart[order], when=when[order], height=height[order])

    def run_lengths(h: float) -> tuple[np.ndarray, np.ndarray]:
        if h > state["cap"] or not records:
            advance(max(h, state["cap"]))
        rl = np.full(n_sim, np.inf)
        idx = np.flatnonzero(sorted_records["height"] > h)
        charts, first = np.unique(sorted_records["chart"][idx], return_index=True)
        rl[charts] = sorted_records["when"][idx[first]]
        return rl, ~np.isfinite(rl)

    return run_lengths


def arl_threshold(
    p_pool: ArrayLike,
    odds_ratio: float,
    target_arl: float,
    n_sim: int = 2000,
    seed: int | None = 0,
    h_tol: float = 0.005,
    max_iter: int = 60,
) -> float:
    """Control limit h giving an in-control average run length close to ``target_arl``, by simulation.

    ``n_sim`` in-control charts (outcomes Bernoulli with the model's own risks, case mix resampled from
    ``p_pool``) are simulated once with :func:`simulate_record_highs`, and every candidate h is read from those
    same charts (common random numbers), so the simulated ARL is a monotone function of h and the search cannot
    be misled by noise between evaluations. The charts are advanced only as far as the highest h tried: starting
    from h = 1, h is raised by extrapolating log ARL linearly in h (the in-control ARL grows roughly
    exponentially with h; Siegmund's approximation) from the ARLs at h/2 and h, a little beyond the estimate,
    until the ARL reaches the target; then h is bisected between the highest h below the target and the lowest
    at or above it until the bracket is narrower than ``h_tol``. Simulating the charts to the final h costs about
    ``n_sim x target_arl`` patients in all. The Monte Carlo error of the ARL is about target/sqrt(n_sim) (run
    lengths are roughly geometric), so h is determined to that precision. Steiner et al. (2000) likewise set h
    from simulated in-control run lengths on their own patients' risks; the h that gives a stated ARL depends on
    the case mix, so it must be recomputed for each audit's ``p_pool`` rather than borrowed.

    Parameters
    ----------
    p_pool : array-like
        Predicted risks of the population the chart will monitor (e.g. the national cohort).
    odds_ratio : float
        R of the chart (2 for the upper chart, 0.5 for the lower).
    target_arl : float
        Desired in-control ARL, in patients.
    n_sim : int
        Charts simulated.
    seed : int or None
    h_tol : float
        Width of the final bracket on h.
    max_iter : int
        Steps allowed to reach the target, and again to bisect.

    Returns
    -------
    float
        h.
    """
    if not target_arl > 1:
        raise ValueError("target_arl must exceed 1")
    run_lengths = simulate_record_highs(p_pool, odds_ratio, n_sim, seed, max_n=int(50 * target_arl) + 1000)

    def arl(h: float) -> float:
        return float(np.mean(run_lengths(h)[0]))  # inf if any chart is censored: certainly above target

    lo, hi = 0.0, 1.0
    for _ in range(max_iter):
        a_hi = arl(hi)
        if a_hi >= target_arl:
            break
        a_half = arl(hi / 2)
        slope = (math.log(a_hi) - math.log(a_half)) / (hi / 2) if a_hi > a_half else 0.0
        step = (math.log(target_arl) - math.log(a_hi)) / slope if slope > 0 else hi
        lo, hi = hi, hi + min(max(1.1 * step + 0.05, h_tol), hi)  # a little beyond the estimate, at most doubling
    else:
        raise RuntimeError("could not bracket the target ARL")
    for _ in range(max_iter):
        if hi - lo < h_tol:
            break
        mid = (lo + hi) / 2
        if arl(mid) < target_arl:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def detection_delay(
    p_pool: ArrayLike,
    h: float,
    odds_ratio: float = 2.0,
    true_odds_ratio: float = 2.0,
    n_sim: int = 2000,
    seed: int | None = 0,
    cases_per_year: float | None = None,
    max_n: int = 10_000_000,
) -> dict:
    """How long an RA-CUSUM takes to signal for a provider whose odds of death are really shifted.

    Zero-state delay: the provider's odds are multiplied by ``true_odds_ratio`` from the first patient on and
    the chart starts at 0; run lengths are simulated with :func:`simulate_run_lengths`.

    Parameters
    ----------
    p_pool, h, odds_ratio
        As :func:`arl_threshold`.
    true_odds_ratio : float
        The provider's actual shift (2 = odds of death doubled).
    n_sim, seed, max_n
        Simulation settings.
    cases_per_year : float, optional
        The provider's case rate, to express the delay in days (patients / (cases_per_year / 365.25)).

    Returns
    -------
    dict
        ``median_patients``, ``mean_patients``, ``q25_patients``, ``q75_patients``, ``proportion_signalled``
        and, if a case rate is given, ``median_days`` and ``cases_per_year``.
    """
    rl = simulate_run_lengths(p_pool, odds_ratio, h, n_sim, seed, true_odds_ratio, max_n)
    finite = np.isfinite(rl)
    # Censored charts are longest, so placing them at +inf keeps the quantiles right while < half censored.
    q25, med, q75 = np.quantile(np.where(finite, rl, np.inf), [0.25, 0.5, 0.75])
    out = {
        "median_patients": float(med),
        "mean_patients": float(rl[finite].mean()) if finite.any() else float("nan"),
        "q25_patients": float(q25),
        "q75_patients": float(q75),
        "proportion_signalled": float(finite.mean()),
        "h": float(h),
        "odds_ratio": float(odds_ratio),
        "true_odds_ratio": float(true_odds_ratio),
    }
    if cases_per_year is not None:
        out["cases_per_year"] = float(cases_per_year)
        out["median_days"] = float(med / (cases_per_year / 365.25))
    return out
