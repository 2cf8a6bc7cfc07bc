"""The publication site's pages: a site people can use (issue #15, contract section 7).

``write_site`` writes every page of a period's site into the (staging) site folder:

- ``index.html``: every provider with the headline value and status of each published measure, a search
  box, and links to its page, its public report and the open data;
- ``providers/<code>.html``: a provider's statement (its right to respond), whether it validated its data,
  and each published measure: value, interval, counts, status in words, the national value, an inline SVG
  funnel with this provider highlighted and every other provider on it, the table of the same figures, and
  the consultants who worked there;
- ``consultants/index.html`` and ``consultants/<code>.html``: every consultant with a result published
  (above the minimum volume in at least one measure), by name where the audit has a consultants file, and
  those in the low-volume group;
- ``data/<measure>.csv`` and ``data/<measure>_dictionary.csv``: the open data per published measure, and
  ``data/indicators.csv`` with ``data/data_dictionary.csv`` for the whole.

Everything a reader sees comes from the open-data frame (the bundle's ``indicators_public`` as published:
figures already withheld under the audit's publication policy are blank here, never recomputed), the
bundle's funnel curves, consultants and provider notes. Pages are HTML from the Jinja templates in
``templates/site`` (autoescaped), styled by ``site.css`` and enhanced by ``site.js`` (sort buttons, the
search filter, the funnel's read-out); they work without JavaScript. Every count carries ``data-count``, and
a count of a measure's unit result also ``data-count-measure`` (contract section 5), for the disclosure
checker.

Speed: the demo has 120 providers, about 500 consultants and 7 measures. Each measure's funnel and table
rows are rendered once (:class:`MeasureView`); a page joins them, rendering only its own unit again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from auditreport.bundle import load_bundle
from auditreport.config import AuditConfig
from auditreport.execution.report_job import ReportJob, safe_name
from auditreport.presentation.measure_parts import (
    RATIO_STATISTICS,
    is_percent,
    range_text,
    statistic_label,
    target_text,
    value_text,
)
from auditreport.provenance import code_version, now_utc
from auditreport.publication.site import (
    _statistic_order,
    data_dictionary,
    direction_words,
    neutralise_formulas,
    open_columns,
    published_measures,
)
from auditreport.publication.svg import Funnel, FunnelAxes, FunnelPoint
from auditreport.resources import package_path
from auditreport.rules.disclosure import LOW_VOLUME_ID, SUPPRESSED
from auditreport.rules.flags import FLAG_ORDER, flag_description, flag_direction, flag_words

#: The site's stylesheet and script, inlined into every page: a page is one file that opens offline, also
#: when saved or sent on its own (as the reports are).
SITE_CSS = package_path("publication", "site.css")
SITE_JS = package_path("publication", "site.js")

LEVELS = ("provider", "consultant")


# ------------------------------------------------------------------ measures and figures as text


def format_value(measure: dict, statistic: str, value: float, suppressed: bool = False) -> str:
    """A statistic's value as the reports write it (``presentation.measure_parts.value_text``): "*" where
    suppressed, "n/a" where there is no value (no eligible records, or not estimable)."""
    if suppressed:
        return SUPPRESSED
    if value != value:
        return "n/a"
    return value_text(measure, statistic, value)


def count_text(value: float, suppressed: bool = False) -> str:
    """A count as text: "1,234"; "*" where withheld under the small-numbers rule; "" where blank for
    another reason (a low-volume unit's own events: its figures are in the pool)."""
    if value != value:
        return SUPPRESSED if suppressed else ""
    return f"{int(round(value)):,}"


def status_words(measure: dict, flag: object, *, shown: bool = True, low_volume: bool = False,
                 pooled: bool = False) -> str:
    """A unit's status in words by the measure's direction (HQIP: "Alarm: worse than expected"), or why
    it has none: a measure without status, a pooled group, a unit in the low-volume group, a figure withheld."""
    flag = flag if isinstance(flag, str) else ""
    if pooled:
        return "No status (a pooled group)"
    if low_volume:
        return "In the low-volume group"
    if not measure.get("carries_status"):
        return "No status (not compared)"
    if not shown:
        return "Not shown (small numbers)"
    if not flag:
        return "Not assessed"
    return flag_words(flag, measure["direction"])


def status_css(measure: dict, flag: object) -> str:
    """The CSS word of a status: "worse", "better", "as_expected" or "none"."""
    flag = flag if isinstance(flag, str) and flag in FLAG_ORDER else ""
    if not measure.get("carries_status") or not flag:
        return "none"
    return flag_direction(flag, measure["direction"]) or "none"


def funnel_statistic(measure: dict, curve_statistics: Iterable[str]) -> str:
    """The statistic a measure's funnel plots, as the reports' (``measure_parts.funnel_statistic``): O/E
    for an adjusted proportion, else the headline where the curves hold it, else the curves' first."""
    stats = list(dict.fromkeys(curve_statistics))
    if measure["kind"] == "proportion" and measure.get("adjusted"):
        return "oe_ratio"
    if not stats or measure["headline"] in stats:
        return measure["headline"]
    return stats[0]


def funnel_axis(measure: dict, statistic: str, wording: dict) -> tuple[str, str]:
    """The x column of a funnel and its title with units, as the reports' (``measure_parts._funnel_axis``)."""
    if statistic in RATIO_STATISTICS:
        if measure["kind"] == "survival":
            return "expected", "Expected deaths over follow-up (log scale)"
        if measure["kind"] == "ratio":
            return "expected", f"Expected {measure.get('value_unit') or 'total'} (log scale)"
        return "expected", "Expected events (log scale)"
    return "denominator", f"{wording['activity'].capitalize()} analysed (log scale)"


def funnel_ylabel(measure: dict, statistic: str) -> str:
    """The y axis's title with its unit: "Observed / expected ratio", "30-day mortality (%)", "Mean (hours)"."""
    if statistic in RATIO_STATISTICS:
        return "Observed / expected ratio"
    label = measure["label"]
    unit = measure.get("value_unit") or ""
    if unit and statistic in ("mean", "median") and unit not in label.lower():
        label = f"{label} ({unit})"
    return f"{label} (%)" if is_percent(statistic) else label


def target_label(measure: dict, statistic: str, target: float) -> str:
    """The target line's name: "O/E = 1 (as expected)", "standard 90.0%" or "national"."""
    if statistic in RATIO_STATISTICS:
        return "O/E = 1 (as expected)"
    if measure.get("target_kind") == "standard":
        return f"standard {value_text(measure, statistic, target)}"
    return "national"


def date_words(iso: object) -> str:
    """"2026-03-12" -> "12 March 2026" (the British form); "" for a blank date. A date (or timestamp) is
    taken as it is: the contract's provider notes hold text, a table read back may hold dates."""
    if isinstance(iso, dt.date):
        day = iso
    elif not isinstance(iso, str) or not iso.strip():
        return ""
    else:
        day = dt.date.fromisoformat(iso.strip()[:10])
    return f"{day.day} {day:%B %Y}"


def _flag(row: dict | pd.Series | None) -> str:
    flag = None if row is None else row.get("flag")
    return flag if isinstance(flag, str) else ""


def _is_true(value: object) -> bool:
    return bool(value) if value is not None and value == value else False


# ------------------------------------------------------------------ the site's units


@dataclass(frozen=True)
class Unit:
    """A provider, consultant or pooled group as the site names and links it."""

    id: str
    name: str
    level: str
    page: str | None  # its page relative to the site root ("providers/RX1.html"), None: no page

    @property
    def label(self) -> str:
        return self.name if self.name and self.name != self.id else self.id


@dataclass
class SiteData:
    """What every page reads: the open data split by level, the measures, units and their pages."""

    config: AuditConfig
    data: pd.DataFrame
    meta: dict
    public_jobs: Sequence[ReportJob]
    consultants: pd.DataFrame | None = None
    notes: pd.DataFrame | None = None
    funnels: pd.DataFrame | None = None
    produced: str = field(default_factory=now_utc)

    def __post_init__(self) -> None:
        data = self.data.copy()
        data["unit_id"] = data["unit_id"].astype(str)
        if "low_volume" not in data.columns:
            data["low_volume"] = False
        data["low_volume"] = data["low_volume"].map(_is_true)
        if "suppressed" not in data.columns:
            data["suppressed"] = False
        data["suppressed"] = data["suppressed"].map(_is_true)
        measures = published_measures(self.meta)
        data = data[data["measure"].isin([m["id"] for m in measures])]
        self.data = data
        self.measures = measures
        self.wording = self.meta["wording"]
        self.reports = {j.provider: f"reports/{safe_name(j.provider)}" for j in self.public_jobs
                        if j.kind != "national" and j.provider}
        self.national = any(j.kind == "national" for j in self.public_jobs)
        self.units = self._units()

    @property
    def publication(self) -> dict:
        return self.meta.get("publication") or {}

    def minimum_volume(self, level: str) -> int:
        """The minimum volume of a level (contract 1; metadata ``publication.minimum_volume``)."""
        return int((self.publication.get("minimum_volume") or {}).get(level) or 0)

    def measure_policy(self, measure_id: str) -> str:
        """A measure's publication policy (metadata ``publication.measure_policies``; "" if not recorded)."""
        return str((self.publication.get("measure_policies") or {}).get(measure_id, ""))

    def level_rows(self, level: str) -> pd.DataFrame:
        return self.data[self.data["level"] == level]

    def _consultant_names(self) -> dict[str, str]:
        if self.consultants is None or self.consultants.empty:
            return {}
        table = self.consultants.drop_duplicates("consultant_code")
        return {str(c): n for c, n in zip(table["consultant_code"], table["consultant_name"], strict=True)
                if isinstance(n, str) and n.strip()}  # blank without a consultants file

    def _units(self) -> dict[tuple[str, str], Unit]:
        """Every provider and consultant of the open data, with its page (consultants: only those with a
        result of their own in at least one measure, i.e. not in the low-volume group of every measure)."""
        units: dict[tuple[str, str], Unit] = {}
        names = self._consultant_names()
        taken: set[str] = set()
        for level in LEVELS:
            rows = self.level_rows(level)
            own = rows[rows["unit_id"] != LOW_VOLUME_ID]
            published = set(own.loc[~own["low_volume"], "unit_id"])
            for code, name in own.drop_duplicates("unit_id")[["unit_id", "unit_name"]].itertuples(index=False):
                name = names.get(code) or (name if isinstance(name, str) and name else code)
                page = None
                if level == "provider" or code in published:
                    stem = safe_name(code)
                    stem = f"{stem}-page" if stem.lower() == "index" else stem
                    while f"{level}/{stem.lower()}" in taken:  # two codes that differ only in case on a folded disk
                        stem += "_"
                    taken.add(f"{level}/{stem.lower()}")
                    page = f"{level}s/{stem}.html"
                units[(level, code)] = Unit(code, name, level, page)
            pool = rows[rows["unit_id"] == LOW_VOLUME_ID]
            if len(pool):
                name = pool["unit_name"].dropna()
                units[(level, LOW_VOLUME_ID)] = Unit(LOW_VOLUME_ID, str(name.iat[0]) if len(name) else
                                                     f"Low-volume {level}s", level, None)
        return units

    def unit(self, level: str, code: str) -> Unit:
        return self.units.get((level, code)) or Unit(code, code, level, None)

    @cached_property
    def _providers(self) -> list[Unit]:
        found = [u for (level, code), u in self.units.items() if level == "provider" and code != LOW_VOLUME_ID]
        return sorted(found, key=lambda u: (u.label.lower(), u.id))

    def providers(self) -> list[Unit]:
        """Every provider, by name then code (the order a reader looks one up in)."""
        return self._providers

    @cached_property
    def _consultants(self) -> tuple[list[Unit], list[Unit]]:
        found = [u for (level, code), u in self.units.items() if level == "consultant" and code != LOW_VOLUME_ID]
        found.sort(key=lambda u: (_surname_key(u.label), u.id))
        return [u for u in found if u.page], [u for u in found if not u.page]

    def consultants_published(self) -> list[Unit]:
        """Consultants with a result of their own in at least one measure, by surname."""
        return self._consultants[0]

    def consultants_pooled(self) -> list[Unit]:
        """Consultants in the low-volume group of every measure, by surname."""
        return self._consultants[1]

    @cached_property
    def _works(self) -> list[tuple[str, str, dict]]:
        """(consultant, provider, row of the consultants file) for every consultant and provider they worked
        at: the consultants file where the audit has one, else each consultant's main provider (open data)."""
        if self.consultants is not None and not self.consultants.empty:
            table = self.consultants.astype({"consultant_code": str, "provider_code": str})
            return [(r["consultant_code"], r["provider_code"],
                     {k: v for k, v in r.items() if isinstance(v, str) and v.strip()})  # blanks left out
                    for r in table.to_dict("records")]
        rows = self.level_rows("consultant").drop_duplicates("unit_id")
        return [(c, str(p), {}) for c, p in zip(rows["unit_id"], rows["parent_id"], strict=True)
                if isinstance(p, str)]

    def consultant_facts(self, code: str) -> dict:
        """A consultant's row of the consultants file (name, GMC number, specialty: those given); {} when none."""
        return next((r for c, _, r in self._works if c == code and r.get("consultant_name")), {})

    def consultant_providers(self, code: str) -> list[str]:
        """The providers a consultant worked at (the consultants file, else the open data's main provider)."""
        return list(dict.fromkeys(p for c, p, _ in self._works if c == code))

    def consultants_at(self, provider: str) -> list[Unit]:
        """The consultants who worked at a provider (the consultants file, else the open data's main provider)."""
        codes = dict.fromkeys(c for c, p, _ in self._works if p == provider)
        units = [self.units[("consultant", c)] for c in codes if ("consultant", c) in self.units]
        return sorted(units, key=lambda u: (_surname_key(u.label), u.id))

    @cached_property
    def _notes(self) -> dict[str, dict]:
        if self.notes is None or self.notes.empty:
            return {}
        return {str(r["provider_code"]): r for r in self.notes.to_dict("records")}

    def note(self, provider: str) -> dict:
        """A provider's statement and validation date ({} when none)."""
        return self._notes.get(provider, {})

    @cached_property
    def views(self) -> dict[tuple[str, str], MeasureView]:
        """Every published measure's view at each level with units, in declaration order."""
        views = {}
        for level in LEVELS:
            rows = self.level_rows(level)
            for m in self.measures:
                of = rows[rows["measure"] == m["id"]]
                if len(of):
                    views[(m["id"], level)] = MeasureView(self, m, level, of)
        return views

    @cached_property
    def _national(self) -> dict[tuple[str, str], dict]:
        rows = self.level_rows("national")
        return {(m, s): r for m, s, r in zip(rows["measure"], rows["statistic"], rows.to_dict("records"), strict=True)}

    def national_row(self, measure_id: str, statistic: str) -> dict | None:
        return self._national.get((measure_id, statistic))


def _surname_key(name: str) -> tuple[str, str]:
    """Names sorted by surname then first names ("Asha Patel" under P), as a reader looks one up."""
    parts = name.split()
    return (parts[-1].lower(), name.lower()) if parts else ("", "")


# ------------------------------------------------------------------ one measure at one level


class MeasureView:
    """One published measure at one level: its units' figures as text, its funnel and the table of the
    funnel's figures, each rendered once; :meth:`funnel_html` and :meth:`table_html` highlight a unit."""

    def __init__(self, site: SiteData, measure: dict, level: str, rows: pd.DataFrame):
        self.site, self.measure, self.level = site, measure, level
        self.id = measure["id"]
        curves = site.funnels if site.funnels is not None else pd.DataFrame(columns=["measure", "level", "statistic"])
        curve = curves[(curves["measure"] == self.id) & (curves["level"] == level)]
        self.statistic = funnel_statistic(measure, curve["statistic"]) if len(curve) else measure["headline"]
        if self.statistic not in set(rows["statistic"]):
            self.statistic = measure["headline"]
        self.curve = curve[curve["statistic"] == self.statistic] if len(curve) else curve
        self.rows = rows
        self.by_unit = {(u, s): r for u, s, r in zip(rows["unit_id"], rows["statistic"],
                                                      rows.to_dict("records"), strict=True)}
        self.statistics = sorted(set(rows["statistic"]), key=_statistic_order)
        self.unit_ids = list(dict.fromkeys(rows["unit_id"]))
        self.x, self.xlabel = funnel_axis(measure, self.statistic, site.wording)
        self.percent = is_percent(self.statistic)
        self.has_events = measure["kind"] in ("proportion", "survival")
        self.has_expected = self.statistic in RATIO_STATISTICS

    # -- figures of one unit

    def row(self, unit_id: str, statistic: str | None = None) -> dict | None:
        return self.by_unit.get((unit_id, statistic or self.statistic))

    def value(self, row: dict | None, statistic: str | None = None) -> str:
        if row is None:
            return "n/a"
        if row["low_volume"]:
            return "In the low-volume group"
        return format_value(self.measure, statistic or row["statistic"], row["value"], row["suppressed"])

    def interval(self, row: dict | None, statistic: str | None = None) -> str:
        if row is None or row["low_volume"]:
            return ""
        if row["suppressed"]:
            return SUPPRESSED
        if row["lower95"] != row["lower95"]:
            return "n/a"
        return range_text(self.measure, statistic or row["statistic"], row["lower95"], row["upper95"])

    def status(self, row: dict | None) -> str:
        if row is None:
            return "n/a"
        return status_words(self.measure, self.status_flag(row), shown=not row["suppressed"],
                            low_volume=row["low_volume"], pooled=row["unit_id"] == LOW_VOLUME_ID)

    def status_flag(self, row: dict) -> str:
        """The flag a unit is judged by: the headline's (an adjusted proportion's O/E carries the same)."""
        headline = self.row(row["unit_id"], self.measure["headline"])
        return _flag(headline) or _flag(row)

    def label(self, unit: Unit, row: dict | None) -> str:
        """A unit's tooltip and accessible name: name, value, 95% interval, status in words."""
        interval = self.interval(row)
        what = statistic_label(self.measure, self.statistic)
        text = f"{unit.label}: {what} {self.value(row)}"
        if interval and interval not in (SUPPRESSED, "n/a"):
            text += f" (95% interval {interval})"
        return f"{text}; {lower_first(self.status(row))}"

    @cached_property
    def national(self) -> dict | None:
        return self.site.national_row(self.id, self.statistic)

    @cached_property
    def target(self) -> float:
        if len(self.curve):
            return float(self.curve["target"].iat[0])
        targets = self.rows["target"].dropna()
        return float(targets.iat[0]) if len(targets) else float("nan")

    # -- the funnel

    @cached_property
    def funnel(self) -> Funnel | None:
        """The funnel of every unit with a value (own units and the pool), laid out once."""
        if not len(self.curve):
            return None
        points = []
        for code in self.unit_ids:
            row = self.row(code)
            if row is None or row["low_volume"] or row["suppressed"]:
                continue
            unit = self.site.unit(self.level, code)
            points.append(FunnelPoint(code, unit.label, float(row[self.x]), float(row["value"]),
                                      self.label(unit, row), status_css(self.measure, self.status_flag(row)),
                                      pooled=code == LOW_VOLUME_ID))
        drawn = [p for p in points if p.x == p.x and p.x > 0 and p.y == p.y]
        plural = self.site.wording["providers"] if self.level == "provider" else "consultants"
        target = self.target
        t_label = target_label(self.measure, self.statistic, target)
        description = (f"Funnel plot of {len(drawn)} {plural}: {funnel_ylabel(self.measure, self.statistic)} "
                       f"against {self.xlabel.removesuffix(' (log scale)').lower()} on a log scale, with 95% "
                       f"(dashed) and 99.8% (solid) control limits around the {t_label}"
                       + ("" if any(c.isdigit() for c in t_label) or target != target else
                          f" ({value_text(self.measure, self.statistic, target)})")
                       + ". Each point can be reached with the Tab key; the table below gives the same figures.")
        axes = FunnelAxes(svg_id=f"funnel-{safe_name(self.id)}-{self.level}",
                          title=f"{self.measure['label']}: {plural}", xlabel=self.xlabel,
                          ylabel=funnel_ylabel(self.measure, self.statistic), target=target,
                          target_label=t_label, percent=self.percent, description=description)
        return Funnel(points, self.curve, axes)

    def funnel_html(self, highlight: str | None, legend: str = "") -> Markup:
        funnel = self.funnel
        if funnel is None:
            return Markup("")
        unit = self.site.unit(self.level, highlight) if highlight else None
        note = f"{unit.label} is the diamond labelled with its name." if unit else ""
        return funnel.svg(highlight, note, legend)

    # -- the table of the funnel's figures

    @cached_property
    def table_columns(self) -> list[dict]:
        word = self.site.wording
        columns = [{"text": word["provider"].capitalize() if self.level == "provider" else "Consultant"},
                   {"text": "Code"}]
        if self.level == "consultant":
            columns.append({"text": f"Main {word['provider']}"})
        columns.append({"text": f"{word['activity'].capitalize()} analysed", "num": True})
        if self.has_events:
            columns.append({"text": "Deaths" if self.measure["kind"] == "survival" else "Events", "num": True})
        elif self.has_expected:
            columns.append({"text": "Observed", "num": True})
        if self.has_expected:
            columns.append({"text": "Expected", "num": True})
        columns += [{"text": statistic_label(self.measure, self.statistic), "num": True},
                    {"text": "95% interval", "num": True}, {"text": "Status"}]
        return columns

    def table_cells(self, code: str) -> dict:
        """One unit's row of the funnel's table: cells as text, which are counts, sort keys."""
        row = self.row(code)
        unit = self.site.unit(self.level, code)
        hidden = bool(row and row["suppressed"])
        cells: list[dict] = []
        if self.level == "consultant":
            parent = row.get("parent_id") if row else None
            parent = self.site.unit("provider", str(parent)) if isinstance(parent, str) else None
            cells.append({"text": parent.label if parent else ""})
        # Counts, expected and values sort by their text ("1,234", "5.2%", "12.5 hours" read as numbers by
        # site.js): no sort key is written, which keeps the 120-row tables of every provider page small.
        cells.append({"count": True, "text": count_text(row["denominator"], hidden) if row else ""})
        if self.has_events or self.has_expected:
            counted = "numerator" if self.has_events else "observed"
            cells.append({"count": True, "text": count_text(row[counted], hidden) if row else ""})
        if self.has_expected:
            expected = row["expected"] if row else float("nan")
            cells.append({"num": True, "text": "" if expected != expected else f"{expected:,.1f}"})
        cells.append({"num": True, "text": self.value(row)})
        cells.append({"num": True, "text": self.interval(row)})
        flag = self.status_flag(row) if row else ""
        cells.append({"status": status_css(self.measure, flag), "text": self.status(row),
                      "sort": FLAG_ORDER.get(flag, len(FLAG_ORDER)) if row and not row["low_volume"] else 9})
        return {"unit": unit, "cells": cells, "pooled": code == LOW_VOLUME_ID}

    @cached_property
    def _rows_html(self) -> dict[str, str]:
        macros = _macros()
        return {code: str(macros.unit_row(self.table_cells(code), self.id, False, _root(1)))
                for code in self.ordered_units}

    @cached_property
    def ordered_units(self) -> list[str]:
        """Units in the table's order: by name (as a reader looks one up), the pooled group last."""
        own = [c for c in self.unit_ids if c != LOW_VOLUME_ID]
        own.sort(key=lambda c: (self.site.unit(self.level, c).label.lower(), c))
        return own + [c for c in self.unit_ids if c == LOW_VOLUME_ID]

    def table_html(self, highlight: str | None, caption: str, only: Sequence[str] | None = None) -> Markup:
        """The funnel's figures as a table, every unit by name (or the units ``only``), ``highlight``'s row
        marked; links from a page one folder down (``providers/``, ``consultants/``)."""
        keep = set(only or ())
        units = self.ordered_units if only is None else [c for c in self.ordered_units if c in keep]
        rows = "".join(str(_macros().unit_row(self.table_cells(c), self.id, True, _root(1))) if c == highlight
                       else self._rows_html[c] for c in units)
        return _macros().unit_table(self.table_columns, Markup(rows), caption,
                                    f"table-{safe_name(self.id)}-{self.level}")


def _sort(value: object) -> str | None:
    """A numeric sort key for a cell (None: sort by its text)."""
    return None if value is None or value != value else f"{float(value):.10g}"


def lower_first(text: str) -> str:
    """"Alarm: worse" -> "alarm: worse": a status inside a sentence."""
    return text[:1].lower() + text[1:]


def _root(depth: int) -> str:
    """The relative path from a page ``depth`` folders down back to the site's root."""
    return "../" * depth


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("auditreport.publication", "templates/site"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["lower_first"] = lower_first
    env.globals.update(site_css=Markup(SITE_CSS.read_text(encoding="utf-8")),
                       site_js=Markup(SITE_JS.read_text(encoding="utf-8")))
    return env


@lru_cache(maxsize=1)
def _macros():
    return _environment().get_template("macros.html.j2").module


def _render(template: str, **context: object) -> str:
    return _environment().get_template(template).render(**context)


# ------------------------------------------------------------------ pages


@dataclass(frozen=True)
class _Column:
    """One column of the site's index: a measure's statistic, its value or its status."""

    measure: dict
    statistic: str
    status: bool = False

    @property
    def heading(self) -> str:
        if self.status:
            return f"{self.measure['label']}: status"
        return f"{self.measure['label']}: {statistic_label(self.measure, self.statistic)}"


def index_columns(measures: Sequence[dict], statistics: set[str]) -> list[_Column]:
    """Each published measure's headline value, then its status where it carries one; a survival
    measure also shows its survival at each horizon, in order of time."""
    columns = []
    for m in measures:
        columns.append(_Column(m, m["headline"]))
        if m["carries_status"]:
            columns.append(_Column(m, m["headline"], status=True))
        if m["kind"] == "survival":
            horizons = sorted((s for s in m["statistics"] if s.startswith("survival_") and s != m["headline"]
                               and s in statistics), key=_statistic_order)
            columns += [_Column(m, s) for s in horizons]
    return columns


def cases_measure(config: AuditConfig, measures: Sequence[dict]) -> dict | None:
    """The measure whose denominator the index shows as a provider's cases: the first published one that
    every analysed record is eligible for (no eligibility filter; survival last), else the first."""
    unfiltered = {m.id for m in config.measures if m.eligible is None}
    ranked = sorted(measures, key=lambda m: (m["id"] not in unfiltered, m["kind"] == "survival"))
    return ranked[0] if ranked else None


def provenance(meta: dict) -> dict:
    """What made these results: the same fingerprints as on every report's cover."""
    code = meta.get("code", {})
    return {"created": meta.get("created", ""), "version": code.get("package_version", ""),
            "commit": str(code.get("git_commit", ""))[:12],
            "data_sha": meta.get("data", {}).get("source", {}).get("sha256", "")[:12],
            "config_sha": meta.get("config", {}).get("sha256", "")[:12]}


def _common(site: SiteData, depth: int, title: str, current: str) -> dict:
    """What every page's layout needs: title, links back to the root, navigation, the audit's words."""
    version = code_version()
    return {"title": title, "root": _root(depth), "current": current, "audit": site.config.name,
            "period": site.config.period_label, "wording": site.wording, "national": site.national,
            "has_consultants": bool(site.consultants_published() or site.consultants_pooled()),
            "produced": site.produced, "version": version["package_version"],
            "commit": str(version["git_commit"])[:12], "provenance": provenance(site.meta),
            "threshold": site.config.suppression_threshold}


def index_page(site: SiteData) -> str:
    """The site's front page: every provider with every published measure's headline value and status."""
    measures = site.measures
    prov = site.level_rows("provider")
    cells = {(u, m, s): r for u, m, s, r in zip(prov["unit_id"], prov["measure"], prov["statistic"],
                                                 prov.to_dict("records"), strict=True)}
    columns = index_columns(measures, set(prov["statistic"]))
    cases_of = cases_measure(site.config, measures)
    rows = []
    for unit in site.providers():
        key = (unit.id, cases_of["id"], cases_of["headline"]) if cases_of else None
        cases = cells.get(key) if key else None
        row = {"unit": unit, "report": site.reports.get(unit.id),
               "cases": count_text(cases["denominator"], cases["suppressed"]) if cases else "",
               "cases_sort": _sort(cases["denominator"]) if cases else None, "cells": []}
        for col in columns:
            r = cells.get((unit.id, col.measure["id"], col.statistic))
            if r is None:
                row["cells"].append({"text": "" if col.status else "n/a", "num": not col.status})
            elif col.status:
                flag = "" if r["low_volume"] else _flag(r)
                row["cells"].append({"status": status_css(col.measure, flag),
                                     "text": status_words(col.measure, flag, shown=not r["suppressed"],
                                                          low_volume=r["low_volume"]),
                                     "sort": FLAG_ORDER.get(flag, len(FLAG_ORDER)) if not r["low_volume"] else 9,
                                     "title": flag_description(flag, col.measure["direction"]) if flag else ""})
            else:
                text = ("Low-volume group" if r["low_volume"] else
                        format_value(col.measure, col.statistic, r["value"], r["suppressed"]))
                row["cells"].append({"text": text, "num": True, "sort": _sort(r["value"])})
        rows.append(row)
    pools = [_pool_summary(view) for (_, level), view in site.views.items() if level == "provider"]
    return _render("index.html.j2", **_common(site, 0, f"{site.config.name} {site.config.period_label}", "index"),
                   columns=columns, rows=rows, cases_of=cases_of, measures=_measure_rows(site),
                   pools=[p for p in pools if p], open_data=_open_data_links(site))


def _measure_rows(site: SiteData) -> list[dict]:
    """What each measure is: its description, what the index shows of it, direction, target, national value."""
    out = []
    for m in site.measures:
        national = site.national_row(m["id"], m["headline"])
        value = (format_value(m, m["headline"], national["value"], _is_true(national.get("suppressed")))
                 if national else "n/a")
        target = "what was expected for the case mix (O/E = 1)" if m["adjusted"] else target_text(m)
        status = (f"beyond the 95% (alert) or 99.8% (alarm) limits around {target}" if m["carries_status"]
                  else "none (context only)")
        out.append({"measure": m, "shown": statistic_label(m, m["headline"]),
                    "direction": direction_words(m["direction"]), "status": status, "national": value,
                    "policy": site.measure_policy(m["id"])})
    return out


def _pool_summary(view: MeasureView) -> dict | None:
    """A measure's low-volume group at a level, as a sentence's parts (None when it has none)."""
    row = view.row(LOW_VOLUME_ID, view.measure["headline"])
    if row is None:
        return None
    unit = view.site.unit(view.level, LOW_VOLUME_ID)
    members = [c for c in view.unit_ids if c != LOW_VOLUME_ID and (view.row(c) or {}).get("low_volume")]
    return {"measure": view.measure, "name": unit.label, "value": view.value(row, view.measure["headline"]),
            "statistic": statistic_label(view.measure, view.measure["headline"]),
            "interval": view.interval(row, view.measure["headline"]), "members": len(members),
            "records": count_text(row["denominator"], row["suppressed"]),
            "events": count_text(row["numerator"], row["suppressed"]) if view.has_events else None}


def _open_data_links(site: SiteData) -> list[dict]:
    return [{"measure": m, "csv": f"data/{safe_name(m['id'])}.csv",
             "dictionary": f"data/{safe_name(m['id'])}_dictionary.csv"} for m in site.measures]


def unit_sections(site: SiteData, unit: Unit) -> list[dict]:
    """A unit's page's sections, one per published measure it has figures in."""
    sections = []
    word = site.wording
    for m in site.measures:
        view = site.views.get((m["id"], unit.level))
        if view is None or view.row(unit.id, m["headline"]) is None and view.row(unit.id) is None:
            continue
        headline = view.row(unit.id, m["headline"]) or view.row(unit.id)
        low = bool(headline["low_volume"])
        pool = _pool_summary(view) if low else None
        threshold = site.minimum_volume(unit.level)
        stats = []
        figures_of = LOW_VOLUME_ID if low else unit.id
        for statistic in view.statistics:
            row = view.row(figures_of, statistic)
            national = site.national_row(m["id"], statistic)
            if row is None:
                continue
            stats.append({"label": statistic_label(m, statistic), "value": view.value(row, statistic),
                          "interval": view.interval(row, statistic),
                          "national": view.value(national, statistic) if national else "n/a"})
        counted = view.row(figures_of) or headline
        shown = view.row(figures_of, m["headline"]) or headline  # a low-volume unit: the pool's figures
        counts = [{"label": f"{word['activity'].capitalize()} analysed",
                   "text": count_text(headline["denominator"], headline["suppressed"])}]
        if not low and view.has_events:
            counts.append({"label": "Deaths" if m["kind"] == "survival" else "Events",
                           "text": count_text(counted["numerator"], counted["suppressed"])})
        elif not low and view.has_expected:
            counts.append({"label": "Observed", "text": count_text(counted["observed"], counted["suppressed"])})
        expected = counted.get("expected") if view.has_expected and not low else None
        what = "providers" if unit.level == "provider" else "consultants"
        anchor = f"m-{safe_name(m['id'])}"
        # A consultant's page lists its own row and the pool's: every consultant's (500 in the demo) is on the
        # consultants' index, once, rather than on each of their pages.
        only = None if unit.level == "provider" else [unit.id, LOW_VOLUME_ID]
        caption = (f"{m['label']}: every {word['provider']}'s figures, by name "
                   f"({'the low-volume group' if low else unit.label} marked)" if only is None else
                   f"{m['label']}: {'the low-volume group' if low else unit.label}'s figures")
        sections.append({
            "measure": m, "anchor": anchor, "low": low, "pool": pool,
            "threshold": threshold, "status": view.status(headline),
            "status_css": status_css(m, "" if low else view.status_flag(headline)),
            "headline": statistic_label(m, m["headline"]), "value": view.value(shown, m["headline"]),
            "interval": view.interval(shown, m["headline"]),
            "national": view.value(site.national_row(m["id"], m["headline"]), m["headline"]),
            "counts": counts, "expected": None if expected is None or expected != expected else f"{expected:,.1f}",
            "stats": stats, "policy": site.measure_policy(m["id"]),
            "funnel": view.funnel_html(LOW_VOLUME_ID if low else unit.id,
                                       "low-volume group" if low else f"this {word['provider']}"
                                       if unit.level == "provider" else "this consultant"),
            "table": view.table_html(LOW_VOLUME_ID if low else unit.id, caption, only=only),
            "full_table": None if only is None else f"{_root(1)}consultants/index.html#{anchor}",
            "table_id": f"table-{safe_name(m['id'])}-{unit.level}", "what": what,
        })
    return sections


def provider_page(site: SiteData, unit: Unit) -> str:
    """A provider's page: its statement and validation, every published measure with its funnel and table,
    and the consultants who worked there."""
    note = site.note(unit.id)
    statement = note.get("statement")
    consultants = site.consultants_at(unit.id)
    return _render("provider.html.j2", **_common(site, 1, f"{unit.label}: {site.config.name}", "provider"),
                   unit=unit, report=site.reports.get(unit.id),
                   statement=statement if isinstance(statement, str) and statement.strip() else None,
                   validated=date_words(note.get("validated_on")), sections=unit_sections(site, unit),
                   consultants=consultants)


def consultant_page(site: SiteData, unit: Unit) -> str:
    """A consultant's page: name, GMC number, specialty, providers and every published measure."""
    first = site.consultant_facts(unit.id)
    providers = [site.unit("provider", code) for code in site.consultant_providers(unit.id)]
    return _render("consultant.html.j2", **_common(site, 1, f"{unit.label}: {site.config.name}", "consultant"),
                   unit=unit, registration=first.get("registration_number") or "",
                   specialty=first.get("specialty") or "", providers=providers,
                   sections=unit_sections(site, unit))


def consultants_index(site: SiteData) -> str:
    """Every consultant with a published result, with each consultant-level measure's headline and status,
    then those whose results are all in the low-volume group."""
    views = [v for (_, level), v in site.views.items() if level == "consultant"]
    rows = []
    for unit in site.consultants_published():
        cells = []
        for view in views:
            row = view.row(unit.id, view.measure["headline"])
            flag = view.status_flag(row) if row and not row["low_volume"] else ""
            cells.append({"text": view.value(row, view.measure["headline"]), "num": True,
                          "sort": _sort(row["value"]) if row else None})
            if view.measure["carries_status"]:
                cells.append({"status": status_css(view.measure, flag), "text": view.status(row),
                              "sort": FLAG_ORDER.get(flag, len(FLAG_ORDER)) if row and not row["low_volume"] else 9,
                              "title": ""})
        providers = [site.unit("provider", c) for c in site.consultant_providers(unit.id)]
        rows.append({"unit": unit, "providers": providers, "cells": cells,
                     "specialty": site.consultant_facts(unit.id).get("specialty") or ""})
    headings = []
    for view in views:
        headings.append(f"{view.measure['label']}: {statistic_label(view.measure, view.measure['headline'])}")
        if view.measure["carries_status"]:
            headings.append(f"{view.measure['label']}: status")
    pooled = [{"unit": u, "providers": [site.unit("provider", c) for c in site.consultant_providers(u.id)]}
              for u in site.consultants_pooled()]
    pools = [p for p in (_pool_summary(v) for v in views) if p]
    funnels = [{"measure": v.measure, "anchor": f"m-{safe_name(v.id)}", "funnel": v.funnel_html(None),
                "table_id": f"table-{safe_name(v.id)}-consultant",
                "table": v.table_html(None, f"{v.measure['label']}: every consultant's figures, by name")}
               for v in views]
    return _render("consultants.html.j2", **_common(site, 1, f"Consultants: {site.config.name}", "consultants"),
                   headings=headings, rows=rows, pooled=pooled, pools=pools, funnels=funnels,
                   minimum=site.minimum_volume("consultant"))


# ------------------------------------------------------------------ open data per measure


def measure_open_data(site: SiteData, dictionary: pd.DataFrame, columns: Sequence[str]) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each published measure's rows of the open data and its dictionary: the measure's entry, the
    statistics it has, and every column."""
    out = {}
    for m in site.measures:
        rows = site.data[site.data["measure"] == m["id"]]
        rows = rows.reindex(columns=[c for c in columns if c in site.data.columns])
        statistics = set(rows["statistic"])
        keep = ((dictionary["entry"] == "measure") & (dictionary["name"] == m["id"])) | (
            (dictionary["entry"] == "statistic") & dictionary["name"].isin(statistics)) | (dictionary["entry"] == "column")
        out[m["id"]] = (rows, dictionary[keep])
    return out


# ------------------------------------------------------------------ the whole site


def write_pages(config: AuditConfig, site_dir: Path, data: pd.DataFrame, meta: dict,
                public_jobs: Sequence[ReportJob], consultants: pd.DataFrame | None = None,
                notes: pd.DataFrame | None = None, funnels: pd.DataFrame | None = None) -> SiteData:
    """Write every page and the open data per measure into ``site_dir`` (the staging site folder), from
    the open data ``data`` (``indicators_public`` as published; ``policy`` and ``low_volume`` columns
    used when present), the bundle's metadata, consultants, provider notes and funnel curves.

    The public reports are not copied here (``site._build_site`` copies them to ``reports/``); the pages
    link them as ``reports/<code>.html`` and ``.pdf``.
    """
    site = SiteData(config, data, meta, public_jobs, consultants, notes, funnels)
    site_dir = Path(site_dir)
    for folder in ("providers", "data"):
        (site_dir / folder).mkdir(parents=True, exist_ok=True)
    (site_dir / "index.html").write_text(index_page(site), encoding="utf-8")
    for unit in site.providers():
        (site_dir / unit.page).write_text(provider_page(site, unit), encoding="utf-8")
    if site.consultants_published() or site.consultants_pooled():
        (site_dir / "consultants").mkdir(exist_ok=True)
        (site_dir / "consultants" / "index.html").write_text(consultants_index(site), encoding="utf-8")
        for unit in site.consultants_published():
            (site_dir / unit.page).write_text(consultant_page(site, unit), encoding="utf-8")
    columns = open_columns(data)
    data = data[data["measure"].isin([m["id"] for m in site.measures])]  # as open_data: published measures only
    whole = neutralise_formulas(data.reindex(columns=columns))
    dictionary = neutralise_formulas(data_dictionary(meta, data))
    whole.to_csv(site_dir / "data" / "indicators.csv", index=False)
    dictionary.to_csv(site_dir / "data" / "data_dictionary.csv", index=False)
    for measure_id, (rows, entries) in measure_open_data(site, dictionary, columns).items():
        neutralise_formulas(rows).to_csv(site_dir / "data" / f"{safe_name(measure_id)}.csv", index=False)
        entries.to_csv(site_dir / "data" / f"{safe_name(measure_id)}_dictionary.csv", index=False)
    return site


def _optional_table(bundle: object, name: str) -> pd.DataFrame | None:
    """A bundle table that older bundles (format 2) do not have: None when absent."""
    try:
        return getattr(bundle, name)
    except (AttributeError, FileNotFoundError, OSError):
        return None


def write_site(config: AuditConfig, site_dir: Path, data: pd.DataFrame, public_jobs: Sequence[ReportJob],
               meta: dict, bundle_dir: Path) -> None:
    """The site builder's entry point (contract section 6): every page of the site into ``site_dir`` (the
    staging folder), reading the funnel curves, consultants and provider notes from the bundle."""
    bundle = load_bundle(bundle_dir)
    write_pages(config, site_dir, data, meta, public_jobs, consultants=_optional_table(bundle, "consultants"),
                notes=_optional_table(bundle, "provider_notes"), funnels=_optional_table(bundle, "funnels"))
