"""Real example data sets for the demo and the tests, written from files installed with our dependencies.

The NCCTG lung cancer data (Loprinzi CL et al., J Clin Oncol 1994;12:601-607; R ``survival::lung``) ship
with lifelines as ``lifelines/datasets/lung.csv``, so no network is needed. lifelines has already recoded
R's ``status`` (1 = censored, 2 = dead) to 0/1 with 1 = dead, and keeps R's ``sex`` (1 = male, 2 = female);
``time`` is days from enrolment to death or censoring. 228 patients, 165 deaths, 18 institutions (``inst``);
one patient has no institution.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

EXAMPLES = ("lung",)


def lung_records() -> pd.DataFrame:
    """The lung data as an audit extract: a patient id, the institution as provider code, and the columns used."""
    from lifelines.datasets import load_lung

    lung = load_lung()
    out = pd.DataFrame({
        "patient_id": [f"L{i + 1:03d}" for i in range(len(lung))],
        # Institution codes are whole numbers stored as floats (NaN for the one patient without one).
        "inst": lung["inst"].astype("Int64").astype("string"),
        "time": lung["time"].astype(int),
        "status": lung["status"].astype(int),
        "age": lung["age"].astype(int),
        "sex": lung["sex"].astype(int),
        "ph.ecog": lung["ph.ecog"].astype("Int64"),
        "ph.karno": lung["ph.karno"].astype("Int64"),
        "wt.loss": lung["wt.loss"].astype("Int64"),
    })
    return out


def write_example(name: str, out_dir: str | Path) -> dict[str, Path]:
    """Write an example audit's ``records.csv`` and ``providers.csv`` into ``out_dir``; return their paths."""
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r} (known: {', '.join(EXAMPLES)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = lung_records()
    codes = sorted(records["inst"].dropna().unique(), key=int)
    providers = pd.DataFrame({"provider_code": codes, "provider_name": [f"Institution {c}" for c in codes]})
    paths = {"records": out / "records.csv", "providers": out / "providers.csv"}
    records.to_csv(paths["records"], index=False)
    providers.to_csv(paths["providers"], index=False)
    return paths
