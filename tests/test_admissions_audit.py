"""A real extract no one here generated: 1,495 Medicare admissions at 54 hospitals, no dates (tests/data/medpar.csv).

The definition (tests/definitions/admissions_medpar.yaml) was written from the README alone, as a new user
would: in-hospital death as a 0/1 column, stays over 14 days as an expression, length of stay as observed /
expected from a Poisson GLM, and a process mean with an eligibility filter. It must validate, run end to end
and publish, speak of admissions and hospitals in Arizona, and leave out what the data cannot support (survival,
monitoring, consultants), with the figures held to an independent fit.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from click.testing import CliRunner

from auditreport.bundle import load_bundle
from auditreport.cli import main
from auditreport.reproduce import visible_text

from conftest import REPO

DEFINITION = REPO / "tests" / "definitions" / "admissions_medpar.yaml"
EXTRACT = REPO / "tests" / "data" / "medpar.csv"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("medpar")
    extract = pd.read_csv(EXTRACT, dtype=str, keep_default_na=False)
    extract.insert(0, "admission_id", "M" + extract["rownames"])  # row numbers are not usable patient ids
    extract.to_csv(folder / "medpar_records.csv", index=False)
    shutil.copy(DEFINITION, folder)
    audit = folder / DEFINITION.name
    validate = CliRunner().invoke(main, ["validate", str(audit)])
    reports = folder / "reports"
    run = CliRunner().invoke(main, ["run", str(audit), "--reports", str(reports), "-p", "030001", "-p", "030043"])
    return validate, run, reports / "medpar-admissions" / "1991", extract


def test_validates_in_the_audits_words(built):
    validate, _, _, _ = built
    assert validate.exit_code == 0, validate.output
    assert "valid. 1,495 admissions from 54 hospitals" in validate.output
    assert "emergency_stay (mean): 96 records analysed; left out: not eligible (type == 3): 1,399" in validate.output


def test_runs_and_publishes(built):
    _, run, period, _ = built
    assert run.exit_code == 0, run.output
    for rel in ("providers/030001/local.pdf", "providers/030001/public.pdf", "national/national.pdf",
                "site/index.html", "indicators.csv"):
        assert (period / rel).is_file(), rel


def test_figures_match_independent_fits(built):
    _, _, period, extract = built
    data = extract.astype({c: float for c in ("los", "died", "hmo", "white", "age80", "type")})
    bundle = load_bundle(period / "bundle")
    t = bundle.indicators
    # Mortality: a logistic GLM fitted directly; E per hospital = sum of its fitted probabilities.
    logit = smf.glm("died ~ C(age80) + C(hmo) + C(white) + C(type)", data, family=sm.families.Binomial()).fit()
    expected = pd.Series(logit.fittedvalues.to_numpy(), index=data["provnum"]).groupby(level=0).sum()
    oe = t.query("measure == 'mortality' and statistic == 'oe_ratio' and level == 'provider'").set_index("unit_id")
    np.testing.assert_allclose(oe.loc[expected.index, "expected"], expected, rtol=1e-6)
    # Length of stay: a Poisson GLM with a log link; O/E = sum of days / sum of fitted days.
    poisson = smf.glm("los ~ C(hmo) + C(died) + C(age80) + C(type)", data, family=sm.families.Poisson()).fit()
    fitted = pd.Series(poisson.fittedvalues.to_numpy(), index=data["provnum"]).groupby(level=0).sum()
    observed = data.groupby("provnum")["los"].sum()
    los = t.query("measure == 'los' and statistic == 'oe_ratio' and level == 'provider'").set_index("unit_id")
    np.testing.assert_allclose(los.loc[fitted.index, "value"], observed / fitted, rtol=1e-6)
    # The bounded adjusted rate never passes 100%, and every flag sits on a statistic that carries status.
    rates = t.query("measure == 'mortality' and statistic == 'adjusted_rate'")["value"].dropna()
    assert rates.between(0, 1).all()
    assert (t.query("measure == 'long_stay'")["flag"] == "").all()


def test_reports_speak_the_audits_words_and_leave_out_what_has_no_data(built):
    _, _, period, _ = built
    local = visible_text((period / "providers" / "030001" / "local.html").read_text(encoding="utf-8"))
    for words in ("58 admissions", "Arizona (all hospitals)", "In-hospital mortality", "Stays over 14 days",
                  "Length of stay (observed / expected)", "80 or over", "Admission type", "emergency"):
        assert words in local, words
    for absent in ("England", "procedures", "Survival", "RA-CUSUM", "Consultant", "deaths within"):
        assert absent not in local, absent
    # 030001 had no emergency admissions: said plainly, not shown as blank or suppressed figures.
    assert "030001 had no admissions eligible for this measure (type == 3)" in local
    national = visible_text((period / "national" / "national.html").read_text(encoding="utf-8"))
    assert "54 hospitals" in national and "England" not in national
