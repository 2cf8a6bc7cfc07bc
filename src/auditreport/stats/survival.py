"""Survival analysis for audit reports: Kaplan-Meier, survival at horizons, median, log-rank, Cox.

Reference behaviour is R's ``survival`` package (Therneau, version 3.5-3), see METHODS.md section 6. Where R and
lifelines differ (confidence-interval transform, median convention) the function takes an argument and the
docstring says which is which.

References
----------
- Kaplan EL, Meier P. Nonparametric estimation from incomplete observations. JASA 1958;53:457-481.
- Greenwood M. The natural duration of cancer. Reports on Public Health and Medical Subjects 1926;33.
- Kalbfleisch JD, Prentice RL. The Statistical Analysis of Failure Time Data, 2nd ed. Wiley 2002 (log-log CI).
- Therneau TM. survival: A Package for Survival Analysis in R, version 3.5-3, ``survfit``/``survfit_confint``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

CI_TRANSFORMS = ("log", "log-log", "plain")

KM_COLUMNS = ["time", "at_risk", "events", "censored", "survival", "lower", "upper"]


def _as_arrays(durations, events) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(durations, dtype=float)
    e = np.asarray(events)
    if t.ndim != 1 or e.shape != t.shape:
        raise ValueError("durations and events must be 1-D arrays of the same length")
    if np.isnan(t).any():
        raise ValueError("durations contain missing values")
    if (t < 0).any():
        raise ValueError("durations must be non-negative")
    if e.dtype == bool:
        e = e.astype(int)
    e = np.asarray(e, dtype=float)
    if np.isnan(e).any() or not np.isin(e, (0, 1)).all():
        raise ValueError("events must be 0 (censored) or 1 (event); recode R-style 1/2 status first")
    return t, e.astype(int)


def _check_transform(ci_transform: str) -> None:
    if ci_transform not in CI_TRANSFORMS:
        raise ValueError(f"ci_transform must be one of {CI_TRANSFORMS}, got {ci_transform!r}")


def _confint(
    surv: np.ndarray, greenwood_sum: np.ndarray, alpha: float, ci_transform: str
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise CI for S(t) from the Greenwood sum, as R's ``survfit_confint`` computes it.

    ``greenwood_sum`` is sum d/(n(n-d)), i.e. the variance of the cumulative hazard -log S; R's ``std.err`` is
    its square root.
    """
    z = norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(greenwood_sum)
        if ci_transform == "log":
            # R default: symmetric on log S, upper truncated at 1.
            lower = surv * np.exp(-z * se)
            upper = np.minimum(surv * np.exp(z * se), 1.0)
        elif ci_transform == "log-log":
            # Symmetric on log(-log S); se of log(-log S) is se / |log S| (delta method). A larger
            # log(-log S) is a smaller S, hence the sign swap.
            theta = np.log(-np.log(surv))
            se_theta = se / np.abs(np.log(surv))
            lower = np.exp(-np.exp(theta + z * se_theta))
            upper = np.exp(-np.exp(theta - z * se_theta))
        else:  # plain
            lower = np.maximum(surv - z * se * surv, 0.0)
            upper = np.minimum(surv + z * se * surv, 1.0)
    # Before the first event S = 1 with zero variance: a degenerate interval [1, 1] (lifelines' choice; R
    # returns NA for log-log there). Once S = 0 the Greenwood term is infinite and R returns NA: keep NaN.
    one = surv >= 1.0
    lower = np.where(one, 1.0, lower)
    upper = np.where(one, 1.0, upper)
    zero = surv <= 0.0
    lower = np.where(zero, np.nan, lower)
    upper = np.where(zero, np.nan, upper)
    return lower, upper


def kaplan_meier(durations, events, alpha: float = 0.05, ci_transform: str = "log") -> pd.DataFrame:
    """Kaplan-Meier step table with Greenwood pointwise confidence intervals.

    Parameters
    ----------
    durations : array-like
        Follow-up time of each patient (any unit; the table keeps it).
    events : array-like
        1 if the patient died (event) at ``durations``, 0 if censored. R's ``Surv`` 1/2 coding must be recoded
        (``lifelines.datasets.load_lung`` is already 0/1).
    alpha : float
        1 - confidence level.
    ci_transform : {"log", "log-log", "plain"}
        Scale on which the Greenwood interval is symmetric. ``"log"`` is R ``survfit``'s default
        (``conf.type="log"``): S exp(+/- z se), upper truncated at 1. ``"log-log"`` is lifelines' default and R's
        ``conf.type="log-log"`` (Kalbfleisch and Prentice): exp(-exp(log(-log S) +/- z se / |log S|)), always
        inside [0, 1]. ``"plain"``: S(1 +/- z se), clipped to [0, 1]. Here se^2 = sum d/(n(n-d)) is Greenwood's
        variance of -log S, as R's ``std.err``.

    Returns
    -------
    pandas.DataFrame
        One row per distinct time (event or censoring), with a first row at time 0 (S = 1): ``time``,
        ``at_risk`` (number with duration >= time), ``events``, ``censored``, ``survival``, ``lower``,
        ``upper``. ``survival`` is right-continuous: the value from ``time`` until the next row's time.
        Rows at a time 0 with events or censorings are merged into the first row, whose survival then
        already includes deaths at time 0, as in R.

    Notes
    -----
    The product-limit estimate is computed directly (it is the same number lifelines' ``KaplanMeierFitter``
    gives; the tests check this), so that the Greenwood sum is available for every transform. Before the first
    event the interval is [1, 1]; after the curve reaches 0 the interval is NaN (R gives NA).
    """
    _check_transform(ci_transform)
    t, e = _as_arrays(durations, events)
    times = np.unique(np.concatenate([[0.0], t]))
    # Counts per distinct time via searchsorted on the sorted durations.
    order = np.argsort(t, kind="stable")
    ts, es = t[order], e[order]
    left = np.searchsorted(ts, times, side="left")
    right = np.searchsorted(ts, times, side="right")
    at_risk = len(ts) - left
    cum_e = np.concatenate([[0], np.cumsum(es)])
    d = cum_e[right] - cum_e[left]
    c = (right - left) - d
    n = at_risk.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n > 0, 1.0 - d / n, 1.0)
        # n == d makes the Greenwood term infinite (S drops to 0); that is R's behaviour too.
        gw_terms = np.where(d > 0, d / (n * (n - d)), 0.0)
    surv = np.cumprod(factor)
    gw = np.cumsum(gw_terms)
    lower, upper = _confint(surv, gw, alpha, ci_transform)
    return pd.DataFrame(
        {
            "time": times,
            "at_risk": at_risk.astype(int),
            "events": d.astype(int),
            "censored": c.astype(int),
            "survival": surv,
            "lower": lower,
            "upper": upper,
        },
        columns=KM_COLUMNS,
    )


def survival_at(
    durations,
    events,
    horizons: float | Sequence[float],
    alpha: float = 0.05,
    ci_transform: str = "log",
) -> pd.DataFrame:
    """Kaplan-Meier survival and its CI at given horizons (e.g. 30 days, 1 year).

    The estimate is the right-continuous step value: S(h) includes deaths at exactly ``h``, as R's
    ``summary(survfit(...), times = h)`` does. ``at_risk`` is the number still under follow-up at ``h``
    (duration >= h), also as R reports ``n.risk`` for ``times``.

    A horizon beyond the last follow-up time (the largest duration, event or censored) gives NaN for the
    estimate and interval, because the curve is undefined there; R's ``summary.survfit`` refuses such times
    unless ``extend=TRUE``. A horizon exactly at the last follow-up time is estimated. Negative horizons are an
    error.

    Parameters
    ----------
    durations, events, alpha, ci_transform
        As :func:`kaplan_meier`.
    horizons : float or sequence of float
        Times at which to read the curve, in the units of ``durations``.

    Returns
    -------
    pandas.DataFrame
        Columns ``horizon, survival, lower, upper, at_risk``, one row per horizon in the order given.
    """
    h = np.atleast_1d(np.asarray(horizons, dtype=float))
    if (h < 0).any() or np.isnan(h).any():
        raise ValueError("horizons must be non-negative numbers")
    table = kaplan_meier(durations, events, alpha=alpha, ci_transform=ci_transform)
    t, _ = _as_arrays(durations, events)
    idx = np.searchsorted(table["time"].to_numpy(), h, side="right") - 1
    beyond = h > t.max() if len(t) else np.ones_like(h, dtype=bool)
    out = pd.DataFrame(
        {
            "horizon": h,
            "survival": table["survival"].to_numpy()[idx],
            "lower": table["lower"].to_numpy()[idx],
            "upper": table["upper"].to_numpy()[idx],
            "at_risk": (t[None, :] >= h[:, None]).sum(axis=1),
        }
    )
    out.loc[beyond, ["survival", "lower", "upper"]] = np.nan
    return out
