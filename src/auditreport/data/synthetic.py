"""A synthetic national surgical audit with a known truth.

The data follow a stated logistic model of 30-day mortality with random
provider-level variation on the logit scale, plus a handful of providers whose
odds of death are deliberately multiplied (the injected outliers). Beside
mortality, every record carries the columns of the audit's other measures, each
from its own stated model with its own injected providers:

- ``senior_review`` (0/1): a consultant reviewed the patient before surgery;
  about 90% nationally, a few providers well below the standard of 0.90.
- ``ct_before_surgery`` (0/1, emergency admissions only; blank otherwise): a CT
  scan reported before surgery; a few providers worse, one better.
- ``los`` (whole days): length of stay, negative binomial (gamma-Poisson) around
  a log-linear mean in age, ASA grade, urgency, procedure group and death within
  30 days; a few providers with longer stays.
- ``hours_to_surgery`` (hours, urgent and emergency admissions only; blank for
  elective ones): log-normal, longer for urgent than emergency cases; a few
  providers slower.

Beside the records and the providers, the audit has the optional files of a definition's ``data:`` section:
``consultants.csv`` (invented names, 7-digit registration numbers and specialties; a handful of consultants
also operate at a second provider, so have records and a row at both), ``statements.csv`` (a few providers'
statements, one from a provider made worse on mortality explaining its case mix) and ``validation.csv`` (the
date most providers, not all, signed off their data). Each is drawn from a generator of its own, seeded from
the seed, so adding them changed no other column but the consultant codes of the few records the shared
consultants took over.

The truth (every model, provider effects, outliers per measure, keyed by the
measure ids of ``params/synthetic.yaml``) is written beside the data so tests
can measure how many real outliers each measure finds and how many false alarms
it raises. Everything is generated from one seed: the same seed gives the same
bytes. The new columns are drawn after every draw of the mortality data, so the
mortality columns are the same as before they were added.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

TOWNS = [
    "Aldbury", "Ashcombe", "Barnsworth", "Belford", "Birchley", "Bramhall", "Brockton", "Calderbridge",
    "Carrick", "Castleford", "Chadwell", "Claybrook", "Coldstream", "Cranmore", "Dalston", "Denholme",
    "Draycott", "Dunmore", "Eastleigh", "Ellesby", "Elmswell", "Fairholme", "Farncombe", "Fenwick",
    "Foxton", "Garston", "Glenridge", "Greystoke", "Hadleigh", "Halford", "Harrowby", "Hawkridge",
    "Heathfield", "Highcliffe", "Holbeck", "Hollinsend", "Ingleby", "Kelham", "Kingsmere", "Kirkwood",
    "Langford", "Larkhill", "Leaholme", "Linford", "Longmoor", "Lowther", "Maplewood", "Marlow Vale",
    "Meadowbank", "Middleham", "Millbrook", "Moorside", "Netherfield", "Newbold", "Northam", "Oakhampton",
    "Oldcastle", "Ormsby", "Otterburn", "Pendle", "Penrith Vale", "Pinehurst", "Queensbury", "Radford",
    "Ravenscar", "Redmire", "Ridgeway", "Rothley", "Rowanbank", "Saltburn", "Sandhurst", "Seaton",
    "Shelford", "Silverdale", "Southam", "Stainforth", "Stanwick", "Stoneleigh", "Sutterby", "Swaleside",
    "Thornbury", "Thurlow", "Tidworth", "Torridge", "Ulverley", "Upton Magna", "Wakeley", "Walsden",
    "Waterbeach", "Wellow", "Westbury", "Whitmoor", "Wickham", "Willowdene", "Winterton", "Woodhall",
    "Wrenbury", "Yarnfield", "Yewdale", "Ashwell", "Bexley Vale", "Colnbrook", "Dunstan", "Eskdale",
    "Frampton", "Gilling", "Hexworth", "Ivinghoe", "Jarrowby", "Keswick Vale", "Lydney", "Marsden",
    "Norbury", "Ockley", "Pickering Vale", "Quarndon", "Rushmere", "Selby Vale", "Tarleton", "Uffington",
]
#: Invented consultants' names: a first name and a surname, drawn from the seed (any likeness is chance).
FIRST_NAMES = [
    "Aisha", "Alan", "Amara", "Andrew", "Anita", "Ben", "Bronwen", "Catherine", "Chidi", "Claire", "Daniel",
    "Deepa", "Eilidh", "Emeka", "Fatima", "Fiona", "Gareth", "Grace", "Hamza", "Helen", "Imran", "Isla", "James",
    "Joanna", "Kavita", "Kwame", "Laura", "Lewis", "Mairead", "Mark", "Mei", "Nadia", "Niall", "Olu", "Priya",
    "Rachel", "Rhys", "Sanjay", "Sarah", "Simon", "Sofia", "Tariq", "Thomas", "Uzma", "Victoria", "Wei", "Yusuf",
    "Zara",
]
SURNAMES = [
    "Adeyemi", "Ahmed", "Bennett", "Bhatt", "Campbell", "Chen", "Clarke", "Davies", "Evans", "Fletcher",
    "Fraser", "Gallagher", "Ghosh", "Hughes", "Iqbal", "Jenkins", "Kaur", "Kowalski", "Lloyd", "MacLeod",
    "Mensah", "Morgan", "Murphy", "Nair", "Nwosu", "O'Brien", "Okafor", "Owen", "Patel", "Price", "Quinn",
    "Rahman", "Reid", "Roberts", "Shah", "Sinclair", "Stewart", "Taylor", "Thomas", "Turner", "Walsh", "Ward",
    "Watson", "Williams", "Wright", "Yilmaz", "Young", "Zhang",
]
#: Consultants' specialties in this general surgical audit, with the share of consultants in each.
SPECIALTIES = {"General surgery": 0.35, "Colorectal surgery": 0.25, "Upper gastrointestinal surgery": 0.2,
               "Hepatobiliary surgery": 0.1, "Vascular surgery": 0.1}
#: Providers' statements (their right to respond), invented: the first goes to a provider made worse on
#: mortality, the second to one that did not validate its data, the others to providers drawn from the seed.
#: Written without figures, as a provider's own words would be shown as written.
STATEMENTS = [
    "We are the regional referral centre for complex emergency surgery, and many of our patients are transferred "
    "to us from other hospitals when they are already very unwell. Transfers are not recorded in the audit, so we "
    "believe the risk model does not fully reflect our case mix. We have asked for an independent case-note "
    "review of every death in the period and will publish its findings.",
    "We moved to a new electronic patient record during this period and could not complete the audit's data "
    "validation in time. We are confident that our records are complete, but some risk factors may be shown as "
    "missing.",
    "We welcome these results. Our enhanced recovery programme and daily consultant review were introduced during "
    "the period, and we expect their full effect to show in next year's report.",
    "We have reviewed the stays behind our length of stay figures: most of the longer stays were patients waiting "
    "for a place in community care, not complications of surgery. We are working with our local authority to "
    "shorten these waits.",
]
#: The keys of an audit definition's ``data:`` section and the file ``write`` writes for each.
DATA_FILES = {"source": "records", "providers": "providers", "consultants": "consultants",
              "statements": "statements", "validation": "validation"}

SUFFIXES = ["Hospitals NHS Trust", "University Hospitals NHS Foundation Trust", "NHS Foundation Trust",
            "General Hospital", "Teaching Hospitals NHS Trust"]

#: The true logistic model of 30-day death (logit scale); numeric terms per stated unit.
TRUE_COEFFICIENTS: dict[str, float] = {
    "Intercept": -5.5,
    "age_per_10y_over_65": 0.45,
    "sex[M]": 0.15,
    "asa[2]": 0.45, "asa[3]": 1.15, "asa[4]": 2.0, "asa[5]": 2.9,
    "urgency[urgent]": 0.55, "urgency[emergency]": 1.3,
    "procedure_group[B]": 0.25, "procedure_group[C]": 0.55, "procedure_group[D]": 0.85,
    "procedure_group[E]": -0.35,
    "diabetes[yes]": 0.2,
    "bmi_per_5_over_27": 0.08,
}

#: The true log-linear model of the mean length of stay in days (log scale; ``died_30d`` is death within 30
#: days of the procedure). Stays are gamma-Poisson (negative binomial) around this mean with shape
#: ``LOS_SHAPE`` (variance mu + mu^2 / shape).
LOS_COEFFICIENTS: dict[str, float] = {
    "Intercept": 1.2,
    "age_per_10y_over_65": 0.1,
    "asa[2]": 0.1, "asa[3]": 0.3, "asa[4]": 0.55, "asa[5]": 0.8,
    "urgency[urgent]": 0.35, "urgency[emergency]": 0.7,
    "procedure_group[B]": 0.1, "procedure_group[C]": 0.25, "procedure_group[D]": 0.4,
    "procedure_group[E]": -0.3,
    "died_30d": 0.3,
}
LOS_SHAPE = 2.0

#: Senior review before surgery (logit scale); the national rate comes out near 0.90, the standard.
SENIOR_REVIEW_COEFFICIENTS: dict[str, float] = {"Intercept": 2.1, "urgency[emergency]": 0.3}
#: CT reported before surgery, emergency admissions only (logit scale): about 85% nationally.
CT_COEFFICIENTS: dict[str, float] = {"Intercept": 1.75}
#: Hours from admission to surgery for urgent and emergency admissions: log-normal with these medians and
#: log-scale SDs.
HOURS_MEDIAN: dict[str, float] = {"urgent": 22.0, "emergency": 6.0}
HOURS_LOG_SD: dict[str, float] = {"urgent": 0.5, "emergency": 0.6}


@dataclass
class SyntheticSpec:
    """What to generate. ``records`` is the total over the whole period."""

    records: int = 50_000
    providers: int = 120
    consultants: int = 500
    start: dt.date = dt.date(2024, 1, 1)
    end: dt.date = dt.date(2025, 12, 31)
    extract_date: dt.date = dt.date(2026, 6, 30)
    provider_sd: float = 0.15  # SD of provider effects on the logit scale (over-dispersion)
    outliers_high: int = 3
    outliers_low: int = 2
    outlier_log_odds: float = 0.9  # |log odds ratio| of injected outliers
    seed: int = 20241
    # The other measures: SD of provider effects (their scale) and the injected providers' effects.
    review_provider_sd: float = 0.08      # logit
    review_outliers_worse: int = 3
    review_outlier_log_odds: float = -1.2  # about 0.75 where others are about 0.90
    ct_provider_sd: float = 0.12          # logit
    ct_outliers_worse: int = 2
    ct_outliers_better: int = 1
    ct_outlier_log_odds: float = 1.5      # worse about 0.56, better about 0.96, where others are about 0.85
    los_provider_sd: float = 0.03         # log of the mean stay
    los_outliers_worse: int = 3
    los_outlier_log_ratio: float = 0.3    # stays 35% longer
    hours_provider_sd: float = 0.04       # log hours
    hours_outliers_worse: int = 3
    hours_outlier_log_ratio: float = 0.45  # 57% slower
    extra: dict = field(default_factory=dict)


def generate(spec: SyntheticSpec) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Generate (records, providers, truth) from ``spec``."""
    rng = np.random.default_rng(spec.seed)
    n, k = spec.records, spec.providers
    if k < 1 or n < k:
        raise ValueError("need at least one provider and at least as many records as providers")

    # Provider volumes: log-normal, so a few large centres and a long tail of small ones.
    weights = rng.lognormal(mean=0.0, sigma=0.75, size=k)
    weights /= weights.sum()
    sizes = np.maximum(rng.multinomial(n - k, weights) + 1, 1)
    codes = _provider_codes(rng, k)
    names = _provider_names(rng, k)
    effect = rng.normal(0.0, spec.provider_sd, size=k)
    # Inject outliers among the larger providers, where a real difference of this size is detectable
    # at alarm level; smaller ones would be true outliers that no method could be expected to find.
    order = np.argsort(-sizes)
    eligible = order[: max(k // 3, spec.outliers_high + spec.outliers_low)]
    chosen = rng.choice(eligible, size=min(len(eligible), spec.outliers_high + spec.outliers_low), replace=False)
    direction = np.zeros(k, dtype=int)
    direction[chosen[: spec.outliers_high]] = 1
    direction[chosen[spec.outliers_high:]] = -1
    effect = np.where(direction != 0, direction * spec.outlier_log_odds, effect)

    # Consultants nested in providers, roughly in proportion to volume.
    n_cons = np.maximum(1, np.round(sizes / sizes.sum() * spec.consultants)).astype(int)
    provider_idx = np.repeat(np.arange(k), sizes)
    rng.shuffle(provider_idx)
    cons_offset = np.concatenate([[0], np.cumsum(n_cons)[:-1]])
    cons_local = (rng.random(n) ** 1.3 * n_cons[provider_idx]).astype(int)  # uneven consultant workloads
    cons_global = cons_offset[provider_idx] + cons_local
    cons_codes = np.array([f"C{v:07d}" for v in rng.choice(9_000_000, size=n_cons.sum(), replace=False)
                           + 1_000_000])

    age = np.clip(rng.normal(66, 14, n), 18, 99).round()
    sex = np.where(rng.random(n) < 0.52, "M", "F")
    asa = rng.choice(["1", "2", "3", "4", "5"], p=[0.12, 0.40, 0.33, 0.13, 0.02], size=n)
    urgency = rng.choice(["elective", "urgent", "emergency"], p=[0.62, 0.23, 0.15], size=n)
    group = rng.choice(list("ABCDE"), p=[0.30, 0.25, 0.18, 0.12, 0.15], size=n)
    diabetes = np.where(rng.random(n) < 0.18, "yes", "no")
    bmi = np.clip(rng.normal(27.5, 5.5, n), 14, 65).round(1)

    c = TRUE_COEFFICIENTS
    lp = (c["Intercept"] + c["age_per_10y_over_65"] * (age - 65) / 10 + c["sex[M]"] * (sex == "M")
          + sum(c.get(f"asa[{g}]", 0.0) * (asa == g) for g in "12345")
          + c["urgency[urgent]"] * (urgency == "urgent") + c["urgency[emergency]"] * (urgency == "emergency")
          + sum(c.get(f"procedure_group[{g}]", 0.0) * (group == g) for g in "ABCDE")
          + c["diabetes[yes]"] * (diabetes == "yes") + c["bmi_per_5_over_27"] * (bmi - 27) / 5)
    p_true = 1 / (1 + np.exp(-(lp + effect[provider_idx])))
    died30 = rng.random(n) < p_true

    days = (spec.end - spec.start).days + 1
    proc = pd.Timestamp(spec.start) + pd.to_timedelta(rng.integers(0, days, n), unit="D")
    # Early deaths cluster in the first days after surgery.
    t_early = np.ceil(30 * rng.beta(0.7, 1.6, n)).clip(0, 30)
    # Later deaths: a hazard that grows with risk, about 4% + 1.5p over the year.
    yearly = np.clip(0.04 + 1.5 * p_true, 0, 0.9)
    t_late = 30 + rng.exponential(-335 / np.log1p(-yearly))
    # Beyond ten years the date is never used (follow-up ends within a year) but would overflow a timestamp.
    t_death = np.minimum(np.where(died30, t_early, t_late), 3650.0)
    extract = pd.Timestamp(spec.extract_date)
    fu_end = pd.Series(proc + pd.Timedelta(days=365)).where(lambda s: s <= extract, extract)
    fu_days = (fu_end - pd.Series(proc)).dt.days.to_numpy()
    dead = t_death <= fu_days
    death_date = pd.Series(proc + pd.to_timedelta(t_death, unit="D")).dt.normalize().where(dead)

    records = pd.DataFrame({
        "patient_id": [f"P{v:08d}" for v in rng.choice(90_000_000, size=n, replace=False) + 10_000_000],
        "provider_code": codes[provider_idx],
        "provider_name": names[provider_idx],
        "consultant_code": cons_codes[cons_global],
        "procedure_date": pd.Series(proc).dt.date.astype(str),
        "death_date": death_date.dt.date.astype("string"),
        "followup_end": fu_end.where(~dead, death_date).dt.date.astype(str),
        "age": age.astype(int), "sex": sex, "asa": asa, "urgency": urgency, "procedure_group": group,
        "diabetes": diabetes, "bmi": bmi,
    })
    # Realistic missingness: a little everywhere, a lot at a couple of providers.
    for col, rate in (("asa", 0.02), ("bmi", 0.04), ("urgency", 0.005), ("diabetes", 0.03)):
        records.loc[rng.random(n) < rate, col] = None
    sloppy = rng.choice(np.argsort(sizes)[k // 4: 3 * k // 4], size=min(2, k), replace=False)
    heavy = np.isin(provider_idx, sloppy) & (rng.random(n) < 0.35)
    records.loc[heavy, "asa"] = None
    records.loc[rng.random(n) < 0.01, "consultant_code"] = None

    # The other measures' columns: drawn after everything above, so the mortality data do not change.
    # The true case mix (the arrays, not the records' columns, some of whose values were blanked above).
    case_mix = {"age": age, "asa": asa, "urgency": urgency, "procedure_group": group}
    measures = _other_measures(rng, spec, records, case_mix, died30, provider_idx, order, direction, codes)
    records = records.sort_values(["procedure_date", "patient_id"], kind="stable").reset_index(drop=True)
    shared = _shared_consultants(spec, records)

    providers = pd.DataFrame({"provider_code": codes, "provider_name": names, "true_log_odds_effect": effect,
                              "injected": np.select([direction > 0, direction < 0], ["high", "low"], ""),
                              "records": sizes})
    truth = {
        "spec": {key: (str(v) if isinstance(v, dt.date) else v) for key, v in asdict(spec).items()},
        "model": {"link": "logit", "coefficients": TRUE_COEFFICIENTS,
                  "terms": {"age_per_10y_over_65": "(age - 65) / 10", "bmi_per_5_over_27": "(bmi - 27) / 5"}},
        "provider_effect_sd": spec.provider_sd,
        "outliers": {"high": sorted(codes[direction > 0].tolist()), "low": sorted(codes[direction < 0].tolist())},
        "outlier_log_odds": spec.outlier_log_odds,
        "sloppy_providers": sorted(codes[sloppy].tolist()),
        "deaths_30d": int(died30.sum()),
        "records": n,
        "measures": _mortality_truth(spec, codes, direction) | measures,
        "shared_consultants": shared,
    }
    return records, providers[["provider_code", "provider_name", "records", "injected",
                               "true_log_odds_effect"]], truth


def _shared_consultants(spec: SyntheticSpec, records: pd.DataFrame) -> dict[str, list[str]]:
    """Make a handful of consultants also operate at a second provider (in place); ``{code: [main, second]}``.

    One consultant per hundred (at least one, at most five, none with one provider), from the busiest quarter, takes
    over 12 to 30 records (at most a fifth) of a provider in the larger half other than their own, as a surgeon
    with sessions at a neighbouring hospital would. Drawn from a generator of its own, so every other column is
    as it was without them.
    """
    rng = np.random.default_rng([spec.seed, 15])
    coded = records.dropna(subset=["consultant_code"])
    sizes = records["provider_code"].value_counts()
    n = min(5, max(1, spec.consultants // 100)) if len(sizes) > 1 else 0
    volume = coded["consultant_code"].value_counts()
    busiest = sorted(volume.index[: max(n, len(volume) // 4)])
    chosen = [str(c) for c in rng.choice(busiest, size=min(n, len(busiest)), replace=False)] if n else []
    home = coded.groupby("consultant_code")["provider_code"].agg(lambda s: s.value_counts().index[0])
    larger = sorted(sizes.index[: max(2, len(sizes) // 2)])
    shared: dict[str, list[str]] = {}
    for code in chosen:
        others = [p for p in larger if p != home[code]]
        second = others[int(rng.integers(len(others)))]
        there = coded.index[(coded["provider_code"] == second) & ~coded["consultant_code"].isin(chosen)]
        k = min(len(there) // 5, int(rng.integers(12, 31)))
        if k:
            records.loc[np.sort(rng.choice(there, size=k, replace=False)), "consultant_code"] = code
            shared[code] = [str(home[code]), second]
    return dict(sorted(shared.items()))


def consultants_table(spec: SyntheticSpec, records: pd.DataFrame) -> pd.DataFrame:
    """The consultants file: one row per consultant and provider they have records at, with an invented name,
    a 7-digit registration number and a specialty, all drawn from the seed (a generator of its own)."""
    rng = np.random.default_rng([spec.seed, 16])
    pairs = (records.dropna(subset=["consultant_code"])[["consultant_code", "provider_code"]].drop_duplicates()
             .sort_values(["consultant_code", "provider_code"]).reset_index(drop=True))
    codes = sorted(pairs["consultant_code"].unique())
    names: list[str] = []
    taken: set[str] = set()
    for _ in codes:
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
        while name in taken:  # one name per consultant: a middle initial tells two apart
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(list('ABCDEFGHJKLMNPRSTW'))} {rng.choice(SURNAMES)}"
        taken.add(name)
        names.append(name)
    people = pd.DataFrame({
        "consultant_code": codes, "consultant_name": names,
        "registration_number": [str(v) for v in rng.choice(7_000_000, size=len(codes), replace=False) + 1_000_000],
        "specialty": rng.choice(list(SPECIALTIES), p=list(SPECIALTIES.values()), size=len(codes)),
    })
    return pairs.merge(people, on="consultant_code")[["consultant_code", "consultant_name", "registration_number",
                                                      "provider_code", "specialty"]]


def validation_table(spec: SyntheticSpec, providers: pd.DataFrame) -> pd.DataFrame:
    """The validation file: the date each provider signed off its data, for all providers but about one in ten
    (at least one when there are two or more), in the eight weeks before the extract was taken."""
    rng = np.random.default_rng([spec.seed, 17])
    codes = sorted(providers["provider_code"])
    missing = max(1, len(codes) // 10) if len(codes) > 1 else 0
    signed = sorted(rng.choice(codes, size=len(codes) - missing, replace=False))
    days = rng.integers(1, 57, size=len(signed))
    return pd.DataFrame({"provider_code": signed, "validated_on": [
        str(spec.extract_date - dt.timedelta(days=int(d))) for d in days]})


def statements_table(spec: SyntheticSpec, providers: pd.DataFrame, validation: pd.DataFrame,
                     truth: dict) -> pd.DataFrame:
    """The statements file: up to four providers' statements (``STATEMENTS``), the first from a provider made
    worse on mortality (a case-mix explanation), the second from one that did not validate its data."""
    rng = np.random.default_rng([spec.seed, 18])
    codes = sorted(providers["provider_code"])
    chosen: list[str] = []
    unvalidated = sorted(set(codes) - set(validation["provider_code"]))
    for pool in (truth["outliers"]["high"], unvalidated):
        pool = [c for c in pool if c not in chosen]
        if pool:
            chosen.append(str(rng.choice(pool)))
    rest = [c for c in codes if c not in chosen]
    chosen += [str(c) for c in rng.choice(rest, size=min(len(rest), len(STATEMENTS) - len(chosen)), replace=False)]
    chosen = chosen[:len(STATEMENTS)]
    return pd.DataFrame({"provider_code": chosen, "statement": STATEMENTS[:len(chosen)]}).sort_values(
        "provider_code").reset_index(drop=True)


def definition_data(paths: dict[str, Path]) -> dict[str, str]:
    """The ``data:`` section of a definition reading the files ``write`` wrote (``paths``), as text."""
    return {key: str(paths[name]) for key, name in DATA_FILES.items() if name in paths}


def _outliers(codes: np.ndarray, sign: np.ndarray) -> dict[str, str]:
    """``{provider_code: "worse" | "better"}`` for the injected providers (sign +1 worse, -1 better), by code."""
    return {str(codes[i]): ("worse" if sign[i] > 0 else "better") for i in np.argsort(codes) if sign[i] != 0}


def _mortality_truth(spec: SyntheticSpec, codes: np.ndarray, direction: np.ndarray) -> dict:
    """Truth of the two measures the mortality model drives: 30-day mortality and survival (lower is better
    for deaths: an injected high provider is worse, a low one better)."""
    outliers = _outliers(codes, direction)
    return {
        "mortality": {"outliers": outliers, "model": {
            "link": "logit", "event": "death within 30 days", "coefficients": TRUE_COEFFICIENTS,
            "provider_effect_sd": spec.provider_sd, "outlier_log_odds": spec.outlier_log_odds}},
        "survival": {"outliers": dict(outliers), "model": {
            "deaths": "30-day deaths from the mortality model; later deaths exponential with a yearly risk of "
                      "0.04 + 1.5 p (p the true 30-day risk, capped at 0.9); follow-up to a year or the "
                      "extract date"}},
    }


def _other_measures(rng: np.random.Generator, spec: SyntheticSpec, records: pd.DataFrame,
                    case_mix: dict[str, np.ndarray], died30: np.ndarray, provider_idx: np.ndarray, order: np.ndarray,
                    mortality_direction: np.ndarray, codes: np.ndarray) -> dict:
    """Add ``senior_review``, ``ct_before_surgery``, ``los`` and ``hours_to_surgery`` to ``records`` (in place,
    in the records' generation order) and return their truth, keyed by measure id.

    ``case_mix`` holds the true age, ASA grade, urgency and procedure group (before values were blanked): a CT
    and hours to surgery exist only for admissions that really were emergency or non-elective. Injected
    providers are drawn from the largest third, as for mortality, leaving out mortality's injected ones so that
    each measure's outliers are its own; a small audit gets fewer (none under three providers).
    """
    n, k = len(records), len(codes)
    age, asa, urgency, group = (case_mix[key] for key in ("age", "asa", "urgency", "procedure_group"))
    emergency = urgency == "emergency"
    non_elective = urgency != "elective"

    def inject(worse: int, better: int, sizes: np.ndarray | None = None, share: int = 3) -> np.ndarray:
        """-1/0/+1 per provider (+1 worse): ``worse + better`` distinct providers (fewer in a small audit) among
        the largest ``1 / share`` by records, or by ``sizes`` (the measure's own eligible counts) when given."""
        largest = order if sizes is None else np.argsort(-sizes, kind="stable")
        pool = np.setdiff1d(largest[: k // share], np.flatnonzero(mortality_direction != 0))
        chosen = rng.choice(pool, size=min(len(pool), worse + better), replace=False)
        sign = np.zeros(k, dtype=int)
        sign[chosen[:worse]] = 1
        sign[chosen[worse:]] = -1
        return sign

    def truth(sign: np.ndarray, model: dict) -> dict:
        return {"outliers": _outliers(codes, sign), "model": model}

    def expit(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))

    out: dict[str, dict] = {}

    # Senior review: higher is better; the injected providers fall well below the standard of 0.90.
    sign = inject(spec.review_outliers_worse, 0)
    effect = np.where(sign != 0, spec.review_outlier_log_odds, rng.normal(0, spec.review_provider_sd, k))
    c = SENIOR_REVIEW_COEFFICIENTS
    p = expit(c["Intercept"] + c["urgency[emergency]"] * emergency + effect[provider_idx])
    review = pd.array((rng.random(n) < p).astype(int), dtype="Int8")
    review[rng.random(n) < 0.005] = pd.NA          # a few left blank
    records["senior_review"] = review
    out["senior_review"] = truth(sign, {"link": "logit", "coefficients": c, "standard": 0.90,
                                        "provider_effect_sd": spec.review_provider_sd,
                                        "outlier_log_odds": spec.review_outlier_log_odds})

    # CT before surgery, emergency admissions only: higher is better. Emergencies are few (15%), so the injected
    # providers are among the largest sixth by emergencies, where a better rate than 85% can be told from chance.
    sign = inject(spec.ct_outliers_worse, spec.ct_outliers_better,
                  np.bincount(provider_idx[emergency], minlength=k), share=6)
    effect = np.where(sign != 0, -sign * spec.ct_outlier_log_odds, rng.normal(0, spec.ct_provider_sd, k))
    p = expit(CT_COEFFICIENTS["Intercept"] + effect[provider_idx])
    ct = pd.array((rng.random(n) < p).astype(int), dtype="Int8")
    ct[~emergency | (rng.random(n) < 0.01)] = pd.NA   # blank outside emergencies, and a few within
    records["ct_before_surgery"] = ct
    out["ct_before_surgery"] = truth(sign, {"link": "logit", "coefficients": CT_COEFFICIENTS,
                                            "eligible": "emergency admissions",
                                            "provider_effect_sd": spec.ct_provider_sd,
                                            "outlier_log_odds": spec.ct_outlier_log_odds})

    # Length of stay: lower is better; the injected providers keep patients longer.
    sign = inject(spec.los_outliers_worse, 0)
    effect = np.where(sign != 0, spec.los_outlier_log_ratio, rng.normal(0, spec.los_provider_sd, k))
    c = LOS_COEFFICIENTS
    log_mu = (c["Intercept"] + c["age_per_10y_over_65"] * (age - 65) / 10
              + sum(c.get(f"asa[{g}]", 0.0) * (asa == g) for g in "12345")
              + c["urgency[urgent]"] * (urgency == "urgent") + c["urgency[emergency]"] * emergency
              + sum(c.get(f"procedure_group[{g}]", 0.0) * (group == g) for g in "ABCDE")
              + c["died_30d"] * died30 + effect[provider_idx])
    lam = np.exp(log_mu) * rng.gamma(LOS_SHAPE, 1 / LOS_SHAPE, n)
    los = pd.array(rng.poisson(lam), dtype="Int64")
    los[rng.random(n) < 0.003] = pd.NA
    records["los"] = los
    model = {"link": "log", "distribution": f"negative binomial (gamma-Poisson, shape {LOS_SHAPE})",
             "coefficients": c, "terms": {"age_per_10y_over_65": "(age - 65) / 10",
                                          "died_30d": "death within 30 days of the procedure"},
             "provider_effect_sd": spec.los_provider_sd, "outlier_log_ratio": spec.los_outlier_log_ratio}
    out["los"] = truth(sign, model)
    # Stays over 14 days follow from the same stays, so their injected providers are the same.
    out["long_stay"] = truth(sign, {"event": "los > 14", "from": "los"})

    # Hours from admission to surgery, urgent and emergency admissions: lower is better.
    sign = inject(spec.hours_outliers_worse, 0, np.bincount(provider_idx[non_elective], minlength=k))
    effect = np.where(sign != 0, spec.hours_outlier_log_ratio, rng.normal(0, spec.hours_provider_sd, k))
    median = np.where(emergency, HOURS_MEDIAN["emergency"], HOURS_MEDIAN["urgent"])
    sd = np.where(emergency, HOURS_LOG_SD["emergency"], HOURS_LOG_SD["urgent"])
    hours = np.exp(np.log(median) + effect[provider_idx] + sd * rng.standard_normal(n)).round(1)
    hours[~non_elective | (rng.random(n) < 0.01)] = np.nan
    records["hours_to_surgery"] = hours
    out["hours_to_surgery"] = truth(sign, {"distribution": "log-normal", "median_hours": HOURS_MEDIAN,
                                           "log_sd": HOURS_LOG_SD, "eligible": "urgent and emergency admissions",
                                           "provider_effect_sd": spec.hours_provider_sd,
                                           "outlier_log_ratio": spec.hours_outlier_log_ratio})
    return out


def write(spec: SyntheticSpec, out_dir: str | Path, fmt: str = "parquet") -> dict[str, Path]:
    """Generate and write ``records.<fmt>``, ``providers.csv``, ``consultants.csv``, ``statements.csv``,
    ``validation.csv`` and ``truth.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, providers, truth = generate(spec)
    paths = {"records": out / f"records.{fmt}", "providers": out / "providers.csv",
             "consultants": out / "consultants.csv", "statements": out / "statements.csv",
             "validation": out / "validation.csv", "truth": out / "truth.json"}
    tmp = paths["records"].with_suffix(".tmp")
    if fmt == "parquet":
        records.to_parquet(tmp, index=False)
    elif fmt == "csv":
        records.to_csv(tmp, index=False)
    else:
        raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
    tmp.replace(paths["records"])
    providers[["provider_code", "provider_name"]].to_csv(paths["providers"], index=False)
    consultants_table(spec, records).to_csv(paths["consultants"], index=False)
    validation = validation_table(spec, providers)
    validation.to_csv(paths["validation"], index=False)
    statements_table(spec, providers, validation, truth).to_csv(paths["statements"], index=False)
    paths["truth"].write_text(json.dumps(truth | {"providers": providers.to_dict(orient="records")}, indent=1))
    return paths


def _provider_codes(rng: np.random.Generator, k: int) -> np.ndarray:
    letters = np.array(list("ABCDEFGHJKLMNPQRTVWXY"))
    codes: set[str] = set()
    while len(codes) < k:
        codes.add("R" + "".join(rng.choice(letters, 2)) + str(rng.integers(0, 10)))
    return np.array(sorted(codes))[rng.permutation(k)]


def _provider_names(rng: np.random.Generator, k: int) -> np.ndarray:
    towns = list(TOWNS)
    while len(towns) < k:
        towns += [f"{t} {i}" for i, t in enumerate(TOWNS, start=2)]
    chosen = rng.choice(towns, size=k, replace=False)
    return np.array([f"{t} {SUFFIXES[i % len(SUFFIXES)]}" for i, t in enumerate(chosen)])
