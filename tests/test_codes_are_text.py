"""Provider and consultant codes are text end to end: extract, bundle, open data, file names, reports, site.

Codes that a number parser would damage (``030001`` -> 30001, ``1e5`` -> 100000.0, ``NA`` -> missing,
``007.0`` -> 7) go through the national stage from a CSV extract, a Parquet extract with a string code
column and a Parquet extract with an integer code column, and one provider's reports are built through
the pipeline.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pyarrow
import pyarrow.parquet
import pytest
import yaml

from auditreport.analysis.national import run_national
from auditreport.bundle import BUNDLE_DIR, load_bundle, write_bundle
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec, generate
from auditreport.data.validation import load_validated
from auditreport.errors import DataValidationError
from auditreport.pipeline import build, period_dir

from conftest import SYNTHETIC_PARAMS

PROVIDER_CODES = ["030001", "000002", "1e5", "NA", "007.0"]
#: Codes as an integer column holds them: no leading zeros to lose, but still text once read.
INTEGER_PROVIDER_CODES = [30001, 2, 100000, 44, 7]
SPEC = SyntheticSpec(records=1500, providers=5, consultants=10, outliers_high=0, outliers_low=0, seed=11)
#: The bundle's tables and their code columns.
CODE_COLUMNS = {"indicators": ["unit_id", "parent_id"], "indicators_public": ["unit_id", "parent_id"],
                "km": ["unit_id"], "casemix": ["unit_id"], "quality": ["unit_id"], "survival_tests": ["unit_id"],
                "risk": ["provider_code", "consultant_code"], "monitoring": ["provider_code"],
                "casemix_public": ["unit_id"], "quality_public": ["unit_id"], "exclusions_public": ["unit_id"]}


def _synthetic_with_codes(provider_codes: list) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The small synthetic audit with its provider codes replaced by ``provider_codes`` and its consultant
    codes by zero-padded digits (``0000``, ``0001``, ... ``0123`` ...); returns (records, providers,
    consultant codes)."""
    records, providers, _ = generate(SPEC)
    provider_map = dict(zip(providers["provider_code"], provider_codes, strict=True))
    old_consultants = sorted(records["consultant_code"].dropna().unique())
    consultant_codes = [f"{i * 41:04d}" for i in range(len(old_consultants))]  # 0000, 0041, 0082, 0123, ...
    assert "0123" in consultant_codes
    records["provider_code"] = records["provider_code"].map(provider_map)
    records["consultant_code"] = records["consultant_code"].map(dict(zip(old_consultants, consultant_codes, strict=True)))
    providers = providers[["provider_code", "provider_name"]].assign(
        provider_code=providers["provider_code"].map(provider_map))
    return records, providers, consultant_codes


def _definition(folder: Path, source: Path, providers: Path) -> Path:
    definition = yaml.safe_load(SYNTHETIC_PARAMS.read_text())
    definition["data"]["source"] = str(source)
    definition["data"]["providers"] = str(providers)
    for key in ("consultants", "statements", "validation"):  # this test's own codes: not the synthetic files'
        definition["data"].pop(key, None)
    # Published through the disclosure check of every count (small-numbers-everywhere, issue #15).
    definition["publication"]["policy"] = "small-numbers-everywhere"
    path = folder / "audit.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def csv_audit(tmp_path_factory) -> tuple[Path, list[str]]:
    """The extract and the providers file as CSV, codes written as they are (no quoting needed)."""
    folder = tmp_path_factory.mktemp("codes_csv")
    records, providers, consultants = _synthetic_with_codes(PROVIDER_CODES)
    records.to_csv(folder / "records.csv", index=False)
    providers.to_csv(folder / "providers.csv", index=False)
    text = (folder / "records.csv").read_text()
    assert ",030001," in text and ",NA," in text and ",1e5," in text and ",0123," in text
    return _definition(folder, folder / "records.csv", folder / "providers.csv"), consultants


def _parquet_audit(folder: Path, provider_codes: list, code_type: str,
                   one_missing: bool = False) -> tuple[Path, list[str]]:
    """The extract and the providers file as Parquet with a ``code_type`` provider code column. With
    ``one_missing``, one record has no provider code and the file is written as Arrow writers other than
    pandas write it (no pandas metadata), so an integer column reads back as floats."""
    records, providers, consultants = _synthetic_with_codes(provider_codes)
    records["provider_code"] = records["provider_code"].astype(code_type)
    if one_missing:
        records.loc[0, "provider_code"] = pd.NA
    table = pyarrow.Table.from_pandas(records, preserve_index=False)
    pyarrow.parquet.write_table(table.replace_schema_metadata(None) if one_missing else table,
                                folder / "records.parquet")
    providers.astype({"provider_code": code_type}).to_parquet(folder / "providers.parquet", index=False)
    written = pd.read_parquet(folder / "records.parquet")["provider_code"]
    assert written.dtype == ("float64" if one_missing else code_type)
    return _definition(folder, folder / "records.parquet", folder / "providers.parquet"), consultants


def _national_bundle(audit: Path, out: Path):
    config = load_config(audit)
    write_bundle(out, run_national(config, load_validated(config)))
    return load_bundle(out / BUNDLE_DIR)


def _assert_codes_are_text(bundle, provider_codes: list[str], consultant_codes: list[str]) -> None:
    """Every code column of every bundle table holds exactly the given codes, as str."""
    for name, columns in CODE_COLUMNS.items():
        table = getattr(bundle, name)
        for column in columns:
            values = table[column].dropna()
            not_text = values[~values.map(lambda v: isinstance(v, str))]
            assert not_text.empty, (name, column, not_text.head())
    indicators = bundle.indicators
    for level, expected in (("provider", provider_codes), ("consultant", consultant_codes)):
        assert set(indicators.loc[indicators["level"] == level, "unit_id"]) == set(expected), level
    assert set(indicators.loc[indicators["level"] == "consultant", "parent_id"]) <= set(provider_codes)
    for name in ("km", "quality", "survival_tests", "quality_public"):
        assert set(getattr(bundle, name)["unit_id"]) - {"national"} == set(provider_codes), name
    assert set(bundle.risk["provider_code"].dropna()) == set(provider_codes)  # a record may have no code
    assert set(bundle.risk["consultant_code"].dropna()) == set(consultant_codes)
    assert set(bundle.monitoring["provider_code"]) == set(provider_codes)


def test_parquet_string_codes_stay_text(tmp_path):
    audit, consultants = _parquet_audit(tmp_path, PROVIDER_CODES, "string")
    _assert_codes_are_text(_national_bundle(audit, tmp_path / "out"), PROVIDER_CODES, consultants)


def test_parquet_integer_codes_are_read_as_text(tmp_path):
    """An integer code column cannot have had leading zeros; its codes are accepted as their decimal text
    (``30001``, never ``30001.0``)."""
    expected = [str(code) for code in INTEGER_PROVIDER_CODES]
    audit, consultants = _parquet_audit(tmp_path, INTEGER_PROVIDER_CODES, "int64")
    _assert_codes_are_text(_national_bundle(audit, tmp_path / "out"), expected, consultants)


def test_parquet_integer_codes_with_a_missing_one_are_not_decimals(tmp_path):
    """An integer column with a missing value, written by Arrow (R, Spark, polars), reads back as floats;
    its codes are still ``30001``, never ``30001.0``, and the record without a code counts nationally."""
    expected = [str(code) for code in INTEGER_PROVIDER_CODES]
    audit, consultants = _parquet_audit(tmp_path, INTEGER_PROVIDER_CODES, "Int64", one_missing=True)
    bundle = _national_bundle(audit, tmp_path / "out")
    _assert_codes_are_text(bundle, expected, consultants)
    quality = bundle.quality.set_index("unit_id")
    assert quality.at["national", "no provider code"] == 1


def test_codes_with_a_fraction_are_refused(tmp_path):
    """A float code with a fraction cannot be told from a damaged code: validation names file, column and
    row and says to store codes as text."""
    records, providers, _ = _synthetic_with_codes(INTEGER_PROVIDER_CODES)
    records["provider_code"] = records["provider_code"].astype(float)
    records.loc[4, "provider_code"] = 30001.5
    records.to_parquet(tmp_path / "records.parquet", index=False)
    providers.to_csv(tmp_path / "providers.csv", index=False)
    config = load_config(_definition(tmp_path, tmp_path / "records.parquet", tmp_path / "providers.csv"))
    with pytest.raises(DataValidationError) as caught:
        load_validated(config)
    message = str(caught.value)
    assert "records.parquet" in message and "store codes as text" in message and "30001.5" in message
    assert [(f["column"], f["rows"]) for f in caught.value.failures] == [("provider_code", [5])]


@pytest.mark.slow
def test_csv_codes_survive_pipeline(csv_audit, tmp_path):
    audit, consultants = csv_audit
    config = load_config(audit)
    summary = build(audit, tmp_path / "reports", providers=["030001"], workers=1)
    assert not summary.failed, [(r.name, r.error) for r in summary.failed]
    out = period_dir(config, tmp_path / "reports")
    assert out == summary.period_dir
    _assert_codes_are_text(load_bundle(out / BUNDLE_DIR), PROVIDER_CODES, consultants)

    # Open data: read back as text, the codes are exactly as submitted ("NA" needs keep_default_na=False,
    # as any reader of a code column must use).
    for path in (out / "indicators.csv", out / "site" / "indicators.csv"):
        data = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert set(data.loc[data["level"] == "provider", "unit_id"]) == set(PROVIDER_CODES), path
        consultant_rows = data[data["level"] == "consultant"]
        published = set(consultant_rows["unit_id"])
        assert published and published <= set(consultants), path
        assert set(consultant_rows["parent_id"]) <= set(PROVIDER_CODES), path
    dictionary = pd.read_csv(out / "site" / "data_dictionary.csv", keep_default_na=False)
    dictionary = dictionary[dictionary["entry"] == "column"].set_index("name")["description"]
    for column in ("unit_id", "parent_id"):
        assert "text" in dictionary[column].lower(), (column, dictionary[column])

    # File names and the reports of 030001: title, cover and the funnel plots that highlight it.
    report_dir = out / "providers" / "030001"
    for audience in ("local", "public"):
        for suffix in ("html", "pdf"):
            assert (report_dir / f"{audience}.{suffix}").is_file(), (audience, suffix)
    providers = pd.read_csv(config.providers_file, dtype=str, keep_default_na=False)
    name = providers.set_index("provider_code").at["030001", "provider_name"]
    page = (report_dir / "local.html").read_text()
    title = html.unescape(re.search(r"<title>(.*?)</title>", page, re.S).group(1))
    assert title == f"{config.name}: {name} (030001) {config.period_label}"
    assert '<p class="code">Provider code 030001</p>' in page
    assert "30001.0" not in page
    # The charts label the highlighted provider by its name; the funnel plots of providers say so in alt text.
    alts = [html.unescape(a) for a in re.findall(r"<img[^>]*\balt=\"([^\"]*)\"", page)]
    provider_funnels = [a for a in alts if ": providers. Funnel plot" in a]
    # One funnel per measure with a provider funnel in the bundle (mortality's O/E, Cox O/E, the process measures...).
    bundle = load_bundle(out / BUNDLE_DIR)
    with_funnel = set(bundle.funnels.query("level == 'provider'")["measure"])
    labels = {m["label"] for m in bundle.metadata["measures"] if m["id"] in with_funnel}
    assert {a.split(": providers. Funnel plot")[0] for a in provider_funnels} == labels, alts
    assert len(provider_funnels) == len(labels), alts
    assert all(f"{name} is shown as a blue diamond" in a for a in provider_funnels), provider_funnels

    # The site index lists every provider by its code, and links 030001's public report.
    index = (out / "site" / "index.html").read_text()
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", index, re.S)]
    for code in PROVIDER_CODES:
        assert code in cells, code
    assert "<a href='providers/030001.html'>" in index
    assert (out / "site" / "providers" / "030001.html").is_file()
    assert (out / "site" / "reports" / "030001.pdf").is_file()  # the public report; providers/: its page


def test_disclosure_check_reads_code_na_as_a_code(tmp_path):
    """A consultant's blanked deaths under provider ``NA`` are recoverable from the provider's total; the
    check finds it only if ``NA`` is read as the code it is."""
    from auditreport.publication.checker import check_csv

    rows = [("national", "national", "", 40, 300), ("provider", "NA", "", 20, 150),
            ("provider", "030001", "", 20, 150), ("consultant", "0123", "NA", "", 60),
            ("consultant", "0124", "NA", 17, 90)]
    data = pd.DataFrame(rows, columns=["level", "unit_id", "parent_id", "numerator", "denominator"])
    data.assign(measure="mortality", statistic="rate").to_csv(tmp_path / "indicators.csv", index=False)
    findings = check_csv(tmp_path / "indicators.csv", threshold=7)
    assert [(f.where, f.text) for f in findings] == [
        ("mortality rate numerator under provider NA", "1 blanked cell(s) totalling 3")]


def test_providers_file_code_missing_is_refused(tmp_path):
    """A provider without a code in the providers file is an error naming file, column and row (it would
    otherwise become a provider coded 'nan')."""
    records, providers, _ = _synthetic_with_codes(PROVIDER_CODES)
    records.to_csv(tmp_path / "records.csv", index=False)
    providers.loc[2, "provider_code"] = ""
    providers.to_csv(tmp_path / "providers.csv", index=False)
    config = load_config(_definition(tmp_path, tmp_path / "records.csv", tmp_path / "providers.csv"))
    with pytest.raises(DataValidationError) as caught:
        load_validated(config)
    assert "providers.csv" in str(caught.value)
    assert [(f["column"], f["rule"], f["rows"]) for f in caught.value.failures] == [
        ("provider_code", "not missing (every provider has a code)", [3])]
