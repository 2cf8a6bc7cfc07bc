"""The publication site, the open data and the manifest of one audit period.

``site/`` holds public outputs only: the index of every provider with the
headline value and outlier status of every published measure, the public
reports, the national report, and the open data (``indicators.csv``, one row per
unit, measure and statistic, suppressed) with its data dictionary of measures,
statistics and columns. Internal measures (``published: false`` in the audit
definition) appear nowhere in it. It is built in a staging folder with the open
data, checked there for disclosure, and swapped in whole only if the check
passes, so readers never see it half-updated nor a publication that failed.
The period's own ``index.html`` is the audit team's: it also links the
confidential local feedback reports, and is never copied into the site.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from auditreport.bundle import BUNDLE_DIR, load_bundle
from auditreport.config import AuditConfig
from auditreport.data.loading import file_sha256
from auditreport.execution.report_job import JobResult, ReportJob, safe_name
from auditreport.files import atomic_write_text
from auditreport.presentation.measure_parts import statistic_label, target_text, value_text
from auditreport.presentation.tables import esc, flag_badge, table
from auditreport.provenance import code_version, now_utc
from auditreport.publication.checker import CheckReport, Finding, check_period
from auditreport.publication.team import (
    CONSULTANT_SUMMARIES,
    FINDINGS_FILE,
    last_published,
    public_path,
    team_index,
    write_findings,
)
from auditreport.rendering.html import SORT_SCRIPT, stylesheet
from auditreport.rules.disclosure import SUPPRESSED
from auditreport.rules.flags import FLAGS

OPEN_COLUMNS = ["audit", "period", "measure", "statistic", "level", "unit_id", "unit_name", "parent_id",
                "numerator", "denominator", "observed", "expected", "value", "lower95", "upper95", "lower998",
                "upper998", "target", "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998", "flag",
                "suppressed", "method"]

#: The open data's columns, as the data dictionary explains them.
COLUMN_MEANINGS = {
    "audit": "Audit identifier",
    "period": "Audit period",
    "measure": "Measure identifier: one of the measures listed in this dictionary (entry 'measure')",
    "statistic": "Which figure of the measure the row holds: one of the statistics listed in this dictionary "
                 "(entry 'statistic')",
    "level": "national, provider or consultant",
    "unit_id": "Provider code, consultant code, or 'national'. Text, exactly as submitted: read it as text "
               "(leading zeros count, and a code such as NA is a code, not a missing value)",
    "unit_name": "Provider name (consultants are identified by code)",
    "parent_id": "For a consultant, the code of the provider where most of their cases were done. Text, "
                 "like unit_id",
    "numerator": "Proportions: events among the eligible records; survival: deaths by the horizon (over all "
                 "follow-up for cox_oe_ratio); mean and ratio measures: the sum of the values. Blank where "
                 "suppressed",
    "denominator": "Eligible records analysed for the measure; blank where from 1 to the suppression threshold "
                   "or withheld so that such a count cannot be worked out",
    "observed": "Observed (O): events for proportions and Cox, the sum of the values for ratio measures",
    "expected": "Expected (E): the sum of the records' predictions under the national risk model (predicted "
                "risks for proportions, fitted values of the log-link model for ratios, cumulative hazards "
                "under the national Cox model for cox_oe_ratio)",
    "value": "The statistic's value: a proportion (0-1) for rates and survival, a ratio for O/E, the measure's "
             "own unit for means and medians",
    "lower95": "Lower limit of the 95% confidence interval of the value",
    "upper95": "Upper limit of the 95% confidence interval of the value",
    "lower998": "Lower limit of the 99.8% confidence interval of the value",
    "upper998": "Upper limit of the 99.8% confidence interval of the value",
    "target": "Comparator: the national value, the measure's fixed standard, or 1 for O/E",
    "limit_lower95": "Lower 95% funnel control limit at this unit's precision",
    "limit_upper95": "Upper 95% funnel control limit at this unit's precision",
    "limit_lower998": "Lower 99.8% funnel control limit at this unit's precision",
    "limit_upper998": "Upper 99.8% funnel control limit at this unit's precision",
    "flag": f"HQIP outlier status, as the side of the limits the unit lies on: {', '.join(FLAGS)}; whether "
            "high is worse or better is the measure's direction. Blank where the statistic carries no status",
    "suppressed": "True where figures were withheld under the small-numbers rule: a count from 1 to the "
                  "threshold, or a further count withheld so that a small one cannot be worked out from a total",
    "method": "How the value, interval and limits were computed",
}

#: Every statistic a measure can publish (``survival_<h>d`` once per horizon), as the dictionary explains it.
STATISTIC_MEANINGS = {
    "rate": "Crude rate: events / eligible records (Wilson score interval)",
    "oe_ratio": "Observed / expected (O / E): for a risk-adjusted proportion, events over the sum of predicted "
                "risks; for a ratio measure, the sum of the values over the sum of the risk model's fitted values "
                "(exact Poisson interval on O)",
    "adjusted_rate": "Risk-adjusted rate (0-1): the unit's O / E carried onto the national case mix by a logit "
                     "shift, so it cannot pass 100% (interval from the O / E interval's bounds on O)",
    "mean": "Mean value per record (t interval)",
    "median": "Median value (exact order-statistic interval)",
    "survival_<h>d": "Kaplan-Meier survival at h days (Greenwood interval)",
    "cox_oe_ratio": "Observed deaths / expected under the national Cox model (exact Poisson interval)",
}

DICTIONARY_COLUMNS = ["entry", "name", "label", "description", "kind", "type", "direction", "target", "unit",
                      "statistics"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula (OWASP CSV injection)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v)
    return out


def published_measures(meta: dict) -> list[dict]:
    """The measures the audit publishes (``published: true``), in declaration order, from bundle metadata."""
    return [m for m in meta["measures"] if m["published"]]


def open_data(config: AuditConfig, out: Path) -> pd.DataFrame:
    """The open data of a period: published measures only, one row per unit, measure and statistic.

    It is the national stage's suppressed table (the very one the public reports show), which holds
    published measures only; the site checks that against the metadata itself, so an internal measure
    (``published: false``) cannot reach it. Consultants are left out unless the audit publishes them.
    """
    bundle = load_bundle(out / BUNDLE_DIR)
    public = bundle.indicators_public
    public = public[public["measure"].isin([m["id"] for m in published_measures(bundle.metadata)])]
    if not config.publish_consultants:
        public = public[public["level"] != "consultant"]
    return public[OPEN_COLUMNS]


def data_dictionary(meta: dict, data: pd.DataFrame) -> pd.DataFrame:
    """What the open data hold: each published measure, each statistic present, each column."""
    rows = []
    for m in published_measures(meta):
        target = ("expected for the case mix (O/E = 1)" if m["adjusted"] else "the national value"
                  if m["target_kind"] == "national" else f"{m['target']:g} (a fixed standard)")
        rows.append({"entry": "measure", "name": m["id"], "label": m["label"], "description": m["description"],
                     "kind": m["kind"], "type": m["type"], "direction": direction_words(m["direction"]),
                     "target": target, "unit": m.get("value_unit") or "",
                     "statistics": " ".join(m["statistics"])})
    present = sorted(set(data["statistic"]), key=_statistic_order)
    for statistic in present:
        generic = "survival_<h>d" if statistic.startswith("survival_") else statistic
        rows.append({"entry": "statistic", "name": statistic,
                     "description": STATISTIC_MEANINGS.get(generic, "").replace(" h days", f" {_days(statistic)} days")})
    rows += [{"entry": "column", "name": column, "description": COLUMN_MEANINGS[column]} for column in OPEN_COLUMNS]
    return pd.DataFrame(rows, columns=DICTIONARY_COLUMNS).fillna("")


def direction_words(direction: str) -> str:
    """"lower_is_better" -> "lower is better"."""
    return direction.replace("_", " ")


def _days(statistic: str) -> str:
    """"survival_365d" -> "365"."""
    return statistic.removeprefix("survival_").removesuffix("d")


def _statistic_order(statistic: str) -> tuple[int, int, str]:
    """Statistics in the order of the contract's table; survival horizons by time, not as text."""
    order = ("rate", "oe_ratio", "adjusted_rate", "mean", "median", "survival_", "cox_oe_ratio")
    rank = next((i for i, s in enumerate(order) if statistic == s or (s.endswith("_") and statistic.startswith(s))),
                len(order))
    return rank, int(_days(statistic)) if statistic.startswith("survival_") else 0, statistic


def publish(config: AuditConfig, out: Path, jobs: Sequence[ReportJob], results: Sequence[JobResult]) -> CheckReport:
    """Publish one period: stage the site and indicators.csv, check them, and swap them in only if the
    disclosure check passes; then the team index, manifest.json and the top-level index.

    Everything public is written to ``<period>/.publication-<pid>/`` and the checker reads it there (with
    the public reports it was copied from). On success the staged site and open data replace the old ones
    (a rename each) and any old findings file is removed. On failure nothing public changes: the previous
    ``site/`` and ``indicators.csv`` stay byte for byte, every finding goes to
    ``disclosure-findings.csv``, and the team index and manifest say that the publication failed. The
    returned report's ``raise_if_failed()`` then raises the error (exit 5) naming that file.
    """
    ok = {r.name for r in results if r.status in ("built", "skipped")}
    previous = last_published(out)
    data = neutralise_formulas(open_data(config, out))
    public_jobs = [j for j in jobs if j.name in ok and j.audience == "public"]
    _clear_staging(out)
    staging = out / f".publication-{os.getpid()}"
    staging.mkdir()
    try:
        (staging / "indicators.csv").write_text(data.to_csv(index=False), encoding="utf-8")
        (staging / "site").mkdir()
        _build_site(config, out, data, public_jobs, staging / "site")
        report = check_period(config, out, staging)
        when = now_utc()
        if report.ok:
            _swap_in(out, staging)
            (out / FINDINGS_FILE).unlink(missing_ok=True)
            publication = {"status": "published", "published": when, "findings": 0}
        else:
            # Named where they would have been published (staging is removed), relative to the period.
            report.findings = [Finding(public_path(f.path, out, staging), f.where, f.rule, f.text)
                               for f in report.findings]
            report.findings_file = write_findings(out, report.findings)
            publication = {"status": "failed", "attempted": when, "findings": len(report.findings),
                           "findings_file": FINDINGS_FILE, "site_published": previous}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(out / "index.html", _team_index(config, out, jobs, ok, publication))
    write_manifest(config, out, jobs, results, publication)
    # The public index across every audit period under the reports root, refreshed by each publication.
    from auditreport.publication.index import write_top_index

    write_top_index(out.parents[1])
    return report


def _clear_staging(out: Path) -> None:
    """Remove what a killed run left behind: its staging, and an old site moved aside, unless the run was
    killed between moving it aside and moving the new one in, when it is put back (it is the published one)."""
    for old in sorted(out.glob(".site-old-*")):
        if not (out / "site").exists():
            old.rename(out / "site")
    for stale in [*out.glob(".publication-*"), *out.glob(".site-*")]:
        shutil.rmtree(stale, ignore_errors=True)


def _swap_in(out: Path, staging: Path) -> None:
    """Replace the published site and open data by the staged ones: a rename each, so a reader sees the
    old or the new site, never half of one (the old site is moved aside, then removed)."""
    final, old = out / "site", out / f".site-old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    (staging / "site").rename(final)
    os.replace(staging / "indicators.csv", out / "indicators.csv")
    shutil.rmtree(old, ignore_errors=True)


def _build_site(config: AuditConfig, out: Path, data: pd.DataFrame, public_jobs: Sequence[ReportJob],
                staging: Path) -> Path:
    """Write the site into ``staging`` (an empty folder of the publication's staging; ``publish`` checks it
    and swaps it in): the public reports, the open data and dictionary, and the pages."""
    (staging / "providers").mkdir()
    links: dict[str, str] = {}
    for job in public_jobs:
        if job.kind == "national":
            for suffix in (".html", ".pdf"):
                shutil.copyfile(Path(job.out_dir) / f"{job.stem}{suffix}", staging / f"national{suffix}")
        else:
            name = safe_name(job.provider)
            for suffix in (".html", ".pdf"):
                shutil.copyfile(Path(job.out_dir) / f"{job.stem}{suffix}", staging / "providers" / f"{name}{suffix}")
            links[job.provider] = f"providers/{name}"
    (staging / "indicators.csv").write_text(data.to_csv(index=False), encoding="utf-8")
    meta = json.loads((out / BUNDLE_DIR / "metadata.json").read_text())
    neutralise_formulas(data_dictionary(meta, data)).to_csv(staging / "data_dictionary.csv", index=False)
    (staging / "index.html").write_text(_site_index(config, data, links, public_jobs, meta), encoding="utf-8")
    return staging


def format_value(measure: dict, statistic: str, value: float, suppressed: bool = False) -> str:
    """A statistic's value as the reports write it (``presentation.measure_parts.value_text``): "*" where
    suppressed, "n/a" where there is no value (no eligible records, or not estimable)."""
    if suppressed:
        return SUPPRESSED
    if value != value:
        return "n/a"
    return value_text(measure, statistic, value)


@dataclass(frozen=True)
class _Column:
    """One column of the site's index: a measure's statistic, its value or its status."""

    measure: dict
    statistic: str
    status: bool = False

    @property
    def heading(self) -> str:
        if self.status:
            return f"{self.measure['label']}: status"
        return f"{self.measure['label']}: {statistic_label(self.measure, self.statistic)}"


def index_columns(measures: Sequence[dict], statistics: set[str]) -> list[_Column]:
    """Each published measure's headline value, then its status where it carries one; a survival
    measure also shows its survival at each horizon, in order of time."""
    columns = []
    for m in measures:
        columns.append(_Column(m, m["headline"]))
        if m["carries_status"]:
            columns.append(_Column(m, m["headline"], status=True))
        if m["kind"] == "survival":
            horizons = sorted((s for s in m["statistics"] if s.startswith("survival_") and s != m["headline"]
                               and s in statistics), key=_statistic_order)
            columns += [_Column(m, s) for s in horizons]
    return columns


def _page(title: str, body: str, sortable: bool = True) -> str:
    script = f"<script>{SORT_SCRIPT.read_text(encoding='utf-8')}</script>" if sortable else ""
    return (f"<!DOCTYPE html><html lang='en-GB'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1.0'><title>{esc(title)}</title><style>{stylesheet()}"
            f"</style></head><body class='report'><main>{body}</main>{script}</body></html>")


def _provenance(meta: dict) -> str:
    """What made these results: the same fingerprints as on every report's cover."""
    if not meta:
        return ""
    data_sha = meta.get("data", {}).get("source", {}).get("sha256", "")[:12]
    code = meta.get("code", {})
    return (f"<h2>Provenance</h2><dl class='provenance'><dt>Results computed</dt><dd>{esc(meta.get('created', ''))}</dd>"
            f"<dt>Software</dt><dd>auditreport {esc(code.get('package_version', ''))}, commit "
            f"{esc(str(code.get('git_commit', ''))[:12])}</dd>"
            f"<dt>Data fingerprint</dt><dd><code>{esc(data_sha)}</code> (SHA-256 of the extract)</dd>"
            f"<dt>Configuration</dt><dd><code>{esc(meta.get('config', {}).get('sha256', '')[:12])}</code></dd></dl>")


def _measures_table(measures: Sequence[dict], data: pd.DataFrame, wording: dict) -> str:
    """What each measure is: its description, what the index shows of it, direction, target, national value."""
    national = data[data["level"] == "national"].set_index(["measure", "statistic"])
    rows = []
    for m in measures:
        shown = statistic_label(m, m["headline"])
        key = (m["id"], m["headline"])
        value = (format_value(m, m["headline"], national.at[key, "value"], bool(national.at[key, "suppressed"]))
                 if key in national.index else "n/a")
        target = "what was expected for the case mix (O/E = 1)" if m["adjusted"] else target_text(m)
        status = (f"beyond the 95% (alert) or 99.8% (alarm) limits around {target}" if m["carries_status"]
                  else "none (context only)")
        rows.append([esc(m["label"]), esc(m["description"]), esc(shown), esc(direction_words(m["direction"])),
                     esc(status), esc(value), esc(m["method"])])
    return table(["Measure", "Description", "Shown", "Direction", "Status", wording["national_unit_name"], "Method"],
                 rows, raw=True, css_class="data", caption="The published measures")


def _cases_measure(config: AuditConfig, measures: Sequence[dict]) -> dict | None:
    """The measure whose denominator the index shows as a provider's cases: the first published one that
    every analysed record is eligible for (no eligibility filter; survival last), else the first."""
    unfiltered = {m.id for m in config.measures if m.eligible is None}
    ranked = sorted(measures, key=lambda m: (m["id"] not in unfiltered, m["kind"] == "survival"))
    return ranked[0] if ranked else None


def _site_index(config: AuditConfig, data: pd.DataFrame, links: dict[str, str],
                public_jobs: Sequence[ReportJob], meta: dict) -> str:
    """The site's front page: every provider with every published measure's headline value and status."""
    measures = published_measures(meta)
    wording = meta["wording"]
    provider_word, providers_word = wording["provider"], wording["providers"]
    prov = data[data["level"] == "provider"]
    cells = prov.set_index(["unit_id", "measure", "statistic"])
    columns = index_columns(measures, set(prov["statistic"]))
    names = prov.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
    cases_of = _cases_measure(config, measures)
    rows = []
    for code, unit_name in sorted(names.items(), key=lambda item: (str(item[1]), str(item[0]))):
        link = links.get(code)
        name = (f"<a href='{esc(link)}.html'>{esc(unit_name)}</a> (<a href='{esc(link)}.pdf'>PDF</a>)"
                if link else esc(unit_name))
        key = (code, cases_of["id"], cases_of["headline"]) if cases_of else None
        cases = cells.at[key, "denominator"] if key in cells.index else float("nan")
        row = [name, esc(code), SUPPRESSED if cases != cases else f"{int(cases):,}"]  # blank: suppressed
        for col in columns:
            key = (code, col.measure["id"], col.statistic)
            if key not in cells.index:
                row.append("" if col.status else "n/a")
            elif col.status:
                flag = cells.at[key, "flag"]
                row.append(flag_badge(flag if isinstance(flag, str) else "", col.measure["direction"]))
            else:
                row.append(esc(format_value(col.measure, col.statistic, cells.at[key, "value"],
                                            bool(cells.at[key, "suppressed"]))))
        rows.append(row)
    headers = [provider_word.capitalize(), "Code", "Cases"] + [c.heading for c in columns]
    numeric = tuple(i + 3 for i, c in enumerate(columns) if not c.status)
    national = any(j.kind == "national" for j in public_jobs)
    body = (f"<div class='cover' data-running='{esc(config.name)}'><p class='audience audience-public'>For publication</p>"
            f"<p class='audit-name'>{esc(config.name)}</p><h1>Results {esc(config.period_label)}</h1>"
            f"<p>Produced {esc(now_utc())} by auditreport {esc(code_version()['package_version'])} "
            f"(commit {esc(code_version()['git_commit'][:12])}).</p></div>"
            f"<p>Each {esc(provider_word)}'s result on every published measure. A risk-adjusted measure compares the "
            f"{esc(provider_word)}'s {esc(wording['activity'])} with what was expected for its patients under the "
            "national risk model; a process measure compares it with the national value or the measure's standard. "
            "The status says whether the difference is beyond the 95% (alert) or 99.8% (alarm) control limits, "
            "and whether that is better or worse than expected.</p>"
            + ("<p><a href='national.html'>National report</a> (<a href='national.pdf'>PDF</a>) &middot; " if national else "<p>")
            + "<a href='indicators.csv'>Open data: indicators.csv</a> &middot; "
              "<a href='data_dictionary.csv'>data dictionary</a></p>"
            + f"<p class='note'>Counts from 1 to {config.suppression_threshold}, and the figures made from them, "
              "are shown as * to protect patients' confidentiality. Click a column heading to sort.</p>"
            + table(headers, rows, raw=True, numeric=numeric, counts=(2,), css_class="data sortable",
                    caption=f"Every {provider_word}'s published measures and outlier status ({len(names)} "
                            f"{providers_word})" + (f"; cases are the {wording['activity']} analysed for "
                                                    f"{cases_of['label']}" if cases_of else ""))
            + _measures_table(measures, data, wording)
            + _provenance(meta))
    return _page(f"{config.name} {config.period_label}", body)


def _team_index(config: AuditConfig, out: Path, jobs: Sequence[ReportJob], ok: set[str],
                publication: dict | None = None) -> str:
    """The audit team's index (``publication.team``): the last publication's outcome, every report, each
    consultant summary."""
    return team_index(config.name, config.period_label, out, jobs, ok, publication or {})


def write_manifest(config: AuditConfig, out: Path, jobs: Sequence[ReportJob], results: Sequence[JobResult],
                   publication: dict | None = None) -> Path:
    """List every output with its SHA-256 and what made it, and the outcome of the publication
    (``{"status": "published", "published": <time>, ...}`` or ``{"status": "failed", "findings": n,
    "findings_file": ..., "site_published": <time of the site still shown, or None>}``)."""
    meta = json.loads((out / BUNDLE_DIR / "metadata.json").read_text())
    by_name = {r.name: r for r in results}
    files = []
    for job in jobs:
        r = by_name.get(job.name)
        for path in job.outputs():
            if path.exists() and r is not None and r.status in ("built", "skipped"):
                files.append({"path": path.relative_to(out).as_posix(), "sha256": file_sha256(path),
                              "kind": job.kind, "audience": job.audience, "provider": job.provider,
                              "parameters": job.parameters, "notebook": Path(job.notebook).name,
                              "notebook_path": str(Path(job.notebook).resolve()),
                              "inputs_fingerprint": job.inputs_fingerprint})
    for path in sorted((out / "site").rglob("*")) + sorted((out / BUNDLE_DIR).glob("*")) + [out / "indicators.csv"]:
        if path.is_file():
            files.append({"path": path.relative_to(out).as_posix(), "sha256": file_sha256(path),
                          "kind": "site" if "site" in path.parts else "bundle" if BUNDLE_DIR in path.parts
                          else "open data"})
    # Each named consultant's confidential summary (contract section 8), when one was written for the period.
    for path in sorted((out / CONSULTANT_SUMMARIES).glob("*/summary.*")):
        if path.suffix in (".html", ".pdf"):
            files.append({"path": path.relative_to(out).as_posix(), "sha256": file_sha256(path),
                          "kind": "consultant summary", "audience": "local"})
    manifest = {
        "audit": config.id, "period": config.period_label, "created": now_utc(), "code": code_version(),
        "config": meta["config"]["sha256"], "config_path": str(config.path), "data": meta["data"],
        "inputs_fingerprint": meta["parameters"].get("inputs_fingerprint"),
        "reports": {"built": sum(r.status == "built" for r in results),
                    "skipped": sum(r.status == "skipped" for r in results),
                    "failed": [{"name": r.name, "error": r.error, "notebook": r.failed_notebook}
                               for r in results if r.status == "failed"]},
        "publication": publication or {},
        "files": files,
    }
    return atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, default=str))

