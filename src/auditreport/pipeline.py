"""One audit, one period, end to end: national stage, every report, the publication site.

This is the spine the command line drives. The national stage runs once; the
reports are independent jobs reading its bundle; the site and the manifest are
written last, from what was actually built.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from auditreport.bundle import BUNDLE_DIR, BundleFormatError, load_bundle, read_metadata, write_bundle
from auditreport.config import AuditConfig, load_config
from auditreport.data.loading import file_sha256
from auditreport.errors import AuditReportError
from auditreport.execution.batch import run_batch
from auditreport.execution.consultant_summaries import build_consultant_summaries
from auditreport.execution.report_job import JobResult, ReportJob, safe_name
from auditreport.files import atomic_write_text
from auditreport.provenance import code_version, sha256_json
from auditreport.resources import notebook_dir

log = logging.getLogger(__name__)

AUDIENCES = ("local", "public")


class UnknownProviderError(AuditReportError):
    """Providers were asked for that are not in the period's results (a usage error)."""

    exit_code = 2


@dataclass
class BuildSummary:
    period_dir: Path
    national_seconds: float
    national_skipped: bool
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0
    log_file: Path | None = None
    publish_seconds: float = 0.0  # site, open data, manifest and the disclosure check (0 when up to date)

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def period_dir(config: AuditConfig, reports_root: str | Path) -> Path:
    return Path(reports_root).resolve() / config.id / config.period_label


def inputs_fingerprint(config: AuditConfig) -> str:
    """What the national stage depends on: data, providers file (and the other data files), definition and code."""
    parts = {"data": file_sha256(config.source), "config": config.fingerprint(), "code": code_version()}
    parts.update({key: file_sha256(path) for key, path in config.data_files().items() if key != "source"})
    return sha256_json(parts)


def national_stage(config: AuditConfig, out: Path, force: bool = False) -> tuple[bool, float]:
    """Run the national stage unless its bundle already matches the inputs. Returns (skipped, seconds)."""
    started = time.perf_counter()
    fingerprint = inputs_fingerprint(config)
    if not force and _bundle_fingerprint(out) == fingerprint:
        return True, time.perf_counter() - started
    # Imported only when the stage runs: they take seconds to import (scipy, statsmodels, pandera), which a
    # rebuild of one report while its notebook is being edited should not pay.
    from auditreport.analysis.national import run_national
    from auditreport.data.validation import load_validated

    validated = load_validated(config)  # raises before anything is written
    write_bundle(out, run_national(config, validated, parameters={"inputs_fingerprint": fingerprint}))
    return False, time.perf_counter() - started


def _bundle_fingerprint(out: Path) -> str | None:
    """The inputs fingerprint of the period's bundle; None if there is none or it is of another format."""
    try:
        return read_metadata(out / BUNDLE_DIR).get("parameters", {}).get("inputs_fingerprint")
    except (BundleFormatError, ValueError):  # absent, another format version, or unreadable: rebuild it
        return None


def report_notebooks(config: AuditConfig) -> dict[str, Path]:
    """The notebook of each kind of report (``"provider"``, ``"national"``): the audit's own where its
    definition names one (``notebooks:``), else the one installed with the package."""
    return {"provider": config.provider_notebook or notebook_dir() / "provider.ipynb",
            "national": config.national_notebook or notebook_dir() / "national.ipynb"}


def watched_files(config_path: str | Path) -> list[Path]:
    """What a rebuild while editing depends on and a person edits: the audit definition and the audit's own
    notebooks (only the definition if it cannot be read as it stands; fixing it is the next change)."""
    path = Path(config_path).resolve()
    try:
        config = load_config(path)
    except AuditReportError:
        return [path]
    return [path, *(nb for nb in (config.provider_notebook, config.national_notebook) if nb is not None)]


def report_jobs(config: AuditConfig, out: Path, providers: Sequence[str] | None = None,
                audiences: Sequence[str] = AUDIENCES, timeout: int = 600) -> list[ReportJob]:
    """The national report and every (provider, audience) report, as independent jobs."""
    notebooks = report_notebooks(config)
    bundle = load_bundle(out / BUNDLE_DIR)
    meta, table = bundle.metadata, bundle.indicators
    known = table[table["level"] == "provider"].drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
    chosen = list(known.index) if not providers else list(providers)
    unknown = [p for p in chosen if p not in known.index]
    if unknown:
        raise UnknownProviderError(
            f"{config.path}: provider(s) {', '.join(unknown)} not in the results of {config.id} "
            f"{config.period_label} (codes as in the providers file, e.g. {', '.join(known.index[:3])})")
    # The bundle's fingerprint covers data, providers file, configuration and code version; each job adds
    # its notebook's bytes, parameters and rendering options (ReportJob.fingerprint), so editing an audit's
    # own notebook rebuilds that audit's reports of that kind and nothing else.
    base = {"bundle": meta["parameters"]["inputs_fingerprint"], "code": code_version()}
    jobs = [ReportJob(kind="national", audience="public", notebook=str(notebooks["national"]),
                      bundle_dir=str(out / BUNDLE_DIR), out_dir=str(out / "national"), stem="national",
                      title=f"{config.name}: national report {config.period_label}", audit=config.id,
                      period=config.period_label, timeout=timeout, sortable=True)]
    for code in chosen:
        for audience in audiences:
            jobs.append(ReportJob(
                kind="provider", audience=audience, notebook=str(notebooks["provider"]),
                bundle_dir=str(out / BUNDLE_DIR), out_dir=str(out / "providers" / safe_name(code)),
                stem=audience, title=f"{config.name}: {known[code]} ({code}) {config.period_label}",
                audit=config.id, period=config.period_label, provider=code, timeout=timeout))
    for job in jobs:
        job.inputs_fingerprint = job.fingerprint(base)
    return jobs


def build(config_path: str | Path, reports_root: str | Path, *, providers: Sequence[str] | None = None,
          audiences: Sequence[str] = AUDIENCES, workers: int | None = None, force: bool = False,
          timeout: int = 600, scheduler: str | None = None, publish: bool = True,
          on_result: Callable[[JobResult], None] | None = None,
          on_plan: Callable[[int, int], None] | None = None) -> BuildSummary:
    """Build one audit's national stage, reports, site and manifest.

    With ``publish=False`` only the reports are built: the site, open data, team index and manifest are
    left as they were and the disclosure check is not run (the quick rebuild of one report while its
    notebook is edited); the next run that publishes brings them up to date.

    Everything the run does after the national stage is also logged to ``<period>/logs/run-<timestamp>.log``.
    """
    started = time.perf_counter()
    config = load_config(config_path)
    out = period_dir(config, reports_root)
    # Validation (inside the national stage) must fail before anything is written, the log included.
    skipped, national_seconds = national_stage(config, out, force=force)
    with run_log(out) as log_path:
        log.info("building %s %s into %s (force=%s, workers=%s, scheduler=%s)", config.id, config.period_label,
                 out, force, workers, scheduler)
        log.info("national stage %s (%.1fs)", "up to date" if skipped else "built", national_seconds)
        jobs = report_jobs(config, out, providers, audiences, timeout)
        results = run_batch(jobs, workers=workers, force=force, scheduler=scheduler, on_result=on_result,
                            on_plan=on_plan)
        results += build_consultant_summaries(out, providers=providers, audiences=audiences, workers=workers,
                                              force=force, on_result=on_result, on_plan=on_plan)
        key = publication_key(jobs)
        publish_started = time.perf_counter()
        if not publish:
            if not (skipped and all(r.status == "skipped" for r in results)):
                _published_with(out, None)  # reports changed: the site and manifest no longer match them
            log.info("site, open data and manifest not updated (not publishing)")
            publish_seconds = 0.0
        elif skipped and all(r.status == "skipped" for r in results) and _published_with(out, key):
            # Nothing changed since a publication that passed the disclosure check: republishing would
            # rewrite identical files and re-read every public PDF, which dominates a no-op rerun.
            log.info("site, open data and manifest up to date")
            publish_seconds = 0.0
        else:
            # Imported here: a run with nothing to publish need not pay for their imports.
            from auditreport.publication.checker import check_period
            from auditreport.publication.site import publish as publish_period

            _published_with(out, None)  # whatever happens next, the old stamp no longer vouches for the site
            publish_period(config, out, jobs, results)
            # Disclosure control is tested on what was written: any small count or patient id fails the run.

            check_period(config, out).raise_if_failed()
            if not any(r.status == "failed" for r in results):
                atomic_write_text(out / PUBLISHED_STAMP, key)
            publish_seconds = time.perf_counter() - publish_started
            log.info("site, open data, manifest and disclosure check (%.1fs)", publish_seconds)
        summary = BuildSummary(period_dir=out, national_seconds=national_seconds, national_skipped=skipped,
                               results=results, seconds=time.perf_counter() - started, log_file=log_path,
                               publish_seconds=publish_seconds)
        log.info("done in %.1fs: %s", summary.seconds, summary.counts())
    return summary


PUBLISHED_STAMP = ".published"


def publication_key(jobs: Sequence[ReportJob]) -> str:
    """What the site, open data and manifest were made from: every report's inputs and the code."""
    return sha256_json({"jobs": sorted((j.name, j.inputs_fingerprint) for j in jobs), "code": code_version()})


def _published_with(out: Path, key: str | None) -> bool:
    """True if the last publication passed its checks with ``key``; with ``key=None``, forget it."""
    stamp = out / PUBLISHED_STAMP
    if key is None:
        stamp.unlink(missing_ok=True)
        return False
    required = [out / "site" / "index.html", out / "manifest.json", out / "indicators.csv"]
    return stamp.is_file() and stamp.read_text() == key and all(p.is_file() for p in required)


@contextmanager
def run_log(out: Path) -> Iterator[Path]:
    """Attach a file handler for this run to the package logger, whatever the console shows."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"run-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    package = logging.getLogger("auditreport")
    previous = package.level
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)  # the file gets INFO even when the console shows only warnings
    package.addHandler(handler)
    try:
        yield path
    finally:
        package.removeHandler(handler)
        package.setLevel(previous)
        handler.close()
