"""Over-dispersion estimates for funnel plots (METHODS.md section 3).

References
----------
- Spiegelhalter DJ. Handling over-dispersion of performance indicators.
  Qual Saf Health Care 2005;14:347-351 (winsorised phi, additive tau^2).
- DerSimonian R, Laird N. Meta-analysis in clinical trials. Control Clin
  Trials 1986;7:177-188 (moment estimator of tau^2).
- NHS Digital. Summary Hospital-level Mortality Indicator (SHMI) methodology,
  and its implementation in FunnelPlotR (nhs-r-community/FunnelPlotR,
  R/od_adjustment.R: ``transformed_zscore``, ``truncation``, ``phi_func``,
  ``tau_func``; R/funnel_plot.R for the order of the steps).

Scales used for the z-scores (and therefore for tau^2):

- "multiplicative" and "additive", ratios: y = O/E, target 1, s = 1/sqrt(E),
  z = (O - E)/sqrt(E) (Spiegelhalter 2005, Poisson on the natural scale).
- "multiplicative" and "additive", proportions: y = x/n, s = sqrt(p0(1-p0)/n),
  z = (y - p0)/s (Spiegelhalter 2005, binomial on the natural scale).
- "multiplicative" and "additive", means: y = mean, s = sd/sqrt(n) with sd
  the national standard deviation of the records, z = (y - mu0)/s
  (Spiegelhalter 2005, normal data); tau^2 is then on the scale of the values.
- "shmi" (ratios only): E rounded to 2 dp, z = sqrt(E) ln(O/E), s = 1/sqrt(E);
  top and bottom 10% truncated (dropped) by FunnelPlotR's rank rule; tau^2
  computed from the kept units only (FunnelPlotR change of 29/11/2020).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import chi2, rankdata

__all__ = [
    "Overdispersion",
    "OD_METHODS",
    "NONE",
    "estimate_ratio",
    "estimate_proportion",
    "estimate_mean",
    "winsorise",
    "shmi_truncation_mask",
    "dersimonian_laird_tau2",
]

OD_METHODS = ("none", "multiplicative", "additive", "shmi")
TRIM = 0.1


@dataclass(frozen=True)
class Overdispersion:
    """An over-dispersion estimate and how it was made.

    Attributes
    ----------
    method : "none" | "multiplicative" | "additive" | "shmi"
    phi : dispersion ratio, mean squared (winsorised/truncated) z-score; 1 for "none".
    tau2 : DerSimonian-Laird between-unit variance on the scale of the method; 0
        for "none" and "multiplicative" (it is still computed and stored for
        "multiplicative" so a report can state it).
    n_units : number of units with a usable z-score.
    n_trimmed : units winsorised (values changed) or, for "shmi", truncated (dropped).
    chi2_p : P(chi2_I > I * phi), the test of over-dispersion; None for "none".
    """

    method: str
    phi: float
    tau2: float
    n_units: int
    n_trimmed: int
    chi2_p: float | None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def inflation(self) -> float:
        """sqrt(phi) when phi > 1, else 1: Spiegelhalter only inflates, never shrinks, limits."""
        return float(np.sqrt(self.phi)) if self.phi > 1.0 else 1.0


NONE = Overdispersion(method="none", phi=1.0, tau2=0.0, n_units=0, n_trimmed=0, chi2_p=None)


def winsorise(z: np.ndarray, trim: float = TRIM) -> tuple[np.ndarray, int]:
    """Winsorise z at its ``trim`` and ``1 - trim`` quantiles.

    Quantiles use numpy's default linear interpolation, which is R's type 7 (the
    ``quantile`` default used by FunnelPlotR's ``winsorisation``).  Returns the
    winsorised values and the number of values actually changed.
    """
    z = np.asarray(z, dtype=float)
    lz, uz = np.quantile(z, [trim, 1.0 - trim])
    w = np.clip(z, lz, uz)
    return w, int(np.sum((z < lz) | (z > uz)))


def shmi_truncation_mask(z: np.ndarray, trim: float = TRIM) -> np.ndarray:
    """Boolean mask of the z-scores kept by FunnelPlotR's SHMI ``truncation``.

    rank (ties averaged), group = floor(rank * k / (I + 1)) with k = 1/trim;
    groups 0 and k-1 are dropped.  With few units nothing may be dropped
    (I = 6 keeps all six).
    """
    z = np.asarray(z, dtype=float)
    k = 1.0 / trim
    rk = rankdata(z, method="average")
    sp = np.floor(rk * k / (len(z) + 1))
    return (sp > 0) & (sp < k - 1)


def dersimonian_laird_tau2(phi: float, n: int, s: np.ndarray) -> float:
    """tau^2 = max(0, (I phi - (I - 1)) / (sum w - sum w^2 / sum w)), w = 1/s^2.

    As FunnelPlotR ``tau_func``: 0 when I phi < I - 1 or there are no units.
    """
    s = np.asarray(s, dtype=float)
    if n == 0 or s.size == 0 or n * phi < n - 1:
        return 0.0
    w = 1.0 / s**2
    denom = w.sum() - (w**2).sum() / w.sum()
    if denom <= 0:
        return 0.0
    return float(max(0.0, (n * phi - (n - 1)) / denom))


def _chi2_p(phi: float, n: int) -> float | None:
    if n == 0 or not np.isfinite(phi):
        return None
    return float(chi2.sf(n * phi, n))


def _from_z(method: str, z: np.ndarray, s: np.ndarray, trim: float) -> Overdispersion:
    """phi/tau^2 from natural-scale z-scores: winsorised mean square, DL over all units."""
    ok = np.isfinite(z) & np.isfinite(s) & (s > 0)
    z, s = z[ok], s[ok]
    n = int(z.size)
    if n == 0:
        return Overdispersion(method=method, phi=1.0, tau2=0.0, n_units=0, n_trimmed=0, chi2_p=None)
    wz, n_trim = winsorise(z, trim)
    phi = float(np.mean(wz**2))
    tau2 = dersimonian_laird_tau2(phi, n, s)
    return Overdispersion(method=method, phi=phi, tau2=tau2, n_units=n, n_trimmed=n_trim, chi2_p=_chi2_p(phi, n))


def _check_method(method: str) -> None:
    if method not in OD_METHODS:
        raise ValueError(f"overdispersion method must be one of {OD_METHODS}, got {method!r}")


def _usable_units(counts, sizes, names: str) -> tuple[np.ndarray, np.ndarray]:
    """Units' counts and sizes (E or n) as flat float arrays, keeping only units with both finite and size > 0."""
    c = np.asarray(counts, dtype=float).ravel()
    z = np.asarray(sizes, dtype=float).ravel()
    if c.shape != z.shape:
        raise ValueError(f"{names} must have the same length")
    keep = np.isfinite(c) & np.isfinite(z) & (z > 0)
    return c[keep], z[keep]


def estimate_ratio(observed, expected, method: str, trim: float = TRIM) -> Overdispersion:
    """Estimate over-dispersion of O/E ratios around 1.

    "multiplicative"/"additive": z = (O - E)/sqrt(E), phi = mean of squared
    z-scores winsorised at 10%/90% (Spiegelhalter QSHC 2005), tau^2 by
    DerSimonian-Laird with w = E.  "shmi": exactly FunnelPlotR's default
    (``data_type = "SR"``, ``sr_method = "SHMI"``, ``trim_by = 0.1``), which gives
    phi = 2.948033 for its test data.  Units with E <= 0 are ignored.
    """
    _check_method(method)
    if method == "none":
        return NONE
    o, e = _usable_units(observed, expected, "observed and expected")
    if method == "shmi":
        # FunnelPlotR rounds the SHMI expected to 2 dp before anything else.
        e = np.round(e, 2)
        with np.errstate(divide="ignore"):
            z = np.sqrt(e) * np.log(o / e)
        if z.size == 0:
            return Overdispersion(method=method, phi=1.0, tau2=0.0, n_units=0, n_trimmed=0, chi2_p=None)
        kept = shmi_truncation_mask(z, trim)
        n = int(kept.sum())
        phi = float(np.mean(z[kept] ** 2)) if n else 1.0
        tau2 = dersimonian_laird_tau2(phi, n, 1.0 / np.sqrt(e[kept]))
        return Overdispersion(
            method=method, phi=phi, tau2=tau2, n_units=n, n_trimmed=int(z.size - n), chi2_p=_chi2_p(phi, n)
        )
    z = (o - e) / np.sqrt(e)
    s = 1.0 / np.sqrt(e)
    return _from_z(method, z, s, trim)


def estimate_proportion(events, n, target: float, method: str, trim: float = TRIM) -> Overdispersion:
    """Estimate over-dispersion of proportions x/n around ``target`` (a fraction).

    z = (x/n - p0) / sqrt(p0 (1 - p0) / n); phi winsorised as for ratios;
    tau^2 by DerSimonian-Laird with w = n / (p0 (1 - p0)).  "shmi" is a ratio
    method and is rejected.  Units with n <= 0 are ignored.
    """
    _check_method(method)
    if method == "none":
        return NONE
    if method == "shmi":
        raise ValueError("the SHMI over-dispersion method applies to ratios (O/E), not proportions")
    p0 = float(target)
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"target proportion must be strictly between 0 and 1, got {target!r}")
    x, d = _usable_units(events, n, "events and n")
    s = np.sqrt(p0 * (1.0 - p0) / d)
    z = (x / d - p0) / s
    return _from_z(method, z, s, trim)


def estimate_mean(means, n, target: float, sd, method: str, trim: float = TRIM) -> Overdispersion:
    """Estimate over-dispersion of unit means around ``target``.

    z = (mean - mu0) / (sd / sqrt(n)) (Spiegelhalter QSHC 2005, the normal
    case), phi the mean of the z-scores squared after winsorising at 10%/90%,
    tau^2 by DerSimonian-Laird with w = n / sd^2 (on the scale of the values,
    what ``funnel.normal_limits`` adds to sd^2/n).  ``sd`` is the national
    standard deviation of the records (a scalar) or one per unit.  "shmi" is a
    ratio method and is rejected.  Units with n <= 0, or a NaN mean or sd, are
    ignored.

    Examples
    --------
    >>> od = estimate_mean([9.0, 10.0, 11.0, 14.0], [25, 25, 25, 25], 10.0, 5.0, "multiplicative")
    >>> round(od.phi, 4), od.n_units
    (2.775, 4)
    """
    _check_method(method)
    if method == "none":
        return NONE
    if method == "shmi":
        raise ValueError("the SHMI over-dispersion method applies to ratios (O/E), not means")
    mu0 = float(target)
    if not np.isfinite(mu0):
        raise ValueError(f"target mean must be a finite number, got {target!r}")
    m = np.asarray(means, dtype=float).ravel()
    d = np.asarray(n, dtype=float).ravel()
    if m.shape != d.shape:
        raise ValueError("means and n must have the same length")
    s_rec = np.broadcast_to(np.asarray(sd, dtype=float), m.shape).ravel()
    keep = np.isfinite(m) & np.isfinite(d) & (d > 0) & np.isfinite(s_rec) & (s_rec > 0)
    s = s_rec[keep] / np.sqrt(d[keep])
    z = (m[keep] - mu0) / s
    return _from_z(method, z, s, trim)
