"""Every case of the bad-input corpus stops ``auditreport run`` with its exit code and a clear message,
and writes nothing to the reports folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditreport.cli import main
from bad_inputs.bad_input_corpus import CASES, Audit, Case


def run_cli(audit: Audit, reports: Path, *extra: str):
    return CliRunner().invoke(main, ["run", str(audit.yaml), "--reports", str(reports), *extra])


def test_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


def test_clean_audit_validates(audit_copy):
    result = CliRunner().invoke(main, ["validate", str(audit_copy.yaml)])
    assert result.exit_code == 0, result.output
    assert "valid. 400 procedures from 4 providers" in result.output


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(case: Case, audit_copy: Audit, tmp_path):
    case.mutate(audit_copy)
    reports = tmp_path / "reports"
    result = run_cli(audit_copy, reports)
    message = result.output
    assert result.exit_code == case.exit_code, (result.exit_code, message, result.exception)
    assert "Traceback" not in message
    missing = [f for f in case.fragments if f not in message]
    assert not missing, f"{missing} not in:\n{message}"
    assert not reports.exists(), sorted(p.name for p in reports.rglob("*"))


def test_real_process_exit_code_and_stderr(audit_copy, tmp_path):
    """The installed command line, in its own process: exit 3, message on stderr, nothing written."""
    audit_copy.set([4], "death_date", "1999-01-01")
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "auditreport.cli", "run", str(audit_copy.yaml),
                           "--reports", str(reports)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "column 'death_date'" in proc.stderr and "rows 4" in proc.stderr
    assert "nothing was written" in proc.stderr and "Traceback" not in proc.stderr
    assert not reports.exists()


@pytest.mark.parametrize("name", ["risk_factor_level_without_deaths", "duplicate_patient", "yaml_unknown_key"])
def test_validate_command_finds_the_same_problems(name, audit_copy):
    """'auditreport validate' refuses what 'run' would refuse, the risk model included."""
    case = next(c for c in CASES if c.name == name)
    case.mutate(audit_copy)
    result = CliRunner().invoke(main, ["validate", str(audit_copy.yaml)])
    assert result.exit_code == case.exit_code, result.output
    assert all(f in result.output for f in case.fragments), result.output


def test_blank_provider_code_is_kept_nationally_with_a_warning(audit_copy):
    """A record without a provider code is legitimate (the NCCTG lung data has one): it counts in the
    national figures, is attributed to no provider, and is reported as a warning, not refused."""
    audit_copy.set([10], "provider_code", " ")
    result = CliRunner().invoke(main, ["validate", str(audit_copy.yaml)])
    assert result.exit_code == 0, result.output
    assert "1 record(s) with no provider code" in result.output
