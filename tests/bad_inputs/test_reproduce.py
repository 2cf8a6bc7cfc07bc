"""``auditreport reproduce``: a built period reproduces identically; tampering or changed inputs are found."""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditreport.cli import main

from .conftest import small_definition

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
    # Every measure, the internal one included, is recomputed from the bundle's inputs.
    assert f"{len(small_definition(internal=True)['measures'])} measures" in result.output


def _one_more_event(measure: str, statistic: str):
    """A change to indicators.csv: the national row of ``measure``/``statistic`` with one event more."""
    changed = {}

    def change(data: bytes) -> bytes:
        lines = data.decode("utf-8").split("\n")
        column = lines[0].split(",").index("numerator")
        row = next(i for i, line in enumerate(lines) if f",{measure},{statistic},national,national," in line)
        fields = lines[row].split(",")
        changed.update(before=fields[column], after=str(float(fields[column]) + 1))
        fields[column] = changed["after"]
        lines[row] = ",".join(fields)
        return "\n".join(lines).encode("utf-8")
    return change, changed


def test_tampered_indicators_and_report_are_reported(hostile_build):
    _, summary = hostile_build
    period = summary.period_dir
    report = next((period / "providers").glob("*/local.html"))
    change, changed = _one_more_event("senior_review", "rate")
    with tampered(period / "indicators.csv", change), \
            tampered(report, lambda b: re.sub(rb">\d+\.\d%<", b">99.9%<", b, count=1)):
        result = _reproduce(period)
    assert result.exit_code == 6, result.output
    assert "NOT reproduced: 2 difference(s)" in result.output
    assert (f"indicators.csv: senior_review/rate/national/national numerator: published '{changed['after']}', "
            f"recomputed '{changed['before']}'") in result.output
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
