"""Files installed with the package: report notebooks, templates, stylesheet and script, demo definitions.

Everything here is package data (``[tool.setuptools.package-data]`` in ``pyproject.toml``), located through
``importlib.resources`` so that a normal ``pip install .`` finds it as well as an editable install or a
checkout on ``PYTHONPATH``. The package must be installed as files (not imported from a zip archive):
papermill, nbconvert and WeasyPrint read these files by path.

A utility module: it imports nothing of auditreport, so any layer may use it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = "auditreport"


def package_path(*parts: str) -> Path:
    """The path of a file or folder installed inside the package, e.g. ``package_path("rendering", "report.css")``.

    Raises ``FileNotFoundError`` naming the path when it is missing (a package built without its data).
    """
    root = resources.files(PACKAGE)
    if not isinstance(root, Path):
        raise RuntimeError(f"{PACKAGE} is imported from {root}, not from files; install it with pip "
                           "(not as a zip archive) so its notebooks and templates can be read by path")
    path = root.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing from the installed {PACKAGE} package; reinstall it "
                                "(pip install .) from a complete checkout")
    return path


def notebook_dir() -> Path:
    """The folder of the report notebooks (``national.ipynb``, ``provider.ipynb``)."""
    return package_path("notebooks")


def demo_definition(name: str) -> Path:
    """The installed audit definition of demo audit ``name`` (e.g. ``"synthetic"`` for ``demo/synthetic.yaml``)."""
    return package_path("demo", f"{name}.yaml")


def system_deps_script() -> Path:
    """The shell script that installs the system libraries the reports need (Pango, fonts, chromium)."""
    return package_path("scripts", "system-deps.sh")
