"""The synthetic audit: deterministic, sized by parameters, realistic, with its truth."""

from __future__ import annotations

import pandas as pd

from auditreport.data.synthetic import SyntheticSpec, generate


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
