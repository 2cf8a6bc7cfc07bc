"""What made an output: code version, commit, input fingerprints, time."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

from auditreport import __version__

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the source tree the package runs from ('unknown' outside git).

    A trailing '+dirty' says the working tree had uncommitted changes, so a
    report made from unreviewed code cannot pass for one made from a commit.
    Only a checkout's ``src/auditreport`` has a commit: an installed copy (in
    ``site-packages``, perhaps of a virtualenv inside some repository) has none.
    """
    root = _PACKAGE_DIR.parents[1]
    if _PACKAGE_DIR.parent.name != "src" or not (root / ".git").exists():
        return "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                "--", "src", "notebooks"], capture_output=True, text=True, timeout=10).stdout
        return commit + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_version() -> dict[str, str]:
    return {"package_version": __version__, "git_commit": git_commit(), "python": platform.python_version()}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_text(json.dumps(value, sort_keys=True, default=str))


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
