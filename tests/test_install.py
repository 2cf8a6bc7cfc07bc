"""A normal install works away from the source tree.

``pip install`` of the wheel (not an editable install) into a new virtualenv, then ``auditreport demo
--small`` in an empty folder with no ``PYTHONPATH``: the reports can only be built if the wheel carries every
notebook, template, stylesheet, script and demo definition they need and the package finds them itself.
Dependencies are installed offline from a wheelhouse of the versions in ``requirements/constraints.txt``,
``~/.cache/auditreport/test-wheelhouse`` (``$XDG_CACHE_HOME``), made from PyPI (about five minutes) the first
time and again whenever it lacks a pinned version: pip's own HTTP cache cannot be relied on (a proxy that
forbids caching leaves it empty). After that the test takes two or three minutes on two cores: about a
minute to install, the rest building the seven reports.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from auditreport.data.examples import DEMO_AUDITS, SMALL_DEMO, write_demo
from auditreport.resources import demo_definition

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
#: What a build does not need, at the top of the tree and anywhere in it: the copy the wheel is built from
#: leaves out local state (a virtualenv, outputs, earlier builds).
LOCAL_STATE_AT_TOP = {".git", ".venv", "reports", "data", "build", "dist", "test-artifacts"}
LOCAL_STATE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")


def not_source(folder: str, names: list[str]) -> set[str]:
    top = LOCAL_STATE_AT_TOP.intersection(names) if Path(folder) == REPO else set()
    return top | LOCAL_STATE(folder, names)


def run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: int) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("name", DEMO_AUDITS)
def test_the_repositorys_example_definitions_are_the_demos(name):
    """params/ at the root keeps the users' examples; the package carries the same files for the demo."""
    assert (REPO / "params" / f"{name}.yaml").read_text() == demo_definition(name).read_text()


def test_demo_keeps_a_definition_already_there_and_data_already_written(tmp_path, caplog):
    own = tmp_path / "params" / f"{SMALL_DEMO}.yaml"
    own.parent.mkdir()
    own.write_text("# the user's own\n")
    assert write_demo(tmp_path, small=True) == [own]
    assert own.read_text() == "# the user's own\n"
    assert f"{own}: kept as it is" in caplog.text
    records = tmp_path / "data" / SMALL_DEMO / "records.parquet"
    written = records.stat().st_mtime_ns
    own.unlink()
    write_demo(tmp_path, small=True)
    assert records.stat().st_mtime_ns == written
    definition = yaml.safe_load(own.read_text())
    assert definition["data"]["source"] == f"../data/{SMALL_DEMO}/records.parquet"
    write_demo(tmp_path, small=True, force=True)
    assert records.stat().st_mtime_ns != written


def install(wheel: Path, venv: Path, cwd: Path, env: dict[str, str]) -> None:
    """Install ``wheel`` and its dependencies at the pinned versions into ``venv``, offline from the wheelhouse;
    when that lacks a pinned version (the first run, or the pins changed), make the wheelhouse afresh from PyPI."""
    wheelhouse = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "auditreport" / "test-wheelhouse"
    # This pip installs into the new virtualenv (--python), which saves installing pip there; --no-compile
    # leaves byte-compiling to the imports the demo makes (a fraction of the dependencies' modules).
    command = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet",
               "--no-compile", "--no-index", "--find-links", wheelhouse, "-c", CONSTRAINTS, wheel]
    offline = subprocess.run([str(a) for a in command], cwd=cwd, env=env, capture_output=True, timeout=600)
    if offline.returncode != 0:  # pip resolves before it installs: the virtualenv is still empty
        shutil.rmtree(wheelhouse, ignore_errors=True)
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "-c", CONSTRAINTS, "-w", wheelhouse, wheel], cwd,
            env, 1800)
        (wheelhouse / wheel.name).unlink()  # the package itself is built afresh every time
        run(command, cwd, env, 600)


@pytest.mark.slow
def test_wheel_in_a_new_virtualenv_builds_the_demo_in_an_empty_folder(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}
    # The wheel is built from a copy of the source tree (symlinks kept), so no build/ or egg-info lands in it.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=not_source)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path / "wheel", source],
        tmp_path, env, 300)
    [wheel] = (tmp_path / "wheel").glob("auditreport-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env, 120)
    install(wheel, venv, tmp_path, env)

    empty = tmp_path / "empty"
    empty.mkdir()
    installed = run([venv / "bin" / "python", "-c", "import auditreport; print(auditreport.__file__)"], empty, env, 60)
    assert Path(installed.strip()).is_relative_to(venv), installed  # not the source tree

    run([venv / "bin" / "auditreport", "demo", "--small", "-j", "2"], empty, env, 600)

    # The demo wrote its definition and data under the folder, and built every kind of output there.
    definition = yaml.safe_load((empty / "params" / "synthetic-small.yaml").read_text())
    assert definition["measures"] == yaml.safe_load(demo_definition("synthetic").read_text())["measures"]
    period = empty / "reports" / "synthetic-surgery-small" / "2024-2025"
    providers = sorted(p.name for p in (period / "providers").iterdir())
    assert len(providers) == 3, providers
    reports = [period / "national" / "national"] + [period / "providers" / code / audience
                                                  for code in providers for audience in ("local", "public")]
    for report in reports:
        for suffix in (".html", ".pdf", ".ipynb"):
            path = report.with_suffix(suffix)
            assert path.is_file() and path.stat().st_size > 1000, path
        assert report.with_suffix(".pdf").read_bytes().startswith(b"%PDF-")
    # The table-sorting script and the stylesheet are package data, inlined into the site.
    site = (period / "site" / "index.html").read_text()
    assert "table.sortable" in site and "aria-sort" in site
    assert (empty / "reports" / "index.html").is_file()
    indicators = (period / "indicators.csv").read_text().splitlines()
    assert len(indicators) > 1 and all(code in "\n".join(indicators) for code in providers)

    manifest = json.loads((period / "manifest.json").read_text())
    listed = {entry["path"] for entry in manifest["files"]}
    for report in reports:
        for suffix in (".html", ".pdf"):
            assert report.relative_to(period).with_suffix(suffix).as_posix() in listed, report
    assert {"indicators.csv", "site/index.html"} <= listed
    assert Path(manifest["config_path"]) == (empty / "params" / "synthetic-small.yaml").resolve()
    # An installed copy has no git commit (the source tree's would be a lie).
    assert manifest["code"]["git_commit"] == "unknown"
