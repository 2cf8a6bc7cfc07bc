"""Write the national stage's results as a bundle: checked against the declared schema, atomically.

The bundle is written to a temporary folder beside its final place and renamed into place, so a reader never
sees half a bundle and a failed write leaves the previous bundle as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from auditreport.bundle.schema import FORMAT_VERSION, TABLES, table_problems

if TYPE_CHECKING:  # a type only: importing the national stage costs seconds every reader of a bundle would pay
    from auditreport.analysis.national import NationalResults

#: The bundle's folder inside a period folder (``reports/<audit>/<period>/bundle``).
BUNDLE_DIR = "bundle"


class BundleSchemaError(ValueError):
    """The national stage produced tables that do not match the bundle's declared schema (a code error)."""


def write_bundle(out_dir: Path, results: NationalResults) -> Path:
    """Write ``results`` into ``out_dir / 'bundle'`` and return the bundle's path.

    Every table is checked against ``schema.TABLES`` first (names, columns, kinds); any mismatch raises
    ``BundleSchemaError`` listing each one, before anything is written. ``metadata.json`` gains
    ``format_version``.
    """
    tables = results.tables()
    problems = [f"table '{name}' is not declared in auditreport.bundle.schema.TABLES"
                for name in tables if name not in TABLES]
    problems += [f"table '{name}' missing" for name in TABLES if name not in tables]
    problems += [f"table '{name}': {p}" for name, table in tables.items() if name in TABLES
                 for p in table_problems(name, table)]
    if problems:
        raise BundleSchemaError(f"{out_dir / BUNDLE_DIR}: the national results do not match the bundle schema "
                                f"(format {FORMAT_VERSION}); nothing was written:\n  " + "\n  ".join(problems)
                                + "\n  Declare the change in auditreport/bundle/schema.py and raise FORMAT_VERSION.")
    metadata = {"format_version": FORMAT_VERSION, **results.metadata}
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / BUNDLE_DIR
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out_dir))
    try:
        for name, table in tables.items():
            table.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "model.json").write_text(json.dumps(results.model, indent=1, default=str))
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=1, default=str))
        old = None
        if final.exists():
            old = out_dir / f".bundle-old-{os.getpid()}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
