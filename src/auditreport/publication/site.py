"""The publication site, the open data and the manifest of one audit period.

``site/`` holds public outputs only: the index of every provider with its
indicators and flags, the public reports, the national report, and the open
data (``indicators.csv``, suppressed) with its data dictionary. It is built in a
temporary folder and swapped in whole, so readers never see it half-updated.
The period's own ``index.html`` is the audit team's: it also links the
confidential local feedback reports, and is never copied into the site.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from auditreport.bundle import BUNDLE_DIR, load_bundle
from auditreport.config import AuditConfig
from auditreport.data.loading import file_sha256
from auditreport.execution.report_job import JobResult, ReportJob, safe_name
from auditreport.files import atomic_write_text
from auditreport.presentation.provider_sections import survival_days, survival_label
from auditreport.presentation.tables import esc, flag_badge, table
from auditreport.provenance import code_version, now_utc
from auditreport.rendering.html import SORT_SCRIPT, stylesheet
from auditreport.rules.flags import FLAGS

OPEN_COLUMNS = ["audit", "period", "level", "unit_id", "unit_name", "parent_id", "indicator", "numerator",
                "denominator", "observed", "expected", "value", "lower95", "upper95", "lower998", "upper998",
                "target", "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998", "flag",
                "suppressed", "method"]

DATA_DICTIONARY = [
    ("audit", "Audit identifier"),
    ("period", "Audit period"),
    ("level", "national, provider or consultant"),
    ("unit_id", "Provider code, consultant code, or 'national'. Text, exactly as submitted: read it as text "
                "(leading zeros count, and a code such as NA is a code, not a missing value)"),
    ("unit_name", "Provider name (consultants are identified by code)"),
    ("parent_id", "For a consultant, the code of the provider where most of their cases were done. Text, "
                  "like unit_id"),
    ("indicator", "crude_mortality, oe_ratio, risk_adjusted_mortality, survival_<days>d, cox_oe_ratio"),
    ("numerator", "Deaths (within the outcome window, by the survival horizon, or over all follow-up for "
                  "cox_oe_ratio); blank where suppressed"),
    ("denominator", "Cases analysed; blank where from 1 to the suppression threshold"),
    ("observed", "Observed deaths (O)"),
    ("expected", "Expected deaths (E): the sum of patients' predicted risks from the national risk model, or for "
                 "cox_oe_ratio of their cumulative hazards under the national Cox model"),
    ("value", "Indicator value: a proportion (0-1) for rates and survival, a ratio for oe_ratio"),
    ("lower95", "Lower limit of the 95% confidence interval of the value"),
    ("upper95", "Upper limit of the 95% confidence interval of the value"),
    ("lower998", "Lower limit of the 99.8% confidence interval of the value"),
    ("upper998", "Upper limit of the 99.8% confidence interval of the value"),
    ("target", "Comparator: the national rate, or 1 for O/E"),
    ("limit_lower95", "Lower 95% funnel control limit at this unit's precision"),
    ("limit_upper95", "Upper 95% funnel control limit at this unit's precision"),
    ("limit_lower998", "Lower 99.8% funnel control limit at this unit's precision"),
    ("limit_upper998", "Upper 99.8% funnel control limit at this unit's precision"),
    ("flag", f"HQIP outlier status: {', '.join(FLAGS)}; blank if not assessed"),
    ("suppressed", "True where figures were withheld under the small-numbers rule: a count from 1 to the threshold, "
                   "or a further count withheld so that a small one cannot be worked out from a total"),
    ("method", "How the interval and limits were computed"),
]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula (OWASP CSV injection)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v)
    return out


def open_data(config: AuditConfig, out: Path) -> pd.DataFrame:
    # The national stage's suppressed table: the very one the public reports show.
    public = load_bundle(out / BUNDLE_DIR).indicators_public
    if not config.publish_consultants:
        public = public[public["level"] != "consultant"]
    return public[OPEN_COLUMNS]


def publish(config: AuditConfig, out: Path, jobs: Sequence[ReportJob], results: Sequence[JobResult]) -> Path:
    """Write indicators.csv, the site, the team index and manifest.json for one period."""
    ok = {r.name for r in results if r.status in ("built", "skipped")}
    data = neutralise_formulas(open_data(config, out))
    atomic_write_text(out / "indicators.csv", data.to_csv(index=False))
    site = _build_site(config, out, data, [j for j in jobs if j.name in ok and j.audience == "public"])
    atomic_write_text(out / "index.html", _team_index(config, out, jobs, ok))
    write_manifest(config, out, jobs, results)
    # The public index across every audit period under the reports root, refreshed by each publication.
    from auditreport.publication.index import write_top_index

    write_top_index(out.parents[1])
    return site


def _build_site(config: AuditConfig, out: Path, data: pd.DataFrame, public_jobs: Sequence[ReportJob]) -> Path:
    for stale in out.glob(".site-*"):  # staging or old copies left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".site-", dir=out))
    try:
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
        pd.DataFrame(DATA_DICTIONARY, columns=["column", "meaning"]).to_csv(staging / "data_dictionary.csv", index=False)
        meta = json.loads((out / BUNDLE_DIR / "metadata.json").read_text())
        (staging / "index.html").write_text(_site_index(config, data, links, public_jobs, meta), encoding="utf-8")
        final = out / "site"
        old = out / f".site-old-{os.getpid()}"
        if final.exists():
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _provider_rows(data: pd.DataFrame) -> pd.DataFrame:
    prov = data[data["level"] == "provider"]
    # pivot on the code alone: pivot_table(dropna=False) over two index columns would make every
    # code x name combination (one row per pair), listing each provider many times.
    wide = prov.pivot(index="unit_id", columns="indicator", values="value")
    wide.insert(0, "unit_name", prov.drop_duplicates("unit_id").set_index("unit_id")["unit_name"])
    flags = prov[prov["indicator"] == "risk_adjusted_mortality"].set_index("unit_id")["flag"]
    cases = prov[prov["indicator"] == "crude_mortality"].set_index("unit_id")["denominator"]
    wide = wide.reset_index()
    wide["flag"] = wide["unit_id"].map(flags).fillna("")
    wide["cases"] = wide["unit_id"].map(cases)
    return wide


def _fmt(value: float, percent: bool = True) -> str:
    if value != value:
        return "*"
    return f"{value * 100:.1f}%" if percent else f"{value:.2f}"


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


def _site_index(config: AuditConfig, data: pd.DataFrame, links: dict[str, str],
                public_jobs: Sequence[ReportJob], out_meta: dict | None = None) -> str:
    out_meta = out_meta or {}
    wide = _provider_rows(data)
    surv = sorted((c for c in wide.columns if str(c).startswith("survival_")), key=survival_days)
    rows = []
    for r in wide.sort_values("unit_name").itertuples():
        link = links.get(r.unit_id)
        name = (f"<a href='{esc(link)}.html'>{esc(r.unit_name)}</a> (<a href='{esc(link)}.pdf'>PDF</a>)"
                if link else esc(r.unit_name))
        cases = "*" if r.cases != r.cases else f"{int(r.cases):,}"  # blank = suppressed (or its complement)
        rows.append([name, esc(r.unit_id), cases, _fmt(getattr(r, "crude_mortality", float("nan"))),
                     _fmt(getattr(r, "oe_ratio", float("nan")), percent=False),
                     _fmt(getattr(r, "risk_adjusted_mortality", float("nan"))), flag_badge(r.flag)]
                    + [_fmt(getattr(r, s)) for s in surv])
    headers = ["Provider", "Code", "Cases", "Crude mortality", "O/E", "Risk-adjusted mortality", "Outlier status"]
    headers += [survival_label(s) for s in surv]
    national = any(j.kind == "national" for j in public_jobs)
    body = (f"<div class='cover' data-running='{esc(config.name)}'><p class='audience audience-public'>For publication</p>"
            f"<p class='audit-name'>{esc(config.name)}</p><h1>Results {esc(config.period_label)}</h1>"
            f"<p>Produced {esc(now_utc())} by auditreport {esc(code_version()['package_version'])} "
            f"(commit {esc(code_version()['git_commit'][:12])}).</p></div>"
            "<p>Risk-adjusted mortality compares each provider's deaths with the number expected for its patients "
            "under the national risk model; the outlier status says whether the difference is beyond the 95% "
            "(alert) or 99.8% (alarm) control limits.</p>"
            + ("<p><a href='national.html'>National report</a> (<a href='national.pdf'>PDF</a>) &middot; " if national else "<p>")
            + "<a href='indicators.csv'>Open data: indicators.csv</a> &middot; "
              "<a href='data_dictionary.csv'>data dictionary</a></p>"
            + f"<p class='note'>Counts from 1 to {config.suppression_threshold} are shown as * to protect "
              "patients' confidentiality. Click a column heading to sort.</p>"
            + table(headers, rows, raw=True, numeric=tuple(i for i in range(3, len(headers)) if i != 6),
                    counts=(2,), css_class="data sortable",
                    caption="Every provider's indicators and outlier status")
            + _provenance(out_meta))
    return _page(f"{config.name} {config.period_label}", body)


def _team_index(config: AuditConfig, out: Path, jobs: Sequence[ReportJob], ok: set[str]) -> str:
    rows = []
    for job in jobs:
        rel = Path(job.out_dir).relative_to(out) / job.stem
        status = "built" if job.name in ok else "FAILED"
        links = " ".join(f"<a href='{esc(rel.as_posix())}{s}'>{s[1:]}</a>" for s in (".html", ".pdf", ".ipynb"))
        rows.append([esc(job.provider or "national"), esc(job.audience), links if job.name in ok else "", status])
    body = (f"<div class='cover' data-running='{esc(config.name)}'><p class='audience audience-local'>Audit team index: "
            f"contains links to confidential reports</p><p class='audit-name'>{esc(config.name)}</p>"
            f"<h1>{esc(config.period_label)}: all outputs</h1></div>"
            "<p><a href='site/index.html'>Publication site</a> &middot; <a href='indicators.csv'>indicators.csv</a>"
            " &middot; <a href='manifest.json'>manifest.json</a></p>"
            + table(["Unit", "Audience", "Files", "Status"], rows, raw=True, css_class="data sortable"))
    return _page(f"{config.name} {config.period_label}: all outputs", body)


def write_manifest(config: AuditConfig, out: Path, jobs: Sequence[ReportJob], results: Sequence[JobResult]) -> Path:
    """List every output with its SHA-256 and what made it."""
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
                              "inputs_fingerprint": job.inputs_fingerprint})
    for path in sorted((out / "site").rglob("*")) + sorted((out / BUNDLE_DIR).glob("*")) + [out / "indicators.csv"]:
        if path.is_file():
            files.append({"path": path.relative_to(out).as_posix(), "sha256": file_sha256(path),
                          "kind": "site" if "site" in path.parts else "bundle" if BUNDLE_DIR in path.parts
                          else "open data"})
    manifest = {
        "audit": config.id, "period": config.period_label, "created": now_utc(), "code": code_version(),
        "config": meta["config"]["sha256"], "config_path": str(config.path), "data": meta["data"],
        "inputs_fingerprint": meta["parameters"].get("inputs_fingerprint"),
        "reports": {"built": sum(r.status == "built" for r in results),
                    "skipped": sum(r.status == "skipped" for r in results),
                    "failed": [{"name": r.name, "error": r.error, "notebook": r.failed_notebook}
                               for r in results if r.status == "failed"]},
        "files": files,
    }
    return atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1, default=str))

