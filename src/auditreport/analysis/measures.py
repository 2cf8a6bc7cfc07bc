"""Each measure's statistics for every unit of every level (contract section 2; METHODS.md sections 2 to 5).

One function per kind (``proportion_measure``, ``mean_measure``, ``ratio_measure``, ``survival_measure``) takes a
measure's included records (``data.measures.measure_records``: one row per record, ``y`` the 0/1 event or the
value, the risk factors as read) and returns a :class:`MeasureResult`: the measure's rows of the indicator table
at the national level and each of its levels, the funnel curves of its headline statistic, the over-dispersion
estimated per level, the fitted model and the records its model left out. The national stage
(``analysis.national``) loops over the audit's measures and assembles these; the statistics themselves are
``stats``' and the flag rule ``rules.flags``'.

Which statistic carries an outlier status: only a risk-adjusted measure's headline, or an unadjusted process
measure's (HQIP: a process measure is judged against its target as it stands). The crude rate of an adjusted
measure is context (flag ""), and an unadjusted outcome measure carries no status at all; both keep their
funnel limits only where they are drawn (the headline).

Low volume (issue #15, contract section 4). At each level, the units with fewer of the measure's records than
``publication.minimum_volume[level]`` (0: none) are also pooled into one extra unit, ``LOW_VOLUME_ID``: their
records, relabelled, go through the same functions as any unit's (so the pool's figures are exactly those of a
unit made of those records). The pool carries no status and takes no part in estimating over-dispersion or in
the range of the funnel curve; its members keep their own rows (the confidential table has every unit's own
figures; the public one withholds a member's, ``rules.disclosure.withhold_low_volume``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from auditreport.analysis import survival_monitoring as sm
from auditreport.config import AuditConfig, Measure
from auditreport.errors import RiskModelError
from auditreport.rules.disclosure import LOW_VOLUME_ID
from auditreport.rules.flags import NOT_ASSESSED, flag_units
from auditreport.stats import funnel, intervals, riskmodel, standardisation, survival
from auditreport.stats.overdispersion import (
    NONE,
    Overdispersion,
    estimate_mean,
    estimate_proportion,
    estimate_ratio,
)

#: Columns of the tidy indicator table (bundle ``indicators``), in order.
INDICATOR_COLUMNS = [
    "audit", "period", "measure", "statistic", "level", "unit_id", "unit_name", "parent_id", "numerator",
    "denominator", "observed", "expected", "value", "lower95", "upper95", "lower998", "upper998", "target",
    "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998", "flag", "method",
]
#: The columns a measure's rows carry before the national stage adds the audit, period, names and parents.
ROW_COLUMNS = [c for c in INDICATOR_COLUMNS if c not in ("audit", "period", "unit_name", "parent_id")]
FUNNEL_COLUMNS = ["measure", "statistic", "level", "x", "lower95", "upper95", "lower998", "upper998", "target"]
#: The column holding each level's unit code (None: the nation is one unit).
LEVEL_KEYS: dict[str, str | None] = {"national": None, "provider": "provider_code", "consultant": "consultant_code"}
#: A Cox model needs deaths to estimate anything; an audit period with (almost) none is legitimate.
MIN_COX_DEATHS = 2
_LIMITS = ("limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998")
_NAN_LIMITS = (np.nan, np.nan, np.nan, np.nan)
_TEXT_COLUMNS = ("measure", "statistic", "level", "unit_id", "flag", "method")


@dataclass
class MeasureResult:
    """One measure's results: indicator rows, funnels, over-dispersion, model and what the model left out.

    ``overdispersion`` is the estimate behind the headline's limits per level (provider, consultant);
    ``national`` the national cases, events (or sum) and value; ``model`` the measure's entry of model.json
    (None when it has no model); ``risk`` each analysed record's predicted risk (adjusted proportions only);
    ``excluded`` the records the model left out, by unit (``unit_id``, ``reason``, ``records``); ``details``
    what the metadata says about this measure beyond the contract's keys (survival and Cox descriptions).
    """

    measure: Measure
    rows: pd.DataFrame
    funnels: pd.DataFrame
    overdispersion: dict[str, dict[str, Any]]
    national: dict[str, Any]
    method: str
    model: dict[str, Any] | None = None
    risk: pd.DataFrame | None = None
    excluded: pd.DataFrame | None = None
    km: pd.DataFrame | None = None
    survival_tests: pd.DataFrame | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    low_volume: dict[str, list[str]] = field(default_factory=dict)  # per level: the units in the pool


def compute_measure(config: AuditConfig, measure: Measure, records: pd.DataFrame,
                    providers: pd.Index) -> MeasureResult:
    """The results of one measure from its included records; ``providers`` get rows even without records.

    A provider with records in the audit but none included in this measure (an eligibility filter, or every
    patient censored early) is given rows with no cases, so its report says so instead of missing the measure.
    """
    compute = {"proportion": proportion_measure, "mean": mean_measure, "ratio": ratio_measure,
               "survival": survival_measure}[measure.kind]
    result = compute(config, measure, records, providers)
    rows = _typed(result.rows)
    rows.loc[rows["unit_id"] == LOW_VOLUME_ID, "flag"] = NOT_ASSESSED  # a pool is no unit to judge
    result.rows = rows
    result.low_volume = {level: list(units) for level, units in measure_pools(config, measure, records).items()
                         if len(units)}
    return result


def measure_pools(config: AuditConfig, measure: Measure, records: pd.DataFrame) -> dict[str, pd.Index]:
    """Per level of the measure, the units with records in it but fewer than the level's minimum volume.

    Counted on the measure's included records (its eligible records with an event or value), as a unit's
    denominator is. A unit with no records has nothing to pool (its report says it had none).
    """
    minimum = config.publication.minimum_volume
    return {level: low_volume_units(records, level, minimum.get(level, 0)) for level in measure.levels}


def low_volume_units(records: pd.DataFrame, level: str, minimum: int) -> pd.Index:
    """The codes of ``level`` with between 1 and ``minimum`` - 1 records (none when ``minimum`` is 0)."""
    key = LEVEL_KEYS[level]
    if key is None or minimum <= 0 or key not in records:
        return pd.Index([], dtype=object)
    counts = records[key].dropna().astype(str).value_counts()
    return pd.Index(sorted(counts.index[counts < minimum]), dtype=object)


def pooled(records: pd.DataFrame, level: str, members: pd.Index | None) -> pd.DataFrame:
    """``records`` plus a copy of the ``members``' records relabelled ``LOW_VOLUME_ID`` at ``level``.

    Grouped by the level's code, the result gives every unit as before and the pool as one more unit.
    """
    key = LEVEL_KEYS[level]
    if key is None or members is None or not len(members):
        return records
    codes = records[key]
    pool = records[codes.notna() & codes.astype(str).isin(members)].copy()
    pool[key] = pd.Series(LOW_VOLUME_ID, index=pool.index, dtype=object)
    out = pd.concat([records.astype({key: object}), pool])
    return out


def _real(units: pd.Index) -> np.ndarray:
    """True for every unit but the pool (which takes no part in over-dispersion or the funnel's range)."""
    return np.asarray(units.astype(str) != LOW_VOLUME_ID, bool)


def _typed(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with every figure a float and every code or word text, whatever pandas inferred on the way."""
    return rows.astype({c: float for c in ROW_COLUMNS if c not in _TEXT_COLUMNS} | {c: object for c in _TEXT_COLUMNS})


# ---------------------------------------------------------------------------------------------------------------
# Units and rows


def unit_totals(records: pd.DataFrame, level: str, columns: dict[str, tuple[str, str]],
                providers: pd.Index | None = None) -> pd.DataFrame:
    """Per-unit aggregates of ``records`` at ``level`` (``columns``: name -> (record column, 'sum' | 'size')).

    The national level is one unit, "national"; records without the level's code count nationally only. At the
    provider level, ``providers`` missing from the records are added with zeros.
    """
    key = LEVEL_KEYS[level]
    if key is None:
        out = pd.DataFrame({name: [float(len(records)) if how == "size" else float(records[col].sum())]
                            for name, (col, how) in columns.items()}, index=pd.Index(["national"]))
    else:
        # Only the columns summed, without the records' index: a pool's records appear twice (``pooled``).
        needed = list(dict.fromkeys([key, *(col for col, _ in columns.values())]))
        sub = records.loc[records[key].notna().to_numpy(), needed].reset_index(drop=True)
        grouped = sub.groupby(sub[key].astype(str), sort=True, observed=True)
        out = pd.DataFrame({name: (grouped.size() if how == "size" else grouped[col].sum()).astype(float)
                            for name, (col, how) in columns.items()})
        if level == "provider" and providers is not None:
            out = out.reindex(out.index.union(providers.astype(str)), fill_value=0.0)
    out.index = out.index.astype(str)
    return out


def _unit_rows(units: pd.Index, *, numerator, denominator, observed, expected, value, ci, target, limits, flag,
               method: str) -> pd.DataFrame:
    """One row per unit: its code and figures (each argument a scalar or one value per unit)."""
    n = len(units)

    def col(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n,)).copy()

    flags = np.empty(n, dtype=object)
    flags[:] = np.broadcast_to(np.asarray(flag, dtype=object), (n,))
    return pd.DataFrame({
        "unit_id": units.astype(str).to_numpy(dtype=object), "numerator": col(numerator),
        "denominator": col(denominator), "observed": col(observed), "expected": col(expected), "value": col(value),
        "lower95": col(ci[0]), "upper95": col(ci[1]), "lower998": col(ci[2]), "upper998": col(ci[3]),
        "target": col(target), **{name: col(lim) for name, lim in zip(_LIMITS, limits, strict=True)},
        "flag": flags, "method": method,
    })


def _labelled(rows: pd.DataFrame, measure: Measure, statistic: str, level: str) -> pd.DataFrame:
    """A measure's rows of one statistic at one level, in the indicator table's column order."""
    return rows.assign(measure=measure.id, statistic=statistic, level=level)[ROW_COLUMNS]


def _rows(measure: Measure, statistic: str, level: str, units: pd.Index, **figures) -> pd.DataFrame:
    return _labelled(_unit_rows(units, **figures), measure, statistic, level)


def _status(level: str, flags: np.ndarray) -> np.ndarray:
    """The nation is the comparator, never a unit judged against itself: its flag is always ""."""
    return np.full(len(flags), NOT_ASSESSED, dtype=object) if level == "national" else flags


def _od_note(od: Overdispersion | None) -> str:
    if od is None or od.method == "none":
        return " (no over-dispersion adjustment)"
    return f" (over-dispersion: {od.method}, phi={od.phi:.3f}, tau2={od.tau2:.4g})"


def _ratio_overdispersion(method: str, level: str, observed: np.ndarray, expected: np.ndarray) -> Overdispersion:
    if level == "national" or (expected > 0).sum() < 2:
        return NONE
    return estimate_ratio(observed, expected, method)


def _proportion_overdispersion(method: str, level: str, events: np.ndarray, n: np.ndarray,
                               target: float) -> Overdispersion:
    """SHMI's variant is defined for ratios: a proportion takes the multiplicative method in its place."""
    if level == "national" or (n > 0).sum() < 2 or not 0.0 < target < 1.0:
        return NONE
    return estimate_proportion(events, n, target, "multiplicative" if method == "shmi" else method)


def _funnel(measure: Measure, statistic: str, level: str, kind: str, target: float, x: np.ndarray,
            od: Overdispersion | None, **limit_args) -> pd.DataFrame | None:
    """Smooth limits behind a level's funnel plot: from the smallest unit's precision (at most 1) to 1.1 x the largest."""
    x = x[np.isfinite(x) & (x > 0)]
    if x.size == 0 or not np.isfinite(target):
        return None
    lo, hi = max(min(float(x.min()), 1.0), 0.5), float(x.max()) * 1.1
    if hi <= lo:
        hi = lo * 2.0
    curve = funnel.funnel_curve(kind, target, lo, hi, overdispersion=od, **limit_args)
    curve.insert(0, "level", level)
    curve.insert(0, "statistic", statistic)
    curve.insert(0, "measure", measure.id)
    curve["target"] = float(target)
    return curve[FUNNEL_COLUMNS]


def _concat_funnels(curves: list[pd.DataFrame | None]) -> pd.DataFrame:
    curves = [c for c in curves if c is not None]
    if not curves:
        return empty_funnels()
    return pd.concat(curves, ignore_index=True)


def empty_funnels() -> pd.DataFrame:
    """A funnel table with no curves, with the columns and kinds a reader expects."""
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("measure", "statistic", "level") else float)
                         for c in FUNNEL_COLUMNS})


# ---------------------------------------------------------------------------------------------------------------
# Risk models


def measure_position(config: AuditConfig, measure: Measure) -> int:
    """The measure's index in ``config.measures`` (how an error names its key: ``measures[2]``)."""
    return next(i for i, m in enumerate(config.measures) if m.id == measure.id)


def model_factors(config: AuditConfig, measure: Measure) -> list[riskmodel.RiskFactor]:
    """The declared risk factors the measure's model uses (``risk_model.covariates``), in that order."""
    by_name = {f.name: f for f in config.risk_factors}
    return [by_name[name] for name in measure.risk_model.covariates] if measure.risk_model else []


def _where(config: AuditConfig, measure: Measure) -> str:
    return f"{config.path}: measures[{measure_position(config, measure)}] ('{measure.id}')"


@dataclass(frozen=True)
class ImputedRecords:
    """A measure's records after its model's missing-value rules: the usable ones and the ones left out."""

    imputed: pd.DataFrame
    factor_flags: pd.DataFrame
    dropped: pd.Index
    fill: dict[str, float]


def impute_for_model(records: pd.DataFrame, factors: list[riskmodel.RiskFactor]) -> ImputedRecords:
    """Impute the measure's risk factors by their rules (fill values from its own records); drop rule 'exclude'."""
    fill = riskmodel.imputation_values(records, factors)
    imputed, flags = riskmodel.impute_missing(records, factors, fill)
    dropped = flags.index[flags["excluded"]] if "excluded" in flags else pd.Index([])
    flags = flags.drop(columns=[c for c in ("excluded",) if c in flags])
    return ImputedRecords(imputed=imputed.drop(index=dropped), factor_flags=flags.drop(index=dropped),
                          dropped=dropped, fill=fill)


def _check_covariates_vary(config: AuditConfig, measure: Measure, records: pd.DataFrame) -> None:
    """Refuse a fitted model with a covariate that has one value among the measure's records (nothing to estimate)."""
    for j, name in enumerate(measure.risk_model.covariates):
        values = records[name].dropna().astype(str).unique()
        if len(values) < 2:
            seen = f"only the value {values[0]!r}" if len(values) else "no values"
            raise RiskModelError(
                f"{_where(config, measure)}: key 'measures[{measure_position(config, measure)}].risk_model."
                f"covariates[{j}]': risk factor '{name}' has {seen} among the {len(records):,} records the measure "
                f"includes, so its effect cannot be estimated; drop '{name}' from this measure's covariates (or "
                "widen its eligibility). Nothing was written.")


def fit_measure_model(config: AuditConfig, measure: Measure, records: pd.DataFrame
                      ) -> tuple[riskmodel.RiskModel, ImputedRecords]:
    """Fit (or apply, recalibrated or not) a measure's risk model on its records.

    Logistic for a proportion (``stats.riskmodel.fit_logistic``), a log-link GLM of the measure's family
    (Poisson or gamma) for a ratio (``fit_log_glm``); ``method: fixed`` applies the published coefficients
    (``fixed_model``), recalibrated on these records if asked. Raises ``RiskModelError`` naming the file, the
    measure and the key: no events or only events, a covariate constant among the records, a categorical level
    without records or events, a value the family cannot take (with the remedy).
    """
    spec = measure.risk_model
    factors = model_factors(config, measure)
    data = impute_for_model(records, factors)
    usable = data.imputed
    binary = measure.kind == "proportion"
    try:
        if spec.method == "fit":
            if binary:
                _check_events(config, measure, usable)
            _check_covariates_vary(config, measure, records.loc[usable.index])
            model = (riskmodel.fit_logistic(usable, factors, outcome="y", fill_values=data.fill) if binary else
                     riskmodel.fit_log_glm(usable, factors, family=spec.family, outcome="y", fill_values=data.fill))
        else:
            if spec.recalibrate and binary:
                _check_events(config, measure, usable)
            model = riskmodel.fixed_model(spec.coefficients, factors, recalibrate=spec.recalibrate,
                                          df=usable if spec.recalibrate else None, outcome="y",
                                          fill_values=data.fill, family=spec.family)
    except ValueError as exc:
        raise _model_error(config, measure, usable, str(exc)) from None
    return model, data


def _check_events(config: AuditConfig, measure: Measure, records: pd.DataFrame) -> None:
    """Refuse, with a clear reason, records in which no model of the event can be fitted."""
    events, n = int(records["y"].sum()), len(records)
    key = f"measures[{measure_position(config, measure)}]"
    if events == 0:
        raise RiskModelError(f"{_where(config, measure)}: the risk model cannot be fitted on {config.source}: there "
                             f"are no events among the {n:,} records the measure includes, so there is nothing to "
                             f"predict. Check the event ({key}.event or death_within_days), or give {key}.risk_model."
                             "method: fixed with coefficients. Nothing was written.")
    if events == n:
        raise RiskModelError(f"{_where(config, measure)}: the risk model cannot be fitted on {config.source}: every "
                             f"one of the {n:,} records the measure includes has the event. Check {key}.event (or "
                             "death_within_days). Nothing was written.")


def _model_error(config: AuditConfig, measure: Measure, records: pd.DataFrame, reason: str) -> RiskModelError:
    """Name each categorical level that stops the fit and the remedy: no records, no events or only events (a
    proportion), every value 0 (a ratio's log-link model)."""
    lines = []
    index = {f.name: i for i, f in enumerate(config.risk_factors)}
    key = f"measures[{measure_position(config, measure)}].risk_model.covariates"
    y = records["y"].to_numpy(float)
    for f in model_factors(config, measure):
        if f.kind != "categorical":
            continue
        levels = records[f.name].astype("string").fillna(f.reference or "")
        for level in f.categories:
            if level == f.reference:
                continue
            mask = (levels == level).to_numpy()
            n, d = int(mask.sum()), float(y[mask].sum())
            if measure.kind == "proportion" and (n == 0 or d == 0 or d == n):
                what = "no records" if n == 0 else f"{n} records, {d:.0f} events"
            elif measure.kind != "proportion" and (n == 0 or d == 0):
                what = "no records" if n == 0 else f"{n} records, every value 0"
            else:
                continue
            lines.append(f"  risk factor '{f.name}' level '{level}': {what} "
                         f"(merge it into another level in risk_factors[{index[f.name]}].categories, "
                         f"or drop '{f.name}' from {key})")
    head = (f"{_where(config, measure)}: the risk model cannot be fitted on {config.source}; nothing was written."
            + ("\n" + "\n".join(lines) if lines else ""))
    return RiskModelError(f"{head}\n  cause: {reason}")


def _excluded_by_model(records: pd.DataFrame, dropped: pd.Index) -> pd.DataFrame:
    """The records a model's 'exclude' rule left out, per provider and nationally."""
    reason = "risk factor missing (rule: exclude)"
    if len(dropped) == 0:
        return pd.DataFrame({"unit_id": pd.Series(dtype=object), "reason": pd.Series(dtype=object),
                             "records": pd.Series(dtype="int64")})
    codes = records.loc[dropped, "provider_code"].dropna().astype(str)
    per = codes.value_counts().sort_index()
    out = pd.DataFrame({"unit_id": ["national", *per.index], "reason": reason,
                        "records": [len(dropped), *per.to_numpy()]})
    out["records"] = out["records"].astype("int64")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Proportions


def proportion_measure(config: AuditConfig, measure: Measure, records: pd.DataFrame,
                       providers: pd.Index) -> MeasureResult:
    """Crude rate; if adjusted, O/E (E = sum of logistic risks) and the bounded (logit-shift) adjusted rate.

    Status: the adjusted measure's O/E by the discrete rule against 1 (its adjusted rate carries the same flag);
    an unadjusted process measure's rate by the binomial discrete rule against its target (the national rate or
    the standard). Over-dispersion: of O/E (adjusted) or of the rate around its target, per level.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    model = data = None
    excluded = None
    if measure.adjusted:
        model, data = fit_measure_model(config, measure, records)
        timings["model"] = round(time.perf_counter() - started, 3)
        excluded = _excluded_by_model(records, data.dropped)
        records = records.drop(index=data.dropped).copy()
        records["p"] = model.predict(data.imputed.loc[records.index])
    records = records.assign(y=records["y"].astype(float))
    y = records["y"].to_numpy(float)
    cases, events = len(records), float(y.sum())
    national_rate = events / cases if cases else np.nan
    standard = measure.target is not None
    target = float(measure.target) if standard else national_rate
    columns = {"cases": ("y", "size"), "observed": ("y", "sum")}
    if measure.adjusted:
        columns["expected"] = ("p", "sum")
    rows, curves, od_info = [], [], {}
    pools = measure_pools(config, measure, records)
    for level in ("national", *measure.levels):
        level_records = pooled(records, level, pools.get(level))
        totals = unit_totals(level_records, level, columns, providers)
        n, o = totals["cases"].to_numpy(float), totals["observed"].to_numpy(float)
        real = _real(totals.index)
        if measure.adjusted:
            value = np.divide(o, n, out=np.full_like(o, np.nan), where=n > 0)
            ci = (*intervals.wilson(o, n, 0.95), *intervals.wilson(o, n, 0.998))
            rows.append(_rows(measure, "rate", level, totals.index, numerator=o, denominator=n, observed=o,
                              expected=np.nan, value=value, ci=ci, target=national_rate, limits=_NAN_LIMITS,
                              flag=NOT_ASSESSED, method="events / records; Wilson score interval (context: the "
                                                        "measure's status is its risk-adjusted rate)"))
            e = totals["expected"].to_numpy(float)
            od = _ratio_overdispersion(measure.overdispersion, level, o[real], e[real])
            oe = _labelled(oe_statistics(totals, od, status=level != "national"), measure, "oe_ratio", level)
            rows.append(oe)
            rows.append(_adjusted_rate_rows(level, totals, level_records, oe, records["p"].to_numpy(float)))
            if level != "national":
                od_info[level] = od.to_dict()
                curves.append(_funnel(measure, "oe_ratio", level, "ratio", 1.0, e[real], od))
        else:
            od = _proportion_overdispersion(measure.overdispersion, level, o[real], n[real], target)
            rate = rate_statistics(totals, target, od, status=measure.carries_status and level != "national")
            against = f"the standard {target:.4g}" if standard else "the national rate"
            rate["method"] = rate["method"].iat[0].replace("the target", against) + (
                "" if measure.carries_status else "; no status (an unadjusted outcome measure is not judged)")
            rows.append(_labelled(rate, measure, "rate", level))
            if level != "national":
                od_info[level] = od.to_dict()
                curves.append(_funnel(measure, "rate", level, "proportion", target, n[real], od))
    table = pd.concat(rows, ignore_index=True)
    result = MeasureResult(
        measure=measure, rows=table, funnels=_concat_funnels(curves), overdispersion=od_info,
        national={"cases": cases, "events": events, "value": _national_value(table, measure.headline)},
        method=_proportion_method(measure, target, standard), excluded=excluded)
    timings["statistics"] = round(time.perf_counter() - started - timings.get("model", 0.0), 3)
    if measure.adjusted:
        t0 = time.perf_counter()
        p = records["p"].to_numpy(float)
        result.model = {"family": "binomial", "model": model.to_dict(),
                        "performance": riskmodel.model_performance(p, y),
                        "calibration": riskmodel.calibration_table(p, y).to_dict(orient="records"),
                        "coefficients": riskmodel.coefficient_table(model).to_dict(orient="records")}
        result.national["expected"] = float(p.sum())
        result.risk = records.assign(measure=measure.id)[["measure", "provider_code", "consultant_code",
                                                          "procedure_date", "y", "p"]]
        result.details["factor_flags"] = data.factor_flags
        timings["performance_and_calibration"] = round(time.perf_counter() - t0, 3)
    result.timings.update(timings)
    return result


def _national_value(table: pd.DataFrame, statistic: str) -> float:
    row = table[(table["level"] == "national") & (table["statistic"] == statistic)]
    return float(row["value"].iat[0]) if len(row) else float("nan")


def _proportion_method(measure: Measure, target: float, standard: bool) -> str:
    if measure.adjusted:
        return ("risk-adjusted rate by indirect standardisation with a logit shift (bounded 0-100%): the shift d "
                "that makes the unit's expected events equal its observed, applied to the national case mix; "
                "flagged by its O/E (exact Poisson tail and funnel limits around 1)")
    if measure.carries_status:
        against = f"the standard {target:.1%}" if standard else "the national rate"
        return f"crude rate (unadjusted process measure) against {against}: exact binomial tail and funnel limits"
    return "crude rate; an unadjusted outcome measure carries no status"


def rate_statistics(totals: pd.DataFrame, target: float, overdispersion: Overdispersion | None,
                    status: bool = True) -> pd.DataFrame:
    """Events / records of each unit with Wilson intervals and funnel limits around ``target``; flagged if ``status``.

    ``totals`` has ``cases`` and ``observed`` (events) per unit (its index the unit codes). The limits are PHE's
    Wilson-inverted ones with the over-dispersion given; the flag is the discrete rule (the exact binomial tail
    under the target and the limits, ``rules.flags.flag_units``). Returns the rows' unit and figure columns.
    """
    n, o = totals["cases"].to_numpy(float), totals["observed"].to_numpy(float)
    value = np.divide(o, n, out=np.full_like(o, np.nan), where=n > 0)
    ci = (*intervals.wilson(o, n, 0.95), *intervals.wilson(o, n, 0.998))
    if not np.isfinite(target):  # no records at all: nothing to hold a unit to
        lim, status = _NAN_LIMITS, False
    else:
        lim = (*funnel.proportion_limits(target, n, 0.95, overdispersion=overdispersion),
               *funnel.proportion_limits(target, n, 0.998, overdispersion=overdispersion))
    flags = flag_units("proportion", o, n, target, lim[:2], lim[2:]) if status else NOT_ASSESSED
    method = ("events / records; Wilson score interval; PHE Wilson-inverted funnel limits around the target"
              + _od_note(overdispersion) + ("; flagged by the exact binomial tail and the limits" if status else ""))
    return _unit_rows(totals.index, numerator=o, denominator=n, observed=o, expected=np.nan, value=value, ci=ci,
                      target=target, limits=lim, flag=flags, method=method)


def oe_statistics(totals: pd.DataFrame, overdispersion: Overdispersion | None, rule: str = "discrete",
                  status: bool = True, note: str = "") -> pd.DataFrame:
    """O/E of each unit with the exact Poisson (Garwood) interval on O, ratio funnel limits and the flag by ``rule``.

    ``totals`` has ``cases``, ``observed`` and ``expected`` per unit. ``rule`` "discrete" (O a count: the exact
    Poisson tail and the limits) or "limits" (O a sum of values, as length of stay: the limits alone, as
    FunnelPlotR labels points). ``note`` begins the method text (how E was computed).
    """
    n, o, e = (totals[c].to_numpy(float) for c in ("cases", "observed", "expected"))
    value = np.divide(o, e, out=np.full_like(o, np.nan), where=e > 0)
    if rule == "discrete":  # O a count of events: the exact interval
        ci = (*intervals.ratio_interval(o, e, 0.95, method="exact"),
              *intervals.ratio_interval(o, e, 0.998, method="exact"))
    else:  # O a sum of values: the interval allows for over-dispersion as the limits do
        ci = (*funnel.overdispersed_ratio_interval(o, e, 0.95, overdispersion),
              *funnel.overdispersed_ratio_interval(o, e, 0.998, overdispersion))
    lim = (*funnel.ratio_limits(e, 0.95, overdispersion=overdispersion),
           *funnel.ratio_limits(e, 0.998, overdispersion=overdispersion))
    flags = flag_units("ratio", o, e, 1.0, lim[:2], lim[2:], method=rule) if status else NOT_ASSESSED
    tail = ("flagged by the exact Poisson tail and the limits" if rule == "discrete"
            else "flagged by the limits (FunnelPlotR; the observed value is a sum, not a count)")
    interval = ("exact Poisson (Garwood) interval on O, divided by E" if rule == "discrete" else
                "exact Poisson interval on O divided by E, widened for over-dispersion as the limits are")
    method = (f"{note}{interval}; exact Poisson funnel limits"
              f"{_od_note(overdispersion)}" + (f"; {tail}" if status else ""))
    return _unit_rows(totals.index, numerator=o if rule == "discrete" else np.nan, denominator=n, observed=o,
                      expected=e, value=value, ci=ci, target=1.0, limits=lim, flag=flags, method=method)


def _adjusted_rate_rows(level: str, totals: pd.DataFrame, records: pd.DataFrame, oe: pd.DataFrame,
                        p_national: np.ndarray) -> pd.DataFrame:
    """The bounded adjusted rate of every unit: its O, the O/E interval's and limits' O bounds, mapped alike.

    For each unit, the logit shift d with sum over its records of expit(logit p_i + d) equal to a count, and
    the mean of expit(logit p_j + d) over the national records ``p_national`` (``stats.standardisation``); a
    count of 0 maps to 0 and a count of the unit's records (or more) to 1, so the rate and its bounds stay
    within 0-1. ``records`` are the level's (a pool's records appear twice: as their units' and the pool's).
    """
    e = totals["expected"].to_numpy(float)
    counts = {"value": totals["observed"].to_numpy(float)}
    for col in ("lower95", "upper95", "lower998", "upper998", *_LIMITS):
        counts[col] = oe[col].to_numpy(float) * e
    key = LEVEL_KEYS[level]
    attributed = records if key is None else records[records[key].notna()]
    groups = (np.full(len(attributed), "national", dtype=object) if key is None
              else attributed[key].astype(str).to_numpy(dtype=object))
    rows = oe.copy()
    rows["statistic"] = "adjusted_rate"
    # The shifts of every count first, then one pass over the national risks for all of them
    # (``standardisation.bounded_adjusted_rate`` is these two steps for one count).
    shifts = np.column_stack([
        standardisation.logit_shift(attributed["p"].to_numpy(float), groups,
                                    pd.Series(values, index=totals.index)).to_numpy()
        for values in counts.values()]) if len(attributed) else np.full((len(totals), len(counts)), np.nan)
    rates = standardisation.shifted_rate(shifts, p_national)
    for j, col in enumerate(counts):
        rows[col] = rates[:, j]
    rows["target"] = float(p_national.mean())
    rows["method"] = ("logit-shift indirect standardisation (bounded 0-1): the unit's observed events, and the "
                      "O/E interval's and limits' bounds times E, as the national case mix's rate; flag of the "
                      "O/E; " + oe["method"].iat[0])
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Means and ratios


def _value_statistics(records: pd.DataFrame, level: str, units: pd.Index) -> pd.DataFrame:
    """Each unit's n, sum, mean, standard deviation and median with its 95% and 99.8% order-statistic bounds."""
    key = LEVEL_KEYS[level]
    sub = records if key is None else records[records[key].notna()]
    columns = ["n", "sum", "mean", "sd", "median", "median_lower95", "median_upper95", "median_lower998",
               "median_upper998"]
    if sub.empty:
        out = pd.DataFrame(np.nan, index=units, columns=columns)
        out[["n", "sum"]] = 0.0
        return out
    groups = np.full(len(sub), "national", dtype=object) if key is None else sub[key].astype(str).to_numpy()
    values = sub["y"].to_numpy(float)
    out = intervals.mean_sd_by_group(values, groups)
    out["sum"] = out["n"] * out["mean"]
    for level_, tag in ((0.95, "95"), (0.998, "998")):
        med = intervals.median_interval(values, groups, level_)
        out["median"] = med["median"]
        out[f"median_lower{tag}"], out[f"median_upper{tag}"] = med["lower"], med["upper"]
    out = out.reindex(units.astype(str))
    out[["n", "sum"]] = out[["n", "sum"]].fillna(0.0)
    return out[columns]


def _value_rows(measure: Measure, level: str, stats: pd.DataFrame, with_status: bool, target: float, sd: float,
                od: Overdispersion | None) -> list[pd.DataFrame]:
    """The mean (t interval) and median (exact order-statistic interval) rows of every unit."""
    n, s, means = (stats[c].to_numpy(float) for c in ("n", "sum", "mean"))
    unit_sd = stats["sd"].to_numpy(float)
    ci = (*intervals.t_interval(means, unit_sd, n, 0.95), *intervals.t_interval(means, unit_sd, n, 0.998))
    units = f" ({measure.value_unit})" if measure.value_unit else ""
    if with_status:
        lim = (*funnel.normal_limits(target, sd, n, 0.95, overdispersion=od),
               *funnel.normal_limits(target, sd, n, 0.998, overdispersion=od))
        flags = _status(level, flag_units("mean", s, n, target, lim[:2], lim[2:], method="limits", sd=sd))
        method = (f"mean{units}; t interval; normal funnel limits around {target:.4g} with the national standard "
                  f"deviation {sd:.4g}" + _od_note(od) + "; flagged by the limits")
    else:
        lim, flags = _NAN_LIMITS, NOT_ASSESSED
        method = f"mean{units}; t interval (no status)"
    mean_rows = _rows(measure, "mean", level, stats.index, numerator=np.nan, denominator=n, observed=s,
                      expected=np.nan, value=means, ci=ci, target=target, limits=lim, flag=flags, method=method)
    median_ci = tuple(stats[f"median_{b}{tag}"].to_numpy(float) for tag in ("95", "998") for b in ("lower", "upper"))
    median_rows = _rows(measure, "median", level, stats.index, numerator=np.nan, denominator=n, observed=np.nan,
                        expected=np.nan, value=stats["median"].to_numpy(float), ci=median_ci, target=np.nan,
                        limits=_NAN_LIMITS, flag=NOT_ASSESSED,
                        method=f"median{units}; exact order-statistic interval (binomial(n, 1/2) ranks); no status")
    return [mean_rows, median_rows]


def mean_measure(config: AuditConfig, measure: Measure, records: pd.DataFrame,
                 providers: pd.Index) -> MeasureResult:
    """Mean (t interval) and median (order-statistic interval); a process measure's mean on a normal funnel.

    The funnel is centred on the target (the national mean or the standard) with the national standard deviation
    (the spread of one record's value), so a unit of n records has limits target +/- z sd / sqrt(n); the
    over-dispersion of the units' means around it is estimated per level (``overdispersion.estimate_mean``).
    """
    started = time.perf_counter()
    y = records["y"].to_numpy(float)
    national_mean = float(y.mean()) if len(y) else np.nan
    sd = float(y.std(ddof=1)) if len(y) > 1 else np.nan
    standard = measure.target is not None
    target = float(measure.target) if standard else national_mean
    columns = {"cases": ("y", "size"), "sum": ("y", "sum")}
    rows, curves, od_info = [], [], {}
    pools = measure_pools(config, measure, records)
    for level in ("national", *measure.levels):
        level_records = pooled(records, level, pools.get(level))
        units = unit_totals(level_records, level, columns, providers).index
        stats = _value_statistics(level_records, level, units)
        n = stats["n"].to_numpy(float)
        real = _real(units)
        od = NONE
        if measure.carries_status and level != "national" and (n[real] > 0).sum() >= 2 and sd > 0:
            method = "multiplicative" if measure.overdispersion == "shmi" else measure.overdispersion
            od = estimate_mean(stats["mean"].to_numpy(float)[real], n[real], target, sd, method)
        rows += _value_rows(measure, level, stats, measure.carries_status, target, sd, od)
        if level != "national":
            od_info[level] = od.to_dict()
            if measure.carries_status:
                curves.append(_funnel(measure, "mean", level, "mean", target, n[real], od, sd=sd))
    table = pd.concat(rows, ignore_index=True)
    against = (f"the standard {target:.4g}" if standard else "the national mean")
    method = (f"mean against {against}: normal funnel limits with the national standard deviation"
              if measure.carries_status else "mean and median; an unadjusted outcome measure carries no status")
    result = MeasureResult(measure=measure, rows=table, funnels=_concat_funnels(curves), overdispersion=od_info,
                           national={"cases": len(y), "sum": float(y.sum()), "value": national_mean, "sd": sd},
                           method=method)
    result.timings["statistics"] = round(time.perf_counter() - started, 3)
    return result


def ratio_measure(config: AuditConfig, measure: Measure, records: pd.DataFrame,
                  providers: pd.Index) -> MeasureResult:
    """O/E of a value (sum of values over the sum of a log-link GLM's fitted values), with mean and median.

    The GLM (Poisson or gamma, log link) is fitted on the measure's records; O/E gets the exact Poisson interval
    on O, exact Poisson funnel limits with the measure's over-dispersion (SHMI's by default) and the limits rule
    (FunnelPlotR: O is a sum of values, not a count, so there is no exact tail to test).
    """
    started = time.perf_counter()
    spec = measure.risk_model
    model, data = fit_measure_model(config, measure, records)
    fitted = round(time.perf_counter() - started, 3)
    excluded = _excluded_by_model(records, data.dropped)
    records = records.drop(index=data.dropped).copy()
    records["y"] = records["y"].astype(float)
    records["mu"] = model.predict(data.imputed.loc[records.index])
    y = records["y"].to_numpy(float)
    national_mean = float(y.mean())
    sd = float(y.std(ddof=1)) if len(y) > 1 else np.nan
    columns = {"cases": ("y", "size"), "sum": ("y", "sum"), "expected": ("mu", "sum")}
    rows, curves, od_info = [], [], {}
    pools = measure_pools(config, measure, records)
    for level in ("national", *measure.levels):
        level_records = pooled(records, level, pools.get(level))
        totals = unit_totals(level_records, level, columns, providers)
        n, o, e = (totals[c].to_numpy(float) for c in ("cases", "sum", "expected"))
        real = _real(totals.index)
        od = _ratio_overdispersion(measure.overdispersion, level, o[real], e[real])
        totals = totals.rename(columns={"sum": "observed"})
        rows.append(_labelled(oe_statistics(totals, od, "limits", status=level != "national",
                                            note=f"{spec.family} GLM (log link) expected values; "),
                              measure, "oe_ratio", level))
        rows += _value_rows(measure, level, _value_statistics(level_records, level, totals.index), False,
                            national_mean, sd, None)
        if level != "national":
            od_info[level] = od.to_dict()
            curves.append(_funnel(measure, "oe_ratio", level, "ratio", 1.0, e[real], od))
    table = pd.concat(rows, ignore_index=True)
    mu = records["mu"].to_numpy(float)
    result = MeasureResult(
        measure=measure, rows=table, funnels=_concat_funnels(curves), overdispersion=od_info,
        national={"cases": len(y), "sum": float(y.sum()), "expected": float(mu.sum()),
                  "value": _national_value(table, "oe_ratio")},
        method=(f"observed / expected {measure.value_unit or 'value'}, expected from a {spec.family} GLM with a "
                "log link on the audit's risk factors; funnel limits and interval widened for over-dispersion, "
                "flagged by the limits"),
        excluded=excluded,
        model={"family": spec.family, "model": model.to_dict(),
               "coefficients": riskmodel.coefficient_table(model).to_dict(orient="records")})
    result.timings["model"] = fitted
    result.timings["statistics"] = round(time.perf_counter() - started - fitted, 3)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Survival


def survival_measure(config: AuditConfig, measure: Measure, records: pd.DataFrame,
                     providers: pd.Index) -> MeasureResult:
    """Kaplan-Meier at the horizons (Greenwood), curves, medians and log-rank per provider; Cox O/E when it can.

    The Cox model (its covariates the measure's risk model's) is fitted when the measure has risk factors and at
    least ``MIN_COX_DEATHS`` deaths; otherwise the measure has no Cox rows and says why.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    pools = measure_pools(config, measure, records)
    rows, km = _km_rows(measure, records, providers, pools)
    timings["kaplan_meier"] = round(time.perf_counter() - started, 3)
    t0 = time.perf_counter()
    tests = sm.survival_tests(km, records)
    timings["median_and_logrank"] = round(time.perf_counter() - t0, 3)
    km.insert(0, "measure", measure.id)
    tests.insert(0, "measure", measure.id)
    od_info: dict[str, dict] = {}
    curves: list[pd.DataFrame | None] = []
    model = None
    factors = model_factors(config, measure)
    deaths = int(records["event"].sum())
    if not factors:
        cox_info: dict[str, Any] = {"fitted": False, "reason": "the measure has no risk factors"}
    elif deaths < MIN_COX_DEATHS:
        cox_info = {"fitted": False, "reason": f"fewer than {MIN_COX_DEATHS} deaths over follow-up"}
    else:
        cox, patients, cox_info = sm.fit_national_cox(factors, records, riskmodel.imputation_values(records, factors))
        cox_info = {"fitted": True, **cox_info}
        timings["cox"] = cox_info["seconds"]
        patients = patients.join(records[["consultant_code"]])
        for level in ("national", *measure.levels):
            totals = unit_totals(pooled(patients, level, pools.get(level)), level,
                                 {"cases": ("event", "size"), "observed": ("event", "sum"),
                                  "expected": ("cox_expected", "sum")}, providers)
            o, e, n = (totals[c].to_numpy(float) for c in ("observed", "expected", "cases"))
            real = _real(totals.index)
            od = _ratio_overdispersion(measure.overdispersion, level, o[real], e[real])
            rows.append(_labelled(oe_statistics(totals, od, status=level != "national",
                                                note="Cox PH (national) expected deaths over follow-up; "),
                                  measure, "cox_oe_ratio", level))
            if level != "national":
                od_info[level] = od.to_dict()
                curves.append(_funnel(measure, "cox_oe_ratio", level, "ratio", 1.0, e[real], od))
        model = {"cox": {k: v for k, v in cox_info.items()} | {"model": cox.to_dict()}, "family": "cox"}
    table = pd.concat(rows, ignore_index=True)
    last = f"survival_{max(measure.horizons)}d"
    headline = measure.headline
    method = ("Cox O/E: deaths over follow-up against a national Cox model's expected deaths; exact Poisson "
              "interval and the discrete rule" if "cox_oe_ratio" in set(table["statistic"]) else
              f"Kaplan-Meier survival at the horizons, Greenwood variance, {measure.ci_transform} transform; no "
              f"status ({cox_info['reason']})")
    result = MeasureResult(
        measure=measure, rows=table, funnels=_concat_funnels(curves), overdispersion=od_info,
        national={"cases": len(records), "events": deaths,
                  "value": _national_value(table, headline if headline in set(table["statistic"]) else last)},
        method=method, model=model, km=km, survival_tests=tests)
    result.details["survival"] = {
        "horizons": list(measure.horizons), "ci_transform": measure.ci_transform,
        "median_convention": "R survival (midpoint where S(t) = 0.5 exactly)",
        "records_without_provider": int(records["provider_code"].isna().sum())}
    result.details["cox"] = {k: v for k, v in cox_info.items() if k not in ("coefficients", "ph_test")}
    result.timings.update(timings)
    return result


def _km_rows(measure: Measure, records: pd.DataFrame, providers: pd.Index,
             pools: dict[str, pd.Index] | None = None) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Kaplan-Meier survival at the horizons per unit of each level and nationally, and the curves to plot.

    ``pools`` gives each level's low-volume units, whose records also make the pooled unit's figures.

    Survival at the horizons comes from :func:`stats.survival.survival_at_by_group` (every unit of a level in one
    pass); curves (the ``km`` table) are drawn nationally and per provider, a consultant has its figures only.
    """
    horizons = sorted(measure.horizons)
    method = f"Kaplan-Meier, Greenwood variance, {measure.ci_transform} transform"
    attributed = records[records["provider_code"].notna()]
    curves = [survival.kaplan_meier_by_group(frame["time"].to_numpy(float), frame["event"].to_numpy(int), groups,
                                             alpha=0.05, ci_transform=measure.ci_transform)
              for frame, groups in ((records, np.full(len(records), "national", dtype=object)),
                                    (attributed, attributed["provider_code"].astype(str).to_numpy(dtype=object)))
              if len(frame)]
    curves = [c.rename(columns={"group": "unit_id"}).astype({"unit_id": object}) for c in curves] or [
        pd.DataFrame({c: pd.Series(dtype=object if c == "unit_id" else float) for c in sm.KM_COLUMNS})]
    out = []
    for level in ("national", *measure.levels):
        key = LEVEL_KEYS[level]
        level_records = pooled(records, level, (pools or {}).get(level))
        sub = level_records if key is None else level_records[level_records[key].notna()]
        if sub.empty:
            continue
        groups = (np.full(len(sub), "national", dtype=object) if key is None
                  else sub[key].astype(str).to_numpy(dtype=object))
        t, e = sub["time"].to_numpy(float), sub["event"].to_numpy(int)
        at = {level_: survival.survival_at_by_group(t, e, groups, horizons, alpha=1 - level_,
                                                    ci_transform=measure.ci_transform)
              for level_ in (0.95, 0.998)}
        at95, at998 = at[0.95], at[0.998]
        cases = pd.Series(groups).value_counts()
        deaths = pd.DataFrame({"g": groups, "t": t, "e": e})
        deaths_by = {h: deaths[(deaths["e"] == 1) & (deaths["t"] <= h)].groupby("g").size() for h in horizons}
        unit = at95["group"].astype(str)
        dead = np.array([deaths_by[int(h)].get(u, 0) for u, h in zip(unit, at95["horizon"], strict=True)], float)
        out.append(pd.DataFrame({
            "measure": measure.id, "statistic": [f"survival_{int(h)}d" for h in at95["horizon"]], "level": level,
            "unit_id": unit.to_numpy(dtype=object), "numerator": dead,
            "denominator": unit.map(cases).to_numpy(float), "observed": dead, "expected": np.nan,
            "value": at95["survival"].to_numpy(), "lower95": at95["lower"].to_numpy(),
            "upper95": at95["upper"].to_numpy(), "lower998": at998["lower"].to_numpy(),
            "upper998": at998["upper"].to_numpy(), "target": np.nan, "limit_lower95": np.nan,
            "limit_upper95": np.nan, "limit_lower998": np.nan, "limit_upper998": np.nan, "flag": NOT_ASSESSED,
            "method": method}, columns=ROW_COLUMNS))
    rows = _typed(pd.concat(out, ignore_index=True))
    # A provider with records in the audit but none in this measure: rows with no patients (value unknown).
    present = set(rows.loc[rows["level"] == "provider", "unit_id"])
    missing = [p for p in providers.astype(str) if p not in present] if "provider" in measure.levels else []
    if missing:
        blank = pd.DataFrame([{"measure": measure.id, "statistic": f"survival_{h}d", "level": "provider",
                               "unit_id": p, "numerator": 0.0, "denominator": 0.0, "observed": 0.0,
                               "flag": NOT_ASSESSED, "method": method}
                              for p in missing for h in horizons], columns=ROW_COLUMNS)
        rows = pd.concat([rows, blank.astype(rows.dtypes.to_dict())], ignore_index=True)
    return [rows], pd.concat(curves, ignore_index=True)
