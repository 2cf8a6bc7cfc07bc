"""Check what was actually written to the public outputs for disclosive numbers.

Suppression is applied when an output is made; this module checks the files
afterwards, from the bytes on disk, so a formatting slip, a new section that
forgot to suppress, or a copy of the wrong file is caught before anything is
published. It reads:

* HTML: every element carrying ``data-count`` (report code labels each count
  cell and each count in a sentence that way, see ``presentation.tables.count``)
  must not hold a number from 1 to the threshold; sentences are also scanned
  for "<n> deaths/patients/..." in case a count was written without the label.
* PDF (text extracted with PDFium): the same sentence scan, and every table row
  that holds counts in the sibling HTML (same stem) is found in the PDF text by
  its label and must contain no bare whole number from 1 to the threshold. A
  line that starts with the label but goes on in words ("Institution 21 had
  more deaths ... on 1 degree of freedom") is a sentence, left to the sentence
  scan.
* CSV (``indicators.csv``, one row per unit, measure and statistic): the count
  columns must hold no small number: the denominator (eligible records) of
  every row, and the numerator and observed events of proportions, survival and
  Cox rows; for a mean or ratio measure those two are sums of values (days,
  hours), not counts of patients, and are not read as counts. For each
  measure, statistic and published total (national; a provider over its
  consultants), no blanked count may be recoverable: either none is blanked or
  at least two are and the hidden total exceeds the threshold.
* Every file: no patient identifier from the validated data appears as a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

from auditreport.data.loading import file_sha256
from auditreport.errors import AuditReportError

COUNT_COLUMNS = ("numerator", "denominator", "observed")
#: Columns that count patients or events only for measures of counts (proportion, survival): for a mean or
#: ratio measure they hold a sum of values.
EVENT_COLUMNS = ("numerator", "observed")
#: Kinds of measure whose numerator and observed are sums of values, not counts.
SUM_KINDS = ("mean", "ratio")
#: Words for people or events that, after a whole number in running text, make it a count.
COUNT_WORDS = ("deaths?", "patients?", "procedures?", "cases?", "records?", "people", "operations?",
               "admissions?", "survivors?", "events?")


def prose_count_pattern(extra_words: Iterable[str] = ()) -> re.Pattern[str]:
    """A count in running text: a whole number followed by a word for people or events.

    ``extra_words`` are the audit's own words for its activity (``wording.activity`` and
    ``activity_singular``: "stays", "stay"), matched as written.
    """
    words = list(COUNT_WORDS) + sorted({re.escape(w.strip()) for w in extra_words if w and w.strip()})
    return re.compile(rf"(?<![\d.,%])(\d{{1,3}}(?:,\d{{3}})*|\d+)\s+(?:{'|'.join(words)})\b", re.IGNORECASE)


_PROSE_COUNT = prose_count_pattern()
_BARE_INT = re.compile(r"(?<![\w.,%/:-])(\d{1,3}(?:,\d{3})*|\d+)(?![\w.,%/:-]|\.\d)")
_WORD = re.compile(r"[A-Za-z0-9_-]+")
#: After a row's label, lower-case words mean running text that begins with the label, not the row
#: (table cells after a label are numbers, marks and short capitalised flags).
_SENTENCE_AFTER_LABEL = re.compile(r"^\s+[a-z]+\s+[a-z]+\s+[a-z]+\b")


class DisclosureError(AuditReportError):
    """A public output contains a small number or a patient identifier."""

    exit_code = 5


@dataclass
class Finding:
    path: str
    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.text!r}"


@dataclass
class CheckReport:
    threshold: int
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def raise_if_failed(self, max_shown: int = 20) -> None:
        if self.findings:
            shown = "\n".join(f"  {f}" for f in self.findings[:max_shown])
            more = f"\n  ... and {len(self.findings) - max_shown} more" if len(self.findings) > max_shown else ""
            raise DisclosureError(f"disclosure check failed on {len(self.files)} public file(s): "
                                  f"{len(self.findings)} finding(s)\n{shown}{more}")


def _to_int(text: str) -> int | None:
    text = text.strip().replace(",", "")
    return int(text) if text.isdigit() else None


def _small(text: str, threshold: int) -> bool:
    value = _to_int(text)
    return value is not None and 1 <= value <= threshold


class _CountCells(HTMLParser):
    """Collects the text of ``data-count`` elements, table rows with counts, and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.counts: list[str] = []
        self.count_rows: list[list[tuple[str, bool]]] = []  # (cell text, holds a count) of rows with a count
        self.text: list[str] = []
        self._depth: list[int] = []  # open data-count elements' text buffers (indices)
        self._buffers: list[list[str]] = []
        self._row: list[tuple[str, bool]] | None = None
        self._row_has_count = False
        self._cell: list[str] | None = None
        self._cell_has_count = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "tr":
            self._row, self._row_has_count = [], False
        elif tag in ("td", "th") and self._row is not None:
            self._cell, self._cell_has_count = [], False
        if "data-count" in names:
            self._buffers.append([])
            self._depth.append(1)
            if self._row is not None:
                self._row_has_count = True
            if self._cell is not None:
                self._cell_has_count = True
        elif self._depth:
            self._depth[-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if self._depth:
            self._depth[-1] -= 1
            if self._depth[-1] == 0:
                self._depth.pop()
                self.counts.append("".join(self._buffers.pop()))
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append((" ".join("".join(self._cell).split()), self._cell_has_count))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row_has_count:
                self.count_rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        for buffer in self._buffers:
            buffer.append(data)
        if self._cell is not None:
            self._cell.append(data)


#: A stated range ("between 1 and 7 patients", "from 1 to 7 records") describes the rule, not a count.
_RANGE = re.compile(r"\b(?:between|from)\s+\d+\s+(?:and|to)\s+\d+", re.IGNORECASE)


_PAGE_MARK = re.compile(r"\bpage \d+ of \d+\b", re.IGNORECASE)


def _prose_findings(path: str, text: str, threshold: int, where: str,
                    pattern: re.Pattern[str] = _PROSE_COUNT) -> list[Finding]:
    # A PDF's running footer ("page 4 of 7") runs into the next heading ("Case mix") in extracted text.
    flat = _RANGE.sub("a range", _PAGE_MARK.sub("", " ".join(text.split())))
    return [Finding(path, where, flat[max(0, m.start() - 40):m.end() + 10])
            for m in pattern.finditer(flat) if _small(m.group(1), threshold)]


def check_html(path: Path, threshold: int,
               pattern: re.Pattern[str] = _PROSE_COUNT) -> tuple[list[Finding], _CountCells]:
    parser = _CountCells()
    parser.feed(path.read_text(encoding="utf-8"))
    findings = [Finding(str(path), "count cell", c) for c in parser.counts if _small(c, threshold)]
    findings += _prose_findings(str(path), " ".join(parser.text), threshold, "sentence", pattern)
    return findings, parser


def pdf_text(path: Path) -> str:
    """The text of every page, in reading order, one line per line of print.

    PDFium (the PDF engine of Chromium) reads a report's text about 20 times faster than pypdf, which
    matters because every public PDF of a period is read back on each publication.
    """
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        pages = []
        for page in document:
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
    finally:
        document.close()
    # PDFium marks a hyphen at a line break as U+FFFE and joins the two lines; give the hyphen back.
    return "\n".join(pages).replace("\r\n", "\n").replace("\r", "\n").replace("\ufffe", "-")


def check_pdf(path: Path, threshold: int, count_rows: Iterable[list[tuple[str, bool]]] = (),
              text: str | None = None, pattern: re.Pattern[str] = _PROSE_COUNT) -> list[Finding]:
    """Check a PDF's text (extracted here unless ``text`` is given) against its sibling HTML's count rows."""
    if text is None:
        text = pdf_text(path)
    findings = _prose_findings(str(path), text, threshold, "PDF sentence", pattern)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for row in count_rows:
        label = row[0][0] if row else ""
        if not label:
            continue
        # Numbers that the HTML row shows outside its count cells (a unit code such as "3", a median
        # of "5 days") are not counts; the count cells themselves were checked in the HTML.
        not_counts = {m.group(1) for cell, is_count in row if not is_count for m in _BARE_INT.finditer(cell)}
        for line in lines:
            if line == label or not line.startswith(label + " "):
                continue
            rest = line[len(label):]
            if _SENTENCE_AFTER_LABEL.match(rest):
                continue
            bad = [m.group(1) for m in _BARE_INT.finditer(rest)
                   if _small(m.group(1), threshold) and m.group(1) not in not_counts]
            if bad:
                findings.append(Finding(str(path), f"PDF table row '{label}'", line))
    return findings


def check_csv(path: Path, threshold: int, sum_measures: Iterable[str] = ()) -> list[Finding]:
    """Small counts and recoverable blanked counts in an open-data CSV.

    ``sum_measures`` are the ids of mean and ratio measures, whose numerator and observed are sums of
    values: only their denominator is a count.
    """
    findings: list[Finding] = []
    # Codes are text: a unit coded NA is a unit, not a missing value (only a blank cell is missing).
    data = pd.read_csv(path, dtype={"unit_id": str, "parent_id": str, "measure": str, "statistic": str},
                       keep_default_na=False, na_values=[""])
    sums = data["measure"].isin(set(sum_measures)) if "measure" in data else pd.Series(False, index=data.index)
    for col in COUNT_COLUMNS:
        if col in data:
            values = pd.to_numeric(data[col], errors="coerce")
            counted = ~sums if col in EVENT_COLUMNS else pd.Series(True, index=data.index)
            for i in data.index[(values >= 1) & (values <= threshold) & counted]:
                findings.append(Finding(str(path), f"row {i + 2} column {col}", str(data.at[i, col])))
    if {"level", "measure", "statistic", "numerator", "denominator", "unit_id"} <= set(data.columns):
        findings += _recoverable(path, data, threshold, set(sum_measures))
    return findings


def _recoverable(path: Path, data: pd.DataFrame, threshold: int, sum_measures: set[str]) -> list[Finding]:
    """Blanked counts that a published total would give back (total minus the others)."""
    findings = []
    for (measure, statistic), rows in data.groupby(["measure", "statistic"], sort=False):
        columns = ("denominator",) if measure in sum_measures else ("numerator", "denominator")
        for column in columns:
            nat = rows.loc[rows["level"] == "national", column]
            groups = [("national", rows[rows["level"] == "provider"], nat)]
            prov = rows[rows["level"] == "provider"].set_index("unit_id")[column]
            for parent, cons in rows[rows["level"] == "consultant"].groupby("parent_id"):
                groups.append((f"provider {parent}", cons, prov[[parent]] if parent in prov.index else nat[:0]))
            for name, cells, total in groups:
                if total.empty or total.isna().all() or cells.empty:
                    continue
                blank = cells[column].isna()
                if not blank.any():
                    continue
                hidden = float(total.iloc[0]) - float(cells.loc[~blank, column].sum())
                if blank.sum() < 2 or hidden <= threshold:
                    findings.append(Finding(str(path), f"{measure} {statistic} {column} under {name}",
                                            f"{int(blank.sum())} blanked cell(s) totalling {hidden:g}"))
    return findings


def check_identifiers(path: Path, text: str, patient_ids: set[str]) -> list[Finding]:
    if not patient_ids:
        return []
    return [Finding(str(path), "patient identifier", word) for word in set(_WORD.findall(text)) & patient_ids]


def public_files(period_dir: Path) -> list[Path]:
    """Every public output of one audit period: the site, public reports, the national report, open data."""
    out = Path(period_dir)
    files = [p for p in sorted((out / "site").rglob("*")) if p.is_file()]
    files += sorted((out / "providers").glob("*/public.html")) + sorted((out / "providers").glob("*/public.pdf"))
    files += [p for p in (out / "national" / "national.html", out / "national" / "national.pdf",
                          out / "indicators.csv") if p.is_file()]
    return files


def check_files(files: Iterable[Path], threshold: int, patient_ids: Iterable[str] = (),
                sum_measures: Iterable[str] = (), count_words: Iterable[str] = ()) -> CheckReport:
    """Check each public file (HTML, PDF, CSV) as written; PDFs are checked against their sibling HTML.

    ``sum_measures``: ids of the mean and ratio measures (see :func:`check_csv`); ``count_words``: the
    audit's words for its activity, which mark a count in running text (see :func:`prose_count_pattern`).
    """
    ids = {str(i) for i in patient_ids}
    sum_measures = set(sum_measures)
    pattern = prose_count_pattern(count_words)
    report = CheckReport(threshold)
    files = list(files)
    rows_by_stem: dict[Path, list[list[str]]] = {}
    # The site holds byte-identical copies of the public reports: a file whose bytes (and, for a PDF,
    # whose sibling HTML's bytes) were already checked gets the same findings without a second read.
    done: dict[tuple[str, str, str], tuple[Path, list[Finding]]] = {}
    html_digest: dict[Path, str] = {}
    for path in sorted(files, key=lambda p: p.suffix != ".html"):  # HTML first: PDFs use its table rows
        report.files.append(str(path))
        suffix, stem = path.suffix.lower(), path.with_suffix("")
        key = (suffix, file_sha256(path), html_digest.get(stem, "") if suffix == ".pdf" else "")
        if suffix == ".html":
            html_digest[stem] = key[1]
        if key in done:
            first, found = done[key]
            report.findings += [Finding(str(path), f.where, f.text) for f in found]
            if suffix == ".html":
                rows_by_stem[stem] = rows_by_stem[first.with_suffix("")]
            continue
        if suffix == ".html":
            found, parser = check_html(path, threshold, pattern)
            rows_by_stem[path.with_suffix("")] = parser.count_rows
            text = " ".join(parser.text)
        elif suffix == ".pdf":
            text = pdf_text(path)
            found = check_pdf(path, threshold, rows_by_stem.get(path.with_suffix(""), []), text=text, pattern=pattern)
        elif suffix == ".csv":
            found = check_csv(path, threshold, sum_measures) if path.name != "data_dictionary.csv" else []
            text = path.read_text(encoding="utf-8")
        else:
            found, text = [], path.read_text(encoding="utf-8", errors="replace")
        found = found + check_identifiers(path, text, ids)
        done[key] = (path, found)
        report.findings += found
    return report


def patient_ids_of(config) -> set[str]:
    """The patient identifiers of an audit's source extract (read here, never written anywhere)."""
    column = config.columns.get("patient_id")
    if not column:
        return set()
    source = Path(config.source)
    if source.suffix.lower() == ".parquet":  # read one column, not the whole extract
        table = pd.read_parquet(source, columns=[column])
    else:
        from auditreport.data.loading import read_table

        table = read_table(source)
    return set(table[column].dropna().astype(str))


def check_period(config, period_dir: Path) -> CheckReport:
    """Check every public output of one built audit period against the audit's threshold and its patients."""
    return check_files(public_files(period_dir), config.suppression_threshold, patient_ids_of(config),
                       sum_measures=[m.id for m in config.measures if m.kind in SUM_KINDS],
                       count_words=(config.wording.activity, config.wording.activity_singular))
