"""The publication site, the open data and the manifest of one audit period.

``site/`` holds public outputs only: the index of every provider with the
headline value and outlier status of every published measure, a page per
provider and per consultant (``publication/pages.py``), the public reports
(``reports/``), the national report, and the open data (``indicators.csv``, one
row per unit, measure and statistic, as the publication policy publishes it)
with its data dictionary of measures, statistics and columns, whole and per
measure (``data/``). Internal measures (``published: false`` in the audit
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
from pathlib import Path

import pandas as pd

from auditreport.bundle import BUNDLE_DIR, load_bundle
from auditreport.config import AuditConfig
from auditreport.data.loading import file_sha256
from auditreport.execution.report_job import JobResult, ReportJob, safe_name
from auditreport.files import atomic_write_text
from auditreport.presentation.tables import esc
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
from auditreport.rules.flags import FLAGS

OPEN_COLUMNS = ["audit", "period", "measure", "statistic", "level", "unit_id", "unit_name", "parent_id",
                "numerator", "denominator", "observed", "expected", "value", "lower95", "upper95", "lower998",
                "upper998", "target", "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998", "flag",
                "suppressed", "method"]
#: Columns the open data carries when the bundle has them (format 3, issue #15: the publication policy):
#: each row's measure's policy, and whether the unit is in the measure's low-volume group.
POLICY_COLUMNS = ["policy", "low_volume"]

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
    "unit_name": "Provider name; a consultant's name where the audit publishes consultants by name (else blank "
                 "or the code); the name of a low-volume group",
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
    "policy": "The measure's publication policy: outcomes-in-full (every unit's counts, value, interval and "
              "status published) or small-numbers-everywhere (counts from 1 to the threshold withheld)",
    "low_volume": "True where the unit had fewer records in the measure than the audit's minimum volume: its "
                  "own row keeps only its records analysed, and its figures are in the measure's low-volume group "
                  "(unit_id 'low-volume')",
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
    return public[open_columns(public)]


def open_columns(frame: pd.DataFrame) -> list[str]:
    """The open data's columns: ``OPEN_COLUMNS``, then the policy columns where the table has them."""
    return [*OPEN_COLUMNS, *(c for c in POLICY_COLUMNS if c in frame.columns)]


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
    rows += [{"entry": "column", "name": column, "description": COLUMN_MEANINGS[column]}
             for column in open_columns(data)]
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
    (staging / "reports").mkdir()
    for job in public_jobs:
        if job.kind == "national":
            for suffix in (".html", ".pdf"):
                shutil.copyfile(Path(job.out_dir) / f"{job.stem}{suffix}", staging / f"national{suffix}")
        else:
            name = safe_name(job.provider)
            for suffix in (".html", ".pdf"):
                shutil.copyfile(Path(job.out_dir) / f"{job.stem}{suffix}", staging / "reports" / f"{name}{suffix}")
    (staging / "indicators.csv").write_text(data.to_csv(index=False), encoding="utf-8")
    meta = json.loads((out / BUNDLE_DIR / "metadata.json").read_text())
    neutralise_formulas(data_dictionary(meta, data)).to_csv(staging / "data_dictionary.csv", index=False)
    from auditreport.publication.pages import write_site  # pages imports this module

    write_site(config, staging, data, public_jobs, meta, out / BUNDLE_DIR)
    return staging


def _page(title: str, body: str, sortable: bool = True) -> str:
    script = f"<script>{SORT_SCRIPT.read_text(encoding='utf-8')}</script>" if sortable else ""
    return (f"<!DOCTYPE html><html lang='en-GB'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1.0'><title>{esc(title)}</title><style>{stylesheet()}"
            f"</style></head><body class='report'><main>{body}</main>{script}</body></html>")


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

