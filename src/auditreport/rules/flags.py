"""HQIP outlier flags: the vocabulary and the one flag rule (METHODS.md section 4).

Every path that flags a unit (the national stage's indicators, the Cox O/E,
aggregate mode) calls :func:`flag_units`, and every module that shows a flag
takes its code, label and order from here, so a unit gets the same flag
wherever it is judged and reads the same wherever it is shown.

Flag codes say on which side of the limits a unit lies (``alarm_high`` is
above the upper 99.8% limit).  Whether that is worse or better depends on the
measure's direction (``DIRECTIONS``): for mortality (lower is better) high is
worse, for a process measure such as surgery within 36 hours (higher is
better) high is better.  Reports say so in HQIP's words, "worse than expected"
and "better than expected" (:func:`flag_words`, :func:`flag_short_words`,
:func:`flag_direction`, :func:`flag_description`).

Reference: Healthcare Quality Improvement Partnership, "Detection and
management of outliers for national clinical audits" (2011; revised 2017 and
2024): alarm beyond the 99.8% limit (about 3 SD), alert beyond the 95% limit
(about 2 SD), on both sides (low outliers are positive outliers and are
reported too).

Methods of :func:`flag_units` (``FLAG_METHODS``):

- ``"discrete"`` (default): a unit is flagged only as far as both its exact
  one-sided tail probability under the target *and* the funnel limits support
  it, in the same direction.  Smooth funnel limits treat the count as
  continuous: on a ratio funnel a unit with no deaths lies below the lower
  limit however few were expected, yet with E = 1.9 no deaths happen 15% of
  the time by chance alone; and 3 deaths in 3 cases at a 20% rate lie above
  the 99.8% limit of proportions, yet happen with probability 0.008 (an
  alert, not an alarm).  The tail is the discrete test; over-dispersion acts
  through the limits (Spiegelhalter 2005), so an adjusted audit flags no more
  than its limits allow.
  For a mean the tail is the normal one of the unit's mean under the target
  (standard error sd/sqrt(n)), the test behind the normal funnel.
- ``"phe"``: PHEindicatormethods' labels: the unit's own interval against the
  target (``funnel_ratio_significance`` for ratios: exact when O < 10, Byars
  otherwise; the Wilson score interval for proportions; the normal interval
  mean -/+ z sd/sqrt(n) for means).  NYS DOH flags hospitals the same way.
- ``"limits"``: the value against the funnel limits alone, as FunnelPlotR
  labels points.

Boundary rules: a value exactly on a limit is *inside* it, and an interval
bound exactly on the target does not exclude it (strict comparisons, as in
PHEindicatormethods' ``assign_funnel_significance``); a tail probability of
exactly 0.025 (or 0.001) does not raise an alert (or alarm).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from auditreport.stats import intervals

__all__ = [
    "ALARM_HIGH", "ALERT_HIGH", "AS_EXPECTED", "ALERT_LOW", "ALARM_LOW", "NOT_ASSESSED", "FLAGS",
    "FLAG_LABELS", "FLAG_SHORT_LABELS", "FLAG_ORDER", "PHE_LABELS", "FLAG_METHODS", "KINDS",
    "ALERT_TAIL", "ALARM_TAIL", "flag_units", "tail_probabilities",
    "DIRECTIONS", "LOWER_IS_BETTER", "HIGHER_IS_BETTER", "flag_words", "flag_short_words", "flag_direction",
    "flag_description",
]

ALARM_HIGH = "alarm_high"
ALERT_HIGH = "alert_high"
AS_EXPECTED = "as_expected"
ALERT_LOW = "alert_low"
ALARM_LOW = "alarm_low"
#: The flag of a unit that is not judged (no value, or no target).
NOT_ASSESSED = ""

#: Every flag code, from the most severe high to the most severe low.
FLAGS = (ALARM_HIGH, ALERT_HIGH, AS_EXPECTED, ALERT_LOW, ALARM_LOW)

FLAG_LABELS = {
    ALARM_HIGH: "Alarm: higher than expected (above 99.8% limit)",
    ALERT_HIGH: "Alert: higher than expected (above 95% limit)",
    AS_EXPECTED: "As expected (within 95% limits)",
    ALERT_LOW: "Alert: lower than expected (below 95% limit)",
    ALARM_LOW: "Alarm: lower than expected (below 99.8% limit)",
    NOT_ASSESSED: "Not assessed (no value)",
}

#: Labels for table cells and badges.
FLAG_SHORT_LABELS = {
    ALARM_HIGH: "Alarm (high)",
    ALERT_HIGH: "Alert (high)",
    AS_EXPECTED: "As expected",
    ALERT_LOW: "Alert (low)",
    ALARM_LOW: "Alarm (low)",
    NOT_ASSESSED: "Not assessed",
}

#: Sort rank of each flag in a table: severity order as ``FLAGS``, not assessed last.
FLAG_ORDER = {flag: rank for rank, flag in enumerate((*FLAGS, NOT_ASSESSED))}

#: PHEindicatormethods significance labels -> flag codes.
PHE_LABELS = {
    "High (0.001)": ALARM_HIGH,
    "High (0.025)": ALERT_HIGH,
    "Not significant": AS_EXPECTED,
    "Low (0.025)": ALERT_LOW,
    "Low (0.001)": ALARM_LOW,
}

FLAG_METHODS = ("discrete", "phe", "limits")
#: What is compared: a proportion (observed / cases), a ratio (observed / expected) or a mean (sum / records).
KINDS = ("proportion", "ratio", "mean")

#: One-sided tail probabilities of the 95% and 99.8% limits: below them a unit is an alert or an alarm.
ALERT_TAIL = 0.025
ALARM_TAIL = 0.001

# Signed severity: +2 alarm high, +1 alert high, 0 as expected, -1 alert low, -2 alarm low.
_BY_SEVERITY = np.array([ALARM_LOW, ALERT_LOW, AS_EXPECTED, ALERT_HIGH, ALARM_HIGH], dtype=object)

Limits = Sequence[ArrayLike]

# ---------------------------------------------------------------- words by direction

LOWER_IS_BETTER = "lower_is_better"
HIGHER_IS_BETTER = "higher_is_better"
#: A measure's direction: which side of the limits is worse.
DIRECTIONS = (LOWER_IS_BETTER, HIGHER_IS_BETTER)

_SIDE = {ALARM_HIGH: "high", ALERT_HIGH: "high", ALERT_LOW: "low", ALARM_LOW: "low"}
_LEVEL_WORD = {ALARM_HIGH: "Alarm", ALERT_HIGH: "Alert", ALERT_LOW: "Alert", ALARM_LOW: "Alarm"}
_LIMIT = {ALARM_HIGH: "above the 99.8% limit", ALERT_HIGH: "above the 95% limit",
          ALERT_LOW: "below the 95% limit", ALARM_LOW: "below the 99.8% limit"}


def _check_flag_direction(flag: str, direction: str | None) -> None:
    if flag not in FLAG_ORDER:
        raise ValueError(f"unknown flag {flag!r}; flags are {(*FLAGS, NOT_ASSESSED)}")
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def flag_direction(flag: str, direction: str | None) -> str:
    """Whether a flag is "worse", "better", "as_expected" or "" (no flag), for a measure's ``direction``.

    ``alarm_high``/``alert_high`` are "worse" when lower is better and "better"
    when higher is better; the low flags the other way round.  With
    ``direction`` None (a measure with no direction, as aggregate mode without
    ``--direction``) the side is returned as it is: "high" or "low".

    Examples
    --------
    >>> flag_direction("alarm_high", "lower_is_better"), flag_direction("alarm_high", "higher_is_better")
    ('worse', 'better')
    """
    _check_flag_direction(flag, direction)
    if flag == NOT_ASSESSED:
        return ""
    if flag == AS_EXPECTED:
        return "as_expected"
    side = _SIDE[flag]
    if direction is None:
        return side
    worse_side = "high" if direction == LOWER_IS_BETTER else "low"
    return "worse" if side == worse_side else "better"


def flag_words(flag: str, direction: str | None) -> str:
    """A flag in HQIP's words for a measure's ``direction``: "Alarm: worse than expected" and the like.

    Alarm/alert/as expected from the flag, worse/better from where the unit
    lies and the direction (:func:`flag_direction`).  ``NOT_ASSESSED`` ("")
    gives "": a statistic that carries no status, or a unit that was not
    judged, has no words (a caller that knows the unit was due a status may
    write "Not assessed").  ``direction`` None gives the side instead:
    "Alarm: higher than expected".

    Examples
    --------
    >>> flag_words("alarm_high", "lower_is_better")
    'Alarm: worse than expected'
    >>> flag_words("alert_high", "higher_is_better")
    'Alert: better than expected'
    >>> flag_words("as_expected", "higher_is_better")
    'As expected'
    """
    way = flag_direction(flag, direction)
    if way in ("", "as_expected"):
        return "As expected" if way else ""
    return f"{_LEVEL_WORD[flag]}: {way if direction is not None else way + 'er'} than expected"


def flag_short_words(flag: str, direction: str | None) -> str:
    """The words for a table cell or badge: "Alarm (worse)", "Alert (better)", "As expected", "" (no flag).

    With ``direction`` None: "Alarm (high)", as ``FLAG_SHORT_LABELS``.

    Examples
    --------
    >>> flag_short_words("alarm_low", "lower_is_better"), flag_short_words("alarm_low", "higher_is_better")
    ('Alarm (better)', 'Alarm (worse)')
    """
    way = flag_direction(flag, direction)
    if way in ("", "as_expected"):
        return "As expected" if way else ""
    return f"{_LEVEL_WORD[flag]} ({way})"


def flag_description(flag: str, direction: str | None) -> str:
    """The words with the limit crossed, for a tooltip or a footnote.

    Examples
    --------
    >>> flag_description("alarm_low", "higher_is_better")
    'Alarm: worse than expected (below the 99.8% limit)'
    >>> flag_description("as_expected", "lower_is_better")
    'As expected (within the 95% limits)'
    """
    words = flag_words(flag, direction)
    if flag == NOT_ASSESSED:
        return words
    if flag == AS_EXPECTED:
        return f"{words} (within the 95% limits)"
    return f"{words} ({_LIMIT[flag]})"



def flag_units(kind: str, observed: ArrayLike, precision: ArrayLike, target: ArrayLike,
               limits95: Limits | None, limits998: Limits | None, method: str = "discrete",
               sd: ArrayLike | None = None) -> np.ndarray:
    """The HQIP flag of each unit, by the one rule every path uses.

    Parameters
    ----------
    kind : "proportion" (value = observed / cases), "ratio" (value =
        observed / expected) or "mean" (value = observed / n, the mean).
    observed : events (deaths) of each unit; for a mean, the sum of the
        unit's values (so that observed / n is its mean).
    precision : cases (proportion), expected events E (ratio) or records n
        (mean) of each unit.
    target : the comparator on the value's scale: a fraction for proportions
        (the national rate or a standard), the target O/E for ratios (1), the
        national mean or a standard for means.
    limits95, limits998 : ``(lower, upper)`` funnel limits on the value's
        scale at each unit's precision (``stats.funnel``), with whatever
        over-dispersion adjustment the audit uses.  Not used by ``"phe"``
        (may be None there).
    method : "discrete" (default), "phe" or "limits"; see below.
    sd : kind "mean" only, where it is required: the standard deviation of
        the records (the national one, as ``funnel.normal_limits`` takes), a
        scalar or one per unit.

    Returns
    -------
    numpy.ndarray
        Object array of flag codes (``FLAGS``, or ``NOT_ASSESSED``), broadcast
        over the inputs.

    Notes
    -----
    ``"discrete"`` (METHODS.md section 4): the exact one-sided tail
    probability of the unit's count under the target (``tail_probabilities``:
    binomial(n, target) for proportions, Poisson with mean target x E for
    ratios) below 0.025 supports an alert, below 0.001 an alarm; the funnel
    limits support an alert beyond the 95% limit and an alarm beyond the
    99.8% limit; the flag is the lesser of the two in the same direction, and
    "as_expected" when they point different ways.  The tail is the test
    behind the unit's exact interval (Garwood's for ratios, Clopper-Pearson's
    for proportions), so behind every flag that interval excludes the target
    at the flag's level; the limits carry the audit's
    over-dispersion adjustment and can only lower the flag.  Counts must be
    whole numbers (and, for proportions, so must the cases): the tails are
    those of a count.  For a mean the tail is normal: Phi(z) and 1 - Phi(z)
    with z = (mean - target) / (sd / sqrt(n)), the test behind the normal
    funnel, so without over-dispersion the two agree and the limits decide.

    ``"phe"`` reproduces PHEindicatormethods' labels: for ratios the unit's
    O/E interval (exact when O < 10, Byars otherwise:
    ``intervals.ratio_interval(method="phe")``), for proportions its Wilson
    score interval, for means mean -/+ z sd/sqrt(n), against the target; the
    99.8% interval gives alarms.

    ``"limits"`` compares the value with the limits alone (FunnelPlotR).

    Edge rules, all methods: a unit whose value is not a finite number (no
    cases, E = 0, NaN count) or whose target is NaN is not assessed (""). A
    value on a limit is inside it; an interval bound on the target does not
    exclude it; a tail of exactly 0.025 (0.001) is not an alert (alarm); a NaN
    limit never flags.

    Examples
    --------
    Against a 20% target (METHODS.md section 4): 0 of 30 (lower tail 0.00124),
    3 of 3 (upper tail 0.0080) and 20 of 40 (upper tail 2.2e-05):

    >>> from auditreport.stats.funnel import proportion_limits
    >>> deaths, cases = [0, 3, 20], [30, 3, 40]
    >>> l95, l998 = proportion_limits(0.2, cases, 0.95), proportion_limits(0.2, cases, 0.998)
    >>> flag_units("proportion", deaths, cases, 0.2, l95, l998).tolist()
    ['alert_low', 'alert_high', 'alarm_high']

    The smooth limits alone, and PHEindicatormethods' Wilson intervals, make
    3 of 3 an alarm:

    >>> flag_units("proportion", deaths, cases, 0.2, l95, l998, method="limits").tolist()
    ['alert_low', 'alarm_high', 'alarm_high']
    >>> flag_units("proportion", deaths, cases, 0.2, None, None, method="phe").tolist()
    ['alert_low', 'alarm_high', 'alarm_high']
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if method not in FLAG_METHODS:
        raise ValueError(f"flag method must be one of {FLAG_METHODS}, got {method!r}")
    _check_sd(kind, sd)
    o, x, t = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (observed, precision, target)))
    s = np.broadcast_to(np.asarray(sd if sd is not None else 1.0, dtype=float), o.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(x > 0, o / x, np.nan)
    assessed = np.isfinite(value) & ~np.isnan(t)
    if kind == "mean":
        assessed &= np.isfinite(s) & (s > 0)

    if method == "phe":
        severity = _interval_severity(kind, o, x, t, s)
    else:
        if limits95 is None or limits998 is None:
            raise ValueError(f"flag method {method!r} needs the funnel limits (limits95 and limits998)")
        severity = _limit_severity(value, *limits95, *limits998)
        if method == "discrete":
            lower, upper = tail_probabilities(kind, np.where(assessed, o, 0.0), np.where(assessed, x, 1.0),
                                              np.where(assessed, t, 0.5), sd=np.where(assessed, s, 1.0)
                                              if kind == "mean" else None)
            severity = _agreed(severity, _tail_severity(lower, upper))
    shape = np.broadcast_shapes(np.shape(severity), assessed.shape)
    out = np.empty(shape, dtype=object)
    out[...] = _BY_SEVERITY[np.broadcast_to(severity, shape) + 2]
    out[~np.broadcast_to(assessed, shape)] = NOT_ASSESSED
    return out


def tail_probabilities(kind: str, observed: ArrayLike, precision: ArrayLike,
                       target: ArrayLike, sd: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-sided tail probabilities of each unit's count (or mean) under the target.

    Returns ``(P(X <= O), P(X >= O))`` with X ~ binomial(n, target) for
    proportions (``precision`` = n, ``scipy.stats.binom``) and X ~ Poisson(target
    x E) for ratios (``precision`` = E, ``scipy.stats.poisson``).  The upper
    tail of O = 0 is 1.  For means (``observed`` the unit's sum, ``precision``
    n, ``sd`` the records' standard deviation) the normal tails of the mean,
    ``(Phi(z), 1 - Phi(z))`` with z = (O/n - target) / (sd / sqrt(n)).  For a ratio, P(X >= O) < a/2 exactly when the
    Garwood exact interval of O/E lies above the target (the chi-squared /
    Poisson identity), so the Poisson tail is the test behind the exact
    interval that ``analysis.measures`` publishes.

    Raises
    ------
    ValueError
        If a count (or, for proportions, a number of cases) is not a whole
        number, or a count exceeds its cases: these are tails of counts.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_sd(kind, sd)
    o, x, t = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (observed, precision, target)))
    if kind == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (o / x - t) / (np.asarray(sd, dtype=float) / np.sqrt(x))
        return stats.norm.cdf(z), stats.norm.sf(z)
    o = _whole(o, "observed counts")
    if kind == "proportion":
        n = _whole(x, "cases (proportion denominators)")
        if (o > n).any():
            raise ValueError(f"observed exceeds cases at position(s) {_positions(o > n)}")
        return stats.binom.cdf(o, n, t), stats.binom.sf(o - 1, n, t)
    mean = t * x
    return stats.poisson.cdf(o, mean), stats.poisson.sf(o - 1, mean)


def _check_sd(kind: str, sd: ArrayLike | None) -> None:
    if kind == "mean" and sd is None:
        raise ValueError("flagging a mean needs the standard deviation of the records (sd)")
    if kind != "mean" and sd is not None:
        raise ValueError(f"sd applies to kind 'mean', not {kind!r}")


def _whole(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as whole numbers, allowing float rounding noise; raise naming the positions that are not."""
    rounded = np.round(a)
    bad = ~(np.abs(a - rounded) <= 1e-9 * np.maximum(1.0, np.abs(a))) | (a < 0)
    if bad.any():
        raise ValueError(f"the discrete flag rule needs {what} as whole numbers >= 0; not so at position(s) "
                         f"{_positions(bad)}; use flag method 'limits' or 'phe' for a measure that is not a count")
    return rounded


def _positions(mask: np.ndarray, shown: int = 5) -> str:
    idx = np.flatnonzero(mask)
    more = f" and {len(idx) - shown} more" if len(idx) > shown else ""
    return ", ".join(str(i) for i in idx[:shown]) + more


def _limit_severity(value, lower95, upper95, lower998, upper998) -> np.ndarray:
    """Signed severity of each value against its funnel limits (NaN comparisons are False: no flag)."""
    v, l95, u95, l998, u998 = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (value, lower95, upper95, lower998, upper998)))
    return _signed(v < l95, v < l998, v > u95, v > u998)


def _tail_severity(lower_tail: np.ndarray, upper_tail: np.ndarray) -> np.ndarray:
    """Signed severity of exact tail probabilities (the two tails cannot both be below 0.025)."""
    return _signed(lower_tail < ALERT_TAIL, lower_tail < ALARM_TAIL, upper_tail < ALERT_TAIL, upper_tail < ALARM_TAIL)


def _interval_severity(kind: str, o: np.ndarray, x: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Signed severity of the unit's own 95% and 99.8% intervals against the target (PHEindicatormethods)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ratio":
            (l95, u95), (l998, u998) = (intervals.ratio_interval(o, x, level, method="phe") for level in (0.95, 0.998))
        elif kind == "mean":
            mean, se = o / x, s / np.sqrt(x)
            (l95, u95), (l998, u998) = ((mean - z * se, mean + z * se) for z in (intervals.Z95, intervals.Z998))
        else:
            (l95, u95), (l998, u998) = (intervals.wilson(o, x, level) for level in (0.95, 0.998))
    return _signed(u95 < t, u998 < t, l95 > t, l998 > t)


def _signed(low95: np.ndarray, low998: np.ndarray, high95: np.ndarray, high998: np.ndarray) -> np.ndarray:
    """Signed severity from where a unit lies: -2 beyond the low 99.8% side ... +2 beyond the high one, else 0."""
    s = np.zeros(np.shape(low95), dtype=int)
    s[low95] = -1
    s[low998] = -2
    s[high95] = 1
    s[high998] = 2
    return s


def _agreed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The severity both support: the lesser magnitude when they share a direction, else 0."""
    return np.where(a * b > 0, np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0)
