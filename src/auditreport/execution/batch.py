"""Run many report jobs in parallel processes and summarise the outcome."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from auditreport.execution.report_job import JobResult, ReportJob, is_up_to_date, run_job

log = logging.getLogger(__name__)


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def run_batch(jobs: Sequence[ReportJob], *, workers: int | None = None, force: bool = False,
              on_result: Callable[[JobResult], None] | None = None) -> list[JobResult]:
    """Build every job (skipping those whose inputs have not changed unless ``force``)."""
    results: list[JobResult] = []
    todo = []
    for job in jobs:
        if not force and is_up_to_date(job):
            result = JobResult(job.name, "skipped", 0.0, [str(p) for p in job.outputs()])
            results.append(result)
            if on_result:
                on_result(result)
        else:
            todo.append(job)
    workers = workers or default_jobs()
    if workers == 1 or len(todo) <= 1:
        for job in todo:
            result = run_job(job)
            results.append(result)
            if on_result:
                on_result(result)
        return results
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        futures = {pool.submit(run_job, job): job for job in todo}
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if on_result:
                on_result(result)
    return results
