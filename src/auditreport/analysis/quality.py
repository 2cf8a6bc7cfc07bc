"""Data quality and case mix, per provider and nationally.

Audit data are incomplete in ways that matter for fairness: a provider that
leaves ASA grade blank has it imputed as the lowest-risk level and so looks
worse after adjustment. These tables put completeness, imputation and
exclusions beside every result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditreport.config import AuditConfig

AGE_BANDS = [0, 50, 60, 70, 80, 200]
AGE_LABELS = ["under 50", "50-59", "60-69", "70-79", "80 and over"]


#: Mapped fields whose completeness is reported (besides the risk factors); a blank death date means alive.
COMPLETENESS_FIELDS = ("consultant_code", "procedure_date", "followup_end")


def data_quality(config: AuditConfig, patients: pd.DataFrame) -> pd.DataFrame:
    """One row per provider (and 'national'): submitted, excluded by reason, completeness, imputed.

    Completeness is reported only for the fields the audit maps (a consultant column the extract does not have
    is not 0% complete: it is not there) and for its risk factors. ``imputed: <factor>`` counts the analysed
    records (no exclusion reason) whose value is missing and is filled in by the factor's rule (every rule but
    'exclude', whose records the measures leave out and count in the exclusions table).
    """
    keys = [k for k in COMPLETENESS_FIELDS if k in config.columns] + [f.name for f in config.risk_factors]
    keys = [k for k in keys if k in patients]
    imputing = [f.name for f in config.risk_factors if f.missing != "exclude"]
    exclusion = (patients["exclusion"] if "exclusion" in patients else pd.Series("", index=patients.index)).astype(str)
    analysed = exclusion == ""
    # One grouped pass per kind of figure (no loop over providers): the national row, then each provider's.
    frame = pd.DataFrame({"unit": patients["provider_code"].astype("string"), "analysed": analysed,
                          "no provider code": patients["provider_code"].isna()}, index=patients.index)
    for key in keys:
        frame[f"complete: {key}"] = patients[key].notna()
    for name in imputing:
        frame[f"imputed: {name}"] = analysed & patients[name].isna()
    reasons = sorted(set(exclusion[~analysed]))
    for reason in reasons:
        frame[f"excluded: {reason}"] = exclusion == reason
    counts = [c for c in frame.columns if c not in ("unit",) and not c.startswith("complete: ")]
    shares = [c for c in frame.columns if c.startswith("complete: ")]
    national = pd.concat([frame[counts].sum().to_frame("national").T, frame[shares].mean().to_frame("national").T],
                         axis=1)
    national.insert(0, "records_submitted", len(frame))
    grouped = frame.groupby("unit", sort=True)
    providers = pd.concat([grouped[counts].sum(), grouped[shares].mean()], axis=1)
    providers.insert(0, "records_submitted", grouped.size())
    table = pd.concat([national, providers])
    table = table.rename(columns={"analysed": "records_analysed"})
    table["records_excluded"] = table["records_submitted"] - table["records_analysed"]
    ints = ["records_submitted", "records_analysed", "records_excluded", "no provider code",
            *(c for c in table.columns if c.startswith(("excluded: ", "imputed: ")))]
    table[ints] = table[ints].astype("int64")
    table[shares] = table[shares].astype(float)
    order = ["records_submitted", "records_analysed", *(f"excluded: {r}" for r in reasons), "records_excluded",
             "no provider code", *shares, *(f"imputed: {n}" for n in imputing)]
    table = table[order].rename_axis("unit_id").reset_index()
    table["unit_id"] = table["unit_id"].astype(str)
    return table


def case_mix(config: AuditConfig, patients: pd.DataFrame, risk: pd.DataFrame | None) -> pd.DataFrame:
    """Share of records in each category of each risk factor, per provider and nationally.

    Numeric factors are shown in bands (age in clinical bands, others in national quintiles), over the analysed
    records (no exclusion reason); when the audit has an adjusted proportion, the first one's predicted risk
    (``risk``: its records' ``p``) in national tenths, so a provider's risk profile can be read against the
    country's.
    """
    analysed = patients[patients["exclusion"] == ""] if "exclusion" in patients else patients
    frame = pd.DataFrame({"provider_code": analysed["provider_code"]})
    for f in config.risk_factors:
        s = analysed[f.name]
        if f.kind == "categorical":
            frame[f.name] = s.astype("string").fillna("missing")
        elif f.name == "age":
            frame[f.name] = pd.cut(s, AGE_BANDS, right=False, labels=AGE_LABELS).astype("string").fillna("missing")
        else:
            frame[f.name] = _quantile_bands(s, 5)
    long = frame.melt(id_vars="provider_code", var_name="variable", value_name="category")
    if risk is not None and len(risk):
        bands = pd.DataFrame({"provider_code": risk["provider_code"].to_numpy(),
                              "variable": "predicted risk (national tenths)",
                              "category": _quantile_bands(risk["p"], 10, percent=True).to_numpy()})
        long = pd.concat([long, bands], ignore_index=True)
    long = long.assign(provider_code=long["provider_code"].astype("string"), category=long["category"].astype(str))
    national = long.assign(provider_code="national")
    long = pd.concat([national, long.dropna(subset=["provider_code"])], ignore_index=True)
    counts = long.groupby(["provider_code", "variable", "category"], sort=False).size().rename("n").reset_index()
    counts["share"] = counts["n"] / counts.groupby(["provider_code", "variable"])["n"].transform("sum")
    counts["provider_code"] = counts["provider_code"].astype(str)
    counts["n"] = counts["n"].astype("int64")
    return counts.rename(columns={"provider_code": "unit_id"})


def _quantile_bands(s: pd.Series, q: int, percent: bool = False) -> pd.Series:
    values = s.astype(float)
    edges = np.unique(np.nanquantile(values, np.linspace(0, 1, q + 1)))
    if len(edges) < 2:
        return pd.Series("all", index=s.index, dtype="string")
    scale, unit = (100.0, "%") if percent else (1.0, "")
    labels = [f"{i + 1:02d}: {edges[i] * scale:.3g}{unit} to {edges[i + 1] * scale:.3g}{unit}"
              for i in range(len(edges) - 1)]
    bands = pd.cut(values, edges, labels=labels, include_lowest=True, duplicates="drop")
    return bands.astype("string").fillna("missing")
