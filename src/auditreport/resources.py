"""Files installed with the package: report notebooks, templates, stylesheet and script, demo definitions.

Everything here is package data (``[tool.setuptools.package-data]`` in ``pyproject.toml``), located through
``importlib.resources`` so that a normal ``pip install .`` finds it as well as an editable install or a
checkout on ``PYTHONPATH``. The package must be installed as files (not imported from a zip archive):
papermill, nbconvert and WeasyPrint read these files by path.

A utility module: it imports nothing of auditreport, so any layer may use it.
"""

from __future__ import annotations

import shutil
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


REPORT_NOTEBOOKS = ("provider.ipynb", "national.ipynb")


def copy_notebooks(dest: Path) -> list[Path]:
    """Copy the installed report notebooks (:data:`REPORT_NOTEBOOKS`) into ``dest`` (made if missing), to
    start an audit's own notebooks from; returns the copies' paths.

    Overwrites nothing: if either file is already in ``dest``, raises ``FileExistsError`` naming it and
    copies neither. Raises ``ValueError`` if ``dest`` is the installed notebooks' own folder (from a
    checkout, ``notebooks/`` at its root is a link to it): edits there would change every audit's reports.
    """
    source = notebook_dir()
    dest = Path(dest)
    if dest.resolve() == source.resolve():
        raise ValueError(f"{dest} is the folder of the installed notebooks ({source}); copy them elsewhere")
    targets = [dest / name for name in REPORT_NOTEBOOKS]
    existing = [str(t) for t in targets if t.exists() or t.is_symlink()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                              "nothing was copied (move them away, or copy to another folder)")
    dest.mkdir(parents=True, exist_ok=True)
    for name, target in zip(REPORT_NOTEBOOKS, targets, strict=True):
        with open(source / name, "rb") as src, open(target, "xb") as out:  # "x": never overwrite, even in a race
            shutil.copyfileobj(src, out)
    return targets


def demo_definition(name: str) -> Path:
    """The installed audit definition of demo audit ``name`` (e.g. ``"synthetic"`` for ``demo/synthetic.yaml``)."""
    return package_path("demo", f"{name}.yaml")


def system_deps_script() -> Path:
    """The shell script that installs the system libraries the reports need (Pango, fonts, chromium)."""
    return package_path("scripts", "system-deps.sh")
