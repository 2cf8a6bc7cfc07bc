"""A failed disclosure check publishes nothing (issue 15, item 2), end to end through the command line.

A small audit is published; then its own provider notebook adds a breakdown the team forgot to suppress (a
table of small counts, marked ``data-count`` as the package's ``table`` marks them). The next run builds the
reports, but the check fails on the staged site: exit 5, the previous site and open data byte for byte,
every finding in ``disclosure-findings.csv``, and the team index and manifest saying so. Removing the
breakdown publishes again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from click.testing import CliRunner

from auditreport.cli import main
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec
from auditreport.execution.report_job import ReportJob
from auditreport.publication.team import team_index

from conftest import make_audit

SPEC = SyntheticSpec(records=1200, providers=3, consultants=9, outliers_high=0, outliers_low=0, seed=5)
#: The team's own breakdown: five groups, each with a small number of patients and deaths (all marked).
BREAKDOWN = ("display(HTML(table(['Group', 'Patients', 'Deaths'], [[f'Group {i}', 3, i] for i in range(1, 6)], "
             "counts=(1, 2), caption='Our own breakdown by group')))")


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every published file's bytes: the site and the open data."""
    files = [p for p in (out / "site").rglob("*") if p.is_file()] + [out / "indicators.csv"]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files}


def _text(path: Path) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8")).split())


@pytest.mark.slow
def test_a_failed_check_publishes_nothing_and_says_why(tmp_path):
    audit = make_audit(tmp_path, SPEC)
    runner = CliRunner()
    command = ["run", str(audit), "--reports", str(tmp_path / "reports"), "--audience", "public", "-j", "2"]
    first = runner.invoke(main, command)
    assert first.exit_code == 0, first.output
    config = load_config(audit)
    out = tmp_path / "reports" / config.id / config.period_label
    published = json.loads((out / "manifest.json").read_text())["publication"]
    assert published["status"] == "published" and published["findings"] == 0
    assert f"Published on {published['published']}: the disclosure check passed" in _text(out / "index.html")
    before = _snapshot(out)
    assert "site/index.html" in before and len(before) > 5

    # The audit's own provider notebook: the default one plus the team's breakdown.
    started = runner.invoke(main, ["notebooks", str(audit)])
    assert started.exit_code == 0, started.output
    audit.write_text(audit.read_text() + re.search(r"^notebooks:\n(?:  .+\n)+", started.output, re.M).group(0))
    config = load_config(audit)
    notebook = nbformat.read(str(config.provider_notebook), as_version=4)
    notebook.cells += [nbformat.v4.new_code_cell("from IPython.display import HTML, display"),
                       nbformat.v4.new_code_cell("from auditreport.presentation.tables import table"),
                       nbformat.v4.new_code_cell(BREAKDOWN)]
    nbformat.write(notebook, str(config.provider_notebook))

    failed = runner.invoke(main, command)
    assert failed.exit_code == 5, failed.output
    # The previous publication, byte for byte; no staging left behind.
    assert _snapshot(out) == before
    assert not list(out.glob(".publication-*")) and not list(out.glob(".site-*"))
    # Every finding is in the file: per provider, 10 counts in each of its public HTML and PDF, and in their
    # staged copies on the site (named where they would have been published).
    findings = pd.read_csv(out / "disclosure-findings.csv", keep_default_na=False)
    assert list(findings.columns) == ["file", "where", "rule", "text"]
    providers = sorted(p.name for p in (out / "providers").iterdir())
    assert len(providers) == 3 and len(findings) == 3 * 4 * 10
    assert set(findings["rule"]) == {"small-count", "small-count-pdf"}
    safe = providers[0]
    assert {f"providers/{safe}/public.html", f"providers/{safe}/public.pdf", f"site/reports/{safe}.html",
            f"site/reports/{safe}.pdf"} <= set(findings["file"])
    assert "table row 'Group 4', column 3 (breakdown count)" in set(findings["where"])
    assert "PDF table row 'Group 4', column 3" in set(findings["where"])
    assert not findings["file"].str.contains("publication-").any()
    # The error names the file and shows the first few; the rest are only in the file.
    error = failed.output
    assert f"{len(findings)} finding(s)" in error and str(out / "disclosure-findings.csv") in error
    assert f"... and {len(findings) - 10} more" in error
    assert "nothing was published" in error and "still hold the previous publication" in error
    assert f"\n  site/reports/{safe}.html: table row 'Group 1', column 2 (breakdown count): small-count: '3'" in error
    assert ".publication-" not in error  # findings are named where they would have been published
    # The team index says it at the top, and the manifest records it.
    manifest = json.loads((out / "manifest.json").read_text())
    attempt = manifest["publication"]
    assert attempt == {"status": "failed", "attempted": attempt["attempted"], "findings": len(findings),
                       "findings_file": "disclosure-findings.csv", "site_published": published["published"]}
    team = _text(out / "index.html")
    assert (f"Publication failed on {attempt['attempted']}: {len(findings)} findings (see disclosure-findings.csv); "
            f"the site still shows the publication of {published['published']}.") in team
    assert team.index("Publication failed") < team.index("Audience")
    assert "built, not published (disclosure check failed)" in team
    # The public top-level index still shows the site as it was published.
    assert published["published"] in _text(tmp_path / "reports" / "index.html")

    # The breakdown taken out again: published, and the findings file goes. A consultant summary written
    # for the period (as the summary step writes them) is listed in the team index and the manifest.
    notebook.cells = notebook.cells[:-3]
    nbformat.write(notebook, str(config.provider_notebook))
    summary = out / "consultants" / "C0000001" / "summary.pdf"
    summary.parent.mkdir(parents=True)
    summary.write_bytes(b"%PDF-1.7 a stand-in: the team index links it, the manifest lists it")
    again = runner.invoke(main, command)
    assert again.exit_code == 0, again.output
    assert not (out / "disclosure-findings.csv").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    republished = manifest["publication"]
    assert republished["status"] == "published" and republished["published"] >= attempt["attempted"]
    assert "Publication failed" not in _text(out / "index.html")
    assert "href='consultants/C0000001/summary.pdf'" in (out / "index.html").read_text()
    listed = {f["path"]: f for f in manifest["files"]}
    assert listed["consultants/C0000001/summary.pdf"]["kind"] == "consultant summary"
    assert _snapshot(out) != before and not list(out.glob(".publication-*"))


def test_team_index_before_anything_was_published_and_with_consultant_summaries(tmp_path):
    """A first publication that fails: "nothing has been published yet", and no link to a site that does
    not exist. Consultant summaries written for the period are listed with their links."""
    summary = tmp_path / "consultants" / "C1234567" / "summary.pdf"
    summary.parent.mkdir(parents=True)
    summary.write_bytes(b"%PDF-1.7")
    summary.with_suffix(".html").write_text("<html></html>")
    job = ReportJob(kind="provider", audience="public", notebook="provider.ipynb", bundle_dir=str(tmp_path / "bundle"),
                    out_dir=str(tmp_path / "providers" / "RX1"), stem="public", title="t", audit="a", period="p",
                    provider="RX1")
    publication = {"status": "failed", "attempted": "2026-12-02T10:00:00+00:00", "findings": 1,
                   "findings_file": "disclosure-findings.csv", "site_published": None}
    html = team_index("Demo audit", "2025", tmp_path, [job], {job.name}, publication)
    text = " ".join(re.sub(r"<[^>]+>", "", html).split())
    assert ("Publication failed on 2026-12-02T10:00:00+00:00: 1 finding (see disclosure-findings.csv); "
            "nothing has been published yet.") in text
    assert "site/index.html" not in html and "indicators.csv'" not in html
    assert "href='consultants/C1234567/summary.pdf'" in html and "href='consultants/C1234567/summary.html'" in html
    assert "built, not published (disclosure check failed)" in text


def test_a_run_killed_mid_swap_leaves_the_published_site_to_be_put_back(tmp_path):
    """Killed after moving the old site aside and before moving the new one in: the next publication puts the
    old one back (it is what was published) and removes the staging, before staging anew."""
    from auditreport.publication.site import _clear_staging

    old = tmp_path / ".site-old-123"
    old.mkdir()
    (old / "index.html").write_text("<html>published</html>")
    (tmp_path / ".publication-123" / "site").mkdir(parents=True)
    _clear_staging(tmp_path)
    assert (tmp_path / "site" / "index.html").read_text() == "<html>published</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    # With the new site in place, an old one left aside is removed.
    (tmp_path / ".site-old-456").mkdir()
    _clear_staging(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
