"""One report: execute its notebook with papermill, render HTML and PDF, publish atomically.

Each report runs in a fresh kernel in a private working folder, and its three
files are written to a temporary folder first and moved into place only when
all three exist, so a killed run never leaves a report that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTPUT_SUFFIXES = (".ipynb", ".html", ".pdf")


def safe_name(text: str) -> str:
    """A file-name-safe form of a unit code; never a path, never '..'.

    Codes are usually already safe (RX1, C1234567). Anything else keeps its safe
    characters plus a short hash of the original, so two hostile codes that
    differ only in unsafe characters cannot collide.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:60]
    if cleaned == text and cleaned:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{cleaned or 'unit'}-{digest}"


@dataclass
class ReportJob:
    """What one report needs; plain data so it can be sent to another process or a cluster."""

    kind: str  # "national" | "provider"
    audience: str  # "local" | "public"
    notebook: str  # template notebook path
    bundle_dir: str
    out_dir: str  # folder that receives <stem>.ipynb/.html/.pdf
    stem: str
    title: str
    audit: str
    period: str
    provider: str = ""
    timeout: int = 600
    sortable: bool = False
    inputs_fingerprint: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.provider or 'national'}:{self.audience}"

    @property
    def parameters(self) -> dict:
        return {"bundle_dir": self.bundle_dir, "audit": self.audit, "period": self.period,
                "provider": self.provider, "audience": self.audience}

    def outputs(self) -> list[Path]:
        return [Path(self.out_dir) / f"{self.stem}{s}" for s in OUTPUT_SUFFIXES]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class JobResult:
    name: str
    status: str  # "built" | "failed" | "skipped"
    seconds: float
    outputs: list[str]
    error: str = ""
    failed_notebook: str = ""


def run_job(job: ReportJob) -> JobResult:
    """Execute, render and publish one report; never raises (failures are results)."""
    import papermill as pm

    from auditreport.rendering.html import notebook_to_html
    from auditreport.rendering.pdf import html_to_pdf

    started = time.perf_counter()
    out_dir = Path(job.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{job.stem}-", dir=out_dir))
    executed = staging / f"{job.stem}.ipynb"
    try:
        nb = pm.execute_notebook(
            job.notebook, str(executed), parameters=job.parameters, kernel_name="python3",
            cwd=str(staging), progress_bar=False, log_output=False, execution_timeout=job.timeout,
            request_save_on_cell_execute=False,
        )
        nb.metadata["auditreport"] = {"parameters": job.parameters, "inputs_fingerprint": job.inputs_fingerprint}
        import nbformat

        nbformat.write(nb, str(executed))
        html = notebook_to_html(nb, job.title, sortable=job.sortable)
        (staging / f"{job.stem}.html").write_text(html, encoding="utf-8")
        html_to_pdf(html, staging / f"{job.stem}.pdf")
        for path in job.outputs():
            os.replace(staging / path.name, path)  # atomic within one file system
        _write_stamp(job)
        return JobResult(job.name, "built", time.perf_counter() - started, [str(p) for p in job.outputs()])
    except Exception as exc:  # noqa: BLE001 - one report's failure must not stop the batch
        failed = out_dir / f"{job.stem}.failed.ipynb"
        if executed.exists():
            shutil.copyfile(executed, failed)
        return JobResult(job.name, "failed", time.perf_counter() - started, [], error=_short_error(exc),
                         failed_notebook=str(failed) if failed.exists() else "")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def stamp_path(job: ReportJob) -> Path:
    return Path(job.out_dir) / f".{job.stem}.stamp.json"


def _write_stamp(job: ReportJob) -> None:
    """Record what made the outputs, so an unchanged report can be skipped next time."""
    stamp = {"inputs_fingerprint": job.inputs_fingerprint,
             "outputs": {p.name: _sha256(p) for p in job.outputs()}}
    tmp = stamp_path(job).with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=1))
    os.replace(tmp, stamp_path(job))


def is_up_to_date(job: ReportJob) -> bool:
    path = stamp_path(job)
    if not path.exists() or not all(p.exists() for p in job.outputs()):
        return False
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("inputs_fingerprint") != job.inputs_fingerprint:
        return False
    # Size and time are not enough: a truncated or edited output must be rebuilt.
    return all(stamp["outputs"].get(p.name) == _sha256(p) for p in job.outputs())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # papermill's PapermillExecutionError carries the cell's exception name and value.
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]
