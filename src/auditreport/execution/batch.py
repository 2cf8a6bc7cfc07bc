"""Run many report jobs in parallel, locally or on a Dask cluster, and summarise the outcome.

Jobs whose stamp matches their inputs are skipped, so a rerun after an
interruption resumes where the last one stopped. Every other job runs in a
long-lived worker process (which keeps nbconvert's templates and WeasyPrint's
fonts loaded between reports) but each report still gets its own fresh kernel.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from auditreport.execution.report_job import (
    JobResult,
    ReportJob,
    is_up_to_date,
    remove_stale_socket_folders,
    remove_stale_staging,
    run_job,
)

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def default_jobs() -> int:
    """One worker per core.

    A worker used to sit idle while its kernel connected, started and stopped, and one spare worker
    filled those gaps. The report kernel manager removed those waits
    (:mod:`auditreport.execution.kernel_manager`); since then a spare worker only adds contention: more
    processes than cores cost each report more CPU (benchmarks/RESULTS.md). With the speed-ups
    switched off the waits are back, and ``-j`` one more than the cores may then be faster.
    """
    return available_cores()


def plan(jobs: Sequence[ReportJob], force: bool = False) -> tuple[list[ReportJob], list[ReportJob]]:
    """Split jobs into (to build, up to date)."""
    todo, fresh = [], []
    for job in jobs:
        (fresh if not force and is_up_to_date(job) else todo).append(job)
    return todo, fresh


def run_batch(jobs: Sequence[ReportJob], *, workers: int | None = None, force: bool = False,
              scheduler: str | None = None, on_result: Callable[[JobResult], None] | None = None,
              on_plan: Callable[[int, int], None] | None = None) -> list[JobResult]:
    """Build every job (skipping those whose inputs have not changed unless ``force``).

    ``scheduler`` is the address of a Dask distributed scheduler (``tcp://host:8786``); without it the
    jobs run in a local process pool of ``workers`` processes (default: one per core). ``on_plan`` is told
    (to build, up to date) before anything runs; ``on_result`` is told each result as it arrives.
    """
    todo, fresh = plan(jobs, force)
    if on_plan:
        on_plan(len(todo), len(fresh))
    results: list[JobResult] = []

    def record(result: JobResult) -> None:
        results.append(result)
        # INFO even for failures: the user sees them in the progress and the summary table; this is the log file's.
        log.info("%s %s (%.1fs%s)%s", result.status, result.name, result.seconds,
                f", {result.attempts} attempts" if result.attempts > 1 else "",
                f": {result.error}" if result.error else "")
        if on_result:
            on_result(result)

    for job in fresh:
        record(JobResult(job.name, "skipped", 0.0, [str(p) for p in job.outputs()]))
    for job in todo:
        remove_stale_staging(job)  # left by an interrupted run; never an output
    if not todo:
        return results
    if stale := remove_stale_socket_folders():  # on this machine; a cluster's workers have their own
        log.info("removed %d kernel socket folder(s) left by a run that was killed", stale)
    if scheduler:
        _run_dask(todo, scheduler, record)
        return results
    workers = workers or default_jobs()
    if workers == 1 or len(todo) == 1:
        for job in todo:
            record(run_job(job))
        return results
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        futures = {pool.submit(run_job, job): job for job in todo}
        for future in as_completed(futures):
            record(_result_of(future, futures[future]))
    return results


def _result_of(future, job: ReportJob) -> JobResult:
    """The job's result, or a failure if the worker itself died (run_job never raises)."""
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool after a worker crash
        return JobResult(job.name, "failed", 0.0, [], error=f"worker failed: {type(exc).__name__}: {exc}"[:500])


def _run_dask(todo: Sequence[ReportJob], scheduler: str, record: Callable[[JobResult], None]) -> None:
    """Run the jobs on a Dask cluster. Workers must see the same paths (shared file system) and
    have the same environment installed; each job is independent, so Dask may place it anywhere."""
    from distributed import Client
    from distributed import as_completed as dask_completed

    started = time.perf_counter()
    with Client(scheduler) as client:
        # pure=False: the same job submitted twice must run twice (e.g. after --force).
        futures = {client.submit(run_job, job, pure=False, key=f"report-{job.name}-{time.time_ns()}"): job
                   for job in todo}
        for future in dask_completed(futures):
            record(_result_of(future, futures[future]))
    log.info("dask batch of %d jobs on %s took %.1fs", len(todo), scheduler, time.perf_counter() - started)
