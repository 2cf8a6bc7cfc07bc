"""The results bundle's declared format: its version, its tables and their columns.

The bundle is the contract between the national stage (which writes it) and every report, the site and
``reproduce`` (which read it). Its tables are declared here, column by column with a kind, and checked when
the bundle is written, so a change to what the national stage computes that a reader has not been told about
fails at once, in the national stage, rather than in a notebook of every report.

``FORMAT_VERSION`` is written to ``metadata.json``. Raise it whenever a table, a column, a kind or the meaning
of a metadata entry changes; a bundle of any other version is refused on load (the remedy is always to rerun
the national stage, which the pipeline does by itself when it finds one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from pandas.api import types

#: Version of the bundle format this code writes and reads (1: the first versioned format; 2: measures, issue
#: #14: rows per measure and statistic, ``measure`` in every per-measure table, the exclusions table; 3: issue
#: #15: publication policy, named consultants and provider notes, the public breakdown tables).
FORMAT_VERSION = 3

#: Column kinds and the pandas dtypes each accepts. "text" is str values (NaN/NA allowed for a missing code).
KINDS = ("text", "float", "int", "bool", "datetime")

#: The indicator table's columns (one row per unit, measure and statistic), shared by the public copy.
_INDICATOR_COLUMNS = {
    "audit": "text", "period": "text", "measure": "text", "statistic": "text", "level": "text",
    "unit_id": "text", "unit_name": "text", "parent_id": "text", "numerator": "float", "denominator": "float",
    "observed": "float", "expected": "float", "value": "float", "lower95": "float", "upper95": "float",
    "lower998": "float", "upper998": "float", "target": "float", "limit_lower95": "float",
    "limit_upper95": "float", "limit_lower998": "float", "limit_upper998": "float", "flag": "text",
    "method": "text",
}


@dataclass(frozen=True)
class TableSchema:
    """One bundle table: its fixed columns and kinds, and column-name prefixes for per-audit columns.

    ``prefixed`` covers columns named after the audit's own risk factors or exclusion reasons (the data
    quality table has one ``complete: <factor>`` column per factor); any column that is neither declared
    nor prefixed is refused.
    """

    name: str
    description: str
    columns: dict[str, str]
    prefixed: dict[str, str] = field(default_factory=dict)

    def kind_of(self, column: str) -> str | None:
        if column in self.columns:
            return self.columns[column]
        return next((kind for prefix, kind in self.prefixed.items() if column.startswith(prefix)), None)


TABLES: dict[str, TableSchema] = {t.name: t for t in (
    TableSchema("indicators", "every unit's indicators, intervals, funnel limits and flags (full counts)",
                dict(_INDICATOR_COLUMNS)),
    TableSchema("indicators_public", "the indicator table after disclosure control (small counts blanked), published measures only",
                {**_INDICATOR_COLUMNS, "suppressed": "bool"}),
    TableSchema("funnels", "smooth 95% and 99.8% funnel limit curves per measure, statistic and level",
                {"measure": "text", "statistic": "text", "level": "text", "x": "float", "lower95": "float",
                 "upper95": "float", "lower998": "float", "upper998": "float", "target": "float"}),
    TableSchema("km", "Kaplan-Meier curves per survival measure, provider and nationally",
                {"measure": "text", "unit_id": "text", "time": "float", "at_risk": "int", "events": "int", "censored": "int",
                 "survival": "float", "lower": "float", "upper": "float"}),
    TableSchema("casemix", "share of each risk factor's categories per provider and nationally",
                {"unit_id": "text", "variable": "text", "category": "text", "n": "int", "share": "float"}),
    TableSchema("quality", "records submitted, excluded by reason, completeness and imputation per provider",
                {"unit_id": "text", "records_submitted": "int", "records_analysed": "int",
                 "records_excluded": "int", "no provider code": "int"},
                prefixed={"excluded: ": "int", "complete: ": "float", "imputed: ": "int"}),
    TableSchema("risk", "each analysed record's predicted risk and 0/1 outcome per adjusted proportion measure",
                {"measure": "text", "provider_code": "text", "consultant_code": "text",
                 "procedure_date": "datetime", "y": "float", "p": "float"}),
    TableSchema("survival_tests", "median survival and log-rank test of each provider against the rest",
                {"measure": "text", "level": "text", "unit_id": "text", "patients": "int", "deaths": "int", "median": "float",
                 "median_lower": "float", "median_upper": "float", "median_convention": "text",
                 "logrank_observed": "float", "logrank_expected": "float", "logrank_chi2": "float",
                 "logrank_p": "float"}),
    TableSchema("monitoring", "RA-CUSUM and VLAD series of every monitored measure and provider, record by record",
                {"measure": "text", "provider_code": "text", "index": "int", "procedure_date": "datetime", "outcome": "int",
                 "p": "float", "s_upper": "float", "s_lower": "float", "vlad": "float", "signal_upper": "bool",
                 "signal_lower": "bool"}),
    TableSchema("exclusions", "every record a measure leaves out, by reason, per provider and nationally",
                {"measure": "text", "unit_id": "text", "reason": "text", "records": "int"}),
    TableSchema("consultants", "every consultant at every provider they have analysed records at or are listed "
                "at in the consultants file, with their name, registration number and specialty (blank without one)",
                {"consultant_code": "text", "consultant_name": "text", "registration_number": "text",
                 "provider_code": "text", "specialty": "text", "records": "int"}),
    TableSchema("provider_notes", "every provider's statement (right to respond) and the date it signed off its "
                "data (ISO text), blank where it gave none",
                {"provider_code": "text", "statement": "text", "validated_on": "text"}),
    # The breakdowns as public outputs show them (analysis.breakdowns): every provider's cell and the national
    # totals, a hidden one blank with ``suppressed`` true, after two-way suppression across providers.
    TableSchema("casemix_public", "the case mix after two-way small-number suppression (hidden counts and their "
                "shares blank)",
                {"unit_id": "text", "variable": "text", "category": "text", "n": "float", "share": "float",
                 "suppressed": "bool"}),
    TableSchema("quality_public", "data quality counts (records, excluded by reason, missing and imputed by field) "
                "after two-way small-number suppression",
                {"unit_id": "text", "item": "text", "records": "float", "suppressed": "bool"}),
    TableSchema("exclusions_public", "each measure's exclusions by reason after two-way small-number suppression",
                {"measure": "text", "unit_id": "text", "reason": "text", "records": "float", "suppressed": "bool"}),
)}


def _has_kind(series: pd.Series, kind: str) -> bool:
    if kind == "text":
        return types.is_string_dtype(series.dtype) and types.infer_dtype(series, skipna=True) in ("string", "empty")
    if kind == "float":
        return types.is_float_dtype(series.dtype)
    if kind == "int":
        return types.is_integer_dtype(series.dtype)
    if kind == "bool":
        return types.is_bool_dtype(series.dtype)
    return types.is_datetime64_any_dtype(series.dtype)


def table_problems(name: str, table: pd.DataFrame) -> list[str]:
    """Every way ``table`` differs from the declared table ``name`` (empty: it conforms).

    Columns must be exactly the declared ones (plus prefixed ones) with their kinds. An empty table is
    checked for its columns only: with no rows, pandas cannot say what kind a column holds.
    """
    schema = TABLES[name]
    problems = [f"column '{c}' missing" for c in schema.columns if c not in table.columns]
    for column in table.columns:
        kind = schema.kind_of(str(column))
        if kind is None:
            problems.append(f"column '{column}' not declared")
        elif len(table) and not _has_kind(table[column], kind):
            problems.append(f"column '{column}' should be {kind}, is {table[column].dtype}"
                            + _non_text_rows(table[column], kind))
    return problems


def _non_text_rows(series: pd.Series, kind: str) -> str:
    """For a text column of Python objects, the first rows holding something else than a string."""
    if kind != "text" or series.dtype != object:
        return ""
    bad = series.index[~series.map(lambda v: isinstance(v, str) or v is None or v != v)]  # v != v: NaN
    shown = ", ".join(f"row {i}: {series.at[i]!r}" for i in bad[:3])
    return f" ({len(bad)} value(s) not text: {shown}{', ...' if len(bad) > 3 else ''})"
