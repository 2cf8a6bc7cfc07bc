"""The disclosure checker on open data of several measures (one row per unit, measure and statistic).

Small made-up files, checked as written: counts are the denominators of every measure and the events of
proportions and survival, never the sums of values of a mean or ratio measure; a blanked count must not be
recoverable from its measure's own total; the audit's words for its activity mark counts in prose.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from auditreport.publication.checker import check_csv, check_files

NAN = float("nan")


def _write(path: Path, rows: list[tuple]) -> Path:
    frame = pd.DataFrame(rows, columns=["measure", "statistic", "level", "unit_id", "parent_id", "numerator",
                                        "denominator", "observed"])
    frame.to_csv(path, index=False)
    return path


def test_sums_of_values_are_not_counts_but_their_denominators_are(tmp_path):
    csv = _write(tmp_path / "indicators.csv", [
        # length of stay (a ratio): 5 bed-days in all is a sum of values; 5 patients is a count
        ("los", "oe_ratio", "national", "national", "", 905.0, 200.0, 905.0),
        ("los", "oe_ratio", "provider", "A", "", 5.0, 100.0, 5.0),
        ("los", "oe_ratio", "provider", "B", "", 900.0, 100.0, 900.0),
        ("los", "mean", "provider", "C", "", 40.0, 5.0, NAN),
        # a proportion: 5 events is a count
        ("review", "rate", "national", "national", "", 150.0, 200.0, 150.0),
        ("review", "rate", "provider", "A", "", 5.0, 100.0, 5.0),
        ("review", "rate", "provider", "B", "", 145.0, 100.0, 145.0),
    ])
    found = sorted((f.where, f.text) for f in check_csv(csv, threshold=7, sum_measures={"los"}))
    assert found == [("row 5 column denominator", "5.0"), ("row 7 column numerator", "5.0"),
                     ("row 7 column observed", "5.0")]
    # Told nothing about the measures, the checker reads every count column as counts (the safe side).
    assert len(check_csv(csv, threshold=7)) == 5


def test_blanked_count_recoverable_from_its_own_measure_and_statistic(tmp_path):
    csv = _write(tmp_path / "indicators.csv", [
        # mortality: one provider's deaths blanked alone; national total minus the rest gives them (3)
        ("mortality", "rate", "national", "national", "", 43.0, 300.0, 43.0),
        ("mortality", "rate", "provider", "A", "", NAN, 100.0, NAN),
        ("mortality", "rate", "provider", "B", "", 20.0, 100.0, 20.0),
        ("mortality", "rate", "provider", "C", "", 20.0, 100.0, 20.0),
        # review: two blanked, hiding 30 between them: nothing recoverable
        ("review", "rate", "national", "national", "", 150.0, 300.0, 150.0),
        ("review", "rate", "provider", "A", "", NAN, 100.0, NAN),
        ("review", "rate", "provider", "B", "", NAN, 100.0, NAN),
        ("review", "rate", "provider", "C", "", 120.0, 100.0, 120.0),
        # los: sums of values blanked alone are not counts; its denominators all shown
        ("los", "oe_ratio", "national", "national", "", 2000.0, 300.0, 2000.0),
        ("los", "oe_ratio", "provider", "A", "", NAN, 100.0, NAN),
        ("los", "oe_ratio", "provider", "B", "", 1000.0, 100.0, 1000.0),
        ("los", "oe_ratio", "provider", "C", "", 997.0, 100.0, 997.0),
    ])
    found = [(f.where, f.text) for f in check_csv(csv, threshold=7, sum_measures={"los"})]
    assert found == [("mortality rate numerator under national", "1 blanked cell(s) totalling 3")]


def test_counts_are_read_by_their_markup_not_by_the_words_of_a_sentence(tmp_path):
    """Issue #15: a number in a sentence ("4 stays", "1 degree of freedom", "Counts from 1 to 7") is not read
    as a count; a count is what the report marks (``data-count``), whatever the audit calls its activity."""
    page = tmp_path / "r.html"
    page.write_text("<p>The hospital reported 4 stays over 14 days and 3 events of note; chi-squared 7.3 on 1 "
                    "degree of freedom. Counts from 1 to 7 admissions are shown as *.</p>")
    assert check_files([page], threshold=7).ok
    page.write_text("<p>The hospital reported <strong data-count>4</strong> stays over 14 days.</p>")
    found = check_files([page], threshold=7).findings
    assert [(f.rule, f.text) for f in found] == [("small-count", "4")]
