"""Report sections from a real bundle: every section of both reports renders for both audiences, text is
escaped by the templates, public output passes the disclosure checker, and the capture API collects what
a notebook would show."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from auditreport.analysis.national import run_national
from auditreport.bundle import write_bundle
from auditreport.config import load_config
from auditreport.presentation import national_sections, provider_sections, shared_sections, survival_sections
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
from auditreport.presentation.tables import block_html
from auditreport.presentation.tables import table as html_table
from auditreport.publication.checker import check_html
from auditreport.rules.flags import FLAG_SHORT_LABELS

HOSTILE = "<script>alert('name')</script> & Sons"

PROVIDER_REPORT = (shared_sections.cover, provider_sections.at_a_glance, provider_sections.funnel_section,
                   survival_sections.survival_section, survival_sections.median_logrank_section,
                   survival_sections.cox_provider_section, survival_sections.monitoring_section,
                   provider_sections.case_mix_section, provider_sections.consultant_section,
                   provider_sections.quality_section, provider_sections.next_steps, shared_sections.methods)
NATIONAL_REPORT = (shared_sections.cover, national_sections.summary, national_sections.outlier_list,
                   national_sections.funnel_plots, national_sections.ranked_table, national_sections.risk_model,
                   national_sections.overdispersion, survival_sections.survival_section,
                   survival_sections.national_survival_tests, survival_sections.cox_national_section,
                   survival_sections.monitoring_national, national_sections.quality_by_provider,
                   shared_sections.methods)


@pytest.fixture(scope="module")
def bundle(small_audit, tmp_path_factory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("sections"), run_national(load_config(small_audit)))


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


def _render(ctx: ReportContext, builders) -> tuple[str, list[Chart], list[Section]]:
    sections = [s for s in (build(ctx) for build in builders) if s is not None]
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


@pytest.mark.parametrize("audience", ["local", "public"])
def test_every_provider_section_renders(bundle, providers, audience):
    for provider in providers:
        ctx = load_context(bundle, audience, provider)
        html, charts, sections = _render(ctx, PROVIDER_REPORT)
        _check_page(html, sections)
        assert all(c.alt and c.alt != "Chart" for c in charts)
        assert len(charts) >= 6  # funnel, survival, Cox funnel, case mix, calibration, and more
        assert ctx.provider_name in html and f"Provider code {provider}" in html
        for heading in ("At a glance", "Case mix", "Data quality", "Methods", "Survival"):
            assert f">{heading}</h2>" in html
    assert not plt.get_fignums()


@pytest.mark.parametrize("audience", ["local", "public"])
def test_national_report_sections_render(bundle, audience):
    html, charts, sections = _render(load_context(bundle, audience), NATIONAL_REPORT)
    page = _check_page(html, sections)
    assert page.headings[0] == "National report"
    assert {"Summary", "Funnel plots", "All providers", "Risk model", "Over-dispersion",
            "Data completeness by provider"} <= set(page.headings)
    assert len(charts) >= 5  # three funnels, calibration, survival, the Cox funnel


def test_public_sections_pass_the_disclosure_checker(bundle, providers, tmp_path):
    """What the checker reads in published HTML (count cells, count sentences) holds no small number."""
    threshold = int(load_context(bundle, "public").threshold)
    pages = {"national": _render(load_context(bundle, "public"), NATIONAL_REPORT)[0]}
    for provider in providers:
        pages[provider] = _render(load_context(bundle, "public", provider), PROVIDER_REPORT)[0]
    for name, html in pages.items():
        path = tmp_path / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        findings, cells = check_html(path, threshold)
        assert not findings, findings
    # and the confidential reports do show small counts, so the check above had something to find
    local = "".join(_render(load_context(bundle, "local", p), PROVIDER_REPORT)[0] for p in providers)
    (tmp_path / "local.html").write_text(local, encoding="utf-8")
    assert check_html(tmp_path / "local.html", threshold)[0]


def test_hostile_provider_name_is_escaped(bundle, providers):
    ctx = load_context(bundle, "local", providers[0])
    for name in ("indicators", "indicators_public"):
        t = getattr(ctx.bundle, name)
        setattr(ctx.bundle, name, t.assign(unit_name=t["unit_name"].where(t["unit_id"] != providers[0], HOSTILE)))
    html, _, sections = _render(ctx, PROVIDER_REPORT)
    _check_page(html, sections)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt; &amp; Sons" in html
    national, _, _ = _render(load_context(bundle, "local"), NATIONAL_REPORT)
    assert "<script>" not in national


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
        show(provider_sections.funnel_section(ctx), provider_sections.next_steps(ctx))
        with capture() as inner:
            show(provider_sections.quality_section(ctx))
    assert len(html) == 2 and "Risk-adjusted mortality: funnel plot" in html[0] and "What a flag means" in html[1]
    assert len(inner) == 1 and "Data quality" in inner[0]
    assert not plt.get_fignums()
