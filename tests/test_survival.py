"""Survival functions against R survival 3.5-3 figures (METHODS.md section 6) and lifelines."""

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung

from auditreport.stats.survival import CI_TRANSFORMS, kaplan_meier, survival_at


@pytest.fixture(scope="module")
def lung() -> pd.DataFrame:
    d = load_lung()
    # lifelines already recodes R's status (1 = censored, 2 = dead) to 0/1.
    assert set(d["status"].unique()) == {0, 1}
    assert len(d) == 228 and d["status"].sum() == 165
    return d


def test_km_table_shape(lung):
    km = kaplan_meier(lung["time"], lung["status"])
    assert list(km.columns) == ["time", "at_risk", "events", "censored", "survival", "lower", "upper"]
    assert km.iloc[0]["time"] == 0 and km.iloc[0]["survival"] == 1 and km.iloc[0]["at_risk"] == 228
    assert km["events"].sum() == 165 and km["censored"].sum() == 63
    assert (np.diff(km["survival"]) <= 0).all()


@pytest.mark.parametrize("transform", CI_TRANSFORMS)
def test_km_bounds_inside_unit_interval(lung, transform):
    km = kaplan_meier(lung["time"], lung["status"], ci_transform=transform)
    ok = km[["lower", "upper"]].dropna()
    assert ((ok["lower"] >= 0) & (ok["upper"] <= 1) & (ok["lower"] <= ok["upper"])).all()
    assert (km["lower"] <= km["survival"] + 1e-12).all() and (km["survival"] <= km["upper"] + 1e-12).all()


def test_km_matches_lifelines_estimate_and_loglog_ci(lung):
    ours = kaplan_meier(lung["time"], lung["status"], ci_transform="log-log")
    kmf = KaplanMeierFitter().fit(lung["time"], lung["status"])
    np.testing.assert_allclose(ours["time"], kmf.survival_function_.index)
    np.testing.assert_allclose(ours["survival"], kmf.survival_function_.iloc[:, 0], atol=1e-12)
    np.testing.assert_allclose(ours["lower"], kmf.confidence_interval_.iloc[:, 0], atol=1e-12)
    np.testing.assert_allclose(ours["upper"], kmf.confidence_interval_.iloc[:, 1], atol=1e-12)


def test_survival_at_matches_r(lung):
    # R: summary(survfit(Surv(time, status) ~ 1, lung), times = c(180, 365))
    s = survival_at(lung["time"], lung["status"], [180, 365])
    assert round(s.loc[0, "survival"], 3) == 0.722
    assert round(s.loc[1, "survival"], 3) == 0.409
    assert round(s.loc[1, "lower"], 4) == 0.3447
    assert round(s.loc[1, "upper"], 3) == 0.486
    assert list(s["at_risk"]) == [160, 65]


def test_survival_at_edges(lung):
    s = survival_at(lung["time"], lung["status"], [0, 1022, 1023])
    assert s.loc[0, "survival"] == 1.0
    assert s.loc[1, "survival"] == pytest.approx(0.050346, abs=1e-6)  # last follow-up is still estimated
    assert np.isnan(s.loc[2, "survival"]) and s.loc[2, "at_risk"] == 0


def test_right_continuity_and_at_risk():
    s = survival_at([1, 2, 2, 3], [1, 1, 0, 1], [1.999, 2, 2.5])
    np.testing.assert_allclose(s["survival"], [0.75, 0.5, 0.5])
    assert list(s["at_risk"]) == [3, 3, 1]


def test_bad_event_coding_rejected():
    with pytest.raises(ValueError):
        kaplan_meier([1, 2], [1, 2])
