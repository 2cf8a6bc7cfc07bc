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
    imputing = [f.name for f in config.risk_factors if f.missing != "exclude"]
    exclusion = patients["exclusion"] if "exclusion" in patients else pd.Series("", index=patients.index)
    rows = []
    groups = [("national", patients.index)] + [(str(code), idx) for code, idx in
                                                patients.groupby("provider_code", sort=True).groups.items()]
    for code, index in groups:
        grp, why = patients.loc[index], exclusion.loc[index]
        analysed = why == ""
        row: dict[str, object] = {"unit_id": code, "records_submitted": len(grp),
                                  "records_analysed": int(analysed.sum())}
        for reason, count in why[~analysed].value_counts().items():
            row[f"excluded: {reason}"] = int(count)
        row["records_excluded"] = int((~analysed).sum())
        # Records without a provider code count in national figures only; say how many.
        row["no provider code"] = int(grp["provider_code"].isna().sum())
        for key in keys:
            if key in grp:
                row[f"complete: {key}"] = float(grp[key].notna().mean()) if len(grp) else np.nan
        for name in imputing:
            row[f"imputed: {name}"] = int(grp.loc[analysed, name].isna().sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    # A reason absent from a provider is 0 of it; counts stay integers whichever providers have the reason.
    excluded = [c for c in table.columns if c.startswith("excluded: ")]
    table[excluded] = table[excluded].fillna(0).astype("int64")
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
