"""Fixtures for the bad-input corpus: a clean, small CSV audit that each case copies and breaks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
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
    Audit(folder).save_definition(small_definition())
    return folder


#: Few records: the death models fit on the factors every level of which has deaths in these samples.
SMALL_COVARIATES = ["age", "sex", "urgency"]

#: A measure the audit keeps to itself (``published: false``): in the confidential reports only.
INTERNAL_MEASURE = {"id": "long_stay_internal", "label": "Stays over ten days (internal review)",
                    "description": "Procedures followed by more than ten days in hospital, for the audit team only",
                    "kind": "proportion", "event": "los > 10", "direction": "lower_is_better", "levels": ["provider"],
                    "published": False}


def small_definition(internal: bool = False) -> dict:
    """The synthetic audit's definition for a small extract in ``data/`` (and, if asked, an internal measure)."""
    d = yaml.safe_load(SYNTHETIC_PARAMS.read_text())
    d["data"].update(source="data/records.csv", providers="data/providers.csv", consultants="data/consultants.csv",
                     statements="data/statements.csv", validation="data/validation.csv")
    for measure in d["measures"]:
        if measure["id"] in ("mortality", "survival"):
            measure["risk_model"]["covariates"] = list(SMALL_COVARIATES)
    if internal:
        d["measures"].append(dict(INTERNAL_MEASURE))
    return d


@pytest.fixture()
def audit_copy(clean_template, tmp_path) -> Audit:
    folder = tmp_path / "audit"
    shutil.copytree(clean_template, folder)
    return Audit(folder)


# --- a tiny audit whose providers and consultants have hostile names ------------------------------

#: provider code -> name; each tries to break out of HTML, a file name, a spreadsheet or a string literal.
HOSTILE_PROVIDERS = {
    "<script>alert(1)</script>": "<script>alert('name')</script> Trust & \"Partners\" <b>bold</b>",
    "../../escape\\'\"": "Ysbyty Athrofaol Cymru \u2013 Bwrdd Iechyd Prifysgol Caerdydd a'r Fro \u0174\u0175 \U0001F3E5 "
                          + "very long name " * 25,
    "=1+2/R\u0174\U0001F3E5": "=HYPERLINK(\"http://evil.example/\",\"click me\")",
}
HOSTILE_CONSULTANTS = ["<img src=x onerror=alert(2)>", "@SUM(1+1)", "-2+3", "+44 cmd|' /C calc'!A0",
                       "../c\u00e9", "C1234567"]
HOSTILE_SPEC = SyntheticSpec(records=450, providers=3, consultants=6, outliers_high=0, outliers_low=0, seed=5)


def make_hostile_audit(folder: Path) -> Path:
    """Write the hostile audit into ``folder`` (data/ and audit.yaml, with an internal measure); return the
    definition."""
    write(HOSTILE_SPEC, folder / "data", "csv")
    audit = Audit(folder)
    frame = audit.frame()
    providers = pd.read_csv(audit.providers, dtype=str)
    codes = dict(zip(sorted(providers["provider_code"]), HOSTILE_PROVIDERS, strict=True))
    frame["provider_code"] = frame["provider_code"].map(codes)
    frame["provider_name"] = frame["provider_code"].map(HOSTILE_PROVIDERS)
    real = sorted(frame["consultant_code"].unique())
    consultants = dict(zip(real, HOSTILE_CONSULTANTS + real[len(HOSTILE_CONSULTANTS):], strict=False))
    frame["consultant_code"] = frame["consultant_code"].map(consultants)
    # Complete risk factors: a national count of 1 to 7 imputed values is a small number the public data-quality
    # table shows (see test_public_quality_table_suppresses_small_national_counts), which is not this audit's point.
    for column in ("age", "sex", "asa", "urgency", "procedure_group", "diabetes", "bmi"):
        frame[column] = frame[column].replace("", frame.loc[frame[column] != "", column].iloc[0])
    audit.save_frame(frame)
    pd.DataFrame({"provider_code": list(HOSTILE_PROVIDERS), "provider_name": list(HOSTILE_PROVIDERS.values())}
                 ).to_csv(audit.providers, index=False)
    d = small_definition(internal=True)
    d["publication"]["publish_consultants"] = False
    for key in ("consultants", "statements", "validation"):  # hostile codes: not the synthetic files'
        d["data"].pop(key)
        (folder / "data" / f"{key}.csv").unlink()
    audit.save_definition(d)
    return audit.yaml


@pytest.fixture(scope="session")
def hostile_build(tmp_path_factory):
    """The hostile audit built end to end once (3 providers x 2 audiences + national)."""
    from auditreport.pipeline import build

    root = tmp_path_factory.mktemp("hostile")
    audit = make_hostile_audit(root / "audit")
    summary = build(audit, root / "reports", workers=2)
    assert not summary.failed, [(r.name, r.error) for r in summary.failed]
    return audit, summary
