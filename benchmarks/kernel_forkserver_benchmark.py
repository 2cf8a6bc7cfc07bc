"""What does the kernel fork server save per report kernel?

    PYTHONPATH=src python benchmarks/kernel_forkserver_benchmark.py [-n 10]

For N kernels one after another, started the ordinary way (``python -m ipykernel_launcher``) and then
forked from a zygote, it measures what a report pays before its first real cell: start the kernel, wait
until it answers, ``import auditreport.presentation.display`` (numpy, pandas, matplotlib...), shut down.
It prints wall seconds per kernel and CPU seconds per kernel, and the ratios.

CPU counts every process involved: this process, the kernels (and, with the fork server, the zygote,
whose own preload is shown separately because it is paid once per worker, not per report). Ordinary
kernels are our children, so ``RUSAGE_CHILDREN`` has them once reaped; forked kernels are the zygote's
children, so their CPU is read from the zygote's ``cutime``/``cstime`` in /proc before it is stopped.
Nothing is asserted: machines differ and are noisy. Compare ratios within one run.
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

from jupyter_core.utils import run_sync

from auditreport.execution import kernel_forkserver as kf

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


def one_kernel(folder: Path) -> float:
    """Start a kernel as a report does, import the report display in it, shut it down; the wall seconds."""
    started = time.perf_counter()
    km = kf.kernel_manager(kernel_name="python3", transport="ipc", ip=str(folder / "k"),
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
    """N kernels in one mode ("normal" or "forkserver"); wall and CPU figures."""
    os.environ[kf.ENV_SWITCH] = "1" if mode == "forkserver" else "0"
    kf.stop_zygote()
    own0, kids0 = own_cpu(), children_cpu()
    walls = []
    zygote = None
    for i in range(n):
        with tempfile.TemporaryDirectory(prefix="akb-") as folder:
            walls.append(one_kernel(Path(folder)))
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
    parser.add_argument("-n", type=int, default=10, help="kernels per mode (default 10)")
    args = parser.parse_args()
    if not kf.enabled() and os.environ.get(kf.ENV_SWITCH, "1") != "0":
        sys.exit("the fork server is not available here (needs Linux with os.pidfd_open)")
    normal = run("normal", args.n)
    fork = run("forkserver", args.n)

    n = args.n
    steady = fork["walls"][1:] or fork["walls"]
    rows = [
        ("wall per kernel, mean (s)", statistics.mean(normal["walls"]), statistics.mean(fork["walls"])),
        ("wall per kernel, median (s)", statistics.median(normal["walls"]), statistics.median(fork["walls"])),
        ("wall per kernel after the first (s)", statistics.mean(normal["walls"][1:] or normal["walls"]),
         statistics.mean(steady)),
        ("kernel CPU per kernel (core-s)", normal["kernels"] / n, fork["kernels_via_zygote"] / n),
        ("all CPU per kernel, zygote included (core-s)", (normal["children"] + normal["own"]) / n,
         (fork["children"] + fork["own"]) / n),
    ]
    print(f"\n{n} kernels each: start, wait until ready, import auditreport.presentation.display, shut down")
    print(f"{'':46} {'normal':>8} {'fork srv':>8} {'ratio':>7}")
    for label, a, b in rows:
        print(f"{label:46} {a:8.3f} {b:8.3f} {a / b if b else float('nan'):6.2f}x")
    print(f"zygote's own CPU, paid once per worker (core-s): {fork['zygote_self']:.3f}")
    print(f"client-side CPU in this process per kernel (core-s): normal {normal['own'] / n:.3f}, "
          f"fork server {fork['own'] / n:.3f}")


if __name__ == "__main__":
    main()
