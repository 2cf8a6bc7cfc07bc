"""Nothing half-published: ``auditreport run`` killed (SIGKILL) at several points leaves every output
either complete and valid or absent, the site whole, and the next run completes the set."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import psutil
import pytest
from pypdf import PdfReader

from auditreport.data.loading import file_sha256

from .conftest import HOSTILE_PROVIDERS, make_hostile_audit

pytestmark = pytest.mark.slow

PROVIDER = next(iter(HOSTILE_PROVIDERS))  # one provider (both audiences) + national keeps each run short


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href and not href.startswith(("#", "mailto:", "http")):
            self.links.append(href.split("#")[0])  # "index.html#open-data": the file, index.html


def _visible(root: Path) -> list[Path]:
    """Files under their final names (temporary files and folders start with '.')."""
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def check_complete_or_absent(period: Path) -> list[str]:
    """Open every visible output; return what was found (raises on a partial file)."""
    seen = []
    for path in _visible(period):
        rel = path.relative_to(period).as_posix()
        if path.suffix == ".html":
            text = path.read_text(encoding="utf-8")
            assert text.rstrip().endswith("</html>"), rel
            parser = _Links()
            parser.feed(text)
            for link in parser.links:
                assert (path.parent / link).is_file(), f"{rel} links {link}, which does not exist"
        elif path.suffix == ".pdf":
            assert len(PdfReader(path, strict=True).pages) >= 1, rel
        elif path.suffix == ".ipynb":
            nbformat.validate(nbformat.read(str(path), as_version=4))
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0, rel
        elif path.suffix == ".parquet":
            pd.read_parquet(path)
        seen.append(rel)
    site = period / "site"
    if site.exists() or site.is_symlink():
        assert site.is_dir() and not site.is_symlink()
        assert (site / "index.html").is_file() and (site / "indicators.csv").is_file()
    return seen


def _run(audit: Path, reports: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.environ.get("PYTHONPATH", str(Path(__file__).parents[2] / "src")))
    return subprocess.Popen([sys.executable, "-m", "auditreport.cli", "run", str(audit), "--reports", str(reports),
                             "-p", PROVIDER, "-j", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the run, its workers and their kernels (kernels run in sessions of their own)."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    os.killpg(proc.pid, signal.SIGKILL)
    for child in family:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=10)


def _wait_for_results(proc: subprocess.Popen, count: int, timeout: float = 120) -> bool:
    """Read the run's progress until ``count`` reports are done; False if it ended first."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    done, deadline = 0, time.monotonic() + timeout
    while done < count and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1).decode()
        except queue.Empty:
            if proc.poll() is not None:
                return False
            continue
        done += any(mark in line for mark in ("  built ", "  up to date ", "  FAILED "))
    return done >= count


def test_killed_runs_leave_complete_outputs_and_resume(tmp_path):
    audit = make_hostile_audit(tmp_path / "audit")
    reports = tmp_path / "reports"
    period = reports / "synthetic-surgery" / "2024-2025"
    rng = random.Random(int(os.environ.get("AUDITREPORT_KILL_SEED", "7")))
    # Kill points: during the national stage (by time); just after the first report is built, with the
    # others running; and just after the last report, while the site, index and manifest are written.
    kill_points = [("seconds", rng.uniform(1.5, 4.0)), ("results", 1, rng.uniform(0.0, 1.0)),
                   ("results", 3, rng.uniform(0.0, 0.3))]
    history = []
    for point in kill_points:
        proc = _run(audit, reports)
        if point[0] == "seconds":
            time.sleep(point[1])
        elif _wait_for_results(proc, point[1]):
            time.sleep(point[2])
        finished = proc.poll() is not None
        if not finished:
            _kill(proc)
        history.append((point, finished, check_complete_or_absent(period) if period.exists() else []))
    print("kills (delay s, finished before the kill, visible outputs):", history)
    proc = _run(audit, reports)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()
    seen = check_complete_or_absent(period)
    safe = next(p.name for p in (period / "providers").iterdir())
    expected = {f"providers/{safe}/{a}.{s}" for a in ("local", "public") for s in ("html", "pdf", "ipynb")}
    expected |= {f"national/national.{s}" for s in ("html", "pdf", "ipynb")}
    expected |= {"index.html", "indicators.csv", "manifest.json", "site/index.html", "site/indicators.csv",
                 "site/national.pdf", f"site/reports/{safe}.pdf", f"site/providers/{safe}.html"}
    assert expected <= set(seen), (expected - set(seen), history)
    manifest = json.loads((period / "manifest.json").read_text())
    for entry in manifest["files"]:
        assert file_sha256(period / entry["path"]) == entry["sha256"], entry["path"]
    assert not [p for p in period.glob("*") if p.name.startswith(".site")], "stale site staging left behind"

    # A failure part-way through writing the site leaves the published site exactly as it was.
    from auditreport.config import load_config
    from auditreport.execution.report_job import JobResult
    from auditreport.pipeline import report_jobs
    from auditreport.publication import site as site_module

    config = load_config(audit)
    jobs = report_jobs(config, period, [PROVIDER])
    results = [JobResult(j.name, "skipped", 0.0, []) for j in jobs]
    before = {p.relative_to(period): file_sha256(p) for p in (period / "site").rglob("*") if p.is_file()}
    real_copy, calls = site_module.shutil.copyfile, []

    def failing_copy(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(site_module.shutil, "copyfile", failing_copy)
        with pytest.raises(OSError, match="No space"):
            site_module.publish(config, period, jobs, results)
    after = {p.relative_to(period): file_sha256(p) for p in (period / "site").rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in period.glob(".site*")]
