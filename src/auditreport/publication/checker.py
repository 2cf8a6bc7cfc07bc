"""Check what was actually written to the public outputs for disclosive numbers (METHODS.md section 8).

Suppression is applied when an output is made; this module checks the files
afterwards, from the bytes on disk, so a formatting slip, a new section that
forgot to suppress, or a copy of the wrong file is caught before anything is
published. It reads counts by their markup and position, never by guessing
which number in a sentence is a count ("the 1 degree of freedom" is not one):

* HTML: every element carrying ``data-count`` (report code marks each count
  cell and each count in a sentence that way, see ``presentation.tables``) must
  not hold a number from 1 to the threshold, unless it also carries
  ``data-count-measure="<id>"`` (a count of a measure's unit result: events,
  records analysed, observed) and that measure is published under the
  ``outcomes-in-full`` policy, which publishes every unit's counts as the audits
  that publish do (contract section 5). Counts without a measure (case mix,
  demographics, data quality, exclusions) are breakdowns: never exempt.
* PDF, through its HTML twin (same stem): each table row of the HTML with a
  marked, non-exempt count cell is found in the PDF text by its label followed
  by the row's other words as the HTML has them, and the count is read at that
  cell's position in the row, so a sentence that begins with the label, or
  digits in the label or in other cells, are never taken for the count.
* CSV (``indicators.csv`` and per-measure open data, one row per unit, measure
  and statistic): the count columns (the denominator of every row; the
  numerator and observed events of proportions, survival and Cox rows, which
  for a mean or ratio measure are sums of values) must hold no small number in
  rows whose ``policy`` is not ``outcomes-in-full`` (every row when the column
  is absent, as in bundles before the publication policy); a ``low_volume``
  row must show no figure of its own (its figures are in the pooled group); and
  under the small-numbers policy no blanked count may be recoverable from a
  published total (national; a provider over its consultants): either none is
  blanked, or at least two are and the hidden total exceeds the threshold.
* Every file: no patient identifier from the validated data appears as a word.

Every finding names its file, where in it, the rule broken and the text found.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from auditreport.bundle import BUNDLE_DIR
from auditreport.data.loading import file_sha256
from auditreport.errors import AuditReportError
from auditreport.rules.disclosure import LOW_VOLUME_ID, OUTCOMES_IN_FULL

COUNT_COLUMNS = ("numerator", "denominator", "observed")
#: Columns that count patients or events only for measures of counts (proportion, survival): for a mean or
#: ratio measure they hold a sum of values.
EVENT_COLUMNS = ("numerator", "observed")
#: Kinds of measure whose numerator and observed are sums of values, not counts.
SUM_KINDS = ("mean", "ratio")
#: What a low-volume unit's own row must leave blank: its figures are in the pool (contract section 4;
#: observed too, which for a proportion is the numerator itself).
LOW_VOLUME_BLANK = ("numerator", "observed", "value", "lower95", "upper95", "lower998", "upper998", "flag",
                    "expected", "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998")

#: The rules a finding can break, as the findings file and the error name them.
RULES = {
    "small-count": "an HTML count (data-count) from 1 to the threshold that its policy does not publish",
    "small-count-pdf": "a PDF table's count, read at its column's position, from 1 to the threshold",
    "small-count-csv": "an open-data count column from 1 to the threshold under the small-numbers policy",
    "low-volume-shown": "a low-volume unit's own row shows a figure that belongs in the pooled group",
    "recoverable": "a blanked count that a published total gives back (total minus the other cells)",
    "patient-identifier": "a patient identifier of the extract appears in a public file",
}

_WORD = re.compile(r"[A-Za-z0-9_-]+")
_PAGE_MARK = re.compile(r"\bpage \d+ of \d+\b", re.IGNORECASE)
#: Elements that start a new run of text (a count's context does not reach back past one).
_BLOCKS = frozenset({"p", "li", "td", "th", "caption", "div", "section", "h1", "h2", "h3", "h4", "h5", "h6",
                     "dt", "dd", "figcaption", "tr", "table"})


class DisclosureError(AuditReportError):
    """A public output contains a small number or a patient identifier: nothing was published."""

    exit_code = 5

    def __init__(self, message: str, findings_file: Path | None = None):
        super().__init__(message)
        self.findings_file = findings_file


@dataclass
class Finding:
    path: str
    where: str
    rule: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.rule}: {self.text!r}"


@dataclass
class CheckReport:
    threshold: int
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: Where every finding was written (``publication.site.publish`` sets it), named in the error.
    findings_file: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def raise_if_failed(self, max_shown: int = 10) -> None:
        """Raise :class:`DisclosureError` naming the findings file (every finding) and showing the first few."""
        if not self.findings:
            return
        shown = "\n".join(f"  {f}" for f in self.findings[:max_shown])
        more = len(self.findings) - max_shown
        where = (f"every finding is in {self.findings_file}" if self.findings_file is not None
                 else "the first are listed below")
        raise DisclosureError(
            f"disclosure check failed on {len(self.files)} public file(s): {len(self.findings)} finding(s); "
            f"nothing was published (the previous site and indicators.csv are unchanged); {where}\n{shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\n  remedy: withhold the counts named (counts of 1 to the threshold in breakdowns, and in a "
              "measure's results under small-numbers-everywhere), or mark a count of a measure's unit result "
              "with data-count-measure so its policy applies; then run again", self.findings_file)


def _to_int(text: str) -> int | None:
    text = text.strip().replace(",", "")
    return int(text) if text.isdigit() else None


def _small(text: str, threshold: int) -> bool:
    value = _to_int(text)
    return value is not None and 1 <= value <= threshold


class Cell(NamedTuple):
    """A table cell as the checker sees it: its text, whether it is a count, and of which measure."""

    text: str
    count: bool
    measure: str | None


class _CountCells(HTMLParser):
    """Collects the ``data-count`` elements (text, measure, where), the table rows holding one, and all text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.counts: list[tuple[str, str | None, str]] = []
        self.count_rows: list[list[Cell]] = []
        self.text: list[str] = []
        self._open: list[list] = []  # per open data-count element: [depth, text parts, measure, where]
        self._row: list[Cell] | None = None
        self._row_has_count = False
        self._cell: list[str] | None = None
        self._cell_count: tuple[bool, str | None] = (False, None)
        self._skip = 0
        self._tail = ""  # the last words of text before here: where a count in a sentence is

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        if tag in _BLOCKS:
            self._tail = ""  # a count's context is the words before it in its own paragraph or cell
        if tag == "tr":
            self._row, self._row_has_count = [], False
        elif tag in ("td", "th") and self._row is not None:
            self._cell, self._cell_count = [], (False, None)
        if "data-count" in named:
            measure = named.get("data-count-measure") or None
            if self._row is not None:
                label = self._row[0].text if self._row else "".join(self._cell or ())
                where = f"table row '{label}', column {len(self._row) + 1}"
            else:
                before = " ".join(self._tail.split())
                where = f"text after '{before}'" if before else "text, at the start of a paragraph"
            self._open.append([1, [], measure, where])
            if self._row is not None:
                self._row_has_count = True
            if self._cell is not None:
                self._cell_count = (True, measure)
        elif self._open:
            self._open[-1][0] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if self._open:
            self._open[-1][0] -= 1
            if self._open[-1][0] == 0:
                _, parts, measure, where = self._open.pop()
                self.counts.append((" ".join("".join(parts).split()), measure, where))
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(Cell(" ".join("".join(self._cell).split()), *self._cell_count))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row_has_count:
                self.count_rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        self._tail = (self._tail + data)[-60:]
        for element in self._open:
            element[1].append(data)
        if self._cell is not None:
            self._cell.append(data)


def exempt(measure: str | None, exempt_measures: Iterable[str]) -> bool:
    """A count is exempt from the small-numbers rule only if it is a measure's unit result (marked
    ``data-count-measure``) and that measure publishes its outcomes in full."""
    return measure is not None and measure in exempt_measures


def exempt_measures_of(meta: dict) -> frozenset[str]:
    """The measures whose unit results are published in full, from a bundle's metadata.

    ``publication.measure_policies`` gives each measure's effective policy; a measure not listed takes
    ``publication.policy`` (default outcomes-in-full). A bundle without ``publication`` (made before the
    policy existed) published small numbers everywhere: no measure is exempt.
    """
    publication = meta.get("publication")
    if not publication:
        return frozenset()
    default = publication.get("policy", OUTCOMES_IN_FULL)
    policies = publication.get("measure_policies") or {}
    ids = {m["id"] for m in meta.get("measures", [])} | set(policies)
    return frozenset(i for i in ids if policies.get(i, default) == OUTCOMES_IN_FULL)


def check_html(path: Path, threshold: int,
               exempt_measures: Iterable[str] = frozenset()) -> tuple[list[Finding], _CountCells]:
    """Small counts among an HTML file's ``data-count`` elements (and the parsed rows, for its PDF twin)."""
    parser = _CountCells()
    parser.feed(path.read_text(encoding="utf-8"))
    exempt_set = frozenset(exempt_measures)
    findings = [Finding(str(path), where + (f" (measure {measure})" if measure else " (breakdown count)"),
                        "small-count", text)
                for text, measure, where in parser.counts
                if _small(text, threshold) and not exempt(measure, exempt_set)]
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


def _word(word: str) -> str:
    """A word as compared between the HTML and the PDF text: case aside (CSS may capitalise), and without
    hyphens (a word hyphenated at a line break comes back from PDFium as one word with a hyphen)."""
    return word.replace("-", "").replace("\u00ad", "").casefold()


def row_words(row: Sequence[Cell]) -> list[tuple[str, int | None, Cell | None]]:
    """The words of a table row after its label, as the PDF shows them: (word, column, count cell) where the
    first word of each count cell is that cell's count (whatever the HTML shows there: "*" in the HTML lines
    up with what the PDF shows) and every other word is to be matched as written."""
    words: list[tuple[str, int | None, Cell | None]] = []
    for column, cell in enumerate(row[1:], start=2):
        for i, word in enumerate(cell.text.split()):
            words.append((word, column, cell if cell.count and i == 0 else None))
    return words


def check_pdf(path: Path, threshold: int, count_rows: Iterable[list[Cell]] = (), text: str | None = None,
              exempt_measures: Iterable[str] = frozenset()) -> list[Finding]:
    """Read each marked, non-exempt count of the HTML twin's table rows at its position in the PDF's row.

    The row is found in the PDF text by its label followed by the HTML row's other words, word for word,
    except at the count cells (which the PDF may show differently: that is what is checked). A sentence
    that begins with the label, or a cover line with the unit's name, does not have those words, so it is
    not taken for the row; digits in the label are the label's.

    Rows are paired with the PDF in document order: every HTML row with a count (exempt ones too) takes the
    first match after the previous row's, so a row of one table is not read where another table has the same
    words ("030035 | *" of a completeness table is not the mortality table's "030035 6 ..."; a measure's
    consultant row withheld under small numbers is not the same consultant's row of a measure published in
    full). A row not found in order (text the PDF laid out differently) is looked for anywhere, and a match
    that starts inside another row's match is that row's words, not a row of its own: a check that cannot
    place a row errs towards a finding, never towards silence.
    """
    if text is None:
        text = pdf_text(path)
    exempt_set = frozenset(exempt_measures)
    words = _PAGE_MARK.sub(" ", text).split()
    plain = [_word(w) for w in words]
    starts: dict[str, list[int]] = {}
    for i, word in enumerate(plain):
        starts.setdefault(word, []).append(i)

    def occurrences(label: list[str], expected: list) -> list[int]:
        """Every start in the PDF words where this row's label and non-count words are."""
        found = []
        for start in starts.get(label[0], ()):
            end = start + len(label)
            shown = words[end:end + len(expected)]
            if plain[start:end] == label and len(shown) == len(expected) and not any(
                    cell is None and _word(shown[i]) != _word(word) for i, (word, _, cell) in enumerate(expected)):
                found.append(start)
        return found

    placed: list[tuple[int, int, list[Cell], list, list[int]]] = []  # (start, stop, row, expected, checked)
    unplaced: list[tuple[list[Cell], list, list[int], list[int], int]] = []
    cursor = 0
    for row in count_rows:
        label = [_word(w) for w in (row[0].text.split() if row else [])]
        expected = row_words(row)
        checked = [i for i, (_, _, cell) in enumerate(expected) if cell is not None
                   and not exempt(cell.measure, exempt_set)]
        if not label:
            continue
        found = occurrences(label, expected)
        stop = len(label) + len(expected)
        in_order = next((f for f in found if f >= cursor), None)
        if in_order is not None:
            placed.append((in_order, in_order + stop, row, expected, checked))
            cursor = in_order + stop
        elif checked:
            unplaced.append((row, expected, checked, found, stop))
    spans = sorted((start, stop) for start, stop, *_ in placed)
    for row, expected, checked, found, stop in unplaced:
        placed += [(f, f + stop, row, expected, checked) for f in found
                   if not any(s2 <= f < e2 for s2, e2 in spans)]
    spans = sorted((start, stop) for start, stop, *_ in placed)
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for start, stop, row, expected, checked in placed:
        if not checked or any(s2 < start < e2 for s2, e2 in spans):
            continue
        shown = words[stop - len(expected):stop]
        for i in checked:
            count = shown[i].strip("()[],;:")
            if _small(count, threshold):
                where = f"PDF table row '{row[0].text}', column {expected[i][1]}"
                if (where, count) not in seen:
                    seen.add((where, count))
                    findings.append(Finding(str(path), where, "small-count-pdf", " ".join(words[start:stop])))
    return findings


def check_csv(path: Path, threshold: int, sum_measures: Iterable[str] = (),
              exempt_measures: Iterable[str] = frozenset()) -> list[Finding]:
    """Small counts, shown low-volume figures and recoverable blanked counts in an open-data CSV.

    ``sum_measures`` are the ids of mean and ratio measures, whose numerator and observed are sums of
    values: only their denominator is a count. Each row's policy is its ``policy`` column; a file without
    one (a per-measure extract, say) takes it from ``exempt_measures`` by its ``measure`` column, and
    without either every row keeps the small-numbers rule.
    """
    findings: list[Finding] = []
    # Codes are text: a unit coded NA is a unit, not a missing value (only a blank cell is missing).
    data = pd.read_csv(path, dtype={"unit_id": str, "parent_id": str, "measure": str, "statistic": str,
                                    "policy": str, "flag": str}, keep_default_na=False, na_values=[""])
    sums = data["measure"].isin(set(sum_measures)) if "measure" in data else pd.Series(False, index=data.index)
    # Rows published under outcomes-in-full show their counts by design; any other policy (or none given,
    # as before the policy existed) keeps the small-numbers rule.
    if "policy" in data:
        checked = data["policy"].fillna("") != OUTCOMES_IN_FULL
    elif "measure" in data:
        checked = ~data["measure"].isin(frozenset(exempt_measures))
    else:
        checked = pd.Series(True, index=data.index)
    for col in COUNT_COLUMNS:
        if col in data:
            values = pd.to_numeric(data[col], errors="coerce")
            counted = (~sums if col in EVENT_COLUMNS else pd.Series(True, index=data.index)) & checked
            for i in data.index[(values >= 1) & (values <= threshold) & counted]:
                findings.append(Finding(str(path), f"row {i + 2} column {col}", "small-count-csv",
                                        str(data.at[i, col])))
    if "low_volume" in data:
        low = data["low_volume"].astype(str).str.lower().isin(["true", "1"])
        for col in (c for c in LOW_VOLUME_BLANK if c in data):
            for i in data.index[low & data[col].notna()]:
                unit = f"unit {data.at[i, 'unit_id']}, " if "unit_id" in data else ""
                findings.append(Finding(str(path), f"row {i + 2} column {col} ({unit}low volume)",
                                        "low-volume-shown", str(data.at[i, col])))
    if {"level", "measure", "statistic", "numerator", "denominator", "unit_id"} <= set(data.columns):
        findings += _recoverable(path, data[checked], threshold, set(sum_measures))
    return findings


def _recoverable(path: Path, data: pd.DataFrame, threshold: int, sum_measures: set[str]) -> list[Finding]:
    """Blanked counts that a published total would give back (total minus the others).

    A low-volume unit's blank figures are published in its measure's pooled group: nationally, the pool
    row stands in for them; within a provider (consultants pool nationally) they stay hidden cells.
    """
    findings = []
    low = (data["low_volume"].astype(str).str.lower().isin(["true", "1"]) if "low_volume" in data
           else pd.Series(False, index=data.index))
    pool = data["unit_id"] == LOW_VOLUME_ID
    for (measure, statistic), rows in data.groupby(["measure", "statistic"], sort=False):
        columns = ("denominator",) if measure in sum_measures else ("numerator", "denominator")
        for column in columns:
            nat = rows.loc[rows["level"] == "national", column]
            providers = rows[(rows["level"] == "provider")]
            pooled = low[providers.index] & providers[column].isna()
            if pooled.any() and (pool[providers.index]).any():
                providers = providers[~pooled]  # in the pool, which is published
            else:
                providers = providers[~pool[providers.index]]
            groups = [("national", providers, nat)]
            units = rows[(rows["level"] == "provider") & ~pool[rows.index]].set_index("unit_id")[column]
            consultants = rows[(rows["level"] == "consultant") & ~pool[rows.index]]
            for parent, cons in consultants.groupby("parent_id"):
                groups.append((f"provider {parent}", cons, units[[parent]] if parent in units.index else nat[:0]))
            for name, cells, total in groups:
                if total.empty or total.isna().all() or cells.empty:
                    continue
                blank = cells[column].isna()
                if not blank.any():
                    continue
                hidden = float(total.iloc[0]) - float(cells.loc[~blank, column].sum())
                if blank.sum() < 2 or hidden <= threshold:
                    findings.append(Finding(str(path), f"{measure} {statistic} {column} under {name}", "recoverable",
                                            f"{int(blank.sum())} blanked cell(s) totalling {hidden:g}"))
    return findings


def check_identifiers(path: Path, text: str, patient_ids: set[str]) -> list[Finding]:
    if not patient_ids:
        return []
    return [Finding(str(path), "a word of the file", "patient-identifier", word)
            for word in sorted(set(_WORD.findall(text)) & patient_ids)]


def public_files(period_dir: Path, staging: Path | None = None) -> list[Path]:
    """Every public output of one audit period: the site, public reports, the national report, open data.

    With ``staging`` (a publication being prepared, see ``publication.site.publish``), the site and
    ``indicators.csv`` are the staged ones, not those published now.
    """
    out = Path(period_dir)
    public = Path(staging) if staging is not None else out
    files = [p for p in sorted((public / "site").rglob("*")) if p.is_file()]
    files += sorted((out / "providers").glob("*/public.html")) + sorted((out / "providers").glob("*/public.pdf"))
    files += [p for p in (out / "national" / "national.html", out / "national" / "national.pdf",
                          public / "indicators.csv") if p.is_file()]
    return files


def check_files(files: Iterable[Path], threshold: int, patient_ids: Iterable[str] = (),
                sum_measures: Iterable[str] = (), exempt_measures: Iterable[str] = frozenset()) -> CheckReport:
    """Check each public file (HTML, PDF, CSV) as written; PDFs are checked against their HTML twin.

    ``sum_measures``: ids of the mean and ratio measures (see :func:`check_csv`); ``exempt_measures``: the
    measures published in full, whose marked unit-result counts are not small-numbers findings
    (:func:`exempt_measures_of`).
    """
    ids = {str(i) for i in patient_ids}
    sum_measures = set(sum_measures)
    exempt_set = frozenset(exempt_measures)
    report = CheckReport(threshold)
    files = list(files)
    rows_by_stem: dict[Path, list[list[Cell]]] = {}
    # The site holds byte-identical copies of the public reports: a file whose bytes (and, for a PDF,
    # whose HTML twin's bytes) were already checked gets the same findings without a second read.
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
            report.findings += [Finding(str(path), f.where, f.rule, f.text) for f in found]
            if suffix == ".html":
                rows_by_stem[stem] = rows_by_stem[first.with_suffix("")]
            continue
        if suffix == ".html":
            found, parser = check_html(path, threshold, exempt_set)
            rows_by_stem[stem] = parser.count_rows
            text = " ".join(parser.text)
        elif suffix == ".pdf":
            text = pdf_text(path)
            found = check_pdf(path, threshold, rows_by_stem.get(stem, []), text=text, exempt_measures=exempt_set)
        elif suffix == ".csv":
            found = ([] if path.name.endswith("dictionary.csv")
                     else check_csv(path, threshold, sum_measures, exempt_set))
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


def check_period(config, period_dir: Path, staging: Path | None = None) -> CheckReport:
    """Check every public output of one audit period (with ``staging``: the publication being prepared)
    against the audit's threshold, its measures' policies (bundle metadata) and its patients."""
    meta_path = Path(period_dir) / BUNDLE_DIR / "metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return check_files(public_files(period_dir, staging), config.suppression_threshold, patient_ids_of(config),
                       sum_measures=[m.id for m in config.measures if m.kind in SUM_KINDS],
                       exempt_measures=exempt_measures_of(meta))
