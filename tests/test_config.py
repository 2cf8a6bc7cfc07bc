"""Audit definitions: a valid one loads; each kind of mistake names the file and key."""

from __future__ import annotations

import pytest
import yaml

from auditreport.config import load_config
from auditreport.errors import ConfigError

from conftest import ADMISSIONS, REPO

#: The older single-outcome form (outcome:, risk_model:, survival:): still read, as two measures.
LEGACY = REPO / "tests" / "definitions" / "legacy_outcome.yaml"


def test_legacy_definition_loads_as_measures():
    config = load_config(LEGACY)
    assert config.id == "synthetic-surgery"
    mortality, survival = config.measures
    assert (mortality.id, mortality.kind, mortality.death_within_days) == ("mortality", "proportion", 30)
    assert mortality.adjusted and mortality.monitoring and mortality.carries_status
    assert mortality.headline == "adjusted_rate" and mortality.levels == ("provider", "consultant")
    assert (survival.kind, survival.horizons, survival.headline) == ("survival", (30, 365), "cox_oe_ratio")
    assert survival.risk_model.covariates == mortality.risk_model.covariates
    assert [f.name for f in config.risk_factors][:3] == ["age", "sex", "asa"]
    assert config.risk_factors[2].categories == ("1", "2", "3", "4", "5")
    assert config.risk_factors[1].reference == "F"  # the first category unless one is named
    assert config.risk_factor_columns["age"].minimum == 16 and config.risk_factor_columns["bmi"].maximum == 90
    assert config.suppression_threshold == 7 and config.publish_consultants is True
    assert len(config.fingerprint()) == 64


def _write(tmp_path, mutate):
    definition = yaml.safe_load(LEGACY.read_text())
    mutate(definition)
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(definition))
    return path


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d["audit"].update(colour="blue"), "audit.colour", "unknown key"),
    (lambda d: d.update(extras={}), "extras", "unknown section"),
    (lambda d: d["outcome"].update(death_within_days="thirty"), "outcome.death_within_days", "whole number"),
    (lambda d: d["publication"].update(suppression_threshold=True), "publication.suppression_threshold", "boolean"),
    (lambda d: d["audit"].pop("name"), "audit.name", "required"),
    (lambda d: d["columns"].pop("patient_id"), "columns.patient_id", "required"),
    (lambda d: d["risk_model"].update(covariates=["age", "height"]), "risk_model.covariates[1]", "height"),
    (lambda d: d["limits"].update(overdispersion="lots"), "limits.overdispersion", "must be one of"),
    (lambda d: d["risk_factors"][1].update(reference="X"), "risk_factors[1].reference", "not one of"),
    # Every rule of a risk factor is stats.riskmodel.RiskFactor's, reported at the YAML key.
    (lambda d: d["risk_factors"][0].update(type="binary"), "risk_factors[0].type", "must be one of"),
    (lambda d: d["risk_factors"][0].update(missing="guess"), "risk_factors[0].missing", "must be one of"),
    (lambda d: d["risk_factors"][1].update(categories=["F"]), "risk_factors[1].categories", "at least two"),
    (lambda d: d["risk_factors"][1].update(categories=["F", "M", "F"]), "risk_factors[1].categories",
     "duplicate"),
    (lambda d: d["risk_factors"][1].update(missing="median"), "risk_factors[1].missing", "numeric factors only"),
    (lambda d: d["risk_factors"][1].update(categories=["F", "Missing"], missing="missing_indicator"),
     "risk_factors[1].missing", "already a category"),
    (lambda d: d["risk_factors"][0].update(categories=[1, 2]), "risk_factors[0].categories", "no categories"),
    (lambda d: d["risk_factors"][0].update(reference="high"), "risk_factors[0].reference", "must be a number"),
    (lambda d: d["risk_factors"][2].update(range=[1, 5]), "risk_factors[2].range", "numeric factors only"),
    (lambda d: d["risk_factors"][2].pop("categories"), "risk_factors[2].categories", "required"),
    (lambda d: d["risk_factors"][2].update(name="sex"), "risk_factors[2].name", "declared twice"),
    (lambda d: d["survival"].update(horizons=[30, -1]), "survival.horizons[1]", "positive"),
    (lambda d: d["audit"]["period"].update(end="2023-01-01"), "audit.period.end", "before"),
    (lambda d: d["audit"].update(id="../escape"), "audit.id", "letters"),
])
def test_mistakes_name_file_and_key(tmp_path, mutate, key, words):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert f"'{key}'" in message
    assert words in message


def test_not_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("audit: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_risk_factors_are_the_models_own(tmp_path):
    """The model is given the configuration's factors as they are: one declaration, one validation."""
    from auditreport.stats.riskmodel import RiskFactor

    path = _write(tmp_path, lambda d: d["risk_model"].update(covariates=["asa", "age"]))
    config = load_config(path)
    assert all(isinstance(f, RiskFactor) for f in config.risk_factors)
    model_factors = config.factors_of(config.measure("mortality"))
    assert [f.name for f in model_factors] == ["asa", "age"]
    assert model_factors[0] is config.risk_factors[2] and model_factors[1] is config.risk_factors[0]
    # A numeric factor's reference is its fill value for missing = reference (RiskFactor's rule).
    filled = load_config(_write(tmp_path, lambda d: d["risk_factors"][0].update(reference=65, missing="reference")))
    assert filled.risk_factors[0].reference == "65" and filled.risk_factor_columns["age"].column == "age"


# Measures --------------------------------------------------------------------------------------------------

def _admissions(tmp_path, mutate=lambda d: None):
    import copy

    definition = copy.deepcopy(ADMISSIONS)
    mutate(definition)
    path = tmp_path / "admissions.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


def test_the_issues_example_is_expressible(tmp_path):
    config = load_config(_admissions(tmp_path))
    mortality, long_stay, los, review, wait = config.measures
    assert mortality.event == "died" and mortality.adjusted and not mortality.monitoring  # no dates to order by
    assert mortality.statistics == ("adjusted_rate", "oe_ratio", "rate") and mortality.levels == ("provider",)
    assert long_stay.event == "los > 14" and not long_stay.adjusted and not long_stay.carries_status
    assert (los.kind, los.risk_model.family, los.overdispersion, los.headline) == ("ratio", "poisson", "shmi", "oe_ratio")
    assert review.carries_status and review.target == 0.9 and review.target_kind == "standard"
    assert review.eligible == 'type == "emergency"' and review.direction == "higher_is_better"
    assert wait.statistics == ("mean", "median") and wait.published is False and wait.carries_status
    assert config.wording.national_unit_name == "Wales (all hospitals)"
    assert (config.wording.activity_singular, config.wording.providers) == ("admission", "hospitals")
    assert config.risk_factor_wording["age80"].levels == {"0": "under 80", "1": "80 or over"}
    assert config.risk_factor_wording["hmo"].label == "Hmo"


def _measure(i, **changes):
    def mutate(d):
        d["measures"][i].update(changes)
        for key, value in changes.items():
            if value is None:
                del d["measures"][i][key]
    return mutate


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d["measures"].append(dict(d["measures"][1])), "measures[5].id", "used twice"),
    (_measure(0, kind="rate"), "measures[0] (mortality).kind", "must be one of"),
    (_measure(0, id="30day"), "measures[0].id", "start with a letter"),
    (_measure(2, risk_model=None), "measures[2] (los).risk_model", "required for a ratio"),
    (_measure(2, risk_model={"family": "binomial"}), "measures[2] (los).risk_model.family", "poisson or gamma"),
    (_measure(0, target=0.1), "measures[0] (mortality).target", "unadjusted"),
    (_measure(3, target=90), "measures[3] (review).target", "between 0 and 1"),
    (_measure(0, death_within_days=30), "measures[0] (mortality).event", "either event"),
    (_measure(1, event="len(los) > 14"), "measures[1] (long_stay).event", "function call"),
    (_measure(1, event="los >"), "measures[1] (long_stay).event", "not a valid expression"),
    (_measure(1, event="los.max() > 14"), "measures[1] (long_stay).event", "function call"),
    (_measure(0, risk_model={"covariates": ["age80", "height"]}), "measures[0] (mortality).risk_model.covariates[1]",
     "height"),
    (_measure(0, monitoring=True), "measures[0] (mortality).monitoring", "dates"),
    (_measure(3, direction=None), "measures[3] (review).direction", "required"),
    (_measure(0, levels=["provider", "consultant"]), "measures[0] (mortality).levels[1]", "consultant_code"),
    (_measure(4, risk_model={"family": "poisson"}), "measures[4] (wait).risk_model", "not risk-adjusted"),
    (_measure(4, horizons=[30]), "measures[4] (wait).horizons", "not a key of a mean measure"),
    (lambda d: d["measures"].append({"id": "surv", "label": "Survival", "kind": "survival"}),
     "measures[5] (surv).kind", "follow-up"),
    (lambda d: d["measures"].append({"id": "d30", "label": "Deaths", "kind": "proportion", "death_within_days": 30}),
     "measures[5] (d30).death_within_days", "event: <column>"),
    (lambda d: d.update(measures=[]), "measures", "at least one"),
    (lambda d: d.pop("measures"), "measures", "required"),
    (lambda d: d.update(outcome={"death_within_days": 30}), "outcome", "older form"),
    (lambda d: d.update(notebooks={"provider": "mine.ipynb"}), "notebooks.provider", "not found"),
    (lambda d: d["wording"].update(provider=""), "wording.provider", "blank"),
    (lambda d: d["risk_factors"][0].update(labels={2: "two"}), "risk_factors[0].labels.2", "not one of"),
    (lambda d: d["risk_factors"][0].update(labels={0: False, 1: True}), "risk_factors[0].labels.0", "quote it"),
])
def test_measure_mistakes_name_file_measure_and_key(tmp_path, mutate, key, words):
    path = _admissions(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and words in message


def test_a_measure_without_risk_factors_loads(tmp_path):
    def bare(d):
        d.pop("risk_factors")
        d["measures"] = [m for m in d["measures"] if "risk_model" not in m]
    config = load_config(_admissions(tmp_path, bare))
    assert [m.id for m in config.measures] == ["long_stay", "review", "wait"]
    assert not any(m.adjusted for m in config.measures)


def test_own_notebooks_resolve_beside_the_definition(tmp_path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "provider.ipynb").write_text("{}")
    config = load_config(_admissions(tmp_path, lambda d: d.update(notebooks={"provider": "nb/provider.ipynb"})))
    assert config.provider_notebook == tmp_path / "nb" / "provider.ipynb" and config.national_notebook is None
