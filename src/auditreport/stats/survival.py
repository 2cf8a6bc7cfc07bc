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
- Brookmeyer R, Crowley J. A confidence interval for the median survival time. Biometrics 1982;38:29-41.
- Peto R, Peto J. Asymptotically efficient rank invariant test procedures. JRSS A 1972;135:185-207 (log-rank).
- Cox DR. Regression models and life-tables. JRSS B 1972;34:187-220; Breslow NE, discussion of Cox 1972
  (baseline hazard).
- Grambsch PM, Therneau TM. Proportional hazards tests and diagnostics based on weighted residuals.
  Biometrika 1994;81:515-526.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import chi2 as chi2_dist
from scipy.stats import norm

from .grouping import group_codes

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


def _at_risk(sorted_durations: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Patients still under follow-up (duration >= time) at each of ``times``, by binary search."""
    return len(sorted_durations) - np.searchsorted(sorted_durations, times, side="left")


def _deaths_at(sorted_event_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Deaths at each of ``times``, counted in the sorted death times by binary search."""
    return np.searchsorted(sorted_event_times, times, side="right") - np.searchsorted(
        sorted_event_times, times, side="left"
    )


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


def kaplan_meier(
    durations: ArrayLike, events: ArrayLike, alpha: float = 0.05, ci_transform: str = "log"
) -> pd.DataFrame:
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
    at_risk = _at_risk(ts, times)
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
    durations: ArrayLike,
    events: ArrayLike,
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
            "at_risk": _at_risk(np.sort(t), h),
        }
    )
    out.loc[beyond, ["survival", "lower", "upper"]] = np.nan
    return out


def kaplan_meier_by_group(
    durations: ArrayLike, events: ArrayLike, groups: ArrayLike, alpha: float = 0.05, ci_transform: str = "log"
) -> pd.DataFrame:
    """:func:`kaplan_meier` of every group at once: the step tables one after another, group by group.

    The same rows, estimate, Greenwood sum and interval as :func:`kaplan_meier` called on each group's records
    (a first row at time 0 per group, one row per distinct time), computed in one pass over all records: the
    deaths and records at each distinct (group, time) by one sort, the numbers at risk as reverse cumulative
    sums within each group, and S as the exponential of the within-group cumulative sum of log(1 - d/n) (the
    product of :func:`kaplan_meier`'s factors, equal to rounding). One call for a hundred providers costs about
    what one provider's table does.

    Returns
    -------
    pandas.DataFrame
        Columns ``group`` and those of :func:`kaplan_meier`, groups sorted, each group's rows in time order.
    """
    _check_transform(ci_transform)
    t, e = _as_arrays(durations, events)
    codes, labels = group_codes(groups, t.size, "durations")
    k = len(labels)
    # Every group's time-0 row is a record of weight 0 at time 0.
    all_codes = np.concatenate([np.arange(k), codes])
    all_t = np.concatenate([np.zeros(k), t])
    weight = np.concatenate([np.zeros(k), np.ones(len(t))])
    deaths = np.concatenate([np.zeros(k), e.astype(float)])
    order = np.lexsort((all_t, all_codes))
    cs, ts, ws, ds = all_codes[order], all_t[order], weight[order], deaths[order]
    starts = np.flatnonzero(np.r_[True, (cs[1:] != cs[:-1]) | (ts[1:] != ts[:-1])])
    key_code, key_time = cs[starts], ts[starts]
    m = np.add.reduceat(ws, starts)
    d = np.add.reduceat(ds, starts)
    total = np.bincount(key_code, weights=m, minlength=k)
    before = np.cumsum(m) - m
    group_start = np.r_[0, np.flatnonzero(key_code[1:] != key_code[:-1]) + 1]
    first = np.empty(k)
    first[key_code[group_start]] = before[group_start]
    n = total[key_code] - (before - first[key_code])
    # Where every one at risk dies (d = n) S drops to 0 and the Greenwood term is infinite; those steps are
    # counted apart, so that the cumulative sums across groups stay finite and can be differenced per group.
    all_die = (d > 0) & (d >= n)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_factor = np.where((d > 0) & ~all_die, np.log1p(-d / n), 0.0)
        gw_terms = np.where((d > 0) & ~all_die, d / (n * (n - d)), 0.0)
    index = np.repeat(np.arange(len(group_start)), np.diff(np.r_[group_start, len(key_code)]))

    def within(values: np.ndarray) -> np.ndarray:
        """Cumulative sums restarting at each group's first row."""
        cum = np.cumsum(values)
        return cum - np.r_[0.0, cum][group_start][index]

    ended = within(all_die.astype(float)) > 0
    surv = np.where(ended, 0.0, np.exp(within(log_factor)))
    gw = np.where(ended, np.inf, within(gw_terms))
    lower, upper = _confint(surv, gw, alpha, ci_transform)
    return pd.DataFrame({"group": labels[key_code], "time": key_time, "at_risk": n.astype(int),
                         "events": d.astype(int), "censored": (m - d).astype(int), "survival": surv,
                         "lower": lower, "upper": upper}, columns=["group", *KM_COLUMNS])


def survival_at_by_group(
    durations: ArrayLike,
    events: ArrayLike,
    groups: ArrayLike,
    horizons: float | Sequence[float],
    alpha: float = 0.05,
    ci_transform: str = "log",
) -> pd.DataFrame:
    """:func:`survival_at` for every group at once: Kaplan-Meier survival and its CI at the horizons.

    The same estimate, Greenwood sum, interval and edge rules as :func:`survival_at` (R's ``summary(survfit(Surv
    (time, status) ~ group), times = h)``), computed for all groups in one pass: the deaths and records at each
    distinct (group, time) by one grouped count, the numbers at risk as reverse cumulative sums, and then S(h) =
    exp(sum over t <= h of log(1 - d/n)) and the Greenwood sum d/(n(n - d)) summed per group with ``np.bincount``,
    so a thousand units cost about as much as one. S(h) is the product of the same factors as
    :func:`survival_at`'s cumulative product (equal to rounding).

    Edge rules as :func:`survival_at`: a horizon beyond a group's last follow-up time gives NaN; once S reaches
    0 the interval is NaN; before the first death the interval is [1, 1].

    Returns
    -------
    pandas.DataFrame
        Columns ``group, horizon, survival, lower, upper, at_risk``: one row per group (sorted) and horizon (in the
        order given).
    """
    _check_transform(ci_transform)
    t, e = _as_arrays(durations, events)
    codes, labels = group_codes(groups, t.size, "durations")
    h = np.atleast_1d(np.asarray(horizons, dtype=float))
    if (h < 0).any() or np.isnan(h).any():
        raise ValueError("horizons must be non-negative numbers")
    k = len(labels)
    # Deaths and records at each distinct (group, time), in group then time order.
    order = np.lexsort((t, codes))
    cs, ts, es = codes[order], t[order], e[order]
    new = np.r_[True, (cs[1:] != cs[:-1]) | (ts[1:] != ts[:-1])] if len(ts) else np.zeros(0, bool)
    starts = np.flatnonzero(new)
    key_code, key_time = cs[starts], ts[starts]
    m = np.diff(np.r_[starts, len(ts)]).astype(float)
    d = np.add.reduceat(es, starts).astype(float) if len(ts) else np.zeros(0)
    # At risk at a time: the group's records with duration >= it (reverse cumulative sum within the group).
    total = np.bincount(key_code, weights=m, minlength=k)
    before = np.cumsum(m) - m  # records at earlier (group, time) keys, across groups
    first = np.r_[0.0, np.cumsum(total)[:-1]]
    n = total[key_code] - (before - first[key_code])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_factor = np.where(d > 0, np.log1p(-d / n), 0.0)
        gw_terms = np.where(d > 0, d / (n * (n - d)), 0.0)
    last = np.full(k, -np.inf)
    np.maximum.at(last, codes, t)
    out = []
    for horizon in h:
        upto = key_time <= horizon
        log_s = np.bincount(key_code, weights=np.where(upto, log_factor, 0.0), minlength=k)
        gw = np.bincount(key_code, weights=np.where(upto, gw_terms, 0.0), minlength=k)
        surv = np.exp(log_s)
        lower, upper = _confint(surv, gw, alpha, ci_transform)
        beyond = horizon > last
        at_risk = np.bincount(codes, weights=(t >= horizon).astype(float), minlength=k).astype(int)
        out.append(pd.DataFrame({"group": labels, "horizon": horizon, "survival": np.where(beyond, np.nan, surv),
                                 "lower": np.where(beyond, np.nan, lower), "upper": np.where(beyond, np.nan, upper),
                                 "at_risk": at_risk}))
    table = pd.concat(out, ignore_index=True)
    # Group-major order: each group's horizons together, in the order given.
    table["_h"] = np.repeat(np.arange(len(h)), k)
    return table.sort_values(["group", "_h"], kind="stable").drop(columns="_h").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------------------
# Median survival


_TOL = float(np.sqrt(np.finfo(float).eps))  # R's quantile.survfit tolerance, sqrt(.Machine$double.eps)


def _first_crossing(times: np.ndarray, curve: np.ndarray, q: float, convention: str) -> float:
    """Time a right-continuous step curve first reaches q (see :func:`median_survival` for conventions)."""
    ok = ~np.isnan(curve)
    times, curve = times[ok], curve[ok]
    hit = np.flatnonzero(curve <= q + _TOL)
    if hit.size == 0:
        return float("nan")
    i = hit[0]
    if convention == "r" and abs(curve[i] - q) < _TOL:
        below = np.flatnonzero(curve < curve[i] - _TOL)
        below = below[below > i]
        # R takes the midpoint of the flat stretch at exactly q; if the curve never drops below q before
        # follow-up ends, R returns the start of the stretch.
        if below.size:
            return float((times[i] + times[below[0]]) / 2)
    return float(times[i])


def median_from_km(km: pd.DataFrame, convention: str = "r") -> dict:
    """Median survival and its confidence interval read off a Kaplan-Meier table.

    The national stage already has every unit's curve (:func:`kaplan_meier`), so the median is read from it
    rather than refitted.

    Parameters
    ----------
    km : pandas.DataFrame
        A table from :func:`kaplan_meier` (columns ``time``, ``survival``, ``lower``, ``upper``); the interval
        is the one of the ``ci_transform`` the table was made with.
    convention : {"r", "lifelines"}
        ``"r"`` follows R ``survival``'s ``print.survfit``/``quantile.survfit`` (Therneau, 3.5-3): the median is
        the first time the curve is at or below 0.5, except that if the curve sits at exactly 0.5 (within
        sqrt(machine epsilon)) over an interval, the midpoint of that interval is taken; if it stays at 0.5 to
        the end of follow-up, the start of that stretch. The interval is read off the pointwise confidence band
        the same way (Brookmeyer and Crowley, Biometrics 1982;38:29-41): the lower limit is where the lower band
        reaches 0.5 (it lies below the curve, so it gets there first), the upper limit where the upper band does.
        ``"lifelines"`` is ``KaplanMeierFitter.median_survival_time_`` and
        ``lifelines.utils.median_survival_times`` on the confidence band: the first time at or below 0.5, never
        a midpoint.

    Returns
    -------
    dict
        ``median``, ``lower``, ``upper`` (NaN where the curve or band never reaches 0.5 within follow-up, which
        R prints as NA; NaN band values, after the curve reaches 0, are skipped) and ``convention``.
    """
    if convention not in ("r", "lifelines"):
        raise ValueError("convention must be 'r' or 'lifelines'")
    t = km["time"].to_numpy(float)
    return {
        "median": _first_crossing(t, km["survival"].to_numpy(float), 0.5, convention),
        "lower": _first_crossing(t, km["lower"].to_numpy(float), 0.5, convention),
        "upper": _first_crossing(t, km["upper"].to_numpy(float), 0.5, convention),
        "convention": convention,
    }


def median_survival(
    durations: ArrayLike,
    events: ArrayLike,
    alpha: float = 0.05,
    ci_transform: str = "log",
    convention: str = "r",
) -> dict:
    """Median survival time with a confidence interval, by R's or lifelines' convention.

    :func:`kaplan_meier` then :func:`median_from_km`, for patients whose curve is not yet at hand.

    Parameters
    ----------
    durations, events, alpha, ci_transform
        As :func:`kaplan_meier`. The interval depends on ``ci_transform`` (R ``survfit``'s default is
        ``"log"``, lifelines' ``"log-log"``).
    convention : {"r", "lifelines"}
        As :func:`median_from_km`.

    Returns
    -------
    dict
        As :func:`median_from_km`.
    """
    return median_from_km(kaplan_meier(durations, events, alpha=alpha, ci_transform=ci_transform), convention)


# ---------------------------------------------------------------------------------------------------------------
# Log-rank test


def logrank_each_vs_rest(durations: ArrayLike, events: ArrayLike, units: ArrayLike) -> pd.DataFrame:
    """Log-rank test of every unit against the rest of the country, all units in one pass.

    The two-group Mantel-Haenszel log-rank statistic as R's ``survdiff`` (rho = 0) computes it, for each unit
    against all other patients: at each distinct event time with n at risk and d deaths nationally, the unit's
    expected deaths are n_unit d / n and the hypergeometric variance n_unit n_rest d (n - d) / (n^2 (n - 1));
    chi2 = (O - E)^2 / V on 1 df. For two groups it is ``survdiff``'s figure (lung by sex: chi2 10.3) and
    ``lifelines.statistics.logrank_test``'s (both checked in the tests). The national risk sets and deaths are
    counted once; each unit then needs only its own sorted times, so every provider of a large audit is tested
    without re-sorting the whole cohort per provider.

    Parameters
    ----------
    durations, events
        As :func:`kaplan_meier`, for every patient in the country.
    units : array-like
        Each patient's unit (any sortable labels, no missing values: give patients without a unit a label of
        their own, so they count in "the rest").

    Returns
    -------
    pandas.DataFrame
        One row per unit, sorted by unit: ``unit_id``, ``observed`` and ``expected`` deaths in the unit
        (O/E > 1 means more deaths than the national hazard predicts), ``chi2`` and ``p_value``. The test is NaN
        when the unit is the whole cohort (there is no rest) or its variance is 0 (e.g. no deaths anywhere
        while the unit's patients are at risk); R's ``survdiff`` refuses the first case.

    References
    ----------
    Peto R, Peto J. Asymptotically efficient rank invariant test procedures. JRSS A 1972;135:185-207.
    """
    t, e = _as_arrays(durations, events)
    units = np.asarray(units)
    if units.shape != t.shape:
        raise ValueError("units must have one entry per patient")
    event_times = np.unique(t[e == 1])
    n = _at_risk(np.sort(t), event_times)
    d = _deaths_at(np.sort(t[e == 1]), event_times)
    order = np.argsort(units, kind="stable")
    keys, starts = np.unique(units[order], return_index=True)
    bounds = np.append(starts, len(order))
    rows = []
    for k, key in enumerate(keys):
        idx = order[bounds[k]:bounds[k + 1]]
        tu, eu = t[idx], e[idx]
        n1 = _at_risk(np.sort(tu), event_times)
        d1 = _deaths_at(np.sort(tu[eu == 1]), event_times)
        expected = float(np.sum(n1 * d / n))
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(n > 1, n1 * (n - n1) * d * (n - d) / (n**2 * (n - 1.0)), 0.0)
        var = float(v.sum())
        observed = float(d1.sum())
        ok = var > 0 and len(idx) < len(t)
        stat = (observed - expected) ** 2 / var if ok else float("nan")
        rows.append(
            {
                "unit_id": key,
                "observed": observed,
                "expected": expected,
                "chi2": stat,
                "p_value": float(chi2_dist.sf(stat, 1)) if ok else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["unit_id", "observed", "expected", "chi2", "p_value"])


# ---------------------------------------------------------------------------------------------------------------
# Cox proportional hazards


@dataclass
class CoxResult:
    """A fitted Cox model in a form that can be stored (JSON via :meth:`to_dict`) and reused for expected deaths.

    Attributes
    ----------
    covariates : list of str
    coef, se, lower, upper : pandas.Series
        Log hazard ratios, their standard errors and Wald (1 - alpha) limits, indexed by covariate.
    alpha : float
    log_likelihood : float
        Maximised partial log-likelihood (Efron ties).
    log_likelihood_null : float
        Partial log-likelihood at beta = 0.
    concordance : float
        Harrell's C on the fitting data (lifelines' ``concordance_index_``).
    n, n_events, n_dropped : int
        Patients used, deaths among them, rows dropped for missing values.
    means : pandas.Series
        Covariate means the baseline is centred on.
    baseline : pandas.DataFrame
        Breslow cumulative baseline hazard at ``means``: columns ``time``, ``cumhaz``, one row per event time.
    ph_test : pandas.DataFrame
        Proportional-hazards test, index covariates then ``"GLOBAL"``, columns ``chi2``, ``df``, ``p``.
    ph_transform : str
        Time transform of the PH test ("rank").
    ties : str
        "efron".
    """

    covariates: list[str]
    coef: pd.Series
    se: pd.Series
    lower: pd.Series
    upper: pd.Series
    alpha: float
    log_likelihood: float
    log_likelihood_null: float
    concordance: float
    n: int
    n_events: int
    n_dropped: int
    means: pd.Series
    baseline: pd.DataFrame
    ph_test: pd.DataFrame
    ph_transform: str = "rank"
    ties: str = "efron"
    extra: dict = field(default_factory=dict)

    @property
    def hazard_ratios(self) -> pd.DataFrame:
        """exp(coef) with its limits."""
        return pd.DataFrame(
            {"hr": np.exp(self.coef), "lower": np.exp(self.lower), "upper": np.exp(self.upper)}
        )

    def summary(self) -> pd.DataFrame:
        """One row per covariate: coef, se, limits, hazard ratio, z, p."""
        z = self.coef / self.se
        return pd.DataFrame(
            {
                "coef": self.coef,
                "se": self.se,
                "lower": self.lower,
                "upper": self.upper,
                "hr": np.exp(self.coef),
                "z": z,
                "p": 2 * norm.sf(np.abs(z)),
            }
        )

    def to_dict(self) -> dict:
        """Plain-Python representation (lists, floats, str) suitable for ``json.dumps``."""
        return {
            "covariates": list(self.covariates),
            "coef": self.coef.astype(float).tolist(),
            "se": self.se.astype(float).tolist(),
            "lower": self.lower.astype(float).tolist(),
            "upper": self.upper.astype(float).tolist(),
            "alpha": float(self.alpha),
            "log_likelihood": float(self.log_likelihood),
            "log_likelihood_null": float(self.log_likelihood_null),
            "concordance": float(self.concordance),
            "n": int(self.n),
            "n_events": int(self.n_events),
            "n_dropped": int(self.n_dropped),
            "means": self.means.astype(float).tolist(),
            "baseline": {
                "time": self.baseline["time"].astype(float).tolist(),
                "cumhaz": self.baseline["cumhaz"].astype(float).tolist(),
            },
            "ph_test": {
                "term": [str(i) for i in self.ph_test.index],
                "chi2": self.ph_test["chi2"].astype(float).tolist(),
                "df": self.ph_test["df"].astype(int).tolist(),
                "p": self.ph_test["p"].astype(float).tolist(),
            },
            "ph_transform": self.ph_transform,
            "ties": self.ties,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CoxResult:
        """Inverse of :meth:`to_dict`."""
        cov = list(d["covariates"])

        def ser(key: str) -> pd.Series:
            return pd.Series(d[key], index=cov, dtype=float)

        ph = d["ph_test"]
        return cls(
            covariates=cov,
            coef=ser("coef"),
            se=ser("se"),
            lower=ser("lower"),
            upper=ser("upper"),
            alpha=d["alpha"],
            log_likelihood=d["log_likelihood"],
            log_likelihood_null=d["log_likelihood_null"],
            concordance=d["concordance"],
            n=d["n"],
            n_events=d["n_events"],
            n_dropped=d["n_dropped"],
            means=ser("means"),
            baseline=pd.DataFrame(d["baseline"]),
            ph_test=pd.DataFrame(
                {"chi2": ph["chi2"], "df": ph["df"], "p": ph["p"]}, index=pd.Index(ph["term"])
            ),
            ph_transform=d.get("ph_transform", "rank"),
            ties=d.get("ties", "efron"),
            extra=dict(d.get("extra", {})),
        )


def _breslow_baseline(t: np.ndarray, e: np.ndarray, risk_score: np.ndarray) -> pd.DataFrame:
    """Breslow's cumulative baseline hazard: at each event time, deaths over the risk set's summed risk scores."""
    event_times = np.unique(t[e == 1])
    order = np.argsort(t, kind="stable")
    ts, rs = t[order], risk_score[order]
    # Sum of risk scores over the risk set {t_i >= s}: a reverse cumulative sum read at each event time.
    rev = np.concatenate([np.cumsum(rs[::-1])[::-1], [0.0]])
    risk_sum = rev[np.searchsorted(ts, event_times, side="left")]
    d = _deaths_at(np.sort(t[e == 1]), event_times)
    return pd.DataFrame({"time": event_times, "cumhaz": np.cumsum(d / risk_sum)})


def _centred_baseline(
    data: pd.DataFrame, duration_col: str, event_col: str, covariates: list[str], coef: pd.Series
) -> tuple[pd.Series, pd.DataFrame]:
    """Covariate means of ``data`` and the Breslow baseline of ``data`` at ``coef``, centred on those means."""
    t, e = _as_arrays(data[duration_col], data[event_col])
    means = data[covariates].mean()
    risk = np.exp((data[covariates] - means).to_numpy() @ coef.to_numpy())
    return means.rename(None), _breslow_baseline(t, e, risk)


def cox_with_baseline(result: CoxResult, df: pd.DataFrame, duration_col: str, event_col: str) -> CoxResult:
    """The fitted model with its baseline hazard re-estimated on ``df`` at the same coefficients.

    Used when the coefficients were fitted on a sample of the cohort (a Cox fit and its residuals grow faster
    than linearly with the number of patients): the Breslow baseline (as in :func:`fit_cox`) is recomputed on
    the whole cohort ``df``, centred on its covariate means, so that :func:`cox_expected` summed over ``df``
    equals its deaths exactly (national Cox O/E = 1) whatever the sample. Everything else in ``result``
    (coefficients, their limits, likelihoods, PH test, ``n``) still describes the fit.

    Parameters
    ----------
    result : CoxResult
    df : pandas.DataFrame
        The cohort, with ``duration_col``, ``event_col`` and the model's covariates, numeric and complete.
    duration_col, event_col : str

    Returns
    -------
    CoxResult
        A copy of ``result`` with ``means`` and ``baseline`` from ``df``.
    """
    means, baseline = _centred_baseline(df, duration_col, event_col, result.covariates, result.coef)
    return replace(result, means=means, baseline=baseline)


def _ph_test(cph, data: pd.DataFrame, n_events: int) -> pd.DataFrame:
    """Grambsch-Therneau test on scaled Schoenfeld residuals against rank(time), per covariate and global."""
    from lifelines.statistics import TimeTransformers

    resid = cph.compute_residuals(data, kind="scaled_schoenfeld")
    events, durations, weights = cph.event_observed, cph.durations, cph.weights
    g = np.asarray(TimeTransformers().get("rank")(durations, events, weights)[events.values], dtype=float)
    g = g - g.mean()
    u = g @ resid.to_numpy()  # sum over deaths of (g_k - gbar) r*_k
    var = cph.variance_matrix_.to_numpy()
    denom = n_events * np.sum(g**2)
    per = u**2 / (np.diag(var) * denom)  # identical to lifelines' proportional_hazard_test
    glob = float(u @ np.linalg.solve(var, u) / denom)
    k = len(u)
    return pd.DataFrame(
        {
            "chi2": np.append(per, glob),
            "df": np.append(np.ones(k, dtype=int), k),
            "p": np.append(chi2_dist.sf(per, 1), chi2_dist.sf(glob, k)),
        },
        index=pd.Index([*resid.columns.astype(str), "GLOBAL"]),
    )


def fit_cox(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    alpha: float = 0.05,
) -> CoxResult:
    """Fit a Cox proportional hazards model nationally (Efron ties) and test proportional hazards.

    The model is fitted with lifelines' ``CoxPHFitter`` (Efron's method for ties, as R's ``coxph`` default), with
    the Newton-Raphson convergence tightened. lifelines stops on the same rule as R (relative change in
    log-likelihood < 1e-9) but takes damped steps (step size 0.95), so on a flat likelihood it stops about 2e-6
    short of the optimum (lung, sex: -0.5132169 against R's -0.513219; an independent BFGS maximisation of the
    Efron likelihood gives -0.5132187). With the tighter rule the fit agrees with R survival 3.5-3 to the printed
    digits (age + sex on lung: 0.017045, -0.513219, log-likelihood -742.8482).

    Covariates must be numeric (encode categories as indicator columns first). Rows with a missing duration,
    event or covariate are dropped; the count is returned as ``n_dropped``.

    The baseline cumulative hazard is Breslow's estimator at the fitted coefficients, centred on the covariate
    means (Breslow NE, discussion of Cox 1972; the same numbers as lifelines' ``baseline_cumulative_hazard_``).

    Proportional hazards are checked with the Grambsch-Therneau score test on scaled Schoenfeld residuals
    against the rank of event time (Grambsch PM, Therneau TM, Biometrika 1994;81:515-526): per covariate it is
    exactly lifelines' ``proportional_hazard_test(..., time_transform="rank")``; the global test (not offered by
    lifelines) is the same approximation with the full variance matrix, on k df. R's ``cox.zph`` differs on two
    counts: its default transform is "km", and since survival 3.0 it computes an exact score test rather than
    this approximation, so its figures will not match to the digit.

    Parameters
    ----------
    df : pandas.DataFrame
    duration_col, event_col : str
        Follow-up time and 0/1 death indicator.
    covariates : sequence of str
    alpha : float
        For the Wald limits of the coefficients.

    Returns
    -------
    CoxResult
    """
    from lifelines import CoxPHFitter

    covariates = list(covariates)
    cols = [duration_col, event_col, *covariates]
    data = df[cols].dropna()
    n_dropped = len(df) - len(data)
    for c in covariates:
        if not pd.api.types.is_numeric_dtype(data[c]):
            raise TypeError(f"covariate {c!r} is not numeric; encode it as indicator columns")
    data = data.astype(float)
    _, e = _as_arrays(data[duration_col], data[event_col])  # refuse a bad event coding before fitting
    cph = CoxPHFitter(alpha=alpha)
    cph.fit(
        data,
        duration_col=duration_col,
        event_col=event_col,
        fit_options={"precision": 1e-12, "r_precision": 1e-15, "max_steps": 200},
    )
    coef = cph.params_.reindex(covariates).astype(float)
    se = cph.standard_errors_.reindex(covariates).astype(float)
    z = norm.ppf(1 - alpha / 2)
    means, baseline = _centred_baseline(data, duration_col, event_col, covariates, coef)
    n_events = int(e.sum())
    return CoxResult(
        covariates=covariates,
        coef=coef.rename(None),
        se=se.rename(None),
        lower=(coef - z * se).rename(None),
        upper=(coef + z * se).rename(None),
        alpha=alpha,
        log_likelihood=float(cph.log_likelihood_),
        log_likelihood_null=float(cph.log_likelihood_ - cph.log_likelihood_ratio_test().test_statistic / 2),
        concordance=float(cph.concordance_index_),
        n=len(data),
        n_events=n_events,
        n_dropped=int(n_dropped),
        means=means,
        baseline=baseline,
        ph_test=_ph_test(cph, data, n_events),
    )


def cox_expected(result: CoxResult, df: pd.DataFrame, duration_col: str) -> np.ndarray:
    """Each patient's expected deaths under the national Cox model: H0(t_i) exp((x_i - mean) beta).

    H0 is the Breslow baseline stored in ``result`` read as a right-continuous step function at the patient's
    own follow-up time t_i (so a death at t_i counts the hazard at t_i). A unit's Cox O/E is its deaths over the
    sum of these; on the fitting cohort the expected deaths sum exactly to the observed deaths, so the national
    O/E is 1. Beyond the last national event time the baseline is flat (Breslow puts no hazard there). Patients
    with a missing covariate or duration get NaN.

    R's ``predict(coxph, type = "expected")`` uses the cumulative hazard that matches the model's ties option
    (Efron-adjusted when ties = "efron"), so it can differ slightly from this Breslow figure at tied death times.

    Parameters
    ----------
    result : CoxResult
    df : pandas.DataFrame
        Patients (any subset, e.g. one unit), with ``duration_col`` and the model's covariates.
    duration_col : str

    Returns
    -------
    numpy.ndarray
        Expected deaths, one per row of ``df``.
    """
    x = df[result.covariates].to_numpy(dtype=float)
    t = df[duration_col].to_numpy(dtype=float)
    bt = result.baseline["time"].to_numpy()
    bh = result.baseline["cumhaz"].to_numpy()
    idx = np.searchsorted(bt, t, side="right") - 1
    with np.errstate(invalid="ignore"):
        h0 = np.where(idx >= 0, bh[np.clip(idx, 0, None)], 0.0)
    h0 = np.where(np.isnan(t), np.nan, h0)
    lp = (x - result.means.to_numpy()) @ result.coef.to_numpy()
    return h0 * np.exp(lp)


def cox_oe_by_unit(expected: ArrayLike, events: ArrayLike, units: ArrayLike) -> pd.DataFrame:
    """Observed and Cox-expected deaths per unit, and their ratio (METHODS.md section 6).

    E is the sum of the unit's patients' :func:`cox_expected`; O its deaths during follow-up. Patients whose
    expected deaths are NaN (a missing covariate or duration) are left out of both O and E, and counted in
    ``n_excluded``, so the ratio compares like with like; patients without a unit (NaN) are left out. Confidence
    limits are not computed here: apply the exact Poisson limits on O (METHODS.md section 1) and plot on the same
    funnel as the logistic O/E, as the national stage does.

    Parameters
    ----------
    expected : array-like
        Each patient's expected deaths, from :func:`cox_expected`.
    events : array-like
        Each patient's deaths during follow-up (0/1).
    units : array-like
        Each patient's unit.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit (sorted): ``n``, ``n_excluded``, ``observed``, ``expected``, ``oe``.
    """
    ex = np.asarray(expected, dtype=float)
    ok = ~np.isnan(ex)
    frame = pd.DataFrame(
        {
            "unit": np.asarray(units),
            "ok": ok,
            "observed": np.where(ok, np.asarray(events, dtype=float), 0.0),
            "expected": np.where(ok, ex, 0.0),
        }
    )
    g = frame.groupby("unit", sort=True)
    out = pd.DataFrame(
        {
            "n": g["ok"].sum().astype(int),
            "n_excluded": (~frame["ok"]).groupby(frame["unit"]).sum().astype(int),
            "observed": g["observed"].sum(),
            "expected": g["expected"].sum(),
        }
    )
    out["oe"] = out["observed"] / out["expected"]
    out.index.name = "unit"
    return out
