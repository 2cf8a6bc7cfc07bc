"""Named consultants, providers' statements and validation dates (issue #15): each file checked like the providers
file (file, column, rule, rows, examples; nothing written), and what the bundle and the provider reports make of
them: a consultant who operates at two providers is listed, by name, at both."""

from __future__ import annotations

import html as html_lib
import json
import re

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from auditreport.analysis.national import run_national
from auditreport.bundle import write_bundle
from auditreport.cli import main
from auditreport.config import load_config
from auditreport.data.synthetic import STATEMENTS, SyntheticSpec, consultants_table, generate
from auditreport.data.validation import (
    REGISTRATION_RULE,
    UNLISTED_CONSULTANT_RULE,
    load_validated,
)
from auditreport.errors import ConfigError, DataValidationError
from auditreport.pipeline import inputs_fingerprint
from auditreport.presentation.blocks import Chart
from auditreport.presentation.context import load_context
from auditreport.presentation.display import outputs
from auditreport.presentation.measure_sections import consultant_section
from auditreport.presentation.provider_sections import at_a_glance, provider_notes

from conftest import make_audit

SPEC = SyntheticSpec(records=400, providers=4, consultants=8, outliers_high=0, outliers_low=0, seed=11)


@pytest.fixture()
def audit(tmp_path):
    return make_audit(tmp_path, SPEC, fmt="csv")


def _edit(audit, key: str, change) -> str:
    """Rewrite the definition's ``data.<key>`` file through ``change`` (a function of its frame); its path."""
    path = load_config(audit).data_files()[key]
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(frame).to_csv(path, index=False)
    return str(path)


def _failures(audit, source: str) -> dict[tuple[str, str], dict]:
    with pytest.raises(DataValidationError) as err:
        load_validated(load_config(audit))
    assert err.value.source == source, str(err.value)
    assert f"{source}: {len(err.value.failures)} validation rule(s) failed; nothing was written." in str(err.value)
    return {(f["column"], f["rule"]): f for f in err.value.failures}


def test_the_synthetic_files_validate_and_are_normalised(audit):
    data = load_validated(load_config(audit))
    consultants = pd.read_csv(load_config(audit).consultants_file, dtype=str)
    pd.testing.assert_frame_equal(data.consultants, consultants)
    assert data.consultants["registration_number"].str.fullmatch(r"\d{7}").all()
    # One consultant (one per hundred, at least one) operates at two providers: a row at each, the same person.
    twice = data.consultants[data.consultants["consultant_code"].duplicated(keep=False)]
    assert len(twice) == 2 and twice["provider_code"].nunique() == 2
    assert twice[["consultant_name", "registration_number", "specialty"]].nunique().max() == 1
    # Three of the four providers validated their data (not all); each statement is one of the invented ones.
    assert len(data.validation) == 3 and data.validation["validated_on"].str.fullmatch(r"2026-0[56]-\d\d").all()
    assert 3 <= len(data.statements) <= 4 and set(data.statements["statement"]) <= set(STATEMENTS)


def test_missing_columns_are_named_with_the_columns_needed(audit):
    path = _edit(audit, "consultants", lambda f: f.drop(columns=["registration_number", "specialty"]))
    failures = _failures(audit, path)
    assert set(failures) == {("registration_number", "column present"), ("specialty", "column present")}
    assert ("needs columns consultant_code, consultant_name, registration_number, provider_code, specialty"
            in failures[("specialty", "column present")]["examples"])


def test_bad_and_missing_codes_names_and_registration_numbers(audit):
    def change(f):
        f.loc[0, "consultant_code"] = ""
        f.loc[1, "consultant_name"] = " "
        f.loc[2, "registration_number"] = "123456"      # six digits
        f.loc[3, "registration_number"] = "GMC1234567"  # not only digits
        f.loc[4, "provider_code"] = ""
        return f
    path = _edit(audit, "consultants", change)
    failures = _failures(audit, path)
    assert failures[("consultant_code", "value required (not empty)")]["rows"] == [1]
    assert failures[("consultant_name", "value required (not empty)")]["rows"] == [2]
    assert failures[("registration_number", REGISTRATION_RULE)]["rows"] == [3, 4]
    assert failures[("registration_number", REGISTRATION_RULE)]["examples"] == "'123456', 'GMC1234567'"
    assert failures[("provider_code", "value required (not empty)")]["rows"] == [5]


def test_parquet_registration_numbers_stored_as_integers_are_read_as_text(audit, tmp_path):
    """Parquet: registration numbers in an integer column are the 7-digit text; one with a fraction is refused."""
    config = load_config(audit)
    frame = pd.read_csv(config.consultants_file, dtype=str)
    expected = frame["registration_number"].tolist()
    parquet = tmp_path / "consultants.parquet"
    frame.assign(registration_number=frame["registration_number"].astype("int64")).to_parquet(parquet, index=False)
    definition = yaml.safe_load(audit.read_text())
    definition["data"]["consultants"] = str(parquet)
    audit.write_text(yaml.safe_dump(definition))
    assert load_validated(load_config(audit)).consultants["registration_number"].tolist() == expected
    numbers = frame["registration_number"].astype(float)
    numbers[2] += 0.5
    frame.assign(registration_number=numbers).to_parquet(parquet, index=False)
    failures = _failures(audit, str(parquet))
    assert list(failures) == [("registration_number", REGISTRATION_RULE)]
    assert failures[("registration_number", REGISTRATION_RULE)]["rows"] == [3]


def test_a_provider_not_in_the_providers_file_is_refused(audit):
    path = _edit(audit, "consultants", lambda f: f.assign(provider_code=f["provider_code"].where(f.index != 1, "ZZZ9")))
    failures = _failures(audit, path)
    assert failures[("provider_code", "provider known (listed in the providers file)")]["rows"] == [2]
    assert failures[("provider_code", "provider known (listed in the providers file)")]["examples"] == "'ZZZ9'"


def test_a_consultant_is_one_person_at_every_provider(audit):
    """Name, registration number and specialty describe the person: they must agree between a consultant's rows;
    and one registration number belongs to one consultant."""
    config = load_config(audit)
    frame = pd.read_csv(config.consultants_file, dtype=str)
    twice = frame.index[frame["consultant_code"].duplicated(keep=False)].tolist()
    code = frame.loc[twice[0], "consultant_code"]

    def change(f):
        f.loc[twice[1], "consultant_name"] = "Someone Else"
        f.loc[twice[1], "specialty"] = "Vascular surgery" if f.loc[twice[0], "specialty"] != "Vascular surgery" \
            else "General surgery"
        other = f.index[~f.index.isin(twice)][0]
        f.loc[other, "registration_number"] = f.loc[twice[0], "registration_number"]
        return f, other
    edited, other = change(frame)
    edited.to_csv(config.consultants_file, index=False)
    failures = _failures(audit, str(config.consultants_file))
    name = failures[("consultant_name", "the same consultant name on every row of a consultant (it describes the "
                                        "person, at every provider)")]
    assert name["rows"] == [i + 1 for i in twice] and name["examples"].startswith(f"{code}: ")
    assert "'Someone Else'" in name["examples"]
    assert [i + 1 for i in twice] == failures[("specialty", "the same specialty on every row of a consultant (it "
                                                            "describes the person, at every provider)")]["rows"]
    shared = failures[("registration_number", "one consultant per registration number")]
    assert shared["rows"] == sorted([i + 1 for i in twice] + [other + 1])


def test_duplicate_rows_are_refused(audit):
    path = _edit(audit, "consultants", lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True))
    failures = _failures(audit, path)
    duplicate = failures[("consultant_code", "one row per consultant and provider (no duplicates)")]
    n = len(pd.read_csv(path))
    assert duplicate["rows"] == [1, n] and duplicate["count"] == 2


def test_every_consultant_of_the_extract_must_be_in_the_file(audit, tmp_path):
    """The extract's records of consultants the file leaves out are listed (rows of the extract), with the remedy;
    `validate` and `run` stop with exit code 3 and write nothing."""
    config = load_config(audit)
    listed = pd.read_csv(config.consultants_file, dtype=str)
    gone = sorted(listed["consultant_code"].unique())[:2]
    listed[~listed["consultant_code"].isin(gone)].to_csv(config.consultants_file, index=False)
    records = pd.read_csv(config.source, dtype=str)
    rows = [i + 1 for i in records.index[records["consultant_code"].isin(gone)]]
    failures = _failures(audit, str(config.source))
    unlisted = failures[("consultant_code", UNLISTED_CONSULTANT_RULE)]
    assert unlisted["rows"] == rows and unlisted["count"] == len(rows) > 0
    assert unlisted["examples"] == (f"2 consultant code(s) not in {config.consultants_file}: {gone[0]!r}, "
                                    f"{gone[1]!r}; add a row for each (consultant_code, consultant_name, "
                                    "registration_number, provider_code, specialty) to that file, or correct the "
                                    "code in the extract")
    result = CliRunner().invoke(main, ["validate", str(audit)])
    assert result.exit_code == 3 and f"rule '{UNLISTED_CONSULTANT_RULE}': {len(rows)} row(s)" in result.output
    reports = tmp_path / "reports"
    assert CliRunner().invoke(main, ["run", str(audit), "--reports", str(reports)]).exit_code == 3
    assert not reports.exists()


def test_records_at_a_provider_the_file_does_not_list_are_a_warning(audit):
    config = load_config(audit)
    listed = pd.read_csv(config.consultants_file, dtype=str)
    twice = listed[listed["consultant_code"].duplicated(keep=False)]
    listed.drop(index=twice.index[1]).to_csv(config.consultants_file, index=False)
    data = load_validated(config)
    code, provider = twice.iloc[1][["consultant_code", "provider_code"]]
    assert (f"{config.consultants_file}: 1 consultant(s) with records at a provider the file does not list them at "
            f"(add a row for each): {code} at {provider}") in data.warnings


def test_statement_rules(audit):
    def change(f):
        f.loc[0, "provider_code"] = "ZZZ9"
        f.loc[1, "statement"] = ""
        return pd.concat([f, f.iloc[[2]]], ignore_index=True)
    path = _edit(audit, "statements", change)
    failures = _failures(audit, path)
    assert failures[("provider_code", "provider known (listed in the providers file)")]["rows"] == [1]
    assert failures[("statement", "value required (not empty)")]["rows"] == [2]
    assert failures[("statement", "value required (not empty)")]["examples"].endswith(
        "(leave out the row of a provider without a statement)")
    n = len(pd.read_csv(path))
    assert failures[("provider_code", "one row per provider (no duplicates)")]["rows"] == [3, n]


def test_validation_date_rules(audit):
    def change(f):
        f.loc[0, "validated_on"] = "31/05/2026"
        f.loc[1, "validated_on"] = "2099-01-01"
        f.loc[2, "provider_code"] = "ZZZ9"
        return pd.concat([f, f.iloc[[0]].assign(validated_on="")], ignore_index=True)
    path = _edit(audit, "validation", change)
    failures = _failures(audit, path)
    assert failures[("validated_on", "type: date (YYYY-MM-DD)")]["rows"] == [1]
    assert failures[("validated_on", "type: date (YYYY-MM-DD)")]["examples"] == "'31/05/2026'"
    future = next(f for (column, rule), f in failures.items() if rule.startswith("date not in the future"))
    assert future["rows"] == [2] and future["examples"] == "'2099-01-01'"
    assert failures[("validated_on", "value required (not empty)")]["rows"] == [4]
    assert "has not signed off its data: it is shown as not validated" in failures[
        ("validated_on", "value required (not empty)")]["examples"]
    assert failures[("provider_code", "provider known (listed in the providers file)")]["rows"] == [3]
    assert failures[("provider_code", "one row per provider (no duplicates)")]["rows"] == [1, 4]


def test_statements_file_missing_column(audit):
    path = _edit(audit, "statements", lambda f: f.rename(columns={"statement": "text"}))
    failures = _failures(audit, path)
    assert list(failures) == [("statement", "column present")]
    assert "(file has: provider_code, text)" in failures[("statement", "column present")]["examples"]


def test_a_consultants_file_needs_the_consultant_code_column(audit):
    definition = yaml.safe_load(audit.read_text())
    definition["columns"].pop("consultant_code")
    audit.write_text(yaml.safe_dump(definition))
    with pytest.raises(ConfigError) as err:
        load_config(audit)
    assert f"{audit}: key 'data.consultants': names the consultants" in str(err.value)
    assert "map columns.consultant_code too" in str(err.value)


@pytest.mark.parametrize("key", ["consultants", "statements", "validation"])
def test_a_changed_file_reruns_the_national_stage(audit, key):
    """The inputs fingerprint (what decides whether the bundle is up to date) covers each optional file."""
    config = load_config(audit)
    before = inputs_fingerprint(config)
    _edit(audit, key, lambda f: f.iloc[::-1])
    assert inputs_fingerprint(config) != before
    assert set(config.data_files()) == {"source", "providers", "consultants", "statements", "validation"}


def test_the_synthetic_files_are_deterministic():
    spec = SyntheticSpec(records=2000, providers=10, consultants=120, seed=3)
    records, _, truth = generate(spec)
    again, _, truth_again = generate(spec)
    pd.testing.assert_frame_equal(consultants_table(spec, records), consultants_table(spec, again))
    assert truth["shared_consultants"] == truth_again["shared_consultants"] and len(truth["shared_consultants"]) == 1
    (code, (main_provider, second)), = truth["shared_consultants"].items()
    at = records[records["consultant_code"] == code]["provider_code"].value_counts()
    assert at.index[0] == main_provider and 12 <= at[second] <= 30


# --- the bundle and the reports --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("consultants_bundle")
    audit = make_audit(folder, SyntheticSpec(records=3000, providers=6, consultants=18, outliers_high=1,
                                             outliers_low=0, seed=7))
    write_bundle(folder / "out", run_national(load_config(audit)))
    return folder


def test_a_consultant_at_two_providers_is_listed_at_both_with_their_records_at_each(bundle_dir):
    shared = json.loads((bundle_dir / "data" / "truth.json").read_text())["shared_consultants"]
    (code, providers), = shared.items()
    bundle = load_context(bundle_dir / "out", "local").bundle
    records = pd.read_parquet(bundle_dir / "data" / "records.parquet")
    listed = pd.read_csv(bundle_dir / "data" / "consultants.csv", dtype=str)
    person = listed[listed["consultant_code"] == code].iloc[0]
    rows = bundle.consultants[bundle.consultants["consultant_code"] == code].set_index("provider_code")
    assert sorted(rows.index) == sorted(providers)
    # Every record of the synthetic audit is analysed in at least one measure, so records are the extract's.
    mine = records[records["consultant_code"] == code]["provider_code"].value_counts()
    assert rows["records"].to_dict() == mine.to_dict() and rows.loc[providers[1], "records"] >= 12
    assert set(rows["consultant_name"]) == {person["consultant_name"]}
    assert set(rows["registration_number"]) == {person["registration_number"]}
    # Every pair of the consultants file is in the table, and its records add up to the coded records.
    assert len(bundle.consultants) == len(listed)
    assert bundle.consultants["records"].sum() == records["consultant_code"].notna().sum()
    assert bundle.consultants_at(providers[1]).count(code) == 1
    # The consultant's indicator rows carry their name; their provider (parent) is the main one.
    ind = bundle.indicators
    theirs = ind[(ind["level"] == "consultant") & (ind["unit_id"] == code)]
    assert set(theirs["unit_name"]) == {person["consultant_name"]} and set(theirs["parent_id"]) == {providers[0]}


def test_provider_notes_hold_every_provider_statement_and_validation_date(bundle_dir):
    bundle = load_context(bundle_dir / "out", "local").bundle
    notes = bundle.provider_notes.set_index("provider_code")
    statements = pd.read_csv(bundle_dir / "data" / "statements.csv", dtype=str).set_index("provider_code")
    validation = pd.read_csv(bundle_dir / "data" / "validation.csv", dtype=str).set_index("provider_code")
    providers = pd.read_csv(bundle_dir / "data" / "providers.csv", dtype=str)
    assert sorted(notes.index) == sorted(providers["provider_code"])
    for code, row in notes.iterrows():
        assert row["statement"] == (statements.loc[code, "statement"] if code in statements.index else "")
        assert row["validated_on"] == (validation.loc[code, "validated_on"] if code in validation.index else "")
    assert (notes["validated_on"] == "").sum() == 1 and (notes["statement"] != "").sum() == 4
    assert set(bundle.metadata["data"]) == {"source", "providers", "consultants", "statements", "validation"}


@pytest.mark.parametrize("audience", ["local", "public"])
def test_both_providers_reports_list_the_consultant_by_name(bundle_dir, audience):
    (code, providers), = json.loads((bundle_dir / "data" / "truth.json").read_text())["shared_consultants"].items()
    listed = pd.read_csv(bundle_dir / "data" / "consultants.csv", dtype=str)
    name = listed.loc[listed["consultant_code"] == code, "consultant_name"].iat[0]
    for provider in providers:
        ctx = load_context(bundle_dir / "out", audience, provider)
        assert code in ctx.consultants_at()
        html = "".join(str(p) for p in outputs(consultant_section(ctx, "mortality")) if not isinstance(p, Chart))
        assert f"<td>{name}</td>" in html or f">{name}<" in html, (provider, html[:500])
        assert "(identified by code)" not in html
        here = listed.loc[listed["provider_code"] == provider, "consultant_name"]
        assert all(f">{other}<" in html for other in here), provider
        # The caption says why a consultant of another provider is here, in the second provider's report only.
        elsewhere = "a consultant who also operates at another provider is shown with all their procedures"
        assert (elsewhere in html) == (provider == providers[1]), provider


@pytest.mark.parametrize("audience", ["local", "public"])
def test_at_a_glance_shows_the_statement_and_whether_the_data_were_validated(bundle_dir, audience):
    """Beside the provider's results, in both reports: its statement as written, and "validated on <date>" or
    "not validated"."""
    statements = pd.read_csv(bundle_dir / "data" / "statements.csv", dtype=str).set_index("provider_code")
    validation = pd.read_csv(bundle_dir / "data" / "validation.csv", dtype=str).set_index("provider_code")
    providers = sorted(pd.read_csv(bundle_dir / "data" / "providers.csv", dtype=str)["provider_code"])
    seen = {"statement": 0, "validated": 0, "not validated": 0}
    for provider in providers:
        ctx = load_context(bundle_dir / "out", audience, provider)
        text = " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", "".join(
            str(p) for p in outputs(at_a_glance(ctx)) if not isinstance(p, Chart)))).split())
        if provider in validation.index:
            day = pd.Timestamp(validation.loc[provider, "validated_on"])
            assert f"Data validated by the provider on {day.day} {day:%B %Y}." in text, provider
            seen["validated"] += 1
        else:
            assert "Data not validated by the provider: it did not sign off its data for the audit." in text
            seen["not validated"] += 1
        if provider in statements.index:
            assert f"Statement from the provider: {statements.loc[provider, 'statement']}" in text, provider
            seen["statement"] += 1
        else:
            assert "Statement from" not in text
    assert seen == {"statement": 4, "validated": 5, "not validated": 1}


def test_without_a_validation_file_no_provider_is_said_to_be_unvalidated(bundle_dir):
    notes = pd.read_csv(bundle_dir / "data" / "validation.csv", dtype=str)
    unvalidated = sorted(set(pd.read_csv(bundle_dir / "data" / "providers.csv", dtype=str)["provider_code"])
                         - set(notes["provider_code"]))
    ctx = load_context(bundle_dir / "out", "public", unvalidated[0])
    assert [str(p.parts[0]) for p in provider_notes(ctx)][0].startswith("Data not validated")
    ctx.bundle.metadata = {**ctx.meta, "data": {k: v for k, v in ctx.meta["data"].items() if k != "validation"}}
    assert ctx.provider_note()["validated"] is False
    assert not any("validated" in str(p) for p in provider_notes(ctx))
