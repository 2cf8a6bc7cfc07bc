"""Each measure's records from an extract: events, values, eligibility, exclusions with reasons, clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import yaml

from auditreport.config import load_config
from auditreport.data.measures import check_measures, measure_records
from auditreport.data.validation import load_validated
from auditreport.errors import DataValidationError

from conftest import ADMISSIONS


def _extract(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": [f"A{i:05d}" for i in range(n)],
        "hospital": rng.choice(["H1", "H2", "H3", "H4"], n),
        "age80": rng.integers(0, 2, n),
        "hmo": rng.choice(["no", "yes"], n),
        "type": rng.choice(["elective", "emergency"], n),
        "died": rng.integers(0, 2, n),
        "los": rng.integers(0, 40, n).astype(float),
        "review": rng.integers(0, 2, n).astype(float),
        "hours": rng.gamma(2.0, 10.0, n).round(1),
    })
    frame.loc[[5, 9], "los"] = np.nan
    frame.loc[[7], "review"] = np.nan
    return frame


def _audit(tmp_path, frame: pd.DataFrame, mutate=lambda d: None):
    frame.to_csv(tmp_path / "records.csv", index=False)
    definition = copy.deepcopy(ADMISSIONS)
    mutate(definition)
    path = tmp_path / "admissions.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    config = load_config(path)
    return config, load_validated(config)


def test_each_kind_reads_its_records(tmp_path):
    frame = _extract()
    config, validated = _audit(tmp_path, frame)
    recs = check_measures(config, validated)
    assert recs["mortality"].records["y"].tolist() == frame["died"].astype(float).tolist()
    long_stay = recs["long_stay"]
    assert long_stay.records["y"].sum() == (frame["los"] > 14).sum()  # a blank length of stay is not a long stay
    assert len(long_stay.records) == len(frame) - 2
    national = long_stay.exclusions.query("unit_id == 'national'").set_index("reason")["records"]
    assert national.to_dict() == {"event missing ('los > 14' reads a blank value)": 2}
    assert long_stay.exclusions.query("unit_id != 'national'")["records"].sum() == 2
    los = recs["los"].records["y"]
    assert los.tolist() == frame["los"].dropna().tolist()
    review = recs["review"]
    emergency = frame["type"] == "emergency"
    assert review.eligible == emergency.sum()
    assert len(review.records) == emergency.sum() - int(emergency[7])
    reasons = set(review.exclusions["reason"])
    assert 'not eligible (type == "emergency")' in reasons
    assert recs["wait"].records["y"].mean() == pytest.approx(frame["hours"].mean())


@pytest.mark.parametrize("column, values, key, rule", [
    ("died", lambda f: f["died"].where(f.index != 3, 2), "measures[0] (mortality).event", "gives 0 or 1"),
    ("los", lambda f: f["los"].where(f.index != 4, -1), "measures[2] (los).value", "not below 0"),
    ("hours", lambda f: f["hours"].astype(object).where(f.index != 8, "two"), "measures[4] (wait).value",
     "gives a number"),
])
def test_bad_values_name_the_measure_key_and_rows(tmp_path, column, values, key, rule):
    frame = _extract()
    frame[column] = values(frame)
    config, validated = _audit(tmp_path, frame)
    with pytest.raises(DataValidationError) as err:
        check_measures(config, validated)
    message = str(err.value)
    assert "admissions.yaml" in message and key in message and rule in message
    assert "records.csv" in message and "row" in message


def test_an_unknown_column_is_named_with_the_key_at_validation(tmp_path):
    frame = _extract().drop(columns=["hours"]).rename(columns={"los": "los_days"})
    with pytest.raises(DataValidationError) as err:
        _audit(tmp_path, frame)
    message = str(err.value)
    assert "column 'los'" in message and "measures[1] (long_stay).event" in message
    assert "did you mean 'los_days'" in message and "column 'hours'" in message


def test_an_eligibility_filter_that_selects_nobody_is_an_error(tmp_path):
    frame = _extract()
    config, validated = _audit(tmp_path, frame, lambda d: d["measures"][3].update(eligible='type == "urgent"'))
    with pytest.raises(DataValidationError) as err:
        measure_records(config, config.measure("review"), validated)
    assert "measures[3] (review).eligible" in str(err.value) and "selects at least one record" in str(err.value)


def test_death_within_days_excludes_short_follow_up_with_its_reason(tmp_path):
    from auditreport.data.examples import write_example

    from conftest import REPO

    paths = write_example("lung", tmp_path / "data")
    definition = yaml.safe_load((REPO / "params" / "lung.yaml").read_text())
    definition["data"] = {"source": str(paths["records"]), "providers": str(paths["providers"])}
    audit = tmp_path / "lung.yaml"
    audit.write_text(yaml.safe_dump(definition, sort_keys=False))
    config = load_config(audit)
    validated = load_validated(config)
    measure = next(m for m in config.measures if m.kind == "proportion")
    recs = measure_records(config, measure, validated)
    patients = validated.patients
    days = measure.death_within_days
    short = (patients["event"] == 0) & (patients["time"] < days)
    assert len(recs.records) == len(patients) - short.sum()
    national = recs.exclusions.query("unit_id == 'national'")
    assert national["reason"].tolist() == [f"alive with under {days} days of follow-up"]
    assert national["records"].tolist() == [short.sum()]
    died = (patients["event"] == 1) & (patients["time"] <= days)
    assert recs.records["y"].sum() == died.sum()
