"""``auditreport aggregate`` from the command line, as the README documents it."""

from __future__ import annotations

import pandas as pd
from click.testing import CliRunner

from auditreport.cli import main


def test_aggregate_command_writes_csv_and_plots(tmp_path):
    table = pd.DataFrame({"Hospital": ["A", "B", "C", "D", "E", "F"],
                          "Deaths": [100, 150, 180, 80, 120, 225],
                          "Expected": [108, 112, 165, 95, 100, 220]})
    src = tmp_path / "hospitals.csv"
    table.to_csv(src, index=False)
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(main, ["aggregate", str(src), "-o", str(out), "--unit", "Hospital",
                                       "--observed", "Deaths", "--expected", "Expected",
                                       "--overdispersion", "shmi", "--plot", str(tmp_path / "funnel")])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert {"unit", "observed", "expected", "value", "lower95", "upper95", "lower998", "upper998", "flag",
            "method"} <= set(written.columns)
    assert written.loc[written["unit"] == "B", "flag"].iat[0] in ("alert_high", "alarm_high", "as_expected")
    assert "shmi" in written["method"].iat[0].lower()
    assert (tmp_path / "funnel.png").stat().st_size > 1000 and (tmp_path / "funnel.svg").is_file()


def test_aggregate_command_names_missing_column(tmp_path):
    src = tmp_path / "t.csv"
    pd.DataFrame({"unit": ["A"], "obs": [1]}).to_csv(src, index=False)
    result = CliRunner().invoke(main, ["aggregate", str(src), "-o", str(tmp_path / "o.csv"), "--unit", "unit",
                                       "--observed", "deaths", "--expected", "obs"])
    assert result.exit_code == 2
    assert "deaths" in result.output and not (tmp_path / "o.csv").exists()
