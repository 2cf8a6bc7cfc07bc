"""Reading audit extracts (CSV or Parquet) into a raw table, with clear errors.

Everything in a CSV is read as text: the schema, not pandas' guessing, decides
what a column's type is, so a stray letter in an age column is reported as a
type failure on that row rather than silently turning the column into text.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd

from auditreport.errors import DataValidationError

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes: the data fingerprint recorded with every output.

    A missing file is a data problem the user can fix, reported like any other.
    """
    if not Path(path).is_file():
        raise DataValidationError(str(path), [_file_failure("file exists", "the data file was not found")])
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (UTF-8, comma-separated, header row) or Parquet file.

    Raises :class:`DataValidationError` naming the file for an absent, empty,
    undecodable or malformed file.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise DataValidationError(src, [_file_failure("file exists", "the data file was not found")])
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataValidationError(src, [_file_failure(
            "file type", f"'{suffix}' is not supported; use {', '.join(SUPPORTED_SUFFIXES)}")])
    if path.stat().st_size == 0:
        raise DataValidationError(src, [_file_failure("not empty", "the file is empty")])
    if suffix == ".csv":
        return _read_csv(path)
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataValidationError(src, [_file_failure("readable Parquet", str(exc).splitlines()[0])]) from None


def _read_csv(path: Path) -> pd.DataFrame:
    src = str(path)
    try:
        # utf-8-sig: files saved by spreadsheet programs start with a byte-order mark.
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                         encoding="utf-8-sig", on_bad_lines="error")
    except UnicodeDecodeError as exc:
        line = _line_of_offset(path, exc.start)
        raise DataValidationError(src, [_file_failure(
            "UTF-8 encoding", f"byte {exc.object[exc.start:exc.start + 1]!r} at line {line} is not UTF-8; "
            "save the file as UTF-8", rows=[line])]) from None
    except pd.errors.EmptyDataError:
        raise DataValidationError(src, [_file_failure("not empty", "the file has no header row")]) from None
    except pd.errors.ParserError as exc:
        raise DataValidationError(src, [_file_failure(
            "consistent fields", f"malformed CSV (truncated or unbalanced quotes?): {exc}")]) from None
    if df.shape[1] == 1 and len(df.columns[0]) > 1:
        header = df.columns[0]
        sniffed = _sniff_delimiter(header)
        if sniffed and sniffed != ",":
            raise DataValidationError(src, [_file_failure(
                "comma-separated", f"the header '{header[:80]}' looks {sniffed!r}-separated; "
                "export the file with commas")])
    short = _short_rows(path, df.shape[1])
    if short:
        truncated = not _ends_with_newline(path) and short[-1][0] == len(df)
        rows = [r for r, _ in short]
        first_row, first_n = short[0]
        detail = (f"data row {first_row} has {first_n} of {df.shape[1]} fields"
                  + (f" ({len(short) - 1} more short row(s))" if len(short) > 1 else ""))
        if truncated:
            detail += "; the file ends mid-line, so it was probably truncated in transfer"
        raise DataValidationError(src, [{"column": "(file)", "rule": "complete lines (every row has every field)",
                                          "count": len(short), "rows": rows, "examples": detail}])
    return df


def _short_rows(path: Path, n_fields: int) -> list[tuple[int, int]]:
    """(data row, fields) of every row with fewer fields than the header (pandas pads them silently)."""
    short = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        row_number = 0
        for row in reader:
            if not row:  # blank lines are skipped by pandas too
                continue
            row_number += 1
            if len(row) < n_fields:
                short.append((row_number, len(row)))
    return short


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) in (b"\n", b"\r")


def _sniff_delimiter(header: str) -> str | None:
    try:
        return csv.Sniffer().sniff(header, delimiters=";\t|,").delimiter
    except csv.Error:
        return None


def _line_of_offset(path: Path, offset: int) -> int:
    with open(path, "rb") as fh:
        return fh.read(offset).count(b"\n") + 1


def _file_failure(rule: str, message: str, rows: list | None = None) -> dict:
    return {"column": "(file)", "rule": rule, "count": 1, "rows": rows or [], "examples": message}
