"""The ``auditreport`` command line.

Exit codes: 0 success; 1 unexpected error; 2 invalid audit definition or usage;
3 input data failed validation (nothing written); 4 some reports failed;
5 a public output failed the disclosure check; 6 ``reproduce`` found a difference
(or changed inputs).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from auditreport import __version__
from auditreport.errors import AuditReportError, BuildError

DEFAULT_REPORTS = Path("reports")


def _fail(exc: AuditReportError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # report user errors without a traceback
        try:
            return super().invoke(ctx)
        except AuditReportError as exc:
            _fail(exc)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="auditreport")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details.")
def main(verbose: bool) -> None:
    """Risk-adjusted, reproducible reports for national clinical audits."""
    # The console shows warnings (everything with -v); the root logger itself passes INFO so that a run's
    # log file (pipeline.run_log) records every report without the console repeating each one.
    console = logging.StreamHandler()
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=logging.INFO, handlers=[console],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # jupyter_client warns through traitlets that a finished kernel's zmq context could not be destroyed;
    # it is harmless and would otherwise interleave with the progress lines of every batch.
    logging.getLogger("traitlets").setLevel(logging.ERROR)


@main.command()
@click.argument("audit", type=click.Path(dir_okay=False, path_type=Path))
def validate(audit: Path) -> None:
    """Check an audit definition and its data without writing anything."""
    from auditreport.config import load_config
    from auditreport.data.measures import check_measures
    from auditreport.data.validation import load_validated

    config = load_config(audit)
    data = load_validated(config)
    measures = check_measures(config, data)
    # Every risk model must fit too, or 'run' would fail after 'valid'.
    from auditreport.analysis.national import check_risk_models

    check_risk_models(config, data)
    p = data.patients
    reasons = p.loc[p["exclusion"] != "", "exclusion"].value_counts()
    why = " (" + "; ".join(f"{reason}: {n:,}" for reason, n in reasons.items()) + ")" if len(reasons) else ""
    words = config.wording
    click.echo(f"{config.path.name}: valid. {data.n_submitted:,} {words.activity} from "
               f"{p['provider_code'].nunique()} {words.providers}; {int(reasons.sum()):,} to be excluded{why}.")
    for measure in config.measures:
        recs = measures[measure.id]
        national = recs.exclusions[recs.exclusions["unit_id"] == "national"]
        left_out = "; ".join(f"{r.reason}: {r.records:,}" for r in national.itertuples())
        click.echo(f"  {measure.id} ({measure.kind}): {len(recs.records):,} records analysed"
                   + (f"; left out: {left_out}" if left_out else ""))
    for warning in data.warnings:
        click.echo(f"  warning: {warning}")


@main.command()
@click.argument("audit", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reports", "reports_root", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_REPORTS,
              show_default=True, help="Folder that receives <audit>/<period>/.")
@click.option("-p", "--provider", "providers", multiple=True, help="Build only these providers (repeatable).")
@click.option("--audience", "audiences", multiple=True, type=click.Choice(["local", "public"]),
              help="Audiences to build (default both).")
@click.option("-j", "--jobs", type=int, default=None, help="Reports built at once (default: one per core).")
@click.option("--force", is_flag=True, help="Rebuild everything, even what is up to date.")
@click.option("--timeout", type=int, default=600, show_default=True,
              help="Seconds a notebook cell may run before its report fails.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run the reports on a Dask cluster (e.g. tcp://host:8786) instead of local processes.")
@click.option("--no-publish", "no_publish", is_flag=True,
              help="Build the reports only: leave the site, open data, manifest and disclosure check for the "
                   "next run without this option (a quick rebuild of one report while editing its notebook).")
@click.option("--watch", is_flag=True,
              help="With -p: build the chosen reports, then rebuild them each time the audit's notebooks or "
                   "definition change, until Ctrl-C (implies --no-publish; one report at a time in this process, "
                   "which keeps its kernel zygote, templates and fonts loaded between rebuilds).")
def run(audit: Path, reports_root: Path, providers: tuple[str, ...], audiences: tuple[str, ...],
        jobs: int | None, force: bool, timeout: int, scheduler: str | None, no_publish: bool, watch: bool) -> None:
    """Run an audit: national stage, every provider's reports, site and manifest.

    Reports already built from the same inputs are skipped, so rerunning after an
    interruption resumes where it stopped.
    """
    if watch:
        if not providers:
            raise click.UsageError("--watch rebuilds chosen reports: name them with -p/--provider")
        if scheduler or jobs:
            raise click.UsageError("--watch builds in this process: leave out --scheduler and -j")
        _watch(audit, reports_root, providers, audiences or ("local", "public"), force, timeout)
        return
    _build(audit, reports_root, providers, audiences or ("local", "public"), jobs, force, timeout, scheduler,
           publish=not no_publish)


def _build(audit: Path, reports_root: Path, providers, audiences, jobs, force: bool, timeout: int,
           scheduler: str | None = None, publish: bool = True) -> Path:
    from auditreport.pipeline import build
    from auditreport.publication.checker import DisclosureError

    click.echo(f"{audit}: building")
    try:
        with _Progress(sys.stderr.isatty()) as progress:
            summary = build(audit, reports_root, providers=providers or None, audiences=audiences, workers=jobs,
                            force=force, timeout=timeout, scheduler=scheduler, publish=publish,
                            on_result=progress.result, on_plan=progress.plan)
    except DisclosureError as exc:  # exit 5: say what was kept and where everything is, then the findings
        if exc.findings_file is not None:
            period = exc.findings_file.parent
            kept = (f"{period / 'site'} and {period / 'indicators.csv'} still hold the previous publication"
                    if (period / "site" / "index.html").is_file() else "nothing has been published yet")
            click.echo(f"{audit}: the reports were built but nothing was published: {kept}", err=True)
            click.echo(f"  every finding: {exc.findings_file}; the team index says so: {period / 'index.html'}",
                       err=True)
        raise
    _print_summary(audit, summary)
    if not publish:
        click.echo("  site, open data and manifest not updated (--no-publish): run again without it to publish")
    if summary.failed:
        raise BuildError(f"{len(summary.failed)} report(s) failed; see the table above and {summary.log_file}")
    return summary.period_dir


def _watch(audit: Path, reports_root: Path, providers, audiences, force: bool, timeout: int) -> None:
    """Build, then rebuild whenever a watched file changes; a failure is shown and watching goes on."""
    from auditreport.execution.report_job import warm_up
    from auditreport.pipeline import watched_files

    try:
        warm = False
        while True:
            files = watched_files(audit)
            before = _file_state(files)  # a save while building or warming up is a change to rebuild for
            try:
                _build(audit, reports_root, providers, audiences, 1, force, timeout, publish=False)
            except AuditReportError as exc:  # a failed report, an invalid definition: fix it and save again
                click.echo(f"error: {exc}", err=True)
            force = False  # --force rebuilds once, not at every change
            if not warm:  # if nothing was built, the first rebuild would start everything cold
                warm_up()
                warm = True
            click.echo(f"watching {', '.join(str(f) for f in files)} (Ctrl-C to stop)")
            while _file_state(files) == before:
                time.sleep(0.3)
            time.sleep(0.3)  # an editor may write a file in several steps
    except KeyboardInterrupt:
        click.echo("stopped watching")


def _file_state(files: list[Path]) -> list[tuple[int, int] | None]:
    """Each file's modification time and size (None if missing): any difference is a change."""
    out: list[tuple[int, int] | None] = []
    for f in files:
        try:
            st = f.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return out


class _Progress:
    """A rich progress bar in a terminal; one plain line per report otherwise (logs, CI)."""

    def __init__(self, terminal: bool):
        self.terminal = terminal
        self.bar = None
        self.task = None

    def __enter__(self) -> _Progress:
        if self.terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def plan(self, to_build: int, up_to_date: int) -> None:
        if self.bar is not None:
            self.task = self.bar.add_task("reports", total=to_build)
        click.echo(f"  {to_build} report(s) to build, {up_to_date} up to date")

    def result(self, result) -> None:
        if result.status == "skipped":
            return
        line = (f"  {'built' if result.status == 'built' else 'FAILED':<7} {result.name} ({result.seconds:.1f}s)"
                + (f": {result.error}" if result.error else ""))
        if self.bar is not None:
            if result.status == "failed":
                self.bar.console.print(line, markup=False, highlight=False)
            self.bar.advance(self.task)
        else:
            click.echo(line)


def _print_summary(audit: Path, summary) -> None:
    """The table a user reads at the end: what was built, skipped and failed (with why and where)."""
    counts = summary.counts()
    national = "up to date" if summary.national_skipped else f"built in {summary.national_seconds:.1f}s"
    click.echo(f"{audit}: national stage {national}; {summary.seconds:.1f}s in all")
    click.echo(f"  {'built':<22}{counts.get('built', 0):>6}")
    click.echo(f"  {'skipped (up to date)':<22}{counts.get('skipped', 0):>6}")
    click.echo(f"  {'failed':<22}{counts.get('failed', 0):>6}")
    for r in sorted(summary.failed, key=lambda r: r.name):
        click.echo(f"    {r.name}: {r.error}" + (f" (tried {r.attempts} times)" if r.attempts > 1 else ""))
        click.echo(f"      notebook: {r.failed_notebook or 'none (no cell ran)'}")
    click.echo(f"  log: {summary.log_file}")
    click.echo(f"  open {summary.period_dir / 'index.html'}")


@main.command()
@click.argument("audit", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the copies (default: notebooks/<audit id>/ beside the audit definition).")
def notebooks(audit: Path, out: Path | None) -> None:
    """Start an audit's own report notebooks: copy the default provider and national notebooks into its
    folder (never overwriting) and print the lines that make the audit definition use them."""
    import os

    from auditreport.resources import copy_notebooks

    audit = audit.resolve()
    audit_id, named = _audit_id_and_notebooks(audit)
    out = out if out is not None else audit.parent / "notebooks" / audit_id
    try:
        provider, national = copy_notebooks(out)
    except (FileExistsError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    def relative(path: Path) -> str:  # as the definition names it: relative to the YAML file's folder
        return Path(os.path.relpath(path.resolve(), audit.parent)).as_posix()

    click.echo(f"copied the default notebooks to {out}{os.sep}: {provider.name} (every provider's local and "
               f"public report) and {national.name} (the national report)")
    if named:
        click.echo(f"note: {audit.name} already names notebooks of its own ({', '.join(named)}); "
                   "these lines replace them")
    click.echo(f"\nAdd to {audit} to use them:\n\nnotebooks:\n  provider: {relative(provider)}\n"
               f"  national: {relative(national)}\n")
    click.echo("Then rebuild one provider's confidential report in seconds after each edit:\n"
               f"  auditreport run {audit} -p <provider code> --audience local --no-publish")


def _audit_id_and_notebooks(audit: Path) -> tuple[str, list[str]]:
    """The definition's ``audit.id`` and the notebooks it names, read without validating the rest: the
    command must work when the definition names notebooks not yet copied (``validate`` checks the rest)."""
    import yaml

    from auditreport.errors import ConfigError

    try:
        raw = yaml.safe_load(audit.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{audit}: cannot be read as YAML: {exc}") from None
    section = raw.get("audit") if isinstance(raw, dict) else None
    audit_id = section.get("id") if isinstance(section, dict) else None
    if not isinstance(audit_id, str) or not audit_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{audit}: key 'audit.id' must be letters, digits, '-' or '_' (it names the notebooks' "
                          f"folder), got {audit_id!r}; auditreport validate {audit.name} checks the whole definition")
    named = raw.get("notebooks")
    return audit_id, [f"{k}: {v}" for k, v in named.items()] if isinstance(named, dict) else []


@main.command()
@click.argument("period_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
def reproduce(period_dir: Path) -> None:
    """Rerun a built period's national stage from its recorded inputs and check every figure and report."""
    from auditreport.reproduce import ReproductionError
    from auditreport.reproduce import reproduce as run_reproduce

    result = run_reproduce(period_dir)
    for note in result.notes:
        click.echo(f"  note: {note}")
    if not result.identical:
        raise ReproductionError(result.summary())
    click.echo(result.summary())


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/synthetic"),
              show_default=True)
@click.option("--records", type=int, default=50_000, show_default=True, help="Records over the whole period.")
@click.option("--providers", type=int, default=120, show_default=True)
@click.option("--consultants", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=20241, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
def synth(out: Path, records: int, providers: int, consultants: int, seed: int, fmt: str) -> None:
    """Generate the synthetic national audit (data, providers and the truth)."""
    from auditreport.data.synthetic import SyntheticSpec, write

    started = time.perf_counter()
    paths = write(SyntheticSpec(records=records, providers=providers, consultants=consultants, seed=seed), out, fmt)
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())} in {time.perf_counter() - started:.1f}s")


@main.command()
@click.option("--reports", "reports_root", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_REPORTS,
              show_default=True)
@click.option("-j", "--jobs", type=int, default=None)
@click.option("--force", is_flag=True, help="Rewrite the demo's data and rebuild every report.")
@click.option("--small", is_flag=True,
              help="Only a small synthetic audit of three providers (seven reports, a minute or so): a quick "
                   "check that an installation builds every kind of output.")
def demo(reports_root: Path, jobs: int | None, force: bool, small: bool) -> None:
    """Build the demo in this folder: the synthetic audit and the NCCTG lung audit, every report and site.

    Writes the demo's audit definitions to params/ (keeping any already there), their data to data/ and the
    reports to reports/.
    """
    from auditreport.data.examples import write_demo

    started = time.perf_counter()
    for audit in write_demo(Path(), small=small, force=force):
        _build(audit, reports_root, (), ("local", "public"), jobs, force, 600)
    _write_top_index(reports_root)
    click.echo(f"demo built in {time.perf_counter() - started:.0f}s; open {reports_root.resolve() / 'index.html'}")


@main.command("system-deps")
def system_deps() -> None:
    """Install the system libraries the reports need (Pango and fonts for the PDFs; chromium for the site's
    browser tests) from Debian's packages, where missing; needs root or sudo to install."""
    import subprocess

    from auditreport.resources import system_deps_script

    sys.exit(subprocess.run(["bash", str(system_deps_script())], check=False).returncode)


@main.command("fetch-example")
@click.argument("name", type=click.Choice(["lung"]))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for records.csv and providers.csv (default data/<name>).")
def fetch_example(name: str, out: Path | None) -> None:
    """Write a real example data set (from files installed with lifelines; no network) as CSV."""
    _write_example(name, out or Path("data") / name)


def _write_example(name: str, out: Path) -> None:
    from auditreport.data.examples import write_example

    paths = write_example(name, out)
    click.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


def _write_top_index(reports_root: Path) -> None:
    from auditreport.publication.index import write_top_index

    write_top_index(reports_root)


#: ``run_aggregate``'s parameters -> the options of ``auditreport aggregate`` that set them.
AGGREGATE_OPTIONS = {"unit_col": "--unit", "observed_col": "--observed", "expected_col": "--expected",
                     "denominator_col": "--denominator", "mean_col": "--mean", "se_col": "--se",
                     "sd_col": "--sd", "n_col": "--n", "kind": "--kind", "direction": "--direction",
                     "target": "--target", "overdispersion": "--overdispersion", "method": "--method",
                     "flag_method": "--flag-method"}


@main.command()
@click.argument("input_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--unit", "unit_col", required=True, help="Column naming the unit (read as text).")
@click.option("--kind", type=click.Choice(["proportion", "ratio", "mean"]), default=None,
              help="What each row gives; default: the kind whose column is given (--denominator, --expected, --mean).")
@click.option("--observed", "observed_col", default=None, help="Column of observed events (proportion, ratio).")
@click.option("--expected", "expected_col", default=None, help="Column of expected events (ratio).")
@click.option("--denominator", "denominator_col", default=None, help="Column of denominators (proportion).")
@click.option("--mean", "mean_col", default=None, help="Column of each unit's mean (mean).")
@click.option("--se", "se_col", default=None, help="Column of the mean's standard error (mean).")
@click.option("--sd", "sd_col", default=None,
              help="Column of the standard deviation of each unit's records (mean; with --n).")
@click.option("--n", "n_col", default=None, help="Column of each unit's number of records (mean).")
@click.option("--direction", type=click.Choice(["lower_is_better", "higher_is_better"]), default=None,
              help="Which side is worse: the status column then reads 'worse' or 'better than expected'.")
@click.option("--target", type=float, default=None,
              help="A fixed standard: O/E for ratios (default 1), a fraction for proportions, a value for means "
                   "(default: the pooled rate or mean).")
@click.option("--overdispersion", type=click.Choice(["none", "multiplicative", "additive", "shmi"]), default="none",
              show_default=True)
@click.option("--method", default=None, help="Limit method: exact or phe (ratios); wilson or exact (proportions).")
@click.option("--flag-method", "flag_method", type=click.Choice(["discrete", "phe", "limits"]), default="discrete",
              show_default=True,
              help="discrete: the tail under the target and the funnel limits must agree (as the national stage); "
                   "phe: the unit's interval against the target (PHEindicatormethods); limits: the funnel limits "
                   "alone (FunnelPlotR).")
@click.option("--plot", "plot_prefix", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a funnel plot to PREFIX.png and PREFIX.svg.")
def aggregate(input_csv: Path, output: Path, unit_col: str, kind: str | None, observed_col: str | None,
              expected_col: str | None, denominator_col: str | None, mean_col: str | None, se_col: str | None,
              sd_col: str | None, n_col: str | None, direction: str | None, target: float | None,
              overdispersion: str, method: str | None, flag_method: str, plot_prefix: Path | None) -> None:
    """Intervals, funnel limits and HQIP flags from a table with one row per unit.

    Exit 2 for a bad option (named), 3 for bad values in the table (file, column and rows named).
    """
    from auditreport.aggregate import AggregateInputError, AggregateOptionError, run_aggregate

    try:
        result = run_aggregate(input_csv, output, unit_col=unit_col, kind=kind, observed_col=observed_col,
                               expected_col=expected_col, denominator_col=denominator_col, mean_col=mean_col,
                               se_col=se_col, sd_col=sd_col, n_col=n_col, direction=direction, target=target,
                               overdispersion=overdispersion, method=method, flag_method=flag_method,
                               plot_prefix=plot_prefix)
    except AggregateOptionError as exc:
        hint = " / ".join(f"'{AGGREGATE_OPTIONS[p]}'" for p in exc.parameters)
        raise click.BadParameter(str(exc), param_hint=hint) from exc
    except AggregateInputError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(3)
    flags = result["flag"].value_counts().to_dict()
    click.echo(f"wrote {output} ({len(result)} units; flags: {flags})")


if __name__ == "__main__":
    main()
