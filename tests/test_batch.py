"""The batch engine: failure isolation, retries, timeouts, skipping, rebuilding, resuming, Dask.

Failure tests use tiny notebooks in a temporary folder (a ReportJob takes any
notebook) so each costs about one kernel start. Tests taking ``speedups_on`` run twice:
with the speed-ups that patch third-party internals, and with stock papermill, nbclient,
jupyter_client and WeasyPrint (``AUDITREPORT_SPEEDUPS=0``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from auditreport import speedups
from auditreport.execution.batch import run_batch
from auditreport.execution.report_job import (
    SOCKET_FOLDER_PREFIX,
    ReportJob,
    is_up_to_date,
    remove_stale_socket_folders,
    run_job,
    stamp_path,
)

from conftest import skip_outside_ci

PARAMS = 'bundle_dir = ""\naudit = ""\nperiod = ""\nprovider = ""\naudience = "local"'


def notebook(folder: Path, name: str, *cells: str) -> Path:
    """A notebook with a papermill parameters cell followed by ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, str(path))
    return path


def job(folder: Path, nb: Path, provider: str, timeout: int = 60) -> ReportJob:
    j = ReportJob(kind="provider", audience="local", notebook=str(nb), bundle_dir=str(folder),
                  out_dir=str(folder / "out" / provider), stem="local", title=f"Test {provider}",
                  audit="test", period="p", provider=provider, timeout=timeout)
    j.inputs_fingerprint = j.fingerprint("base")
    return j


OK_CELL = "from IPython.display import HTML, display\ndisplay(HTML(f'<h1>Report for {provider}</h1>'))"


def test_one_failing_cell_fails_only_its_report(tmp_path, speedups_on):
    good = job(tmp_path, notebook(tmp_path, "good", OK_CELL), "GOOD")
    bad = job(tmp_path, notebook(tmp_path, "bad", OK_CELL, "raise ValueError('no data for ' + provider)"), "BAD")
    results = {r.name: r for r in run_batch([good, bad], workers=2)}
    ok, failed = results[good.name], results[bad.name]
    assert ok.status == "built" and all(p.is_file() for p in good.outputs()) and is_up_to_date(good)
    assert "Report for GOOD" in (Path(good.out_dir) / "local.html").read_text()
    assert failed.status == "failed" and failed.attempts == 1  # a raising cell is not retried
    assert failed.error == "cell 3 of bad.ipynb (raise ValueError('no data for ' + provider)): ValueError: no data for BAD"
    executed = nbformat.read(failed.failed_notebook, as_version=4)
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))
    assert not any(p.exists() for p in bad.outputs()) and not stamp_path(bad).exists()
    assert not list(Path(bad.out_dir).glob(".local-*")), "staging folder left behind"


def test_report_kernels_leave_the_users_ipython_history_alone(tmp_path):
    nb = notebook(tmp_path, "history", "assert not get_ipython().history_manager.enabled", OK_CELL)
    result = run_job(job(tmp_path, nb, "H"))
    assert result.status == "built", result.error


@skip_outside_ci(not Path("/proc/self/fd").is_dir(), "counts open files through /proc")
def test_a_worker_keeps_no_threads_or_files_from_the_reports_it_has_built(tmp_path, speedups_on):
    """A worker builds report after report: each must leave nothing running or open behind it (a heartbeat
    thread and a dozen file descriptors a report once piled up, slowing long batches down)."""
    import threading

    nb = notebook(tmp_path, "nb", OK_CELL)

    def state() -> tuple[int, int]:
        return threading.active_count(), len(os.listdir("/proc/self/fd"))

    assert run_job(job(tmp_path, nb, "P0")).status == "built"  # the first report sets up what a worker keeps
    before = state()
    for i in range(1, 4):
        assert run_job(job(tmp_path, nb, f"P{i}")).status == "built"
    after = state()
    # At most as many: something another test started may end meanwhile, but nothing may be added.
    assert after[0] <= before[0] and after[1] <= before[1], f"threads, open files: {before} before, {after} after"


def test_dying_kernel_is_retried_once(tmp_path, speedups_on):
    marker = tmp_path / "died-once"
    once = job(tmp_path, notebook(tmp_path, "once", f"import os, pathlib\nm = pathlib.Path({str(marker)!r})\n"
                                  "if not m.exists():\n    m.touch()\n    os._exit(1)", OK_CELL), "ONCE")
    always = job(tmp_path, notebook(tmp_path, "always", "import os\nos._exit(1)"), "ALWAYS")
    results = {r.name: r for r in run_batch([once, always], workers=2)}
    assert results[once.name].status == "built" and results[once.name].attempts == 2
    dead = results[always.name]
    assert dead.status == "failed" and dead.attempts == 2 and "kernel died" in dead.error
    assert Path(dead.failed_notebook).is_file()  # what ran before the kernel died, to look at


def test_hanging_cell_times_out(tmp_path):
    hang = job(tmp_path, notebook(tmp_path, "hang", "import time\ntime.sleep(600)"), "HANG", timeout=3)
    started = time.perf_counter()
    result = run_job(hang)
    assert time.perf_counter() - started < 60
    assert result.status == "failed" and result.attempts == 1
    assert "timed out" in result.error.lower() or "timeout" in result.error.lower(), result.error


def test_kernel_that_does_not_start(tmp_path, monkeypatch, speedups_on):
    spec = tmp_path / "jupyter" / "kernels" / "broken"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "import sys; sys.stderr.write('cannot start here\\n'); sys.exit(3)",
                 "{connection_file}"], "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    broken = job(tmp_path, notebook(tmp_path, "nb", OK_CELL), "BROKEN")
    broken.kernel_name = "broken"
    result = run_job(broken)
    assert result.status == "failed" and result.attempts == 2
    assert "kernel did not start" in result.error and "cannot start here" in result.error


def test_rerun_skips_and_any_change_rebuilds(tmp_path):
    nb = notebook(tmp_path, "nb", OK_CELL)
    first = job(tmp_path, nb, "P1")
    assert [r.status for r in run_batch([first], workers=1)] == ["built"]
    assert [r.status for r in run_batch([job(tmp_path, nb, "P1")], workers=1)] == ["skipped"]
    assert [r.status for r in run_batch([job(tmp_path, nb, "P1")], workers=1, force=True)] == ["built"]
    # A changed notebook changes the fingerprint.
    notebook(tmp_path, "nb", OK_CELL, "display(HTML('<p>new section</p>'))")
    changed = job(tmp_path, nb, "P1")
    assert changed.inputs_fingerprint != first.inputs_fingerprint
    assert [r.status for r in run_batch([changed], workers=1)] == ["built"]
    assert "new section" in (Path(changed.out_dir) / "local.html").read_text()
    # So do changed upstream inputs (data, configuration, code version are in the base).
    other = job(tmp_path, nb, "P1")
    other.inputs_fingerprint = other.fingerprint("other data")
    assert not is_up_to_date(other)
    # A damaged output, or a missing stamp, means not built.
    assert is_up_to_date(changed)
    (Path(changed.out_dir) / "local.pdf").write_bytes(b"%PDF-truncated")
    assert not is_up_to_date(changed)
    assert [r.status for r in run_batch([changed], workers=1)] == ["built"]
    stamp_path(changed).unlink()
    assert not is_up_to_date(changed)


@pytest.mark.slow
def test_interrupted_run_resumes(small_audit, tmp_path):
    """Kill the command line mid-batch; the rerun builds only what is missing and everything is valid."""
    from auditreport.config import load_config
    from auditreport.pipeline import period_dir, report_jobs

    reports = tmp_path / "reports"
    tmp = tmp_path / "tmp"  # the runs' own temporary folder, to see what the killed one left there
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TMPDIR": str(tmp)}
    chosen = two_providers(small_audit)
    cmd = [sys.executable, "-m", "auditreport.cli", "run", str(small_audit), "--reports", str(reports), "-j", "1",
           "-p", chosen[0], "-p", chosen[1]]
    out = period_dir(load_config(small_audit), reports)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while len(list(out.rglob(".*.stamp.json"))) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its workers and their kernels, mid-batch
        proc.wait()
    done_before = len(list(out.rglob(".*.stamp.json")))
    assert 2 <= done_before < 5, "the run was not interrupted mid-batch:\n" + proc.stdout.read().decode()

    rerun = subprocess.run(cmd[:-6] + ["-j", "2", "-p", chosen[0], "-p", chosen[1]], env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # The killed run never reached the consultant summaries (built after the reports): the rerun builds them too.
    summaries = len(re.findall(r"built\s+consultant-summary:", rerun.stdout))
    assert summaries > 0, rerun.stdout
    assert re.search(rf"skipped \(up to date\)\s+{done_before}\b", rerun.stdout), rerun.stdout
    assert re.search(rf"built\s+{5 - done_before + summaries}\b", rerun.stdout), rerun.stdout
    jobs = report_jobs(load_config(small_audit), out, chosen)
    assert all(is_up_to_date(j) for j in jobs)
    assert not list(out.rglob(".local-*")) + list(out.rglob(".public-*")), "staging folders left behind"
    assert not list(tmp.glob(f"{SOCKET_FOLDER_PREFIX}*")), "kernel socket folders left behind"
    assert list((out / "logs").glob("run-*.log"))


def test_socket_folders_of_processes_that_are_gone_are_removed(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process (pids are not reused this quickly)
    stale = tmp_path / f"{SOCKET_FOLDER_PREFIX}{gone.pid}-x1"
    ours = tmp_path / f"{SOCKET_FOLDER_PREFIX}{os.getpid()}-x2"  # a job of this process is using it
    other = tmp_path / f"{SOCKET_FOLDER_PREFIX}notapid-x3"
    for folder in (stale, ours, other):
        folder.mkdir()
        (folder / "kernel.json").write_text("{}")
    assert remove_stale_socket_folders(tmp_path) == 1
    assert not stale.exists() and ours.exists() and other.exists()


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_reports(built_small_audit, small_audit, tmp_path):
    import distributed

    from auditreport.pipeline import build

    local_out = built_small_audit.period_dir
    a, b = two_providers(small_audit)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        summary = build(small_audit, tmp_path / "reports", providers=[a, b],
                        scheduler=cluster.scheduler_address)
    dask_out = summary.period_dir
    from auditreport.bundle import load_bundle
    from auditreport.presentation.consultant_summary import consultant_codes

    summaries = len(consultant_codes(load_bundle(dask_out / "bundle"), {a, b}))  # theirs, built locally
    assert summary.counts() == {"built": 5 + summaries}, [(r.name, r.error) for r in summary.failed]
    manifest = json.loads((dask_out / "manifest.json").read_text())
    built = sorted(f["path"] for f in manifest["files"] if f.get("kind") in ("national", "provider"))
    assert built == sorted([f"national/national.{x}" for x in ("ipynb", "html", "pdf")]
                           + [f"providers/{p}/{s}.{x}" for p in (a, b) for s in ("local", "public")
                              for x in ("ipynb", "html", "pdf")])
    for rel in (f"providers/{a}/local.html", f"providers/{b}/public.html", "national/national.html"):
        assert _figures(dask_out / rel) == _figures(local_out / rel), rel


@pytest.mark.slow
def test_a_real_report_is_the_same_with_the_speedups_off(built_small_audit, small_audit, tmp_path, monkeypatch):
    """A provider's report built with stock papermill, nbclient, jupyter_client and WeasyPrint has the same
    figures, charts, pages and page text as the one the engine built with its speed-ups."""
    import dataclasses

    import pypdfium2 as pdfium

    from auditreport.config import load_config
    from auditreport.pipeline import report_jobs

    monkeypatch.setenv(speedups.ENV_VAR, "0")
    (engine_job,) = [j for j in report_jobs(load_config(small_audit), built_small_audit.period_dir,
                                            two_providers(small_audit)[:1]) if j.audience == "local"]
    stock_job = dataclasses.replace(engine_job, out_dir=str(tmp_path / "stock"))
    result = run_job(stock_job)
    assert result.status == "built", result.error
    engine_html, stock_html = (Path(j.out_dir) / f"{j.stem}.html" for j in (engine_job, stock_job))
    assert _figures(stock_html) == _figures(engine_html)
    charts = re.compile(r"data:image/png;base64,[^\"']+")
    assert charts.findall(stock_html.read_text()) == charts.findall(engine_html.read_text())

    def pages(pdf_path: Path) -> list[str]:
        document = pdfium.PdfDocument(str(pdf_path))
        try:
            return [re.sub(r"\d{4}-\d\d-\d\d[ T][\d:]+(\+00:00|Z| UTC)?|commit \w+", "",
                           page.get_textpage().get_text_range()) for page in document]
        finally:
            document.close()

    stock_pages = pages(Path(stock_job.out_dir) / "local.pdf")
    assert len(stock_pages) > 1 and stock_pages == pages(Path(engine_job.out_dir) / "local.pdf")


def two_providers(audit_yaml: Path) -> list[str]:
    import pandas as pd

    codes = pd.read_csv(audit_yaml.parent / "data" / "providers.csv", dtype=str)["provider_code"]
    return sorted(codes)[:2]


def _figures(html_path: Path) -> list[str]:
    """The numbers a reader sees (tables and text), without images, paths and times."""
    html = html_path.read_text()
    html = re.sub(r"data:image/png;base64,[^\"']+", "", html)
    html = re.sub(r"\d{4}-\d\d-\d\dT[\d:]+(\+00:00|Z)?", "", html)
    text = re.sub(r"<[^>]+>", " ", html)
    return re.findall(r"-?\d+(?:\.\d+)?%?", text)
