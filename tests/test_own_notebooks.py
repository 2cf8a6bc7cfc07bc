"""An audit's own report notebooks: started with ``auditreport notebooks``, used by the pipeline in place of
the installed ones, rebuilt alone when edited, and a cell of theirs that raises named in the failure.

The kernel tests run real kernels (as ``tests/test_batch.py`` does); the end-to-end one builds a small audit.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from auditreport.cli import main
from auditreport.config import load_config
from auditreport.data.synthetic import SyntheticSpec
from auditreport.execution.report_job import ReportJob, run_job
from auditreport.resources import REPORT_NOTEBOOKS, notebook_dir

from conftest import make_audit

PARAMS = 'bundle_dir = ""\naudit = ""\nperiod = ""\nprovider = ""\naudience = "local"'
SPEC = SyntheticSpec(records=1500, providers=3, consultants=9, outliers_high=0, outliers_low=0, seed=3)


def _notebook(path: Path, *cells: nbformat.NotebookNode) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]}), *cells]
    nbformat.write(nb, str(path))
    return path


def _job(folder: Path, nb: Path, timeout: int = 60) -> ReportJob:
    job = ReportJob(kind="provider", audience="local", notebook=str(nb), bundle_dir=str(folder),
                    out_dir=str(folder / "out"), stem="local", title="Test", audit="test", period="p",
                    provider="P1", timeout=timeout)
    job.inputs_fingerprint = job.fingerprint("base")
    return job


def test_a_raising_cell_is_named_by_its_number_and_first_line(tmp_path):
    """Cells are numbered from 1 as in the notebook written (markdown cells counted, papermill's injected
    parameters cell not), so the author finds the cell that raised; the exception follows."""
    nb = _notebook(tmp_path / "mine.ipynb", nbformat.v4.new_markdown_cell("# My report"),
                   nbformat.v4.new_code_cell("x = 1"),
                   nbformat.v4.new_code_cell("\n# the check of my own\nif x == 1:\n    raise KeyError('mortality')"))
    result = run_job(_job(tmp_path, nb))
    assert result.status == "failed" and result.attempts == 1
    assert result.error == "cell 4 of mine.ipynb (# the check of my own): KeyError: 'mortality'"
    executed = nbformat.read(result.failed_notebook, as_version=4)
    assert executed.cells[4].outputs[0]["ename"] == "KeyError"  # the injected cell makes it the fifth there


def test_a_cell_that_times_out_is_named(tmp_path):
    long_line = "import time; time.sleep(600)  # " + "x" * 100
    nb = _notebook(tmp_path / "slow.ipynb", nbformat.v4.new_code_cell(long_line))
    result = run_job(_job(tmp_path, nb, timeout=3))
    assert result.status == "failed" and result.attempts == 1
    assert result.error.startswith(f"cell 2 of slow.ipynb ({long_line[:77]}...): "), result.error
    assert "timed out" in result.error.lower(), result.error


def _yaml_lines(output: str) -> str:
    """The ``notebooks:`` lines the command prints, as they are to be added to the definition."""
    match = re.search(r"^notebooks:\n(?:  .+\n)+", output, re.M)
    assert match, output
    return match.group(0)


def test_notebooks_command_copies_the_defaults_and_never_overwrites(tmp_path):
    audit = make_audit(tmp_path, SPEC)
    config = load_config(audit)
    runner = CliRunner()
    result = runner.invoke(main, ["notebooks", str(audit)])
    assert result.exit_code == 0, result.output
    own = audit.parent / "notebooks" / config.id
    for name in REPORT_NOTEBOOKS:
        assert (own / name).read_bytes() == (notebook_dir() / name).read_bytes(), name
    lines = _yaml_lines(result.output)
    assert lines == (f"notebooks:\n  provider: notebooks/{config.id}/provider.ipynb\n"
                     f"  national: notebooks/{config.id}/national.ipynb\n")
    audit.write_text(audit.read_text() + lines)
    config = load_config(audit)
    assert (config.provider_notebook, config.national_notebook) == (own / "provider.ipynb", own / "national.ipynb")

    # A second copy into the same folder is refused, and the author's edits are kept.
    (own / "provider.ipynb").write_text("my edits")
    (own / "national.ipynb").unlink()
    again = runner.invoke(main, ["notebooks", str(audit)])
    assert again.exit_code == 2
    assert "provider.ipynb already exists; nothing was copied" in again.output
    assert (own / "provider.ipynb").read_text() == "my edits" and not (own / "national.ipynb").exists()

    # Elsewhere with --out (paths printed relative to the definition), but never into the installed notebooks.
    elsewhere = runner.invoke(main, ["notebooks", str(audit), "--out", str(tmp_path / "team" / "nbs")])
    assert elsewhere.exit_code == 0, elsewhere.output
    assert "  provider: team/nbs/provider.ipynb\n" in _yaml_lines(elsewhere.output)
    assert "already names notebooks of its own" in elsewhere.output
    installed = runner.invoke(main, ["notebooks", str(audit), "--out", str(notebook_dir())])
    assert installed.exit_code == 2 and "folder of the installed notebooks" in installed.output


@pytest.mark.slow
def test_own_notebooks_are_used_edits_rebuild_only_them_and_a_raising_cell_fails_its_report(tmp_path):
    """End to end through the command line: the audit's own notebooks are used, a cell of theirs that raises
    fails its report (named in the summary and the run log), an edit rebuilds only the reports of that
    notebook, and --watch rebuilds on every save."""
    audit = make_audit(tmp_path, SPEC)
    runner = CliRunner()
    started = runner.invoke(main, ["notebooks", str(audit)])
    assert started.exit_code == 0, started.output
    audit.write_text(audit.read_text() + _yaml_lines(started.output))
    config = load_config(audit)
    good, bad = sorted((audit.parent / "data" / "providers.csv").read_text().splitlines()[1:])[:2]
    good, bad = good.split(",")[0], bad.split(",")[0]

    # The provider notebook: the default plus a section of the team's own and a check that fails for one
    # provider. The national one: a notebook of the team's own, small to keep the test quick.
    provider_nb = nbformat.read(str(config.provider_notebook), as_version=4)
    provider_nb.cells.append(nbformat.v4.new_code_cell(
        "from IPython.display import HTML, display\ndisplay(HTML(f'<p>Our own section for {provider}</p>'))"))
    check = nbformat.v4.new_code_cell(f"# our completeness check\nif provider == {bad!r}:\n"
                                      "    raise RuntimeError('too few records for ' + provider)")
    provider_nb.cells.append(check)
    nbformat.write(provider_nb, str(config.provider_notebook))
    _notebook(config.national_notebook, nbformat.v4.new_code_cell(
        "from IPython.display import HTML, display\ndisplay(HTML('<p>Our own national report</p>'))"))

    command = ["run", str(audit), "--reports", str(tmp_path / "reports"), "-p", good, "-p", bad,
               "--audience", "local", "--no-publish", "-j", "2"]
    first = runner.invoke(main, command)
    assert first.exit_code == 4, first.output  # one report failed; the others are built
    error = (f"cell {len(provider_nb.cells)} of provider.ipynb (# our completeness check): "
             f"RuntimeError: too few records for {bad}")
    assert f"provider:{bad}:local: {error}" in first.output  # the summary
    out = tmp_path / "reports" / config.id / config.period_label
    (log,) = (out / "logs").glob("run-*.log")
    assert re.search(rf"failed provider:{bad}:local \([\d.]+s\): {re.escape(error)}", log.read_text())
    assert f"Our own section for {good}" in (out / "providers" / good / "local.html").read_text()
    assert "Our own national report" in (out / "national" / "national.html").read_text()
    assert (out / "providers" / bad / "local.failed.ipynb").is_file()
    assert not (out / "providers" / bad / "local.html").exists()
    assert not (out / "site").exists() and not (out / "manifest.json").exists()  # --no-publish
    assert "site, open data and manifest not updated (--no-publish)" in first.output

    # Editing the provider notebook rebuilds the provider reports, and nothing else: the national stage
    # and the national report are up to date.
    provider_nb.cells.remove(check)
    nbformat.write(provider_nb, str(config.provider_notebook))
    second = runner.invoke(main, command)
    assert second.exit_code == 0, second.output
    assert "national stage up to date" in second.output
    # Built: the two provider reports; up to date: the national report and the consultant summaries.
    assert re.search(r"built\s+2\b", second.output) and "built   national" not in second.output
    assert re.search(r"skipped \(up to date\)\s+[1-9]\d*\b", second.output), second.output
    assert f"Our own section for {bad}" in (out / "providers" / bad / "local.html").read_text()
    assert not (out / "providers" / bad / "local.failed.ipynb").exists()
    unknown = runner.invoke(main, [*command[:4], "-p", "NOSUCH", "--no-publish"])
    assert unknown.exit_code == 2 and f"provider(s) NOSUCH not in the results of {config.id}" in unknown.output

    # --watch: the chosen report is rebuilt each time the notebook is saved, in one long-lived process.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    watch = subprocess.Popen([sys.executable, "-m", "auditreport.cli", *command[:-3], "--watch"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in watch.stdout], daemon=True).start()
    seen: list[str] = []

    def until(text: str) -> None:
        while text not in (line := lines.get(timeout=240)):
            seen.append(line)

    try:
        until("watching")  # the first round: everything up to date
        provider_nb.cells.append(nbformat.v4.new_code_cell("display(HTML('<p>Saved while watching</p>'))"))
        nbformat.write(provider_nb, str(config.provider_notebook))
        until("watching")
        watch.send_signal(signal.SIGINT)
        until("stopped watching")
        assert watch.wait(timeout=60) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
    assert sum("built   provider:" in line for line in seen) == 2, seen  # both chosen reports, once
    assert "Saved while watching" in (out / "providers" / good / "local.html").read_text()
