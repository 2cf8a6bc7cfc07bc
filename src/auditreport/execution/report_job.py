"""One report: execute its notebook in a fresh kernel, render HTML and PDF, publish atomically.

Each report runs in a fresh kernel in a private working folder. Papermill is used
only for what it is good at, injecting the parameters cell; the notebook is then
run by nbclient directly, with the kernel started here so that start-up is under
our control:

* the kernel talks over IPC sockets in a private temporary folder, not TCP
  ports, so many kernels starting at once cannot race for the same port
  (papermill issues #239, #583) and the kernel has no reason to print its
  "running over TCP without encryption" warning;
* the kernel's own stdout/stderr go to a file in the staging folder, whose tail
  explains a kernel that would not start or that died;
* a kernel that fails to start or dies is retried once (a fresh kernel may well
  succeed); a cell that raises or times out is not, since it would do the same
  again.

The three outputs are written to a staging folder and moved into place only when
all three exist; the stamp that says "this report is built from these inputs" is
removed before the move and written after it, so an interrupted run never leaves
a report that looks complete.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from auditreport import speedups
from auditreport.files import atomic_write_text

OUTPUT_SUFFIXES = (".ipynb", ".html", ".pdf")
MAX_ATTEMPTS = 2  # a kernel that dies or does not start gets one more, fresh, kernel
# A report's cells are not the user's history: without this every kernel writes its cells into the user's
# IPython history database, and many kernels at once queue on that one SQLite file's lock.
KERNEL_ARGUMENTS = ["--HistoryManager.enabled=False"]
STARTUP_TIMEOUT = 120  # seconds for a kernel to answer; generous because a loaded machine is slow
# A kernel's IPC sockets live in <tmp>/arkernel-<pid of the process that runs the job>-<random>/; the pid
# tells a later run which folders a killed run left behind (see remove_stale_socket_folders).
SOCKET_FOLDER_PREFIX = "arkernel-"


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
    timeout: int = 600  # seconds one cell may run
    sortable: bool = False
    inputs_fingerprint: str = ""
    kernel_name: str = "python3"
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

    def fingerprint(self, base: str | dict = "") -> str:
        """Everything that made this report: ``base`` (data, configuration, code version), the notebook's
        bytes, the parameters and how it is rendered. Any change means the report is rebuilt."""
        payload = [base, _sha256(Path(self.notebook)), self.parameters, self.title, self.sortable, self.kernel_name]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

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
    attempts: int = 1
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase of the last attempt


class _Retryable(Exception):
    """The kernel failed (did not start, or died): a fresh kernel may succeed."""


def run_job(job: ReportJob) -> JobResult:
    """Execute, render and publish one report; never raises (failures are results)."""
    started = time.perf_counter()
    out_dir = Path(job.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result, retry = _attempt(job)
        result.attempts = attempt
        if result.status == "built" or not retry:
            break
    assert result is not None
    result.seconds = time.perf_counter() - started
    return result


def _attempt(job: ReportJob) -> tuple[JobResult, bool]:
    """One try at a report. Returns the result and whether another try could help."""
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    out_dir = Path(job.out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{job.stem}-", dir=out_dir))
    executed = staging / f"{job.stem}.ipynb"
    timings: dict[str, float] = {}
    nb = None
    try:
        try:
            nb = _execute(job, staging, timings)
        except CellExecutionError as exc:
            raise _JobFailed(f"{_cell_of(exc)}: {_short_error(exc)}", nb=getattr(exc, "_nb", None)) from exc
        except CellTimeoutError as exc:  # its message is mostly the cell's source, which the label shows
            raise _JobFailed(f"{_cell_of(exc)}: timed out after {job.timeout} seconds (--timeout)",
                             nb=getattr(exc, "_nb", None)) from exc
        except DeadKernelError as exc:
            _save_partial(getattr(exc, "_nb", None), executed)
            raise _Retryable(f"kernel died in {_cell_of(exc)}: {_kernel_log_tail(staging) or exc}") from exc
        nb.metadata["auditreport"] = {"parameters": job.parameters, "inputs_fingerprint": job.inputs_fingerprint}
        nbformat.write(nb, str(executed))
        t = time.perf_counter()
        from auditreport.rendering.html import notebook_to_html
        from auditreport.rendering.pdf import html_to_pdf

        html = notebook_to_html(nb, job.title, sortable=job.sortable)
        (staging / f"{job.stem}.html").write_text(html, encoding="utf-8")
        timings["html"] = time.perf_counter() - t
        t = time.perf_counter()
        html_to_pdf(html, staging / f"{job.stem}.pdf")
        timings["pdf"] = time.perf_counter() - t
        _publish(job, staging)
        return JobResult(job.name, "built", 0.0, [str(p) for p in job.outputs()], timings=timings), False
    except _Retryable as exc:
        return _failure(job, staging, str(exc), timings), True
    except _JobFailed as exc:
        _save_partial(exc.nb, executed)
        return _failure(job, staging, str(exc), timings), False
    except Exception as exc:  # noqa: BLE001 - one report's failure must not stop the batch
        return _failure(job, staging, _short_error(exc), timings), False
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save_partial(nb, path: Path) -> None:
    """Keep what a failed run produced: the notebook shows which cell failed and its traceback."""
    if nb is not None:
        import nbformat

        nbformat.write(nb, str(path))


class _JobFailed(Exception):
    def __init__(self, message: str, nb=None):
        super().__init__(message)
        self.nb = nb


def _execute(job: ReportJob, staging: Path, timings: dict[str, float]):
    """Parameterise with papermill, then run every cell in a fresh kernel with nbclient."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from auditreport.execution.kernel_forkserver import kernel_manager

    t = time.perf_counter()
    nb = load_notebook_node(job.notebook)  # papermill's reader: it adds the tags parameterisation expects
    written_cells = len(nb.cells)
    nb = parameterize_notebook(nb, job.parameters, kernel_name=job.kernel_name, language="python")
    # papermill adds its injected-parameters cell (or replaces one the notebook already had): cells after an
    # added one are one further on than in the notebook as written, which is what a failure must name.
    added = len(nb.cells) - written_cells
    # Unix socket paths are limited to ~100 bytes, so the IPC sockets live in a short private
    # folder of their own rather than in the (possibly deep) staging folder.
    sockets = Path(tempfile.mkdtemp(prefix=f"{SOCKET_FOLDER_PREFIX}{os.getpid()}-"))
    log_path = staging / "kernel.log"
    # nbclient drives the kernel from an event loop: a blocking KernelManager there deadlocks when it
    # polls a dead kernel, so the manager must be the asynchronous one. With the speed-ups on it forks
    # the kernel from this worker's pre-loaded zygote when it can, else starts it normally.
    km = kernel_manager(kernel_name=job.kernel_name, transport="ipc", ip=str(sockets / "k"),
                        connection_file=str(sockets / "kernel.json"))
    client = NotebookClient(nb, km=km, timeout=job.timeout, startup_timeout=STARTUP_TIMEOUT,
                            kernel_name=job.kernel_name, resources={"metadata": {"path": str(staging)}},
                            shutdown_kernel="immediate", allow_errors=False,
                            extra_arguments=KERNEL_ARGUMENTS)
    started_cells = []
    client.on_cell_start = lambda cell, cell_index: started_cells.append(cell_index)
    try:
        with open(log_path, "wb") as log:
            try:
                # The kernel's output goes to a file: it is evidence when a kernel fails, noise otherwise.
                client.execute(cwd=str(staging), stdout=log, stderr=log)
            except Exception as exc:
                exc._nb = nb  # the partly executed notebook (outputs so far), for the failed copy
                if started_cells:
                    exc._cell = _cell_label(nb, started_cells[-1], added, Path(job.notebook).name)
                if isinstance(exc, CellExecutionError | CellTimeoutError | DeadKernelError):
                    raise
                if not started_cells:  # nothing ran: the kernel did not start or did not answer
                    raise _Retryable(f"kernel did not start: {_kernel_log_tail(staging) or _short_error(exc)}") \
                        from exc
                raise
            finally:
                _stop_kernel(km)
                # nbclient stops the client's channels only for a manager it made itself; this one is ours.
                # Left running, each report's heartbeat thread, ZMQ context and sockets stay in the worker
                # (one thread and a dozen file descriptors a report), which slowed a long batch down and
                # would in time hit the open-file limit.
                if client.kc is not None:
                    client.kc.stop_channels()
                    client.kc = None
                # nbclient leaves its exit-time cleanup registered when the kernel failed to start; the
                # kernel is already stopped, and in a long-lived worker these would pile up. The hook is
                # an nbclient internal: with the speed-ups off nbclient's own clean-up is left as it is.
                if speedups.enabled():
                    atexit.unregister(client._cleanup_kernel)
                elif client.km is None:
                    # That hook, left registered, asserts at exit that the client still has its manager,
                    # which nbclient's clean-up after the failed start has set to None.
                    client.km = km
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
        timings["execute"] = time.perf_counter() - t
    return nb


def _cell_label(nb, index: int, added: int, notebook: str) -> str:
    """The cell at ``index`` of the executed notebook as its author sees it in the notebook as written:
    its number (from 1, markdown cells counted, papermill's injected parameters cell not) and first line."""
    cell = nb.cells[index]
    if "injected-parameters" in cell.metadata.get("tags", []):
        return f"the parameters papermill injected into {notebook}"
    injected = next((i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", [])), None)
    number = index + 1 - (added if injected is not None and index > injected else 0)
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "(empty)")
    if len(first) > 80:
        first = first[:77] + "..."
    return f"cell {number} of {notebook} ({first})"


def _cell_of(exc: BaseException) -> str:
    return getattr(exc, "_cell", "") or "a cell"


def _stop_kernel(km) -> None:
    """Make sure the kernel process is gone, whatever happened (nbclient usually did this already)."""
    from jupyter_core.utils import run_sync

    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 - best effort; the process may already be gone
        pass


def _kernel_log_tail(staging: Path, lines: int = 3) -> str:
    try:
        text = (staging / "kernel.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[:400]


def _publish(job: ReportJob, staging: Path) -> None:
    """Move the three outputs into place, then write the stamp: the stamp is what says 'built'."""
    stamp_path(job).unlink(missing_ok=True)  # from here until the new stamp, the report counts as not built
    for path in job.outputs():
        os.replace(staging / path.name, path)  # atomic within one file system
    _write_stamp(job)
    (Path(job.out_dir) / f"{job.stem}.failed.ipynb").unlink(missing_ok=True)  # an old failure is history


def _failure(job: ReportJob, staging: Path, error: str, timings: dict[str, float]) -> JobResult:
    executed = staging / f"{job.stem}.ipynb"
    failed = Path(job.out_dir) / f"{job.stem}.failed.ipynb"
    if executed.exists():
        shutil.copyfile(executed, failed)
    else:
        failed.unlink(missing_ok=True)  # do not point at a stale notebook from an earlier failure
    return JobResult(job.name, "failed", 0.0, [], error=error,
                     failed_notebook=str(failed) if failed.exists() else "", timings=timings)


def warm_up(kernel_name: str = "python3") -> None:
    """Build a one-cell report in a temporary folder, so that this process has its kernel zygote started,
    its HTML templates and its PDF fonts loaded before the next real report.

    ``auditreport run --watch`` calls it while it waits for the first save, so that the first rebuild is
    as quick as the ones after it. Never raises (a failure only means the next report starts cold).
    """
    import nbformat

    with tempfile.TemporaryDirectory(prefix="auditreport-warm-up-") as tmp:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell('bundle_dir = ""', metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell("from IPython.display import HTML, display\n"
                                              "display(HTML('<p>warm</p>'))")]
        notebook = Path(tmp) / "warm-up.ipynb"
        nbformat.write(nb, str(notebook))
        run_job(ReportJob(kind="provider", audience="local", notebook=str(notebook), bundle_dir=tmp,
                          out_dir=str(Path(tmp) / "out"), stem="warm-up", title="warm-up", audit="", period="",
                          timeout=STARTUP_TIMEOUT, kernel_name=kernel_name))


def stamp_path(job: ReportJob) -> Path:
    return Path(job.out_dir) / f".{job.stem}.stamp.json"


def _write_stamp(job: ReportJob) -> None:
    """Record what made the outputs, so an unchanged report can be skipped next time."""
    stamp = {"inputs_fingerprint": job.inputs_fingerprint,
             "outputs": {p.name: _sha256(p) for p in job.outputs()}}
    atomic_write_text(stamp_path(job), json.dumps(stamp, indent=1))


def is_up_to_date(job: ReportJob) -> bool:
    """True only if the stamp names the job's current inputs and every output is the one stamped."""
    path = stamp_path(job)
    if not job.inputs_fingerprint or not path.exists() or not all(p.exists() for p in job.outputs()):
        return False
    try:
        stamp = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("inputs_fingerprint") != job.inputs_fingerprint:
        return False
    # Size and time are not enough: a truncated or edited output must be rebuilt.
    return all(stamp.get("outputs", {}).get(p.name) == _sha256(p) for p in job.outputs())


def remove_stale_staging(job: ReportJob) -> None:
    """Delete staging folders an interrupted run left behind for this job (they are never outputs)."""
    for path in Path(job.out_dir).glob(f".{job.stem}-*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_socket_folders(tmp: str | Path | None = None) -> int:
    """Delete kernel socket folders whose process is gone; returns how many.

    A job removes its own when it ends, but a run that is killed (SIGKILL, a power cut) never gets
    that far, and each report it was running leaves a folder in the temporary folder. Only this
    user's folders are touched, and only those whose process no longer exists.
    """
    removed = 0
    for path in Path(tmp or tempfile.gettempdir()).glob(f"{SOCKET_FOLDER_PREFIX}*-*"):
        try:
            pid = int(path.name[len(SOCKET_FOLDER_PREFIX):].split("-", 1)[0])
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != os.getuid() or _alive(pid):
                continue
        except (ValueError, OSError):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _short_error(exc: BaseException) -> str:
    # nbclient's CellExecutionError carries the cell's exception name and value.
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        return f"{ename}: {evalue}"[:500]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]
