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


def test_tampered_indicators_and_report_are_reported(hostile_build):
    _, summary = hostile_build
    period = summary.period_dir
    report = next((period / "providers").glob("*/local.html"))
    with tampered(period / "indicators.csv", lambda b: b.replace(b",13.0,450.0,", b",14.0,450.0,", 1)), \
            tampered(report, lambda b: re.sub(rb">\d+\.\d%<", b">99.9%<", b, count=1)):
        result = _reproduce(period)
    assert result.exit_code == 6, result.output
    assert "NOT reproduced: 2 difference(s)" in result.output
    assert "indicators.csv: national/national/crude_mortality numerator: published '14.0', recomputed '13.0'" \
        in result.output
    rel = report.relative_to(period).as_posix()
    assert re.search(re.escape(rel) + r": numbers differ: published 99\.9% -> recomputed \d+\.\d%", result.output), \
        result.output


def test_changed_input_data_is_reported(hostile_build):
    audit, summary = hostile_build
    records = audit.parent / "data" / "records.csv"
    with tampered(records, lambda b: b + b"\n"):
        result = _reproduce(summary.period_dir)
    assert result.exit_code == 6
    assert "input changed: source file" in result.output and "records.csv" in result.output
