"""National-stage survival tests, Cox O/E and RA-CUSUM/VLAD monitoring (METHODS.md sections 6 and 7).

Kept apart from ``national.py`` so the national stage only calls a few functions: each returns tidy tables
for the bundle and a small dict for the metadata. The statistics themselves (median survival, log-rank against
the rest, Cox model and Breslow baseline, RA-CUSUM, VLAD, control limits by simulation) are computed only in
``stats.survival`` and ``stats.monitoring``, where their sources and the R behaviour they match are given; this
module applies them to the audit: which patients, grouped by provider, the Cox design from the audit's risk
factors, and the bundle's tables.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from auditreport.config import AuditConfig
from auditreport.stats import monitoring, riskmodel, survival

#: Largest cohort the Cox model is fitted on. The cost of lifelines' fit and, above all, of its scaled Schoenfeld
#: residuals grows faster than linearly with the number of patients, so larger cohorts are fitted on a seeded
#: simple random subsample of this size; the baseline hazard is still estimated on every patient.
COX_MAX_FIT = 10_000
COX_SEED = 20240
#: Charts simulated per evaluation when h is chosen for an in-control ARL. Run lengths are roughly geometric, so
#: the Monte Carlo error of each ARL is about 1/sqrt(500) = 4.5%; h is kept to within 0.02 (about 2% of ARL):
#: enough for a chart limit, at a small fraction of the cost of the default 2000.
ARL_SIMULATIONS = 500
ARL_SEED = 20241

MONITORING_COLUMNS = ["provider_code", "index", "procedure_date", "outcome", "p", "s_upper", "s_lower", "vlad",
                      "signal_upper", "signal_lower"]
KM_COLUMNS = ["unit_id", "time", "at_risk", "events", "censored", "survival", "lower", "upper"]
SURVIVAL_TEST_COLUMNS = ["level", "unit_id", "patients", "deaths", "median", "median_lower", "median_upper",
                         "median_convention", "logrank_observed", "logrank_expected", "logrank_chi2",
                         "logrank_p"]


# ---------------------------------------------------------------------------------------------------------------
# Median survival and log-rank against the rest


def survival_tests(km: pd.DataFrame, surv_cohort: pd.DataFrame) -> pd.DataFrame:
    """Median survival (R convention) per unit and nationally, and each provider's log-rank test vs the rest.

    Medians are read off the Kaplan-Meier curves the national stage has drawn (``km``, one per ``unit_id``); the
    log-rank tests every provider against the rest of the country in one pass.
    """
    medians = []
    for unit, curve in km.groupby("unit_id", sort=False):
        m = survival.median_from_km(curve, convention="r")
        medians.append({"unit_id": unit, "median": m["median"], "median_lower": m["lower"],
                        "median_upper": m["upper"]})
    table = pd.DataFrame(medians)
    attributed = surv_cohort[surv_cohort["provider_code"].notna()]
    counts = surv_cohort.groupby("provider_code")["event"].agg(["size", "sum"])
    counts.loc["national"] = [len(surv_cohort), surv_cohort["event"].sum()]
    table["patients"] = table["unit_id"].map(counts["size"]).astype(int)
    table["deaths"] = table["unit_id"].map(counts["sum"]).astype(int)
    table["level"] = np.where(table["unit_id"] == "national", "national", "provider")
    table["median_convention"] = ("R survival: first time S(t) <= 0.5, midpoint where S(t) = 0.5 exactly; "
                                  "Brookmeyer-Crowley interval")
    # Against the rest of the *country*: patients with no provider code are part of the rest.
    lr = survival.logrank_each_vs_rest(
        surv_cohort["time"].to_numpy(float), surv_cohort["event"].to_numpy(int),
        surv_cohort["provider_code"].fillna("(no provider)").astype(str).to_numpy())
    lr = lr[lr["unit_id"].isin(set(attributed["provider_code"]))].set_index("unit_id")
    table["logrank_observed"] = table["unit_id"].map(lr["observed"])
    table["logrank_expected"] = table["unit_id"].map(lr["expected"])
    table["logrank_chi2"] = table["unit_id"].map(lr["chi2"])
    table["logrank_p"] = table["unit_id"].map(lr["p_value"])
    return table[SURVIVAL_TEST_COLUMNS]


# ---------------------------------------------------------------------------------------------------------------
# Cox proportional hazards and Cox O/E


def cox_design(factors: list[riskmodel.RiskFactor], imputed: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Numeric Cox design from the imputed cohort: numeric factors as they are, categories as 0/1 indicators.

    The same columns as the logistic model's design (``riskmodel.design_matrix``: reference level omitted,
    missing-indicator columns where configured) without the intercept, which a Cox model absorbs into the
    baseline hazard. Column names are made safe for lifelines (no brackets).
    """
    x = riskmodel.design_matrix(imputed, factors)[:, 1:]
    terms = riskmodel.term_names(factors)[1:]
    safe = [f"x{i}" for i in range(len(terms))]
    return pd.DataFrame(x, columns=safe, index=imputed.index), terms


def fit_national_cox(factors: list[riskmodel.RiskFactor], surv_cohort: pd.DataFrame,
                     fill: dict[str, float]) -> tuple[survival.CoxResult, pd.DataFrame, dict[str, Any]]:
    """Fit the national Cox model on the audit's risk factors and return expected deaths per patient.

    Coefficients and the proportional-hazards test come from :func:`auditreport.stats.survival.fit_cox` on the
    whole cohort, or on a seeded simple random subsample of ``COX_MAX_FIT`` patients when the cohort is larger
    (see ``COX_MAX_FIT``). The Breslow baseline is then recomputed on the *whole* cohort at those coefficients
    (:func:`auditreport.stats.survival.cox_with_baseline`), so the national Cox-expected deaths equal the
    observed deaths exactly (national Cox O/E = 1) whatever the subsample.

    Returns the result, the patients (``provider_code``, ``event``, ``cox_expected``) and a description.
    """
    started = time.perf_counter()
    imputed, flags = riskmodel.impute_missing(surv_cohort, factors, fill)
    design, terms = cox_design(factors, imputed)
    data = pd.concat([imputed[["time", "event"]].astype(float), design], axis=1)
    covariates = list(design.columns)
    fit_data = data
    sampled = len(data) > COX_MAX_FIT
    if sampled:
        fit_data = data.sample(n=COX_MAX_FIT, random_state=COX_SEED)
    # A term with no variation among the fitted patients (a category nobody in the sample has) has no estimable
    # coefficient and would make the fit singular: leave it out, i.e. give it a hazard ratio of 1, and say so.
    constant = [c for c in covariates if fit_data[c].nunique() < 2]
    covariates = [c for c in covariates if c not in constant]
    result = survival.fit_cox(fit_data, "time", "event", covariates)
    # Baseline on the whole cohort at the fitted coefficients, so national E = O whatever the subsample.
    result = survival.cox_with_baseline(result, data, "time", "event")
    expected = survival.cox_expected(result, data, "time")
    patients = pd.DataFrame({"provider_code": imputed["provider_code"], "event": data["event"],
                             "cox_expected": expected}, index=imputed.index)
    rename = dict(zip(design.columns, terms, strict=True))
    ph = result.ph_test.rename(index=rename)
    summary = result.summary().rename(index=rename)
    info = {
        "terms": [rename[c] for c in covariates],
        "coefficients": [{"term": t, "coef": float(r.coef), "se": float(r.se), "hr": float(r.hr),
                          "hr_lower95": float(np.exp(r.lower)), "hr_upper95": float(np.exp(r.upper)),
                          "p": float(r.p)} for t, r in summary.iterrows()],
        "ph_test": [{"term": str(t), "chi2": float(r.chi2), "df": int(r.df), "p": float(r.p)}
                    for t, r in ph.iterrows()],
        "ph_method": "Grambsch-Therneau score test on scaled Schoenfeld residuals against rank(time) "
                     "(lifelines proportional_hazard_test, time_transform='rank'); global test on k df",
        "log_likelihood": float(result.log_likelihood),
        "concordance": float(result.concordance),
        "patients": int(len(data)),
        "deaths": int(data["event"].sum()),
        "fitted_on": int(len(fit_data)),
        "fitted_deaths": int(fit_data["event"].sum()),
        "subsample": (f"coefficients fitted on a simple random subsample of {len(fit_data):,} of "
                      f"{len(data):,} patients (seed {COX_SEED}); baseline hazard on all patients"
                      if sampled else "fitted on every patient"),
        "ties": "Efron (coefficients); Breslow (baseline hazard, expected deaths)",
        "excluded": int(flags["excluded"].sum()) if "excluded" in flags else 0,
        "terms_without_variation": [rename[c] for c in constant],
        "seconds": round(time.perf_counter() - started, 3),
    }
    return result, patients, info


# ---------------------------------------------------------------------------------------------------------------
# RA-CUSUM and VLAD


def cusum_thresholds(config: AuditConfig, pool: np.ndarray) -> dict[str, Any]:
    """The control limits of the upper (R = 2) and lower (R = 1/2) charts: configured, or by simulation.

    By simulation, h is the limit whose in-control average run length is ``monitoring.cusum_arl`` patients
    (default 2000) for patients drawn from the national cohort's predicted risks, found once nationally by
    :func:`auditreport.stats.monitoring.arl_threshold` (Steiner et al. 2000 chose h the same way).
    """
    if config.cusum_h is not None:
        return {"h_upper": float(config.cusum_h), "h_lower": float(config.cusum_h), "source": "configured",
                "description": f"h = {config.cusum_h:g}, fixed in the audit's configuration (monitoring.cusum_h)"}
    started = time.perf_counter()
    arl = config.cusum_arl
    h_up = monitoring.arl_threshold(pool, 2.0, arl, n_sim=ARL_SIMULATIONS, seed=ARL_SEED, h_tol=0.02)
    h_lo = monitoring.arl_threshold(pool, 0.5, arl, n_sim=ARL_SIMULATIONS, seed=ARL_SEED + 1, h_tol=0.02)
    return {"h_upper": float(h_up), "h_lower": float(h_lo), "source": "simulated", "target_arl": arl,
            "n_sim": ARL_SIMULATIONS, "seed": ARL_SEED,
            "description": (f"h chosen by simulation for an in-control average run length of {arl:,} patients "
                            f"drawn from the national case mix ({ARL_SIMULATIONS:,} simulated charts, "
                            f"seed {ARL_SEED}): upper chart h = {h_up:.2f}, lower chart h = {h_lo:.2f}"),
            "seconds": round(time.perf_counter() - started, 3)}


def monitoring_table(risk: pd.DataFrame, h_upper: float, h_lower: float) -> pd.DataFrame:
    """Upper (R = 2) and lower (R = 1/2) RA-CUSUM and VLAD of every provider, in procedure-date order.

    ``risk`` must already be sorted by provider then procedure date (ties, and audits without dates, keep the
    order of the extract). Each provider's charts are :func:`auditreport.stats.monitoring.cusum_path` on its
    :func:`~auditreport.stats.monitoring.cusum_weights` (restarting at 0 after a signal) and its
    :func:`~auditreport.stats.monitoring.vlad`. ``s_lower`` is drawn below zero (-S, Steiner et al.'s
    convention).
    """
    frame = risk[risk["provider_code"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=MONITORING_COLUMNS)
    p, y = frame["p"].to_numpy(float), frame["outcome"].to_numpy(float)
    w_up = monitoring.cusum_weights(p, y, 2.0)
    w_lo = monitoring.cusum_weights(p, y, 0.5)
    codes = frame["provider_code"].to_numpy()
    # Provider blocks are contiguous because ``risk`` is sorted by provider.
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    bounds = np.append(starts, len(codes))
    s_up, s_lo = np.empty(len(p)), np.empty(len(p))
    sig_up, sig_lo = np.zeros(len(p), bool), np.zeros(len(p), bool)
    index, vl = np.empty(len(p), dtype=np.int64), np.empty(len(p))
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        s_up[a:b], sig_up[a:b] = monitoring.cusum_path(w_up[a:b], h_upper)
        s_lo[a:b], sig_lo[a:b] = monitoring.cusum_path(w_lo[a:b], h_lower)
        index[a:b] = np.arange(b - a)
        vl[a:b] = monitoring.vlad(p[a:b], y[a:b])
    return pd.DataFrame({"provider_code": codes, "index": index, "procedure_date": frame["procedure_date"].to_numpy(),
                         "outcome": y.astype(int), "p": p, "s_upper": s_up, "s_lower": -s_lo, "vlad": vl,
                         "signal_upper": sig_up, "signal_lower": sig_lo})[MONITORING_COLUMNS]


def monitoring_summary(config: AuditConfig, risk: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Thresholds, every provider's charts, and the detection delay for doubled odds (for the report)."""
    started = time.perf_counter()
    pool = risk["p"].to_numpy(float)
    h = cusum_thresholds(config, pool)
    table = monitoring_table(risk, h["h_upper"], h["h_lower"])
    delay = monitoring.detection_delay(pool, h["h_upper"], odds_ratio=2.0, true_odds_ratio=2.0, n_sim=500,
                                       seed=ARL_SEED + 2)
    info = {**h, "odds_ratio_upper": 2.0, "odds_ratio_lower": 0.5, "reset_after_signal": True,
            "order": ("in procedure-date order" if risk["procedure_date"].notna().any()
                      else "in the order of the records in the extract (the audit has no procedure dates)"),
            "signals_upper": int(table["signal_upper"].sum()), "signals_lower": int(table["signal_lower"].sum()),
            "delay_doubled_odds": {k: delay[k] for k in ("median_patients", "q25_patients", "q75_patients",
                                                         "proportion_signalled")},
            "seconds": round(time.perf_counter() - started, 3)}
    return table, info
