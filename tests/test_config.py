"""Audit definitions: a valid one loads; each kind of mistake names the file and key."""

from __future__ import annotations

import pytest
import yaml

from auditreport.config import load_config
from auditreport.errors import ConfigError

from conftest import SYNTHETIC_PARAMS


def test_synthetic_definition_loads():
    config = load_config(SYNTHETIC_PARAMS)
    assert config.id == "synthetic-surgery"
    assert config.outcome_days == 30
    assert config.horizons == (30, 365)
    assert [f.name for f in config.risk_factors][:3] == ["age", "sex", "asa"]
    assert config.risk_factors[2].categories == ("1", "2", "3", "4", "5")
    assert config.risk_factors[1].reference == "F"  # the first category unless one is named
    assert config.risk_factor_columns["age"].minimum == 16 and config.risk_factor_columns["bmi"].maximum == 90
    assert config.suppression_threshold == 7 and config.publish_consultants is True
    assert len(config.fingerprint()) == 64


def _write(tmp_path, mutate):
    definition = yaml.safe_load(SYNTHETIC_PARAMS.read_text())
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
    from auditreport.analysis.national import risk_factors_for_model
    from auditreport.stats.riskmodel import RiskFactor

    path = _write(tmp_path, lambda d: d["risk_model"].update(covariates=["asa", "age"]))
    config = load_config(path)
    assert all(isinstance(f, RiskFactor) for f in config.risk_factors)
    model_factors = risk_factors_for_model(config)
    assert [f.name for f in model_factors] == ["asa", "age"]
    assert model_factors[0] is config.risk_factors[2] and model_factors[1] is config.risk_factors[0]
    # A numeric factor's reference is its fill value for missing = reference (RiskFactor's rule).
    filled = load_config(_write(tmp_path, lambda d: d["risk_factors"][0].update(reference=65, missing="reference")))
    assert filled.risk_factors[0].reference == "65" and filled.risk_factor_columns["age"].column == "age"
