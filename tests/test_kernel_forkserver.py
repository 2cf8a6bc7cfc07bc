"""The kernel fork server: real kernels forked from a real zygote, compared with ordinary starts.

Each report must still get its own fresh kernel process; failures (a kernel killed by a cell, a hanging
cell, a zygote that is broken or gone) must be handled as with ordinary starts; zygotes must not outlive
their worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from jupyter_client.manager import AsyncKernelManager
from test_batch import job, notebook

from auditreport import speedups
from auditreport.execution import kernel_forkserver as kf
from auditreport.execution.report_job import run_job

from conftest import skip_outside_ci

pytestmark = skip_outside_ci(not kf.supported(), "fork server needs Linux with pidfd_open")

# Prints who started the kernel, so a test can tell a forked kernel from an ordinary one.
WHO = "import json, os\nprint(json.dumps({'pid': os.getpid(), 'ppid': os.getppid()}))"


@pytest.fixture(autouse=True)
def _fresh_zygote(monkeypatch):
    """Each test starts with the speed-ups (so the fork server) on and no zygote, and leaves none behind."""
    monkeypatch.setenv(speedups.ENV_VAR, "1")
    monkeypatch.setattr(kf, "_start_failures", 0)
    kf.stop_zygote()
    yield
    kf.stop_zygote()


def outputs(j, cell: int) -> str:
    """The stdout a built report's cell printed (cell 0 is the parameters cell, 1 the injected one)."""
    nb = nbformat.read(str(Path(j.out_dir) / "local.ipynb"), as_version=4)
    return "".join(o.get("text", "") for o in nb.cells[cell].outputs if o.output_type == "stream")


def who(j, cell: int = 2) -> dict:
    return json.loads(outputs(j, cell).strip().splitlines()[-1])


def test_same_outputs_as_an_ordinary_start(tmp_path, monkeypatch):
    cells = (WHO,
             "import sys, auditreport.presentation.display as s, matplotlib, numpy as np\n"
             "print(sorted(k for k in s.__dict__ if not k.startswith('_'))[:5], matplotlib.get_backend())\n"
             "print(np.arange(10).sum(), sys.argv[1:2], [p.replace(os.getcwd(), 'CWD') for p in sys.path])\n"
             "print(sorted(k for k in os.environ if k.startswith('JPY_')), os.environ['JPY_PARENT_PID'] == str(os.getppid()))",
             "import IPython\nprint(type(IPython.get_ipython()).__name__, __name__)")
    nb = notebook(tmp_path, "nb", *cells)
    forked = job(tmp_path, nb, "FORKED")
    assert run_job(forked).status == "built"
    assert who(forked)["ppid"] == kf.zygote_pid()  # the kernel is the zygote's child

    monkeypatch.setenv(speedups.ENV_VAR, "0")  # stock jupyter_client start
    normal = job(tmp_path, nb, "NORMAL")
    assert run_job(normal).status == "built"
    assert who(normal)["ppid"] == os.getpid()  # an ordinary kernel is ours
    for cell in (3, 4):
        assert outputs(forked, cell) == outputs(normal, cell)
    assert "Agg" in outputs(forked, 3) and "ZMQInteractiveShell __main__" in outputs(forked, 4)


def test_every_report_gets_a_fresh_kernel_process(tmp_path):
    cell = ("import auditreport.presentation.display as s, numpy as np\n"
            "print(getattr(s, 'LEFT_BY_EARLIER_REPORT', None), np.random.random())\n"
            "s.LEFT_BY_EARLIER_REPORT = provider")
    nb = notebook(tmp_path, "nb", WHO, cell)
    first, second = job(tmp_path, nb, "P1"), job(tmp_path, nb, "P2")
    assert run_job(first).status == "built" and run_job(second).status == "built"
    a, b = who(first), who(second)
    assert a["ppid"] == b["ppid"] == kf.zygote_pid()
    assert a["pid"] != b["pid"]
    left_1, random_1 = outputs(first, 3).split()
    left_2, random_2 = outputs(second, 3).split()
    assert left_1 == left_2 == "None"  # a global set by report 1 is not visible in report 2
    assert random_1 != random_2  # nor is the zygote's random state shared
    assert not psutil.pid_exists(a["pid"]) or psutil.Process(a["pid"]).status() == psutil.STATUS_ZOMBIE


def test_kernel_killed_by_a_cell_is_a_dead_kernel(tmp_path):
    nb = notebook(tmp_path, "nb", "import os, signal\nos.write(2, b'last words in the log\\n')\n"
                  "os.kill(os.getpid(), signal.SIGKILL)")
    result = run_job(job(tmp_path, nb, "KILLED"))
    assert result.status == "failed" and result.attempts == 2  # retried once, as any dead kernel
    assert "kernel died" in result.error and "last words in the log" in result.error  # stderr -> kernel.log
    assert kf.zygote_pid() is not None  # the zygote itself is unharmed


def test_hanging_cell_times_out(tmp_path):
    hang = job(tmp_path, notebook(tmp_path, "hang", "import time\ntime.sleep(600)"), "HANG", timeout=2)
    started = time.perf_counter()
    result = run_job(hang)
    assert time.perf_counter() - started < 30
    assert result.status == "failed" and result.attempts == 1 and "timeout" in result.error.lower()


def test_interrupt_and_shutdown_reach_a_forked_kernel(start_kernel):
    from jupyter_core.utils import run_sync

    km = start_kernel(kf.kernel_manager)
    kc = km.blocking_client()
    try:
        assert km.provisioner.forked
        pid = km.provisioner.pid
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        msg_id = kc.execute("import time\ntime.sleep(60)")
        time.sleep(1)
        run_sync(km.interrupt_kernel)()
        reply = kc.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        assert run_sync(km.is_alive)()
    finally:
        kc.stop_channels()
        run_sync(km.shutdown_kernel)(now=True)
    assert not run_sync(km.is_alive)() and not km.has_kernel
    psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=5)
    assert not psutil.pid_exists(pid)


def test_switched_off_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(speedups.ENV_VAR, "0")
    assert type(kf.kernel_manager(kernel_name="python3")) is AsyncKernelManager
    j = job(tmp_path, notebook(tmp_path, "nb", WHO), "OFF")
    assert run_job(j).status == "built"
    assert who(j)["ppid"] == os.getpid() and kf.zygote_pid() is None


def test_broken_zygote_falls_back_to_an_ordinary_start(tmp_path, monkeypatch):
    nb = notebook(tmp_path, "nb", WHO)
    # A zygote that cannot start (its preload fails): ordinary start, report built.
    monkeypatch.setattr(kf, "PRELOAD", ("no_such_module_for_the_zygote",))
    broken = job(tmp_path, nb, "NOSTART")
    assert run_job(broken).status == "built"
    assert who(broken)["ppid"] == os.getpid() and kf.zygote_pid() is None
    monkeypatch.undo()
    monkeypatch.setattr(kf, "_start_failures", 0)

    # A zygote that dies: the report in flight starts normally, the next one gets a new zygote.
    first = job(tmp_path, nb, "FIRST")
    assert run_job(first).status == "built"
    dead = kf.zygote_pid()
    assert who(first)["ppid"] == dead
    os.kill(dead, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(dead)], timeout=5)
    monkeypatch.setattr(kf._ForkServer, "alive", lambda self: True)  # found dead only when asked to fork
    during = job(tmp_path, nb, "DURING")
    assert run_job(during).status == "built" and who(during)["ppid"] == os.getpid()
    monkeypatch.undo()
    after = job(tmp_path, nb, "AFTER")
    assert run_job(after).status == "built"
    assert who(after)["ppid"] == kf.zygote_pid() not in (None, dead)


def test_nonstandard_kernelspec_starts_normally(tmp_path, monkeypatch):
    spec = tmp_path / "jupyter" / "kernels" / "other"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel", "-f", "{connection_file}"],  # not ipykernel_launcher
        "display_name": "other", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    j = job(tmp_path, notebook(tmp_path, "nb", WHO), "OTHER")
    j.kernel_name = "other"
    assert run_job(j).status == "built"
    assert who(j)["ppid"] == os.getpid() and kf.zygote_pid() is None


WORKER = textwrap.dedent("""
    import json, os, sys, time
    from jupyter_core.utils import run_sync
    from auditreport.execution import kernel_forkserver as kf
    folder = sys.argv[1]
    km = kf.kernel_manager(kernel_name="python3", transport="ipc", ip=folder + "/k",
                           connection_file=folder + "/kernel.json")
    run_sync(km.start_kernel)(cwd=folder, stdout=open(folder + "/kernel.log", "wb"))
    print(json.dumps({"zygote": kf.zygote_pid(), "kernel": km.provisioner.pid}), flush=True)
    if sys.argv[2] == "exit":
        run_sync(km.shutdown_kernel)(now=True)
        sys.exit(0)
    time.sleep(600)
""")


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_zygote_does_not_outlive_its_worker(tmp_path, how):
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), how], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
        assert pids["zygote"] and pids["kernel"]
        if how == "sigkill":
            proc.kill()  # no atexit: the zygote must notice by itself
        proc.wait(timeout=30)
        family = [psutil.Process(p) for p in pids.values() if psutil.pid_exists(p)]
        gone, alive = psutil.wait_procs(family, timeout=10)  # a kernel notices its parent is gone within 1 s
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dask_worker_forks_kernels(tmp_path):
    import distributed

    from auditreport.execution.batch import run_batch

    nb = notebook(tmp_path, "nb", WHO)
    jobs = [job(tmp_path, nb, "D1"), job(tmp_path, nb, "D2")]
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            worker_pid = next(iter(client.run(os.getpid).values()))
        results = run_batch(jobs, scheduler=cluster.scheduler_address)
        assert [r.status for r in results] == ["built", "built"], [r.error for r in results]
        parents = {who(j)["ppid"] for j in jobs}
        assert len(parents) == 1 and worker_pid not in parents  # both from the worker's one zygote
        zygote = psutil.Process(parents.pop())
        assert zygote.ppid() == worker_pid
    psutil.wait_procs([zygote], timeout=10)
    assert not zygote.is_running() or zygote.status() == psutil.STATUS_ZOMBIE


def test_process_pool_workers_leave_no_zygote_behind(tmp_path):
    from auditreport.execution.batch import run_batch

    nb = notebook(tmp_path, "nb", WHO)
    jobs = [job(tmp_path, nb, f"W{i}") for i in range(3)]
    results = run_batch(jobs, workers=2)
    assert [r.status for r in results] == ["built"] * 3, [r.error for r in results]
    zygotes = {who(j)["ppid"] for j in jobs}
    assert os.getpid() not in zygotes  # every kernel came from a worker's zygote
    alive = [p for p in zygotes if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, "zygotes outlived the pool"  # the workers stopped and reaped them on their way out
