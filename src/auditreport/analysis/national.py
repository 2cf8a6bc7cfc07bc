"""The national stage: everything computed once per audit and period, measure by measure.

Loads and validates the extract, then for each of the audit's measures (``config.measures``, in declaration
order) takes its included records (``data.measures.measure_records``), fits its model on the whole national
cohort and computes every unit's statistics, intervals, funnel limits and flags (``analysis.measures``);
survival, Cox and RA-CUSUM/VLAD monitoring where the measure has them; case mix and data quality. It writes
nothing: it returns one ``NationalResults`` that the bundle layer (``auditreport.bundle``) writes and every
report reads, so no provider's report ever refits anything.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from auditreport.analysis import survival_monitoring as sm
from auditreport.analysis.breakdowns import public_breakdowns
from auditreport.analysis.measures import (
    INDICATOR_COLUMNS,
    MeasureResult,
    compute_measure,
    empty_funnels,
    fit_measure_model,
)
from auditreport.analysis.quality import case_mix, data_quality
from auditreport.config import AuditConfig
from auditreport.data.loading import file_sha256
from auditreport.data.measures import check_measures, measure_records
from auditreport.data.validation import CONSULTANT_COLUMNS, ValidatedData, load_validated
from auditreport.errors import DataValidationError
from auditreport.provenance import code_version, now_utc
from auditreport.rules.disclosure import suppress_indicators

log = logging.getLogger(__name__)

EXCLUSION_COLUMNS = ["measure", "unit_id", "reason", "records"]
RISK_COLUMNS = ["measure", "provider_code", "consultant_code", "procedure_date", "y", "p"]


@dataclass(frozen=True)
class NationalResults:
    """Everything the national stage computed: metadata, the models document and the bundle's tables.

    The table fields are named as the bundle's tables (``auditreport.bundle.schema.TABLES``), which the
    bundle layer checks when it writes them.
    """

    metadata: dict[str, Any]
    model: dict[str, Any]
    indicators: pd.DataFrame
    indicators_public: pd.DataFrame
    funnels: pd.DataFrame
    km: pd.DataFrame
    casemix: pd.DataFrame
    quality: pd.DataFrame
    risk: pd.DataFrame
    survival_tests: pd.DataFrame
    monitoring: pd.DataFrame
    exclusions: pd.DataFrame
    consultants: pd.DataFrame
    provider_notes: pd.DataFrame
    casemix_public: pd.DataFrame
    quality_public: pd.DataFrame
    exclusions_public: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """The results tables by name (every field but ``metadata`` and ``model``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("metadata", "model")}


def run_national(config: AuditConfig, validated: ValidatedData | None = None,
                 parameters: dict[str, Any] | None = None) -> NationalResults:
    """Compute every national result of one audit period; write nothing.

    Each measure is one job (its records, model, statistics per level, funnels; survival, Cox and monitoring
    where it has them); ``auditreport.bundle.write_bundle`` writes what this returns. ``parameters`` are
    recorded in the metadata as given (the pipeline passes its inputs fingerprint). Seconds per measure are in
    ``metadata["timings"]``.
    """
    started = time.perf_counter()
    timings: dict[str, Any] = {}
    if validated is None:
        validated = load_validated(config)
        timings["load_and_validate"] = round(time.perf_counter() - started, 3)
    patients = validated.patients
    t0 = time.perf_counter()
    selected = check_measures(config, validated)  # every measure's data errors together, before any fit
    timings["records"] = round(time.perf_counter() - t0, 3)
    if not any(len(s.records) for s in selected.values()):
        raise DataValidationError(validated.source, [{"column": "(all)", "rule": "records to analyse", "count": 0,
                                                      "rows": [], "examples": "every record was excluded from "
                                                                              "every measure"}])
    # Every provider with a record in any measure gets rows in every measure (no cases where it has none).
    providers = pd.Index(sorted({str(c) for s in selected.values()
                                 for c in s.records["provider_code"].dropna().unique()}))
    results: list[MeasureResult] = []
    for measure in config.measures:
        t0 = time.perf_counter()
        result = compute_measure(config, measure, selected[measure.id].records, providers)
        timings[measure.id] = {"seconds": round(time.perf_counter() - t0, 3), **result.timings}
        results.append(result)

    t0 = time.perf_counter()
    monitoring, cusum = monitoring_tables(config, results)
    timings["monitoring"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    table = indicator_table(config, [r.rows for r in results], patients, validated.consultants)
    # Disclosure control runs here, once, so every public report and the open data show one table; an internal
    # measure (published: false) is never in it.
    public = suppress_indicators(table, config.suppression_threshold)
    public = public[public["measure"].isin([m.id for m in config.measures if m.published])].reset_index(drop=True)
    timings["indicator_table_and_disclosure"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    quality = data_quality(config, patients)
    mix = case_mix(config, patients, _primary_risk(results))
    timings["quality_and_case_mix"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    exclusions = exclusion_table(selected, results)
    # Breakdowns are suppressed under every publication policy, two-way: within a provider and across providers
    # to the national counts (issue #15, leaks 2 and 3).
    breakdowns = public_breakdowns(mix, quality, exclusions, config.suppression_threshold)
    timings["breakdown_disclosure"] = round(time.perf_counter() - t0, 3)

    metadata = national_metadata(config, validated, selected, parameters)
    metadata.update({
        "wording": config.wording.to_dict(),
        "measures": [measure_metadata(r, cusum.get(r.measure.id)) for r in results],
        "publication": {"suppression_threshold": config.suppression_threshold,
                        "publish_consultants": config.publish_consultants},
        "breakdowns": {"cells_suppressed": breakdowns.cells_suppressed, "notes": breakdowns.notes},
        "warnings": validated.warnings,
        "timings": timings,
        "seconds": round(time.perf_counter() - started, 3),
    })
    log.info("national stage: %d measures, %d providers in %.1fs", len(results), len(providers),
             time.perf_counter() - started)
    return NationalResults(
        metadata=metadata, model={"measures": {r.measure.id: r.model for r in results if r.model is not None}},
        indicators=table, indicators_public=public, funnels=_concat([r.funnels for r in results], empty_funnels()),
        km=_concat([r.km for r in results if r.km is not None], _empty(["measure", *sm.KM_COLUMNS])),
        casemix=mix, quality=quality,
        risk=_concat([r.risk for r in results if r.risk is not None], _empty_risk()),
        survival_tests=_concat([r.survival_tests for r in results if r.survival_tests is not None],
                               _empty(["measure", *sm.SURVIVAL_TEST_COLUMNS])),
        monitoring=monitoring,
        exclusions=exclusions, casemix_public=breakdowns.casemix, quality_public=breakdowns.quality,
        exclusions_public=breakdowns.exclusions,
        consultants=consultant_table(validated, selected), provider_notes=provider_notes_table(validated))


def check_risk_models(config: AuditConfig, validated: ValidatedData) -> None:
    """Fit every adjusted proportion's and ratio's model as the national stage would, raising its clear error.

    What ``auditreport validate`` runs, so that a definition it passes does not fail in ``run``.
    """
    for measure in config.measures:
        if measure.adjusted and measure.kind in ("proportion", "ratio"):
            records = measure_records(config, measure, validated).records
            if len(records):
                fit_measure_model(config, measure, records)


def _concat(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _empty_risk() -> pd.DataFrame:
    return pd.DataFrame({"measure": pd.Series(dtype=object), "provider_code": pd.Series(dtype=object),
                         "consultant_code": pd.Series(dtype="string"),
                         "procedure_date": pd.Series(dtype="datetime64[ns]"), "y": pd.Series(dtype=float),
                         "p": pd.Series(dtype=float)})


def _primary_risk(results: list[MeasureResult]) -> pd.DataFrame | None:
    """The first adjusted proportion measure's predicted risks (what the case mix shows in national tenths)."""
    return next((r.risk for r in results if r.risk is not None), None)


# ---------------------------------------------------------------------------------------------------------------
# Monitoring


def monitoring_tables(config: AuditConfig, results: list[MeasureResult]
                      ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """RA-CUSUM and VLAD for every measure that asks for monitoring and can have it; why not for the others.

    Monitoring needs an adjusted proportion (predicted risks) and procedure dates to order the records by:
    charts in the order of the rows of a file would say nothing about time. Returns the charts and, per measure
    id, the chart description (``cusum``) or ``{"monitored": False, "reason": ...}``.
    """
    tables, info = [], {}
    for r in results:
        m = r.measure
        if not m.monitoring:
            if r.risk is not None:  # an adjusted proportion could be monitored: say why it is not
                dated = r.risk["procedure_date"].notna().any()
                info[m.id] = {"monitored": False, "reason": "monitoring is off for this measure (monitoring: false)"
                              if dated else "the audit has no procedure dates to order the records by"}
            continue
        if r.risk is None:
            info[m.id] = {"monitored": False, "reason": "monitoring needs a risk-adjusted proportion"}
            continue
        risk = r.risk
        if not risk["procedure_date"].notna().any():
            info[m.id] = {"monitored": False, "reason": "the audit has no procedure dates to order the records by"}
            continue
        risk = risk.rename(columns={"y": "outcome"}).sort_values(["provider_code", "procedure_date"], kind="stable")
        table, summary = sm.monitoring_summary(config, risk.reset_index(drop=True))
        table.insert(0, "measure", m.id)
        tables.append(table)
        info[m.id] = {"monitored": True, **summary}
    empty = pd.DataFrame(columns=["measure", *sm.MONITORING_COLUMNS])
    return _concat(tables, empty), info


# ---------------------------------------------------------------------------------------------------------------
# Tables and metadata


def indicator_table(config: AuditConfig, rows: list[pd.DataFrame], patients: pd.DataFrame,
                    named: pd.DataFrame | None = None) -> pd.DataFrame:
    """All measures' rows as one tidy table: audit, period, unit names and each consultant's provider.

    A consultant's ``unit_name`` is their name from the consultants file (``named``, the validated file) when
    one is given, their code otherwise.
    """
    table = pd.concat(rows, ignore_index=True)
    table["audit"] = config.id
    table["period"] = config.period_label
    table["unit_name"] = table["unit_id"].map(_unit_names(patients)).fillna(table["unit_id"]).astype(str)
    table.loc[table["level"] == "national", "unit_name"] = config.wording.national_unit_name
    if named is not None:
        names = named.drop_duplicates("consultant_code").set_index("consultant_code")["consultant_name"]
        is_consultant = table["level"] == "consultant"
        table.loc[is_consultant, "unit_name"] = (table.loc[is_consultant, "unit_id"].map(names)
                                                 .fillna(table.loc[is_consultant, "unit_id"]).astype(str))
    consultants = patients.dropna(subset=["consultant_code", "provider_code"])
    parent = _most_common(consultants["consultant_code"].astype(str), consultants["provider_code"].astype(str))
    table["parent_id"] = np.where(table["level"] == "consultant", table["unit_id"].map(parent), "")
    table["parent_id"] = table["parent_id"].fillna("").astype(str)
    return table[INDICATOR_COLUMNS]


def consultant_table(validated: ValidatedData, selected: dict[str, Any]) -> pd.DataFrame:
    """Every consultant at every provider: their analysed records there (in any measure), and their name,
    registration number and specialty from the consultants file ("" without one).

    A consultant at two providers has a row at each, so each provider's reports can list every consultant who
    operated there; a consultant the file lists at a provider where they have no analysed record has a row with
    0 records (contract 4). Empty when the extract has no consultant codes.
    """
    analysed = pd.concat([s.records[["provider_code", "consultant_code"]] for s in selected.values()])
    analysed = analysed[~analysed.index.duplicated()].dropna(subset=["provider_code", "consultant_code"])
    counts = (analysed.astype(str).value_counts(["consultant_code", "provider_code"]).rename("records")
              .reset_index())
    listed = validated.consultants
    if listed is None:
        listed = pd.DataFrame({c: pd.Series(dtype=object) for c in CONSULTANT_COLUMNS})
    table = listed.merge(counts, on=["consultant_code", "provider_code"], how="outer")
    for column in ("consultant_name", "registration_number", "specialty"):  # the person, at every provider
        person = listed.drop_duplicates("consultant_code").set_index("consultant_code")[column]
        table[column] = table["consultant_code"].map(person).fillna("").astype(str)
    table["records"] = table["records"].fillna(0).astype("int64")
    table = table.astype({"consultant_code": str, "provider_code": str})
    return table.sort_values(["consultant_code", "provider_code"]).reset_index(drop=True)[
        [*CONSULTANT_COLUMNS, "records"]]


def provider_notes_table(validated: ValidatedData) -> pd.DataFrame:
    """Every provider's statement and validation date ("" where none), one row per provider of the registry
    (the providers file, or the extract's providers)."""
    codes = pd.Series(sorted(validated.providers["provider_code"].astype(str)), dtype=object)
    notes = pd.DataFrame({"provider_code": codes})
    for frame, column in ((validated.statements, "statement"), (validated.validation, "validated_on")):
        given = frame.set_index("provider_code")[column] if frame is not None else pd.Series(dtype=object)
        notes[column] = codes.map(given).fillna("").astype(str)
    return notes


def exclusion_table(selected: dict[str, Any], results: list[MeasureResult]) -> pd.DataFrame:
    """Every record each measure leaves out, with its reason, per provider and nationally."""
    frames = [selected[r.measure.id].exclusions for r in results]
    frames += [r.excluded.assign(measure=r.measure.id) for r in results if r.excluded is not None and len(r.excluded)]
    frames = [f[EXCLUSION_COLUMNS] for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({"measure": pd.Series(dtype=object), "unit_id": pd.Series(dtype=object),
                             "reason": pd.Series(dtype=object), "records": pd.Series(dtype="int64")})
    table = pd.concat(frames, ignore_index=True)
    table = table.astype({"measure": str, "unit_id": str, "reason": str, "records": "int64"})
    return table.groupby(["measure", "reason", "unit_id"], sort=False, as_index=False)["records"].sum()[
        EXCLUSION_COLUMNS]


def measure_metadata(result: MeasureResult, cusum: dict[str, Any] | None) -> dict[str, Any]:
    """What the metadata says of one measure (contract section 3): definition, headline, method, national figures."""
    m = result.measure
    present = set(result.rows["statistic"])
    statistics = [s for s in m.statistics if s in present]
    out = {
        "id": m.id, "label": m.label, "description": m.description, "kind": m.kind, "type": m.type,
        "direction": m.direction, "target": m.target,
        "target_kind": "standard" if m.target is not None else "national",
        "adjusted": m.adjusted, "carries_status": m.carries_status,
        "headline": m.headline if m.headline in statistics else statistics[-1], "statistics": statistics,
        "levels": list(m.levels), "published": m.published, "value_unit": m.value_unit,
        "event": m.event, "death_within_days": m.death_within_days, "value": m.value, "eligible": m.eligible,
        "overdispersion": result.overdispersion, "overdispersion_method": m.overdispersion,
        "method": result.method, "national": result.national,
        "horizons": list(m.horizons) if m.kind == "survival" else None,
        "cusum": cusum if cusum and cusum.get("monitored") else None,
        "monitoring_note": cusum["reason"] if cusum and not cusum.get("monitored") else None,
    }
    out.update({k: v for k, v in result.details.items() if k != "factor_flags"})
    return out


def national_metadata(config: AuditConfig, validated: ValidatedData, selected: dict[str, Any],
                      parameters: dict[str, Any] | None) -> dict[str, Any]:
    """What was analysed and how: audit, definition and data fingerprints, code, national counts."""
    data_files = {key: {"path": str(path), "sha256": file_sha256(path)} for key, path in config.data_files().items()}
    patients = validated.patients
    analysed = pd.concat([s.records[["provider_code", "consultant_code"]] for s in selected.values()])
    analysed = analysed[~analysed.index.duplicated()]
    excluded = int((patients["exclusion"] != "").sum()) if "exclusion" in patients else 0
    return {
        "audit": {"id": config.id, "name": config.name, "period": config.period_label,
                  "period_start": config.period_start, "period_end": config.period_end,
                  "contact": config.contact},
        "config": {"path": str(config.path), "sha256": config.fingerprint(), "definition": config.raw},
        "data": data_files,
        "code": code_version(),
        "parameters": parameters or {},
        "created": now_utc(),
        "national": {"records_submitted": validated.n_submitted,
                     "records_analysed": int(len(analysed)),
                     "records_excluded": excluded,
                     "providers": int(analysed["provider_code"].nunique()),
                     "consultants": int(analysed["consultant_code"].nunique()),
                     "providers_without_cases": _providers_without_cases(validated, analysed)},
    }


def _providers_without_cases(validated: ValidatedData, analysed: pd.DataFrame) -> list[dict[str, Any]]:
    """Providers listed or submitting that have no record in any measure: no report, but a caveat nationally."""
    registry = validated.providers.set_index("provider_code")["provider_name"].astype(str)
    submitted = validated.patients["provider_code"].value_counts()
    codes = sorted((set(registry.index) | set(submitted.index)) - set(analysed["provider_code"].dropna()))
    return [{"provider_code": c, "provider_name": str(registry.get(c, c)), "records_submitted": int(submitted.get(c, 0))}
            for c in codes]


def _unit_names(patients: pd.DataFrame) -> pd.Series:
    """Each provider's name as most of its records give it (the extract may spell it more than one way)."""
    named = patients.dropna(subset=["provider_code", "provider_name"])
    return _most_common(named["provider_code"].astype(str), named["provider_name"].astype(str))


def _most_common(keys: pd.Series, values: pd.Series) -> pd.Series:
    """Each key's most frequent value (the first in sort order among ties, as ``Series.mode``), by key."""
    counts = pd.DataFrame({"key": keys.to_numpy(), "value": values.to_numpy()}).value_counts().rename("n")
    counts = counts.reset_index().sort_values(["key", "n", "value"], ascending=[True, False, True])
    return counts.drop_duplicates("key").set_index("key")["value"]

