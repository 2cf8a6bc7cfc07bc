"""Locating ``../shared`` (reference data beside the checkout) for the statistics tests.

The folder is ``<repo>/../shared``; ``AUDITREPORT_SHARED`` overrides it (a git
worktree sits one level deeper than the main checkout).  Tests that need it
skip when it is absent, as on a user's machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(os.environ.get("AUDITREPORT_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def shared_file(rel: str) -> Path:
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"shared reference file not available: {path}")
    return path


def read_shared_csv(rel: str) -> pd.DataFrame:
    # utf-8-sig drops the BOM; PHE's ratio outputs header has a newline inside the first (quoted) cell.
    df = pd.read_csv(shared_file(rel), encoding="utf-8-sig")
    df.columns = [c.strip() for c in df.columns]
    return df
