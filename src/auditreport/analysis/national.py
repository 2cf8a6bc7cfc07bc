"""The national stage: everything computed once per audit and period.

Loads and validates the extract, fits (or applies) the risk model on the whole
national cohort, and computes every unit's indicators, intervals, funnel limits
and flags, survival, case mix and data quality. It writes nothing: it returns
one ``NationalResults`` that the bundle layer (``auditreport.bundle``) writes and
every report reads, so no provider's report ever refits anything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from auditreport.analysis import indicators as ind
from auditreport.analysis import survival_monitoring as sm
from auditreport.analysis.quality import case_mix, data_quality
from auditreport.config import AuditConfig
from auditreport.data.loading import file_sha256
from auditreport.data.validation import ValidatedData, load_validated
from auditreport.errors import DataValidationError, RiskModelError
from auditreport.provenance import code_version, now_utc
from auditreport.rules.disclosure import suppress_indicators
from auditreport.stats import riskmodel, survival
from auditreport.stats.funnel import funnel_curve
from auditreport.stats.overdispersion import Overdispersion, estimate_proportion, estimate_ratio

log = logging.getLogger(__name__)

LEVELS = ("national", "provider", "consultant")
FUNNEL_COLUMNS = ("x", "lower95", "upper95", "lower998", "upper998", "level", "indicator", "target")
MIN_COX_DEATHS = 2


@dataclass(frozen=True)
class NationalResults:
    """Everything the national stage computed: metadata, the risk model document and the bundle's tables.

    The table fields are named as the bundle's tables (``auditreport.bundle.schema.TABLES``), which the
    bundle layer checks when it writes them.
    """

    metadata: dict[str, Any]
    model: dict[str, Any]
    indicators: pd.DataFrame
    indicators_public: pd.DataFrame
    funnels: pd.DataFrame
    km: pd.DataFrame
    casemix: pd.DataFrame
    quality: pd.DataFrame
    risk: pd.DataFrame
    survival_tests: pd.DataFrame
    monitoring: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """The results tables by name (every field but ``metadata`` and ``model``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("metadata", "model")}


def risk_factors_for_model(config: AuditConfig) -> list[riskmodel.RiskFactor]:
    """The declared risk factors the model uses (``risk_model.covariates``), in that order."""
    by_name = {f.name: f for f in config.risk_factors}
    return [by_name[name] for name in config.risk_model.covariates]


def fit_risk(config: AuditConfig, cohort: pd.DataFrame) -> tuple[riskmodel.RiskModel, pd.DataFrame,
                                                                   pd.DataFrame]:
    """Impute by the configured rules and fit (or apply) the risk model.

    Returns the model, the imputed cohort and the imputation flags.
    """
    factors = risk_factors_for_model(config)
    fill = riskmodel.imputation_values(cohort, factors)
    imputed, flags = riskmodel.impute_missing(cohort, factors, fill)
    usable = ~flags["excluded"] if "excluded" in flags else pd.Series(True, index=imputed.index)
    spec = config.risk_model
    try:
        if spec.method == "fit":
            _check_fittable(config, imputed[usable])
            model = riskmodel.fit_logistic(imputed[usable], factors, fill_values=fill)
        else:
            model = riskmodel.fixed_model(spec.coefficients, factors, recalibrate=spec.recalibrate,
                                          df=imputed[usable] if spec.recalibrate else None, fill_values=fill)
    except ValueError as exc:
        raise _model_error(config, imputed[usable], str(exc)) from None
    return model, imputed, flags


def _check_fittable(config: AuditConfig, cohort: pd.DataFrame) -> None:
    """Refuse, with a clear reason, a cohort in which no model of the outcome can be fitted."""
    deaths, n = int(cohort["outcome"].sum()), len(cohort)
    if deaths == 0:
        raise RiskModelError(f"{config.path}: the risk model cannot be fitted on {config.source}: there are no "
                             f"deaths among the {n:,} records analysed, so there is nothing to predict. Check the "
                             "death date (or event) column, or give risk_model.method: fixed with coefficients. "
                             "Nothing was written.")
    if deaths == n:
        raise RiskModelError(f"{config.path}: the risk model cannot be fitted on {config.source}: every patient "
                             f"died (all {n:,} records analysed). Check the death date (or event) column. "
                             "Nothing was written.")


def _model_error(config: AuditConfig, cohort: pd.DataFrame, reason: str) -> RiskModelError:
    """Name each categorical level that stops the fit (no patients, no deaths, only deaths) and the remedy."""
    lines = []
    index = {f.name: i for i, f in enumerate(config.risk_factors)}
    for f in config.risk_factors:
        if f.kind != "categorical" or f.name not in config.risk_model.covariates:
            continue
        levels = cohort[f.name].astype("string").fillna(f.reference or "")
        for level in f.categories:
            if level == f.reference:
                continue
            mask = (levels == level).to_numpy()
            n, d = int(mask.sum()), int(cohort["outcome"].to_numpy()[mask].sum())
            if n == 0 or d == 0 or d == n:
                what = "no patients" if n == 0 else f"{n} patients, {d} deaths"
                lines.append(f"  risk factor '{f.name}' level '{level}': {what} "
                             f"(merge it into another level in risk_factors[{index[f.name]}].categories, "
                             f"or drop '{f.name}' from risk_model.covariates)")
    head = (f"{config.path}: the risk model cannot be fitted on {config.source}; nothing was written."
            + ("\n" + "\n".join(lines) if lines else ""))
    return RiskModelError(f"{head}\n  cause: {reason}")


def run_national(config: AuditConfig, validated: ValidatedData | None = None,
                 parameters: dict[str, Any] | None = None) -> NationalResults:
    """Compute every national result of one audit period; write nothing.

    Each step below is one job (cohort, risk, indicators per level, survival, Cox, monitoring, metadata) so
    that a second outcome can reuse them; ``auditreport.bundle.write_bundle`` writes what this returns.
    ``parameters`` are recorded in the metadata as given (the pipeline passes its inputs fingerprint).
    """
    started = time.perf_counter()
    validated = validated or load_validated(config)
    adjusted = risk_adjusted_cohort(config, validated)
    cohort, patients = adjusted.cohort, adjusted.patients
    totals = NationalTotals.of(cohort)
    surv_cohort = _survival_cohort(config, patients)

    rows, od_info = mortality_indicators(config, cohort, surv_cohort, totals)
    surv_rows, km = survival_indicators(config, surv_cohort)
    rows.append(surv_rows)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tests = sm.survival_tests(km, surv_cohort)
    timings["median_and_logrank"] = round(time.perf_counter() - t0, 3)
    cox = national_cox(config, cohort, surv_cohort)
    if cox.rows is not None:
        timings["cox"] = cox.info["seconds"]
        rows.append(cox.rows)
        od_info.setdefault("provider", {})["cox_ratio"] = cox.overdispersion
    table = indicator_table(config, rows, cohort, patients)

    risk = patient_risks(cohort)
    monitor, monitor_info = sm.monitoring_summary(config, risk)
    timings["monitoring"] = monitor_info["seconds"]

    # Disclosure control runs here, once, so every public report and the open data show one table.
    public = suppress_indicators(table, config.suppression_threshold)
    funnels = funnel_curves(table, totals.rate, od_info)
    quality = data_quality(config, patients, adjusted.factor_flags)
    mix = case_mix(config, cohort)

    metadata = national_metadata(config, validated, adjusted, totals, parameters)
    metadata.update({
        "overdispersion": od_info,
        "overdispersion_method": config.overdispersion,
        "survival": {"horizons": list(config.horizons), "ci_transform": config.ci_transform,
                     "median_convention": "R survival (midpoint where S(t) = 0.5 exactly)",
                     "records_without_provider": int(surv_cohort["provider_code"].isna().sum())},
        "cox": {k: v for k, v in cox.info.items() if k not in ("coefficients", "ph_test")},
        "monitoring": monitor_info,
        "timings": timings,
        "publication": {"suppression_threshold": config.suppression_threshold,
                        "publish_consultants": config.publish_consultants},
        "warnings": validated.warnings,
        "seconds": round(time.perf_counter() - started, 3),
    })
    log.info("national stage: %d patients, %d providers in %.1fs", totals.cases, metadata["national"]["providers"],
             time.perf_counter() - started)
    return NationalResults(metadata=metadata, model=model_document(adjusted, cox), indicators=table, indicators_public=public,
                           funnels=funnels, km=km, casemix=mix, quality=quality, risk=risk,
                           survival_tests=tests, monitoring=monitor)


@dataclass(frozen=True)
class RiskAdjusted:
    """The analysed cohort with each patient's predicted risk ``p``, and what the risk model left behind.

    ``patients`` is every submitted record with its exclusion reason, including the records the risk model
    excluded (a missing factor whose rule is 'exclude'); ``factor_flags`` says which factors were imputed.
    """

    model: riskmodel.RiskModel
    patients: pd.DataFrame
    cohort: pd.DataFrame
    factor_flags: pd.DataFrame
    performance: dict[str, Any]
    calibration: pd.DataFrame


def analysed_cohort(validated: ValidatedData) -> pd.DataFrame:
    """The records without an exclusion reason; refuses an extract in which every record was excluded."""
    patients = validated.patients
    cohort = patients[patients["exclusion"] == ""].copy()
    if cohort.empty:
        raise DataValidationError(validated.source, [{"column": "(all)", "rule": "records to analyse",
                                                      "count": 0, "rows": [],
                                                      "examples": "every record was excluded"}])
    return cohort


def risk_adjusted_cohort(config: AuditConfig, validated: ValidatedData) -> RiskAdjusted:
    """Fit (or apply) the risk model, drop the records it excludes and predict every patient's risk."""
    patients = validated.patients.copy()  # the exclusion reasons gain the model's; the caller's copy stays as read
    cohort = analysed_cohort(validated)
    model, imputed, flags = fit_risk(config, cohort)
    if "excluded" in flags and flags["excluded"].any():
        dropped = flags.index[flags["excluded"]]
        patients.loc[dropped, "exclusion"] = "risk factor missing (rule: exclude)"
        cohort = cohort.drop(index=dropped)
        imputed = imputed.drop(index=dropped)
    cohort["p"] = model.predict(imputed)
    factor_flags = flags.drop(columns=[c for c in ("excluded",) if c in flags]).loc[cohort.index]
    p, outcome = cohort["p"].to_numpy(), cohort["outcome"].to_numpy()
    return RiskAdjusted(model=model, patients=patients, cohort=cohort, factor_flags=factor_flags,
                        performance=riskmodel.model_performance(p, outcome),
                        calibration=riskmodel.calibration_table(p, outcome))


@dataclass(frozen=True)
class NationalTotals:
    """Cases, deaths and expected deaths of the whole analysed cohort: the target every unit is held to."""

    cases: int
    deaths: float
    expected: float

    @property
    def rate(self) -> float:
        return self.deaths / self.cases

    @classmethod
    def of(cls, cohort: pd.DataFrame) -> NationalTotals:
        return cls(cases=len(cohort), deaths=float(cohort["outcome"].sum()), expected=float(cohort["p"].sum()))


#: The column holding each level's unit code (None: the nation is one unit).
LEVEL_KEYS: dict[str, str | None] = {"national": None, "provider": "provider_code", "consultant": "consultant_code"}


def mortality_indicators(config: AuditConfig, cohort: pd.DataFrame, surv_cohort: pd.DataFrame,
                         totals: NationalTotals) -> tuple[list[pd.DataFrame], dict[str, dict]]:
    """Crude rate, O/E ratio and risk-adjusted rate of every unit at every level, with over-dispersion.

    Returns one frame of indicator rows per level and each level's over-dispersion estimates (ratio and
    proportion) as recorded in the metadata; the nation is not over-dispersed against itself.
    """
    rows: list[pd.DataFrame] = []
    od_info: dict[str, dict] = {}
    for level in LEVELS:
        level_rows, od_ratio, od_prop = level_indicators(config, cohort, surv_cohort, totals, level)
        if level != "national":
            od_info[level] = {"ratio": od_ratio.to_dict(), "proportion": od_prop.to_dict()}
        rows.append(level_rows)
    return rows, od_info


def level_indicators(config: AuditConfig, cohort: pd.DataFrame, surv_cohort: pd.DataFrame,
                     totals: NationalTotals, level: str) -> tuple[pd.DataFrame, Overdispersion, Overdispersion]:
    """One level's mortality indicator rows and its over-dispersion estimates (ratio, proportion)."""
    key = LEVEL_KEYS[level]
    if key is None:
        units = pd.DataFrame({"cases": [totals.cases], "observed": [totals.deaths],
                              "expected": [totals.expected]}, index=pd.Index(["national"]))
    else:
        units = ind.unit_totals(cohort[cohort[key].notna()], key)
    od_ratio, od_prop = _overdispersion(config.overdispersion, units, totals.rate, level)
    if level == "provider":
        # A provider whose every patient was censored before the outcome window ended has survival results
        # but no mortality cases; give it mortality rows with 0 cases (value not computable) so its report
        # says so instead of failing.
        survivors = surv_cohort["provider_code"].dropna().unique()
        units = units.reindex(units.index.union(pd.Index(survivors)), fill_value=0)
    oe = ind.oe_ratio(units, od_ratio)
    rows = pd.concat([ind.crude_mortality(units, totals.rate, od_prop), oe,
                      ind.risk_adjusted_rate(oe, totals.rate)], ignore_index=True)
    if level == "national":
        rows["flag"] = ""
    rows["level"] = level
    return rows, od_ratio, od_prop


@dataclass(frozen=True)
class CoxResults:
    """The national Cox model, its providers' indicator rows and over-dispersion (None when not fitted)."""

    model: Any
    rows: pd.DataFrame | None
    overdispersion: dict[str, Any] | None
    info: dict[str, Any]


def national_cox(config: AuditConfig, cohort: pd.DataFrame, surv_cohort: pd.DataFrame) -> CoxResults:
    """Fit the national Cox model and each provider's Cox O/E, unless there are too few deaths to fit it."""
    if int(surv_cohort["event"].sum()) < MIN_COX_DEATHS:
        # A hazard model needs deaths to estimate anything; an audit period with (almost) none is legitimate.
        return CoxResults(model=None, rows=None, overdispersion=None,
                          info={"fitted": False, "reason": f"fewer than {MIN_COX_DEATHS} deaths over follow-up"})
    factors = risk_factors_for_model(config)
    cox, cox_patients, info = sm.fit_national_cox(factors, surv_cohort, riskmodel.imputation_values(cohort, factors))
    rows, od = sm.cox_indicator_rows(cox_patients, config.overdispersion)
    return CoxResults(model=cox, rows=rows, overdispersion=od, info=info)


def patient_risks(cohort: pd.DataFrame) -> pd.DataFrame:
    """Each analysed patient's predicted risk and outcome, by provider and procedure date (what monitoring reads)."""
    risk = cohort[["provider_code", "consultant_code", "procedure_date", "time", "event", "outcome", "p"]].copy()
    return risk.sort_values(["provider_code", "procedure_date"], kind="stable").reset_index(drop=True)


def indicator_table(config: AuditConfig, rows: list[pd.DataFrame], cohort: pd.DataFrame,
                    patients: pd.DataFrame) -> pd.DataFrame:
    """All indicator rows as one tidy table: audit, period, unit names and each consultant's provider."""
    table = pd.concat(rows, ignore_index=True)
    table["audit"] = config.id
    table["period"] = config.period_label
    table["unit_name"] = table["unit_id"].map(_unit_names(patients)).fillna(table["unit_id"])
    table.loc[table["level"] == "national", "unit_name"] = "England (all providers)"
    parent = cohort.dropna(subset=["consultant_code"]).groupby("consultant_code")["provider_code"].agg(
        lambda s: s.mode().iat[0])
    table["parent_id"] = np.where(table["level"] == "consultant", table["unit_id"].map(parent), "")
    table["parent_id"] = table["parent_id"].fillna("")
    return table[ind.INDICATOR_COLUMNS]


def model_document(adjusted: RiskAdjusted, cox: CoxResults) -> dict[str, Any]:
    """The risk model and Cox model as the bundle records them: coefficients, performance, calibration."""
    model = adjusted.model
    return {"model": model.to_dict(), "performance": adjusted.performance,
            "calibration": adjusted.calibration.to_dict(orient="records"),
            "coefficients": riskmodel.coefficient_table(model).to_dict(orient="records"),
            "cox": {**cox.info, "model": cox.model.to_dict()} if cox.model is not None else None}


def national_metadata(config: AuditConfig, validated: ValidatedData, adjusted: RiskAdjusted,
                      totals: NationalTotals, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """What was analysed and how: audit, definition and data fingerprints, code, national totals."""
    data_files = {"source": {"path": str(config.source), "sha256": file_sha256(config.source)}}
    if config.providers_file is not None:
        data_files["providers"] = {"path": str(config.providers_file),
                                   "sha256": file_sha256(config.providers_file)}
    patients, cohort = adjusted.patients, adjusted.cohort
    return {
        "audit": {"id": config.id, "name": config.name, "period": config.period_label,
                  "period_start": config.period_start, "period_end": config.period_end,
                  "outcome": config.outcome_label, "outcome_days": config.outcome_days,
                  "contact": config.contact},
        "config": {"path": str(config.path), "sha256": config.fingerprint(), "definition": config.raw},
        "data": data_files,
        "code": code_version(),
        "parameters": parameters or {},
        "created": now_utc(),
        "national": {"cases": totals.cases, "deaths": totals.deaths, "expected": totals.expected,
                     "rate": totals.rate,
                     "records_submitted": validated.n_submitted,
                     "records_excluded": int((patients["exclusion"] != "").sum()),
                     "providers": int(patients["provider_code"].nunique()),
                     "consultants": int(cohort["consultant_code"].nunique()),
                     "providers_without_cases": _providers_without_cases(validated, patients, cohort)},
    }


def _providers_without_cases(validated: ValidatedData, patients: pd.DataFrame,
                             cohort: pd.DataFrame) -> list[dict[str, Any]]:
    """Providers listed or submitting that have no case to analyse: no report, but a caveat nationally."""
    registry = validated.providers.set_index("provider_code")["provider_name"].astype(str)
    submitted = patients["provider_code"].value_counts()
    codes = sorted((set(registry.index) | set(submitted.index)) - set(cohort["provider_code"]))
    return [{"provider_code": c, "provider_name": str(registry.get(c, c)), "records_submitted": int(submitted.get(c, 0))}
            for c in codes]


def _unit_names(patients: pd.DataFrame) -> pd.Series:
    """Each provider's name as most of its records give it (the extract may spell it more than one way)."""
    return patients.groupby("provider_code")["provider_name"].agg(lambda s: s.mode().iat[0])


def _overdispersion(method: str, totals: pd.DataFrame, national_rate: float,
                    level: str) -> tuple[Overdispersion, Overdispersion]:
    if level == "national" or len(totals) < 2:
        return estimate_ratio([1.0], [1.0], "none"), estimate_proportion([1.0], [2.0], 0.5, "none")
    prop_method = "multiplicative" if method == "shmi" else method  # SHMI's variant is defined for ratios
    return (estimate_ratio(totals["observed"].to_numpy(float), totals["expected"].to_numpy(float), method),
            estimate_proportion(totals["observed"].to_numpy(float), totals["cases"].to_numpy(float),
                                national_rate, prop_method))


def funnel_curves(table: pd.DataFrame, national_rate: float, od_info: dict[str, dict]) -> pd.DataFrame:
    """Smooth 95% and 99.8% limit curves for each level's funnel plots, with the level's over-dispersion.

    The reports draw these behind the units' points; each unit's own limits (at its exact precision) are
    in the indicator table. Risk-adjusted rates use the O/E ratio's limits scaled by the national rate.
    """
    curves = []
    for level in ("provider", "consultant"):
        sub = table[table["level"] == level]
        if sub.empty:
            continue
        od = od_info.get(level, {})
        for indicator, kind, xcol in (("crude_mortality", "proportion", "denominator"),
                                      ("oe_ratio", "ratio", "expected"),
                                      ("risk_adjusted_mortality", "ratio", "expected"),
                                      ("cox_oe_ratio", "ratio", "expected")):
            rows = sub[sub["indicator"] == indicator]
            x = rows[xcol].to_numpy(float)
            x = x[np.isfinite(x) & (x > 0)]
            if x.size == 0:
                continue
            od_key = {"crude_mortality": "proportion", "cox_oe_ratio": "cox_ratio"}.get(indicator, "ratio")
            od_obj = _od_from_dict(od.get(od_key))
            target = national_rate if kind == "proportion" else 1.0
            curve = funnel_curve(kind, target, max(min(x.min(), 1.0), 0.5), x.max() * 1.1,
                                 overdispersion=od_obj)
            if indicator == "risk_adjusted_mortality":
                for col in ("lower95", "upper95", "lower998", "upper998"):
                    curve[col] = curve[col] * national_rate
            curve["level"] = level
            curve["indicator"] = indicator
            curve["target"] = 1.0 if indicator in ("oe_ratio", "cox_oe_ratio") else national_rate
            curves.append(curve)
    if not curves:  # no unit with cases at either level: an empty table with the columns a reader expects
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("level", "indicator") else float)
                             for c in FUNNEL_COLUMNS})
    return pd.concat(curves, ignore_index=True)


def _od_from_dict(d: dict | None) -> Overdispersion | None:
    if not d:
        return None
    known = Overdispersion.__dataclass_fields__
    return Overdispersion(**{k: v for k, v in d.items() if k in known})


def _survival_cohort(config: AuditConfig, patients: pd.DataFrame) -> pd.DataFrame:
    """Patients in the survival analyses: the analysed cohort plus those censored before the outcome window ends."""
    return patients[patients["exclusion"].isin(["", f"alive with under {config.outcome_days} days of follow-up"])]


def survival_indicators(config: AuditConfig, cohort: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kaplan-Meier survival at the horizons per provider and nationally, and the curves to plot.

    ``cohort`` is the survival cohort (``_survival_cohort``): patients censored before the outcome window
    ends count here, though not in the mortality indicators.
    """
    groups = [("national", "national", cohort)] + [("provider", code, grp) for code, grp in
                                                    cohort.groupby("provider_code", sort=True)]
    rows, curves = [], []
    for level, unit, grp in groups:
        t, e = grp["time"].to_numpy(float), grp["event"].to_numpy(int)
        at95 = survival.survival_at(t, e, list(config.horizons), alpha=0.05, ci_transform=config.ci_transform)
        at998 = survival.survival_at(t, e, list(config.horizons), alpha=0.002, ci_transform=config.ci_transform)
        for (_, r95), (_, r998) in zip(at95.iterrows(), at998.iterrows(), strict=True):
            h = int(r95["horizon"])
            deaths_by_h = int(((e == 1) & (t <= h)).sum())
            rows.append({"level": level, "unit_id": unit, "indicator": f"survival_{h}d", "numerator": deaths_by_h,
                         "denominator": len(grp), "observed": deaths_by_h, "expected": np.nan,
                         "value": r95["survival"], "lower95": r95["lower"], "upper95": r95["upper"],
                         "lower998": r998["lower"], "upper998": r998["upper"], "target": np.nan,
                         "limit_lower95": np.nan, "limit_upper95": np.nan, "limit_lower998": np.nan,
                         "limit_upper998": np.nan, "flag": "",
                         "method": f"Kaplan-Meier, Greenwood variance, {config.ci_transform} transform"})
        km = survival.kaplan_meier(t, e, alpha=0.05, ci_transform=config.ci_transform)
        km.insert(0, "unit_id", unit)
        curves.append(km)
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
