"""Outlier detection on the synthetic audit, measured against the injected truth.

For each over-dispersion method, the national stage is run on the default
synthetic audit (120 providers, 50,000 records; three high and two low
injected outliers, plus random provider variation of SD 0.15 on the logit
scale) and the share of injected outliers flagged and the false alarm rate
among the other providers are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import pytest

from auditreport.analysis.national import run_national
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec
from auditreport.data.validation import load_validated

from conftest import make_audit, truth


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    return make_audit(tmp_path_factory.mktemp("detection"), SyntheticSpec())


def detection(table, known) -> dict:
    prov = table[(table["level"] == "provider") & (table["indicator"] == "oe_ratio")].set_index("unit_id")
    injected = {c: "high" for c in known["outliers"]["high"]} | {c: "low" for c in known["outliers"]["low"]}
    flags = prov["flag"]
    hit_any = sum(flags[c] in (f"alert_{d}", f"alarm_{d}") for c, d in injected.items())
    hit_alarm = sum(flags[c] == f"alarm_{d}" for c, d in injected.items())
    others = flags.drop(index=list(injected))
    return {"injected": len(injected), "flagged": hit_any, "flagged_alarm": hit_alarm, "others": len(others),
            "false_alerts_or_alarms": int((others != "as_expected").sum()),
            "false_alarms": int(others.isin(["alarm_high", "alarm_low"]).sum())}


@pytest.mark.parametrize("method", ["none", "multiplicative", "additive", "shmi"])
def test_detection_by_overdispersion_method(audit, tmp_path, method):
    base = load_config(audit)
    config = base.__class__(**{**base.__dict__, "overdispersion": method})
    result = run_national(config, load_validated(config))
    d = detection(result.indicators, truth(audit))
    od = result.metadata["overdispersion"]["provider"]["ratio"]
    print(f"\n{method:>14}: phi={od['phi']:.3f} tau2={od['tau2']:.4g} trimmed={od['n_trimmed']}; "
          f"injected flagged {d['flagged']}/{d['injected']} (alarm {d['flagged_alarm']}); "
          f"false alerts/alarms {d['false_alerts_or_alarms']}/{d['others']}, false alarms {d['false_alarms']}")
    # Every method must find the clear (alarm-level) injected outliers and keep false alarms rare.
    assert d["flagged"] >= 4
    assert d["flagged_alarm"] >= 2
    assert d["false_alarms"] <= 2
    if method != "none":
        assert od["method"] == method
