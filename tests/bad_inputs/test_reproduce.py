"""``auditreport reproduce``: a built period reproduces identically; tampering or changed inputs are found."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditreport.cli import main

pytestmark = pytest.mark.slow


@contextmanager
def tampered(path: Path, change):
    original = path.read_bytes()
    try:
        path.write_bytes(change(original))
        yield
    finally:
        path.write_bytes(original)


def _reproduce(period: Path):
    return CliRunner().invoke(main, ["reproduce", str(period)])


def test_built_period_reproduces_identically(hostile_build):
    _, summary = hostile_build
    result = _reproduce(summary.period_dir)
    assert result.exit_code == 0, result.output
    assert "reproduced identically" in result.output
    figures = int(re.search(r"([\d,]+) figures in indicators.csv", result.output).group(1).replace(",", ""))
    assert figures > 100 and "7 reports" in result.output


def test_tampered_indicators_csv_is_reported(hostile_build):
    _, summary = hostile_build
    path = summary.period_dir / "indicators.csv"
    with tampered(path, lambda b: b.replace(b",13.0,450.0,", b",14.0,450.0,", 1)):
        result = _reproduce(summary.period_dir)
    assert result.exit_code == 6, result.output
    assert "NOT reproduced" in result.output
    assert "indicators.csv: national/national/crude_mortality numerator: published '14.0', recomputed '13.0'" \
        in result.output


def test_tampered_report_number_is_reported(hostile_build):
    _, summary = hostile_build
    report = next((summary.period_dir / "providers").glob("*/local.html"))
    with tampered(report, lambda b: re.sub(rb"reported <strong>(\d+)</strong>", rb"reported <strong>9\1</strong>",
                                           b, count=1)):
        result = _reproduce(summary.period_dir)
    assert result.exit_code == 6
    rel = report.relative_to(summary.period_dir).as_posix()
    assert re.search(re.escape(rel) + r": numbers differ: published 9\d+ -> recomputed \d+", result.output), \
        result.output


def test_changed_input_data_is_reported(hostile_build):
    audit, summary = hostile_build
    records = audit.parent / "data" / "records.csv"
    with tampered(records, lambda b: b + b"\n"):
        result = _reproduce(summary.period_dir)
    assert result.exit_code == 6
    assert "input changed: source file" in result.output and "records.csv" in result.output
