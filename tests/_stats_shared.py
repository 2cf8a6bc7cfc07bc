"""The peer reference data the conformance tests compare with, read from ``tests/data/``.

The files are copies of published reference data (PHEindicatormethods' test data, New York State's
published cardiac surgery tables); ``tests/data/README.md`` names each file's source and licence.
They are part of the repository, so every clone runs every conformance test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parent / "data"


def reference_file(name: str) -> Path:
    """The path of ``tests/data/<name>``; fails (never skips) when the file is missing."""
    path = DATA / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: reference data missing from tests/data/ (see tests/data/README.md)")
    return path


def read_reference_csv(name: str) -> pd.DataFrame:
    """A reference CSV with its header cells stripped.

    ``utf-8-sig`` drops the byte-order mark of PHE's files; the header of PHE's ratio outputs has a newline
    inside its first (quoted) cell.
    """
    df = pd.read_csv(reference_file(name), encoding="utf-8-sig")
    df.columns = [c.strip() for c in df.columns]
    return df
