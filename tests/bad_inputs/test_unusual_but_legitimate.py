"""Unusual but legitimate data give correct results with the right caveat, never a crash.

Each case runs the national stage on a copy of the clean audit and then runs the code of the national
and provider notebooks in-process (no kernel, no PDF, to stay fast; the full notebooks run in the
end-to-end and hostile-name tests) and checks the HTML they display.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditreport.analysis.national import run_national
from auditreport.bundle import load_bundle, write_bundle
from auditreport.config import load_config
from auditreport.data.validation import load_validated
from auditreport.reproduce import regenerate_report_html, visible_text
from auditreport.resources import notebook_dir


def render_provider(bundle: str, provider: str, audience: str) -> str:
    return visible_text(regenerate_report_html(notebook_dir() / "provider.ipynb",
                                               {"bundle_dir": bundle, "provider": provider, "audience": audience}))


def render_national(bundle: str) -> str:
    return visible_text(regenerate_report_html(notebook_dir() / "national.ipynb",
                                               {"bundle_dir": bundle, "audience": "public"}))


def build_all(audit, tmp_path, provider: str | None = None):
    config = load_config(audit.yaml)
    result = run_national(config)
    bundle = str(write_bundle(tmp_path / "out", result))
    ind = result.indicators
    providers = sorted(ind.loc[ind["level"] == "provider", "unit_id"].unique())
    providers = [p for p in providers if provider is None or p == provider]
    pages = {(p, a): render_provider(bundle, p, a) for p in providers for a in ("local", "public")}
    pages[("national", "public")] = render_national(bundle)
    return config, result, pages


def _row(result, unit, measure, statistic, level="provider"):
    t = result.indicators
    return t[(t["level"] == level) & (t["unit_id"] == unit) & (t["measure"] == measure)
             & (t["statistic"] == statistic)].iloc[0]


def _smallest_provider(audit) -> str:
    return audit.frame()["provider_code"].value_counts().index[-1]


def test_provider_listed_but_without_records(audit_copy, tmp_path):
    with open(audit_copy.providers, "a") as fh:
        fh.write("RZZ0,Silent Valley NHS Trust\n")
    data = load_validated(load_config(audit_copy.yaml))
    assert any("submitted no records: RZZ0" in w for w in data.warnings)
    _, result, pages = build_all(audit_copy, tmp_path, "")
    assert "RZZ0" not in set(result.indicators["unit_id"])  # no results, so no report
    assert result.metadata["national"]["providers_without_cases"] == [
        {"provider_code": "RZZ0", "provider_name": "Silent Valley NHS Trust", "records_submitted": 0}]
    assert "1 provider(s) had no records to analyse" in pages[("national", "public")]
    assert "Silent Valley NHS Trust (RZZ0)" in pages[("national", "public")]


def test_provider_whose_records_are_all_outside_the_period(audit_copy, tmp_path):
    code = _smallest_provider(audit_copy)
    audit_copy.edit(lambda f: f.assign(procedure_date=f["procedure_date"].where(f["provider_code"] != code,
                                                                                  "2023-03-01")))
    _, result, pages = build_all(audit_copy, tmp_path, code)
    silent = result.metadata["national"]["providers_without_cases"]
    assert [p["provider_code"] for p in silent] == [code] and silent[0]["records_submitted"] > 0
    assert f"({code})" in pages[("national", "public")]


def test_provider_with_one_case(audit_copy, tmp_path):
    code = _smallest_provider(audit_copy)
    other = audit_copy.frame()["provider_code"].value_counts().index[0]

    def change(f):
        mine = f.index[f["provider_code"] == code]
        f.loc[mine[1:], "provider_code"] = other
    audit_copy.edit(change)
    _, result, pages = build_all(audit_copy, tmp_path, code)
    row = _row(result, code, "mortality", "rate")
    assert row["denominator"] == 1
    local = pages[(code, "local")]
    assert "reported 1 procedures" in local and "the result should be read with caution" in local
    public = pages[(code, "public")]
    assert "reported * procedures" in public
    assert "Some figures are shown as * because they involve between 1 and 7 procedures" in public


def test_provider_where_every_patient_lived(audit_copy, tmp_path):
    code = audit_copy.frame()["provider_code"].value_counts().index[0]

    def change(f):
        f.loc[f["provider_code"] == code, "death_date"] = ""
    audit_copy.edit(change)
    _, result, pages = build_all(audit_copy, tmp_path, code)
    oe = _row(result, code, "mortality", "oe_ratio")
    assert oe["observed"] == 0 and oe["value"] == 0 and oe["lower95"] == 0
    assert np.isfinite(oe["upper95"]) and oe["upper95"] > 0 and oe["expected"] > 0
    assert np.isfinite([oe["limit_lower95"], oe["limit_upper95"], oe["limit_lower998"], oe["limit_upper998"]]).all()
    assert oe["flag"] in ("as_expected", "alert_low", "alarm_low")
    assert _row(result, code, "survival", "survival_30d")["value"] == 1.0
    assert "30-day mortality" in pages[(code, "local")] and "Risk-adjusted rate" in pages[(code, "local")]


def test_provider_where_every_patient_died(audit_copy, tmp_path):
    code = _smallest_provider(audit_copy)

    def change(f):
        mine = f["provider_code"] == code
        f.loc[mine, "death_date"] = f.loc[mine, "procedure_date"]
    audit_copy.edit(change)
    _, result, pages = build_all(audit_copy, tmp_path, code)
    crude = _row(result, code, "mortality", "rate")
    assert crude["value"] == 1.0 and crude["upper95"] == pytest.approx(1.0)
    assert _row(result, code, "mortality", "oe_ratio")["flag"] == "alarm_high"
    # Everyone died on the day of the procedure: the survival curve ends at day 0, and by the survival
    # module's rule (no estimate beyond the last follow-up time) survival at 30 days is not estimated.
    surv = _row(result, code, "survival", "survival_30d")["value"]
    assert surv == 0.0 or np.isnan(surv)
    assert "Alarm: worse than expected" in pages[(code, "local")]


def test_provider_missing_every_risk_factor(audit_copy, tmp_path):
    code = _smallest_provider(audit_copy)
    factors = ["age", "sex", "asa", "urgency", "procedure_group", "diabetes", "bmi"]

    def change(f):
        f.loc[f["provider_code"] == code, factors] = ""
    audit_copy.edit(change)
    n = int((audit_copy.frame()["provider_code"] == code).sum())
    data = load_validated(load_config(audit_copy.yaml))
    assert any(w.startswith(f"age: {n} missing") for w in data.warnings)
    _, result, pages = build_all(audit_copy, tmp_path, code)
    q = load_bundle(tmp_path / "out").quality.set_index("unit_id").loc[code]
    assert q["complete: age"] == 0 and q["complete: urgency"] == 0
    assert q["imputed: age"] == n and q["imputed: urgency"] == n  # counted in data quality
    assert np.isfinite(_row(result, code, "mortality", "oe_ratio")["expected"])
    assert "Imputed: Age" in pages[(code, "local")]  # the factor by its label


def test_risk_model_with_fixed_coefficients_and_no_deaths_nationally(audit_copy, tmp_path):
    """With no deaths a model cannot be fitted (a corpus error); with given coefficients the run is fine."""
    audit_copy.edit(lambda f: f.assign(death_date=""))
    audit_copy.edit_definition(lambda d: d["measures"][0].update(risk_model={
        "method": "fixed", "covariates": ["age"], "coefficients": {"Intercept": -4.0, "age": 0.02}}))
    _, result, pages = build_all(audit_copy, tmp_path, "")
    nat = _row(result, "national", "mortality", "oe_ratio", level="national")
    assert nat["observed"] == 0 and nat["value"] == 0 and nat["expected"] > 0
    assert isinstance(pages[("national", "public")], str)
    assert pd.notna(result.indicators["expected"]).any()


def test_audit_without_risk_factors_runs_without_cox(audit_copy, tmp_path):
    """No risk factors at all: every measure unadjusted, no Cox O/E and no crash (once a traceback from the
    Cox fit); process measures still carry a status, the unadjusted outcomes none."""
    def unadjusted(d):
        d.pop("risk_factors")
        d["measures"] = [m for m in d["measures"] if m["kind"] != "ratio"]  # a ratio needs its risk model
        for m in d["measures"]:
            m.pop("risk_model", None)
            m.pop("monitoring", None)
    audit_copy.edit_definition(unadjusted)
    _, result, pages = build_all(audit_copy, tmp_path, "")
    table = result.indicators
    assert not {"oe_ratio", "adjusted_rate", "cox_oe_ratio"} & set(table["statistic"])
    measures = {m["id"]: m for m in result.metadata["measures"]}
    assert measures["survival"]["headline"] == "survival_365d" and not measures["survival"]["carries_status"]
    assert not measures["mortality"]["carries_status"]
    providers = table[table["level"] == "provider"]
    assert (providers.loc[providers["measure"] == "mortality", "flag"] == "").all()
    review = providers[providers["measure"] == "senior_review"]
    assert len(review) == 4 and review["flag"].isin(["alarm_high", "alert_high", "as_expected", "alert_low",
                                                      "alarm_low"]).all()
    assert "Survival" in pages[("national", "public")]
