"""Real example data sets for the demo and the tests, written from files installed with our dependencies.

The NCCTG lung cancer data (Loprinzi CL et al., J Clin Oncol 1994;12:601-607; R ``survival::lung``) ship
with lifelines as ``lifelines/datasets/lung.csv``, so no network is needed. lifelines has already recoded
R's ``status`` (1 = censored, 2 = dead) to 0/1 with 1 = dead, and keeps R's ``sex`` (1 = male, 2 = female);
``time`` is days from enrolment to death or censoring. 228 patients, 165 deaths, 18 institutions (``inst``);
one patient has no institution.

The demo (``auditreport demo``) builds in any folder from the package alone: it writes the audit definitions
installed with the package (``auditreport/demo/*.yaml``) to ``params/`` and their data to ``data/`` under that
folder, so the reports record definitions and data that stay beside them (``auditreport reproduce`` reads both).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import yaml

from auditreport.data.synthetic import DATA_FILES, SyntheticSpec
from auditreport.data.synthetic import write as write_synthetic
from auditreport.resources import demo_definition

log = logging.getLogger(__name__)

EXAMPLES = ("lung",)
#: The demo's audits, in build order (definitions installed as ``auditreport/demo/<name>.yaml``).
DEMO_AUDITS = ("synthetic", "lung")
#: The small demo: one synthetic audit of three providers (seven reports), enough to show that an installation
#: finds every notebook, template and script it needs; written as ``params/synthetic-small.yaml``.
SMALL_DEMO = "synthetic-small"
SMALL_SPEC = SyntheticSpec(records=2000, providers=3, consultants=9, outliers_high=1, outliers_low=0)


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


def write_demo(folder: str | Path, *, small: bool = False, force: bool = False) -> list[Path]:
    """Write the demo's audit definitions and data under ``folder``; return the definitions to build, in order.

    Definitions go to ``folder/params/<name>.yaml`` and data to ``folder/data/<name>/`` (the definitions name
    their data relative to themselves, as ``../data/<name>/``). A definition already there is kept (it may be
    the user's edited copy; a warning says so when it differs from the package's); data already there are
    kept unless ``force``. ``small`` writes only the small synthetic audit (``SMALL_SPEC``).
    """
    folder = Path(folder)
    names = (SMALL_DEMO,) if small else DEMO_AUDITS
    definitions = []
    for name in names:
        definition = folder / "params" / f"{name}.yaml"
        _write_definition(definition, _demo_definition_text(name))
        data = folder / "data" / name
        if name == "lung":
            if force or not (data / "records.csv").exists():
                write_example("lung", data)
        elif force or not (data / "records.parquet").exists():
            write_synthetic(SMALL_SPEC if name == SMALL_DEMO else SyntheticSpec(), data)
        definitions.append(definition)
    return definitions


def _demo_definition_text(name: str) -> str:
    if name != SMALL_DEMO:
        return demo_definition(name).read_text(encoding="utf-8")
    definition = yaml.safe_load(demo_definition("synthetic").read_text(encoding="utf-8"))
    definition["audit"]["id"] = "synthetic-surgery-small"
    definition["audit"]["name"] += " (small demo)"
    for key, name in DATA_FILES.items():  # the synthetic audit's files (source, providers, consultants, ...)
        if key in definition["data"]:
            suffix = "parquet" if key == "source" else "csv"
            definition["data"][key] = f"../data/{SMALL_DEMO}/{name}.{suffix}"
    return ("# The small demo (auditreport demo --small): the synthetic audit (params/synthetic.yaml) with three\n"
            "# providers, a quick check that an installation builds every kind of output.\n"
            + yaml.safe_dump(definition, sort_keys=False))


def _write_definition(path: Path, text: str) -> None:
    if path.exists():
        if path.read_text(encoding="utf-8") != text:
            log.warning("%s: kept as it is (it differs from the demo's definition); move it away to build the "
                        "demo's own", path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
