"""The disclosure checker on small made-up files: counts are read by their markup (``data-count``, with
``data-count-measure`` for a measure's unit results under its policy) and, in a PDF, by their position in the
row of the HTML twin; never by a number in a sentence. Every finding names its rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditreport.publication.checker import (
    RULES,
    CheckReport,
    DisclosureError,
    Finding,
    check_csv,
    check_files,
    check_html,
    check_pdf,
    exempt_measures_of,
    pdf_text,
)
from auditreport.rendering.pdf import html_to_pdf

#: Bundle metadata of an audit publishing mortality in full and senior review under small numbers.
META = {"measures": [{"id": "mortality"}, {"id": "review"}],
        "publication": {"policy": "outcomes-in-full", "suppression_threshold": 7,
                        "measure_policies": {"mortality": "outcomes-in-full",
                                             "review": "small-numbers-everywhere"}}}


def _where(report: CheckReport) -> set[tuple[str, str, str]]:
    return {(Path(f.path).name, f.where, f.rule) for f in report.findings}


def test_exempt_measures_follow_the_bundle_policy_and_old_bundles_exempt_nothing():
    assert exempt_measures_of(META) == {"mortality"}
    # A measure not listed takes the audit's policy (default outcomes-in-full).
    assert exempt_measures_of({"measures": [{"id": "a"}, {"id": "b"}], "publication": {}}) == frozenset()
    assert exempt_measures_of({"measures": [{"id": "a"}, {"id": "b"}],
                               "publication": {"measure_policies": {"b": "small-numbers-everywhere"}}}) == {"a"}
    assert exempt_measures_of({"measures": [{"id": "a"}],
                               "publication": {"policy": "small-numbers-everywhere"}}) == frozenset()
    # A bundle from before the policy (no "publication" key) published small numbers everywhere.
    assert exempt_measures_of({"measures": [{"id": "mortality"}]}) == frozenset()


def test_prose_is_not_a_count_but_a_marked_breakdown_count_is(tmp_path):
    """"1 degree of freedom" or "21 deaths" in a sentence is wording, not a count; the checker reads only
    marked counts. A marked breakdown count (no measure) of 3 is a finding under every policy; a marked
    unit-result count of 3 is published under outcomes-in-full and withheld under small numbers."""
    html = tmp_path / "r.html"
    html.write_text(
        "<p>Institution 21 had more deaths than expected: chi-squared 7.28 on 1 degree of freedom; "
        "21 deaths, 4 patients and 2 admissions are words here.</p>"
        "<p>Of its patients, <strong data-count>3</strong> were aged over 90.</p>"
        "<table><tr><th>Unit</th><th>Deaths</th><th>Reviewed</th></tr>"
        "<tr><td>Institution 21</td><td data-count data-count-measure='mortality'>4</td>"
        "<td data-count data-count-measure='review'>5</td></tr>"
        "<tr><td>Institution 22</td><td data-count data-count-measure='mortality'>40</td>"
        "<td data-count data-count-measure='review'>*</td></tr></table>")
    report = check_files([html], threshold=7, exempt_measures=exempt_measures_of(META))
    assert _where(report) == {
        ("r.html", "text after 'Of its patients,' (breakdown count)", "small-count"),
        ("r.html", "table row 'Institution 21', column 3 (measure review)", "small-count"),
    }
    assert sorted(f.text for f in report.findings) == ["3", "5"]
    # An old bundle (no policy): the mortality count of 4 is a finding too, the sentence still is not.
    old = check_files([html], threshold=7, exempt_measures=exempt_measures_of({"measures": META["measures"]}))
    assert sorted(f.text for f in old.findings) == ["3", "4", "5"]
    assert all(f.rule in RULES for f in old.findings)


def test_checker_finds_counts_ids_and_recoverable_cells(tmp_path):
    html = tmp_path / "r.html"
    html.write_text("<table><tr><td>C1</td><td data-count>5</td></tr><tr><td>C2</td><td data-count>*</td></tr>"
                    "</table><p>There were 3 deaths in total, for patient P123.</p>")
    csv = tmp_path / "indicators.csv"
    csv.write_text("measure,statistic,level,unit_id,parent_id,numerator,denominator\n"
                   "mortality,rate,national,national,,100,1000\nmortality,rate,provider,A,,,300\n"
                   "mortality,rate,provider,B,,95,700\nmortality,rate,provider,C,,2,50\n")
    report = check_files([html, csv], threshold=7, patient_ids={"P123", "P999"})
    assert _where(report) == {
        ("r.html", "table row 'C1', column 2 (breakdown count)", "small-count"),
        ("r.html", "a word of the file", "patient-identifier"),
        ("indicators.csv", "row 5 column numerator", "small-count-csv"),
        ("indicators.csv", "mortality rate numerator under national", "recoverable"),
    }
    recoverable = next(f for f in report.findings if f.rule == "recoverable")
    assert recoverable.text == "1 blanked cell(s) totalling 3"  # 100 - 95 - 2: A's hidden deaths
    with pytest.raises(DisclosureError, match="disclosure check failed on 2 public file"):
        report.raise_if_failed()
    clean = tmp_path / "ok.html"
    clean.write_text("<table><tr><td>C1</td><td data-count>15</td></tr></table><p>Counts from 1 to 7 are hidden.</p>")
    assert check_files([clean], 7, {"P123"}).ok


def test_the_error_names_the_findings_file_and_shows_the_first_few():
    findings = [Finding(f"site/providers/P{i}.html", "table row 'Group 1', column 2 (breakdown count)",
                        "small-count", "3") for i in range(25)]
    report = CheckReport(7, files=["a", "b"], findings=findings, findings_file=Path("/r/disclosure-findings.csv"))
    with pytest.raises(DisclosureError) as raised:
        report.raise_if_failed()
    message = str(raised.value)
    assert raised.value.exit_code == 5 and raised.value.findings_file == Path("/r/disclosure-findings.csv")
    assert "25 finding(s)" in message and "every finding is in /r/disclosure-findings.csv" in message
    assert "site/providers/P9.html" in message and "site/providers/P10.html" not in message
    assert "... and 15 more" in message
    assert "nothing was published" in message


def test_csv_counts_follow_each_row_policy_and_low_volume_rows_show_nothing(tmp_path):
    """Outcomes-in-full rows publish their counts; small-numbers rows may not; a low-volume unit's own row
    keeps its denominator but shows no figure (its figures are in the pool, unit_id low-volume)."""
    csv = tmp_path / "indicators.csv"
    csv.write_text(
        "measure,statistic,level,unit_id,parent_id,numerator,denominator,observed,value,flag,policy,low_volume,"
        "suppressed\n"
        "mortality,rate,national,national,,60,1000,60,0.06,,outcomes-in-full,False,False\n"
        "mortality,rate,provider,A,,3,40,3,0.075,as_expected,outcomes-in-full,False,False\n"
        "mortality,rate,provider,B,,55,950,55,0.058,as_expected,outcomes-in-full,False,False\n"
        "mortality,rate,provider,C,,,6,,,,outcomes-in-full,True,False\n"
        "mortality,rate,provider,D,,,4,,0.25,,outcomes-in-full,True,False\n"
        "mortality,rate,provider,low-volume,,2,10,2,0.2,,outcomes-in-full,False,False\n"
        "review,rate,national,national,,500,1000,500,0.5,,small-numbers-everywhere,False,False\n"
        "review,rate,provider,A,,20,40,20,0.5,as_expected,small-numbers-everywhere,False,False\n"
        "review,rate,provider,B,,475,950,475,0.5,as_expected,small-numbers-everywhere,False,False\n"
        "review,rate,provider,C,,5,10,5,0.5,,small-numbers-everywhere,False,False\n")
    found = {(f.where, f.rule, f.text) for f in check_csv(csv, threshold=7)}
    assert found == {
        # mortality: A's 3 deaths and the pool's 2 are published in full; C and D's denominators too.
        ("row 6 column value (unit D, low volume)", "low-volume-shown", "0.25"),
        # review (small numbers): C's 5 events are a finding (as numerator and as observed).
        ("row 11 column numerator", "small-count-csv", "5.0"),
        ("row 11 column observed", "small-count-csv", "5.0"),
    }
    # Without a policy column (a bundle before the policy) every row is held to small numbers.
    old = tmp_path / "old.csv"
    old.write_text("measure,statistic,level,unit_id,parent_id,numerator,denominator\n"
                   "mortality,rate,national,national,,60,1000\nmortality,rate,provider,A,,3,40\n"
                   "mortality,rate,provider,B,,57,960\n")
    assert [(f.where, f.rule) for f in check_csv(old, 7)] == [("row 3 column numerator", "small-count-csv")]
    # ... unless the bundle's policy publishes that measure in full (a per-measure file without the column).
    assert check_csv(old, 7, exempt_measures={"mortality"}) == []


def test_recoverable_counts_under_small_numbers_with_a_pooled_group(tmp_path):
    """Nationally the pool stands in for its low-volume units; a suppressed unit beside them must still not
    be recoverable."""
    csv = tmp_path / "indicators.csv"
    header = "measure,statistic,level,unit_id,parent_id,numerator,denominator,policy,low_volume,suppressed\n"
    rows = ("review,rate,national,national,,500,1000,small-numbers-everywhere,False,False\n"
            "review,rate,provider,A,,,40,small-numbers-everywhere,False,True\n"
            "review,rate,provider,B,,470,930,small-numbers-everywhere,False,False\n"
            "review,rate,provider,C,,,8,small-numbers-everywhere,True,False\n"
            "review,rate,provider,D,,,9,small-numbers-everywhere,True,False\n"
            "review,rate,provider,low-volume,,25,17,small-numbers-everywhere,False,False\n")
    found = [(f.where, f.rule, f.text) for f in check_csv(_write(csv, header + rows), threshold=7)]
    # 500 - 470 - 25 (the pool) = 5: A's hidden count is given back.
    assert found == [("review rate numerator under national", "recoverable", "1 blanked cell(s) totalling 5")]
    # With A's count hidden alongside a second unit's, over the threshold in all, nothing is recoverable.
    safer = rows.replace("B,,470,930,small-numbers-everywhere,False,False", "B,,,930,small-numbers-everywhere,False,True")
    assert check_csv(_write(csv, header + safer), threshold=7) == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_checker_reads_pdf_table_rows(tmp_path):
    html = ("<html lang='en-GB'><head><title>r</title></head><body><table><tr><th>Consultant</th><th>Deaths</th></tr>"
            "<tr><td>C2480300</td><td data-count>4</td></tr><tr><td>C2066401</td><td data-count>12</td></tr>"
            "</table></body></html>")
    (tmp_path / "r.html").write_text(html.replace(">4<", ">*<"))  # the HTML is clean, the PDF is not
    html_to_pdf(html, tmp_path / "r.pdf")
    report = check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7)
    assert [(f.where, f.rule) for f in report.findings] == [
        ("PDF table row 'C2480300', column 2", "small-count-pdf")]


def test_checker_tells_a_sentence_that_starts_with_a_row_label_from_the_row(tmp_path):
    """A sentence about a provider (its log-rank test has 1 degree of freedom) is not its table row."""
    html = ("<html lang='en-GB'><head><title>r</title></head><body><table><tr><th>Unit</th><th>Deaths</th></tr>"
            "<tr><td>Institution 21</td><td data-count>*</td></tr></table>"
            "<p>Institution 21 had more deaths than expected: chi-squared 7.28 on 1 degree of "
            "freedom, p = 0.007.</p></body></html>")
    (tmp_path / "r.html").write_text(html)
    html_to_pdf(html, tmp_path / "r.pdf")
    assert "on 1 degree" in " ".join(pdf_text(tmp_path / "r.pdf").split())
    assert check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7).ok
    # The same row with a small count still fails.
    html_to_pdf(html.replace(">*<", ">3<"), tmp_path / "r.pdf")
    report = check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7)
    assert [(f.where, f.rule) for f in report.findings] == [
        ("PDF table row 'Institution 21', column 2", "small-count-pdf")]


def test_a_short_label_inside_another_tables_row_is_not_that_row(tmp_path):
    """The lung national report: a data-quality row labelled "2" (institution code, a count, a share) and the
    survival table's row "Institution 2 | 2 | * | ..." read "Institution 2 2 *" in the PDF. The "2 2 *" inside
    it is the longer row's words, not the short row with a count of 2; the short row itself is still read."""
    html = ("<html lang='en-GB'><head><title>r</title></head><body>"
            "<table><tr><th>Code</th><th>Excluded</th><th>Share</th></tr>"
            "<tr><td>2</td><td data-count>{count}</td><td>*</td></tr></table>"
            "<table><tr><th>Institution</th><th>Code</th><th>Patients</th><th>Median</th></tr>"
            "<tr><td>Institution 2</td><td>2</td><td data-count>*</td><td>310</td></tr></table></body></html>")
    (tmp_path / "r.html").write_text(html.format(count="*"))
    html_to_pdf(html.format(count="*"), tmp_path / "r.pdf")
    assert "Institution 2 2 *" in " ".join(pdf_text(tmp_path / "r.pdf").split())
    assert check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7).ok
    html_to_pdf(html.format(count="3"), tmp_path / "r.pdf")
    report = check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7)
    assert [(f.where, f.text) for f in report.findings] == [("PDF table row '2', column 2", "2 3 *")]


def test_rows_are_paired_with_the_pdf_in_document_order(tmp_path):
    """Found trying MedPAR as a new user: a consultant's row in the mortality table (published in full: 5
    admissions) and the same row in a measure kept under small numbers ("*") have the same words but the
    count. Each HTML row is the PDF's next match, so the withheld row is read where it is, not at the
    mortality row; and a completeness row "030035 | *" is not the mortality row "030035 6 3 ..."."""
    row = "<tr><td>Wen Ward</td><td data-count data-count-measure='{m}'>{n}</td><td>In the low-volume group</td></tr>"
    tables = ("<table><tr><th>Consultant</th><th>Admissions</th><th>Result</th></tr>" + row.format(m="mortality", n=5)
              + "</table><table><tr><th>Consultant</th><th>Admissions</th><th>Result</th></tr>"
              + row.format(m="long_stay", n="{n}") + "</table>"
              "<table><tr><th>Hospital</th><th>Code</th><th>Admissions</th><th>Deaths</th></tr><tr><td>Page</td>"
              "<td>030035</td><td data-count data-count-measure='mortality'>6</td><td data-count "
              "data-count-measure='mortality'>3</td></tr></table><table><tr><th>Code</th><th>Missing</th></tr>"
              "<tr><td>030035</td><td data-count>{m}</td></tr></table>")
    page = "<html lang='en-GB'><head><title>r</title></head><body>" + tables + "</body></html>"
    (tmp_path / "r.html").write_text(page.format(n="*", m="*"))
    html_to_pdf(page.format(n="*", m="*"), tmp_path / "r.pdf")
    pdf = tmp_path / "r.pdf"
    _, parser = check_html(tmp_path / "r.html", 7, ["mortality"])
    assert check_pdf(pdf, 7, parser.count_rows, exempt_measures=["mortality"]) == []
    html_to_pdf(page.format(n="4", m="2"), pdf)  # both withheld cells now show small counts in the PDF
    found = [(f.where, f.text) for f in check_pdf(pdf, 7, parser.count_rows, exempt_measures=["mortality"])]
    assert found == [("PDF table row 'Wen Ward', column 2", "Wen Ward 4 In the low-volume group"),
                     ("PDF table row '030035', column 2", "030035 2")]


def test_pdf_count_is_read_at_its_column_even_when_the_label_and_other_cells_hold_small_numbers(tmp_path):
    """The count is the third column; the label ("Ward 3 (unit 5)"), the code and the median days are
    small numbers too but not counts. Only the count's position is read, and an exempt measure's count is
    left alone."""
    row = ("<tr><td>Ward 3 (unit 5)</td><td>2</td><td data-count>{count}</td><td>4.5% (1.2 to 6.0)</td>"
           "<td data-count data-count-measure='mortality'>{deaths}</td><td>6 days</td></tr>")
    page = ("<html lang='en-GB'><head><title>r</title></head><body><table><tr><th>Ward</th><th>Code</th><th>Cases</th><th>Rate</th><th>Deaths</th>"
            "<th>Median stay</th></tr>{rows}</table><p>Ward 3 (unit 5) is 1 of 2 wards named here.</p></body></html>")
    html = page.format(rows=row.format(count="*", deaths="*"))
    (tmp_path / "r.html").write_text(html)
    html_to_pdf(html, tmp_path / "r.pdf")
    assert check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7).ok
    # The PDF shows a small count in column 3 (and a small death count, exempt under outcomes-in-full).
    html_to_pdf(page.format(rows=row.format(count="5", deaths="3")), tmp_path / "r.pdf")
    text = " ".join(pdf_text(tmp_path / "r.pdf").split())
    assert "Ward 3 (unit 5) 2 5 4.5% (1.2 to 6.0) 3 6 days" in text
    report = check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7, exempt_measures={"mortality"})
    assert [(f.where, f.rule) for f in report.findings] == [
        ("PDF table row 'Ward 3 (unit 5)', column 3", "small-count-pdf")]
    assert report.findings[0].text == "Ward 3 (unit 5) 2 5 4.5% (1.2 to 6.0) 3 6 days"
    # Not exempt (small numbers everywhere): the death count, at value 6 of the row, is found too.
    report = check_files([tmp_path / "r.html", tmp_path / "r.pdf"], threshold=7)
    assert [f.where for f in report.findings] == ["PDF table row 'Ward 3 (unit 5)', column 3",
                                                  "PDF table row 'Ward 3 (unit 5)', column 5"]


def test_html_counts_in_the_local_report_style_are_found_by_check_html(tmp_path):
    """check_html returns the rows it parsed, each cell with whether it is a count and of which measure."""
    path = tmp_path / "r.html"
    path.write_text("<table><tr><td>A</td><td data-count data-count-measure='mortality'>9</td><td>x</td></tr></table>")
    findings, parsed = check_html(path, 7)
    assert findings == [] and [tuple(c) for c in parsed.count_rows[0]] == [
        ("A", False, None), ("9", True, "mortality"), ("x", False, None)]
