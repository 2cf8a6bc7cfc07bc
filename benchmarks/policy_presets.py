"""What each publication preset publishes: units with their own published results and cells suppressed.

Runs the national stage (no reports) on one audit definition once per preset, with everything else as the
definition says, and prints per measure and level how many units have their own published result, how many
are withheld (small-numbers rule) or pooled as low volume, and how many breakdown cells (case mix, data
quality, exclusions) are suppressed. The figures for the demo are in benchmarks/RESULTS.md.

    python benchmarks/policy_presets.py params/synthetic.yaml
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from auditreport.analysis.national import run_national
from auditreport.config import load_config
from auditreport.data.validation import load_validated
from auditreport.rules.disclosure import LOW_VOLUME_ID, POLICIES


def preset_effect(definition_path: Path, preset: str) -> tuple[pd.DataFrame, dict]:
    """The public indicator table's units by measure and level under ``preset``, and breakdown cells hidden."""
    raw = yaml.safe_load(definition_path.read_text())
    raw = copy.deepcopy(raw)
    raw.setdefault("publication", {})["policy"] = preset
    for measure in raw.get("measures", []):
        measure.pop("publication_policy", None)
    base = definition_path.resolve().parent
    for key, value in list(raw["data"].items()):
        if isinstance(value, str) and key != "extract_date" and not Path(value).is_absolute():
            raw["data"][key] = str((base / value).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / definition_path.name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        config = load_config(path)
        results = run_national(config, load_validated(config))
    public = results.indicators_public
    headline = {m["id"]: m["headline"] for m in results.metadata["measures"]}
    rows = public[(public["level"] != "national") & (public["unit_id"] != LOW_VOLUME_ID)
                  & (public["statistic"] == public["measure"].map(headline))]
    table = rows.groupby(["measure", "level"]).agg(
        units=("unit_id", "nunique"),
        published=("value", lambda v: int(v.notna().sum())),
        withheld=("suppressed", "sum"),
        low_volume=("low_volume", "sum"),
    ).reset_index()
    every = public[(public["level"] != "national") & (public["unit_id"] != LOW_VOLUME_ID)]
    table.attrs["rows_suppressed"] = int(every["suppressed"].sum())
    table.attrs["rows"] = len(every)
    return table, results.metadata.get("breakdowns", {}).get("cells_suppressed", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("definition", type=Path)
    args = parser.parse_args()
    for preset in POLICIES:
        table, cells = preset_effect(args.definition, preset)
        print(f"\n## {preset}\n")
        print(table.to_string(index=False))
        print(f"\nunit-result rows suppressed: {table.attrs['rows_suppressed']} of {table.attrs['rows']}")
        print("breakdown cells suppressed: " + ", ".join(f"{k} {v}" for k, v in cells.items()))


if __name__ == "__main__":
    main()
