"""Publication policies and the low-volume group (issue #15, contract sections 1, 2 and 4).

The policy decides whether a measure's unit results are suppressed (small-numbers-everywhere) or published in
full (outcomes-in-full); the minimum volume pools a level's small units into one ``low-volume`` unit computed
from their records. The pooled figures are checked against a recomputation from the records by hand, and the
leak a status and limits open under suppression is attacked before and after it was closed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps
from test_config import _write
from test_national import MEASURES, _measures_audit, _measures_extract

from auditreport.analysis.measures import rate_statistics
from auditreport.analysis.national import run_national
from auditreport.config import load_config
from auditreport.data.measures import measure_records
from auditreport.data.validation import load_validated
from auditreport.errors import ConfigError
from auditreport.rules.disclosure import (
    BOUNDING,
    DERIVED,
    LOW_VOLUME_ID,
    POLICIES,
    suppress_indicators,
    suppress_small_numbers,
)
from auditreport.stats.overdispersion import NONE

# Configuration ---------------------------------------------------------------------------------------------


def test_publication_defaults_and_overrides(tmp_path):
    config = load_config(_write(tmp_path, lambda d: None))
    pub = config.publication
    assert (pub.policy, pub.threshold, pub.minimum_volume) == ("outcomes-in-full", 7,
                                                               {"provider": 0, "consultant": 10})
    assert config.suppression_threshold == 7 and config.publish_consultants is True  # read-only, as before
    assert config.measure_policy("mortality") == "outcomes-in-full"

    def mutate(d):
        d["publication"].update(policy="small-numbers-everywhere", suppression_threshold=5,
                                minimum_volume={"provider": 25})
        d["outcome"]["label"] = "30-day mortality"
    config = load_config(_write(tmp_path, mutate))
    assert config.publication.minimum_volume == {"provider": 25, "consultant": 10}
    assert config.measure_policies == {"mortality": "small-numbers-everywhere",
                                       "survival": "small-numbers-everywhere"}
    assert config.suppression_threshold == 5


def test_a_measure_overrides_the_audit_policy(tmp_path):
    measures = [dict(MEASURES[2], publication_policy="small-numbers-everywhere"), MEASURES[3]]
    config = load_config(_measures_audit(tmp_path, measures=measures))
    assert config.measure("ct_scan").publication_policy == "small-numbers-everywhere"
    assert config.measure_policies == {"ct_scan": "small-numbers-everywhere", "review": "outcomes-in-full"}


@pytest.mark.parametrize("mutate, key, words", [
    (lambda d: d["publication"].update(policy="everything"), "publication.policy",
     "must be one of outcomes-in-full, small-numbers-everywhere, got 'everything'"),
    (lambda d: d["publication"].update(policy=7), "publication.policy", "must be text"),
    (lambda d: d["publication"].update(minimum_volume={"consultant": -1}), "publication.minimum_volume.consultant",
     "0 or more"),
    (lambda d: d["publication"].update(minimum_volume={"consultant": 2.5}), "publication.minimum_volume.consultant",
     "whole number"),
    (lambda d: d["publication"].update(minimum_volume={"trust": 5}), "publication.minimum_volume.trust",
     "unknown key (allowed: consultant, provider)"),
    (lambda d: d["publication"].update(minimum_volume=10), "publication.minimum_volume", "must be a mapping"),
])
def test_publication_mistakes_name_the_key(tmp_path, mutate, key, words):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value) and words in str(err.value)


def test_a_measure_policy_must_be_a_preset(tmp_path):
    path = _measures_audit(tmp_path, measures=[dict(MEASURES[3], publication_policy="none")])
    with pytest.raises(ConfigError, match=r"key 'measures\[0\] \(review\).publication_policy': must be one of "
                                          r"outcomes-in-full, small-numbers-everywhere, got 'none'"):
        load_config(path)


def test_every_policy_has_a_rationale_with_its_source():
    assert set(POLICIES) == {"outcomes-in-full", "small-numbers-everywhere"}
    assert not POLICIES["outcomes-in-full"].suppress_outcomes and POLICIES["small-numbers-everywhere"].suppress_outcomes
    full = POLICIES["outcomes-in-full"].rationale
    assert all(source in full for source in ("National Adult Cardiac Surgery Audit", "Congenital Heart Disease",
                                             "SHMI", "small-numbers convention"))
    assert "NHS Digital" in POLICIES["small-numbers-everywhere"].rationale


# Disclosure: the policy, and leak 1 ---------------------------------------------------------------------------


def _provider_table(events: list[int], cases: list[int], target: float = 0.05) -> pd.DataFrame:
    """One proportion measure's rows (national and providers P1...) as the national stage computes them."""
    units = pd.Index([f"P{i + 1}" for i in range(len(events))])
    totals = pd.DataFrame({"cases": np.array(cases, float), "observed": np.array(events, float)}, index=units)
    rows = rate_statistics(totals, target, NONE, status=True)
    rows["level"], rows["parent_id"] = "provider", ""
    nat = rate_statistics(pd.DataFrame({"cases": [float(sum(cases))], "observed": [float(sum(events))]},
                                       index=pd.Index(["national"])), target, NONE, status=False)
    nat["level"], nat["parent_id"] = "national", ""
    table = pd.concat([nat, rows], ignore_index=True)
    table["measure"], table["statistic"] = "mortality", "rate"
    return table


def test_outcomes_in_full_publishes_every_unit_result():
    table = _provider_table([6, 0, 30, 41, 3], [40, 60, 500, 700, 90])
    full = suppress_indicators(table, 7, {"mortality": "outcomes-in-full"})
    assert not full["suppressed"].any()
    pd.testing.assert_frame_equal(full.drop(columns="suppressed"), table)
    # The same table under the small-numbers policy (and with no policy: the conservative rule) hides P1 and P5.
    for policies in ({"mortality": "small-numbers-everywhere"}, None, {"other": "outcomes-in-full"}):
        hidden = suppress_indicators(table, 7, policies).set_index("unit_id")
        assert hidden.loc[["P1", "P5"], "suppressed"].all()
        assert hidden.loc[["P1", "P5"], "numerator"].isna().all()


def _consistent_counts(published: pd.Series, target: float) -> set[int]:
    """The attack: every event count that, with the published records and target, gives the published row.

    The attacker recomputes the row for each candidate count (the funnel limits, the flag) and keeps the
    candidates that agree with every figure published (blank ones say nothing).
    """
    n = int(published["denominator"])
    out = set()
    for c in range(n + 1):
        row = rate_statistics(pd.DataFrame({"cases": [float(n)], "observed": [float(c)]}), target, NONE).iloc[0]
        agree = all(published[col] != published[col] or np.isclose(row[col], published[col])
                    for col in ("value", "lower95", "upper95", *BOUNDING[2:]))
        if agree and (published["flag"] in ("", None) or row["flag"] == published["flag"]):
            out.add(c)
    return out


def test_leak_1_a_status_and_limits_no_longer_bound_a_suppressed_count():
    """P1 has 6 events in 40 cases against 5%: an alert. Suppressed, its count is one of 1 to 7; with its status
    and limits published, as before this issue, the attacker narrows it to the two counts that make an alert;
    with them blanked, every count from 0 to 40 fits what is published."""
    table = _provider_table([6, 0, 30, 41, 3], [40, 60, 500, 700, 90])
    assert table.loc[table["unit_id"] == "P1", "flag"].iat[0] == "alert_high"
    now = suppress_small_numbers(table, 7).set_index("unit_id")
    p1 = now.loc["P1"]
    assert bool(p1["suppressed"]) and p1["denominator"] == 40 and p1["flag"] == ""
    assert p1[list(BOUNDING[1:])].isna().all() and p1[[c for c in DERIVED]].isna().all()
    # Before: the old rule blanked the counts and the values but kept the status and the limits.
    before = now.copy()
    for col in BOUNDING:
        before.loc["P1", col] = table.set_index("unit_id").loc["P1", col]
    bounded = _consistent_counts(before.loc["P1"], 0.05) & set(range(1, 8))
    assert bounded == {6, 7}  # the alert says 6 or more: the hidden 6 is one of two
    assert _consistent_counts(now.loc["P1"], 0.05) == set(range(0, 41))  # now: nothing narrows it


# Low volume --------------------------------------------------------------------------------------------------

SMALL = {"H20": 5, "H21": 8, "H22": 12}  # providers added to the extract with so few admissions


def _extract_with_small_units() -> pd.DataFrame:
    extract = _measures_extract()
    start = 0
    for code, n in SMALL.items():
        rows = extract.index[start:start + n]
        extract.loc[rows, "provider_code"] = code
        extract.loc[rows, "provider_name"] = f"Hospital {code[1:]}"
        extract.loc[rows, "consultant_code"] = f"C{code[1:]}0"
        start += n
    return extract


@pytest.fixture(scope="module")
def pooled_runs(tmp_path_factory):
    """The same audit with providers and consultants below 20 admissions pooled, and with no pooling."""
    runs = {}
    measures = [dict(m, publication_policy="small-numbers-everywhere") if m["id"] == "review" else m
                for m in MEASURES]
    for name, minimum in (("pooled", {"provider": 20, "consultant": 20}), ("none", {"provider": 0, "consultant": 0})):
        folder = tmp_path_factory.mktemp(name)
        config = load_config(_measures_audit(folder, measures=measures, extract=_extract_with_small_units(),
                                             publication={"minimum_volume": minimum}))
        runs[name] = (config, run_national(config))
    return runs


def _pool_rows(results, measure, level="provider"):
    t = results.indicators
    return t[(t["measure"] == measure) & (t["level"] == level) & (t["unit_id"] == LOW_VOLUME_ID)].set_index(
        "statistic")


def _members_records(config, measure_id, level="provider"):
    records = measure_records(config, config.measure(measure_id), load_validated(config)).records
    key = "provider_code" if level == "provider" else "consultant_code"
    counts = records[key].astype(str).value_counts()
    members = sorted(counts.index[counts < 20])
    return members, records[records[key].astype(str).isin(members)]


def _wilson(o: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
    p = o / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return centre - half, centre + half


def test_pooled_figures_are_those_of_the_pooled_records(pooled_runs):
    config, results = pooled_runs["pooled"]
    # A proportion: events over records, Wilson interval, no status.
    members, recs = _members_records(config, "long_stay")
    assert members == ["H20", "H21", "H22"]
    pool = _pool_rows(results, "long_stay").loc["rate"]
    o, n = float(recs["y"].sum()), float(len(recs))
    assert (pool["numerator"], pool["denominator"]) == (o, n) and n == sum(SMALL.values())
    assert pool["value"] == pytest.approx(o / n) and pool["flag"] == ""
    assert (pool["lower95"], pool["upper95"]) == pytest.approx(_wilson(o, n))
    assert pool["unit_name"] == "Low-volume hospitals (fewer than 20 admissions)"
    # An adjusted proportion: O over the sum of the pooled records' predicted risks, exact Poisson interval.
    members, recs = _members_records(config, "mortality")
    risk = results.risk[(results.risk["measure"] == "mortality") & results.risk["provider_code"].isin(members)]
    pool = _pool_rows(results, "mortality")
    o, e = float(recs["y"].sum()), float(risk["p"].sum())
    assert pool.loc["oe_ratio", "expected"] == pytest.approx(e) and pool.loc["oe_ratio", "observed"] == o
    assert pool.loc["oe_ratio", "value"] == pytest.approx(o / e)
    lower = sps.chi2.ppf(0.025, 2 * o) / 2 / e if o else 0.0
    assert pool.loc["oe_ratio", "lower95"] == pytest.approx(lower)
    assert pool.loc["oe_ratio", "upper95"] == pytest.approx(sps.chi2.ppf(0.975, 2 * o + 2) / 2 / e)
    assert set(pool["flag"]) == {""}
    # A ratio measure's mean and median of the pooled values.
    _, recs = _members_records(config, "los")
    pool = _pool_rows(results, "los")
    assert pool.loc["mean", "value"] == pytest.approx(recs["y"].mean())
    assert pool.loc["median", "value"] == pytest.approx(recs["y"].median())
    assert pool.loc["oe_ratio", "observed"] == pytest.approx(recs["y"].sum())
    # Survival: the product-limit estimate over the pooled records, by hand.
    _, recs = _members_records(config, "survival")
    pool = _pool_rows(results, "survival")
    for h in (30, 365):
        s = 1.0
        for t in np.unique(recs.loc[recs["event"] == 1, "time"]):
            if t <= h:
                s *= 1 - ((recs["time"] == t) & (recs["event"] == 1)).sum() / (recs["time"] >= t).sum()
        assert pool.loc[f"survival_{h}d", "value"] == pytest.approx(s)
        assert pool.loc[f"survival_{h}d", "numerator"] == ((recs["event"] == 1) & (recs["time"] <= h)).sum()
    # Consultants: the small providers' consultants (one each) are pooled at their level too.
    members, recs = _members_records(config, "long_stay", "consultant")
    assert members == ["C200", "C210", "C220"]
    pool = _pool_rows(results, "long_stay", "consultant").loc["rate"]
    assert (pool["numerator"], pool["denominator"]) == (float(recs["y"].sum()), float(len(recs)))
    assert pool["parent_id"] == "" and pool["unit_name"] == "Low-volume consultants (fewer than 20 admissions)"


def test_the_pool_changes_no_unit_and_no_limit(pooled_runs):
    """Every unit's own figures, the over-dispersion and the funnel curves are those of the run without pools."""
    _, pooled = pooled_runs["pooled"]
    _, plain = pooled_runs["none"]
    own = pooled.indicators[pooled.indicators["unit_id"] != LOW_VOLUME_ID].reset_index(drop=True)
    pd.testing.assert_frame_equal(own, plain.indicators)
    pd.testing.assert_frame_equal(pooled.funnels, plain.funnels)
    for a, b in zip(pooled.metadata["measures"], plain.metadata["measures"], strict=True):
        assert a["overdispersion"] == b["overdispersion"], a["id"]
    pools = pooled.indicators[pooled.indicators["unit_id"] == LOW_VOLUME_ID]
    assert set(pools["level"]) == {"provider", "consultant"} and set(pools["flag"]) == {""}


def test_no_unit_below_the_volume_shows_a_result_publicly(pooled_runs):
    config, results = pooled_runs["pooled"]
    full, public = results.indicators, results.indicators_public
    assert list(public.columns[-3:]) == ["suppressed", "policy", "low_volume"]
    key = ["measure", "statistic", "level", "unit_id"]
    both = public.merge(full[key + ["denominator", "numerator"]], on=key, suffixes=("", "_full"))
    small = both[(both["level"] != "national") & (both["unit_id"] != LOW_VOLUME_ID)
                 & (both["denominator_full"] > 0) & (both["denominator_full"] < 20)]
    assert len(small) and small["low_volume"].all()
    assert small[["numerator", "observed", "value", "lower95", "upper95", "expected", "limit_upper95"]].isna().all().all()
    assert (small["flag"] == "").all()
    # A low-volume unit keeps its records (outcomes-in-full), so its report can say it is in the pool.
    full_policy = small[small["policy"] == "outcomes-in-full"]
    assert (full_policy["denominator"] == full_policy["denominator_full"]).all()
    # Every unit at or above the volume, under outcomes-in-full, is published in full: small counts included.
    shown = both[(both["policy"] == "outcomes-in-full") & ~both["low_volume"]]
    assert not shown["suppressed"].any()
    assert ((shown["numerator"] >= 1) & (shown["numerator"] <= 7)).any()
    pd.testing.assert_series_equal(shown["numerator"], shown["numerator_full"], check_names=False)
    # The measure under small-numbers-everywhere: suppressed rows carry no status, expected or limits.
    review = both[both["measure"] == "review"]
    assert set(review["policy"]) == {"small-numbers-everywhere"} and review["suppressed"].any()
    assert (review.loc[review["suppressed"], "flag"] == "").all()
    assert review.loc[review["suppressed"], list(BOUNDING[2:])].isna().all().all()
    meta = results.metadata["publication"]
    assert meta["policy"] == "outcomes-in-full" and meta["minimum_volume"] == {"provider": 20, "consultant": 20}
    assert meta["measure_policies"]["review"] == "small-numbers-everywhere"
    assert set(meta["policies"]) == set(POLICIES)


def test_a_pool_of_one_unit_is_withheld(tmp_path):
    """With one provider below the volume the pool would be that provider's result under another name."""
    extract = _measures_extract()
    extract.loc[extract.index[:6], ["provider_code", "provider_name", "consultant_code"]] = ["H30", "Hospital 30",
                                                                                           "C300"]
    config = load_config(_measures_audit(tmp_path, measures=[MEASURES[4]], extract=extract,
                                         publication={"minimum_volume": {"provider": 20, "consultant": 0}}))
    results = run_national(config)
    assert _pool_rows(results, "long_stay").loc["rate", "denominator"] == 6  # computed in the full table
    public = results.indicators_public.set_index(["level", "unit_id"])
    for unit in ("H30", LOW_VOLUME_ID):
        row = public.loc[("provider", unit)]
        assert bool(row["low_volume"]) and row["value"] != row["value"] and row["numerator"] != row["numerator"]


def test_a_definition_with_a_minimum_volume_round_trips(tmp_path):
    path = _measures_audit(tmp_path, measures=[MEASURES[4]], publication={"minimum_volume": {"provider": 3}})
    assert yaml.safe_load(open(path))["publication"]["minimum_volume"] == {"provider": 3}
    assert load_config(path).publication.minimum_volume == {"provider": 3, "consultant": 10}


def _page(*sections) -> str:
    """The visible text of sections as a report shows them (their charts closed)."""
    import html as html_lib
    import re

    import matplotlib.pyplot as plt

    from auditreport.presentation.blocks import Chart
    from auditreport.presentation.display import outputs

    parts = outputs(*sections)
    for chart in (p for p in parts if isinstance(p, Chart)):
        plt.close(chart.figure)
    html = "".join(str(p) for p in parts if not isinstance(p, Chart))
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_a_low_volume_provider_is_shown_in_the_pool(pooled_runs, tmp_path):
    """Hospital 21's public report gives its records and the pool's result, not its own; the national report lists
    it as in the low-volume group beside the pool's row; its confidential report keeps its own figures."""
    import matplotlib.pyplot as plt

    from auditreport.bundle import write_bundle
    from auditreport.presentation import national_sections
    from auditreport.presentation.context import load_context
    from auditreport.presentation.display import outputs
    from auditreport.presentation.formatting import pct
    from auditreport.presentation.measure_sections import measure_section

    _, results = pooled_runs["pooled"]
    bundle = write_bundle(tmp_path / "out", results)
    public = load_context(bundle, "public", "H21")
    pool = _pool_rows(results, "long_stay").loc["rate"]
    section = measure_section(public, "long_stay")
    html = "".join(str(p) for p in outputs(section))  # a low-volume provider's section has no chart
    assert "<strong data-count data-count-measure='long_stay'>8</strong>" in html
    text = _page(section)
    assert (f"Hospital 21 had 8 admissions in this measure, fewer than the 20 a hospital needs for its result to be "
            f"published on its own. Its admissions are counted in the pooled group \u201cLow-volume hospitals (fewer "
            f"than 20 admissions)\u201d, shown with every hospital in the national report: the group's rate is "
            f"{pct(pool['value'])} (95% interval {pct(pool['lower95'])} to {pct(pool['upper95'])}).") in text
    own = results.indicators.set_index(["measure", "statistic", "level", "unit_id"]).loc[
        ("long_stay", "rate", "provider", "H21")]
    assert "Stays over 14 days: statistics" not in text  # none of its own figures
    ranked = _page(national_sections.ranked_table(load_context(bundle, "public"), "long_stay"))
    assert "Hospital 21 H21 8 In the low-volume group Fewer than 20 admissions" in ranked
    assert (f"Low-volume hospitals (fewer than 20 admissions) low-volume 25 {int(pool['numerator'])} "
            f"{pct(pool['value'])}") in ranked and "Pooled group (no status)" in ranked
    local = _page(measure_section(load_context(bundle, "local", "H21"), "long_stay"))
    assert f"Hospital 21: {int(own['numerator'])} of 8 admissions ({pct(own['value'])})" in local
    assert "published only within the pooled low-volume group" in local
    assert not plt.get_fignums()


def test_a_low_volume_consultant_is_not_recoverable_from_its_provider():
    """Under small-numbers-everywhere a low-volume consultant's events (8 in 9 cases, not published: they are in
    the pool) would be the provider's 58 minus its other consultants' 20 and 30: another consultant is hidden with
    it, so what the total gives (28) is spread over two consultants."""
    from auditreport.rules.disclosure import withhold_low_volume

    rows = [("national", "national", "", 58, 259, False), ("provider", "P", "", 58, 259, False),
            ("consultant", "C1", "P", 8, 9, True), ("consultant", "C2", "P", 20, 100, False),
            ("consultant", "C3", "P", 30, 150, False), ("consultant", LOW_VOLUME_ID, "", 8, 9, False)]
    table = pd.DataFrame(rows, columns=["level", "unit_id", "parent_id", "numerator", "denominator", "low_volume"])
    table["measure"], table["statistic"] = "mortality", "rate"
    table["value"] = table["numerator"] / table["denominator"]
    out = withhold_low_volume(suppress_indicators(table, 7, {"mortality": "small-numbers-everywhere"}))
    out = out.set_index("unit_id")
    assert bool(out.loc["C2", "suppressed"]) and not out.loc[["C1", "C3"], "suppressed"].any()
    assert out.loc[["C1", "C2"], "numerator"].isna().all() and out.loc["C3", "numerator"] == 30
    published = out[(out["level"] == "consultant") & (out["parent_id"] == "P")]["numerator"].sum()
    assert out.loc["P", "numerator"] - published == 28  # C1 + C2: two consultants
    # The pool of one consultant is that consultant: withheld as well.
    assert bool(out.loc[LOW_VOLUME_ID, "low_volume"]) and out.loc[LOW_VOLUME_ID, "numerator"] != out.loc[
        LOW_VOLUME_ID, "numerator"]
    # Under outcomes-in-full nothing is suppressed; only the low-volume consultant (and the pool of one) is withheld.
    full = withhold_low_volume(suppress_indicators(table, 7, {"mortality": "outcomes-in-full"})).set_index("unit_id")
    assert not full["suppressed"].any() and full.loc["C2", "numerator"] == 20
    assert set(full.index[full["low_volume"]]) == {"C1", LOW_VOLUME_ID}
