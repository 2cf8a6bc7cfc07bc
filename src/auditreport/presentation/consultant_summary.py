"""The confidential one-page summary of a named consultant's results, for appraisal and revalidation.

Issue #15 item 3, contract section 8. The national adult cardiac surgery audit gives each surgeon their own
risk-adjusted results with their cases, deaths and interval; a responsible officer reads them at appraisal
(GMC, "Guidance on supporting information for appraisal and revalidation", 2018: quality improvement
activity, including the results of national audits). This module turns a loaded results bundle and a
consultant code into a :class:`ConsultantSummary` (plain text, nothing computed that the national stage did
not compute) and that into one page of HTML through ``templates/consultant_summary.html.j2``; the execution
layer writes the page and its PDF (:mod:`auditreport.execution.consultant_summaries`).

The summary is confidential: it reads the full indicator table (``bundle.indicators``, ``level ==
"consultant"``), never the public one, and is never copied into the publication site. Every measure the
audit analyses per consultant is shown, published or not, as in a local feedback report.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import jinja2
import pandas as pd
from markupsafe import Markup

from auditreport.bundle import Bundle
from auditreport.presentation.measure_parts import carries_flag, interval_text, statistic_label, value_text
from auditreport.resources import package_path
from auditreport.rules.flags import flag_words

#: The header every page carries (contract section 8).
CONFIDENTIAL = "Confidential: for appraisal and revalidation"
#: The minimum volume of a consultant's cases in a measure when the bundle records none (contract section 1).
DEFAULT_MINIMUM_VOLUME = 10
#: The pooled low-volume group's unit id (``rules.disclosure.LOW_VOLUME_ID`` in the contract): not a person.
LOW_VOLUME_ID = "low-volume"
#: The template and the print stylesheet of the page (the report stylesheet is inlined before it).
TEMPLATE = "consultant_summary.html.j2"
STYLESHEET = "consultant_summary.css"
#: Words used where the audit's definition gives none (as ``presentation.context.DEFAULT_WORDING``).
_DEFAULT_WORDING = {"activity": "records", "activity_singular": "record", "provider": "provider",
                    "providers": "providers", "population": "National"}
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class ProviderLine:
    """One provider a consultant worked at: its name and code, the consultant's cases there and whether
    the provider signed off its data (issue #15 item 4)."""

    code: str
    name: str
    cases: str
    validated: str


@dataclass(frozen=True)
class MeasureLine:
    """One row of the measures table: a statistic of one measure for the consultant, as text."""

    measure_id: str
    label: str
    statistic: str
    direction: str
    cases: str
    events: str
    value: str
    interval: str
    national: str
    status: str
    status_css: str  # the flag code ("alarm_high"...) for the badge's class, or "none"
    low_volume: bool = False


@dataclass(frozen=True)
class ConsultantSummary:
    """Everything the page shows, as text: who, where, every measure, the notes and the provenance."""

    audit_name: str
    period: str
    consultant_code: str
    consultant_name: str
    registration_number: str
    specialty: str
    providers: tuple[ProviderLine, ...]
    measures: tuple[MeasureLine, ...]
    provider_only: tuple[str, ...]  # labels of the audit's measures analysed per provider only
    minimum_volume: int
    activity: str
    provider_word: str
    contact: str
    provenance: str
    confidential: str = CONFIDENTIAL

    @property
    def title(self) -> str:
        return f"{self.consultant_name} ({self.consultant_code}): {self.audit_name} {self.period}"

    @property
    def total_cases(self) -> str:
        """The consultant's cases over every provider, where the providers' cases are known."""
        counts = [int(p.cases.replace(",", "")) for p in self.providers if p.cases.replace(",", "").isdigit()]
        return f"{sum(counts):,}" if len(counts) == len(self.providers) and counts else ""


def consultant_codes(bundle: Bundle, providers: set[str] | None = None) -> list[str]:
    """Every consultant with results in the bundle (the pooled low-volume group is not a person), in code
    order; with ``providers``, only those who worked at one of them (their main provider, or any provider
    of the consultants table where the bundle has one)."""
    t = bundle.indicators
    rows = t.loc[(t["level"] == "consultant") & (t["unit_id"] != LOW_VOLUME_ID), ["unit_id", "parent_id"]]
    codes = set(rows["unit_id"].dropna().astype(str))
    if providers is not None:
        chosen = set(rows.loc[rows["parent_id"].isin(providers), "unit_id"].astype(str))
        listed = _consultants_table(bundle)
        if listed is not None:
            chosen |= set(listed.loc[listed["provider_code"].isin(providers), "consultant_code"].astype(str))
        codes &= chosen
    return sorted(codes)


def consultant_summary(bundle: Bundle, code: str) -> ConsultantSummary:
    """The summary of consultant ``code`` from the bundle's full (confidential) figures.

    Raises ``KeyError`` naming the bundle and a few known codes when the consultant has no results.
    """
    t = bundle.indicators
    mine = t[(t["level"] == "consultant") & (t["unit_id"] == code)]
    if mine.empty:
        known = consultant_codes(bundle)
        raise KeyError(f"consultant {code!r} has no results in {bundle.path} (level 'consultant' of the "
                       f"indicators table; e.g. {', '.join(known[:3]) or 'none'}); a summary is made only for "
                       "consultants with results")
    meta = bundle.metadata
    wording = {**_DEFAULT_WORDING, **(meta.get("wording") or {})}
    minimum = minimum_volume(meta)
    national = t[t["level"] == "national"].set_index(["measure", "statistic"])["value"]
    by_measure = {m: rows.set_index("statistic") for m, rows in mine.groupby("measure", sort=False)}
    measures = list(meta.get("measures") or [])
    lines: list[MeasureLine] = []
    for m in measures:
        if "consultant" not in (m.get("levels") or []):
            continue
        rows = by_measure.get(m["id"])
        lines.extend(measure_lines(m, rows, national, minimum, wording["activity"]))
    person = _person(bundle, code, mine)
    audit = meta.get("audit") or {}
    return ConsultantSummary(
        audit_name=str(audit.get("name") or audit.get("id") or ""), period=str(audit.get("period") or ""),
        consultant_code=code, consultant_name=person["name"], registration_number=person["registration"],
        specialty=person["specialty"], providers=tuple(_providers(bundle, code, mine)), measures=tuple(lines),
        provider_only=tuple(str(m["label"]) for m in measures if "consultant" not in (m.get("levels") or [])),
        minimum_volume=minimum, activity=wording["activity"], provider_word=wording["provider"],
        contact=str(audit.get("contact") or "the audit team"), provenance=provenance_line(meta))


def minimum_volume(meta: dict) -> int:
    """The fewest cases in a measure for which a consultant is assessed on their own (contract section 1:
    ``publication.minimum_volume.consultant``, default 10, as the cardiothoracic surgeons' society publishes).

    A consultant below it is pooled in public outputs; the confidential summary still shows their figures
    but gives no status of their own.
    """
    value = (meta.get("publication") or {}).get("minimum_volume")
    if isinstance(value, dict):
        value = value.get("consultant")
    return DEFAULT_MINIMUM_VOLUME if value is None else int(value)


def measure_lines(measure: dict, rows: pd.DataFrame | None, national: pd.Series, minimum: int,
                  activity: str) -> list[MeasureLine]:
    """The rows a measure gives: its headline statistic, and an adjusted proportion's crude rate as context
    (as a provider report's "at a glance"). ``rows`` are the consultant's rows of the measure indexed by
    statistic (None: none); ``national`` the national values by (measure, statistic)."""
    direction = str(measure.get("direction") or "").replace("_", " ")
    shown = [measure["headline"]] + (["rate"] if measure["kind"] == "proportion" and measure.get("adjusted") else [])
    base = {"measure_id": measure["id"], "direction": direction}
    if rows is None or rows.empty or bool((rows["denominator"] == 0).all()):
        return [MeasureLine(**base, label=measure["label"], statistic=statistic_label(measure, measure["headline"]),
                            cases="0", events="", value="", interval="", national=_national(measure, measure[
                                "headline"], national), status=f"No eligible {activity}", status_css="none")]
    out = []
    for statistic in shown:
        if statistic not in rows.index:
            continue
        row = rows.loc[statistic]
        cases = row["denominator"]
        low = bool(cases == cases and cases < minimum)
        status, css = _status(measure, statistic, row["flag"], low, minimum, activity)
        label = measure["label"] if statistic == measure["headline"] else f"{measure['label']} (context)"
        out.append(MeasureLine(**base, label=label, statistic=statistic_label(measure, statistic),
                               cases=_count(cases), events=events_text(measure, statistic, row),
                               value=value_text(measure, statistic, row["value"]) if row["value"] == row["value"]
                               else "n/a", interval=interval_text(measure, statistic, row).replace("*", "n/a"),
                               national=_national(measure, statistic, national), status=status, status_css=css,
                               low_volume=low))
    return out


def events_text(measure: dict, statistic: str, row: pd.Series) -> str:
    """What the value is made of besides the cases: the events of a proportion or survival measure (with
    the number expected for the case mix where the statistic is risk-adjusted), a ratio's observed and
    expected totals in its unit; a mean has none (its value is the mean)."""
    kind = measure["kind"]
    expected = row.get("expected", float("nan"))
    with_expected = f" (expected {expected:,.1f})" if expected == expected else ""
    if kind == "mean":
        return ""
    observed = row["numerator"] if kind == "proportion" and row["numerator"] == row["numerator"] else row["observed"]
    if observed != observed:
        return ""
    if kind == "ratio":
        unit = measure.get("value_unit") or ""
        return f"{observed:,.0f}{' ' + unit if unit else ''}{with_expected}"
    return f"{observed:,.0f}{with_expected}"


def provenance_line(meta: dict) -> str:
    """What made the figures: the extract's fingerprint, the code and when the results were created (the
    same fingerprints as every report's cover and the site's provenance)."""
    data = ((meta.get("data") or {}).get("source") or {}).get("sha256", "")
    code = meta.get("code") or {}
    commit = str(code.get("git_commit") or "unknown")[:12]
    return (f"Data fingerprint {data[:12] or 'unknown'} (SHA-256 of the extract); auditreport "
            f"{code.get('package_version', '')} (commit {commit}); results created {meta.get('created', '')}.")


def validation_text(validated_on: object) -> str:
    """A provider's sign-off of its data in words: "validated by the provider on 3 March 2026" or "not
    validated" (issue #15 item 4); a value that is not an ISO date is shown as written."""
    if validated_on is None or validated_on != validated_on or str(validated_on).strip() == "":
        return "not validated"
    text = str(validated_on).strip()
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        return f"validated by the provider on {text}"
    return f"validated by the provider on {day.day} {day:%B %Y}"


def summary_html(summary: ConsultantSummary) -> str:
    """The page as one self-contained HTML document (``lang`` set, stylesheets inline, nothing fetched)."""
    return _template().render(s=summary, css=Markup(stylesheet()))  # the package's own CSS: not escaped


def stylesheet() -> str:
    """The report stylesheet (the house look: fonts, tables, flag badges) followed by the summary's own
    print rules, which override its page set-up."""
    return package_path("rendering", "report.css").read_text(encoding="utf-8") + "\n" + \
        package_path("presentation", "templates", STYLESHEET).read_text(encoding="utf-8")


def layout_files() -> list[str]:
    """The files that decide what the page shows and how: part of a summary's fingerprint, so a change to
    any of them rebuilds it even where the code version is the same (an installed package edited in place)."""
    return [str(package_path("rendering", "report.css")), str(package_path("presentation", "templates", STYLESHEET)),
            str(package_path("presentation", "templates", TEMPLATE)),
            str(package_path("presentation", "consultant_summary.py"))]


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("auditreport.presentation", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE)


def _status(measure: dict, statistic: str, flag: object, low: bool, minimum: int, activity: str) -> tuple[str, str]:
    """The status in words by the measure's direction, and the badge's class."""
    if not carries_flag(measure, statistic):
        if measure.get("carries_status"):
            return "Context (no status)", "none"
        return ("No status (not risk-adjusted)" if measure.get("type") != "process" else "No status"), "none"
    if low:
        return f"Fewer than {minimum} {activity}: not assessed on its own", "none"
    flag = flag if isinstance(flag, str) else ""
    if not flag:
        return "Not assessed", "none"
    return flag_words(flag, measure.get("direction")), flag


def _national(measure: dict, statistic: str, national: pd.Series) -> str:
    value = national.get((measure["id"], statistic), float("nan"))
    return "n/a" if value != value else value_text(measure, statistic, value)


def _count(value: float) -> str:
    return "n/a" if value != value else f"{int(round(value)):,}"


def _consultants_table(bundle: Bundle) -> pd.DataFrame:
    """The bundle's consultants table (bundle format 3): names, GMC numbers, specialties and records."""
    return bundle.consultants


def _provider_notes(bundle: Bundle) -> pd.DataFrame:
    """The bundle's provider notes: each provider's statement and the date it validated its data."""
    return bundle.provider_notes


def _person(bundle: Bundle, code: str, mine: pd.DataFrame) -> dict[str, str]:
    """Name, registration (GMC) number and specialty: the consultants table's, else the indicator table's
    name (blank or the code itself without a consultants file) and "not recorded"."""
    listed = _consultants_table(bundle)
    rows = listed[listed["consultant_code"].astype(str) == code] if listed is not None else pd.DataFrame()
    if len(rows):
        first = rows.iloc[0]
        return {"name": _text(first.get("consultant_name")) or code,
                "registration": _text(first.get("registration_number")) or NOT_RECORDED,
                "specialty": _text(first.get("specialty")) or NOT_RECORDED}
    names = [n for n in mine["unit_name"].dropna().astype(str) if n.strip()]
    return {"name": names[0] if names else code, "registration": NOT_RECORDED, "specialty": NOT_RECORDED}


def _providers(bundle: Bundle, code: str, mine: pd.DataFrame) -> list[ProviderLine]:
    """Each provider the consultant worked at with their cases there (the consultants table's analysed
    records), busiest first; without that table, their main provider with their most cases in any measure."""
    t = bundle.indicators
    names = t[t["level"] == "provider"].drop_duplicates("unit_id").set_index("unit_id")["unit_name"]
    listed = _consultants_table(bundle)
    notes = _provider_notes(bundle)
    validated = notes.drop_duplicates("provider_code").set_index("provider_code")["validated_on"] \
        if notes is not None and "validated_on" in notes else None
    rows = listed[listed["consultant_code"].astype(str) == code] if listed is not None else pd.DataFrame()
    if len(rows):
        cases = rows.groupby(rows["provider_code"].astype(str), sort=False)["records"].sum()
    else:
        main = mine["parent_id"].dropna().astype(str)
        cases = pd.Series({main.iat[0]: mine["denominator"].max()}) if len(main) else pd.Series(dtype=float)
    cases = cases.sort_values(ascending=False, kind="stable")
    return [ProviderLine(code=p, name=str(names.get(p, p)), cases=_count(float(n)),
                         validated=validation_text(validated.get(p)) if validated is not None
                         else f"validation {NOT_RECORDED}") for p, n in cases.items()]


def _text(value: object) -> str:
    return "" if value is None or value != value else str(value).strip()
