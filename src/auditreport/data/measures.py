"""Each measure's records: who is eligible, each record's event or value, and every exclusion with its reason.

A measure reads the validated extract through its declaration (``auditreport.config.measures``): the
eligibility filter gives the denominator, the event (a 0/1 column, an expression, or death within N days) or
the value (a number, not negative) gives each record's ``y``. What the data cannot support is an error naming
the definition file, the measure's id and key, the column, the rows and the rule, before anything is written:
an expression naming no such column, an event that is not 0/1, a value that is negative or not a number, an
eligibility filter that selects nobody. A record a measure leaves out is never silent: it is counted with its
reason, per provider and nationally, in :attr:`MeasureRecords.exclusions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from auditreport.config import AuditConfig, Measure
from auditreport.config.expressions import parse_expression
from auditreport.data.validation import ValidatedData
from auditreport.errors import DataValidationError

#: Columns of every measure's records besides the risk factors.
RECORD_COLUMNS = ["provider_code", "consultant_code", "procedure_date", "time", "event", "y"]
EXCLUSION_COLUMNS = ["measure", "unit_id", "reason", "records"]


@dataclass(frozen=True)
class MeasureRecords:
    """One measure's included records and what it left out.

    ``records`` keeps the index of ``ValidatedData.patients``; ``y`` is the 0/1 event (proportion), the value
    (mean, ratio) or NaN (survival, which reads ``time`` and ``event``). ``exclusions`` has one row per unit
    (each provider and ``national``) and reason, with the count of records; ``eligible`` is how many records
    the eligibility filter selected (all analysed records when there is none).
    """

    measure: Measure
    records: pd.DataFrame
    exclusions: pd.DataFrame
    eligible: int


def measure_records(config: AuditConfig, measure: Measure, validated: ValidatedData,
                    frame: pd.DataFrame | None = None) -> MeasureRecords:
    """The records ``measure`` analyses, each with its ``y``; raises ``DataValidationError`` on bad data.

    ``frame`` is the names expressions read (:func:`expression_frame`); :func:`check_measures` builds it once
    for every measure.
    """
    patients = validated.patients
    index = _measure_index(config, measure)
    where = f"{config.path.name}: measures[{index}] ({measure.id})"
    analysed = patients["exclusion"] == ""
    reason = patients["exclusion"].copy()
    frame = expression_frame(config, validated) if frame is None else frame
    failures: list[dict] = []

    eligible = analysed.copy()
    if measure.eligible is not None:
        chosen = _evaluate(frame, measure.eligible, f"{where}.eligible", failures, want="boolean")
        if chosen is not None:
            unknown = chosen.isna() & analysed
            reason[unknown] = f"eligibility not known (a value '{measure.eligible}' reads is missing)"
            outside = (chosen == 0) & analysed
            reason[outside] = f"not eligible ({measure.eligible})"
            eligible = analysed & (chosen == 1)
            if not eligible.any() and not failures:
                failures.append({"column": f"{where}.eligible", "rule": "selects at least one record", "count": 0,
                                 "rows": [], "examples": f"'{measure.eligible}' is true for none of the "
                                 f"{int(analysed.sum()):,} records analysed; check the expression and the values "
                                 "of the columns it names"})

    y = pd.Series(np.nan, index=patients.index)
    if measure.kind == "proportion" and measure.death_within_days is not None:
        n = measure.death_within_days
        time, event = patients["time"].astype(float), patients["event"].astype("Float64").fillna(0).astype(float)
        y = pd.Series(np.where((event == 1) & (time <= n), 1.0, np.where(time >= n, 0.0, np.nan)),
                      index=patients.index)
        reason[eligible & y.isna()] = f"alive with under {n} days of follow-up"
    elif measure.kind == "proportion":
        got = _evaluate(frame, measure.event, f"{where}.event", failures, want="boolean", rows=eligible)
        if got is not None:
            y = got.astype(float)
            reason[eligible & y.isna()] = f"event missing ('{measure.event}' reads a blank value)"
    elif measure.kind in ("mean", "ratio"):
        got = _evaluate(frame, measure.value, f"{where}.value", failures, want="number", rows=eligible)
        if got is not None:
            y = got.astype(float)
            reason[eligible & y.isna()] = f"value missing ('{measure.value}' reads a blank value)"
    if failures:
        raise DataValidationError(validated.source, failures)

    included = eligible & (y.notna() if measure.kind != "survival" else True)
    records = patients.loc[included, [c for c in RECORD_COLUMNS if c != "y"] + list(config.factor_names)].copy()
    records.insert(RECORD_COLUMNS.index("y"), "y", y[included])
    return MeasureRecords(measure=measure, records=records,
                          exclusions=_exclusion_counts(measure.id, patients["provider_code"], reason[~included]),
                          eligible=int(eligible.sum()))


def check_measures(config: AuditConfig, validated: ValidatedData) -> dict[str, MeasureRecords]:
    """Every measure's records, by id; the errors of all measures together in one ``DataValidationError``.

    An extract in which every record was excluded (all outside the audit period, say) is refused first, with
    that reason, rather than as each measure's empty selection.
    """
    if not (validated.patients["exclusion"] == "").any():
        reasons = validated.patients["exclusion"].value_counts()
        raise DataValidationError(validated.source, [{
            "column": "(all)", "rule": "records to analyse", "count": 0, "rows": [],
            "examples": "every record was excluded (" + "; ".join(f"{r}: {n:,}" for r, n in reasons.items()) + ")"}])
    out: dict[str, MeasureRecords] = {}
    failures: list[dict] = []
    frame = expression_frame(config, validated)
    for measure in config.measures:
        try:
            out[measure.id] = measure_records(config, measure, validated, frame)
        except DataValidationError as exc:
            failures.extend(exc.failures)
    if failures:
        raise DataValidationError(validated.source, failures)
    return out


def _measure_index(config: AuditConfig, measure: Measure) -> int:
    return next(i for i, m in enumerate(config.measures) if m.id == measure.id)


def expression_frame(config: AuditConfig, validated: ValidatedData) -> pd.DataFrame:
    """The names an expression may read: the extract's columns, then the risk factors (which win).

    A categorical factor whose categories are all numbers (ASA grade 1-5, a 0/1 flag) is given as numbers, so
    that ``asa >= 4`` and ``age80 == 1`` mean what they say; other categories are text (``type == "emergency"``).
    """
    frame = validated.measure_inputs.copy()
    for factor in config.risk_factors:
        values = validated.patients[factor.name]
        if factor.kind == "categorical" and all(_is_number(c) for c in factor.categories):
            values = pd.to_numeric(values, errors="coerce")
        frame[factor.name] = values
    return frame


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _evaluate(frame: pd.DataFrame, text: str | None, key: str, failures: list[dict], want: str,
              rows: pd.Series | None = None) -> pd.Series | None:
    """Evaluate one expression; a result that is not ``want`` (boolean 0/1, or a number >= 0) is a failure.

    ``rows`` limits the check to the records that matter (an event need be 0/1 among eligible records only).
    Missing values stay missing (NaN), so that a blank is an exclusion with its reason, not a wrong answer.
    """
    assert text is not None
    try:
        with np.errstate(all="ignore"):
            result = frame.eval(text, engine="python")
    except Exception as exc:  # pandas raises many types for an expression over the wrong kinds of column
        text_rows = _text_in_number_columns(frame, text)
        if text_rows is not None:
            bad, values = text_rows
            failures.append(_failure(key, "gives a number (the columns it reads hold text)", bad, values))
            return None
        failures.append({"column": key, "rule": "an expression pandas can evaluate over the columns", "count": len(frame),
                         "rows": [], "examples": f"'{text}': {type(exc).__name__}: {exc}"})
        return None
    if np.ndim(result) == 0:
        result = pd.Series(result, index=frame.index)
    result = pd.Series(result, index=frame.index)
    missing = _missing_inputs(frame, text)
    rows = pd.Series(True, index=frame.index) if rows is None else rows
    if _is_bool(result):
        values = result.astype(float)
    else:
        values = pd.to_numeric(result, errors="coerce").astype(float)
        not_number = result.notna() & values.isna() & rows
        if not_number.any():
            failures.append(_failure(key, "gives a number (the columns it reads hold text)", not_number, result))
            return None
    values = values.where(~missing)
    if want == "boolean":
        bad = values.notna() & ~values.isin([0.0, 1.0]) & rows
        if bad.any():
            failures.append(_failure(key, "gives 0 or 1 (true or false) for each record", bad, values))
            return None
    else:
        bad = values.notna() & ((values < 0) | ~np.isfinite(values)) & rows
        if bad.any():
            failures.append(_failure(key, "gives a number not below 0", bad, values))
            return None
    return values


def _is_bool(result: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(result.dtype)


def _text_in_number_columns(frame: pd.DataFrame, text: str) -> tuple[pd.Series, pd.Series] | None:
    """Rows where a column the expression reads holds text among numbers (``a week`` among days), if any.

    Such a column is read as text as a whole, so comparing it with a number fails for every row; the rows to
    fix are those whose value is not a number.
    """
    for name in parse_expression(text).names:
        if name not in frame.columns or frame[name].dtype != object:
            continue
        values = frame[name]
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & numbers.isna()
        if numbers.notna().any() and bad.any():
            return bad, values
    return None


def _missing_inputs(frame: pd.DataFrame, text: str) -> pd.Series:
    """Records where a column the expression reads is blank: the answer is unknown, not false."""
    names = [n for n in parse_expression(text).names if n in frame.columns]
    return frame[names].isna().any(axis=1) if names else pd.Series(False, index=frame.index)


def _failure(key: str, rule: str, bad: pd.Series, values: pd.Series) -> dict:
    rows = [int(i) + 1 for i in bad[bad].index]
    shown = ", ".join(f"row {r}: {values.iat[r - 1]!r}" for r in rows[:3])
    return {"column": key, "rule": rule, "count": len(rows), "rows": rows, "examples": shown}


def _exclusion_counts(measure_id: str, providers: pd.Series, reasons: pd.Series) -> pd.DataFrame:
    """Records left out per provider and reason, and nationally (``unit_id`` "national")."""
    reasons = reasons[reasons != ""]
    if reasons.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "records" else object) for c in EXCLUSION_COLUMNS})
    frame = pd.DataFrame({"unit_id": providers.loc[reasons.index], "reason": reasons})
    by_unit = frame.dropna(subset=["unit_id"]).groupby(["unit_id", "reason"]).size().rename("records").reset_index()
    national = frame.groupby("reason").size().rename("records").reset_index().assign(unit_id="national")
    table = pd.concat([national, by_unit], ignore_index=True)
    table.insert(0, "measure", measure_id)
    table["records"] = table["records"].astype("int64")
    return table[EXCLUSION_COLUMNS]
