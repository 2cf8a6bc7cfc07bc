"""Survival and monitoring through the national stage and the reports, on the real NCCTG lung data (issue #4).

The lung audit (``params/lung.yaml``) reads lifelines' copy of R's ``survival::lung``; the reference figures
are R survival 3.5-3's, quoted in METHODS.md section 6.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from oracles import cusum_recursion, logrank_vs_rest

from auditreport.analysis.measures import INDICATOR_COLUMNS
from auditreport.analysis.national import run_national
from auditreport.analysis.survival_monitoring import fit_national_cox, monitoring_table
from auditreport.bundle import load_bundle, write_bundle
from auditreport.config import load_config
from auditreport.data.examples import write_example
from auditreport.errors import ConfigError
from auditreport.stats.monitoring import cusum_weights, detection_delay
from auditreport.stats.riskmodel import RiskFactor
from auditreport.stats.survival import kaplan_meier, kaplan_meier_by_group, survival_at, survival_at_by_group

REPO = Path(__file__).resolve().parents[1]


def _lung_audit(folder: Path, covariates: list[str] | None = None, **overrides) -> Path:
    """The lung audit's definition with its data in ``folder``; ``covariates`` replace every model's (the
    definition may give them per measure or, in the older form, in one ``risk_model`` section)."""
    paths = write_example("lung", folder / "data")
    definition = yaml.safe_load((REPO / "params" / "lung.yaml").read_text())
    definition["data"]["source"] = str(paths["records"])
    definition["data"]["providers"] = str(paths["providers"])
    if covariates is not None:
        models = [m["risk_model"] for m in definition.get("measures", []) if m.get("risk_model")]
        for model in models or [definition.setdefault("risk_model", {})]:
            model["covariates"] = covariates
    for section, values in overrides.items():
        definition.setdefault(section, {})
        if isinstance(values, dict) and section != "monitoring":  # monitoring keys exclude each other: replace
            definition[section].update(values)
        else:
            definition[section] = values
    out = folder / "lung.yaml"
    out.write_text(yaml.safe_dump(definition, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def lung_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lung")
    config = load_config(_lung_audit(folder))
    return load_bundle(write_bundle(folder / "out", run_national(config)))


def _national(bundle, statistic, measure="survival"):
    t = bundle.indicators
    return t[(t["level"] == "national") & (t["measure"] == measure) & (t["statistic"] == statistic)].iloc[0]


def _measure(bundle, measure_id):
    return next(m for m in bundle.metadata["measures"] if m["id"] == measure_id)


def _mortality_id(config) -> str:
    """The id of the audit's death-within-N-days proportion ("mortality" in the older form of a definition)."""
    return next(m.id for m in config.measures if m.kind == "proportion" and m.death_within_days)


def test_lung_reproduces_r_reference_figures(lung_bundle):
    """METHODS.md section 6: median 310 (285-363, "log"), S(180) = 0.722, S(365) = 0.409 (0.3447-0.486)."""
    assert _measure(lung_bundle, "survival")["survival"]["ci_transform"] == "log"
    nat = lung_bundle.survival_tests.set_index("unit_id").loc["national"]
    assert nat["measure"] == "survival"
    assert nat["patients"] == 228 and nat["deaths"] == 165  # the patient without an institution counts nationally
    assert (nat["median"], nat["median_lower"], nat["median_upper"]) == (310, 285, 363)
    assert "midpoint" in nat["median_convention"]
    s180, s365 = _national(lung_bundle, "survival_180d"), _national(lung_bundle, "survival_365d")
    assert round(s180["value"], 3) == 0.722
    assert round(s365["value"], 3) == 0.409
    assert round(s365["lower95"], 4) == 0.3447 and round(s365["upper95"], 3) == 0.486


def test_lung_cox_age_sex_matches_r(tmp_path):
    """R: coxph(Surv(time, status) ~ age + sex, lung): 0.017045, -0.513219, log-likelihood -742.8482."""
    config = load_config(_lung_audit(tmp_path, covariates=["age", "sex"]))
    cox = load_bundle(write_bundle(tmp_path / "out", run_national(config))).model["measures"]["survival"]["cox"]
    coef = {c["term"]: c["coef"] for c in cox["coefficients"]}
    assert round(coef["age"], 6) == 0.017045
    assert round(coef["sex[2]"], 6) == -0.513219  # female against male: R's numeric sex (1, 2) has the same slope
    assert round(cox["log_likelihood"], 4) == -742.8482
    assert cox["fitted_on"] == 228 and {r["term"] for r in cox["ph_test"]} == {"age", "sex[2]", "GLOBAL"}


def test_lung_bundle_survival_tests_cox_and_no_monitoring_without_dates(lung_bundle):
    t = lung_bundle.indicators
    assert list(t.columns) == INDICATOR_COLUMNS
    cox = t[(t["measure"] == "survival") & (t["statistic"] == "cox_oe_ratio")]
    nat = cox[cox["level"] == "national"].iloc[0]
    assert nat["value"] == pytest.approx(1.0) and nat["observed"] == 165  # Breslow baseline: national E = O
    prov = cox[cox["level"] == "provider"].set_index("unit_id")
    assert len(prov) == 18 and "nan" not in prov.index and prov["flag"].isin(
        ["as_expected", "alert_high", "alert_low", "alarm_high", "alarm_low"]).all()
    tiny = prov.loc["33"]  # two patients, one death: a very wide interval, but numbers
    assert tiny["denominator"] == 2 and tiny["upper95"] / tiny["lower95"] > 100
    assert ((prov["lower95"] <= prov["value"]) & (prov["value"] <= prov["upper95"])).all()
    assert not lung_bundle.funnels[lung_bundle.funnels["statistic"] == "cox_oe_ratio"].empty
    assert _measure(lung_bundle, "survival")["headline"] == "cox_oe_ratio"

    tests = lung_bundle.survival_tests.set_index("unit_id")
    # The bundle's log-rank agrees with the one-unit reference implementation (itself checked against R).
    lung = pd.read_csv(Path(lung_bundle.metadata["data"]["source"]["path"]), dtype={"inst": str})
    ref = logrank_vs_rest(lung["time"], lung["status"], lung["inst"] == "21")
    assert tests.loc["21", "logrank_chi2"] == pytest.approx(ref["chi2"])
    assert tests.loc["21", "logrank_p"] == pytest.approx(ref["p_value"])
    assert tests.drop(index="national")["logrank_p"].between(0, 1).all()

    q = lung_bundle.quality.set_index("unit_id")
    assert q.loc["national", "no provider code"] == 1

    # No procedure dates: RA-CUSUM in the order of the file's rows would say nothing about time, so there is none,
    # and the metadata says why.
    assert lung_bundle.monitoring.empty
    mortality = next(m for m in lung_bundle.metadata["measures"] if m["kind"] == "proportion")
    assert mortality["cusum"] is None and "no procedure dates" in mortality["monitoring_note"]


def test_monitoring_table_is_each_providers_chart():
    """Moved to the stats tests: the chart itself (test_monitoring.py) and the log-rank (test_survival.py).

    Here, the application: each provider's block of the table is its own upper and lower chart and VLAD, from 0,
    as the plain recursion gives them, and patients without a provider are left out.
    """
    rng = np.random.default_rng(8)
    n = 6000
    p = rng.uniform(0.01, 0.4, n)
    y = (rng.random(n) < p * 1.5).astype(int)
    codes = np.sort(rng.choice(["A", "B", "C"], n)).astype(object)
    codes[-7:] = None
    risk = pd.DataFrame({"provider_code": codes, "procedure_date": pd.NaT, "p": p, "outcome": y})
    table = monitoring_table(risk, 3.0, 2.5)
    assert len(table) == n - 7 and list(table["provider_code"].unique()) == ["A", "B", "C"]
    for code, rows in table.groupby("provider_code"):
        mask = codes == code
        up, sig_up = cusum_recursion(cusum_weights(p[mask], y[mask], 2.0), 3.0)
        lo, sig_lo = cusum_recursion(cusum_weights(p[mask], y[mask], 0.5), 2.5)
        np.testing.assert_allclose(rows["s_upper"], up, atol=1e-9)
        np.testing.assert_allclose(rows["s_lower"], -lo, atol=1e-9)
        assert (rows["signal_upper"].to_numpy() == sig_up).all() and sig_up.any()
        assert (rows["signal_lower"].to_numpy() == sig_lo).all()
        np.testing.assert_allclose(rows["vlad"], np.cumsum(p[mask] - y[mask]), atol=1e-9)
        assert list(rows["index"]) == list(range(mask.sum()))


def test_monitoring_config_keys(tmp_path):
    fixed = load_config(_lung_audit(tmp_path, monitoring={"cusum_h": 4.5}))
    assert fixed.cusum_h == 4.5
    with pytest.raises(ConfigError, match=r"lung.yaml: key 'monitoring': give cusum_h .* not both"):
        load_config(_lung_audit(tmp_path, monitoring={"cusum_h": 4.5, "cusum_arl": 100}))
    with pytest.raises(ConfigError, match=r"key 'monitoring.cusum_h': must be a positive number"):
        load_config(_lung_audit(tmp_path, monitoring={"cusum_h": -1}))
    with pytest.raises(ConfigError, match=r"key 'monitoring.cusum_arl'"):
        load_config(_lung_audit(tmp_path, monitoring={"cusum_arl": "long"}))
    with pytest.raises(ConfigError, match=r"key 'monitoring.h': unknown key"):
        load_config(_lung_audit(tmp_path, monitoring={"h": 4}))


def test_cusum_detects_doubled_odds_on_national_risks(small_audit, tmp_path):
    """The national stage's h, on the audit's own case mix, catches a provider with doubled odds of death.

    The same zero-state simulation as tests/test_monitoring.py, applied to the bundle's figures of the small
    synthetic audit (which has procedure dates to order its charts by); run with ``pytest -s`` to see the median
    delay.
    """
    bundle = load_bundle(write_bundle(tmp_path, run_national(load_config(small_audit))))
    info = _measure(bundle, "mortality")["cusum"]
    assert info["source"] == "simulated" and info["h_upper"] > 0 and "procedure-date order" in info["order"]
    mon = bundle.monitoring
    assert set(mon["measure"]) == {"mortality"} and (mon["s_upper"] >= 0).all() and (mon["s_lower"] <= 0).all()
    risk = bundle.risk
    delay = detection_delay(risk["p"].to_numpy(), info["h_upper"], odds_ratio=2, true_odds_ratio=2, n_sim=1000,
                            seed=3)
    assert delay["proportion_signalled"] == 1.0
    assert delay["median_patients"] < info["target_arl"] / 5
    print(f"\nsmall synthetic audit: h = {info['h_upper']:.2f} (in-control ARL {info['target_arl']}); doubled odds: median "
          f"delay {delay['median_patients']:.0f} patients (IQR {delay['q25_patients']:.0f}-"
          f"{delay['q75_patients']:.0f}); bundle figure {info['delay_doubled_odds']['median_patients']:.0f}")


@pytest.mark.slow
def test_lung_audit_end_to_end(tmp_path):
    """National and provider reports (a large, a mid-sized and a two-patient institution), indicators.csv."""
    from pypdf import PdfReader

    from auditreport.pipeline import build

    # Small-numbers-everywhere: the two-patient institution's figures are suppressed (issue #15 made
    # outcomes-in-full the default; this test exercises suppression of unit results).
    audit = _lung_audit(tmp_path, publication={"policy": "small-numbers-everywhere"})
    # Move one patient of institution 1 (who died within the outcome window) to an institution of their own, so
    # a one-patient provider goes through every chart and test too.
    records = pd.read_csv(tmp_path / "data" / "records.csv", dtype=str)
    one = records.index[(records["inst"] == "1") & (records["status"] == "1")
                        & (records["time"].astype(int) < 180)][0]
    records.loc[one, "inst"] = "99"
    records.to_csv(tmp_path / "data" / "records.csv", index=False)
    with open(tmp_path / "data" / "providers.csv", "a") as fh:
        fh.write("99,Institution 99\n")
    summary = build(audit, tmp_path / "reports", providers=["1", "21", "33", "99"], workers=2)
    assert not summary.failed, [(r.name, r.error) for r in summary.failed]
    assert summary.counts() == {"built": 1 + 4 * 2}
    out = summary.period_dir
    data = pd.read_csv(out / "indicators.csv", dtype={"unit_id": str})
    assert {"survival_180d", "survival_365d", "cox_oe_ratio"} <= set(data["statistic"])
    small = data[(data["unit_id"] == "33") & (data["level"] == "provider")]
    assert small["value"].isna().all()  # two patients: suppressed in open data (threshold 7)

    def text(path: Path) -> str:
        return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(path).pages))

    national = text(out / "national" / "national.pdf")
    assert "310 days" in national and "285 days to 363 days" in national
    assert "Proportional-hazards check" in national and "RA-CUSUM" not in national  # no dates: no monitoring
    local = text(out / "providers" / "21" / "local.pdf")
    assert "Log-rank test against the rest of the" in local and "p = 0.007" in local
    assert "Cox O/E" in local and "RA-CUSUM" not in local
    public_small = text(out / "providers" / "33" / "public.pdf")
    assert "too small to publish" in public_small
    single = text(out / "providers" / "99" / "local.pdf")
    assert "Institution 99" in single and "Cox O/E" in single
    html = (out / "providers" / "21" / "local.html").read_text()
    assert html.count("data:image/png;base64,") >= 3  # funnels, KM, Cox funnel
    assert json.loads((out / "manifest.json").read_text())["reports"]["failed"] == []
    shutil.rmtree(out / "bundle", ignore_errors=True)


def test_cox_drops_a_category_nobody_has_and_keeps_national_e_equal_o():
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame({"time": rng.integers(1, 400, n).astype(float), "event": rng.integers(0, 2, n),
                       "provider_code": rng.choice(["a", "b"], n), "age": rng.normal(60, 10, n),
                       "asa": rng.choice(["1", "2"], n)})
    factors = [RiskFactor(name="age", kind="numeric"),
               RiskFactor(name="asa", kind="categorical", categories=("1", "2", "3"), reference="1")]
    _, patients, info = fit_national_cox(factors, df, {"age": 60.0})
    assert info["terms"] == ["age", "asa[2]"] and info["terms_without_variation"] == ["asa[3]"]
    assert patients["cox_expected"].sum() == pytest.approx(df["event"].sum())


def test_provider_with_only_early_censored_patients_gets_rows(tmp_path):
    """Its patient has survival data but no 180-day outcome: mortality rows with 0 records, not a missing row."""
    audit = _lung_audit(tmp_path)
    records = pd.read_csv(tmp_path / "data" / "records.csv", dtype=str)
    one = records.index[(records["status"] == "0") & (records["time"].astype(int) < 180)][0]
    records.loc[one, "inst"] = "98"
    records.to_csv(tmp_path / "data" / "records.csv", index=False)
    with open(tmp_path / "data" / "providers.csv", "a") as fh:
        fh.write("98,Institution 98\n")
    config = load_config(audit)
    table = run_national(config).indicators
    rows = table[(table["level"] == "provider") & (table["unit_id"] == "98")].set_index(["measure", "statistic"])
    mortality = _mortality_id(config)
    assert rows.loc[(mortality, "rate"), "denominator"] == 0 and np.isnan(rows.loc[(mortality, "rate"), "value"])
    assert rows.loc[(mortality, "adjusted_rate"), "flag"] == ""
    assert np.isnan(rows.loc[(mortality, "adjusted_rate"), "value"])
    assert rows.loc[("survival", "survival_180d"), "denominator"] == 1


@pytest.mark.parametrize("transform", ["log", "log-log", "plain"])
def test_survival_at_by_group_is_survival_at_of_each_group(transform):
    """Every unit at once (what the national stage reads for each level) against one group at a time: ties,
    deaths at time 0, a group whose curve reaches 0 (NaN interval) and a horizon beyond a group's follow-up."""
    rng = np.random.default_rng(5)
    n = 3000
    t = rng.integers(0, 400, n).astype(float)
    e = rng.integers(0, 2, n)
    g = rng.choice([f"u{i:02d}" for i in range(25)], n).astype(object)
    g[:3], t[:3], e[:3] = "all die", [5.0, 5.0, 10.0], 1
    horizons = [0, 30, 365, 420]
    table = survival_at_by_group(t, e, g, horizons, alpha=0.002, ci_transform=transform)
    for code in sorted(set(g)):
        mask = g == code
        ref = survival_at(t[mask], e[mask], horizons, alpha=0.002, ci_transform=transform)
        mine = table[table["group"] == code].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine[ref.columns], ref, check_dtype=False, rtol=1e-12)
    assert table.loc[table["group"] == "all die", "lower"].isna().iloc[-1]


@pytest.mark.parametrize("transform", ["log", "log-log", "plain"])
def test_kaplan_meier_by_group_is_kaplan_meier_of_each_group(transform):
    """Every provider's curve in one pass against one group at a time: deaths at time 0, ties, and a group whose
    curve reaches 0 before another group's begins (the cumulative sums must not carry across groups)."""
    rng = np.random.default_rng(6)
    n = 3000
    t = rng.integers(0, 400, n).astype(float)
    e = rng.integers(0, 2, n)
    g = rng.choice([f"u{i:02d}" for i in range(25)], n).astype(object)
    g[:3], t[:3], e[:3] = "a: all die", [5.0, 5.0, 10.0], 1
    t[3:10] = 0.0
    table = kaplan_meier_by_group(t, e, g, alpha=0.05, ci_transform=transform)
    assert list(table["group"].unique()) == sorted(set(g))
    for code in sorted(set(g)):
        mask = g == code
        mine = table[table["group"] == code].drop(columns="group").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, kaplan_meier(t[mask], e[mask], alpha=0.05, ci_transform=transform),
                                      check_dtype=False, rtol=1e-12)
