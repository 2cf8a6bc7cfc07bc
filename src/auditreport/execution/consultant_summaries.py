"""Every consultant's confidential one-page summary of a period, built after the report batch.

``<period>/consultants/<safe code>/summary.html`` and ``summary.pdf`` (contract section 8): one A4 page per
consultant with results, for appraisal and revalidation, from the period's bundle
(:mod:`auditreport.presentation.consultant_summary` for the content and the page, :mod:`auditreport.rendering.pdf`
for the PDF, so it is tagged like every other PDF). As for the reports (:mod:`.report_job`):

* a summary whose stamp names its current inputs (the bundle's inputs fingerprint, the code version, the page's
  template and stylesheets, the consultant) and whose files are the ones stamped is skipped;
* the two files are written to a staging folder and moved into place, the stamp removed before the move and
  written after it, so an interrupted run never leaves a summary that looks complete;
* the summaries run in parallel in as many processes as the batch's workers, each process loading the bundle
  once; one summary's failure is a result naming the consultant, and the others are still built.

The pages are confidential (full counts): they are never copied into ``site/``. :func:`listing` gives what
the team index and the manifest list.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from auditreport.bundle import BUNDLE_DIR, Bundle, load_bundle
from auditreport.data.loading import file_sha256
from auditreport.execution.batch import default_jobs
from auditreport.execution.report_job import JobResult, safe_name
from auditreport.files import atomic_write_text
from auditreport.provenance import code_version, sha256_json

#: The folder under the period folder that holds one folder per consultant.
SUMMARIES_DIR = "consultants"
STEM = "summary"
SUFFIXES = (".html", ".pdf")
STAMP = f".{STEM}.stamp.json"
#: The only files a consultant's folder holds; a folder with anything else is never removed as stale.
_OWN_FILES = {f"{STEM}{s}" for s in SUFFIXES} | {STAMP}


@dataclass(frozen=True)
class SummaryTask:
    """One consultant's summary; plain data, so it can be sent to a worker process."""

    consultant: str
    bundle_dir: str
    out_dir: str
    inputs_fingerprint: str

    @property
    def name(self) -> str:
        return f"consultant-summary:{self.consultant}"

    def outputs(self) -> list[Path]:
        return [Path(self.out_dir) / f"{STEM}{s}" for s in SUFFIXES]


def summary_tasks(out: Path, codes: Sequence[str], bundle: Bundle) -> list[SummaryTask]:
    """The task of each consultant in ``codes``, with its inputs fingerprint: the bundle's inputs fingerprint
    (data, definition and code of the national stage), this code's version, the bytes of the files that
    decide the page (template, stylesheets, the presentation module) and the consultant's code."""
    from auditreport.presentation.consultant_summary import layout_files

    base = {"bundle": (bundle.metadata.get("parameters") or {}).get("inputs_fingerprint"), "code": code_version(),
            "layout": {Path(f).name: file_sha256(Path(f)) for f in layout_files()}}
    folder = out / SUMMARIES_DIR
    return [SummaryTask(consultant=code, bundle_dir=str(bundle.path), out_dir=str(folder / safe_name(code)),
                        inputs_fingerprint=sha256_json({"base": base, "consultant": code})) for code in codes]


def build_consultant_summaries(out: Path, *, providers: Sequence[str] | None = None,
                               audiences: Sequence[str] = ("local", "public"), workers: int | None = None,
                               force: bool = False, on_result: Callable[[JobResult], None] | None = None,
                               on_plan: Callable[[int, int], None] | None = None) -> list[JobResult]:
    """Build the summary of every consultant with results in the period's bundle (of those who worked at
    ``providers``, when given), skipping those up to date unless ``force``; returns one result each.

    Summaries are confidential outputs: none is built when the run leaves out the local audience. A full
    run (no ``providers``) also removes the folders of consultants no longer in the results. ``on_plan`` is
    told (to build, up to date) when there is something to build; ``on_result`` each result.
    """
    if "local" not in audiences:
        return []
    bundle = load_bundle(Path(out) / BUNDLE_DIR)
    from auditreport.presentation.consultant_summary import consultant_codes

    codes = consultant_codes(bundle, set(providers) if providers else None)
    tasks = summary_tasks(Path(out), codes, bundle)
    if not providers:
        remove_stale_folders(Path(out), {Path(t.out_dir).name for t in tasks})
    todo = [t for t in tasks if force or not is_up_to_date(t)]
    building = {t.name for t in todo}
    results: list[JobResult] = []

    def record(result: JobResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    for task in tasks:
        if task.name not in building:
            record(JobResult(task.name, "skipped", 0.0, [str(p) for p in task.outputs()]))
    if not todo:
        return results
    if on_plan:
        on_plan(len(todo), len(tasks) - len(todo))
    workers = min(workers or default_jobs(), len(todo))
    if workers <= 1:
        for task in todo:
            record(build_summary(task))
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(build_summary, task): task for task in todo}
        for future in as_completed(futures):
            record(_result_of(future, futures[future]))
    return results


def build_summary(task: SummaryTask) -> JobResult:
    """Write one consultant's summary (HTML and PDF) through a staging folder; never raises: a failure is a
    result naming the consultant and why."""
    started = time.perf_counter()
    staging = None
    timings: dict[str, float] = {}
    try:
        out_dir = Path(task.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(f".{STEM}-*"):  # left by an interrupted run; never an output
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{STEM}-", dir=out_dir))
        from auditreport.presentation.consultant_summary import consultant_summary, summary_html
        from auditreport.rendering.pdf import html_to_pdf

        t = time.perf_counter()
        summary = consultant_summary(_bundle(task.bundle_dir, task.inputs_fingerprint), task.consultant)
        html = summary_html(summary)
        (staging / f"{STEM}.html").write_text(html, encoding="utf-8")
        timings["html"] = time.perf_counter() - t
        t = time.perf_counter()
        html_to_pdf(html, staging / f"{STEM}.pdf")
        timings["pdf"] = time.perf_counter() - t
        _publish(task, staging, summary.consultant_name)
        return JobResult(task.name, "built", time.perf_counter() - started, [str(p) for p in task.outputs()],
                         timings=timings)
    except Exception as exc:  # noqa: BLE001 - one summary's failure must not stop the others
        with contextlib.suppress(OSError):  # whatever is there no longer vouches for these inputs
            stamp_path(task).unlink(missing_ok=True)
        return JobResult(task.name, "failed", time.perf_counter() - started, [],
                         error=f"consultant {task.consultant} (summary in {task.out_dir}): "
                               f"{type(exc).__name__}: {exc}"[:500], timings=timings)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


@lru_cache(maxsize=2)
def _bundle(bundle_dir: str, inputs_fingerprint: str) -> Bundle:
    """The bundle, loaded once per process (and per national run: the fingerprint is part of the key)."""
    return load_bundle(bundle_dir)


def _result_of(future, task: SummaryTask) -> JobResult:
    """The task's result, or a failure naming the consultant if the worker itself died."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool after a worker crash
        return JobResult(task.name, "failed", 0.0, [],
                         error=f"consultant {task.consultant}: worker failed: {type(exc).__name__}: {exc}"[:500])


def _publish(task: SummaryTask, staging: Path, consultant_name: str) -> None:
    """Move both files into place, then write the stamp: the stamp is what says 'built'."""
    stamp_path(task).unlink(missing_ok=True)
    for path in task.outputs():
        os.replace(staging / path.name, path)  # atomic within one file system
    stamp = {"inputs_fingerprint": task.inputs_fingerprint, "consultant": task.consultant,
             "consultant_name": consultant_name, "outputs": {p.name: file_sha256(p) for p in task.outputs()}}
    atomic_write_text(stamp_path(task), json.dumps(stamp, indent=1))


def stamp_path(task: SummaryTask) -> Path:
    return Path(task.out_dir) / STAMP


def is_up_to_date(task: SummaryTask) -> bool:
    """True only if the stamp names the task's current inputs and both files are the ones stamped."""
    stamp = _read_stamp(Path(task.out_dir))
    if stamp is None or stamp.get("inputs_fingerprint") != task.inputs_fingerprint:
        return False
    return all(p.is_file() and stamp.get("outputs", {}).get(p.name) == file_sha256(p) for p in task.outputs())


def listing(out: Path) -> list[dict]:
    """Every built summary of the period, for the team index and the manifest: ``consultant``,
    ``consultant_name``, ``inputs_fingerprint`` and ``files`` (each ``path`` relative to the period folder
    and its ``sha256``, as stamped when it was written), in consultant order. A folder without a stamp (a
    summary that failed or was interrupted) is not listed."""
    rows = []
    folder = Path(out) / SUMMARIES_DIR
    for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
        stamp = _read_stamp(sub)
        if stamp is None:
            continue
        files = [{"path": (sub / name).relative_to(out).as_posix(), "sha256": sha}
                 for name, sha in sorted(stamp.get("outputs", {}).items()) if (sub / name).is_file()]
        rows.append({"consultant": stamp.get("consultant", sub.name), "consultant_name":
                     stamp.get("consultant_name", ""), "inputs_fingerprint": stamp.get("inputs_fingerprint"),
                     "files": files})
    return sorted(rows, key=lambda r: str(r["consultant"]))


def manifest_entries(out: Path) -> list[dict]:
    """:func:`listing` as entries of ``manifest.json``'s ``files`` (kind "consultant summary", audience
    "local": confidential)."""
    return [{**f, "kind": "consultant summary", "audience": "local", "consultant": row["consultant"],
             "inputs_fingerprint": row["inputs_fingerprint"]} for row in listing(out) for f in row["files"]]


def remove_stale_folders(out: Path, keep: set[str]) -> list[Path]:
    """Remove the summary folders of consultants no longer in the results (a confidential page of
    someone the period no longer has must not linger); a folder holding anything but a summary's own files
    is left alone. Returns the folders removed."""
    folder = Path(out) / SUMMARIES_DIR
    removed = []
    for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not sub.is_dir() or sub.is_symlink() or sub.name in keep:
            continue
        if {p.name for p in sub.iterdir() if not p.name.startswith(f".{STEM}-")} <= _OWN_FILES:
            shutil.rmtree(sub)
            removed.append(sub)
    return removed


def _read_stamp(folder: Path) -> dict | None:
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


