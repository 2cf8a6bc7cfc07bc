"""Funnel-plot control limits (METHODS.md sections 2 and 3).

Limits are the values of the indicator that a unit with a given precision
(expected deaths E for a ratio, cases n for a proportion) would have to exceed
to be flagged, drawn as smooth curves over the whole precision axis.

References
----------
- Spiegelhalter DJ. Funnel plots for comparing institutional performance.
  Stat Med 2005;24:1185-1202 (Appendix A.1.1: exact binomial limits with
  interpolation between integer counts).
- Spiegelhalter DJ. Handling over-dispersion of performance indicators.
  Qual Saf Health Care 2005;14:347-351 (multiplicative and additive models).
- FunnelPlotR (nhs-r-community), R/calculate_limits.R: the "exact" Poisson
  ratio limits and the SHMI log-scale random-effects limits.
- PHEindicatormethods (ukhsa-collaboration), R/Funnels.R ``calculate_funnel_limits``
  and ``sigma_adjustment``, R/utils.R ``poisson_funnel``: the "phe" ratio limits
  and the "wilson" proportion limits.

Methods
-------
Ratios (target 1), ``ratio_limits(E, level, method)``:

- "exact" (FunnelPlotR): lower = chi2.ppf(a/2, 2E)/(2E),
  upper = chi2.ppf(1 - a/2, 2(E + 1))/(2E): the Garwood interval with E in
  place of the count, divided by E.
- "phe" (PHEindicatormethods): PHE tabulates, for each integer observed count
  O, the expected E at which O sits exactly on the limit (P(X <= O | E) = a/2
  for the lower limit, P(X >= O | E) = a/2 for the upper), and plots O/E
  against E.  Here that relation is inverted for a given E by solving for a
  real-valued O with the regularised incomplete gamma function (the
  continuous extension of the Poisson cdf), so the curve passes through every
  PHE point; ``phe_poisson_funnel`` reproduces PHE's own bisection table.

Proportions (target p0), ``proportion_limits(p0, n, level, method)``:

- "wilson" (PHEindicatormethods ``sigma_adjustment``): the proportion whose
  Wilson score interval just reaches p0.
- "exact": exact binomial limits with Spiegelhalter's interpolation,
  (r_p - alpha)/n, where r_p is the smallest r with P(R <= r) >= p and
  alpha = (P(R <= r_p) - p) / (P(R <= r_p) - P(R <= r_p - 1)).  The binomial cdf
  is evaluated through the regularised incomplete beta function so that
  non-integer n (points of a smooth curve) are allowed.

Means (target mu0, the national mean or a fixed standard),
``normal_limits(mu0, sd, n, level)``: mu0 -/+ z sd/sqrt(n), Spiegelhalter
(2005, section 2.1 and Table 1: "normal" data with known sigma, precision n);
sd is the national standard deviation of the records, so the funnel is one
curve over n.

Over-dispersion (an ``Overdispersion`` from ``overdispersion.py``):

- "none": the limits above.
- "multiplicative": the distance of the limits above from the target is
  multiplied by sqrt(phi) when phi > 1 (Spiegelhalter: inflate the standard
  error by sqrt(phi)).  With normal-approximation limits this is exactly
  target +/- z sqrt(phi) s; applying it to the exact limits keeps their
  small-sample asymmetry and makes phi <= 1 reduce to the unadjusted limits.
- "additive" (DerSimonian-Laird random effects, natural scale):
  target +/- z sqrt(s^2 + tau^2) with s^2 = 1/E for ratios and
  p0(1 - p0)/n for proportions, sd^2/n for means.
- "shmi" (ratios only; FunnelPlotR's SHMI option): log scale,
  exp(+/- z sqrt(1/E + tau^2)).
- As in FunnelPlotR, when tau^2 == 0 the additive and SHMI options fall back
  to the unadjusted limits of ``method``.

Lower limits are clipped at 0 and proportion upper limits at 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import betainc, gammainc, gammaincc
from scipy.stats import chi2, norm, poisson

from .intervals import check_level, ratio_interval, z_for_level
from .overdispersion import Overdispersion

__all__ = [
    "RATIO_LIMIT_METHODS",
    "PROPORTION_LIMIT_METHODS",
    "ratio_limits",
    "proportion_limits",
    "funnel_curve",
    "phe_poisson_funnel",
    "phe_sigma_adjustment",
    "normal_limits",
    "FUNNEL_KINDS",
]

RATIO_LIMIT_METHODS = ("exact", "phe")
PROPORTION_LIMIT_METHODS = ("wilson", "exact")
#: What a funnel is drawn for (``funnel_curve``'s kind): its precision axis is E, n (cases) and n (records).
FUNNEL_KINDS = ("ratio", "proportion", "mean")


def _bisect(f, lo: np.ndarray, hi: np.ndarray, n_iter: int = 80) -> np.ndarray:
    """Vectorised bisection for increasing f with f(lo) < 0 <= f(hi)."""
    lo = np.array(lo, dtype=float)
    hi = np.array(hi, dtype=float)
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        pos = f(mid) >= 0
        hi = np.where(pos, mid, hi)
        lo = np.where(pos, lo, mid)
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------- ratios


def _ratio_exact(e: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
    lo = chi2.ppf(a / 2.0, 2.0 * e) / (2.0 * e)
    hi = chi2.ppf(1.0 - a / 2.0, 2.0 * (e + 1.0)) / (2.0 * e)
    return lo, hi


def _ratio_phe(e: np.ndarray, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Continuous inversion of PHE's table: the observed count on the limit at E."""
    p = a / 2.0
    big = e + 50.0 * np.sqrt(e) + 100.0
    # Lower limit: P(X <= k | E) = Q(k + 1, E) = p; Q increases with k.
    # Below E = -ln(p) even k = 0 is not significantly low, so the limit is 0.
    has_lower = np.exp(-e) < p
    k_lo = _bisect(lambda k: gammaincc(k + 1.0, e) - p, np.zeros_like(e), big)
    k_lo = np.where(has_lower, k_lo, 0.0)
    # Upper limit: P(X >= k | E) = P(k, E) = p; P(k, E) decreases with k.
    k_hi = _bisect(lambda k: p - gammainc(k, e), np.full_like(e, 1e-12), big)
    return k_lo / e, k_hi / e


def phe_poisson_funnel(obs, p: float, side: str) -> np.ndarray:
    """PHEindicatormethods ``poisson_funnel`` (R/utils.R), vectorised over ``obs``.

    Bisection (to dv <= 1e-7) on v in (0, 1) with mean E = (1 + obs) v / (1 - v):
    side "low" finds E with P(X >= obs | E) = p, side "high" E with
    P(X <= obs | E) = p.  PHE's ``poisson_cis`` series is replaced by scipy's
    Poisson cdf (same probability to ~1e-10), keeping the bisection so that the
    tabulated expected events match PHE's to its own precision (the exact
    answers are chi2.ppf(p, 2 obs)/2 and chi2.ppf(1 - p, 2 obs + 2)/2).
    """
    if side not in ("low", "high"):
        raise ValueError("side must be 'low' or 'high'")
    obs = np.asarray(obs, dtype=float)
    v = np.full_like(obs, 0.5)
    dv = 0.5
    while dv > 1e-7:
        dv /= 2.0
        mu = (1.0 + obs) * v / (1.0 - v)
        if side == "low":
            step_down = poisson.sf(obs - 1.0, mu) > p
        else:
            step_down = poisson.cdf(obs, mu) < p
        v = np.where(step_down, v - dv, v + dv)
    return (1.0 + obs) * v / (1.0 - v)


def _apply_od_ratio(lo, hi, e, level, od: Overdispersion | None):
    if od is None or od.method == "none":
        return lo, hi
    z = z_for_level(level)
    if od.method == "multiplicative":
        k = od.inflation
        return 1.0 - k * (1.0 - lo), 1.0 + k * (hi - 1.0)
    if od.tau2 <= 0:
        return lo, hi
    if od.method == "additive":
        half = z * np.sqrt(1.0 / e + od.tau2)
        return 1.0 - half, 1.0 + half
    if od.method == "shmi":
        half = z * np.sqrt(1.0 / e + od.tau2)
        return np.exp(-half), np.exp(half)
    raise ValueError(f"unknown overdispersion method {od.method!r}")


def overdispersed_ratio_interval(observed, expected, level: float,
                                 overdispersion: Overdispersion | None) -> tuple[np.ndarray, np.ndarray]:
    """A unit's O/E interval that allows for over-dispersion as its funnel limits do.

    For an O/E whose O is a sum of values (days of stay) rather than a count of events, the exact Poisson
    interval of :func:`~auditreport.stats.intervals.ratio_interval` is far too narrow: days vary between patients
    much more than a Poisson count allows, which is why the funnel's limits are widened (Spiegelhalter, Qual Saf
    Health Care 2005;14:347-351). Publishing the narrow interval beside the wide limits would show intervals
    that exclude 1 for units the limits call as expected. The interval is widened the same way around the unit's
    own value:

    - none: the exact Poisson interval, unchanged;
    - multiplicative: each side of the exact interval stretched by sqrt(phi) about O/E (as the limits are
      about 1);
    - additive: O/E +/- z sqrt(1/E + tau^2), not below 0;
    - shmi: O/E x exp(+/- z sqrt(1/E + tau^2)) (FunnelPlotR's SHMI limits carried to the unit), so that 1 lies
      outside the interval exactly when O/E lies outside the limits.

    Examples
    --------
    >>> from auditreport.stats.overdispersion import Overdispersion
    >>> od = Overdispersion(method="multiplicative", phi=4.0, tau2=0.0, n_units=10, n_trimmed=2, chi2_p=None)
    >>> lo, hi = overdispersed_ratio_interval([120.0], [100.0], 0.95, od)
    >>> bool(lo[0] < 1.2 < hi[0])
    True
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    lo, hi = ratio_interval(o, e, level, method="exact")
    if overdispersion is None or overdispersion.method == "none":
        return lo, hi
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(e > 0, o / np.where(e > 0, e, 1.0), np.nan)
        z = z_for_level(level)
        if overdispersion.method == "multiplicative":
            k = overdispersion.inflation
            return value - k * (value - lo), value + k * (hi - value)
        if overdispersion.tau2 <= 0:
            return lo, hi
        half = z * np.sqrt(1.0 / e + overdispersion.tau2)
        if overdispersion.method == "additive":
            return np.maximum(value - half, 0.0), value + half
        if overdispersion.method == "shmi":
            return value * np.exp(-half), value * np.exp(half)
    raise ValueError(f"unknown overdispersion method {overdispersion.method!r}")


def ratio_limits(
    expected, level: float, method: str = "exact", overdispersion: Overdispersion | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Funnel limits for an O/E ratio (target 1) at precision ``expected`` (E).

    Parameters
    ----------
    expected : E, scalar or array; E <= 0 gives NaN.
    level : 0.95 or 0.998 (any level in (0, 1)).
    method : "exact" (FunnelPlotR) or "phe" (PHEindicatormethods); see module docstring.
    overdispersion : an ``Overdispersion`` or None (no adjustment).

    Returns
    -------
    (lower, upper) : float arrays of O/E limits.
    """
    a = 1.0 - check_level(level)
    if method not in RATIO_LIMIT_METHODS:
        raise ValueError(f"ratio limit method must be one of {RATIO_LIMIT_METHODS}, got {method!r}")
    e = np.asarray(expected, dtype=float)
    good = np.isfinite(e) & (e > 0)
    es = np.where(good, e, 1.0)
    lo, hi = _ratio_exact(es, a) if method == "exact" else _ratio_phe(es, a)
    lo, hi = _apply_od_ratio(lo, hi, es, level, overdispersion)
    lo = np.maximum(lo, 0.0)
    return np.where(good, lo, np.nan), np.where(good, hi, np.nan)


# ---------------------------------------------------------------- proportions


def phe_sigma_adjustment(p: float, population, average_proportion: float, side: str) -> np.ndarray:
    """PHEindicatormethods ``sigma_adjustment`` (R/Funnels.R) as a fraction.

    The proportion at denominator ``population`` whose Wilson interval at
    one-sided probability ``p`` (0.975 or 0.999) just reaches the average.
    Kept in PHE's algebraic form so that values match to rounding.
    """
    z2 = norm.ppf(p) ** 2
    n = np.asarray(population, dtype=float)
    av = float(average_proportion)
    first = av * (n / z2 + 1.0)
    rad = (-8.0 * av * (n / z2 + 1.0)) ** 2 - 64.0 * (1.0 / z2 + 1.0 / n) * av * (
        n * (av * (n / z2 + 2.0) - 1.0) + z2 * (av - 1.0)
    )
    adj = np.sqrt(np.maximum(rad, 0.0))
    last = 1.0 / z2 + 1.0 / n
    if side == "low":
        out = (first - adj / 8.0) / last
    elif side == "high":
        out = (first + adj / 8.0) / last
    else:
        raise ValueError("side must be 'low' or 'high'")
    return out / n


def _binom_cdf(r: np.ndarray, n: np.ndarray, p0: float) -> np.ndarray:
    """P(R <= r) for R ~ Bin(n, p0), continuous in n via the incomplete beta."""
    with np.errstate(invalid="ignore"):
        out = betainc(np.maximum(n - r, 1e-300), r + 1.0, 1.0 - p0)
    out = np.where(r < 0, 0.0, out)
    return np.where(r >= n, 1.0, out)


def _binom_interp_limit(n: np.ndarray, p0: float, prob: float) -> np.ndarray:
    """Spiegelhalter (2005, Appendix A.1.1) interpolated binomial quantile, as a proportion."""
    lo = np.full_like(n, -1.0)  # cdf(-1) = 0 < prob
    hi = np.ceil(n)  # cdf(ceil n) = 1 >= prob
    while np.any(hi - lo > 1):
        mid = np.floor((lo + hi) / 2.0)
        ok = _binom_cdf(mid, n, p0) >= prob
        hi = np.where(ok, mid, hi)
        lo = np.where(ok, lo, mid)
    r = hi
    c_r = _binom_cdf(r, n, p0)
    c_r1 = _binom_cdf(r - 1.0, n, p0)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(c_r > c_r1, (c_r - prob) / (c_r - c_r1), 0.0)
    return (r - alpha) / n


def _apply_od_prop(lo, hi, p0, n, level, od: Overdispersion | None):
    if od is None or od.method == "none":
        return lo, hi
    z = z_for_level(level)
    if od.method == "multiplicative":
        k = od.inflation
        return p0 - k * (p0 - lo), p0 + k * (hi - p0)
    if od.method == "shmi":
        raise ValueError("the SHMI over-dispersion method applies to ratios, not proportions")
    if od.tau2 <= 0:
        return lo, hi
    if od.method == "additive":
        half = z * np.sqrt(p0 * (1.0 - p0) / n + od.tau2)
        return p0 - half, p0 + half
    raise ValueError(f"unknown overdispersion method {od.method!r}")


def proportion_limits(
    target: float, n, level: float, method: str = "wilson", overdispersion: Overdispersion | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Funnel limits for a proportion around ``target`` (a fraction) at denominator ``n``.

    method "wilson" = PHEindicatormethods (Wilson-inverted); "exact" = exact
    binomial with Spiegelhalter's interpolation.  Returns fractions clipped to
    [0, 1] (PHE clips its per-cent limits to [0, 100] the same way); n <= 0
    gives NaN.
    """
    a = 1.0 - check_level(level)
    if method not in PROPORTION_LIMIT_METHODS:
        raise ValueError(f"proportion limit method must be one of {PROPORTION_LIMIT_METHODS}, got {method!r}")
    p0 = float(target)
    if not 0.0 <= p0 <= 1.0:
        raise ValueError(f"target must be a proportion in [0, 1], got {target!r}")
    n_arr = np.asarray(n, dtype=float)
    good = np.isfinite(n_arr) & (n_arr > 0)
    ns = np.where(good, n_arr, 1.0)
    if method == "wilson":
        lo = phe_sigma_adjustment(1.0 - a / 2.0, ns, p0, "low")
        hi = phe_sigma_adjustment(1.0 - a / 2.0, ns, p0, "high")
    else:
        ns = np.atleast_1d(ns)
        lo = _binom_interp_limit(ns, p0, a / 2.0)
        hi = _binom_interp_limit(ns, p0, 1.0 - a / 2.0)
        lo, hi = lo.reshape(n_arr.shape), hi.reshape(n_arr.shape)
        ns = ns.reshape(n_arr.shape)
    lo, hi = _apply_od_prop(lo, hi, p0, ns, level, overdispersion)
    lo = np.clip(lo, 0.0, 1.0)
    hi = np.clip(hi, 0.0, 1.0)
    return np.where(good, lo, np.nan), np.where(good, hi, np.nan)


# ---------------------------------------------------------------- means


def normal_limits(
    target: float, sd, n, level: float, overdispersion: Overdispersion | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Funnel limits for a mean around ``target`` at ``n`` records: target -/+ z sd / sqrt(n).

    Spiegelhalter (Stat Med 2005, section 2.1 and Table 1): for an indicator
    whose records have (known) standard deviation ``sd``, the mean of n
    records has standard error sd/sqrt(n) and the funnel is the normal one.
    ``sd`` is normally the national standard deviation of the records (one
    curve over n); an array of per-unit standard deviations is accepted too.
    Over-dispersion as for the other kinds: "multiplicative" multiplies the
    half-width by sqrt(phi) when phi > 1; "additive" uses
    z sqrt(sd^2/n + tau^2), tau^2 on the scale of the values (from
    ``overdispersion.estimate_mean``), falling back to the plain limits when
    tau^2 = 0; "shmi" is a ratio method and is refused.

    Edge rules: n <= 0, a NaN n or a NaN/negative sd gives NaN.  The limits
    are not clipped (a lower limit below 0 is possible for small n; a
    measure of values >= 0 simply has no low outliers there).

    Returns
    -------
    (lower, upper) : float arrays broadcast from ``sd`` and ``n``.

    Examples
    --------
    >>> lo, hi = normal_limits(10.0, 4.0, 16, 0.95)
    >>> round(float(lo), 4), round(float(hi), 4)
    (8.04, 11.96)
    """
    z = z_for_level(level)
    mu0 = float(target)
    s, n_arr = np.broadcast_arrays(np.asarray(sd, dtype=float), np.asarray(n, dtype=float))
    good = np.isfinite(n_arr) & (n_arr > 0) & np.isfinite(s) & (s >= 0)
    se = np.where(good, s, 0.0) / np.sqrt(np.where(good, n_arr, 1.0))
    half = z * se
    od = overdispersion
    if od is not None and od.method != "none":
        if od.method == "multiplicative":
            half = half * od.inflation
        elif od.method == "additive":
            if od.tau2 > 0:
                half = z * np.sqrt(se**2 + od.tau2)
        elif od.method == "shmi":
            raise ValueError("the SHMI over-dispersion method applies to ratios, not means")
        else:
            raise ValueError(f"unknown overdispersion method {od.method!r}")
    return np.where(good, mu0 - half, np.nan), np.where(good, mu0 + half, np.nan)


# ---------------------------------------------------------------- curves


def funnel_curve(
    kind: str,
    target: float,
    x_min: float,
    x_max: float,
    n_points: int = 200,
    method: str | None = None,
    overdispersion: Overdispersion | None = None,
    sd: float | None = None,
) -> pd.DataFrame:
    """Funnel limits on a log-spaced grid of the precision axis.

    Parameters
    ----------
    kind : "ratio" (x = expected deaths, limits for O/E, scaled by ``target``,
        normally 1), "proportion" (x = cases, limits are proportions around
        ``target``) or "mean" (x = records n, limits ``normal_limits`` around
        ``target`` with standard deviation ``sd``).
    x_min, x_max : range of the precision axis (x_min > 0).
    method : limit method; default "exact" for ratios and "wilson" for
        proportions; means have one method (normal) and take none.
    sd : the national standard deviation of the records; kind "mean" only,
        where it is required.

    Returns
    -------
    DataFrame with columns x, lower95, upper95, lower998, upper998.
    """
    if not (x_min > 0 and x_max > x_min):
        raise ValueError(f"need 0 < x_min < x_max, got {x_min!r}, {x_max!r}")
    if kind not in FUNNEL_KINDS:
        raise ValueError(f"kind must be one of {FUNNEL_KINDS}, got {kind!r}")
    if kind == "mean":
        if sd is None:
            raise ValueError("a funnel for a mean needs the standard deviation of the records (sd)")
        if method not in (None, "normal"):
            raise ValueError(f"a funnel for a mean has one limit method, 'normal'; got {method!r}")
    elif sd is not None:
        raise ValueError(f"sd applies to a funnel for a mean, not kind {kind!r}")
    x = np.geomspace(float(x_min), float(x_max), int(n_points))
    out = {"x": x}
    for level, tag in ((0.95, "95"), (0.998, "998")):
        if kind == "ratio":
            lo, hi = ratio_limits(x, level, method or "exact", overdispersion)
            lo, hi = lo * target, hi * target
        elif kind == "proportion":
            lo, hi = proportion_limits(target, x, level, method or "wilson", overdispersion)
        else:
            lo, hi = normal_limits(target, sd, x, level, overdispersion)
        out[f"lower{tag}"] = lo
        out[f"upper{tag}"] = hi
    return pd.DataFrame(out, columns=["x", "lower95", "upper95", "lower998", "upper998"])
