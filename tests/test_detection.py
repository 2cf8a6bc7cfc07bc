"""Outlier detection on the synthetic audit, per measure, measured against the injected truth.

The national stage is run on the default synthetic audit (120 providers, 50,000 records). Each measure has its
own injected providers, written to ``truth.json`` as ``measures: {id: {"outliers": {code: "worse" |
"better"}}}``: mortality (and so survival) three worse and two better, senior review three well below the
standard of 0.90, CT before emergency surgery two worse and one better, length of stay (and so stays over 14
days) three longer, hours to surgery three slower. For each measure that carries a status, the test prints
how many injected providers its headline statistic flags on their side (alert or alarm, and alarm alone) and
how many of the other providers it flags (false alerts or alarms, false alarms); run with ``-s`` to see them.
Mortality and length of stay are also run under each over-dispersion method.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from auditreport.analysis.national import run_national
from auditreport.config import AuditConfig, Measure, load_config
from auditreport.data.synthetic import SyntheticSpec
from auditreport.data.validation import load_validated
from auditreport.rules.flags import flag_direction

from conftest import make_audit, truth

ALARMS = ("alarm_high", "alarm_low")


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    return make_audit(tmp_path_factory.mktemp("detection"), SyntheticSpec())


@pytest.fixture(scope="module")
def validated(audit):
    config = load_config(audit)
    return config, load_validated(config)


@pytest.fixture(scope="module")
def national(validated):
    config, data = validated
    return run_national(config, data)


def only(config: AuditConfig, measure: Measure) -> AuditConfig:
    """The audit with ``measure`` alone (as declared, or changed), to rerun one measure quickly."""
    return dataclasses.replace(config, measures=(measure,))


def detection(indicators: pd.DataFrame, measure: Measure, injected: dict[str, str]) -> dict:
    """Injected providers flagged on their side by the measure's headline, and flags among the others."""
    rows = indicators[(indicators["measure"] == measure.id) & (indicators["level"] == "provider")
                      & (indicators["statistic"] == measure.headline)].set_index("unit_id")
    assert rows.index.is_unique and set(injected) <= set(rows.index), measure.id
    flags = rows["flag"]
    side = flags.map(lambda f: flag_direction(f, measure.direction))
    others = side.drop(index=list(injected))
    return {"injected": len(injected),
            "flagged": sum(side[c] == d for c, d in injected.items()),
            "flagged_alarm": sum(side[c] == d and flags[c] in ALARMS for c, d in injected.items()),
            "others": len(others),
            "false_flags": int(others.isin(["worse", "better"]).sum()),
            "false_alarms": int(flags.drop(index=list(injected)).isin(ALARMS).sum()),
            "not_assessed": int((flags == "not_assessed").sum())}


def line(label: str, d: dict) -> str:
    return (f"{label:>18}: injected flagged {d['flagged']}/{d['injected']} (alarm {d['flagged_alarm']}); "
            f"false alerts or alarms {d['false_flags']}/{d['others']}, false alarms {d['false_alarms']}"
            + (f"; not assessed {d['not_assessed']}" if d["not_assessed"] else ""))


#: What each measure with a status must achieve on the default audit: (injected flagged at least, of which
#: alarms at least, false alarms at most). Injected effects are large (see data/synthetic.py), so every one
#: should be found; false alarms must stay rare (length of stay's allowance is multiplicative over-dispersion,
#: which allows for stays being far more spread than Poisson counts; SHMI's additive allowance does not, see
#: test_detection_by_overdispersion_method).
EXPECTED = {
    "mortality": (4, 2, 2),
    "survival": (3, 1, 3),
    "senior_review": (3, 3, 2),
    "ct_before_surgery": (3, 2, 3),
    "los": (3, 3, 4),
    "hours_to_surgery": (3, 3, 3),
}


@pytest.mark.parametrize("measure_id", ["mortality", "survival", "senior_review", "ct_before_surgery", "los",
                                        "hours_to_surgery"])
def test_detection_per_measure(audit, validated, national, measure_id):
    config, _ = validated
    measure = config.measure(measure_id)
    assert measure.carries_status
    d = detection(national.indicators, measure, truth(audit)["measures"][measure_id]["outliers"])
    print(f"\n{line(measure_id, d)}  [{measure.headline}, over-dispersion {measure.overdispersion}]")
    found, alarms, false_alarms = EXPECTED[measure_id]
    assert d["flagged"] >= found
    assert d["flagged_alarm"] >= alarms
    assert d["false_alarms"] <= false_alarms


def test_unadjusted_outcome_carries_no_status(audit, validated, national):
    """Stays over 14 days is an unadjusted outcome: context only, so even its injected providers (the longer
    stays) are not flagged; their crude rates are nevertheless the highest."""
    config, _ = validated
    measure = config.measure("long_stay")
    assert not measure.carries_status
    injected = truth(audit)["measures"]["long_stay"]["outliers"]
    rows = national.indicators[(national.indicators["measure"] == "long_stay")
                               & (national.indicators["level"] == "provider")].set_index("unit_id")
    assert (rows["flag"] == "").all()
    rate = rows.loc[rows["statistic"] == "rate", "value"]
    national_rate = national.indicators.query("measure == 'long_stay' and level == 'national'")["value"].iat[0]
    assert (rate[list(injected)] > national_rate).all()
    print(f"\n{'long_stay':>18}: no status (unadjusted outcome); injected crude rates "
          f"{', '.join(f'{rate[c]:.1%}' for c in sorted(injected))} against {national_rate:.1%} nationally")


@pytest.mark.parametrize("measure_id", ["mortality", "los"])
@pytest.mark.parametrize("method", ["none", "multiplicative", "additive", "shmi"])
def test_detection_by_overdispersion_method(audit, validated, measure_id, method):
    config, data = validated
    measure = dataclasses.replace(config.measure(measure_id), overdispersion=method)
    result = run_national(only(config, measure), data)
    d = detection(result.indicators, measure, truth(audit)["measures"][measure_id]["outliers"])
    [meta] = [m for m in result.metadata["measures"] if m["id"] == measure_id]
    od = meta["overdispersion"]["provider"]
    print(f"\n{line(f'{measure_id} {method}', d)}; phi={od['phi']:.3f} tau2={od['tau2']:.4g} "
          f"trimmed={od['n_trimmed']}")
    assert od["method"] == method
    # Every method finds the clear (alarm-level) injected outliers; with an allowance for over-dispersion,
    # false alarms stay rare (without one, length of stay flags many: stays vary far more than counts).
    assert d["flagged"] >= (4 if measure_id == "mortality" else 3)
    assert d["flagged_alarm"] >= 2
    if measure_id == "mortality" or method != "none":
        assert d["false_alarms"] <= (2 if measure_id == "mortality" else 12)
