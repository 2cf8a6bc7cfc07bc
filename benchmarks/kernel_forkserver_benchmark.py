"""What do the kernel speed-ups save per report kernel?

    PYTHONPATH=src python benchmarks/kernel_forkserver_benchmark.py [-n 10]

For N kernels one after another in each of three ways it measures what a report pays before its first
real cell: start the kernel, wait until it answers, ``import auditreport.presentation.display`` (numpy,
pandas, matplotlib...), shut down. The three ways:

* ``stock``: the speed-ups off (:mod:`auditreport.speedups`): jupyter_client's ``AsyncKernelManager`` and
  client, a new ``python -m ipykernel_launcher`` per kernel;
* ``no waits``: :class:`~auditreport.execution.kernel_manager.ReportKernelManager` (no fixed idle waits),
  kernels still started the ordinary way;
* ``forked``: the speed-ups on, as a report gets them on Linux: kernels forked from a pre-loaded zygote
  by :class:`~auditreport.execution.kernel_forkserver.ForkServerKernelManager`.

It prints wall seconds per kernel and CPU seconds per kernel, and the ratios to ``stock``.

CPU counts every process involved: this process, the kernels (and, with the fork server, the zygote,
whose own preload is shown separately because it is paid once per worker, not per report). Ordinary
kernels are our children, so ``RUSAGE_CHILDREN`` has them once reaped; forked kernels are the zygote's
children, so their CPU is read from the zygote's ``cutime``/``cstime`` in /proc before it is stopped.
Nothing is asserted: machines differ and are noisy. Compare ratios within one run (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from auditreport.execution import kernel_forkserver as kf
from auditreport.execution.kernel_manager import ReportKernelManager

#: How each way makes a report's kernel manager.
MANAGERS = {"stock": AsyncKernelManager, "no waits": ReportKernelManager, "forked": kf.ForkServerKernelManager}

TICK = os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a live process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) / TICK for f in fields[11:15])
    return utime + stime, cutime + cstime


def one_kernel(folder: Path, manager: type = AsyncKernelManager) -> float:
    """Start a kernel as a report does with ``manager``, import the report display in it, shut it down;
    the wall seconds."""
    started = time.perf_counter()
    km = manager(kernel_name="python3", transport="ipc", ip=str(folder / "k"),
                 connection_file=str(folder / "kernel.json"))

    async def use_kernel() -> None:
        with open(folder / "kernel.log", "wb") as log:
            await km.start_kernel(cwd=str(folder), stdout=log, stderr=log)
        kc = km.client()  # the client nbclient gets for a report
        try:
            kc.start_channels()
            await kc.wait_for_ready(timeout=120)
            reply = await kc.execute_interactive("import auditreport.presentation.display", timeout=120,
                                                 output_hook=lambda msg: None)
            assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    run_sync(use_kernel)()
    return time.perf_counter() - started


def run(mode: str, n: int) -> dict:
    """N kernels in one of the MANAGERS' ways; wall and CPU figures."""
    kf.stop_zygote()
    own0, kids0 = own_cpu(), children_cpu()
    walls = []
    zygote = None
    for i in range(n):
        with tempfile.TemporaryDirectory(prefix="akb-") as folder:
            walls.append(one_kernel(Path(folder), MANAGERS[mode]))
        zygote = zygote or kf.zygote_pid()
        print(f"  {mode} kernel {i + 1}: {walls[-1]:.2f} s", file=sys.stderr)
    zygote_self = kernels_via_zygote = 0.0
    if zygote:
        zygote_self, kernels_via_zygote = proc_cpu(zygote)
    kf.stop_zygote()  # reaped: from here its CPU (and its children's) is in RUSAGE_CHILDREN
    kids = children_cpu() - kids0
    return {"walls": walls, "own": own_cpu() - own0, "children": kids, "zygote_self": zygote_self,
            "kernels": kids - zygote_self if zygote else kids, "kernels_via_zygote": kernels_via_zygote}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10, help="kernels per way (default 10)")
    args = parser.parse_args()
    modes = list(MANAGERS) if kf.supported() else ["stock", "no waits"]
    if not kf.supported():
        print("the fork server is not available here (needs Linux with os.pidfd_open): no 'forked' column",
              file=sys.stderr)
    results = {mode: run(mode, args.n) for mode in modes}

    n = args.n

    def after_first(walls: list[float]) -> float:
        return statistics.mean(walls[1:] or walls)

    rows = [
        ("wall per kernel, mean (s)", lambda r: statistics.mean(r["walls"])),
        ("wall per kernel, median (s)", lambda r: statistics.median(r["walls"])),
        ("wall per kernel after the first (s)", lambda r: after_first(r["walls"])),
        ("kernel CPU per kernel (core-s)", lambda r: (r["kernels_via_zygote"] if r["zygote_self"] else r["kernels"]) / n),
        ("all CPU per kernel, zygote included (core-s)", lambda r: (r["children"] + r["own"]) / n),
        ("client-side CPU in this process (core-s)", lambda r: r["own"] / n),
    ]
    print(f"\n{n} kernels each: start, wait until ready, import auditreport.presentation.display, shut down")
    print(f"{'':46}" + "".join(f" {mode:>9}" for mode in modes) + "".join(f" {m + '/stock':>15}" for m in modes[1:]))
    for label, figure in rows:
        values = [figure(results[mode]) for mode in modes]
        print(f"{label:46}" + "".join(f" {v:9.3f}" for v in values)
              + "".join(f" {v / values[0] if values[0] else float('nan'):14.2f}x" for v in values[1:]))
    if "forked" in results:
        print(f"zygote's own CPU, paid once per worker (core-s): {results['forked']['zygote_self']:.3f}")

if __name__ == "__main__":
    main()
