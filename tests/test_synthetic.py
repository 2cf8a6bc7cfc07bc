"""The synthetic audit: deterministic, sized by parameters, realistic, with its truth."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from auditreport.data.synthetic import SyntheticSpec, generate

from conftest import SYNTHETIC_PARAMS


def test_same_seed_same_data():
    a, _, ta = generate(SyntheticSpec(records=2000, providers=10, consultants=30, seed=3))
    b, _, tb = generate(SyntheticSpec(records=2000, providers=10, consultants=30, seed=3))
    pd.testing.assert_frame_equal(a, b)
    assert ta == tb
    c, _, _ = generate(SyntheticSpec(records=2000, providers=10, consultants=30, seed=4))
    assert not a.equals(c)


def test_default_shape_is_realistic():
    records, providers, truth = generate(SyntheticSpec())
    assert len(records) == 50_000 and records["patient_id"].is_unique
    assert providers.shape[0] == 120
    sizes = records.groupby("provider_code").size()
    assert sizes.max() / sizes.min() > 20  # very different sizes
    assert 400 <= records["consultant_code"].nunique() <= 600
    proc = pd.to_datetime(records["procedure_date"])
    death = pd.to_datetime(records["death_date"])
    mortality30 = ((death - proc).dt.days <= 30).mean()
    assert 0.02 < mortality30 < 0.06
    assert (death.dropna() >= proc[death.notna()]).all()
    # Censoring at the extract date: late patients have under a year of follow-up.
    follow = (pd.to_datetime(records["followup_end"]) - proc).dt.days
    assert follow.max() == 365 and follow.min() < 365
    assert records["asa"].isna().mean() > 0.01  # realistic missing values
    assert len(truth["outliers"]["high"]) == 3 and len(truth["outliers"]["low"]) == 2
    assert truth["model"]["coefficients"]["Intercept"] < 0


MORTALITY_COLUMNS = ["patient_id", "provider_code", "provider_name", "consultant_code", "procedure_date",
                     "death_date", "followup_end", "age", "sex", "asa", "urgency", "procedure_group", "diabetes",
                     "bmi"]


def test_other_measures_leave_the_mortality_data_alone():
    """The other measures' columns are drawn after every mortality draw: changing their settings (here every
    one of them) changes none of the mortality columns, nor mortality's truth."""
    spec = dict(records=3000, providers=12, consultants=30, seed=5)
    a, _, ta = generate(SyntheticSpec(**spec))
    b, _, tb = generate(SyntheticSpec(**spec, review_provider_sd=0.5, review_outliers_worse=1, ct_provider_sd=0.4,
                                      ct_outliers_better=0, los_provider_sd=0.2, los_outlier_log_ratio=1.0,
                                      hours_provider_sd=0.3, hours_outliers_worse=1))
    assert list(a.columns[:len(MORTALITY_COLUMNS)]) == MORTALITY_COLUMNS
    pd.testing.assert_frame_equal(a[MORTALITY_COLUMNS], b[MORTALITY_COLUMNS])
    assert ta["outliers"] == tb["outliers"] and ta["measures"]["mortality"] == tb["measures"]["mortality"]
    assert not a["los"].equals(b["los"])


@pytest.fixture(scope="module")
def default_audit():
    return generate(SyntheticSpec())


def test_truth_names_every_measure_of_the_audit_definition(default_audit):
    _, providers, truth = default_audit
    ids = [m["id"] for m in yaml.safe_load(SYNTHETIC_PARAMS.read_text())["measures"]]
    assert sorted(truth["measures"]) == sorted(ids)
    codes = set(providers["provider_code"])
    for measure, known in truth["measures"].items():
        assert known["outliers"], measure
        assert set(known["outliers"]) <= codes and set(known["outliers"].values()) <= {"worse", "better"}
        assert known["model"], measure
    # Mortality's are today's injected providers, high being worse; each other measure has its own.
    mortality = truth["measures"]["mortality"]["outliers"]
    assert mortality == {c: "worse" for c in truth["outliers"]["high"]} | {c: "better" for c in truth["outliers"]["low"]}
    for measure in ("senior_review", "ct_before_surgery", "los", "hours_to_surgery"):
        assert not set(truth["measures"][measure]["outliers"]) & set(mortality), measure


def test_new_columns_have_their_types_and_eligibility(default_audit):
    records, _, _ = default_audit
    emergency = records["urgency"] == "emergency"
    elective = records["urgency"] == "elective"
    for column in ("senior_review", "ct_before_surgery"):
        assert set(records[column].dropna().unique()) == {0, 1}, column
    # A CT only for emergency admissions: blank for every other recorded urgency, present for nearly all
    # emergencies (a few blanks, which a measure excludes as a missing value).
    assert records.loc[records["urgency"].isin(["elective", "urgent"]), "ct_before_surgery"].isna().all()
    assert 0.97 < records.loc[emergency, "ct_before_surgery"].notna().mean() < 1
    # Hours to surgery for urgent and emergency admissions only, positive, in tenths of an hour.
    hours = records["hours_to_surgery"]
    assert hours[elective].isna().all() and 0.97 < hours[~elective & records["urgency"].notna()].notna().mean() < 1
    assert (hours.dropna() > 0).all() and (hours.dropna() * 10 % 1 == 0).all()
    # Length of stay in whole days from 0 (day cases), a few blanks, long stays present.
    los = records["los"].dropna()
    assert (los >= 0).all() and (los == los.round()).all() and (los == 0).any()
    assert 0.99 < records["los"].notna().mean() < 1
    assert records["senior_review"].isna().mean() < 0.01


def test_national_figures_are_realistic(default_audit):
    records, _, _ = default_audit
    emergency = records["urgency"] == "emergency"
    assert 0.85 <= records["senior_review"].mean() <= 0.90  # a little under the standard of 0.90
    assert 0.80 <= records.loc[emergency, "ct_before_surgery"].mean() <= 0.90
    los = records["los"].dropna().astype(float)
    assert 4 <= los.median() <= 6 and 0.05 <= (los > 14).mean() <= 0.12
    # Emergencies stay longer and are operated on sooner than urgent admissions.
    assert los[emergency].mean() > 1.5 * los[records["urgency"] == "elective"].mean()
    hours = records.groupby("urgency")["hours_to_surgery"].median()
    assert 4 <= hours["emergency"] <= 8 and 18 <= hours["urgent"] <= 28


def test_injected_effects_are_visible_in_the_raw_data(default_audit):
    """Each injected provider is on its stated side of the national figure in the crude data, by more than
    three standard errors (the crude figures, so a rough check; case mix is the same everywhere)."""
    records, _, truth = default_audit
    eligible = {"ct_before_surgery": records["urgency"] == "emergency",
                "hours_to_surgery": records["urgency"].isin(["urgent", "emergency"])}
    values = {"senior_review": records["senior_review"], "ct_before_surgery": records["ct_before_surgery"],
              "los": records["los"], "long_stay": (records["los"] > 14).astype("boolean"),
              "hours_to_surgery": records["hours_to_surgery"]}
    # Higher is better for the two process proportions, lower for the rest.
    higher_is_better = {"senior_review", "ct_before_surgery"}
    for measure, value in values.items():
        keep = eligible.get(measure, pd.Series(True, index=records.index)) & value.notna()
        value = value[keep].astype(float)
        by_provider = value.groupby(records.loc[keep, "provider_code"]).agg(["mean", "size"])
        national = value.mean()
        for code, side in truth["measures"][measure]["outliers"].items():
            mean, n = by_provider.loc[code]
            z = (mean - national) / (value.std() / n ** 0.5)
            worse = -z if measure in higher_is_better else z
            # Stays over 14 days inherit the longer stays at a smaller effect: beyond 2 SE, not 3.
            assert (worse if side == "worse" else -worse) > (2 if measure == "long_stay" else 3), (measure, code, z)
    # Senior review: the injected providers are well below the standard of 0.90.
    review = records.groupby("provider_code")["senior_review"].mean()
    assert (review[list(truth["measures"]["senior_review"]["outliers"])] < 0.82).all()
