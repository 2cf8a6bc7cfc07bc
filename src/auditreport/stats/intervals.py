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
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2, norm

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
