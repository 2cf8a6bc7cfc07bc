"""Report sections from real bundles: every measure's section of both reports renders for both audiences,
words come from the audit's definition, sections with nothing behind them are left out, text is escaped
by the templates, public output passes the disclosure checker, the capture API collects what a notebook
would show, and the reading API's examples run."""

from __future__ import annotations

import doctest
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from auditreport.analysis.national import run_national
from auditreport.bundle import write_bundle
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec, definition_data, write
from auditreport.presentation import (
    context,
    measure_sections,
    national_sections,
    provider_sections,
    shared_sections,
)
from auditreport.presentation.blocks import (
    Chart,
    Count,
    Flag,
    Group,
    Section,
    Strong,
    paragraph,
    section,
    table,
)
from auditreport.presentation.context import ReportContext, load_context
from auditreport.presentation.display import capture, outputs, show
from auditreport.presentation.measure_sections import measure_section
from auditreport.presentation.tables import block_html
from auditreport.presentation.tables import table as html_table
from auditreport.publication.checker import check_html
from auditreport.rules.flags import FLAG_SHORT_LABELS

from conftest import SYNTHETIC_PARAMS

HOSTILE = "<script>alert('name')</script> & Sons"


def provider_report(ctx: ReportContext) -> list[Section | None]:
    """The provider notebook's sections, in its order."""
    return [shared_sections.cover(ctx), provider_sections.at_a_glance(ctx),
            *(measure_section(ctx, m["id"]) for m in ctx.measures), provider_sections.case_mix_section(ctx),
            provider_sections.quality_section(ctx), provider_sections.next_steps(ctx), shared_sections.methods(ctx)]


def national_report(ctx: ReportContext) -> list[Section | None]:
    """The national notebook's sections, in its order."""
    return [shared_sections.cover(ctx), national_sections.summary(ctx),
            *(measure_section(ctx, m["id"]) for m in ctx.measures), national_sections.quality_by_provider(ctx),
            shared_sections.methods(ctx)]


#: An audit in a hospital's words with a measure of every kind: an adjusted proportion with monitoring,
#: survival, a process proportion against a fixed standard, an internal process mean with an eligibility
#: filter, and a risk-adjusted ratio.
WORDS = {"activity": "admissions", "activity_singular": "admission", "provider": "hospital",
         "providers": "hospitals", "population": "Wales"}
MEASURES = [
    {"id": "mortality", "label": "30-day mortality", "kind": "proportion", "death_within_days": 30,
     "direction": "lower_is_better", "risk_model": {"method": "fit", "covariates": ["age", "asa", "urgency"]},
     "monitoring": True},
    {"id": "survival", "label": "Survival", "kind": "survival", "horizons": [30, 365], "ci_transform": "log-log",
     "risk_model": {"method": "fit", "covariates": ["age", "asa", "urgency"]}},
    {"id": "elderly", "label": "Admissions aged 80 or over", "kind": "proportion", "type": "process",
     "event": "age >= 80", "direction": "lower_is_better", "target": 0.15},
    {"id": "emergency_age", "label": "Mean age of emergency admissions", "kind": "mean", "type": "process",
     "value": "age", "value_unit": "years", "eligible": 'urgency == "emergency"', "direction": "lower_is_better",
     "published": False},
    {"id": "age_ratio", "label": "Age, observed / expected", "kind": "ratio", "value": "age", "value_unit": "years",
     "risk_model": {"method": "fit", "family": "poisson", "covariates": ["asa", "urgency", "sex"]},
     "overdispersion": "shmi"},
]


def _definition(folder: Path, spec: SyntheticSpec, records: pd.DataFrame | None = None, **sections) -> Path:
    """The synthetic audit's definition with its measures and wording replaced by ``sections``."""
    paths = write(spec, folder / "data")
    if records is not None:
        records.to_parquet(paths["records"], index=False)
    definition = yaml.safe_load(SYNTHETIC_PARAMS.read_text())
    for old in ("outcome", "risk_model", "survival", "measures", "wording"):
        definition.pop(old, None)
    definition["data"].update(definition_data(paths))
    definition.update(sections)
    out = folder / "audit.yaml"
    out.write_text(yaml.safe_dump(definition, sort_keys=False))
    return out


SPEC = SyntheticSpec(records=3000, providers=6, consultants=18, outliers_high=1, outliers_low=0, seed=7)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sections")
    audit = _definition(folder, SPEC, wording=WORDS, measures=MEASURES)
    return write_bundle(folder / "out", run_national(load_config(audit)))


@pytest.fixture(scope="module")
def undated_bundle(tmp_path_factory) -> Path:
    """The audit of the issue's real extract: a 0/1 death column, no dates, no consultants mapped."""
    folder = tmp_path_factory.mktemp("undated")
    from auditreport.data.synthetic import generate

    records = generate(SPEC)[0]
    days = (pd.to_datetime(records["death_date"]) - pd.to_datetime(records["procedure_date"])).dt.days
    records["died"] = (days <= 30).astype(int)
    records = records.drop(columns=["procedure_date", "death_date", "followup_end", "consultant_code"])
    audit = _definition(folder, SPEC, records, wording=WORDS, measures=[
        {"id": "mortality", "label": "In-hospital mortality", "kind": "proportion", "event": "died",
         "direction": "lower_is_better", "risk_model": {"method": "fit", "covariates": ["age", "asa", "urgency"]}},
        {"id": "old", "label": "Aged 80 or over", "kind": "proportion", "event": "age >= 80",
         "direction": "lower_is_better"}])
    definition = yaml.safe_load(audit.read_text())
    definition["columns"] = {k: v for k, v in definition["columns"].items()
                             if k in ("patient_id", "provider_code", "provider_name")}
    definition["data"].pop("consultants")  # no consultant codes: no consultants file either
    audit.write_text(yaml.safe_dump(definition, sort_keys=False))
    return write_bundle(folder / "out", run_national(load_config(audit)))


@pytest.fixture(scope="module")
def providers(bundle) -> list[str]:
    t = pd.read_parquet(bundle / "indicators.parquet")
    return sorted(t.loc[t["level"] == "provider", "unit_id"].unique())


class _Page(HTMLParser):
    """Tags as they open and close, and each table's header and row widths."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.headings: list[str] = []
        self.widths: list[tuple[int, list[int]]] = []
        self._heading: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.errors.append("script element")
        if tag == "table":
            self.widths.append((0, []))
        elif tag == "th":
            self.widths[-1] = (self.widths[-1][0] + 1, self.widths[-1][1])
        elif tag == "tr" and self.open and self.open[-1] == "tbody":
            self.widths[-1][1].append(0)
        elif tag == "td":
            self.widths[-1][1][-1] += 1
        if tag in ("h1", "h2", "h3"):
            self._heading = ""
        self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:]}")
        else:
            self.open.pop()
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(self._heading)
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data


def _render(ctx: ReportContext, report) -> tuple[str, list[Chart], list[Section]]:
    sections = [s for s in report(ctx) if s is not None]
    parts = outputs(*sections)
    charts = [p for p in parts if isinstance(p, Chart)]
    for c in charts:
        plt.close(c.figure)
    return "".join(str(p) for p in parts if not isinstance(p, Chart)), charts, sections


def _check_page(html: str, sections: list[Section]) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    assert not page.errors and not page.open, page.errors or page.open
    for headers, rows in page.widths:
        assert all(width == headers for width in rows), (headers, rows)
    titles = [s.title for s in sections if s.title]
    assert [h for h in page.headings if h in titles] == titles  # every section's heading, in order
    return page


def _text(html: str) -> str:
    """The visible text of a page (tags dropped, entities read, spaces collapsed)."""
    import html as html_lib

    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.mark.parametrize("audience", ["local", "public"])
def test_every_measure_has_its_section_in_a_provider_report(bundle, providers, audience):
    """A proportion (adjusted and against a standard), survival, a mean and a ratio: each measure's section,
    its statistics and funnel; the internal measure in the confidential report only."""
    for provider in providers:
        ctx = load_context(bundle, audience, provider)
        html, charts, sections = _render(ctx, provider_report)
        page = _check_page(html, sections)
        shown = [m for m in MEASURES if audience == "local" or m.get("published", True)]
        assert [m["id"] for m in ctx.measures] == [m["id"] for m in shown]
        for m in shown:
            assert m["label"] in page.headings, (provider, m["id"])
        if audience == "public":
            assert "Mean age of emergency admissions" not in html
        text = _text(html)
        assert "Crude rate" in text and "Risk-adjusted rate" in text  # the adjusted proportion's statistics
        assert "Mean (years)" in text and "Median (years)" in text  # the mean's and the ratio's
        assert "Observed / expected (O/E)" in text
        assert "around the standard of 15.0%" in text or "15.0%" in text  # the fixed standard
        assert {"At a glance", "Case mix", "Data quality", "Methods", "Survival",
                "Monitoring over time: RA-CUSUM and VLAD"} <= set(page.headings)
        assert all(c.alt and c.alt != "Chart" for c in charts)
        # a funnel per measure with one (4 or 5), Kaplan-Meier, CUSUM and VLAD, case mix, calibration
        assert len(charts) >= len(shown) + 5
        assert ctx.provider_name in html and f"Hospital code {provider}" in html
    assert not plt.get_fignums()


def test_at_a_glance_lists_every_measure_with_the_crude_rate_as_context(bundle, providers):
    ctx = load_context(bundle, "local", providers[0])
    glance = provider_sections.at_a_glance(ctx)
    rows = next(b for b in glance.blocks if hasattr(b, "rows")).rows
    labels = [r[0] for r in rows]
    assert [m["label"] for m in MEASURES] == [x for x in labels if "context" not in x]
    crude = next(r for r in rows if r[0] == "30-day mortality: crude rate (context)")
    assert crude[-1] == "Context (no status)"  # the crude rate of an adjusted measure never carries a flag
    headline = next(r for r in rows if r[0] == "30-day mortality")
    assert isinstance(headline[-1], Flag) and headline[-1].direction == "lower_is_better"
    assert headline[1] == "Risk-adjusted rate"


@pytest.mark.parametrize("audience", ["local", "public"])
def test_national_report_has_each_measures_sections(bundle, audience):
    ctx = load_context(bundle, audience)
    html, charts, sections = _render(ctx, national_report)
    page = _check_page(html, sections)
    assert page.headings[0] == "National report"
    assert {"Summary", "Data completeness", "Methods"} <= set(page.headings)
    for m in ctx.measures:
        assert m["label"] in page.headings
    # per measure with a status: funnel, outliers, ranked table, over-dispersion; per adjusted: the risk model
    status = [m for m in ctx.measures if m["carries_status"]]
    assert page.headings.count("Funnel plot") == len([m for m in ctx.measures if not ctx.funnel_curve(m["id"]).empty])
    assert page.headings.count("All hospitals") == len(ctx.measures)
    assert page.headings.count("Alerts and alarms") == len(status)
    assert page.headings.count("Over-dispersion") == len(status)
    assert page.headings.count("Risk model") == len([m for m in ctx.measures if m["adjusted"] and
                                                    m["kind"] != "survival"])
    assert "Cox proportional hazards" in page.headings and "Monitoring: RA-CUSUM signals" in page.headings
    assert sum("calibration of the risk model" in c.alt for c in charts) == 1  # drawn once, in its measure
    assert len(charts) >= len(ctx.measures) + 2


@pytest.mark.parametrize("audience", ["local", "public"])
def test_words_come_from_the_definition(bundle, providers, audience):
    """An audit whose wording says admissions, hospital and Wales shows no procedures, provider or England."""
    pages = [_render(load_context(bundle, audience), national_report)[0]]
    pages += [_render(load_context(bundle, audience, p), provider_report)[0] for p in providers]
    for html in pages:
        text = _text(html)
        for word in (r"\bprocedures\b", r"\bproviders?\b", r"\bEngland\b", r"deaths within"):
            found = re.findall(rf".{{0,60}}{word}.{{0,60}}", text, flags=re.IGNORECASE)
            assert not found, found
        assert "Wales (all hospitals)" in text and "admissions" in text


def test_risk_factors_read_by_their_labels(bundle, providers):
    """Case mix and data quality name factors and levels as the definition labels them (sex: F -> Female)."""
    definition = yaml.safe_load(SYNTHETIC_PARAMS.read_text())
    sex = next(f for f in definition["risk_factors"] if f["name"] == "sex")
    ctx = load_context(bundle, "local", providers[0])
    text = _text(_render(ctx, lambda c: [provider_sections.case_mix_section(c),
                                         provider_sections.quality_section(c)])[0])
    assert f"{sex['label']} {ctx.wording['activity'].capitalize()} Share" in text
    assert all(name in text for name in sex["labels"].values())
    assert f"Completeness: {sex['label']}" in text and "Completeness: sex" not in text


def test_undated_audit_has_no_survival_monitoring_or_consultants(undated_bundle):
    """No dates: no survival, no monitoring; no consultant mapped: no consultants, and no completeness row
    for a field never mapped."""
    codes = sorted(pd.read_parquet(undated_bundle / "indicators.parquet").query("level == 'provider'")["unit_id"]
                   .unique())
    for audience in ("local", "public"):
        for ctx in [load_context(undated_bundle, audience)] + [load_context(undated_bundle, audience, codes[0])]:
            report = provider_report if ctx.provider else national_report
            html, _, sections = _render(ctx, report)
            page = _check_page(html, sections)
            assert {"In-hospital mortality", "Aged 80 or over"} <= set(page.headings)
            for absent in ("Survival", "Monitoring over time: RA-CUSUM and VLAD", "Monitoring: RA-CUSUM signals",
                           "Consultants", "Median survival", "Cox proportional hazards"):
                assert absent not in page.headings
            text = _text(html)
            assert "consultant_code" not in text and "1 days" not in text
            assert "No status (not risk-adjusted)" in text or ctx.provider is None


def test_public_sections_pass_the_disclosure_checker(bundle, providers, tmp_path):
    """What the checker reads in published HTML (count cells, count sentences) holds no small number."""
    threshold = int(load_context(bundle, "public").threshold)
    pages = {"national": _render(load_context(bundle, "public"), national_report)[0]}
    for provider in providers:
        pages[provider] = _render(load_context(bundle, "public", provider), provider_report)[0]
    for name, html in pages.items():
        path = tmp_path / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        findings, cells = check_html(path, threshold)
        assert not findings, findings
    # and the confidential reports do show small counts, so the check above had something to find
    local = "".join(_render(load_context(bundle, "local", p), provider_report)[0] for p in providers)
    (tmp_path / "local.html").write_text(local, encoding="utf-8")
    assert check_html(tmp_path / "local.html", threshold)[0]


def test_hostile_provider_name_is_escaped(bundle, providers):
    ctx = load_context(bundle, "local", providers[0])
    for name in ("indicators", "indicators_public"):
        t = getattr(ctx.bundle, name)
        setattr(ctx.bundle, name, t.assign(unit_name=t["unit_name"].where(t["unit_id"] != providers[0], HOSTILE)))
    html, _, sections = _render(ctx, provider_report)
    _check_page(html, sections)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt; &amp; Sons" in html
    national, _, _ = _render(load_context(bundle, "local"), national_report)
    assert "<script>" not in national


def test_reading_api_examples_run(bundle, providers):
    """The docstring examples statisticians copy into their own notebooks run against a real bundle."""
    globs = {"bundle_dir": bundle, "provider": providers[0], "load_context": load_context}
    globs["ctx"] = load_context(bundle, "local", providers[0])
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    ran = 0
    for module in (context, measure_sections):
        for test in finder.find(module, globs={**vars(module), **globs}):
            runner.run(test)
            ran += len(test.examples)
    plt.close("all")
    assert ran >= 10 and runner.failures == 0, runner.summarize()


def test_a_small_provider_is_suppressed_not_said_to_have_had_none(tmp_path):
    """A public report hides a provider's 1 to 7 records as *, never as "no admissions eligible" (a blank
    denominator is a suppressed count, not a zero); one with no eligible records is told so in both reports."""
    from auditreport.data.synthetic import generate

    records = generate(SPEC)[0]
    small = sorted(records["provider_code"].unique())[0]
    elective = records["urgency"] != "emergency"
    mine = records[(records["provider_code"] == small) & elective].head(4)
    records = pd.concat([records[records["provider_code"] != small], mine])
    audit = _definition(tmp_path, SPEC, records, wording=WORDS, measures=[
        MEASURES[2], {**MEASURES[3], "published": True}])
    bundle = write_bundle(tmp_path / "out", run_national(load_config(audit)))
    for audience in ("local", "public"):
        text = _text(_render(load_context(bundle, audience, small), provider_report)[0])
        said = re.findall(r"had no admissions eligible for this measure[^.]*\.", text)
        assert said == ['had no admissions eligible for this measure (urgency == "emergency") in the period, so it '
                        'has no figures for it.'], (audience, said)
        assert "no eligible admissions" in text  # at a glance, for the emergency measure
    public = _text(_render(load_context(bundle, "public", small), provider_report)[0])
    assert "* of * admissions" in public


def test_a_misspelt_measure_id_is_named_not_an_empty_table(bundle, providers):
    """A statistician's own cell asking for a measure the audit lacks fails, naming the measures it has."""
    ctx = load_context(bundle, "local", providers[0])
    measures = [m["id"] for m in ctx.measures]
    for read in (lambda: ctx.unit_rows("provider", providers[0], "length_of_stay"),
                 lambda: ctx.measure_table("length_of_stay", "provider", "rate")):
        with pytest.raises(KeyError, match="'length_of_stay' is not in this local report") as err:
            read()
        assert all(m in str(err.value) for m in measures)
    assert not ctx.unit_rows("provider", providers[0], measures[0]).empty


def test_flag_badge_words_follow_the_direction():
    worse = block_html(paragraph(Flag("alarm_high", "lower_is_better")))
    better = block_html(paragraph(Flag("alarm_high", "higher_is_better")))
    assert "Alarm: worse than expected" in worse and "Alarm: better than expected" in better
    assert FLAG_SHORT_LABELS["alarm_high"] in block_html(paragraph(Flag("alarm_high")))  # no direction: the side


def test_blocks_escape_text_and_keep_inline_spacing():
    html = block_html(paragraph("<b>", Count("1,234"), " deaths; status ", Flag("alarm_high"), Strong("!"),
                                css_class="lead"))
    assert html.startswith("<p class='lead'>&lt;b&gt;<strong data-count>1,234</strong> deaths; status <span ")
    assert f">{FLAG_SHORT_LABELS['alarm_high']}</span><strong>!</strong></p>" in html
    t = table(["a<", "n"], [["x&y", 3], ["<i>", Flag("")]], numeric=(1,), counts=(1,), caption="c<")
    page = str(block_html(t))
    assert "<caption>c&lt;</caption>" in page and "<th scope='col'>a&lt;</th>" in page
    assert "<td>x&amp;y</td><td class='num' data-count>3</td>" in page
    assert "Not assessed" in page and "<i>" not in page


def test_table_helper_for_pages_outside_the_reports():
    """The site and indexes pass raw HTML cells (links) or plain text; the result is a plain str."""
    page = html_table(["Unit", "Link"], [["<x>", "<a href='u.html'>u</a>"]], raw=False)
    assert type(page) is str and "&lt;x&gt;" in page and "&lt;a href" in page
    raw = html_table(["Unit", "Link"], [["A &amp; B", "<a href='u.html'>u</a>"]], raw=True)
    assert "<td><a href='u.html'>u</a></td>" in raw and "<td>A &amp; B</td>" in raw
    assert ("<h2>x</h2>" + raw).startswith("<h2>x</h2><table")  # concatenation does not escape the left side


def test_group_cannot_hold_a_chart_and_sections_render_in_order():
    fig = plt.figure()
    try:
        with pytest.raises(TypeError):
            block_html(Group((Chart(fig, "alt"),), "g"))
        parts = outputs(section("One", paragraph("a"), Chart(fig, "alt"), paragraph("b")), None,
                        section("", section("Two", paragraph("c"), level=3)))
    finally:
        plt.close(fig)
    assert [type(p).__name__ for p in parts] == ["Markup", "Chart", "Markup"]
    assert str(parts[0]) == "<h2>One</h2><p>a</p>"
    assert str(parts[2]) == "<p>b</p><h3>Two</h3><p>c</p>"


def test_capture_collects_html_and_closes_charts(bundle, providers):
    ctx = load_context(bundle, "public", providers[0])
    with capture() as html:
        show(measure_section(ctx, "elderly"), provider_sections.next_steps(ctx))
        with capture() as inner:
            show(provider_sections.quality_section(ctx))
    # the measure's text, its funnel, its consultants' text and funnel, then what a flag means
    assert html[0].startswith("<h2>Admissions aged 80 or over</h2>") and "What a flag means" in html[-1]
    assert not any("Data quality" in h for h in html)
    assert len(inner) == 1 and "Data quality" in inner[0]
    assert not plt.get_fignums()
