"""The results bundle as a contract: declared tables checked on write, format version checked on load."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from auditreport.analysis.national import NationalResults, run_national
from auditreport.bundle import (
    BUNDLE_DIR,
    FORMAT_VERSION,
    TABLES,
    BundleFormatError,
    BundleSchemaError,
    load_bundle,
    write_bundle,
)
from auditreport.bundle.schema import table_problems
from auditreport.config import load_config
from auditreport.pipeline import national_stage


@pytest.fixture(scope="module")
def results(small_audit) -> NationalResults:
    return run_national(load_config(small_audit))


def test_every_declared_table_is_written_and_read_back_unchanged(results, tmp_path):
    assert set(results.tables()) == set(TABLES)
    path = write_bundle(tmp_path, results)
    assert path == tmp_path / BUNDLE_DIR
    assert sorted(p.name for p in path.iterdir()) == sorted([f"{n}.parquet" for n in TABLES]
                                                            + ["metadata.json", "model.json"])
    bundle = load_bundle(tmp_path)  # the period folder or the bundle folder itself
    assert bundle.metadata["format_version"] == FORMAT_VERSION
    assert {k: v for k, v in bundle.metadata.items() if k != "format_version"} == json.loads(
        json.dumps(results.metadata, default=str))
    assert bundle.model == json.loads(json.dumps(results.model, default=str))
    for name, table in results.tables().items():
        pd.testing.assert_frame_equal(getattr(bundle, name), table.reset_index(drop=True), check_exact=True)
    code = results.risk["provider_code"].iat[0]
    risk, mon = results.risk, results.monitoring
    pd.testing.assert_frame_equal(bundle.provider_risk(code, "mortality"),
                                  risk[(risk["provider_code"] == code) & (risk["measure"] == "mortality")]
                                  .reset_index(drop=True))
    pd.testing.assert_frame_equal(bundle.provider_monitoring(code, "mortality"),
                                  mon[(mon["provider_code"] == code) & (mon["measure"] == "mortality")]
                                  .reset_index(drop=True))
    assert bundle.provider_risk(code, "survival").empty  # no predicted risks: a survival measure
    excluded = results.exclusions
    pd.testing.assert_frame_equal(bundle.measure_exclusions("mortality"),
                                  excluded[excluded["measure"] == "mortality"].reset_index(drop=True))
    assert bundle.monitoring_signals("survival").empty


@pytest.mark.parametrize(("found", "word"), [(FORMAT_VERSION - 1, "older"), (FORMAT_VERSION + 1, "newer"),
                                             (None, "older (written before bundles were versioned)")])
def test_bundle_of_another_format_version_is_refused(results, tmp_path, found, word):
    path = write_bundle(tmp_path, results)
    meta = json.loads((path / "metadata.json").read_text())
    if found is None:
        del meta["format_version"]
    else:
        meta["format_version"] = found
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleFormatError) as caught:
        load_bundle(path)
    message = str(caught.value)
    assert str(path) in message and f"is {word} than the format this auditreport reads ({FORMAT_VERSION})" in message
    assert "rerun the national stage" in message


def test_folder_without_a_bundle_is_refused(tmp_path):
    with pytest.raises(BundleFormatError, match="not a results bundle .*run the national stage first"):
        load_bundle(tmp_path)


def test_pipeline_rebuilds_a_bundle_of_another_format_instead_of_skipping(small_audit, tmp_path):
    config = load_config(small_audit)
    assert national_stage(config, tmp_path)[0] is False
    assert national_stage(config, tmp_path)[0] is True  # same inputs, same format: up to date
    meta_path = tmp_path / BUNDLE_DIR / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = FORMAT_VERSION - 1
    meta_path.write_text(json.dumps(meta))
    assert national_stage(config, tmp_path)[0] is False
    assert load_bundle(tmp_path).metadata["format_version"] == FORMAT_VERSION


def _refused(results: NationalResults, tmp_path, expected: list[str]) -> None:
    with pytest.raises(BundleSchemaError) as caught:
        write_bundle(tmp_path, results)
    for line in expected:
        assert line in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary folder left


def test_table_that_breaks_the_schema_is_refused_before_anything_is_written(results, tmp_path):
    km = results.km.drop(columns=["at_risk"]).assign(extra=1.0)
    quality = results.quality.assign(**{"records_submitted": results.quality["records_submitted"].astype(float)})
    indicators = results.indicators.assign(unit_id=range(len(results.indicators)))  # codes must be text
    _refused(replace(results, km=km, quality=quality, indicators=indicators), tmp_path, [
        "table 'km': column 'at_risk' missing",
        "table 'km': column 'extra' not declared",
        "table 'quality': column 'records_submitted' should be int, is float64",
        "table 'indicators': column 'unit_id' should be text, is int64",
        "raise FORMAT_VERSION"])


def test_per_audit_columns_need_a_declared_prefix(results, tmp_path):
    quality = results.quality.assign(**{"complete: frailty": 1.0, "frailty score": 2.0})
    _refused(replace(results, quality=quality), tmp_path, ["table 'quality': column 'frailty score' not declared"])
    assert table_problems("quality", results.quality.assign(**{"complete: frailty": 1.0})) == []


def test_measures_that_disagree_are_refused(results, tmp_path):
    """Tables, metadata and models must name the same measures: a table row of an undeclared measure, a model of
    one, a missing wording are each refused before anything is written."""
    metadata = {**results.metadata, "measures": [m for m in results.metadata["measures"] if m["id"] != "survival"]}
    del metadata["wording"]
    _refused(replace(results, metadata=metadata), tmp_path, [
        "table 'km': measure 'survival' is not in metadata 'measures'",
        "table 'indicators': measure 'survival' is not in metadata 'measures'",
        "model.json: measure 'survival' is not in metadata 'measures'",
        "metadata 'wording' missing"])
    twice = {**results.metadata, "measures": results.metadata["measures"] * 2}
    _refused(replace(results, metadata=twice), tmp_path, ["metadata 'measures': an id is given twice"])


def test_text_column_with_a_number_among_its_codes_is_refused(results):
    risk = results.risk.astype({"provider_code": object})
    risk.loc[0, "provider_code"] = 30001  # a code read as a number loses its leading zeros
    assert table_problems("risk", risk) == [
        "column 'provider_code' should be text, is object (1 value(s) not text: row 0: 30001)"]


def test_empty_table_is_checked_for_its_columns_only():
    columns = list(TABLES["monitoring"].columns)
    assert table_problems("monitoring", pd.DataFrame(columns=columns)) == []
    assert table_problems("monitoring", pd.DataFrame(columns=columns[1:])) == ["column 'measure' missing"]
