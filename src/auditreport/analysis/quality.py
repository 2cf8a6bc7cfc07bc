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


def data_quality(config: AuditConfig, patients: pd.DataFrame, imputed: pd.DataFrame) -> pd.DataFrame:
    """One row per provider (and 'national'): submitted, excluded by reason, completeness, imputed.

    ``imputed`` is a boolean frame aligned with the analysed cohort (rows of
    ``patients`` without an exclusion), one column per risk factor.
    """
    keys = ["consultant_code"] + [f.name for f in config.risk_factors]
    if "death_date" in config.columns:
        keys.append("death_date")
    rows = []
    analysed = patients["exclusion"] == ""
    imputed = imputed.reindex(patients.index[analysed]) if len(imputed) else imputed
    for code, grp in [("national", patients)] + list(patients.groupby("provider_code", sort=True)):
        row: dict[str, object] = {"unit_id": code, "records_submitted": len(grp),
                                  "records_analysed": int((grp["exclusion"] == "").sum())}
        for reason, count in grp.loc[grp["exclusion"] != "", "exclusion"].value_counts().items():
            row[f"excluded: {reason}"] = int(count)
        row["records_excluded"] = int((grp["exclusion"] != "").sum())
        # Records without a provider code count in national figures only; say how many.
        row["no provider code"] = int(grp["provider_code"].isna().sum())
        for key in keys:
            if key == "death_date":
                continue  # blank means alive, not missing
            if key in grp:
                row[f"complete: {key}"] = float(grp[key].notna().mean()) if len(grp) else np.nan
        sub = imputed.loc[imputed.index.intersection(grp.index)]
        for col in sub.columns:
            row[f"imputed: {col}"] = int(sub[col].sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    # A reason absent from a provider is 0 of it; counts stay integers whichever providers have the reason.
    excluded = [c for c in table.columns if c.startswith("excluded: ")]
    table[excluded] = table[excluded].fillna(0).astype("int64")
    return table


def case_mix(config: AuditConfig, cohort: pd.DataFrame) -> pd.DataFrame:
    """Share of patients in each category of each risk factor, per provider and nationally.

    Numeric factors are shown in bands (age in clinical bands, others in
    national quintiles); the predicted risk in national tenths, so a provider's
    risk profile can be read against the country's.
    """
    frame = pd.DataFrame({"provider_code": cohort["provider_code"]})
    for f in config.risk_factors:
        s = cohort[f.name]
        if f.kind == "categorical":
            frame[f.name] = s.astype("string").fillna("missing")
        elif f.name == "age":
            frame[f.name] = pd.cut(s, AGE_BANDS, right=False, labels=AGE_LABELS).astype("string").fillna("missing")
        else:
            frame[f.name] = _quantile_bands(s, 5)
    frame["predicted risk (national tenths)"] = _quantile_bands(cohort["p"], 10, percent=True)
    long = frame.melt(id_vars="provider_code", var_name="variable", value_name="category")
    national = long.assign(provider_code="national")
    long = pd.concat([national, long], ignore_index=True)
    counts = long.groupby(["provider_code", "variable", "category"], sort=False).size().rename("n").reset_index()
    counts["share"] = counts["n"] / counts.groupby(["provider_code", "variable"])["n"].transform("sum")
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
