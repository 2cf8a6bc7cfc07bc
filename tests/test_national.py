"""The national stage, measure by measure: each kind against an independent fit, flags, exclusions, words.

The audit here is written by ``_measures_audit``: a small extract with dates, consultants, a 0/1 in-hospital
death, length of stay, two process events and hours to surgery, with one provider injected on each measure,
and the seven measures of the contract's example. Every figure of the national stage is held to a fit made
directly on the measure's records (statsmodels GLMs, numpy and scipy), not to the code under test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
import yaml
from scipy import optimize, stats
from scipy.special import expit, logit

from auditreport.analysis.measures import INDICATOR_COLUMNS
from auditreport.analysis.national import run_national
from auditreport.bundle import load_bundle, write_bundle
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec
from auditreport.errors import RiskModelError

from conftest import make_audit, truth

#: Providers injected as outliers, by measure (see ``_measures_extract``).
INJECTED = {"mortality": "H00", "ct_scan": "H02", "review": "H03", "time_to_surgery": "H04", "los": "H05"}

MEASURES = [
    {"id": "mortality", "label": "In-hospital mortality", "kind": "proportion", "event": "died",
     "direction": "lower_is_better", "risk_model": {"method": "fit", "covariates": ["age", "sex", "asa", "urgency"]},
     "monitoring": True},
    {"id": "survival", "label": "Survival", "kind": "survival", "horizons": [30, 365], "ci_transform": "log-log"},
    {"id": "ct_scan", "label": "CT before surgery", "kind": "proportion", "type": "process", "event": "ct",
     "eligible": 'urgency == "emergency"', "direction": "higher_is_better"},
    {"id": "review", "label": "Senior review within 14 hours", "kind": "proportion", "type": "process",
     "event": "review", "direction": "higher_is_better", "target": 0.9},
    {"id": "long_stay", "label": "Stays over 14 days", "kind": "proportion", "event": "los > 14",
     "direction": "lower_is_better"},
    {"id": "los", "label": "Length of stay", "kind": "ratio", "value": "los", "value_unit": "days",
     "overdispersion": "shmi", "risk_model": {"method": "fit", "family": "poisson",
                                              "covariates": ["age", "asa", "urgency"]}},
    {"id": "time_to_surgery", "label": "Hours from admission to surgery", "kind": "mean", "type": "process",
     "value": "hours", "value_unit": "hours", "eligible": 'urgency != "elective"',
     "direction": "lower_is_better", "published": False},
]


def _measures_extract(n: int = 6000, providers: int = 12, seed: int = 14) -> pd.DataFrame:
    """An extract with every kind of measure's columns; one provider per measure is made an outlier."""
    rng = np.random.default_rng(seed)
    prov = rng.integers(0, providers, n)
    age = rng.normal(68, 12, n).clip(18, 100).round()
    sex = rng.choice(["F", "M"], n)
    asa = rng.choice([1, 2, 3, 4], n, p=[0.25, 0.4, 0.25, 0.1])
    urgency = rng.choice(["elective", "urgent", "emergency"], n, p=[0.5, 0.3, 0.2])
    urg = pd.Series(urgency).map({"elective": 0.0, "urgent": 0.5, "emergency": 1.2}).to_numpy()
    lp = -3.6 + 0.04 * (age - 68) + 0.5 * (asa - 1) + urg + np.where(prov == 0, 1.1, 0.0)
    died = (rng.random(n) < expit(lp)).astype(int)
    start = pd.Timestamp("2024-01-01")
    procedure = start + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    to_death = rng.exponential(1.0 / np.exp(-7.5 + 0.04 * (age - 68) + 0.4 * (asa - 1) + urg), n)
    to_death = np.where(died == 1, rng.integers(0, 30, n), to_death + 30)
    follow = pd.Timestamp("2025-06-30")
    death = procedure + pd.to_timedelta(np.floor(to_death), unit="D")
    death = pd.Series(death).where(death <= follow)
    los_mean = np.exp(1.6 + 0.01 * (age - 68) + 0.15 * (asa - 1) + 0.4 * urg + np.where(prov == 5, 0.5, 0.0))
    los = rng.poisson(los_mean).astype(float)
    ct = (rng.random(n) < np.where(prov == 2, 0.45, 0.85)).astype(int)
    review = (rng.random(n) < np.where(prov == 3, 0.7, 0.92)).astype(int)
    hours = rng.gamma(2.0, 6.0, n) + np.where(prov == 4, 9.0, 0.0)
    hours = np.where(urgency == "elective", np.nan, hours.round(1))
    asa_text = pd.Series(asa.astype(str), dtype=object)
    asa_text[rng.random(n) < 0.02] = None  # a few missing ASA grades: imputed as the reference grade
    return pd.DataFrame({
        "patient_id": [f"P{i:06d}" for i in range(n)], "provider_code": [f"H{p:02d}" for p in prov],
        "provider_name": [f"Hospital {p:02d}" for p in prov],
        "consultant_code": [f"C{p:02d}{c}" for p, c in zip(prov, rng.integers(0, 3, n), strict=True)],
        "procedure_date": procedure, "death_date": death, "followup_end": follow, "age": age, "sex": sex,
        "asa": asa_text, "urgency": urgency, "died": died, "los": los, "ct": ct, "review": review, "hours": hours,
    })


def _measures_audit(folder, measures=None, extract=None, **sections) -> str:
    """Write the extract and a definition with ``measures`` (default: the seven above); return its path."""
    extract = _measures_extract() if extract is None else extract
    extract.to_csv(folder / "records.csv", index=False)
    definition = {
        "audit": {"id": "measures-audit", "name": "Measures audit", "period": {"label": "2024"}},
        "data": {"source": "records.csv"},
        "columns": {"patient_id": "patient_id", "provider_code": "provider_code", "provider_name": "provider_name",
                    "consultant_code": "consultant_code", "procedure_date": "procedure_date",
                    "death_date": "death_date", "followup_end": "followup_end"},
        "wording": {"activity": "admissions", "activity_singular": "admission", "provider": "hospital",
                    "providers": "hospitals", "population": "Testland"},
        "risk_factors": [{"name": "age", "type": "numeric", "range": [16, 110], "missing": "median"},
                         {"name": "sex", "type": "categorical", "categories": ["F", "M"]},
                         {"name": "asa", "type": "categorical", "categories": ["1", "2", "3", "4"]},
                         {"name": "urgency", "type": "categorical",
                          "categories": ["elective", "urgent", "emergency"]}],
        "measures": MEASURES if measures is None else measures,
        "monitoring": {"cusum_h": 4.0},
        **sections,
    }
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def measures_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("measures")
    config = load_config(_measures_audit(folder))
    results = run_national(config)
    records = pd.read_csv(folder / "records.csv", dtype={"asa": str})
    return config, results, records


def _rows(results, measure, statistic, level="provider") -> pd.DataFrame:
    t = results.indicators
    return t[(t["measure"] == measure) & (t["statistic"] == statistic) & (t["level"] == level)].set_index("unit_id")


def _national(results, measure, statistic) -> pd.Series:
    return _rows(results, measure, statistic, "national").iloc[0]


def test_table_has_each_measures_statistics_at_its_levels(measures_run):
    config, results, _ = measures_run
    table = results.indicators
    assert list(table.columns) == INDICATOR_COLUMNS
    for m in config.measures:
        rows = table[table["measure"] == m.id]
        assert set(rows["statistic"]) == set(m.statistics), m.id
        assert set(rows["level"]) == {"national", *m.levels}, m.id
        assert (rows.groupby(["statistic", "level"]).size()[lambda s: s.index.get_level_values(1) == "provider"]
                == 12).all()
    assert set(table.loc[table["level"] == "national", "unit_name"]) == {"Testland (all hospitals)"}
    consultants = table[table["level"] == "consultant"]
    assert (consultants["parent_id"] == consultants["unit_id"].str[1:3].radd("H")).all()
    meta = results.metadata
    assert [m["id"] for m in meta["measures"]] == [m.id for m in config.measures]
    assert meta["wording"]["national_unit_name"] == "Testland (all hospitals)"
    assert set(meta["timings"]) >= {m.id for m in config.measures}
    by_id = {m["id"]: m for m in meta["measures"]}
    assert by_id["review"]["target_kind"] == "standard" and by_id["ct_scan"]["target_kind"] == "national"
    assert by_id["mortality"]["headline"] == "adjusted_rate" and by_id["los"]["headline"] == "oe_ratio"
    assert set(results.model["measures"]) == {"mortality", "los"}  # the survival measure has no risk factors


def test_adjusted_proportion_against_statsmodels_logistic(measures_run):
    """E is the sum of a logistic GLM's predictions fitted directly on the measure's records (statsmodels)."""
    _, results, records = measures_run
    records = records.assign(asa=records["asa"].fillna("1"))  # the reference grade, as the 'reference' rule does
    fit = smf.glm("died ~ age + C(sex) + C(asa) + C(urgency, Treatment('elective'))", records,
                  family=sm.families.Binomial()).fit()
    records["p"] = fit.predict(records)
    by = records.groupby("provider_code").agg(o=("died", "sum"), e=("p", "sum"), n=("died", "size"))
    oe = _rows(results, "mortality", "oe_ratio").loc[by.index]
    np.testing.assert_allclose(oe["expected"], by["e"], rtol=1e-6)
    np.testing.assert_allclose(oe["value"], by["o"] / by["e"], rtol=1e-6)
    assert _national(results, "mortality", "oe_ratio")["value"] == pytest.approx(1.0, rel=1e-6)
    crude = _rows(results, "mortality", "rate").loc[by.index]
    np.testing.assert_allclose(crude["value"], by["o"] / by["n"])
    assert (crude["flag"] == "").all()  # the crude rate of an adjusted measure is context, never flagged
    assert oe.loc[INJECTED["mortality"], "flag"] in ("alarm_high", "alert_high")

    # The adjusted rate by brute force: the unit's shift by root finding, then the national mean risk at it.
    adjusted = _rows(results, "mortality", "adjusted_rate").loc[by.index]
    lp_all = logit(records["p"].to_numpy())
    for code in ("H00", "H07"):
        lp = logit(records.loc[records["provider_code"] == code, "p"].to_numpy())
        d = optimize.brentq(lambda d, lp=lp, o=by.loc[code, "o"]: expit(lp + d).sum() - o, -20, 20, xtol=1e-12)
        assert adjusted.loc[code, "value"] == pytest.approx(expit(lp_all + d).mean(), rel=1e-6)
    assert adjusted["value"].between(0, 1).all() and adjusted["upper998"].between(0, 1).all()
    assert (adjusted["lower95"] <= adjusted["value"]).all() and (adjusted["value"] <= adjusted["upper95"]).all()
    assert (adjusted["flag"] == oe["flag"]).all()
    assert _national(results, "mortality", "adjusted_rate")["value"] == pytest.approx(records["died"].mean())


def test_adjusted_rate_stays_within_0_and_1_where_o_over_e_times_the_rate_would_not(tmp_path):
    """A low-risk hospital where most patients die: O/E x national rate passes 100%; the logit shift cannot.

    A published (fixed) model, so the hospital's deaths cannot pull its own expected deaths up.
    """
    extract = _measures_extract(n=4000, providers=12, seed=3)
    sick = extract["provider_code"] == "H01"
    extract.loc[sick, "died"] = (np.random.default_rng(1).random(int(sick.sum())) < 0.95).astype(int)
    measure = {**MEASURES[0], "risk_model": {"method": "fixed", "covariates": ["age"],
                                             "coefficients": {"Intercept": -5.6, "age": 0.04}}}
    config = load_config(_measures_audit(tmp_path, measures=[measure], extract=extract))
    results = run_national(config)
    oe = _rows(results, "mortality", "oe_ratio").loc["H01"]
    rate = _national(results, "mortality", "rate")["value"]
    assert oe["value"] * rate > 1 and oe["upper95"] * rate > 1
    adjusted = _rows(results, "mortality", "adjusted_rate")
    assert adjusted[["value", "lower95", "upper95", "lower998", "upper998", "limit_lower95", "limit_upper998"]
                    ].stack().between(0, 1).all()
    assert adjusted.loc["H01", "flag"] == "alarm_high"


def test_ratio_against_statsmodels_poisson(measures_run):
    """Length of stay O/E: sum of values over the sum of a Poisson GLM's (log link) fitted values."""
    _, results, records = measures_run
    records = records.assign(asa=records["asa"].fillna("1"))
    fit = smf.glm("los ~ age + C(asa) + C(urgency, Treatment('elective'))", records,
                  family=sm.families.Poisson()).fit()
    records["mu"] = fit.predict(records)
    by = records.groupby("provider_code").agg(o=("los", "sum"), e=("mu", "sum"), n=("los", "size"))
    oe = _rows(results, "los", "oe_ratio").loc[by.index]
    np.testing.assert_allclose(oe["observed"], by["o"])
    np.testing.assert_allclose(oe["expected"], by["e"], rtol=1e-6)
    np.testing.assert_allclose(oe["value"], by["o"] / by["e"], rtol=1e-6)
    assert _national(results, "los", "oe_ratio")["value"] == pytest.approx(1.0, rel=1e-8)  # canonical link
    # The limits rule (FunnelPlotR): the flag is where O/E sits against the (SHMI over-dispersed) limits.
    od = results.metadata["measures"][5]["overdispersion"]["provider"]
    assert od["method"] == "shmi"
    assert oe.loc[INJECTED["los"], "flag"] in ("alarm_high", "alert_high")
    inside = (oe["value"] > oe["limit_lower95"]) & (oe["value"] < oe["limit_upper95"])
    assert (oe.loc[inside, "flag"] == "as_expected").all()
    # Mean and median of the ratio measure are context.
    assert (_rows(results, "los", "mean")["flag"] == "").all()
    assert set(results.funnels.loc[results.funnels["measure"] == "los", "statistic"]) == {"oe_ratio"}


def test_mean_and_median_by_brute_force(measures_run):
    """Hours to surgery (eligible: not elective): mean with Student's t, median with its order-statistic ranks."""
    _, results, records = measures_run
    eligible = records[records["urgency"] != "elective"]
    mean = _rows(results, "time_to_surgery", "mean")
    median = _rows(results, "time_to_surgery", "median")
    for code, grp in eligible.groupby("provider_code"):
        v = np.sort(grp["hours"].to_numpy())
        n = len(v)
        lo, hi = stats.t.interval(0.95, n - 1, loc=v.mean(), scale=stats.sem(v))
        assert mean.loc[code, ["value", "lower95", "upper95"]].tolist() == pytest.approx([v.mean(), lo, hi])
        assert mean.loc[code, "denominator"] == n
        # Largest j with P(B <= j - 1) <= 0.025, B ~ binomial(n, 1/2): the interval (x_(j), x_(n+1-j)).
        j = max(k for k in range(1, n // 2 + 1) if stats.binom.cdf(k - 1, n, 0.5) <= 0.025)
        assert median.loc[code, ["value", "lower95", "upper95"]].tolist() == pytest.approx(
            [np.median(v), v[j - 1], v[n - j]])
    # A process mean is judged on a normal funnel around the national mean with the national SD.
    values = eligible["hours"].to_numpy()
    target, sd = values.mean(), values.std(ddof=1)
    n = mean["denominator"].to_numpy()
    np.testing.assert_allclose(mean["limit_upper998"], target + stats.norm.ppf(0.999) * sd / np.sqrt(n))
    np.testing.assert_allclose(mean["target"], target)
    assert mean.loc[INJECTED["time_to_surgery"], "flag"] == "alarm_high"
    assert (median["flag"] == "").all()
    assert results.metadata["measures"][6]["direction"] == "lower_is_better"


def test_process_proportion_against_a_fixed_standard_and_with_eligibility(measures_run):
    _, results, records = measures_run
    review = _rows(results, "review", "rate")
    assert (review["target"] == 0.9).all() and _national(results, "review", "rate")["target"] == 0.9
    by = records.groupby("provider_code")["review"].agg(["sum", "size"])
    np.testing.assert_allclose(review.loc[by.index, "value"], by["sum"] / by["size"])
    # The binomial tail under the standard, computed here: the injected hospital (70% against 90%) is an alarm.
    code = INJECTED["review"]
    assert stats.binom.cdf(by.loc[code, "sum"], by.loc[code, "size"], 0.9) < 0.001
    assert review.loc[code, "flag"] == "alarm_low"
    assert review.loc[code, "value"] < review.loc[code, "limit_lower998"]
    others = review.drop(index=code)
    assert others["flag"].isin(["as_expected", "alert_low", "alert_high"]).all()

    ct = _rows(results, "ct_scan", "rate")
    emergency = records[records["urgency"] == "emergency"].groupby("provider_code")["ct"].agg(["sum", "size"])
    np.testing.assert_allclose(ct.loc[emergency.index, "denominator"], emergency["size"])
    np.testing.assert_allclose(ct.loc[emergency.index, "numerator"], emergency["sum"])
    national_rate = emergency["sum"].sum() / emergency["size"].sum()
    assert ct["target"].to_numpy() == pytest.approx(national_rate)
    assert ct.loc[INJECTED["ct_scan"], "flag"] == "alarm_low"  # higher is better: the words say worse
    excluded = results.exclusions
    not_eligible = excluded[(excluded["measure"] == "ct_scan") & (excluded["unit_id"] == "national")]
    assert not_eligible["records"].sum() == (records["urgency"] != "emergency").sum()


def test_unadjusted_outcome_measure_carries_no_status(measures_run):
    _, results, records = measures_run
    long_stay = _rows(results, "long_stay", "rate")
    assert (long_stay["flag"] == "").all()
    by = records.assign(long=records["los"] > 14).groupby("provider_code")["long"].mean()
    np.testing.assert_allclose(long_stay.loc[by.index, "value"], by)
    meta = next(m for m in results.metadata["measures"] if m["id"] == "long_stay")
    assert meta["carries_status"] is False and "no status" in meta["method"]


def test_survival_measure_without_risk_factors_has_no_cox(measures_run):
    _, results, _ = measures_run
    stats_ = set(results.indicators.loc[results.indicators["measure"] == "survival", "statistic"])
    assert stats_ == {"survival_30d", "survival_365d"}
    meta = next(m for m in results.metadata["measures"] if m["id"] == "survival")
    assert meta["headline"] == "survival_365d" and meta["cox"]["fitted"] is False
    assert set(results.km["measure"]) == {"survival"} and set(results.survival_tests["measure"]) == {"survival"}


def test_monitoring_only_for_the_measure_that_asks_with_dates(measures_run):
    _, results, _ = measures_run
    assert set(results.monitoring["measure"]) == {"mortality"}
    meta = {m["id"]: m for m in results.metadata["measures"]}
    assert meta["mortality"]["cusum"]["h_upper"] == 4.0 and meta["review"]["cusum"] is None
    assert set(results.risk["measure"]) == {"mortality"}


def test_quality_reports_only_mapped_fields(tmp_path):
    measures = [m for m in MEASURES if m["id"] in ("mortality", "long_stay")]
    path = _measures_audit(tmp_path, measures=[{**measures[0], "monitoring": False}, measures[1]])
    definition = yaml.safe_load(open(path))
    del definition["columns"]["consultant_code"]
    open(path, "w").write(yaml.safe_dump(definition, sort_keys=False))
    results = run_national(load_config(path))
    assert "complete: consultant_code" not in results.quality.columns
    assert "consultant" not in set(results.indicators["level"])
    assert results.quality.set_index("unit_id").loc["national", "imputed: asa"] > 0


def test_a_covariate_constant_among_the_eligible_records_is_named(tmp_path):
    measures = [{"id": "emergency_deaths", "label": "Emergency mortality", "kind": "proportion", "event": "died",
                 "eligible": 'urgency == "emergency"',
                 "risk_model": {"method": "fit", "covariates": ["age", "urgency"]}}]
    config = load_config(_measures_audit(tmp_path, measures=measures))
    with pytest.raises(RiskModelError, match=r"measures\[0\] \('emergency_deaths'\).*key 'measures\[0\]\.risk_model"
                                             r"\.covariates\[1\]': risk factor 'urgency' has only the value "
                                             r"'emergency'.*Nothing was written"):
        run_national(config)


def test_measures_bundle_round_trip(measures_run, tmp_path):
    _, results, _ = measures_run
    bundle = load_bundle(write_bundle(tmp_path, results))
    for name, table in results.tables().items():
        pd.testing.assert_frame_equal(getattr(bundle, name), table.reset_index(drop=True), check_exact=True)
    risk = bundle.provider_risk("H00", "mortality")
    assert len(risk) > 100 and set(risk["measure"]) == {"mortality"}
    assert bundle.provider_risk("H00", "los").empty
    assert len(bundle.provider_monitoring("H00", "mortality")) == len(risk)
    assert set(bundle.measure_exclusions("ct_scan")["measure"]) == {"ct_scan"}


@pytest.fixture(scope="module")
def default_audit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("default_audit")
    return make_audit(folder, SyntheticSpec())


def _detection(table, known):
    prov = table[(table["level"] == "provider") & (table["measure"] == "mortality")
                 & (table["statistic"] == "oe_ratio")].set_index("unit_id")
    high, low = known["outliers"]["high"], known["outliers"]["low"]
    found = sum(prov.loc[c, "flag"] in ("alarm_high", "alert_high") for c in high) + sum(
        prov.loc[c, "flag"] in ("alarm_low", "alert_low") for c in low)
    alarm_found = sum(prov.loc[c, "flag"] == "alarm_high" for c in high) + sum(
        prov.loc[c, "flag"] == "alarm_low" for c in low)
    others = prov.drop(index=high + low)
    false_alarms = int(others["flag"].isin(["alarm_high", "alarm_low"]).sum())
    false_alerts = int(others["flag"].isin(["alert_high", "alert_low"]).sum())
    return found, alarm_found, false_alarms, false_alerts, len(others)


def test_national_stage_on_default_synthetic_audit(default_audit, tmp_path):
    config = load_config(default_audit)
    result = run_national(config)
    table = result.indicators
    assert list(table.columns) == INDICATOR_COLUMNS
    nat = table[(table["level"] == "national") & (table["measure"] == "mortality")
                & (table["statistic"] == "oe_ratio")].iloc[0]
    # A model fitted on the whole cohort predicts the national total exactly (logistic score equations).
    assert nat["expected"] == pytest.approx(nat["observed"], rel=1e-6)
    assert set(table["level"]) == {"national", "provider", "consultant"}
    assert table.loc[table["level"] == "provider", "unit_id"].nunique() == 120
    mortality = table[table["measure"] == "mortality"]
    adjusted = mortality[mortality["statistic"] == "adjusted_rate"]
    oe = mortality[mortality["statistic"] == "oe_ratio"]
    assert (adjusted["flag"].to_numpy() == oe["flag"].to_numpy()).all()
    assert adjusted["value"].dropna().between(0, 1).all()

    found, alarm_found, false_alarms, false_alerts, n_others = _detection(table, truth(default_audit))
    print(f"\ninjected outliers flagged: {found}/5 (at alarm level {alarm_found}/5); "
          f"false alarms {false_alarms}/{n_others}, false alerts {false_alerts}/{n_others}")
    assert found >= 4
    assert alarm_found >= 3
    assert false_alarms <= 2

    bundle = load_bundle(write_bundle(tmp_path, result))
    assert bundle.metadata["data"]["source"]["sha256"] == result.metadata["data"]["source"]["sha256"]
    for name, table in result.tables().items():  # what was computed is what every report reads
        pd.testing.assert_frame_equal(getattr(bundle, name), table.reset_index(drop=True), check_exact=True)
    assert bundle.model["measures"]["mortality"]["model"]["kind"] == "fitted"
    risk = bundle.provider_risk(truth(default_audit)["outliers"]["high"][0], "mortality")
    assert len(risk) > 100 and risk["procedure_date"].is_monotonic_increasing


def test_public_table_suppresses_each_measure_by_its_own_counts(measures_run):
    """Small numbers are blanked per measure: a unit's few eligible records hide that measure's figures only, a
    proportion's rate, O/E and adjusted rate go together, and a mean (no count) is hidden by its records alone."""
    from auditreport.rules.disclosure import suppress_indicators

    _, results, _ = measures_run
    table = results.indicators.copy()
    few = (table["unit_id"] == "H07") & (table["measure"] == "time_to_surgery")
    table.loc[few, "denominator"] = 5.0  # five eligible records at H07
    death = (table["unit_id"] == "H08") & (table["measure"] == "mortality") & (table["level"] == "provider")
    table.loc[death & (table["statistic"] == "oe_ratio"), ["numerator", "observed"]] = 3.0
    public = suppress_indicators(table, 7)
    hidden = public[public["suppressed"]]
    at_h07 = hidden[(hidden["unit_id"] == "H07") & (hidden["level"] == "provider")]
    assert set(at_h07["measure"]) == {"time_to_surgery"} and set(at_h07["statistic"]) == {"mean", "median"}
    assert public.loc[few & (public["level"] == "provider"), ["value", "lower95", "denominator"]].isna().all().all()
    at_h08 = hidden[(hidden["unit_id"] == "H08") & (hidden["measure"] == "mortality")]
    assert {"rate", "oe_ratio", "adjusted_rate"} <= set(at_h08["statistic"])
    # A hidden denominator is not recoverable: another provider's records of the measure are hidden with it.
    means = public[(public["measure"] == "time_to_surgery") & (public["statistic"] == "mean")
                   & (public["level"] == "provider")]
    assert means["denominator"].isna().sum() >= 2
    # Measures without small numbers keep every provider's figures.
    los = public[(public["measure"] == "los") & (public["level"] == "provider")]
    assert not los["suppressed"].any()
    # The national stage's public table leaves the internal measure (published: false) out altogether.
    assert set(results.indicators_public["measure"]) == {m["id"] for m in MEASURES} - {"time_to_surgery"}
    assert "time_to_surgery" in set(results.indicators["measure"])


def test_an_audit_of_one_ratio_measure_without_counts(tmp_path):
    """Length of stay alone: no statistic has a count, so disclosure control hides by records only."""
    config = load_config(_measures_audit(tmp_path, measures=[MEASURES[5]]))
    results = run_national(config)
    assert set(results.indicators["measure"]) == {"los"} and results.indicators["numerator"].isna().all()
    assert not results.indicators_public["suppressed"].any()
    assert results.risk.empty and results.monitoring.empty and results.km.empty
    assert results.model["measures"]["los"]["family"] == "poisson"
    bundle = load_bundle(write_bundle(tmp_path / "out", results))  # empty tables keep their declared columns
    assert bundle.km.empty and list(bundle.risk.columns) == list(results.risk.columns)


def test_an_audit_without_risk_factors_runs(tmp_path):
    """No risk factors at all (issue #14: this crashed in the Cox fit): crude rates without status, Kaplan-Meier
    without Cox, no monitoring, a case mix without factors; and validate's model check passes too."""
    from auditreport.analysis.national import check_risk_models
    from auditreport.data.validation import load_validated

    measures = [{"id": "mortality", "label": "In-hospital mortality", "kind": "proportion", "event": "died",
                 "direction": "lower_is_better"}, MEASURES[1]]
    path = _measures_audit(tmp_path, measures=measures)
    definition = yaml.safe_load(open(path))
    del definition["risk_factors"]
    open(path, "w").write(yaml.safe_dump(definition, sort_keys=False))
    config = load_config(path)
    check_risk_models(config, load_validated(config))
    results = run_national(config)
    assert set(results.indicators["statistic"]) == {"rate", "survival_30d", "survival_365d"}
    assert (results.indicators["flag"] == "").all()
    assert results.model == {"measures": {}} and results.monitoring.empty and results.risk.empty
    assert results.casemix.empty or set(results.casemix["variable"]) == set()
    load_bundle(write_bundle(tmp_path / "out", results))


def test_a_ratio_level_whose_values_are_all_zero_is_named(tmp_path):
    """A Poisson model of length of stay cannot fit a level where every stay is 0 days: the error names it."""
    extract = _measures_extract(n=3000, providers=6, seed=8)
    extract.loc[extract["asa"] == "4", "los"] = 0.0
    config = load_config(_measures_audit(tmp_path, measures=[MEASURES[5]], extract=extract))
    with pytest.raises(RiskModelError, match=r"measures\[0\] \('los'\): the risk model cannot be fitted.*nothing was "
                                             r"written\.\n  risk factor 'asa' level '4': \d+ records, every value 0 "
                                             r"\(merge it into another level in risk_factors\[2\]\.categories"):
        run_national(config)


def test_a_fixed_ratio_model_applies_the_published_coefficients(tmp_path):
    """method: fixed for a ratio: E = exp(the published linear predictor), no refit (checked by hand here)."""
    measure = {**MEASURES[5], "risk_model": {"method": "fixed", "family": "poisson", "covariates": ["age"],
                                             "coefficients": {"Intercept": 1.0, "age": 0.012}}}
    config = load_config(_measures_audit(tmp_path, measures=[measure]))
    results = run_national(config)
    records = pd.read_csv(tmp_path / "records.csv")
    records["mu"] = np.exp(1.0 + 0.012 * records["age"])
    by = records.groupby("provider_code")["mu"].sum()
    np.testing.assert_allclose(_rows(results, "los", "oe_ratio").loc[by.index, "expected"], by, rtol=1e-10)
