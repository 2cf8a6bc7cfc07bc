"""A risk-adjusted rate of a proportion that stays within 0-100%: the logit shift (METHODS.md section 1).

O/E x national rate (the NYS DOH RAMR, ``intervals.ramr``) passes 100% when O/E is large and the national
rate is high (O/E 3.5 at a 34% national rate prints 119%). The logit shift is an indirect standardisation on
the log-odds scale instead:

1. find the unit's shift d with sum_i expit(logit p_i + d) = O over the unit's patients (p_i their predicted
   risks from the national model): the constant change in log-odds that makes the model reproduce the unit's
   observed events on its own case mix;
2. the unit's adjusted rate is the mean of expit(logit p_j + d) over the national (reference) cohort: the
   rate the national case mix would have at the unit's performance.

The rate lies in [0, 1] by construction and increases with O. Interval and limit bounds are mapped the same
way: an O/E bound times E is an observed-events bound, shifted and averaged like O itself (a bound at or above
the unit's n gives 1, at or below 0 gives 0), so the rate's interval excludes the national rate exactly when
the O/E interval excludes 1 (both are monotone maps of the same O bounds, and O = E maps to d = 0).

What holds when O = E: d = 0 exactly, so the rate is the mean predicted risk of the reference cohort. For a
logistic model with an intercept fitted by maximum likelihood on that same cohort, that mean equals the
national crude rate (the score equation of the intercept: sum p_j = sum y_j); for a fixed, unrecalibrated model
(or a reference cohort other than the fitting one) it is the national *expected* rate, not the crude one.
When a unit's case mix equals the reference cohort's (the same risks), the rate is its crude rate O/n.

This is the "shift on the logit scale" used to recalibrate a model to new data (recalibration-in-the-large:
Steyerberg, *Clinical Prediction Models*, 2nd ed., 2019, ch. 20; Janssen et al., J Clin Epidemiol
2008;61:76-86), applied per unit and followed by direct standardisation to the national cohort; cf. the
indirect-then-direct "risk-standardised rates" of Krumholz et al., Circulation 2006;113:1683-1692, which use a
hierarchical model's unit effect in the place of d. R has no standard function for it; the equation is
solved here by a safeguarded Newton iteration, vectorised over units.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import expit, logit

__all__ = ["logit_shift", "shifted_rate", "bounded_adjusted_rate", "RISK_CLIP"]

#: Predicted risks are clipped into [RISK_CLIP, 1 - RISK_CLIP] before taking logits, so a risk of exactly 0 or 1
#: (possible from a fixed model) gives a finite log-odds.
RISK_CLIP = 1e-12

_TOL = 1e-10
_MAX_ITER = 200
#: Elements (shifts x reference risks) evaluated at once by ``shifted_rate``: 2 MB blocks stay in the CPU cache.
_CHUNK = 250_000


def _logits(p: ArrayLike) -> np.ndarray:
    p = np.asarray(p, dtype=float).ravel()
    if np.isnan(p).any() or ((p < 0) | (p > 1)).any():
        raise ValueError("predicted risks must be probabilities in [0, 1] with no missing values")
    return logit(np.clip(p, RISK_CLIP, 1.0 - RISK_CLIP))


def _observed_series(observed: pd.Series | Mapping | ArrayLike) -> pd.Series:
    if isinstance(observed, pd.Series):
        return observed.astype(float)
    if isinstance(observed, Mapping):
        return pd.Series(observed, dtype=float)
    raise TypeError("observed must be a pandas Series (or a mapping) indexed by group")


def logit_shift(p: ArrayLike, groups: ArrayLike, observed: pd.Series | Mapping) -> pd.Series:
    """The shift d of each group: sum_i expit(logit p_i + d) = O_g over the group's records.

    Parameters
    ----------
    p : predicted risks of every record (the national model's), in [0, 1].
    groups : each record's group (unit) label, the same length as ``p``.
    observed : O_g per group, a Series (or mapping) indexed by group label: the
        unit's observed events, or a bound of them (need not be whole).

    Returns
    -------
    pandas.Series of d, indexed and ordered as ``observed``.

    Notes
    -----
    The left side increases strictly from 0 to n_g in d, so the root is unique
    for 0 < O_g < n_g and lies in [logit(O/n) - max logit p_i, logit(O/n) -
    min logit p_i] (all records shifted to at most / at least the rate O/n).
    Newton steps from d0 = logit(O/n) - logit(E/n), falling back to bisection
    of that bracket when a step leaves it, all groups at once (``np.bincount``
    sums); stops when every |sum - O| < 1e-10 max(1, O).

    Edge rules: O_g <= 0 gives -inf, O_g >= n_g gives +inf (the rate is then 0
    or 1); a group in ``observed`` with no records, or a NaN O_g, gives NaN.
    Risks are clipped to [1e-12, 1 - 1e-12] (``RISK_CLIP``).

    Examples
    --------
    >>> import pandas as pd
    >>> d = logit_shift([0.2, 0.2, 0.5, 0.5], ["a", "a", "b", "b"], pd.Series({"a": 0.4, "b": 1.0}))
    >>> round(float(d["a"]), 6), float(d["b"])
    (0.0, 0.0)
    """
    lp = _logits(p)
    g = np.asarray(groups).ravel()
    if g.shape != lp.shape:
        raise ValueError(f"p and groups differ in length ({lp.size} and {g.size})")
    obs = _observed_series(observed)
    codes, labels = pd.factorize(pd.Series(g))
    if (codes < 0).any():
        raise ValueError("groups must not be missing (NaN/None)")
    pos = pd.Index(labels).get_indexer(obs.index)  # -1: a group with no records
    k = len(labels)
    n = np.bincount(codes, minlength=k).astype(float)
    o = np.full(k, np.nan)
    o[pos[pos >= 0]] = obs.to_numpy()[pos >= 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.bincount(codes, weights=expit(lp), minlength=k)
        lp_max = np.full(k, -np.inf)
        lp_min = np.full(k, np.inf)
        np.maximum.at(lp_max, codes, lp)
        np.minimum.at(lp_min, codes, lp)
        inside = (o > 0) & (o < n)
        rate = np.where(inside, o / n, 0.5)
        lo = np.where(inside, logit(rate) - lp_max, 0.0)
        hi = np.where(inside, logit(rate) - lp_min, 0.0)
        d = np.clip(np.where(inside, logit(rate) - logit(np.clip(e / n, RISK_CLIP, 1 - RISK_CLIP)), 0.0), lo, hi)
    target = np.where(inside, o, 0.0)
    for _ in range(_MAX_ITER):
        s = expit(lp + d[codes])
        f = np.bincount(codes, weights=s, minlength=k) - target
        f = np.where(inside, f, 0.0)
        if (np.abs(f) < _TOL * np.maximum(1.0, target)).all():
            break
        slope = np.bincount(codes, weights=s * (1.0 - s), minlength=k)
        lo = np.where(f < 0, d, lo)
        hi = np.where(f > 0, d, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = d - f / slope
        newton_ok = np.isfinite(step) & (step > lo) & (step < hi)
        d = np.where(newton_ok, step, 0.5 * (lo + hi))
    out = np.where(inside, d, np.where(o <= 0, -np.inf, np.where(o >= n, np.inf, np.nan)))
    out = np.where(np.isnan(o) | (n == 0), np.nan, out)
    result = np.full(len(obs), np.nan)
    result[pos >= 0] = out[pos[pos >= 0]]
    return pd.Series(result, index=obs.index, name="logit_shift")


def shifted_rate(d: ArrayLike, p_reference: ArrayLike) -> np.ndarray:
    """The mean of expit(logit p_j + d) over the reference cohort, for each shift d.

    Parameters
    ----------
    d : shifts (any shape; -inf gives 0, +inf gives 1, NaN gives NaN).
    p_reference : predicted risks of the reference (national) cohort.

    Returns
    -------
    float array of rates in [0, 1], shaped as ``d``.

    Notes
    -----
    Exact, and fast for many shifts: the reference logits are first collapsed to
    their distinct values with counts (a model of categorical risk factors
    has few distinct risks), then the weighted mean is taken for blocks of
    shifts at once (blocks of about 250,000 terms, which stay in the cache), each term as
    1 / (1 + exp(-l_j) exp(-d)) so that no exponential is taken per term.

    Examples
    --------
    >>> shifted_rate([0.0, float("inf")], [0.1, 0.3]).tolist()
    [0.2, 1.0]
    """
    dd = np.asarray(d, dtype=float)
    flat = dd.ravel()
    values, counts = np.unique(_logits(p_reference), return_counts=True)
    if values.size == 0:
        raise ValueError("the reference cohort has no records")
    w = counts / counts.sum()
    # expit(l + d) = 1 / (1 + exp(-l) exp(-d)): one exp per distinct risk and per shift, then only products and
    # reciprocals for the pairs.  |l| <= 27.7 (RISK_CLIP) and shifts are clamped to |d| <= 600 (where expit is
    # 0 or 1 to double precision for every l), so the product stays below 1e273: no overflow.
    a = np.exp(-values)
    out = np.full(flat.shape, np.nan)
    out[flat == -np.inf] = 0.0
    out[flat == np.inf] = 1.0
    idx = np.flatnonzero(np.isfinite(flat))
    b = np.exp(-np.clip(flat[idx], -600.0, 600.0))
    block = max(1, _CHUNK // values.size)
    for start in range(0, idx.size, block):
        part = slice(start, start + block)
        terms = np.multiply.outer(b[part], a)
        terms += 1.0
        np.reciprocal(terms, out=terms)
        out[idx[part]] = terms @ w
    return out.reshape(dd.shape)


def bounded_adjusted_rate(p: ArrayLike, groups: ArrayLike, observed: pd.Series | Mapping,
                          p_reference: ArrayLike) -> pd.Series:
    """The logit-shift adjusted rate of each group: ``shifted_rate(logit_shift(p, groups, observed), p_reference)``.

    ``observed`` is O_g per group (a Series or mapping indexed by group), the
    unit's observed events for its rate, or a bound for the rate's interval or
    limits: O_lower = lower(O/E) x E and so on.  A bound at or above the
    group's n gives 1, at or below 0 gives 0; a group with no records (or a NaN
    bound) gives NaN.

    Returns
    -------
    pandas.Series of rates in [0, 1], indexed and ordered as ``observed``.

    Examples
    --------
    A unit with the national case mix has its crude rate:

    >>> import pandas as pd
    >>> p = [0.1, 0.3, 0.1, 0.3]
    >>> r = bounded_adjusted_rate(p, ["a", "a", "b", "b"], pd.Series({"a": 1.0, "b": 2.0}), p)
    >>> [round(v, 6) for v in r.tolist()]
    [0.5, 1.0]
    """
    d = logit_shift(p, groups, observed)
    return pd.Series(shifted_rate(d.to_numpy(), p_reference), index=d.index, name="adjusted_rate")
