"""Confidence intervals for audit indicators (METHODS.md section 1).

Every function is vectorised: scalars and array-likes are accepted and the
results are always returned as float ``numpy.ndarray`` objects (0-d arrays for
scalar input), so callers can index, broadcast or call ``float()`` on them.

References
----------
- Wilson EB. Probable inference, the law of succession, and statistical
  inference. JASA 1927;22:209-212.
- Garwood F. Fiducial limits for the Poisson distribution. Biometrika
  1936;28:437-442 (exact limits via the chi-squared distribution).
- Breslow NE, Day NE. Statistical Methods in Cancer Research, vol II, 1987
  (Byars' approximation to the exact Poisson limits).
- PHEindicatormethods (ukhsa-collaboration), R/Wilson.R, R/Byars.R, R/ISRatio.R
  and ``funnel_ratio_significance`` in R/utils.R: the "phe" rule below.
- New York State Department of Health, "Adult Cardiac Surgery in New York
  State" (annual reports): the RAMR and its interval.
- Student. The probable error of a mean. Biometrika 1908;6:1-25 (the t interval).
- Conover WJ. Practical Nonparametric Statistics, 3rd ed. Wiley 1999,
  section 3.2 (the distribution-free interval for a quantile from order
  statistics); Hollander M, Wolfe DA, Chicken E. Nonparametric Statistical
  Methods, 3rd ed. Wiley 2014, section 3.6 (the median as the sign test's
  estimate and its interval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import binom, chi2, norm
from scipy.stats import t as student_t

from .grouping import group_codes

__all__ = [
    "Z95",
    "Z998",
    "check_level",
    "z_for_level",
    "wilson",
    "exact_poisson",
    "byars",
    "ratio_interval",
    "ramr",
    "RATIO_METHODS",
    "t_interval",
    "mean_sd_by_group",
    "median_interval",
    "median_rank_pair",
]

Z95: float = float(norm.ppf(0.975))
Z998: float = float(norm.ppf(0.999))

#: O >= this uses Byars in PHEindicatormethods (``obs < 10`` -> exact chi-squared).
PHE_BYARS_THRESHOLD = 10

RATIO_METHODS = ("exact", "byars", "phe")


def check_level(level: float) -> float:
    """A confidence level as a float strictly between 0 and 1 (0.95, 0.998), or ``ValueError``."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    return level


def z_for_level(level: float) -> float:
    """Two-sided standard normal quantile for a confidence ``level`` (0.95 -> 1.959964)."""
    level = check_level(level)
    return float(norm.ppf(0.5 + level / 2.0))


def wilson(x, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion ``x / n``, as fractions (not per cent).

    Uses the closed form (2x + z^2 -/+ z sqrt(z^2 + 4x(1 - x/n))) / (2(n + z^2)),
    which is the formula of PHEindicatormethods ``wilson_lower``/``wilson_upper``
    (R/Wilson.R).  ``n == 0`` gives NaN; ``x`` may be non-integer (PHE test data
    uses non-integer numerators).

    Returns
    -------
    (lower, upper) : float arrays broadcast from ``x`` and ``n``.
    """
    z = z_for_level(level)
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Clip rounding noise (x == n gives a tiny negative radicand).
        rad = np.sqrt(np.maximum(z * z + 4.0 * x * (1.0 - x / n), 0.0))
        denom = 2.0 * (n + z * z)
        lo = (2.0 * x + z * z - z * rad) / denom
        hi = (2.0 * x + z * z + z * rad) / denom
    bad = ~(n > 0)
    lo = np.where(bad, np.nan, lo)
    hi = np.where(bad, np.nan, hi)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def exact_poisson(o, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) confidence interval for a Poisson count ``o``.

    lower = chi2.ppf(a/2, 2o) / 2 (0 when o == 0), upper = chi2.ppf(1 - a/2, 2o + 2) / 2,
    with a = 1 - level.  Non-integer ``o`` is accepted (the chi-squared form is
    continuous in o); negative or NaN ``o`` gives NaN.
    """
    a = 1.0 - check_level(level)
    o = np.asarray(o, dtype=float)
    with np.errstate(invalid="ignore"):
        lo = np.where(o > 0, chi2.ppf(a / 2.0, 2.0 * np.where(o > 0, o, 1.0)) / 2.0, 0.0)
        hi = chi2.ppf(1.0 - a / 2.0, 2.0 * o + 2.0) / 2.0
    bad = ~(o >= 0)
    lo = np.where(bad, np.nan, lo)
    hi = np.where(bad, np.nan, hi)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def byars(o, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Byars' approximation to the exact Poisson interval for a count ``o``.

    lower = o (1 - 1/(9o) - z/(3 sqrt o))^3, upper = (o+1)(1 - 1/(9(o+1)) + z/(3 sqrt(o+1)))^3
    (Breslow & Day 1987; PHEindicatormethods R/Byars.R).  The lower formula is
    undefined at o == 0, where 0 is returned.
    """
    z = z_for_level(level)
    o = np.asarray(o, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = o * (1.0 - 1.0 / (9.0 * o) - z / (3.0 * np.sqrt(o))) ** 3
        o1 = o + 1.0
        hi = o1 * (1.0 - 1.0 / (9.0 * o1) + z / (3.0 * np.sqrt(o1))) ** 3
    lo = np.where(o == 0, 0.0, lo)
    bad = ~(o >= 0)
    lo = np.where(bad, np.nan, lo)
    hi = np.where(bad, np.nan, hi)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def count_interval(o, level: float = 0.95, method: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """Interval for a Poisson count by ``method`` in {"exact", "byars", "phe"}.

    "phe" is PHEindicatormethods' rule (``funnel_ratio_significance`` in
    R/utils.R and ``calculate_ISRatio``): exact chi-squared limits when o < 10,
    Byars' approximation when o >= 10.
    """
    if method == "exact":
        return exact_poisson(o, level)
    if method == "byars":
        return byars(o, level)
    if method == "phe":
        o = np.asarray(o, dtype=float)
        elo, ehi = exact_poisson(o, level)
        blo, bhi = byars(o, level)
        use_byars = o >= PHE_BYARS_THRESHOLD
        return np.where(use_byars, blo, elo), np.where(use_byars, bhi, ehi)
    raise ValueError(f"method must be one of {RATIO_METHODS}, got {method!r}")


def ratio_interval(o, e, level: float = 0.95, method: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """Interval for an observed/expected ratio O/E: the count interval of O divided by E.

    E is treated as fixed (it is a sum of model predictions), as in
    PHEindicatormethods ``calculate_ISRatio`` and NYS DOH.  ``method``:

    - "exact": Garwood chi-squared limits (METHODS.md section 1 default);
    - "byars": Byars' approximation for every O;
    - "phe": exact when O < 10, Byars when O >= 10 (PHEindicatormethods).

    ``e <= 0`` gives NaN.
    """
    lo, hi = count_interval(o, level, method)
    e = np.asarray(e, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        good = e > 0
        safe_e = np.where(good, e, 1.0)
        lo = np.where(good, lo / safe_e, np.nan)
        hi = np.where(good, hi / safe_e, np.nan)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def ramr(o, e, national_rate, level: float = 0.95, method: str = "exact") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Risk-adjusted mortality rate (NYS DOH method) and its interval.

    RAMR = (O/E) x national rate, and its interval is the O/E interval
    (``ratio_interval``) multiplied by the national rate.  The rate keeps the
    units it is given in (fraction or per cent).

    NYS DOH describes its interval as exact Poisson, but its published limits
    (open data 2008-2019, 2,757 hospital rows) are reproduced by Byars'
    approximation (``method="byars"``: every lower and upper limit and every
    flag, within the 2 dp rounding of the published expected rate), while the
    exact limits miss ~690 lower limits with O <= 13; see
    tests/test_nys_reference.py.  The default stays "exact" (METHODS.md); pass
    ``method="byars"`` to reproduce NYS publications.

    Returns
    -------
    (value, lower, upper) : float arrays.
    """
    o_arr = np.asarray(o, dtype=float)
    e_arr = np.asarray(e, dtype=float)
    rate = np.asarray(national_rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(e_arr > 0, o_arr / np.where(e_arr > 0, e_arr, 1.0), np.nan) * rate
    lo, hi = ratio_interval(o_arr, e_arr, level, method)
    return np.asarray(value, dtype=float), np.asarray(lo * rate, dtype=float), np.asarray(hi * rate, dtype=float)


# ---------------------------------------------------------------- continuous values


def t_interval(mean: ArrayLike, sd: ArrayLike, n: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Student's t interval for a mean: mean -/+ t(1 - a/2, n - 1) sd / sqrt(n).

    The interval of R's ``t.test(x)$conf.int`` for a one-sample mean, computed
    from the summary figures (``sd`` with denominator n - 1).  Vectorised over
    ``mean``, ``sd`` and ``n``.  Edge rules: n < 2 (no standard deviation can be
    estimated) or a NaN input gives NaN; sd = 0 gives the degenerate interval
    (mean, mean).

    Returns
    -------
    (lower, upper) : float arrays broadcast from the inputs.

    Examples
    --------
    >>> lo, hi = t_interval(10.0, 2.0, 5)
    >>> round(float(lo), 4), round(float(hi), 4)
    (7.5167, 12.4833)
    """
    a = 1.0 - check_level(level)
    m, s, n = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (mean, sd, n)))
    good = n >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        half = student_t.ppf(1.0 - a / 2.0, np.where(good, n - 1.0, 1.0)) * s / np.sqrt(np.where(good, n, 1.0))
    lo = np.where(good, m - half, np.nan)
    hi = np.where(good, m + half, np.nan)
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def _grouped(values: ArrayLike, groups: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-NaN values, each one's group code, and the group labels in sorted order (one factorise)."""
    v = np.asarray(values, dtype=float).ravel()
    codes, labels = group_codes(groups, v.size)
    keep = ~np.isnan(v)
    return v[keep], codes[keep], labels


def _sorted_by_group(values: ArrayLike, groups: ArrayLike) -> tuple[np.ndarray, np.ndarray, pd.Index, np.ndarray]:
    """Values sorted within groups (one ``lexsort``), the group start offsets, the group labels and counts.

    NaN values are dropped.  Groups are the distinct labels in sorted order; a
    group whose every value is NaN is kept with count 0.
    """
    v, codes, labels = _grouped(values, groups)
    order = np.lexsort((v, codes))
    counts = np.bincount(codes, minlength=len(labels))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return v[order], starts, pd.Index(labels, name="group"), counts


def mean_sd_by_group(values: ArrayLike, groups: ArrayLike) -> pd.DataFrame:
    """Count, mean and standard deviation (denominator n - 1) of ``values`` in each group.

    Computed with ``np.bincount`` (no per-group Python loop), two-pass (the
    squared deviations from each group's own mean, not sum x^2 - n mean^2, which
    loses precision for large values with small spread).  NaN values are
    dropped; a group of one value has sd NaN, as R's ``sd``.

    Returns
    -------
    DataFrame indexed by group (sorted) with columns ``n``, ``mean``, ``sd``.

    Examples
    --------
    >>> mean_sd_by_group([1.0, 2.0, 3.0, 10.0], ["a", "a", "a", "b"]).round(3).to_dict("index")
    {'a': {'n': 3.0, 'mean': 2.0, 'sd': 1.0}, 'b': {'n': 1.0, 'mean': 10.0, 'sd': nan}}
    """
    v, codes, labels = _grouped(values, groups)
    k = len(labels)
    n = np.bincount(codes, minlength=k).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(codes, weights=v, minlength=k) / n
        ss = np.bincount(codes, weights=(v - mean[codes]) ** 2, minlength=k)
        sd = np.where(n >= 2, np.sqrt(ss / (n - 1.0)), np.nan)
    mean = np.where(n > 0, mean, np.nan)
    return pd.DataFrame({"n": n, "mean": mean, "sd": sd}, index=pd.Index(labels, name="group"))


def median_rank_pair(n: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks (j, k) of the order statistics that bound the exact median interval, and its coverage.

    With B ~ binomial(n, 1/2), (x_(j), x_(k)) with k = n + 1 - j covers the
    population median with probability 1 - 2 P(B <= j - 1), whatever the
    (continuous) distribution (Conover 1999, section 3.2).  j is the largest
    rank whose coverage is at least ``level`` (the shortest symmetric interval
    that keeps the level).  That j is R's ``qbinom((1 - level)/2, n, 0.5)``,
    the lower rank of ``DescTools::MedianCI(method = "exact")``, except when
    P(B <= j) equals (1 - level)/2 exactly, where this j is one higher and the
    coverage exactly ``level``.

    Edge rule: when even (x_(1), x_(n)) covers with probability 1 - 2^(1 - n)
    below ``level`` (n <= 5 at 95%, n <= 9 at 99.8%), no interval of the level
    exists from the data: j = k = 0 and coverage NaN.

    Returns
    -------
    (j, k, coverage) : 1-based ranks as int arrays (0 where no interval
    exists) and the exact coverage as a float array.

    Examples
    --------
    >>> j, k, cover = median_rank_pair([5, 6, 20])
    >>> j.tolist(), k.tolist(), [round(c, 4) for c in cover.tolist()]
    ([0, 1, 6], [0, 6, 15], [nan, 0.9688, 0.9586])
    """
    a = 1.0 - check_level(level)
    n = np.asarray(n, dtype=float)
    if not (np.isfinite(n) & (n >= 0) & (n == np.round(n))).all():
        raise ValueError("n must be whole numbers >= 0")
    ns = np.maximum(n, 1.0)
    # q: the smallest count with P(B <= q) >= a/2; the largest m with P(B <= m) <= a/2 is q, or q - 1 when
    # P(B <= q) exceeds a/2.  The relative tolerance keeps an exact tie (a/2 = P(B <= q)) on the side it is on.
    q = binom.ppf(a / 2.0, ns, 0.5)
    m = np.where(binom.cdf(q, ns, 0.5) <= (a / 2.0) * (1.0 + 1e-12), q, q - 1.0)
    exists = (m >= 0) & (n > 0)
    j = np.where(exists, m + 1.0, 0.0).astype(np.int64)
    k = np.where(exists, n - j + 1.0, 0.0).astype(np.int64)
    coverage = np.where(exists, 1.0 - 2.0 * binom.cdf(m, ns, 0.5), np.nan)
    return j, k, np.asarray(coverage, dtype=float)


def median_interval(values: ArrayLike, groups: ArrayLike, level: float = 0.95) -> pd.DataFrame:
    """Median of each group with the exact distribution-free interval from order statistics.

    The interval is (x_(j), x_(k)) of the group's ordered values, j and k from
    the binomial(n, 1/2) distribution as in :func:`median_rank_pair` (Conover
    1999, section 3.2; the interval that inverts the sign test).  Its coverage
    is at least ``level`` for any continuous distribution; the achieved
    coverage is returned too, since with ties or small n it exceeds the level.
    The median is the usual one (mean of the two middle values for even n,
    R's ``median``).

    Vectorised: one ``lexsort`` of all values by (group, value), then the
    order statistics are read at each group's offset; no per-group loop.

    Edge rules: NaN values are dropped (n counts the rest).  A group too small
    for an interval of the level (n <= 5 at 95%, n <= 9 at 99.8%) gets lower
    and upper NaN and coverage NaN, not the extremes: (min, max) would claim
    a level it does not have.  A group with no values has median NaN.

    Returns
    -------
    DataFrame indexed by group (sorted) with columns ``n``, ``median``,
    ``lower``, ``upper``, ``coverage``.

    Examples
    --------
    >>> r = median_interval(range(1, 11), ["a"] * 10)
    >>> r.loc["a", ["n", "median", "lower", "upper"]].tolist(), round(float(r.loc["a", "coverage"]), 4)
    ([10.0, 5.5, 2.0, 9.0], 0.9785)
    """
    v, starts, labels, counts = _sorted_by_group(values, groups)
    n = counts.astype(float)
    has = counts > 0
    # The middle order statistics (0-based within the group): (n-1)//2 and n//2.
    lo_mid = starts + np.maximum(counts - 1, 0) // 2
    hi_mid = starts + counts // 2
    safe = np.minimum(np.where(has, lo_mid, 0), max(v.size - 1, 0))
    safe_hi = np.minimum(np.where(has, hi_mid, 0), max(v.size - 1, 0))
    if v.size:
        median = np.where(has, 0.5 * (v[safe] + v[safe_hi]), np.nan)
    else:
        median = np.full(len(labels), np.nan)
    j, k, coverage = median_rank_pair(counts, level)
    exists = j > 0
    if v.size:
        lower = np.where(exists, v[np.where(exists, starts + j - 1, 0)], np.nan)
        upper = np.where(exists, v[np.where(exists, starts + k - 1, 0)], np.nan)
    else:
        lower = upper = np.full(len(labels), np.nan)
    return pd.DataFrame({"n": n, "median": median, "lower": lower, "upper": upper, "coverage": coverage},
                        index=labels)
