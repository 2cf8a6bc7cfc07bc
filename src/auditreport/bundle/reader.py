"""Read a results bundle: typed access to its metadata, risk model and tables.

Provider reports, the national report, the site and ``reproduce`` read the bundle and never refit anything:
what a trust is told and what is published come from one national run. A bundle of another format version
than this code's is refused with the remedy (rerun the national stage); there is no reading of older formats.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from auditreport.bundle.schema import FORMAT_VERSION
from auditreport.bundle.writer import BUNDLE_DIR
from auditreport.errors import AuditReportError


class BundleFormatError(AuditReportError):
    """A folder is not a results bundle this code can read (missing, or another format version)."""


class Bundle:
    """A national run's results, read from its folder.

    ``metadata`` and ``model`` are read on load (and the format version checked); each table is read from
    its Parquet file the first time it is used, then kept. ``provider_monitoring`` and ``provider_risk``
    read one provider's rows of one measure only (the patient-level tables are the bundle's largest).
    """

    def __init__(self, path: Path, metadata: dict[str, Any], model: dict[str, Any]):
        self.path = path
        self.metadata = metadata
        self.model = model

    def _table(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(self.path / f"{name}.parquet")

    @cached_property
    def indicators(self) -> pd.DataFrame:
        """Every unit's statistics per measure: intervals, funnel limits and flags, with full counts (confidential)."""
        return self._table("indicators")

    @cached_property
    def indicators_public(self) -> pd.DataFrame:
        """The indicator table after disclosure control: what public outputs show."""
        return self._table("indicators_public")

    @cached_property
    def funnels(self) -> pd.DataFrame:
        """Funnel limit curves per measure, statistic and level."""
        return self._table("funnels")

    @cached_property
    def km(self) -> pd.DataFrame:
        """Kaplan-Meier curves per survival measure, provider and nationally."""
        return self._table("km")

    @cached_property
    def casemix(self) -> pd.DataFrame:
        """Case mix per provider and nationally."""
        return self._table("casemix")

    @cached_property
    def quality(self) -> pd.DataFrame:
        """Data quality per provider and nationally."""
        return self._table("quality")

    @cached_property
    def survival_tests(self) -> pd.DataFrame:
        """Median survival and log-rank tests per survival measure and provider."""
        return self._table("survival_tests")

    @cached_property
    def risk(self) -> pd.DataFrame:
        """Every analysed record's predicted risk and outcome per adjusted proportion (patient level: confidential)."""
        return self._table("risk")

    @cached_property
    def monitoring(self) -> pd.DataFrame:
        """Every monitored measure's RA-CUSUM and VLAD series per provider (patient level: confidential)."""
        return self._table("monitoring")

    @cached_property
    def exclusions(self) -> pd.DataFrame:
        """Every record each measure leaves out, by reason, per provider and nationally."""
        return self._table("exclusions")

    @cached_property
    def consultants(self) -> pd.DataFrame:
        """Every consultant at every provider they worked at: ``consultant_code``, ``consultant_name``,
        ``registration_number``, ``specialty`` (blank without a consultants file), ``provider_code`` and
        ``records`` (their analysed records there; 0 where the file lists them but they have none). A consultant
        at two providers has a row at each."""
        return self._table("consultants")

    @cached_property
    def provider_notes(self) -> pd.DataFrame:
        """Every provider's ``statement`` (its right to respond, as written) and ``validated_on`` (the ISO date it
        signed off its data), "" where it gave none, by ``provider_code``."""
        return self._table("provider_notes")

    def consultants_at(self, provider_code: str) -> list[str]:
        """The codes of the consultants with analysed records at this provider, in code order."""
        table = self.consultants
        here = table[(table["provider_code"] == provider_code) & (table["records"] > 0)]
        return sorted(here["consultant_code"].astype(str))

    @cached_property
    def casemix_public(self) -> pd.DataFrame:
        """The case mix as public outputs show it: every provider's cell and the national totals, two-way
        suppressed (``n`` and ``share`` blank where ``suppressed``)."""
        return self._table("casemix_public")

    @cached_property
    def quality_public(self) -> pd.DataFrame:
        """Data quality counts as public outputs show them, long (unit_id, item, records, suppressed): items
        ``records_submitted``, ``records_analysed``, ``records_excluded``, ``excluded: <reason>``,
        ``missing: <field>`` (records lacking it), ``imputed: <factor>``, ``no provider code``."""
        return self._table("quality_public")

    @cached_property
    def exclusions_public(self) -> pd.DataFrame:
        """Each measure's exclusions by reason as public outputs show them (``records`` blank where
        ``suppressed``), every provider and reason of the measure."""
        return self._table("exclusions_public")

    def measure_exclusions_public(self, measure: str) -> pd.DataFrame:
        """The records one measure leaves out, by reason, as public outputs show them."""
        table = self.exclusions_public
        return table[table["measure"] == measure].reset_index(drop=True)

    def measure_exclusions(self, measure: str) -> pd.DataFrame:
        """The records one measure leaves out, by reason, per provider and nationally."""
        table = self.exclusions
        return table[table["measure"] == measure].reset_index(drop=True)

    def provider_monitoring(self, provider_code: str, measure: str) -> pd.DataFrame:
        """One provider's RA-CUSUM and VLAD series of one measure, in procedure order (empty: not monitored)."""
        return pd.read_parquet(self.path / "monitoring.parquet",
                               filters=[("measure", "==", measure), ("provider_code", "==", provider_code)])

    def monitoring_signals(self, measure: str | None = None) -> pd.DataFrame:
        """Every RA-CUSUM signal of the period (of one measure, if given): one row per record at which an upper or
        lower chart signalled."""
        of = [("measure", "==", measure)] if measure is not None else []
        return pd.read_parquet(self.path / "monitoring.parquet",
                               filters=[[*of, ("signal_upper", "==", True)], [*of, ("signal_lower", "==", True)]])

    def provider_risk(self, provider_code: str, measure: str) -> pd.DataFrame:
        """One provider's records' predicted risks and outcomes for one adjusted proportion, by procedure date."""
        return pd.read_parquet(self.path / "risk.parquet",
                               filters=[("measure", "==", measure), ("provider_code", "==", provider_code)])


def bundle_path(path: str | Path) -> Path:
    """The bundle folder itself, given it or the period folder that holds it."""
    path = Path(path)
    return path / BUNDLE_DIR if (path / BUNDLE_DIR).is_dir() else path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A bundle's metadata, after checking it is a bundle of this code's format version.

    Raises ``BundleFormatError`` naming the folder, the version found and the remedy.
    """
    path = bundle_path(path)
    meta_path = path / "metadata.json"
    if not meta_path.is_file():
        raise BundleFormatError(f"{path}: not a results bundle (no metadata.json); run the national stage first "
                                "(auditreport run <audit definition>)")
    metadata = json.loads(meta_path.read_text())
    found = metadata.get("format_version")
    if found != FORMAT_VERSION:
        age = ("older (written before bundles were versioned)" if found is None
               else "older" if isinstance(found, int) and found < FORMAT_VERSION else "newer")
        raise BundleFormatError(
            f"{path}: results bundle format {found if found is not None else '(none)'} is {age} than the format "
            f"this auditreport reads ({FORMAT_VERSION}); rerun the national stage with this version "
            "(auditreport run <audit definition>, which rebuilds it) and build the reports from the new bundle")
    return metadata


def load_bundle(path: str | Path) -> Bundle:
    """Open a bundle folder (the ``bundle`` folder or the period folder that holds it)."""
    path = bundle_path(path)
    metadata = read_metadata(path)
    return Bundle(path=path, metadata=metadata, model=json.loads((path / "model.json").read_text()))
