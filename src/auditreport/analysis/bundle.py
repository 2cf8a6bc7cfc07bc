"""The results bundle: what the national stage writes and every report reads.

A bundle is a folder of tidy Parquet tables plus JSON metadata. It is written
to a temporary folder and renamed into place, so a reader never sees half a
bundle. Provider reports read it (filtered to their provider) and never refit
anything: what a trust is told and what is published come from one run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

TABLES = ("indicators", "indicators_public", "funnels", "km", "casemix", "quality", "risk", "survival_tests", "monitoring")
BUNDLE_DIR = "bundle"


@dataclass
class Bundle:
    """A national run's results, loaded (tables are pandas DataFrames)."""

    path: Path
    metadata: dict[str, Any]
    model: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    def provider_monitoring(self, provider_code: str) -> pd.DataFrame:
        """One provider's RA-CUSUM and VLAD series (empty if the bundle predates monitoring)."""
        path = self.path / "monitoring.parquet"
        if not path.exists():
            return pd.DataFrame()
        return pd.read_parquet(path, filters=[("provider_code", "==", provider_code)])

    def provider_risk(self, provider_code: str) -> pd.DataFrame:
        """Patient-level predicted risks and outcomes of one provider, by procedure date."""
        return pd.read_parquet(self.path / "risk.parquet", filters=[("provider_code", "==", provider_code)])


def write_bundle(out_dir: Path, tables: dict[str, pd.DataFrame], metadata: dict[str, Any],
                 model: dict[str, Any]) -> Path:
    """Write the bundle atomically into ``out_dir / 'bundle'`` and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / BUNDLE_DIR
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out_dir))
    try:
        for name, table in tables.items():
            table.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "model.json").write_text(json.dumps(model, indent=1, default=str))
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


DEFAULT_TABLES = ("indicators", "indicators_public", "funnels", "km", "casemix", "quality", "survival_tests")


def load_bundle(path: str | Path, tables: tuple[str, ...] = DEFAULT_TABLES) -> Bundle:
    """Load a bundle folder (the ``bundle`` folder or the period folder that holds it)."""
    path = Path(path)
    if (path / BUNDLE_DIR).is_dir():
        path = path / BUNDLE_DIR
    if not (path / "metadata.json").is_file():
        raise FileNotFoundError(f"{path}: not a results bundle (no metadata.json); run the national stage first")
    metadata = json.loads((path / "metadata.json").read_text())
    model = json.loads((path / "model.json").read_text())
    loaded = {name: pd.read_parquet(path / f"{name}.parquet") for name in tables
              if (path / f"{name}.parquet").exists()}
    return Bundle(path=path, metadata=metadata, model=model, tables=loaded)
