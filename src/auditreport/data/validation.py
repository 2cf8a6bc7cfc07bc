"""Checking an audit extract against its declared schema and normalising it.

The schema is derived from the audit definition and checked with pandera, so
every rule is declared once and every failure comes back with its rows. A
run stops on any *error* (the data cannot be trusted); *warnings* such as a
missing risk factor are legitimate features of audit data and are counted in
the data-quality results instead.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api import types
from pandera.errors import SchemaErrors

from auditreport.config import AuditConfig
from auditreport.config.expressions import parse_expression
from auditreport.data.loading import read_table
from auditreport.errors import DataValidationError

#: Canonical columns of the normalised patient table, besides the risk factors.
CANONICAL = ["patient_id", "provider_code", "provider_name", "consultant_code", "procedure_date",
             "death_date", "followup_end", "time", "event", "exclusion"]

_DATE_FIELDS = ("procedure_date", "death_date", "followup_end")
_EARLIEST_DATE = pd.Timestamp("1900-01-01")
#: The rule a code or id column breaks when it holds a number with a fraction (see :func:`code_text`).
CODE_RULE = "type: text (a code or id stored as a number with a fraction; store codes as text)"


@dataclass
class ValidatedData:
    """The normalised patient table and what was learned about it on the way."""

    patients: pd.DataFrame
    source: str
    n_submitted: int
    providers: pd.DataFrame  # provider_code, provider_name
    warnings: list[str] = field(default_factory=list)
    #: The extract's columns that measures' expressions read (besides risk factors), aligned with ``patients``:
    #: numbers where every value given is a number, otherwise stripped text; blank is missing.
    measure_inputs: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: The optional files of the definition (``data.consultants``, ``statements``, ``validation``), checked and
    #: normalised (codes as text, blanks as ""), with the columns ``CONSULTANT_COLUMNS``, ``STATEMENT_COLUMNS``
    #: and ``VALIDATION_COLUMNS``; ``None`` where the definition names no such file.
    consultants: pd.DataFrame | None = None
    statements: pd.DataFrame | None = None
    validation: pd.DataFrame | None = None


def validate(config: AuditConfig, raw: pd.DataFrame, source: str,
             providers: pd.DataFrame | None = None) -> ValidatedData:
    """Check ``raw`` against the rules ``config`` implies and return the normalised table.

    Raises :class:`DataValidationError` listing every failed rule with its column,
    the number of rows and the first few row numbers (data rows counted from 1;
    in a CSV the line number is one more, for the header).
    """
    cols = config.columns
    _require_columns(config, raw, source)
    if raw.empty:
        raise DataValidationError(source, [{"column": "(file)", "rule": "at least one record", "count": 0,
                                            "rows": [], "examples": "the file has a header but no records"}])
    frame, failures = _coerce(config, raw)
    failures.extend(_bare_number_ids(frame, cols["patient_id"]))
    schema = _schema(config, providers)
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        failures.extend(_without_repeats(_failures_from_pandera(exc, frame), failures))
    if failures:
        raise DataValidationError(source, _merge(failures))

    out = pd.DataFrame(index=frame.index)
    out["patient_id"] = frame[cols["patient_id"]].astype(str)
    # A record with no provider code still belongs to the national cohort (it keeps national figures such as
    # survival whole); it is attributed to no provider and counted in data quality.
    code = frame[cols["provider_code"]]
    out["provider_code"] = code.astype(str).where(code.notna(), None)
    if "provider_name" in cols:
        out["provider_name"] = frame[cols["provider_name"]].fillna(out["provider_code"]).astype(str)
    elif providers is not None:
        names = providers.set_index("provider_code")["provider_name"]
        out["provider_name"] = out["provider_code"].map(names).fillna(out["provider_code"])
    else:
        out["provider_name"] = out["provider_code"]
    out["consultant_code"] = (frame[cols["consultant_code"]].astype("string")
                              if "consultant_code" in cols else pd.Series(pd.NA, index=frame.index,
                                                                          dtype="string"))
    for name, spec in config.risk_factor_columns.items():
        out[name] = frame[spec.column]
    warnings: list[str] = []
    if "procedure_date" in cols:
        for key in _DATE_FIELDS:
            out[key] = frame[cols[key]]
        died = out["death_date"].notna()
        end = out["death_date"].where(died, out["followup_end"])
        out["time"] = (end - out["procedure_date"]).dt.days.astype(float)
        out["event"] = died.astype(int)
    elif "time" in cols:
        for key in _DATE_FIELDS:
            out[key] = pd.NaT
        out["time"] = frame[cols["time"]].astype(float)
        out["event"] = frame[cols["event"]].astype(int)
    else:  # no follow-up: measures read their events from columns; there is no survival
        for key in _DATE_FIELDS:
            out[key] = pd.NaT
        out["time"] = np.nan
        out["event"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["exclusion"] = ""
    if config.period_start is not None and "procedure_date" in cols:
        outside = (out["procedure_date"] < pd.Timestamp(config.period_start)) | (
            out["procedure_date"] > pd.Timestamp(config.period_end or pd.Timestamp.max))
        out.loc[outside, "exclusion"] = "procedure outside the audit period"
    no_provider = int(out["provider_code"].isna().sum())
    if no_provider:
        warnings.append(f"{cols['provider_code']}: {no_provider} record(s) with no provider code, analysed in "
                        "national figures only (attributed to no provider)")
    for f in config.risk_factors:
        missing = int(out[f.name].isna().sum())
        if missing:
            warnings.append(f"{f.name}: {missing} missing value(s), handled by rule '{f.missing}'")
    registry = (out.loc[out["provider_code"].notna(), ["provider_code", "provider_name"]].drop_duplicates("provider_code")
                .sort_values("provider_code").reset_index(drop=True))
    if providers is not None:
        registry = providers[["provider_code", "provider_name"]].copy()
        silent = sorted(set(registry["provider_code"]) - set(out["provider_code"]))
        if silent:
            warnings.append(f"{len(silent)} provider(s) in the providers file submitted no records: "
                            + ", ".join(silent[:20]) + (" ..." if len(silent) > 20 else ""))
    out = out.reset_index(drop=True)
    inputs = pd.DataFrame({c: _input_column(raw[c]) for c in expression_columns(config)}).reset_index(drop=True)
    return ValidatedData(patients=out, source=source, n_submitted=len(raw), providers=registry,
                         warnings=warnings, measure_inputs=inputs)


def expression_columns(config: AuditConfig) -> dict[str, str]:
    """The extract's columns that measures' expressions read, each with the key that first names it.

    A name in an expression is a risk factor's name if one is declared so (its values as validated), and
    otherwise a column of the extract; the key (``measures[2] (los).value``) is what an error names.
    """
    factors = set(config.factor_names)
    needed: dict[str, str] = {}
    for i, m in enumerate(config.measures):
        for key in ("event", "value", "eligible"):
            text = getattr(m, key)
            if text is None:
                continue
            for name in parse_expression(text).names:
                if name not in factors:
                    needed.setdefault(name, f"measures[{i}] ({m.id}).{key}")
    return needed


def _input_column(values: pd.Series) -> pd.Series:
    """An extract column an expression reads: numbers if every value given is one, else stripped text."""
    if types.is_bool_dtype(values.dtype):
        return values.astype(float)
    if types.is_numeric_dtype(values.dtype):
        return values.astype(float)
    text = values.astype("string").str.strip().replace("", pd.NA)
    number = pd.to_numeric(text, errors="coerce")
    if bool((text.notna() == number.notna()).all()):
        return number.astype(float)
    return text.astype(object).where(text.notna(), np.nan)


def _require_columns(config: AuditConfig, raw: pd.DataFrame, source: str) -> None:
    needed = dict(config.columns)
    for name, spec in config.risk_factor_columns.items():
        needed[f"risk factor {name}"] = spec.column
    for column, key in expression_columns(config).items():
        needed.setdefault(f"a name in {key}", column)
    failures = []
    present = [str(c) for c in raw.columns]
    for role, column in needed.items():
        if column not in raw.columns:
            close = _close_match(column, present)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            failures.append({"column": column, "rule": "column present", "count": len(raw), "rows": [],
                             "examples": f"mapped as {role} in {config.path.name} but not in the file{hint} "
                                         f"(file has: {', '.join(present[:20])})"})
    if failures:
        raise DataValidationError(source, failures)


def _close_match(column: str, present: list[str]) -> list[str]:
    """The file's column most like ``column``: by spelling, or one contained in the other (asa, asa_grade)."""
    def norm(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    by_norm = {norm(p): p for p in present}
    close = difflib.get_close_matches(norm(column), list(by_norm), n=1, cutoff=0.75)
    if close:
        return [by_norm[close[0]]]
    wanted = norm(column)
    contained = [p for n, p in by_norm.items() if len(n) >= 3 and (n in wanted or wanted in n)]
    return sorted(contained, key=lambda p: abs(len(norm(p)) - len(wanted)))[:1]


def _coerce(config: AuditConfig, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Give each declared column its type; unparseable values are type failures."""
    frame = raw.copy()
    failures: list[dict] = []
    cols = config.columns

    def text(col: str) -> None:
        s, bad = code_text(frame[col])
        if bad.any():
            failures.append(_failure(col, CODE_RULE, bad, frame[col]))
        frame[col] = s

    def convert(col: str, kind: str) -> None:
        s = frame[col]
        if kind == "date":
            converted = pd.to_datetime(s, errors="coerce", format="ISO8601") if s.dtype == object \
                else pd.to_datetime(s, errors="coerce")
            if getattr(converted.dt, "tz", None) is not None:
                converted = converted.dt.tz_localize(None)
            rule = "type: date (YYYY-MM-DD)"
        else:
            converted = pd.to_numeric(s, errors="coerce")
            converted = converted.where(np.isfinite(converted.astype(float)))
            rule = "type: number"
        bad = s.notna() & converted.isna()
        if s.dtype == object:
            bad &= s.astype(str).str.strip() != ""
        if bad.any():
            failures.append(_failure(col, rule, bad, s))
        frame[col] = converted

    for key in ("patient_id", "provider_code", "provider_name", "consultant_code"):
        if key in cols:
            text(cols[key])
    for key in _DATE_FIELDS:
        if key in cols:
            convert(cols[key], "date")
    for key in ("time", "event"):
        if key in cols:
            convert(cols[key], "number")
    for f in config.risk_factors:
        column = config.risk_factor_columns[f.name].column
        if f.kind == "numeric":
            convert(column, "number")
        else:
            s = frame[column]
            # Categories are compared as text: 3, 3.0 and "3" are the same ASA grade.
            as_text = s.map(_category_text, na_action="ignore")
            frame[column] = as_text.replace("", np.nan)
    return frame, failures


def code_text(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """A code or id column as text, stripped, blank as missing; and the mask of values that cannot be codes.

    A CSV is read as text, so its codes arrive exactly as written (``030001``, ``1e5``, ``NA``). A Parquet
    column of integers cannot have held leading zeros, so ``30001`` is taken as the code ``"30001"``; an
    integer column with a missing value reads as floats (Arrow has no missing integer in NumPy), so a
    whole float is the integer it was (``30001.0`` is ``"30001"``, never ``"30001.0"``). A float with a
    fraction (or an infinity) is not a code that can be recovered and is returned in the mask.
    """
    if types.is_float_dtype(values.dtype):
        whole = values.notna() & (values % 1 == 0)
        bad = values.notna() & ~whole
        return values.where(whole).map(lambda v: str(int(v)), na_action="ignore").astype(object), bad
    # Built on an object column: where() on a nullable integer column would cast the text back to integers.
    present = values.notna()
    text = pd.Series(np.nan, index=values.index, dtype=object)
    text[present] = values[present].astype(str).str.strip()
    return text.replace("", np.nan), pd.Series(False, index=values.index)


def _category_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() and "." in text else text


def _schema(config: AuditConfig, providers: pd.DataFrame | None) -> pa.DataFrameSchema:
    cols = config.columns
    today = pd.Timestamp(config.extract_date) if config.extract_date else pd.Timestamp.now().normalize()
    columns: dict[str, pa.Column] = {
        cols["patient_id"]: pa.Column(nullable=False, unique=True, coerce=False,
                                      checks=[], title="patient id"),
        cols["provider_code"]: pa.Column(
            nullable=True,
            checks=[_known_provider_check(providers)] if providers is not None else []),
    }
    if "procedure_date" in cols:
        columns[cols["procedure_date"]] = pa.Column(nullable=False, checks=[
            pa.Check(lambda s: s >= _EARLIEST_DATE, element_wise=False, name="date not before 1900"),
            pa.Check(lambda s: s <= today, name=f"date not after the extract date {today.date()}"),
        ])
        columns[cols["death_date"]] = pa.Column(nullable=True, checks=[
            pa.Check(lambda s: s <= today, name=f"date not after the extract date {today.date()}",
                     ignore_na=True)])
        columns[cols["followup_end"]] = pa.Column(nullable=False, checks=[
            pa.Check(lambda s: s <= today, name=f"date not after the extract date {today.date()}")])
    elif "time" in cols:
        columns[cols["time"]] = pa.Column(nullable=False, checks=[pa.Check.ge(0, name="time not negative")])
        columns[cols["event"]] = pa.Column(nullable=False, checks=[pa.Check.isin([0, 1], name="event is 0 or 1")])
    for f in config.risk_factors:
        spec = config.risk_factor_columns[f.name]
        checks = []
        if f.kind == "categorical":
            checks.append(pa.Check.isin(list(f.categories), name=f"category in {{{', '.join(f.categories)}}}"))
        else:
            if spec.minimum is not None:
                checks.append(pa.Check.ge(spec.minimum, name=f"value at least {spec.minimum:g}"))
            if spec.maximum is not None:
                checks.append(pa.Check.le(spec.maximum, name=f"value at most {spec.maximum:g}"))
        columns[spec.column] = pa.Column(nullable=True, checks=checks)
    frame_checks = []
    if "procedure_date" in cols:
        proc, death, fu = cols["procedure_date"], cols["death_date"], cols["followup_end"]
        frame_checks = [
            pa.Check(lambda df: df[death].isna() | df[proc].isna() | (df[death] >= df[proc]),
                     name=f"{death}: death not before procedure ({proc})"),
            pa.Check(lambda df: df[fu].isna() | df[proc].isna() | (df[fu] >= df[proc]),
                     name=f"{fu}: end of follow-up not before procedure ({proc})"),
        ]
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=False, coerce=False)


def _known_provider_check(providers: pd.DataFrame) -> pa.Check:
    known = set(providers["provider_code"].astype(str))
    return pa.Check(lambda s: s.isin(known), name="provider known (listed in the providers file)")


def _without_repeats(found: list[dict], type_failures: list[dict]) -> list[dict]:
    """Drop 'value required' on rows whose value was already reported as unreadable (it became empty)."""
    unreadable: dict[str, set[int]] = {}
    for f in type_failures:
        unreadable.setdefault(f["column"], set()).update(f["rows"])
    out = []
    for f in found:
        if f["rule"] == "value required (not empty)" and f["column"] in unreadable:
            rows = [r for r in f["rows"] if r not in unreadable[f["column"]]]
            if not rows:
                continue
            f = dict(f, rows=rows, count=len(rows))
        out.append(f)
    return out


def _failures_from_pandera(exc: SchemaErrors, frame: pd.DataFrame) -> list[dict]:
    cases = exc.failure_cases.copy()
    # A data-frame-wide check reports every column of each failing row; it names its own column ("col: rule"),
    # so report it once, under that column.
    frame_wide = (cases["schema_context"] == "DataFrameSchema") & cases["check"].astype(str).str.contains(": ")
    cases.loc[frame_wide, "column"] = None
    cases.loc[frame_wide, "failure_case"] = None
    cases = cases.drop_duplicates(["column", "check", "index"])
    failures = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        check = str(check)
        if column is None or (isinstance(column, float) and np.isnan(column)):
            # Data-frame-wide checks carry their column in their name, "col: rule".
            column, _, check = check.partition(": ")
        if check.startswith("field_uniqueness") or check == "unique" or "duplicate" in check:
            check = "unique (no duplicate patient records)"
        if check == "not_nullable":
            check = "value required (not empty)"
        check = _readable_rule(check)
        index = group["index"].dropna()
        rows = sorted({int(i) + 1 for i in index if _is_int(i)})
        examples = (group["failure_case"].dropna().astype(str).str.replace(r" 00:00:00$", "", regex=True)
                    .unique()[:3].tolist())
        if not examples and column in frame.columns and rows:
            examples = [str(v.date()) if isinstance(v, pd.Timestamp) else str(v)
                        for v in frame[column].iloc[[r - 1 for r in rows[:3]]]]
        failures.append({"column": str(column), "rule": check, "count": len(rows) or len(group),
                         "rows": rows, "examples": ", ".join(examples) if examples else ""})
    return failures


_BUILTIN_RULES = (("isin(", "allowed value, one of "), ("greater_than_or_equal_to(", "value at least "),
                  ("less_than_or_equal_to(", "value at most "))


def _readable_rule(check: str) -> str:
    for prefix, words in _BUILTIN_RULES:
        if check.startswith(prefix) and check.endswith(")"):
            return words + check[len(prefix):-1]
    return check


#: The rule a patient identifier breaks when it is a bare number short enough to be one of a report's figures.
BARE_NUMBER_ID_RULE = ("not a bare number of 1 to 4 digits (the disclosure check looks for every identifier in the "
                       "public outputs and would find it among their figures): give identifiers a prefix, e.g. P0001")


def _bare_number_ids(frame: pd.DataFrame, col: str) -> list[dict]:
    """Identifiers such as 1, 2, 3 (a row number): every public report prints such numbers as counts, days or
    years, so the disclosure check would fail the run on them after building every report."""
    ids = frame[col].astype("string").str.strip()
    bad = ids.str.fullmatch(r"\d{1,4}").fillna(False).astype(bool)
    return [_failure(col, BARE_NUMBER_ID_RULE, bad, frame[col])] if bad.any() else []


def _failure(col: str, rule: str, bad: pd.Series, values: pd.Series) -> dict:
    idx = bad[bad].index
    return {"column": col, "rule": rule, "count": int(bad.sum()), "rows": [int(i) + 1 for i in idx],
            "examples": ", ".join(repr(v) for v in values[idx].head(3).tolist())}


def _merge(failures: list[dict]) -> list[dict]:
    merged: dict[tuple[str, str], dict] = {}
    for f in failures:
        key = (f["column"], f["rule"])
        if key in merged:
            rows = sorted(set(merged[key]["rows"]) | set(f["rows"]))
            merged[key].update(rows=rows, count=max(len(rows), merged[key]["count"]))
        else:
            merged[key] = dict(f)
    return list(merged.values())


def _is_int(value: object) -> bool:
    try:
        int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
    return True


def load_validated(config: AuditConfig) -> ValidatedData:
    """Read the audit's extract, providers file and optional files and validate them (raises on any error).

    The extract is checked first (against the providers file); the optional files then against the providers
    (the providers file, or the extract's providers without one), and last the extract's consultant codes
    against the consultants file.
    """
    providers = None
    if config.providers_file is not None:
        table = read_table(config.providers_file)
        missing = [c for c in ("provider_code", "provider_name") if c not in table.columns]
        if missing:
            raise DataValidationError(str(config.providers_file), [
                {"column": c, "rule": "column present", "count": 1, "rows": [],
                 "examples": "the providers file needs columns provider_code and provider_name"}
                for c in missing])
        codes, bad = code_text(table["provider_code"])
        for rule, rows in ((CODE_RULE, bad), ("not missing (every provider has a code)", codes.isna() & ~bad)):
            if rows.any():
                raise DataValidationError(str(config.providers_file), [
                    {"column": "provider_code", "rule": rule, "count": int(rows.sum()),
                     "rows": [int(i) + 1 for i in rows[rows].index],
                     "examples": ", ".join(repr(v) for v in table.loc[rows, "provider_code"].head(3))}])
        providers = table.assign(provider_code=codes)
    raw = read_table(config.source)
    data = validate(config, raw, str(config.source), providers)
    known = set(data.providers["provider_code"].astype(str))
    where = "the providers file" if providers is not None else "a provider of the extract"
    if config.consultants_file is not None:
        data.consultants = check_consultants(config.consultants_file, read_table(config.consultants_file),
                                             known, where)
        unlisted = _unlisted_consultants(config, data, data.consultants)
        if unlisted:
            raise DataValidationError(str(config.source), unlisted)
        data.warnings.extend(_consultants_elsewhere(config, data.patients, data.consultants))
    if config.statements_file is not None:
        data.statements = check_statements(config.statements_file, read_table(config.statements_file),
                                           known, where)
    if config.validation_file is not None:
        data.validation = check_validation(config.validation_file, read_table(config.validation_file),
                                           known, where)
    return data


# ---------------------------------------------------------------------------------------------------------------
# The optional files: named consultants, providers' statements and validation dates (README, "Named consultants,
# statements and validation dates"). Each is checked like the providers file: every failed rule with its column,
# rows (data rows counted from 1) and examples, all at once, and nothing is written.

CONSULTANT_COLUMNS = ["consultant_code", "consultant_name", "registration_number", "provider_code", "specialty"]
STATEMENT_COLUMNS = ["provider_code", "statement"]
VALIDATION_COLUMNS = ["provider_code", "validated_on"]
#: A UK doctor's professional registration number is the 7-digit GMC reference number (General Medical Council,
#: "The medical register": https://www.gmc-uk.org/registration-and-licensing/the-medical-register).
REGISTRATION_RULE = "registration number of 7 digits (the GMC reference number)"
#: The rule an extract's consultant code breaks when the consultants file does not list it.
UNLISTED_CONSULTANT_RULE = "consultant listed in the consultants file"


def check_consultants(path: str | Path, table: pd.DataFrame, known_providers: set[str],
                      where: str = "the providers file") -> pd.DataFrame:
    """The consultants file checked and normalised: one row per consultant and provider they work at.

    Rules: the five columns present; codes as text (``code_text``) and given; a name; a 7-digit registration
    number; the provider in ``known_providers`` (``where`` says which list that is); no consultant listed twice
    at one provider; one name, registration number and specialty per consultant (they describe the person,
    not the post); one consultant per registration number. A blank specialty is allowed (shown as not given).
    """
    failures = _missing_columns(path, table, CONSULTANT_COLUMNS, "the consultants file")
    out = pd.DataFrame(index=table.index)
    for column in ("consultant_code", "provider_code"):
        out[column] = _required_codes(table, column, failures)
    for column in ("consultant_name", "specialty"):
        out[column] = _stripped(table[column])
    blank_name = out["consultant_name"] == ""
    if blank_name.any():
        failures.append(_failure("consultant_name", "value required (not empty)", blank_name, table["consultant_name"]))
    numbers, bad = code_text(table["registration_number"])
    out["registration_number"] = numbers.fillna("").astype(str)
    wrong = bad | ~out["registration_number"].str.fullmatch(r"\d{7}")
    if wrong.any():
        failures.append(_failure("registration_number", REGISTRATION_RULE, wrong, table["registration_number"]))
    failures += _unknown_providers(out, table, known_providers, where)
    keys = out[["consultant_code", "provider_code"]]
    twice = keys.duplicated(keep=False) & (keys != "").all(axis=1)
    if twice.any():
        failures.append(_failure("consultant_code", "one row per consultant and provider (no duplicates)", twice,
                                 out["consultant_code"] + " at " + out["provider_code"]))
    coded = out[out["consultant_code"] != ""]
    for column in ("consultant_name", "registration_number", "specialty"):
        varies = coded.groupby("consultant_code")[column].transform("nunique") > 1
        if varies.any():
            rows = varies[varies]
            failures.append({"column": column, "rule": f"the same {column.replace('_', ' ')} on every row of a "
                                                       "consultant (it describes the person, at every provider)",
                             "count": len(rows), "rows": [int(i) + 1 for i in rows.index],
                             "examples": "; ".join(f"{code}: " + " / ".join(repr(v) for v in group[column].unique())
                                                   for code, group in coded[varies].groupby("consultant_code"))})
    registered = coded[coded["registration_number"] != ""]
    shared = registered.groupby("registration_number")["consultant_code"].transform("nunique") > 1
    if shared.any():
        failures.append(_failure("registration_number", "one consultant per registration number", shared,
                                 registered["registration_number"] + " (" + registered["consultant_code"] + ")"))
    if failures:
        raise DataValidationError(str(path), _merge(failures))
    return out[CONSULTANT_COLUMNS].reset_index(drop=True)


def check_statements(path: str | Path, table: pd.DataFrame, known_providers: set[str],
                     where: str = "the providers file") -> pd.DataFrame:
    """The statements file checked: a known provider code and a statement on every row, a provider once.

    A statement is the provider's own words beside its public results (its right to respond), so it is kept
    as written but for spaces at either end.
    """
    failures = _missing_columns(path, table, STATEMENT_COLUMNS, "the statements file")
    out = pd.DataFrame({"provider_code": _required_codes(table, "provider_code", failures),
                        "statement": _stripped(table["statement"])})
    blank = out["statement"] == ""
    if blank.any():
        failures.append(_blank(blank, out["provider_code"], "statement",
                               "leave out the row of a provider without a statement"))
    failures += _unknown_providers(out, table, known_providers, where) + _repeated_providers(out, table)
    if failures:
        raise DataValidationError(str(path), _merge(failures))
    return out[STATEMENT_COLUMNS].reset_index(drop=True)


def check_validation(path: str | Path, table: pd.DataFrame, known_providers: set[str],
                     where: str = "the providers file", today: dt.date | None = None) -> pd.DataFrame:
    """The validation file checked: a known provider once each, and the date it signed off its data.

    ``validated_on`` is an ISO date (YYYY-MM-DD), not after ``today`` (a sign-off cannot be in the future);
    it is returned as ISO text.
    """
    failures = _missing_columns(path, table, VALIDATION_COLUMNS, "the validation file")
    out = pd.DataFrame({"provider_code": _required_codes(table, "provider_code", failures)})
    values = table["validated_on"]
    dates = (pd.to_datetime(values, errors="coerce", format="ISO8601") if values.dtype == object
             else pd.to_datetime(values, errors="coerce"))
    given = values.notna() & (values.astype(str).str.strip() != "")
    unreadable = given & dates.isna()
    if unreadable.any():
        failures.append(_failure("validated_on", "type: date (YYYY-MM-DD)", unreadable, values))
    if (~given).any():
        failures.append(_blank(~given, out["provider_code"], "validated_on",
                               "leave out the row of a provider that has not signed off its data: it is shown as "
                               "not validated"))
    today = today or dt.date.today()
    future = dates.notna() & (dates.dt.normalize() > pd.Timestamp(today))
    if future.any():
        failures.append(_failure("validated_on", f"date not in the future (after {today})", future, values))
    out["validated_on"] = dates.dt.strftime("%Y-%m-%d").fillna("")
    failures += _unknown_providers(out, table, known_providers, where) + _repeated_providers(out, table)
    if failures:
        raise DataValidationError(str(path), _merge(failures))
    return out[VALIDATION_COLUMNS].reset_index(drop=True)


def _missing_columns(path: str | Path, table: pd.DataFrame, columns: list[str], what: str) -> list[dict]:
    """Raise naming every missing column (nothing else can be checked without them)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataValidationError(str(path), [
            {"column": c, "rule": "column present", "count": 1, "rows": [],
             "examples": f"{what} needs columns {', '.join(columns)} (file has: "
                         f"{', '.join(str(c) for c in table.columns[:20])})"} for c in missing])
    return []


def _required_codes(table: pd.DataFrame, column: str, failures: list[dict]) -> pd.Series:
    """A code column as text ("" where missing), with its type and missing-value failures added."""
    codes, bad = code_text(table[column])
    if bad.any():
        failures.append(_failure(column, CODE_RULE, bad, table[column]))
    missing = codes.isna() & ~bad
    if missing.any():
        failures.append(_failure(column, "value required (not empty)", missing, table[column]))
    return codes.fillna("").astype(str)


def _blank(blank: pd.Series, providers: pd.Series, column: str, remedy: str) -> dict:
    """A blank value of a per-provider file: its rows, the providers they belong to, and the remedy."""
    failure = _failure(column, "value required (not empty)", blank, providers)
    return {**failure, "examples": f"provider(s) {failure['examples']} ({remedy})"}


def _stripped(values: pd.Series) -> pd.Series:
    """Text without spaces at either end, "" for a missing value."""
    return values.astype("string").str.strip().fillna("").astype(str)


def _unknown_providers(out: pd.DataFrame, table: pd.DataFrame, known: set[str], where: str) -> list[dict]:
    unknown = (out["provider_code"] != "") & ~out["provider_code"].isin(known)
    if not unknown.any():
        return []
    return [_failure("provider_code", f"provider known (listed in {where})", unknown, table["provider_code"])]


def _repeated_providers(out: pd.DataFrame, table: pd.DataFrame) -> list[dict]:
    twice = out["provider_code"].duplicated(keep=False) & (out["provider_code"] != "")
    if not twice.any():
        return []
    return [_failure("provider_code", "one row per provider (no duplicates)", twice, table["provider_code"])]


def _unlisted_consultants(config: AuditConfig, data: ValidatedData, consultants: pd.DataFrame) -> list[dict]:
    """The extract's records whose consultant code the consultants file does not list (rows of the extract)."""
    codes = data.patients["consultant_code"]
    unlisted = codes.notna() & ~codes.isin(set(consultants["consultant_code"]))
    if not unlisted.any():
        return []
    missing = sorted(codes[unlisted].astype(str).unique())
    shown = ", ".join(repr(c) for c in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return [{"column": config.columns["consultant_code"], "rule": UNLISTED_CONSULTANT_RULE,
             "count": int(unlisted.sum()), "rows": [int(i) + 1 for i in unlisted[unlisted].index],
             "examples": f"{len(missing)} consultant code(s) not in {config.consultants_file}: {shown}; add a row for "
                         "each (consultant_code, consultant_name, registration_number, provider_code, specialty) "
                         "to that file, or correct the code in the extract"}]


def _consultants_elsewhere(config: AuditConfig, patients: pd.DataFrame, consultants: pd.DataFrame) -> list[str]:
    """A warning for consultants with records at a provider the consultants file does not list them at: their
    results are published there too (by name), so the file is probably missing a row."""
    worked = patients.dropna(subset=["consultant_code", "provider_code"])
    pairs = set(zip(worked["consultant_code"].astype(str), worked["provider_code"].astype(str), strict=True))
    listed = set(zip(consultants["consultant_code"], consultants["provider_code"], strict=True))
    extra = sorted(pairs - listed)
    if not extra:
        return []
    shown = ", ".join(f"{c} at {p}" for c, p in extra[:10]) + (" ..." if len(extra) > 10 else "")
    return [f"{config.consultants_file}: {len(extra)} consultant(s) with records at a provider the file does not "
            f"list them at (add a row for each): {shown}"]
