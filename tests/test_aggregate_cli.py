"""``auditreport aggregate`` from the command line, as the README documents it (the real CLI, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TABLE = pd.DataFrame({"Hospital": ["030001", "B", "C", "D", "E", "F"],
                      "Deaths": [100, 150, 180, 80, 120, 225],
                      "Expected": [108, 112, 165, 95, 100, 220],
                      "Cases": [1000, 1100, 1500, 900, 1000, 2000]})


def _aggregate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditreport.cli", "aggregate", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def hospitals(tmp_path: Path) -> Path:
    src = tmp_path / "hospitals.csv"
    TABLE.to_csv(src, index=False)
    return src


def test_aggregate_command_writes_csv_and_plots(tmp_path, hospitals):
    out = tmp_path / "results.csv"
    result = _aggregate(str(hospitals), "-o", str(out), "--unit", "Hospital", "--observed", "Deaths",
                        "--expected", "Expected", "--overdispersion", "shmi", "--plot", str(tmp_path / "funnel"))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (6 units" in result.stdout
    written = pd.read_csv(out, dtype={"unit": str})
    assert list(written.columns) == ["unit", "observed", "expected", "value", "lower95", "upper95", "lower998",
                                     "upper998", "target", "limit_lower95", "limit_upper95", "limit_lower998",
                                     "limit_upper998", "flag", "status", "method"]
    assert written["unit"].tolist() == TABLE["Hospital"].tolist()  # 030001 keeps its leading zero
    assert out.read_text().splitlines()[1].startswith("030001,100,108.0,")  # a count reads 100, not 100.0
    assert (written["flag"] == "as_expected").all()  # the SHMI random-effects funnel absorbs B
    assert "shmi" in written["method"].iat[0].lower() and "flag discrete" in written["method"].iat[0]
    assert (tmp_path / "funnel.png").stat().st_size > 1000 and (tmp_path / "funnel.svg").is_file()


def test_flag_method_option(tmp_path, hospitals):
    """3 of 3 against a 20% target: an alert by the default (discrete) rule, an alarm by the limits alone."""
    src = tmp_path / "small.csv"
    pd.DataFrame({"Unit": ["030001", "000002"], "Deaths": [3, 80], "Cases": [3, 400]}).to_csv(src, index=False)
    flags = {}
    for method in (None, "limits"):
        out = tmp_path / f"{method}.csv"
        result = _aggregate(str(src), "-o", str(out), "--unit", "Unit", "--observed", "Deaths", "--denominator",
                            "Cases", "--target", "0.2", *(("--flag-method", method) if method else ()))
        assert result.returncode == 0, result.stderr
        flags[method] = pd.read_csv(out, dtype={"unit": str}).set_index("unit")["flag"]
    assert flags[None]["030001"] == "alert_high" and flags["limits"]["030001"] == "alarm_high"


@pytest.mark.parametrize("args, option, message", [
    (["--expected", "Expected", "--denominator", "Cases"], "'--expected' / '--denominator'", "exactly one"),
    ([], "'--expected' / '--denominator'", "exactly one"),
    (["--expected", "Expected", "--method", "wilson"], "'--method'", "must be one of ('exact', 'phe')"),
    (["--expected", "Expected", "--target", "-1"], "'--target'", "target ratio must be > 0"),
    (["--denominator", "Cases", "--target", "20"], "'--target'", "strictly between 0 and 1 (a fraction), got 20.0; "
                                                                 "for 20% give 0.2"),
    (["--denominator", "Cases", "--overdispersion", "shmi"], "'--overdispersion'", "applies to ratios"),
    (["--expected", "Expected", "--overdispersion", "random"], "'--overdispersion'", "'random' is not one of"),
    (["--expected", "Expected", "--flag-method", "spc"], "'--flag-method'", "'spc' is not one of"),
    (["--expected", "Expected", "--target", "one"], "'--target'", "'one' is not a valid float"),
    (["--expected", "Expected", "--observed", "deaths"], "'--observed'", "column 'deaths' not found"),
    (["--expected", "E"], "'--expected'", "column 'E' not found"),
])
def test_usage_errors_exit_2_naming_the_option(tmp_path, hospitals, args, option, message):
    out = tmp_path / "o.csv"
    base = ["--unit", "Hospital", "--observed", "Deaths"]
    if "--observed" in args:
        base = ["--unit", "Hospital"]
    result = _aggregate(str(hospitals), "-o", str(out), *base, *args)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for {option}" in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_missing_input_is_a_usage_error(tmp_path):
    result = _aggregate(str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.csv"), "--unit", "u", "--observed", "o",
                        "--expected", "e")
    assert result.returncode == 2 and "nope.csv' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("column, values, message", [
    ("Deaths", [100, -1, 180, 80, 120, 225], r"column 'Deaths' must be >= 0; negative at data row(s) 2"),
    ("Expected", [108, 112, "n/a", 95, 100, 220], "column 'Expected' must be numeric with no blanks; data row(s) 3 "
                                                  "have 'n/a'\n"),
    ("Expected", [108, 112, "1,650", 95, 100, 220], "column 'Expected' must be numeric with no blanks; data row(s) 3 "
                                                    "have '1,650'; remove the thousands separators"),
    ("Deaths", [100, 150.5, 180, 80, 120, 225], "column 'Deaths' must hold whole numbers (counts) for the discrete "
                                                "flag rule; not so at data row(s) 2"),
    ("Hospital", ["030001", "B", "030001", "D", "E", "F"], "one row per unit; repeated at data row(s) 1, 3"),
])
def test_bad_values_exit_3_naming_file_column_and_rows(tmp_path, column, values, message):
    src = tmp_path / "bad.csv"
    TABLE.assign(**{column: values}).to_csv(src, index=False)
    out = tmp_path / "o.csv"
    result = _aggregate(str(src), "-o", str(out), "--unit", "Hospital", "--observed", "Deaths", "--expected",
                        "Expected")
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"error: {src}: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_blank_rows_are_skipped_and_rows_are_numbered_as_in_the_file(tmp_path, hospitals):
    """A spreadsheet export's empty and comma-only rows are no units; row numbers still match the file's lines."""
    lines = TABLE.to_csv(index=False).splitlines()
    src = tmp_path / "blank.csv"
    src.write_text("\n".join([*lines[:3], "", ",,,", *lines[3:], ",,,", ""]) + "\n")
    out = tmp_path / "o.csv"
    args = ["-o", str(out), "--unit", "Hospital", "--observed", "Deaths", "--expected", "Expected"]
    result = _aggregate(str(src), *args)
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(out, dtype={"unit": str})
    assert written["unit"].tolist() == TABLE["Hospital"].tolist()
    reference = tmp_path / "reference.csv"
    assert _aggregate(str(hospitals), "-o", str(reference), *args[2:]).returncode == 0
    pd.testing.assert_frame_equal(written, pd.read_csv(reference, dtype={"unit": str}))

    # Line 6 of the file (data row 5, after the empty line and the comma-only row) has a unit and no deaths.
    src.write_text("\n".join([*lines[:3], "", ",,,", "G,,10,100", *lines[3:]]) + "\n")
    result = _aggregate(str(src), *args)
    assert result.returncode == 3, result.stderr
    assert "column 'Deaths' must be numeric with no blanks; data row(s) 5 have (blank)" in result.stderr
    src.write_text("\n".join([*lines[:3], ",5,10,100", *lines[3:]]) + "\n")
    result = _aggregate(str(src), *args)
    assert result.returncode == 3 and "column 'Hospital' is blank at data row(s) 3; name the unit" in result.stderr
    assert "Traceback" not in result.stderr



LOS = pd.DataFrame({"Hospital": ["030001", "B", "C", "D", "E", "F"],
                    "MeanLOS": [6.1, 9.8, 5.0, 7.2, 6.6, 7.0],
                    "SD": [4.0, 5.5, 3.9, 4.4, 4.1, 4.6],
                    "Records": [220, 310, 180, 400, 95, 1],
                    "SE": [0.27, 0.31, 0.29, 0.22, 0.42, 4.0]})


def test_mean_kind_with_direction(tmp_path):
    src = tmp_path / "los.csv"
    LOS.assign(SD=LOS["SD"].where(LOS["Records"] > 1)).to_csv(src, index=False)  # F: one record, SD blank
    out = tmp_path / "los_out.csv"
    result = _aggregate(str(src), "-o", str(out), "--unit", "Hospital", "--mean", "MeanLOS", "--sd", "SD", "--n",
                        "Records", "--direction", "lower_is_better", "--plot", str(tmp_path / "los"))
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(out, dtype={"unit": str})
    assert list(written.columns) == ["unit", "denominator", "sd", "se", "value", "lower95", "upper95", "lower998",
                                     "upper998", "target", "limit_lower95", "limit_upper95", "limit_lower998",
                                     "limit_upper998", "flag", "status", "method"]
    by_unit = written.set_index("unit")
    assert by_unit.loc["B", "flag"] == "alarm_high" and by_unit.loc["B", "status"] == "Alarm: worse than expected"
    assert by_unit.loc["C", "status"] == "Alarm: better than expected"
    assert written["method"].iat[0].startswith("mean; target ")
    assert (tmp_path / "los.svg").is_file()


@pytest.mark.parametrize("args, option, message", [
    (["--mean", "MeanLOS"], "'--se' / '--sd' / '--n'", "kind 'mean' needs the standard error column"),
    (["--mean", "MeanLOS", "--se", "SE", "--sd", "SD"], "'--se' / '--sd'", "not both"),
    (["--mean", "MeanLOS", "--se", "SE", "--observed", "Records"], "'--observed'", "not an observed column"),
    (["--kind", "ratio", "--mean", "MeanLOS", "--se", "SE"], "'--expected'", "kind 'ratio' needs the expected"),
    (["--mean", "MeanLOS", "--se", "SE", "--overdispersion", "shmi"], "'--overdispersion'", "applies to ratios"),
    (["--mean", "MeanLOS", "--se", "SE", "--direction", "up"], "'--direction'", "'up' is not one of"),
])
def test_mean_usage_errors_exit_2(tmp_path, args, option, message):
    src = tmp_path / "los.csv"
    LOS.to_csv(src, index=False)
    out = tmp_path / "o.csv"
    result = _aggregate(str(src), "-o", str(out), "--unit", "Hospital", *args)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for {option}" in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_mean_bad_values_exit_3(tmp_path):
    src = tmp_path / "los.csv"
    LOS.assign(Records=[220, 310.5, 180, 400, 95, 1]).to_csv(src, index=False)
    out = tmp_path / "o.csv"
    result = _aggregate(str(src), "-o", str(out), "--unit", "Hospital", "--mean", "MeanLOS", "--sd", "SD", "--n",
                        "Records")
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"error: {src}: column 'Records' must hold whole numbers >= 1 (records); not so "
                                    "at data row(s) 2"), result.stderr
    assert not out.exists()
