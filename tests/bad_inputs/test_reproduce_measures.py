"""``reproduce`` names what differs by measure: a figure by measure, statistic, level and unit; a measure's
national figures or risk model by its id. Small made-up bundles; the whole command runs in test_reproduce.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd

from auditreport.reproduce import Reproduction, _compare_measures, _row_differences

NAN = float("nan")


def _table(value_a: float) -> pd.DataFrame:
    return pd.DataFrame({"measure": ["mortality", "mortality", "internal"], "statistic": ["rate", "rate", "rate"],
                         "level": ["national", "provider", "provider"], "unit_id": ["national", "A", "A"],
                         "value": [0.1, NAN, value_a], "flag": ["", "", "as_expected"]})


def test_a_figure_that_differs_is_named_by_measure_statistic_level_and_unit():
    assert _row_differences(_table(0.25), _table(0.25)) == []  # missing values on both sides are equal
    assert _row_differences(_table(0.25), _table(0.3)) == [
        "internal/rate/provider/A value: published 0.25, recomputed 0.3"]
    fewer = _table(0.25).iloc[:2]
    assert _row_differences(_table(0.25), fewer) == ["row internal/rate/provider/A published but not recomputed"]


_MEASURES = [{"id": "mortality", "national": {"cases": 400, "events": 30, "value": 0.075},
              "cusum": {"signals": 2, "seconds": 0.5}},
             {"id": "los", "national": {"cases": 400, "sum": 2508.0, "value": 1.0}, "cusum": None}]
_MODELS = {"mortality": {"coefficients": {"Intercept": -2.5, "age": 0.03}, "seconds": 1.2},
           "los": {"coefficients": {"Intercept": 1.7}, "family": "poisson"}}


def _bundle(folder: Path, measures: list[dict], models: dict) -> Path:
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({"measures": measures}))
    (folder / "model.json").write_text(json.dumps({"measures": models}))
    return folder


def test_each_measures_national_figures_and_model_are_compared(tmp_path):
    published = _bundle(tmp_path / "published", _MEASURES, _MODELS)
    measures, models = copy.deepcopy(_MEASURES), copy.deepcopy(_MODELS)
    measures[0]["cusum"]["seconds"] = 9.9  # how long a step took is not a result
    models["mortality"]["seconds"] = 7.0
    result = Reproduction(tmp_path)
    _compare_measures(published, _bundle(tmp_path / "same", measures, models), result)
    assert result.differences == [] and result.measures_checked == 2

    measures[1]["national"]["sum"] = 2509.0
    models["mortality"]["coefficients"]["age"] = 0.031
    result = Reproduction(tmp_path)
    _compare_measures(published, _bundle(tmp_path / "changed", measures + [{"id": "extra"}], models), result)
    assert result.differences == [
        "bundle/metadata.json: measure extra recomputed but not published",
        "bundle/model.json: measure mortality: the risk model differs",
        "bundle/metadata.json: measure los: national differ"]
