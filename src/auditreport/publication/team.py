"""The audit team's side of a publication: its index page, the findings file, when the site was published.

A publication either passes the disclosure check and replaces the site, or fails and leaves the previous
site in place (``publication.site.publish``). Either way the team must see at once what happened: the
period's ``index.html`` says at the top when the site was published, or that the publication failed, with
how many findings, where they all are (``disclosure-findings.csv``, every one, no cap) and which
publication the site still shows. The manifest records the same (``"publication"``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from auditreport.execution.report_job import ReportJob, safe_name
from auditreport.files import atomic_write_text
from auditreport.publication.checker import Finding
from auditreport.publication.index import published_on
from auditreport.rendering.html import SORT_SCRIPT, stylesheet

#: Every finding of the last failed publication, beside the team index (columns as the contract names them).
FINDINGS_FILE = "disclosure-findings.csv"
FINDINGS_COLUMNS = ["file", "where", "rule", "text"]
#: Where each consultant's confidential summary is written (contract section 8), relative to the period.
CONSULTANT_SUMMARIES = "consultants"


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("auditreport.publication", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def public_path(path: str | Path, out: Path, staging: Path | None = None) -> str:
    """A checked file's path as the team knows it: relative to the period folder, and for a staged file the
    place it would have been published to (``site/...``, ``indicators.csv``), since staging is removed."""
    path = Path(path)
    for base in (staging, out):
        if base is not None and path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.as_posix()


def write_findings(out: Path, findings: Sequence[Finding], staging: Path | None = None) -> Path:
    """Every finding, one row each (file, where, rule, text), to ``<period>/disclosure-findings.csv``."""
    from auditreport.publication.site import neutralise_formulas  # the text found may start like a formula

    frame = pd.DataFrame([[public_path(f.path, out, staging), f.where, f.rule, f.text] for f in findings],
                         columns=FINDINGS_COLUMNS)
    return atomic_write_text(out / FINDINGS_FILE, neutralise_formulas(frame).to_csv(index=False))


def last_published(out: Path) -> str | None:
    """When the site now in ``<period>/site`` was published (UTC, ISO), from the manifest; None if there is no
    site. A manifest from before publications were recorded gives its creation time; without one, the
    site index's modification time."""
    if not (out / "site" / "index.html").is_file():
        return None
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        manifest = {}
    when = published_on(manifest)
    if when:
        return when
    stamp = (out / "site" / "index.html").stat().st_mtime
    return dt.datetime.fromtimestamp(stamp, dt.UTC).replace(microsecond=0).isoformat()


def consultant_summaries(out: Path) -> list[dict]:
    """Each consultant summary written for the period (``consultants/<safe>/summary.pdf``), with the
    consultant's name and code from the bundle's consultants table where it has one."""
    folder = out / CONSULTANT_SUMMARIES
    pdfs = sorted(folder.glob("*/summary.pdf")) if folder.is_dir() else []
    if not pdfs:
        return []
    names: dict[str, tuple[str, str]] = {}
    table = out / "bundle" / "consultants.parquet"
    if table.is_file():
        people = pd.read_parquet(table, columns=["consultant_code", "consultant_name"]).drop_duplicates("consultant_code")
        names = {safe_name(str(c)): (str(c), "" if n is None else str(n))
                 for c, n in zip(people["consultant_code"], people["consultant_name"], strict=True)}
    rows = []
    for pdf in pdfs:
        code, name = names.get(pdf.parent.name, (pdf.parent.name, ""))
        rel = pdf.relative_to(out).with_suffix("")
        links = [{"href": f"{rel.as_posix()}{s}", "text": s[1:]} for s in (".html", ".pdf")
                 if pdf.with_suffix(s).is_file()]
        rows.append({"name": name or code, "code": code, "links": links})
    return sorted(rows, key=lambda r: (r["name"], r["code"]))


def team_index(audit: str, period: str, out: Path, jobs: Sequence[ReportJob], ok: set[str],
               publication: dict) -> str:
    """The team's index page: the last publication's outcome at the top, every report with its status,
    and each consultant summary. Links only to files that exist."""
    failed = publication.get("status") == "failed"
    reports = []
    for job in jobs:
        rel = (Path(job.out_dir).relative_to(out) / job.stem).as_posix()
        built = job.name in ok
        status = "built" if built else "FAILED"
        if built and failed and job.audience == "public":
            status = "built, not published (disclosure check failed)"
        links = [{"href": f"{rel}{s}", "text": s[1:]} for s in (".html", ".pdf", ".ipynb")] if built else []
        reports.append({"unit": job.provider or "national", "audience": job.audience, "links": links,
                        "status": status})
    return _templates().get_template("team_index.html.j2").render(
        audit=audit, period=period, publication=publication, reports=reports,
        consultants=consultant_summaries(out), site_exists=(out / "site" / "index.html").is_file(),
        open_data_exists=(out / "indicators.csv").is_file(), css=Markup(stylesheet()),
        script=Markup(SORT_SCRIPT.read_text(encoding="utf-8")))
