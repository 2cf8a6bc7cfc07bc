"""The national stage on the synthetic audit: indicators, bundle, and outlier detection against the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditreport.analysis.indicators import INDICATOR_COLUMNS
from auditreport.analysis.national import run_national
from auditreport.bundle import load_bundle, write_bundle
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec

from conftest import make_audit, truth


@pytest.fixture(scope="module")
def default_audit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("default_audit")
    return make_audit(folder, SyntheticSpec())


def _detection(table, known):
    prov = table[(table["level"] == "provider") & (table["indicator"] == "oe_ratio")].set_index("unit_id")
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
    nat = table[(table["level"] == "national") & (table["indicator"] == "oe_ratio")].iloc[0]
    # A model fitted on the whole cohort predicts the national total exactly (logistic score equations).
    assert nat["expected"] == pytest.approx(nat["observed"], rel=1e-6)
    assert set(table["level"]) == {"national", "provider", "consultant"}
    assert table.loc[table["level"] == "provider", "unit_id"].nunique() == 120
    ramr = table[table["indicator"] == "risk_adjusted_mortality"]
    oe = table[table["indicator"] == "oe_ratio"]
    np.testing.assert_allclose(ramr["value"].to_numpy(), oe["value"].to_numpy() * result.metadata["national"]["rate"])

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
    assert bundle.model["model"]["kind"] == "fitted"
    risk = bundle.provider_risk(truth(default_audit)["outliers"]["high"][0])
    assert len(risk) > 100 and risk["procedure_date"].is_monotonic_increasing


def test_no_deaths_with_few_expected_is_not_flagged():
    """A unit with O = 0 lies below any smooth lower limit; the discrete exact test must confirm a flag."""
    import pandas as pd

    from auditreport.analysis.indicators import oe_ratio

    totals = pd.DataFrame({"cases": [60, 400], "observed": [0.0, 0.0], "expected": [1.9, 12.0]},
                          index=pd.Index(["small", "large"]))
    rows = oe_ratio(totals, None).set_index("unit_id")
    assert rows.loc["small", "flag"] == "as_expected"  # P(O = 0 | E = 1.9) = 0.15
    assert rows.loc["large", "flag"] == "alarm_low"  # P(O = 0 | E = 12) = 6e-6
