"""Fixtures for the bad-input corpus: a clean, small CSV audit that each case copies and breaks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from auditreport.data.synthetic import SyntheticSpec, write
from bad_inputs.bad_input_corpus import Audit

SYNTHETIC_PARAMS = Path(__file__).resolve().parents[2] / "params" / "synthetic.yaml"
CLEAN_SPEC = SyntheticSpec(records=400, providers=4, consultants=8, outliers_high=0, outliers_low=0, seed=11)


@pytest.fixture(scope="session")
def clean_template(tmp_path_factory) -> Path:
    """A clean 400-record CSV audit whose paths are relative, so copies of the folder stand alone."""
    folder = tmp_path_factory.mktemp("clean_audit")
    write(CLEAN_SPEC, folder / "data", "csv")
    d = yaml.safe_load(SYNTHETIC_PARAMS.read_text())
    d["data"].update(source="data/records.csv", providers="data/providers.csv")
    # Few records: fit on the factors every level of which has deaths in this sample.
    d["risk_model"]["covariates"] = ["age", "sex", "urgency"]
    Audit(folder).save_definition(d)
    return folder


@pytest.fixture()
def audit_copy(clean_template, tmp_path) -> Audit:
    folder = tmp_path / "audit"
    shutil.copytree(clean_template, folder)
    return Audit(folder)
