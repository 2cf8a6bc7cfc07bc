"""The confidential one-page consultant summary (issue #15 item 3, contract section 8).

A small synthetic audit with every measure analysed per consultant too (the worst case for the page's
length) goes through the real national stage; the summaries are built from its bundle with the real
WeasyPrint and read back with pypdf.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pypdf import PdfReader

from auditreport.bundle import BUNDLE_DIR, load_bundle
from auditreport.data.synthetic import SyntheticSpec
from auditreport.execution.consultant_summaries import (
    SUMMARIES_DIR,
    build_consultant_summaries,
    listing,
    manifest_entries,
    remove_stale_folders,
)
from auditreport.execution.report_job import safe_name
from auditreport.presentation.consultant_summary import (
    CONFIDENTIAL,
    consultant_codes,
    consultant_summary,
    measure_lines,
    minimum_volume,
    summary_html,
    validation_text,
)
from auditreport.rendering.pdf import html_to_pdf

from conftest import make_audit

#: HQIP's words for each flag by direction, written out (rules/flags.py is the code under test's source).
WORDS = {("alarm_high", "lower_is_better"): "Alarm: worse than expected",
         ("alert_high", "lower_is_better"): "Alert: worse than expected",
         ("alert_low", "lower_is_better"): "Alert: better than expected",
         ("alarm_low", "lower_is_better"): "Alarm: better than expected",
         ("alarm_high", "higher_is_better"): "Alarm: better than expected",
         ("alert_high", "higher_is_better"): "Alert: better than expected",
         ("alert_low", "higher_is_better"): "Alert: worse than expected",
         ("alarm_low", "higher_is_better"): "Alarm: worse than expected",
         ("as_expected", "lower_is_better"): "As expected", ("as_expected", "higher_is_better"): "As expected"}


@pytest.fixture(scope="module")
def period(tmp_path_factory) -> Path:
    """The period folder of a small audit whose seven measures are all analysed per consultant as well."""
    from auditreport.config import load_config
    from auditreport.pipeline import national_stage, period_dir

    folder = tmp_path_factory.mktemp("consultant_summary")
    path = make_audit(folder, SyntheticSpec(records=3000, providers=6, consultants=18, outliers_high=1,
                                            outliers_low=0, seed=7))
    definition = yaml.safe_load(path.read_text())
    for measure in definition["measures"]:
        measure["levels"] = ["provider", "consultant"]
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    config = load_config(path)
    out = period_dir(config, folder / "reports")
    national_stage(config, out)
    return out


@pytest.fixture
def bundle(period):
    return load_bundle(period / BUNDLE_DIR)


def consultant_rows(bundle) -> pd.DataFrame:
    t = bundle.indicators
    return t[t["level"] == "consultant"]


def busiest(bundle) -> str:
    """The consultant with the most procedures (mortality's denominator: every analysed record)."""
    rows = consultant_rows(bundle)
    rows = rows[(rows["measure"] == "mortality") & (rows["statistic"] == "rate")]
    return str(rows.sort_values(["denominator", "unit_id"], ascending=[False, True])["unit_id"].iat[0])


def with_named_consultants(bundle, code: str):
    """The bundle with the tables helper ``cons15`` adds (contract section 4): every consultant named, the
    busiest one split over two providers, and one provider's data validated."""
    rows = consultant_rows(bundle).drop_duplicates("unit_id")
    records = consultant_rows(bundle)
    records = records[(records["measure"] == "mortality") & (records["statistic"] == "rate")]
    cases = records.set_index("unit_id")["denominator"].astype(int)
    providers = sorted(set(bundle.indicators.loc[bundle.indicators["level"] == "provider", "unit_id"]))
    table = []
    for i, (unit, parent) in enumerate(zip(rows["unit_id"], rows["parent_id"], strict=True)):
        base = {"consultant_code": unit, "consultant_name": f"Dr Consultant {i:02d} Longname-Surname",
                "registration_number": f"{7000001 + i}", "specialty": "General surgery"}
        if unit == code:
            other = next(p for p in providers if p != parent)
            table += [{**base, "provider_code": parent, "records": int(cases[unit]) - 40},
                      {**base, "provider_code": other, "records": 40}]
        else:
            table.append({**base, "provider_code": parent, "records": int(cases[unit])})
    bundle.consultants = pd.DataFrame(table)
    bundle.provider_notes = pd.DataFrame({"provider_code": providers,
                                          "statement": [""] * len(providers),
                                          "validated_on": ["2026-03-03"] + [""] * (len(providers) - 1)})
    return bundle


def test_content_is_the_bundles_figures_with_status_in_words(bundle):
    rows = consultant_rows(bundle)
    national = bundle.indicators[bundle.indicators["level"] == "national"].set_index(["measure", "statistic"])
    measures = {m["id"]: m for m in bundle.metadata["measures"]}
    flagged = rows[rows["flag"].isin(["alarm_high", "alert_high", "alert_low", "alarm_low"])
                   & (rows["statistic"] == rows["measure"].map(lambda m: measures[m]["headline"]))]
    assert len(flagged) >= 5  # the synthetic audit's outliers show at consultant level too
    for _, row in flagged.iterrows():
        m = measures[row["measure"]]
        summary = consultant_summary(bundle, row["unit_id"])
        line = next(li for li in summary.measures if li.measure_id == m["id"] and li.label == m["label"])
        assert line.status == WORDS[(row["flag"], m["direction"])]
        assert line.status_css == row["flag"]
        assert line.cases == f"{int(row['denominator']):,}"
        assert line.direction == m["direction"].replace("_", " ")
    # One consultant's mortality, every figure against the indicator table.
    code = flagged.loc[flagged["measure"] == "mortality", "unit_id"].iat[0]
    summary = consultant_summary(bundle, code)
    mine = rows[(rows["unit_id"] == code) & (rows["measure"] == "mortality")].set_index("statistic")
    adjusted, crude = summary.measures[0], summary.measures[1]
    r = mine.loc["adjusted_rate"]
    assert (adjusted.label, adjusted.statistic) == ("30-day mortality", "Risk-adjusted rate")
    assert adjusted.cases == f"{int(r['denominator']):,}"
    assert adjusted.events == f"{int(r['numerator'])} (expected {r['expected']:.1f})"
    assert adjusted.value == f"{r['value'] * 100:.1f}%"
    assert adjusted.interval == f"{r['lower95'] * 100:.1f}% to {r['upper95'] * 100:.1f}%"
    assert adjusted.national == f"{national.at[('mortality', 'adjusted_rate'), 'value'] * 100:.1f}%"
    assert adjusted.status == "Alert: worse than expected"  # the audit's high-mortality outlier's consultant
    assert (crude.label, crude.statistic, crude.status) == ("30-day mortality (context)", "Crude rate",
                                                            "Context (no status)")
    assert crude.value == f"{mine.loc['rate', 'value'] * 100:.1f}%"
    # A mean has no events; a ratio's events are its observed and expected totals in its unit.
    los = next(li for li in summary.measures if li.measure_id == "los")
    r = rows[(rows["unit_id"] == code) & (rows["measure"] == "los") & (rows["statistic"] == "oe_ratio")].iloc[0]
    assert los.events == f"{r['observed']:,.0f} days (expected {r['expected']:,.1f})"
    assert next(li for li in summary.measures if li.measure_id == "hours_to_surgery").events == ""
    assert summary.provider_only == ()  # every measure of this audit is analysed per consultant
    assert summary.provenance.startswith(f"Data fingerprint {bundle.metadata['data']['source']['sha256'][:12]}")


def test_below_the_minimum_volume_not_assessed_on_its_own(bundle):
    rows = consultant_rows(bundle)
    ct = rows[(rows["measure"] == "ct_before_surgery")].sort_values("denominator")
    small = ct.iloc[0]
    measure = next(m for m in bundle.metadata["measures"] if m["id"] == "ct_before_surgery")
    national = bundle.indicators[bundle.indicators["level"] == "national"].set_index(["measure", "statistic"])["value"]
    minimum = int(small["denominator"]) + 1
    [line] = measure_lines(measure, ct[ct["unit_id"] == small["unit_id"]].set_index("statistic"), national,
                           minimum, "procedures")
    assert line.low_volume and line.status == f"Fewer than {minimum} procedures: not assessed on its own"
    assert line.cases == f"{int(small['denominator'])}" and line.events == f"{int(small['numerator'])}"
    [line] = measure_lines(measure, ct[ct["unit_id"] == small["unit_id"]].set_index("statistic"), national,
                           minimum - 1, "procedures")
    assert not line.low_volume and line.status == WORDS.get((small["flag"], "higher_is_better"), "Not assessed")
    # The bundle's publication settings (contract section 1), either form, and the default.
    assert minimum_volume({"publication": {"minimum_volume": {"provider": 0, "consultant": 25}}}) == 25
    assert minimum_volume({"publication": {"minimum_volume": 15}}) == 15
    assert minimum_volume({"publication": {"suppression_threshold": 7}}) == 10


def test_validation_in_words():
    assert validation_text("2026-03-03") == "validated by the provider on 3 March 2026"
    assert validation_text("") == validation_text(None) == validation_text(float("nan")) == "not validated"


def test_the_busiest_consultant_fits_one_tagged_a4_page(bundle, tmp_path):
    code = busiest(bundle)
    bundle = with_named_consultants(bundle, code)
    summary = consultant_summary(bundle, code)
    assert [p.cases for p in summary.providers] == [f"{int(c)}" for c in sorted(
        bundle.consultants.loc[bundle.consultants["consultant_code"] == code, "records"], reverse=True)]
    html = summary_html(summary)
    assert '<html lang="en-GB">' in html and "Dr Consultant" in html
    pdf = html_to_pdf(html, tmp_path / "summary.pdf")
    reader = PdfReader(pdf)
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width) * 25.4 / 72), round(float(box.height) * 25.4 / 72)) == (210, 297)  # A4
    text = " ".join(reader.pages[0].extract_text().split())
    person = bundle.consultants[bundle.consultants["consultant_code"] == code].iloc[0]
    for expected in (CONFIDENTIAL, person["consultant_name"], code, person["registration_number"],
                     "General surgery", "validated by the provider on 3 March 2026", "not validated",
                     "HQIP", "Data fingerprint"):
        assert expected in text, expected
    for m in bundle.metadata["measures"]:
        assert m["label"] in text, m["label"]
    assert len(summary.providers) == 2 and all(p.name in text for p in summary.providers)


def test_summaries_built_skipped_when_unchanged_and_rebuilt_when_changed(period):
    bundle = load_bundle(period / BUNDLE_DIR)
    codes = consultant_codes(bundle)
    results = build_consultant_summaries(period, workers=2)
    assert sorted(r.name for r in results) == sorted(f"consultant-summary:{c}" for c in codes)
    assert {r.status for r in results} == {"built"}, [r.error for r in results if r.error]
    folder = period / SUMMARIES_DIR
    for code in codes:
        pdf = folder / safe_name(code) / "summary.pdf"
        assert len(PdfReader(pdf).pages) == 1
    assert [row["consultant"] for row in listing(period)] == codes
    entries = manifest_entries(period)
    assert len(entries) == 2 * len(codes) and {e["audience"] for e in entries} == {"local"}
    assert not any(p.startswith("site/") for p in (e["path"] for e in entries))
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("summary.*")}

    again = build_consultant_summaries(period, workers=2)
    assert {r.status for r in again} == {"skipped"} and len(again) == len(codes)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("summary.*")} == before

    # A damaged output is rebuilt, and only it; --force rebuilds a provider's consultants.
    damaged = folder / safe_name(codes[0]) / "summary.pdf"
    damaged.write_bytes(damaged.read_bytes()[:100])
    third = build_consultant_summaries(period, workers=1)
    assert [r.name for r in third if r.status == "built"] == [f"consultant-summary:{codes[0]}"]
    assert len(PdfReader(damaged).pages) == 1
    parent = consultant_rows(bundle).drop_duplicates("unit_id").set_index("unit_id")["parent_id"]
    provider = parent[codes[0]]
    forced = build_consultant_summaries(period, providers=[provider], workers=1, force=True)
    assert sorted(r.name.split(":")[1] for r in forced) == sorted(set(parent[parent == provider].index))
    assert {r.status for r in forced} == {"built"}
    # A public-only run builds no confidential summary.
    assert build_consultant_summaries(period, audiences=["public"]) == []


def test_a_failing_summary_is_named_and_the_others_are_built(period):
    bundle = load_bundle(period / BUNDLE_DIR)
    codes = consultant_codes(bundle)
    folder = period / SUMMARIES_DIR
    victim = folder / safe_name(codes[1])
    if victim.exists():
        for p in victim.iterdir():
            p.unlink()
        victim.rmdir()
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("a file where the consultant's folder should be")  # the folder cannot be made
    try:
        results = build_consultant_summaries(period, workers=2)
        failed = [r for r in results if r.status == "failed"]
        assert [r.name for r in failed] == [f"consultant-summary:{codes[1]}"]
        assert f"consultant {codes[1]}" in failed[0].error and "FileExistsError" in failed[0].error
        assert {r.status for r in results if r.name != failed[0].name} <= {"built", "skipped"}
        assert codes[1] not in [row["consultant"] for row in listing(period)]
        assert len(listing(period)) == len(codes) - 1
    finally:
        victim.unlink()
    assert {r.status for r in build_consultant_summaries(period, workers=1)} >= {"built"}


def test_stale_folders_of_consultants_no_longer_in_the_results_are_removed(tmp_path):
    folder = tmp_path / SUMMARIES_DIR
    (folder / "GONE").mkdir(parents=True)
    (folder / "GONE" / "summary.pdf").write_bytes(b"%PDF")
    (folder / "GONE" / ".summary.stamp.json").write_text(json.dumps({"consultant": "GONE"}))
    (folder / "KEPT").mkdir()
    (folder / "KEPT" / "summary.html").write_text("<html></html>")
    (folder / "OTHER").mkdir()
    (folder / "OTHER" / "notes.txt").write_text("someone's own file")
    removed = remove_stale_folders(tmp_path, keep={"KEPT"})
    assert removed == [folder / "GONE"]
    assert sorted(os.listdir(folder)) == ["KEPT", "OTHER"]


@pytest.mark.slow
def test_a_run_builds_every_consultants_summary_and_publishes_none(built_small_audit):
    out = built_small_audit.period_dir
    codes = consultant_codes(load_bundle(out / BUNDLE_DIR))
    assert len(codes) >= 10
    results = sorted((r.name, r.status) for r in built_small_audit.results if r.name.startswith("consultant-summary:"))
    assert results == sorted((f"consultant-summary:{c}", "built") for c in codes)
    for code in codes:
        reader = PdfReader(out / SUMMARIES_DIR / safe_name(code) / "summary.pdf")
        assert len(reader.pages) == 1
        assert code in reader.pages[0].extract_text()
    # Confidential: nothing of the summaries is in the publication site.
    public = [p for p in (out / "site").rglob("*") if p.is_file()]
    assert public and not any(p.name.startswith("summary.") for p in public)
    assert not any(CONFIDENTIAL in p.read_text(errors="replace") for p in public if p.suffix in (".html", ".csv"))
