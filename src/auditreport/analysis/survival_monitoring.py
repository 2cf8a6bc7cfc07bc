"""National-stage survival tests, Cox O/E and RA-CUSUM/VLAD monitoring (METHODS.md sections 6 and 7).

Kept apart from ``national.py`` so the national stage only calls a few functions: each returns tidy tables
for the bundle and a small dict for the metadata. The statistics themselves live in ``stats.survival`` and
``stats.monitoring``; here they are applied to every provider at once, fast enough for a million records.

References
----------
- Peto R, Peto J. Asymptotically efficient rank invariant test procedures. JRSS A 1972;135:185-207 (log-rank).
- Cox DR. Regression models and life-tables. JRSS B 1972;34:187-220; Breslow NE, discussion of Cox 1972.
- Grambsch PM, Therneau TM. Proportional hazards tests and diagnostics based on weighted residuals.
  Biometrika 1994;81:515-526.
- Steiner SH, Cook RJ, Farewell VT, Spiegelhalter DJ. Monitoring surgical performance using risk-adjusted
  cumulative sum charts. Biostatistics 2000;1:441-452.
- Lovegrove J, Valencia O, Treasure T, Sherlaw-Johnson C, Gallivan S. Monitoring the results of cardiac
  surgery by variable life-adjusted display. Lancet 1997;350:1128-1130.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2 as chi2_dist

from auditreport.analysis import indicators as ind
from auditreport.config import AuditConfig
from auditreport.stats import monitoring, riskmodel, survival
from auditreport.stats.overdispersion import estimate_ratio

#: Largest cohort the Cox model is fitted on. lifelines' fit and, above all, its scaled Schoenfeld residuals
#: grow faster than linearly (measured: 0.7 s at 10,000 patients, 3.3 s at 20,000, 19 s at 50,000 and 43 s at
#: 100,000 with 8 covariates), so larger cohorts are fitted on a seeded simple random subsample of this size.
COX_MAX_FIT = 10_000
COX_SEED = 20240
#: Charts simulated per evaluation when h is chosen for an in-control ARL. Run lengths are roughly geometric, so
#: the Monte Carlo error of each ARL is about 1/sqrt(500) = 4.5%; h is kept to within 0.02 (about 2% of ARL).
#: Enough for a chart limit, and it keeps the national stage to a few seconds.
ARL_SIMULATIONS = 500
ARL_SEED = 20241

MONITORING_COLUMNS = ["provider_code", "index", "procedure_date", "outcome", "p", "s_upper", "s_lower", "vlad",
                      "signal_upper", "signal_lower"]
SURVIVAL_TEST_COLUMNS = ["level", "unit_id", "patients", "deaths", "median", "median_lower", "median_upper",
                         "median_convention", "logrank_observed", "logrank_expected", "logrank_chi2",
                         "logrank_p"]


# ---------------------------------------------------------------------------------------------------------------
# Median survival and log-rank against the rest


def median_from_km(km: pd.DataFrame) -> dict[str, float]:
    """Median survival and its interval read off a Kaplan-Meier table, by R's convention.

    Same numbers as :func:`auditreport.stats.survival.median_survival` with ``convention="r"`` (the midpoint
    where the curve sits exactly at 0.5; Brookmeyer-Crowley limits from the pointwise band), reusing the
    curve the national stage has already computed instead of refitting it.
    """
    t = km["time"].to_numpy(float)
    return {key: survival._first_crossing(t, km[col].to_numpy(float), 0.5, "r")
            for key, col in (("median", "survival"), ("median_lower", "lower"), ("median_upper", "upper"))}


def logrank_each_vs_rest(durations: np.ndarray, events: np.ndarray, units: np.ndarray) -> pd.DataFrame:
    """Log-rank test of every unit against the rest of the country, in one pass.

    The same statistic as :func:`auditreport.stats.survival.logrank_vs_rest` (R ``survdiff``, rho = 0), but
    the national risk sets and deaths at each event time are counted once; each unit then needs only its own
    sorted times. Calling the one-unit function per provider re-sorts the whole cohort each time (about 15 s
    for 120 providers and a million patients).

    Returns one row per unit: ``observed``, ``expected``, ``chi2``, ``p_value`` (NaN when the unit is the
    whole cohort or has no variance, e.g. no deaths anywhere in its follow-up).
    """
    t = np.asarray(durations, float)
    e = np.asarray(events, int)
    units = np.asarray(units)
    event_times = np.unique(t[e == 1])
    ts_all = np.sort(t)
    te_all = np.sort(t[e == 1])
    n = len(t) - np.searchsorted(ts_all, event_times, side="left")
    d = np.searchsorted(te_all, event_times, side="right") - np.searchsorted(te_all, event_times, side="left")
    order = np.argsort(units, kind="stable")
    keys, starts = np.unique(units[order], return_index=True)
    bounds = np.append(starts, len(order))
    rows = []
    for k, key in enumerate(keys):
        idx = order[bounds[k]:bounds[k + 1]]
        tu, eu = t[idx], e[idx]
        ts_u, te_u = np.sort(tu), np.sort(tu[eu == 1])
        n1 = len(tu) - np.searchsorted(ts_u, event_times, side="left")
        d1 = np.searchsorted(te_u, event_times, side="right") - np.searchsorted(te_u, event_times, side="left")
        expected = float(np.sum(n1 * d / n))
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(n > 1, n1 * (n - n1) * d * (n - d) / (n ** 2 * (n - 1.0)), 0.0)
        var = float(v.sum())
        observed = float(d1.sum())
        ok = var > 0 and len(idx) < len(t)
        stat = (observed - expected) ** 2 / var if ok else float("nan")
        rows.append({"unit_id": key, "observed": observed, "expected": expected, "chi2": stat,
                     "p_value": float(chi2_dist.sf(stat, 1)) if ok else float("nan")})
    return pd.DataFrame(rows)


def survival_tests(km: pd.DataFrame, surv_cohort: pd.DataFrame) -> pd.DataFrame:
    """Median survival (R convention) per unit and nationally, and each provider's log-rank test vs the rest."""
    medians = []
    for unit, curve in km.groupby("unit_id", sort=False):
        medians.append({"unit_id": unit, **median_from_km(curve)})
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
    lr = logrank_each_vs_rest(surv_cohort["time"].to_numpy(float), surv_cohort["event"].to_numpy(int),
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


def fit_national_cox(factors: list[riskmodel.RiskFactor], surv_cohort: pd.DataFrame, fill: dict[str, float]) -> tuple[survival.CoxResult, pd.DataFrame, dict[str, Any]]:
    """Fit the national Cox model on the audit's risk factors and return expected deaths per patient.

    Coefficients and the proportional-hazards test come from :func:`auditreport.stats.survival.fit_cox` on the
    whole cohort, or on a seeded simple random subsample of ``COX_MAX_FIT`` patients when the cohort is larger
    (see ``COX_MAX_FIT`` for the measured cost). The Breslow baseline is then recomputed on the *whole* cohort
    at those coefficients, so the national Cox-expected deaths equal the observed deaths exactly (national
    Cox O/E = 1) whatever the subsample.

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
    # Baseline on the whole cohort at the fitted coefficients (Breslow), centred on the whole cohort's means.
    means = data[covariates].mean()
    risk_score = np.exp((data[covariates] - means).to_numpy() @ result.coef.to_numpy())
    result.means = means.rename(None)
    result.baseline = survival._breslow_baseline(data["time"].to_numpy(float), data["event"].to_numpy(int),
                                                 risk_score)
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


def cox_indicator_rows(patients: pd.DataFrame, overdispersion_method: str) -> tuple[pd.DataFrame, dict]:
    """Rows of the indicator table for ``cox_oe_ratio``: national and per provider.

    O = deaths during follow-up, E = sum of Cox-expected deaths; exact Poisson (Garwood) interval on O divided
    by E, exact Poisson funnel limits and HQIP flag, exactly as the logistic O/E (``indicators.oe_ratio``).
    """
    rows = []
    grouped = patients[patients["provider_code"].notna()].groupby("provider_code", sort=True)
    totals = pd.DataFrame({"cases": grouped.size(), "observed": grouped["event"].sum(),
                           "expected": grouped["cox_expected"].sum()})
    od = (estimate_ratio(totals["observed"].to_numpy(float), totals["expected"].to_numpy(float),
                         overdispersion_method) if len(totals) >= 2 else estimate_ratio([1.0], [1.0], "none"))
    nat = pd.DataFrame({"cases": [len(patients)], "observed": [float(patients["event"].sum())],
                        "expected": [float(patients["cox_expected"].sum())]}, index=pd.Index(["national"]))
    for level, frame, od_used in (("national", nat, None), ("provider", totals, od)):
        r = ind.oe_ratio(frame, od_used)
        r["indicator"] = "cox_oe_ratio"
        r["method"] = ("Cox PH (national) expected deaths over follow-up; " + r["method"])
        r["level"] = level
        if level == "national":
            r["flag"] = ""
        rows.append(r)
    return pd.concat(rows, ignore_index=True), od.to_dict()


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
    h_up = monitoring.arl_threshold(pool, 2.0, arl, n_sim=ARL_SIMULATIONS, seed=ARL_SEED, h_tol=0.02, rel_tol=0.03)
    h_lo = monitoring.arl_threshold(pool, 0.5, arl, n_sim=ARL_SIMULATIONS, seed=ARL_SEED + 1, h_tol=0.02,
                                    rel_tol=0.03)
    return {"h_upper": float(h_up), "h_lower": float(h_lo), "source": "simulated", "target_arl": arl,
            "n_sim": ARL_SIMULATIONS, "seed": ARL_SEED,
            "description": (f"h chosen by simulation for an in-control average run length of {arl:,} patients "
                            f"drawn from the national case mix ({ARL_SIMULATIONS:,} simulated charts per "
                            f"step, seed {ARL_SEED}): upper chart h = {h_up:.2f}, lower chart h = {h_lo:.2f}"),
            "seconds": round(time.perf_counter() - started, 3)}


def cusum_path(w: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """S_t = max(0, S_(t-1) + W_t) restarting at 0 after each signal (S_t > h): the values and the signals.

    The same chart as :func:`auditreport.stats.monitoring.ra_cusum` (checked in the tests), computed a
    segment between signals at a time with Lindley's closed form S_t = C_t - min(0, min_(k<=t) C_k) (C the
    cumulative weight), so a million patients need no Python loop over patients; signals are few.
    """
    s = np.empty(len(w))
    signal = np.zeros(len(w), dtype=bool)
    start = 0
    while start < len(w):
        c = np.cumsum(w[start:])
        seg = c - np.minimum(0.0, np.minimum.accumulate(c))
        over = np.flatnonzero(seg > h)
        if over.size == 0:
            s[start:] = seg
            break
        end = start + over[0]
        s[start:end + 1] = seg[:over[0] + 1]
        signal[end] = True
        start = end + 1
    return s, signal


def monitoring_table(risk: pd.DataFrame, h_upper: float, h_lower: float) -> pd.DataFrame:
    """Upper (R = 2) and lower (R = 1/2) RA-CUSUM and VLAD of every provider, in procedure-date order.

    ``risk`` must already be sorted by provider then procedure date (ties, and audits without dates, keep the
    order of the extract). ``s_lower`` is drawn below zero (-S, Steiner et al.'s convention). Charts restart at
    0 after a signal.
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
        s_up[a:b], sig_up[a:b] = cusum_path(w_up[a:b], h_upper)
        s_lo[a:b], sig_lo[a:b] = cusum_path(w_lo[a:b], h_lower)
        index[a:b] = np.arange(b - a)
        vl[a:b] = np.cumsum(p[a:b] - y[a:b])  # VLAD (Lovegrove 1997): expected minus observed deaths so far
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
