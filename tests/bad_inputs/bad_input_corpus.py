"""The corpus of bad inputs: each case breaks a clean small audit in one way and says what must happen.

A case is a function that edits a copy of a clean audit (a 400-record CSV extract, its providers file
and its YAML definition) plus the exit code ``auditreport run`` must give and fragments its message
must contain (file, column, rule, rows). Exit 2 is a bad definition, 3 bad data; in every error case
nothing may be written to the reports folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml


class Audit:
    """A copy of the clean audit: its definition, extract and providers file, easy to edit."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.yaml = folder / "audit.yaml"
        self.records = folder / "data" / "records.csv"
        self.providers = folder / "data" / "providers.csv"

    # definition
    def definition(self) -> dict:
        return yaml.safe_load(self.yaml.read_text())

    def save_definition(self, d: dict) -> None:
        self.yaml.write_text(yaml.safe_dump(d, sort_keys=False))

    def edit_definition(self, change: Callable[[dict], object]) -> None:
        d = self.definition()
        change(d)
        self.save_definition(d)

    # extract
    def frame(self) -> pd.DataFrame:
        return pd.read_csv(self.records, dtype=str, keep_default_na=False)

    def save_frame(self, f: pd.DataFrame) -> None:
        f.to_csv(self.records, index=False)

    def edit(self, change: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
        f = self.frame()
        out = change(f)
        self.save_frame(f if out is None else out)

    def set(self, rows: list[int], column: str, value: str) -> None:
        """Set ``column`` on data rows (counted from 1, as messages count them)."""
        def change(f):
            f.loc[[r - 1 for r in rows], column] = value
        self.edit(change)


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Audit], None]
    exit_code: int
    fragments: tuple[str, ...] = ()
    note: str = ""
    extra: dict = field(default_factory=dict)


def _raw(text_of: Callable[[bytes], bytes]) -> Callable[[Audit], None]:
    def mutate(a: Audit) -> None:
        a.records.write_bytes(text_of(a.records.read_bytes()))
    return mutate


def _semicolons(data: bytes) -> bytes:
    return data.replace(b",", b";")


def _latin1(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[3] = lines[3].replace(b"NHS", "Ysbyty Gwynedd Caerdydd \u00e9".encode("latin-1"), 1)
    return b"\n".join(lines)


def _truncate(data: bytes) -> bytes:
    lines = data.split(b"\n")
    # keep 10 data rows and half of the 11th: the file ends mid-line, as a cut-off transfer does
    return b"\n".join(lines[:11]) + b"\n" + lines[11][: len(lines[11]) // 2]


def _short_row(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[5] = b",".join(lines[5].split(b",")[:6])  # data row 5 has 6 of 14 fields
    return b"\n".join(lines)


def _long_row(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[5] = lines[5] + b",extra,fields"
    return b"\n".join(lines)


def _unbalanced_quote(data: bytes) -> bytes:
    lines = data.split(b"\n")
    lines[7] = lines[7].replace(b",", b',"', 1)
    return b"\n".join(lines)


def _header_only(data: bytes) -> bytes:
    return data.split(b"\n")[0] + b"\n"


def _time_event_mode(a: Audit) -> None:
    """Switch the audit to time/event columns (no dates)."""
    def change(f):
        proc = pd.to_datetime(f["procedure_date"])
        end = pd.to_datetime(f["death_date"].replace("", None)).fillna(pd.to_datetime(f["followup_end"]))
        f["days"] = (end - proc).dt.days.astype(str)
        f["died"] = (f["death_date"] != "").astype(int).astype(str)
        return f.drop(columns=["procedure_date", "death_date", "followup_end"])
    a.edit(change)

    def definition(d):
        for key in ("procedure_date", "death_date", "followup_end"):
            d["columns"].pop(key)
        d["columns"].update(time="days", event="died")
        for measure in d["measures"]:
            measure.pop("monitoring", None)  # without dates there is no order to monitor in
    a.edit_definition(definition)


def _time_event(column: str, rows: list[int], value: str) -> Callable[[Audit], None]:
    def mutate(a: Audit) -> None:
        _time_event_mode(a)
        a.set(rows, column, value)
    return mutate


def _set(rows: list[int], column: str, value: str) -> Callable[[Audit], None]:
    return lambda a: a.set(rows, column, value)


def _definition(change: Callable[[dict], object]) -> Callable[[Audit], None]:
    return lambda a: a.edit_definition(change)


def _duplicate(a: Audit) -> None:
    def change(f):
        f.loc[7, "patient_id"] = f.loc[2, "patient_id"]
    a.edit(change)


def _all_deaths_in(column_value: str) -> Callable[[Audit], None]:
    def mutate(a: Audit) -> None:
        def change(f):
            if column_value == "alive":
                f["death_date"] = ""
            else:
                f["death_date"] = f["procedure_date"]
        a.edit(change)
    return mutate


def _empty_level(a: Audit) -> None:
    """Nobody is in urgency level 'urgent': the model cannot estimate that level."""
    a.edit(lambda f: f.assign(urgency=f["urgency"].replace("urgent", "emergency")))


def _separated_level(a: Audit) -> None:
    """Nobody in urgency 'emergency' died: the level's coefficient runs to minus infinity."""
    def change(f):
        f.loc[f["urgency"] == "emergency", "death_date"] = ""
    a.edit(change)


def _providers_without_columns(a: Audit) -> None:
    a.providers.write_text("code,name\nRWH1,Pendle\n")


def _unknown_provider(a: Audit) -> None:
    a.set([1], "provider_code", "ZZZ9")


E = "2026-06-30"  # the clean audit's extract date

CASES: list[Case] = [
    # --- the file itself -----------------------------------------------------------------------
    Case("semicolon_delimiter", _raw(_semicolons), 3,
         ("records.csv", "(file)", "comma-separated", "';'-separated")),
    Case("latin1_encoding", _raw(_latin1), 3, ("records.csv", "UTF-8 encoding", "line 4", "save the file as UTF-8")),
    Case("empty_file_0_bytes", _raw(lambda b: b""), 3, ("records.csv", "not empty", "the file is empty")),
    Case("header_only", _raw(_header_only), 3, ("records.csv", "at least one record", "header but no records")),
    Case("truncated_mid_line", _raw(_truncate), 3,
         ("records.csv", "complete lines", "rows 11", "truncated")),
    Case("row_with_too_few_fields", _raw(_short_row), 3, ("records.csv", "complete lines", "rows 5", "6 of 18")),
    Case("row_with_too_many_fields", _raw(_long_row), 3, ("records.csv", "consistent fields", "line 6")),
    Case("unbalanced_quote", _raw(_unbalanced_quote), 3, ("records.csv", "consistent fields")),
    Case("source_file_missing", lambda a: a.records.unlink(), 3, ("records.csv", "file exists", "not found")),
    Case("unsupported_file_type", lambda a: _other_suffix(a, ".xlsx"), 3,
         ("records.xlsx", "file type", "'.xlsx' is not supported")),
    Case("corrupt_parquet", lambda a: _corrupt_parquet(a), 3, ("records.parquet", "readable Parquet")),
    # --- columns -------------------------------------------------------------------------------
    Case("missing_column", lambda a: a.edit(lambda f: f.drop(columns=["death_date"])), 3,
         ("records.csv", "column 'death_date'", "column present", "mapped as death_date")),
    Case("renamed_column_suggests_close_match",
         lambda a: a.edit(lambda f: f.rename(columns={"followup_end": "follow_up_end"})), 3,
         ("column 'followup_end'", "column present", "did you mean 'follow_up_end'?")),
    Case("mapping_to_absent_column", _definition(lambda d: d["columns"].update(consultant_code="surgeon")), 3,
         ("column 'surgeon'", "mapped as consultant_code in audit.yaml", "column present")),
    Case("risk_factor_column_absent",
         _definition(lambda d: d["risk_factors"][2].update(column="asa_grade")), 3,
         ("column 'asa_grade'", "mapped as risk factor asa", "did you mean 'asa'?")),
    # --- values --------------------------------------------------------------------------------
    Case("wrong_type_number", _set([6, 9], "age", "sixty"), 3,
         ("column 'age'", "rule 'type: number'", "rows 6, 9", "'sixty'")),
    Case("wrong_type_date", _set([4], "procedure_date", "31/02/2024"), 3,
         ("1 validation rule(s) failed", "column 'procedure_date'", "type: date (YYYY-MM-DD)", "rows 4",
          "'31/02/2024'")),
    Case("procedure_after_extract_date", _set([3], "procedure_date", "2027-01-05"), 3,
         ("2 validation rule(s) failed", "column 'procedure_date'", f"date not after the extract date {E}",
          "rows 3", "end of follow-up not before procedure")),
    Case("death_after_extract_date", _set([8], "death_date", "2030-01-01"), 3,
         ("column 'death_date'", f"date not after the extract date {E}", "rows 8")),
    Case("procedure_before_1900", _set([2], "procedure_date", "1899-12-31"), 3,
         ("column 'procedure_date'", "date not before 1900", "rows 2")),
    Case("age_below_range_born_after_procedure", _set([5], "age", "-3"), 3,
         ("column 'age'", "value at least 16", "rows 5")),
    Case("death_before_procedure", _set([5, 10], "death_date", "2020-01-01"), 3,
         ("1 validation rule(s) failed", "column 'death_date'", "death not before procedure", "rows 5, 10",
          "e.g. 2020-01-01")),
    Case("followup_end_before_procedure", _set([12], "followup_end", "2023-06-01"), 3,
         ("1 validation rule(s) failed", "column 'followup_end'", "end of follow-up not before procedure",
          "rows 12")),
    Case("followup_end_empty", _set([7], "followup_end", ""), 3,
         ("column 'followup_end'", "value required (not empty)", "rows 7")),
    Case("duplicate_patient", _duplicate, 3,
         ("column 'patient_id'", "unique (no duplicate patient records)", "rows 3, 8")),
    Case("patient_id_empty", _set([9], "patient_id", ""), 3,
         ("column 'patient_id'", "value required (not empty)", "rows 9")),
    Case("unknown_category", _set([7], "asa", "9"), 3,
         ("column 'asa'", "allowed value, one of", "rows 7", "9")),
    Case("unknown_provider", _unknown_provider, 3,
         ("column 'provider_code'", "provider known (listed in the providers file)", "rows 1", "ZZZ9")),
    Case("huge_number_1e308", _set([3], "age", "1e308"), 3, ("column 'age'", "value at most 110", "rows 3")),
    Case("infinite_number", _set([4], "age", "inf"), 3, ("column 'age'", "type: number", "rows 4", "'inf'")),
    Case("nan_text_in_number", _set([5], "bmi", "NaN"), 3, ("column 'bmi'", "type: number", "rows 5", "'NaN'")),
    Case("time_event_event_nan", _time_event("died", [6], "NaN"), 3,
         ("1 validation rule(s) failed", "column 'died'", "type: number", "rows 6", "'NaN'")),
    Case("time_event_event_not_binary", _time_event("died", [2], "2"), 3,
         ("column 'died'", "allowed value, one of [0, 1]", "rows 2")),
    Case("time_event_negative_time", _time_event("days", [3], "-4"), 3,
         ("column 'days'", "value at least 0", "rows 3")),
    Case("time_event_time_empty", _time_event("days", [11], ""), 3,
         ("column 'days'", "value required (not empty)", "rows 11")),
    Case("every_procedure_outside_period",
         _definition(lambda d: d["audit"]["period"].update(start="2021-01-01", end="2021-12-31")), 3,
         ("records.csv", "records to analyse", "every record was excluded", "procedure outside the audit period")),
    Case("providers_file_wrong_columns", _providers_without_columns, 3,
         ("providers.csv", "column 'provider_code'", "column present")),
    # --- the risk model ------------------------------------------------------------------------
    Case("risk_factor_level_without_patients", _empty_level, 3,
         ("risk model", "urgency", "'urgent'", "no patients", "risk_factors")),
    Case("risk_factor_level_without_deaths", _separated_level, 3,
         ("risk model", "urgency", "'emergency'", "0 deaths", "risk_factors")),
    Case("every_patient_alive_nationally", _all_deaths_in("alive"), 3,
         ("measures[0] ('mortality')", "risk model cannot be fitted", "no events", "risk_model.method: fixed")),
    Case("every_patient_dead_nationally", _all_deaths_in("dead"), 3,
         ("measures[0] ('mortality')", "risk model cannot be fitted", "every one of the 400 records",
          "has the event")),
    # --- the definition (YAML) -----------------------------------------------------------------
    Case("yaml_unknown_key", _definition(lambda d: d["measures"][0].update(death_within_weeks=4)), 2,
         ("audit.yaml", "key 'measures[0] (mortality).death_within_weeks'", "is not a key of a proportion measure")),
    Case("yaml_wrong_type", _definition(lambda d: d["measures"][0].update(death_within_days="30 days")), 2,
         ("audit.yaml", "key 'measures[0] (mortality).death_within_days'", "must be a whole number", "'30 days'")),
    # --- the measures ---------------------------------------------------------------------------
    Case("measure_id_used_twice", _definition(lambda d: d["measures"].append(dict(d["measures"][4]))), 2,
         ("audit.yaml", "measures[7].id", "used twice")),
    Case("measure_expression_names_unknown_column",
         _definition(lambda d: _measure(d, "long_stay").update(event="length_of_stay > 14")), 3,
         ("records.csv", "column 'length_of_stay'", "measures[4] (long_stay).event")),
    Case("measure_event_not_0_or_1", _set([3], "senior_review", "2"), 3,
         ("records.csv", "measures[2] (senior_review).event", "gives 0 or 1", "3")),
    Case("eligibility_filter_selects_nobody",
         _definition(lambda d: _measure(d, "ct_before_surgery").update(eligible='urgency == "never"')), 3,
         ("records.csv", "measures[3] (ct_before_surgery).eligible", "selects at least one record")),
    Case("covariate_constant_among_eligible_records",
         _definition(lambda d: _measure(d, "ct_before_surgery").update(
             risk_model={"method": "fit", "covariates": ["age", "urgency"]})), 3,
         ("key 'measures[3].risk_model.covariates[1]'", "risk factor 'urgency' has only the value 'emergency'",
          "cannot be estimated", "Nothing was written")),
    Case("measure_value_negative", _set([6], "los", "-2"), 3,
         ("records.csv", "measures[5] (los).value", "not below 0", "6")),
    Case("measure_value_not_a_number", _set([12], "hours_to_surgery", "soon"), 3,  # row 12 is urgent: eligible
         ("records.csv", "measures[6] (hours_to_surgery).value", "gives a number", "rows 12", "'soon'")),
    Case("expression_over_a_value_that_is_text", _set([9], "los", "a week"), 3,
         ("records.csv", "measures[5] (los).value", "measures[4] (long_stay).event", "gives a number", "rows 9",
          "'a week'")),
    Case("yaml_missing_required_key", _definition(lambda d: d["columns"].pop("provider_code")), 2,
         ("audit.yaml", "key 'columns.provider_code'", "is required but missing")),
    Case("yaml_unknown_column_role", _definition(lambda d: d["columns"].update(surgeon="consultant_code")), 2,
         ("audit.yaml", "key 'columns.surgeon'", "unknown key")),
    Case("yaml_not_yaml", lambda a: a.yaml.write_text("audit: [unclosed\n"), 2, ("audit.yaml", "not valid YAML")),
    Case("yaml_not_a_mapping", lambda a: a.yaml.write_text("- just\n- a list\n"), 2,
         ("audit.yaml", "must be a YAML mapping")),
    Case("yaml_threshold_boolean", _definition(lambda d: d["publication"].update(suppression_threshold=True)), 2,
         ("audit.yaml", "key 'publication.suppression_threshold'", "got a boolean")),
]


def _measure(d: dict, measure_id: str) -> dict:
    """The measure ``measure_id`` of a definition (to edit it in place)."""
    return next(m for m in d["measures"] if m["id"] == measure_id)


def _corrupt_parquet(a: Audit) -> None:
    bad = a.records.with_suffix(".parquet")
    bad.write_bytes(b"PAR1 this is not really parquet")
    a.edit_definition(lambda d: d["data"].update(source=str(bad)))


def _other_suffix(a: Audit, suffix: str) -> None:
    other = a.records.with_suffix(suffix)
    a.records.rename(other)
    a.edit_definition(lambda d: d["data"].update(source=str(other)))
