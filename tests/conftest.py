"""Shared fixtures: small synthetic audits written to temporary folders, and report kernels."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from auditreport import speedups
from auditreport.data.synthetic import SyntheticSpec, definition_data, write

REPO = Path(__file__).resolve().parents[1]
SYNTHETIC_PARAMS = REPO / "params" / "synthetic.yaml"


@pytest.fixture(autouse=True)
def _no_figures_left_from_earlier_tests():
    """Every test starts with no Matplotlib figure open, so a test that checks its report code closes every
    figure it draws (``assert not plt.get_fignums()``) sees only its own, whatever ran before it."""
    import matplotlib.pyplot as plt

    plt.close("all")
    yield


def skip_outside_ci(condition: bool, reason: str) -> pytest.MarkDecorator:
    """Skip when ``condition`` holds (something a user's machine may legitimately lack: Linux's /proc, the
    fork server's pidfds, chromium), except in CI (``CI`` set), where the test runs and so fails instead:
    CI must run every test."""
    return pytest.mark.skipif(condition and not os.environ.get("CI"), reason=f"{reason} (CI runs it regardless)")


def make_audit(folder: Path, spec: SyntheticSpec, fmt: str = "parquet", **overrides) -> Path:
    """Write synthetic data and an audit definition pointing at it; return the definition's path."""
    paths = write(spec, folder / "data", fmt)
    definition = yaml.safe_load(SYNTHETIC_PARAMS.read_text())
    definition["data"].update(definition_data(paths))
    for section, values in overrides.items():
        definition[section].update(values)
    out = folder / "audit.yaml"
    out.write_text(yaml.safe_dump(definition, sort_keys=False))
    return out


@pytest.fixture(scope="session")
def small_audit(tmp_path_factory) -> Path:
    """A few providers, enough to exercise everything quickly.

    Published under small-numbers-everywhere: the end-to-end tests exercise suppression of unit results in
    every public output and the disclosure check of what was written (issue #15: the default policy,
    outcomes-in-full, is exercised by test_policy.py and test_sections.py)."""
    folder = tmp_path_factory.mktemp("small_audit")
    return make_audit(folder, SyntheticSpec(records=3000, providers=6, consultants=18, outliers_high=1,
                                            outliers_low=0, seed=7),
                      publication={"policy": "small-numbers-everywhere"})


@pytest.fixture(scope="session")
def built_small_audit(small_audit, tmp_path_factory):
    """The small audit built end to end (national stage, every report, site)."""
    from auditreport.pipeline import build

    reports = tmp_path_factory.mktemp("reports")
    summary = build(small_audit, reports, workers=2)
    assert not summary.failed, [(r.name, r.error) for r in summary.failed]
    return summary


def truth(audit_yaml: Path) -> dict:
    return json.loads((audit_yaml.parent / "data" / "truth.json").read_text())


@pytest.fixture
def start_kernel(tmp_path):
    """``start_kernel(manager_factory)``: a started kernel (IPC sockets and its log in tmp_path) and its
    manager, as a report job starts one; any still running is stopped after the test."""
    from jupyter_core.utils import run_sync

    managers = []

    def start(factory):
        km = factory(kernel_name="python3", transport="ipc", ip=str(tmp_path / "k"),
                     connection_file=str(tmp_path / "kernel.json"))
        with open(tmp_path / "kernel.log", "wb") as log:
            run_sync(km.start_kernel)(cwd=str(tmp_path), stdout=log, stderr=log)
        managers.append(km)
        return km

    yield start
    for km in managers:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)


@pytest.fixture(params=[True, False], ids=["speedups-on", "speedups-off"])
def speedups_on(request, monkeypatch) -> bool:
    """The test runs twice: with the speed-ups that patch third-party internals on, then off (stock
    papermill, nbclient, jupyter_client and WeasyPrint). Set in the environment, so worker processes
    and kernels see it too."""
    monkeypatch.setenv(speedups.ENV_VAR, "1" if request.param else "0")
    speedups.set_enabled(None)
    return request.param


#: The issue's example, on an extract of admissions without dates (a 0/1 death column, length of stay).
ADMISSIONS = {
    "audit": {"id": "admissions", "name": "Admissions audit", "period": {"label": "2025"}},
    "data": {"source": "records.csv"},
    "columns": {"patient_id": "id", "provider_code": "hospital"},
    "wording": {"activity": "admissions", "provider": "hospital", "population": "Wales"},
    "risk_factors": [
        {"name": "age80", "type": "categorical", "categories": [0, 1], "label": "Aged 80 or over",
         "labels": {0: "under 80", 1: "80 or over"}},
        {"name": "hmo", "type": "categorical", "categories": ["no", "yes"]},
        {"name": "type", "type": "categorical", "categories": ["elective", "emergency"]},
    ],
    "measures": [
        {"id": "mortality", "label": "In-hospital mortality", "kind": "proportion", "event": "died",
         "direction": "lower_is_better", "risk_model": {"method": "fit", "covariates": ["age80", "hmo", "type"]}},
        {"id": "long_stay", "label": "Stays over 14 days", "kind": "proportion", "event": "los > 14",
         "direction": "lower_is_better"},
        {"id": "los", "label": "Length of stay (observed / expected)", "kind": "ratio", "value": "los",
         "value_unit": "days", "overdispersion": "shmi",
         "risk_model": {"method": "fit", "family": "poisson", "covariates": ["hmo", "age80", "type"]}},
        {"id": "review", "label": "Senior review", "kind": "proportion", "type": "process", "event": "review",
         "eligible": 'type == "emergency"', "direction": "higher_is_better", "target": 0.9},
        {"id": "wait", "label": "Hours to theatre", "kind": "mean", "type": "process", "value": "hours",
         "direction": "lower_is_better", "published": False},
    ],
}
