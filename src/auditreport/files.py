"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to a hidden sibling, then rename it over ``path`` (atomic on one file system)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
