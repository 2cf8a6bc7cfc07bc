"""How fast is the batch engine, and how does it compare with the straightforward way?

    PYTHONPATH=src python benchmarks/batch_benchmark.py [--providers 120] [--records 50000] [--jobs N]
        [--naive-reports 10] [--switch-reports 4] [--switch-rounds 2] [--national-records 1000000]
        [--skip-naive] [--skip-national] [--workdir DIR]

It generates a synthetic audit, then in one run (so machine noise hits both sides alike):

1. builds everything with the engine from scratch (national stage, every provider x audience, site):
   wall time, reports per minute, core-seconds per report (user+sys of this process and every
   process it waited for, kernels included), and where a report's time goes;
2. reruns with nothing changed (everything should be skipped);
3. builds a few provider reports with the speed-ups that patch third-party internals switched off
   (:mod:`auditreport.speedups`: stock papermill, nbclient, jupyter_client and WeasyPrint) beside the
   same reports with them on, one at a time in this process, alternating, and prints both
   (``--switch-reports``, ``--switch-rounds``);
4. times a few reports done the straightforward way, one at a time: papermill's command line, then
   ``jupyter nbconvert --to html --no-input``, then the ``weasyprint`` command; the per-report time is
   extrapolated to the whole audit (and the national stage added) to give the ratio;
5. runs the national stage alone on a larger audit in a child process: wall time and peak memory.

Nothing here is asserted: machines differ and are noisy. Compare ratios within one run.
Results and their history: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def cpu_seconds() -> float:
    """User+sys seconds of this process and of every finished process it (transitively) waited for."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def machine_busy_seconds() -> float | None:
    """Core-seconds the whole machine has spent busy since boot (Linux /proc/stat), or None elsewhere.

    Unlike rusage this counts every process, however it was started or reaped; on a machine doing
    nothing else, busy/(wall x cores) says how well the run kept the cores busy.
    """
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def make_audit(folder: Path, providers: int, records: int) -> Path:
    """Synthetic data plus an audit definition pointing at it (as the tests do)."""
    from auditreport.data.synthetic import SyntheticSpec, definition_data, write

    consultants = max(providers * 4, 10)
    paths = write(SyntheticSpec(records=records, providers=providers, consultants=consultants), folder / "data")
    definition = yaml.safe_load((REPO / "params" / "synthetic.yaml").read_text())
    definition["data"].update(definition_data(paths))
    out = folder / "audit.yaml"
    out.write_text(yaml.safe_dump(definition, sort_keys=False))
    return out


def probe_kernel(n: int = 3) -> dict[str, float]:
    """Median seconds to start a kernel and import the report code in it: stock (speed-ups off) and as the
    engine does it with the speed-ups on (forked from a zygote; the first fork, which pays for the zygote,
    is left out)."""
    from kernel_forkserver_benchmark import MANAGERS, one_kernel

    from auditreport.execution import kernel_forkserver as kf

    medians = {}
    try:
        for mode in ("stock", "forked" if kf.supported() else "no waits"):
            kf.stop_zygote()
            walls = []
            for _ in range(n + (mode == "forked")):
                with tempfile.TemporaryDirectory(prefix="akb-") as folder:
                    walls.append(one_kernel(Path(folder), MANAGERS[mode]))
            medians["stock" if mode == "stock" else "speedups"] = statistics.median(walls[1:] if mode == "forked"
                                                                                    else walls)
    finally:
        kf.stop_zygote()
    return medians


def switch_comparison(audit: Path, reports: Path, sample_size: int, rounds: int) -> dict:
    """The same provider reports built with the speed-ups off and on, report by report, alternating.

    One worker (this process) builds each report of the sample with the switch off, then on, ``rounds``
    times, after one untimed report each way (the first pays for imports, fonts and the zygote, which a
    worker pays once). Per report: wall seconds, core-seconds (this process, its reaped children, and the
    zygote with the kernels it forked, read from /proc) and the seconds of each phase.
    """
    import dataclasses

    from kernel_forkserver_benchmark import proc_cpu

    from auditreport import speedups
    from auditreport.config import load_config
    from auditreport.execution import kernel_forkserver as kf
    from auditreport.execution.report_job import run_job
    from auditreport.pipeline import period_dir, report_jobs

    def cpu_now() -> float:
        zygote = kf.zygote_pid()
        return cpu_seconds() + (sum(proc_cpu(zygote)) if zygote else 0.0)

    config = load_config(audit)
    sample = [j for j in report_jobs(config, period_dir(config, reports)) if j.kind == "provider"][:sample_size]
    figures: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
    failed = []
    for index, job in enumerate([sample[0], *sample * rounds]):
        for side in ("off", "on"):
            copy = dataclasses.replace(job, out_dir=str(reports.parent / "switch" / side / f"{index}-{job.provider}"))
            with speedups.switched(side == "on"):
                cpu, t = cpu_now(), time.perf_counter()
                result = run_job(copy)
                wall, cpu = time.perf_counter() - t, cpu_now() - cpu
            if result.status != "built":
                failed.append((side, result.name, result.error))
            if index == 0:
                continue  # the warm-up
            record = figures[side]
            for key, value in {"wall": wall, "cpu": cpu, **result.timings}.items():
                record.setdefault(key, []).append(value)
    kf.stop_zygote()
    return {"n": len(sample) * rounds, "failed": failed,
            "figures": {side: {k: statistics.mean(v) for k, v in f.items()} for side, f in figures.items()}}


def engine(audit: Path, reports: Path, jobs: int | None, force: bool) -> dict:
    from auditreport.pipeline import build

    cpu, busy, t = cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    summary = build(audit, reports, workers=jobs, force=force)
    wall = time.perf_counter() - t
    after = machine_busy_seconds()
    return {"summary": summary, "wall": wall, "cpu": cpu_seconds() - cpu,
            "busy": None if busy is None or after is None else after - busy}


def naive(jobs_sample, work: Path) -> tuple[float, float, dict[str, float]]:
    """The straightforward loop, one report at a time, a new interpreter per step."""
    phases = {"papermill": 0.0, "nbconvert": 0.0, "weasyprint": 0.0}
    work.mkdir(parents=True, exist_ok=True)  # papermill does not create its output folder
    cpu, started = cpu_seconds(), time.perf_counter()
    for i, job in enumerate(jobs_sample):
        nb = work / f"r{i}.ipynb"
        steps = {
            "papermill": [str(BIN / "papermill"), job.notebook, str(nb), "-k", "python3", "--no-progress-bar"]
            + [a for k, v in job.parameters.items() for a in ("-p", k, v)],
            "nbconvert": [str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", str(nb)],
            "weasyprint": [str(BIN / "weasyprint"), str(nb.with_suffix(".html")), str(nb.with_suffix(".pdf"))],
        }
        for phase, cmd in steps.items():
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            phases[phase] += time.perf_counter() - t
    n = len(jobs_sample)
    return (time.perf_counter() - started) / n, (cpu_seconds() - cpu) / n, {k: v / n for k, v in phases.items()}


def make_large_audit(folder: Path, providers: int, records: int, chunk: int = 100_000) -> Path:
    """A large audit made by tiling a 100,000-record synthetic audit with fresh patient ids.

    The synthetic generator cannot make 1,000,000 records in one go today (a few late-death times
    overflow pandas' nanosecond dates, year > 2262); for timing the national stage the repeated case
    mix is immaterial: it does the same work on the same number of rows.
    """
    import pandas as pd

    audit = make_audit(folder, providers, min(records, chunk))
    if records <= chunk:
        return audit
    path = folder / "data" / "records.parquet"
    base = pd.read_parquet(path)
    big = pd.concat([base] * -(-records // len(base)), ignore_index=True).iloc[:records]
    big["patient_id"] = [f"P{i:09d}" for i in range(len(big))]
    big.to_parquet(path, index=False)
    return audit


NATIONAL_CHILD = """
import json, resource, sys, time
from auditreport.config import load_config
from auditreport.pipeline import national_stage, period_dir
config = load_config(sys.argv[1])
t = time.perf_counter()
national_stage(config, period_dir(config, sys.argv[2]), force=True)
wall = time.perf_counter() - t
print(json.dumps({"wall": wall, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def national_alone(folder: Path, records: int, providers: int) -> dict:
    import json

    t = time.perf_counter()
    audit = make_large_audit(folder, providers, records)
    generated = time.perf_counter() - t
    out = subprocess.run([sys.executable, "-c", NATIONAL_CHILD, str(audit), str(folder / "reports")],
                         check=True, capture_output=True, text=True, env=os.environ)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["generated"] = generated
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--providers", type=int, default=120)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--jobs", type=int, default=None, help="engine workers (default: one per core)")
    parser.add_argument("--naive-reports", type=int, default=10, help="reports timed the straightforward way")
    parser.add_argument("--national-records", type=int, default=1_000_000)
    parser.add_argument("--switch-reports", type=int, default=4,
                        help="provider reports built with the speed-ups off beside on (0: skip)")
    parser.add_argument("--switch-rounds", type=int, default=2, help="off/on rounds over those reports")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-national", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="keep everything here (default: a temp dir)")
    parser.add_argument("--skip-engine", action="store_true",
                        help="reuse the engine build already in --workdir; give its figures with --engine-wall, "
                             "--engine-cpu-per-report and --national-seconds to get the ratio")
    parser.add_argument("--engine-wall", type=float, default=None)
    parser.add_argument("--engine-cpu-per-report", type=float, default=None)
    parser.add_argument("--national-seconds", type=float, default=None)
    args = parser.parse_args()

    from auditreport.execution.batch import available_cores, default_jobs

    work = args.workdir or Path(tempfile.mkdtemp(prefix="auditreport-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cores = available_cores()
    print(f"auditreport batch benchmark: {args.providers} providers, {args.records:,} records, "
          f"{args.jobs or default_jobs()} workers on {cores} cores; work folder {work}")

    t = time.perf_counter()
    if args.skip_engine and (work / "audit" / "audit.yaml").exists():
        audit = work / "audit" / "audit.yaml"
    else:
        audit = make_audit(work / "audit", args.providers, args.records)
    print(f"synthetic data generated in {time.perf_counter() - t:.1f}s")

    from auditreport import speedups

    probe = probe_kernel()
    print(f"a report's kernel, start + import of the report code (median of 3): {probe['stock']:.2f}s stock "
          f"(speed-ups off), {probe['speedups']:.2f}s with the speed-ups (forked from the worker's zygote)")
    print(f"engine runs below with the speed-ups {'on' if speedups.enabled() else 'OFF'} ({speedups.ENV_VAR})")

    reports = work / "reports"
    if args.skip_engine:
        return naive_and_national(args, audit, reports, n=2 * args.providers + 1, engine_wall=args.engine_wall,
                                  engine_cpu=args.engine_cpu_per_report, national_seconds=args.national_seconds)
    shutil.rmtree(reports, ignore_errors=True)
    first = engine(audit, reports, args.jobs, force=True)
    s = first["summary"]
    n = len(s.results)
    built = s.counts().get("built", 0)
    print(f"\nENGINE, from scratch: {n} reports ({s.counts()}) + national stage {s.national_seconds:.1f}s + site "
          f"and disclosure check {s.publish_seconds:.1f}s (these two on one core)")
    print(f"  wall {first['wall']:.1f}s ({first['wall'] / 60:.2f} min); {built / first['wall'] * 60:.1f} reports/min;"
          f" {first['cpu'] / max(built, 1):.2f} core-seconds per report (whole run's CPU / reports)")
    if first["busy"] is not None:
        print(f"  machine busy {first['busy']:.0f} core-s ({first['busy'] / max(built, 1):.2f} a report), "
              f"{first['busy'] / (first['wall'] * cores):.0%} of {cores} cores over the run")
    phases = {}
    for r in s.results:
        for k, v in r.timings.items():
            phases.setdefault(k, []).append(v)
    per = {k: statistics.mean(v) for k, v in phases.items()}
    print("  per report (mean, in a worker): " + ", ".join(f"{k} {v:.2f}s" for k, v in per.items())
          + f"; execute = kernel start and imports ~{probe['speedups' if speedups.enabled() else 'stock']:.2f}s"
          " + cells")
    # Reports that get slower as the batch goes on mean the workers are accumulating something.
    done = [r.seconds for r in s.results if r.status == "built"]
    if len(done) >= 6:
        third = len(done) // 3
        print(f"  seconds a report, first third of the batch {statistics.mean(done[:third]):.2f}s, "
              f"last third {statistics.mean(done[-third:]):.2f}s")
    if s.failed:
        print(f"  FAILED: {[(r.name, r.error) for r in s.failed][:5]}")

    again = engine(audit, reports, args.jobs, force=False)
    print(f"\nENGINE, rerun with nothing changed: {again['summary'].counts()} in {again['wall']:.2f}s")

    if args.switch_reports:
        c = switch_comparison(audit, reports, args.switch_reports, args.switch_rounds)
        off, on = c["figures"]["off"], c["figures"]["on"]
        print(f"\nSPEED-UPS OFF (stock papermill, nbclient, jupyter_client, WeasyPrint) beside ON: {c['n']} provider "
              "reports each way, one worker, one report at a time, alternating (after one untimed report each way)")
        print(f"{'per report':32} {'off':>8} {'on':>8} {'off/on':>7}")
        for key, label in (("wall", "wall, s"), ("cpu", "core-seconds"), ("execute", "execute, s"),
                           ("html", "html, s"), ("pdf", "pdf, s")):
            if key in off and key in on:
                print(f"{label:32} {off[key]:8.2f} {on[key]:8.2f} {off[key] / on[key] if on[key] else float('nan'):6.2f}x")
        if c["failed"]:
            print(f"  FAILED: {c['failed'][:5]}")

    naive_and_national(args, audit, reports, n, engine_wall=first["wall"], engine_cpu=first["cpu"] / max(built, 1),
                       national_seconds=s.national_seconds)


def naive_and_national(args, audit: Path, reports: Path, n: int, engine_wall: float | None,
                       engine_cpu: float | None, national_seconds: float | None) -> None:
    work = reports.parent
    if not args.skip_naive:
        from auditreport.config import load_config
        from auditreport.pipeline import period_dir, report_jobs

        config = load_config(audit)
        jobs = [j for j in report_jobs(config, period_dir(config, reports)) if j.kind == "provider"]
        sample = jobs[: args.naive_reports]
        wall_per, cpu_per, naive_phases = naive(sample, work / "naive")
        total = (national_seconds or 0.0) + wall_per * n
        print(f"\nSTRAIGHTFORWARD loop (papermill CLI, jupyter nbconvert, weasyprint CLI; one at a time): timed "
              f"{len(sample)} reports, extrapolated to {n}")
        print(f"  {wall_per:.2f}s and {cpu_per:.2f} core-seconds per report ("
              + ", ".join(f"{k} {v:.2f}s" for k, v in naive_phases.items()) + ")")
        print(f"  estimated total {total:.0f}s ({total / 60:.1f} min) = national stage {national_seconds or 0:.1f}s + "
              f"{n} x {wall_per:.2f}s")
        if engine_wall and engine_cpu:
            print(f"  ENGINE IS {total / engine_wall:.2f}x FASTER (wall); {cpu_per / engine_cpu:.2f}x less CPU "
                  "per report")

    if not args.skip_national:
        r = national_alone(work / "national", args.national_records, args.providers)
        print(f"\nNATIONAL STAGE alone, {args.national_records:,} records (data generated in {r['generated']:.0f}s): "
              f"wall {r['wall']:.1f}s, peak memory {r['peak_rss_kib'] / 1024 ** 2:.2f} GiB")

    print("\ntargets (2 cores): all reports < 3 min; >= 2.5x the straightforward loop; rerun < 5 s; "
          "national 1e6 < 60 s and < 4 GiB")


if __name__ == "__main__":
    main()
