"""Slow, plain reference versions of statistics that ``auditreport.stats`` computes fast.

Each oracle is the textbook definition written the obvious way (a loop over patients or event times), so that a
test can hold the vectorised function the pipeline runs to it on random data, besides R's published figures.
They are not used by the package.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2


def logrank_vs_rest(durations, events, in_unit) -> dict:
    """Two-group log-rank test of one unit against everyone else, by a loop over the distinct event times.

    At each event time with n at risk and d deaths (n1 and d1 in the unit): E += n1 d / n,
    V += n1 (n - n1) d (n - d) / (n^2 (n - 1)); chi2 = (O - E)^2 / V on 1 df (Peto and Peto 1972; R
    ``survdiff`` with rho = 0). Raises if the unit is empty or everyone.
    """
    t = np.asarray(durations, dtype=float)
    e = np.asarray(events, dtype=int)
    g = np.asarray(in_unit, dtype=bool)
    if g.all() or not g.any():
        raise ValueError("in_unit must select some but not all patients")
    observed = expected = var = 0.0
    for time in np.unique(t[e == 1]):
        at_risk = t >= time
        dead = (t == time) & (e == 1)
        n, n1 = at_risk.sum(), (at_risk & g).sum()
        d, d1 = dead.sum(), (dead & g).sum()
        observed += d1
        expected += n1 * d / n
        if n > 1:
            var += n1 * (n - n1) * d * (n - d) / (n**2 * (n - 1.0))
    stat = (observed - expected) ** 2 / var if var > 0 else float("nan")
    return {
        "chi2": stat,
        "df": 1,
        "p_value": float(chi2.sf(stat, 1)) if var > 0 else float("nan"),
        "observed": float(observed),
        "expected": float(expected),
    }


def cusum_recursion(weights, h: float, reset: bool = True, start: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """S_t = max(0, S_(t-1) + W_t) one patient at a time; signal when S_t > h, then restart from 0 if ``reset``.

    Steiner et al. (2000)'s chart as written in METHODS.md section 7; ``h = inf`` gives the chart without signals.
    """
    w = np.asarray(weights, dtype=float)
    s = np.empty(len(w))
    signal = np.zeros(len(w), dtype=bool)
    cur = start
    for i, wi in enumerate(w):
        cur = max(0.0, cur + wi)
        s[i] = cur
        if cur > h:
            signal[i] = True
            if reset:
                cur = 0.0
    return s, signal


def median_by_scan(times, curve, convention: str = "r") -> float:
    """Time a right-continuous step curve first reaches 0.5, by scanning its steps.

    ``"lifelines"``: the first time the curve is <= 0.5. ``"r"`` (R ``quantile.survfit``): the same, unless the
    curve is exactly 0.5 there, when the midpoint between that time and the next time the curve drops below 0.5
    (or that time, if it never does). NaN points are skipped; NaN if the curve never reaches 0.5.
    """
    tol = np.sqrt(np.finfo(float).eps)
    steps = [(float(t), float(s)) for t, s in zip(times, curve, strict=True) if not np.isnan(s)]
    for i, (t, s) in enumerate(steps):
        if s <= 0.5 + tol:
            if convention == "r" and abs(s - 0.5) < tol:
                for t_next, s_next in steps[i + 1:]:
                    if s_next < s - tol:
                        return (t + t_next) / 2
            return t
    return float("nan")
