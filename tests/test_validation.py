"""Bad input stops the run with the file, column, rule and rows, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from auditreport.cli import main
from auditreport.config import load_config
from auditreport.data.examples import write_example
from auditreport.data.synthetic import SyntheticSpec
from auditreport.data.validation import BARE_NUMBER_ID_RULE, load_validated
from auditreport.errors import DataValidationError

from conftest import make_audit


@pytest.fixture()
def csv_audit(tmp_path):
    return make_audit(tmp_path, SyntheticSpec(records=400, providers=4, consultants=8, outliers_high=0,
                                              outliers_low=0, seed=11), fmt="csv")


def _edit(audit, change):
    config = load_config(audit)
    frame = pd.read_csv(config.source, dtype=str)
    frame = change(frame)
    frame.to_csv(config.source, index=False)
    return config


def _run(audit, tmp_path):
    reports = tmp_path / "reports"
    result = CliRunner().invoke(main, ["run", str(audit), "--reports", str(reports)])
    return result, reports


def test_clean_csv_validates(csv_audit):
    data = load_validated(load_config(csv_audit))
    assert len(data.patients) == 400
    assert any("asa" in w for w in data.warnings) or data.patients["asa"].notna().all()


def test_validate_says_why_records_are_excluded(tmp_path):
    """`validate` counts each measure's exclusions by reason: in the lung audit, patients censored before day
    180 are left out of the 180-day mortality measure, not out of survival."""
    paths = write_example("lung", tmp_path / "data")
    definition = yaml.safe_load((Path(__file__).resolve().parents[1] / "params" / "lung.yaml").read_text())
    definition["data"] = {"source": str(paths["records"]), "providers": str(paths["providers"])}
    audit = tmp_path / "lung.yaml"
    audit.write_text(yaml.safe_dump(definition, sort_keys=False))
    records = pd.read_csv(paths["records"])
    censored_early = int(((records["status"] == 0) & (records["time"] < 180)).sum())
    assert censored_early > 0
    result = CliRunner().invoke(main, ["validate", str(audit)])
    assert result.exit_code == 0, result.output
    assert "; 0 to be excluded." in result.output, result.output
    analysed = len(records) - censored_early
    assert (f"mortality_180 (proportion): {analysed:,} records analysed; left out: alive with under 180 days of "
            f"follow-up: {censored_early:,}" in result.output), result.output
    assert f"survival (survival): {len(records):,} records analysed\n" in result.output, result.output


def test_missing_column_is_named_and_nothing_written(csv_audit, tmp_path):
    config = _edit(csv_audit, lambda f: f.drop(columns=["death_date"]))
    result, reports = _run(csv_audit, tmp_path)
    assert result.exit_code == 3
    assert f"error: {config.source}: 1 validation rule(s) failed" in result.output, result.output
    assert "column 'death_date'" in result.output and "column present" in result.output
    assert not reports.exists()


def test_death_before_procedure_names_column_and_rows(csv_audit, tmp_path):
    def change(f):
        f.loc[[4, 9], "death_date"] = "2020-01-01"
        return f
    _edit(csv_audit, change)
    with pytest.raises(DataValidationError) as err:
        load_validated(load_config(csv_audit))
    message = str(err.value)
    assert "death_date" in message and "death not before procedure" in message
    assert "rows 5, 10" in message  # data rows counted from 1
    result, reports = _run(csv_audit, tmp_path)
    assert result.exit_code == 3 and not reports.exists()


def test_duplicates_types_and_categories_all_reported(csv_audit):
    def change(f):
        f.loc[3, "patient_id"] = f.loc[2, "patient_id"]
        f.loc[5, "age"] = "sixty"
        f.loc[6, "asa"] = "9"
        return f
    _edit(csv_audit, change)
    with pytest.raises(DataValidationError) as err:
        load_validated(load_config(csv_audit))
    failures = {(f["column"], f["rule"]): f for f in err.value.failures}
    assert failures[("patient_id", "unique (no duplicate patient records)")]["rows"] == [3, 4]
    assert failures[("age", "type: number")]["rows"] == [6]
    assert any(col == "asa" and "allowed value" in rule and f["rows"] == [7] for (col, rule), f in failures.items())


def test_row_numbers_as_patient_ids_are_refused_before_anything_is_built(csv_audit, tmp_path):
    """Identifiers 1..N would be found among every public report's figures by the disclosure check (exit 5,
    after every report was built): validation refuses them first, with the remedy."""
    def change(f):
        f["patient_id"] = [str(i + 1) for i in range(len(f))]
        f.loc[0, "patient_id"] = "P00001"   # prefixed: fine
        f.loc[1, "patient_id"] = "12345"    # five digits (like a 10-digit NHS number): not one of the figures
        return f
    _edit(csv_audit, change)
    with pytest.raises(DataValidationError) as err:
        load_validated(load_config(csv_audit))
    failures = {(f["column"], f["rule"]): f for f in err.value.failures}
    bare = failures[("patient_id", BARE_NUMBER_ID_RULE)]
    assert bare["count"] == 398 and bare["rows"][:2] == [3, 4] and "give identifiers a prefix" in bare["rule"]
    result, reports = _run(csv_audit, tmp_path)
    assert result.exit_code == 3 and "not a bare number of 1 to 4 digits" in result.output
    assert not reports.exists()


def test_unknown_provider(csv_audit):
    _edit(csv_audit, lambda f: f.assign(provider_code=f["provider_code"].where(f.index != 0, "ZZZ9")))
    with pytest.raises(DataValidationError, match="provider known"):
        load_validated(load_config(csv_audit))
