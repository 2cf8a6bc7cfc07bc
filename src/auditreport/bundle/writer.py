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

from auditreport.analysis.national import NationalResults
from auditreport.bundle.schema import FORMAT_VERSION, TABLES, table_problems

#: The bundle's folder inside a period folder (``reports/<audit>/<period>/bundle``).
BUNDLE_DIR = "bundle"


class BundleSchemaError(ValueError):
    """The national stage produced tables that do not match the bundle's declared schema (a code error)."""


def measure_problems(results: NationalResults) -> list[str]:
    """Every way the results' measures disagree: metadata ``measures`` and ``wording``, model.json's
    ``measures`` and the ``measure`` column of every table must name the same measures."""
    measures = results.metadata.get("measures")
    if not isinstance(measures, list) or not all(isinstance(m, dict) and "id" in m for m in measures):
        return ["metadata 'measures' must be a list of measures, each with an id"]
    problems = [] if isinstance(results.metadata.get("wording"), dict) else ["metadata 'wording' missing"]
    declared = [m["id"] for m in measures]
    if len(set(declared)) != len(declared):
        problems.append(f"metadata 'measures': an id is given twice ({', '.join(declared)})")
    models = results.model.get("measures") if isinstance(results.model, dict) else None
    if not isinstance(models, dict):
        problems.append("model.json must be {'measures': {measure id: model}}")
    else:
        problems += [f"model.json: measure '{m}' is not in metadata 'measures'" for m in models if m not in declared]
    for name, table in results.tables().items():
        if "measure" in table.columns:
            unknown = sorted(set(table["measure"].dropna().astype(str)) - set(declared))
            problems += [f"table '{name}': measure '{m}' is not in metadata 'measures'" for m in unknown]
    return problems


def write_bundle(out_dir: Path, results: NationalResults) -> Path:
    """Write ``results`` into ``out_dir / 'bundle'`` and return the bundle's path.

    Every table is checked against ``schema.TABLES`` first (names, columns, kinds), and the measures named by
    the tables, the metadata and the models against each other (``measure_problems``); any mismatch raises
    ``BundleSchemaError`` listing each one, before anything is written. ``metadata.json`` gains
    ``format_version``.
    """
    tables = results.tables()
    problems = [f"table '{name}' is not declared in auditreport.bundle.schema.TABLES"
                for name in tables if name not in TABLES]
    problems += [f"table '{name}' missing" for name in TABLES if name not in tables]
    problems += [f"table '{name}': {p}" for name, table in tables.items() if name in TABLES
                 for p in table_problems(name, table)]
    problems += measure_problems(results)
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
