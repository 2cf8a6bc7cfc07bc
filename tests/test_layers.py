"""The import contract: no module imports from a layer above its own, imports inside functions included.

The contract is ``[tool.importlinter]`` in pyproject.toml; these tests run the real ``lint-imports`` on the
package, and on a two-layer package whose only upward import sits inside a function (so a contract that read
only module-level imports would pass it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import auditreport

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path(auditreport.__file__).resolve().parents[1]  # the tree these tests import


def lint_imports(cwd: Path, pythonpath: Path, *args: str) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": f"{pythonpath}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([str(command), "--no-cache", "--no-logo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_package_keeps_its_layers():
    done = lint_imports(REPO, SOURCE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    package = tmp_path / "layered"
    (package / "high").mkdir(parents=True)
    (package / "low").mkdir()
    (package / "__init__.py").write_text("")
    (package / "high" / "__init__.py").write_text("from layered import low\n")
    (package / "low" / "__init__.py").write_text("def later():\n    from layered import high\n\n    return high\n")
    config = tmp_path / ".importlinter"
    config.write_text("[importlinter]\nroot_package = layered\n\n[importlinter:contract:layers]\n"
                      "name = layers\ntype = layers\ncontainers = layered\nlayers =\n    high\n    low\n")
    done = lint_imports(tmp_path, tmp_path, "--config", str(config))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "layered.low is not allowed to import layered.high" in done.stdout
    assert "layered.low -> layered.high (l.2)" in done.stdout
