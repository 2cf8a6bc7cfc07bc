"""The report's view of a results bundle: its audience, its provider and the rows a report needs.

Every report section reads the bundle through a :class:`ReportContext`, and makes its disclosure
decisions through it too: the context knows the audience and the suppression threshold and asks
:mod:`auditreport.rules.disclosure` (``format_count``, ``is_small``, ``suppress_group``), so one rule
decides what a public report hides and a confidential one shows in full, from the same bundle.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from auditreport.bundle import Bundle, load_bundle
from auditreport.presentation import figures
from auditreport.rules.disclosure import format_count, is_small, suppress_group

AUDIENCES = ("local", "public")
AUDIENCE_LABEL = {"local": "Confidential: local feedback", "public": "For publication"}


#: Words a report uses where the audit definition gives none (``metadata["wording"]``).
DEFAULT_WORDING = {"activity": "records", "activity_singular": "record", "provider": "provider",
                   "providers": "providers", "population": "National"}


@dataclass
class ReportContext:
    """One report's bundle, audience (``"local"`` or ``"public"``) and provider (``None``: national).

    This is the reading API of the report notebooks, the audit's own notebooks included: the audit's
    measures and words, each unit's figures and each measure's tables and curves, as this audience may
    see them. Every method reads the bundle and never refits anything. In the examples ``bundle_dir``
    is a results bundle (``reports/<audit>/<period>/bundle``) and ``provider`` one of its provider codes.

    Examples
    --------
    >>> ctx = load_context(bundle_dir, "local", provider)
    >>> m = ctx.measure("mortality")
    >>> m["kind"], m["headline"]
    ('proportion', 'adjusted_rate')
    >>> rows = ctx.unit_rows("provider", provider, "mortality")     # one row per statistic
    >>> sorted(rows.index)                                           # doctest: +ELLIPSIS
    ['adjusted_rate', 'oe_ratio', 'rate']
    >>> table = ctx.measure_table("mortality")                       # every provider's headline
    >>> provider in set(table["unit_id"])
    True

    A measure's section, or only its funnel, as a report shows them:

    >>> from auditreport.presentation.display import show
    >>> from auditreport.presentation.measure_sections import measure_section
    >>> from auditreport.presentation.measure_parts import funnel_chart
    >>> section = measure_section(ctx, "mortality")
    >>> section.title == m["label"]
    True
    >>> chart = funnel_chart(ctx, "mortality")                       # a Chart: figure and alt text
    >>> show(chart)                                                  # doctest: +SKIP
    """

    bundle: Bundle
    audience: str
    provider: str | None = None

    @property
    def meta(self) -> dict:
        return self.bundle.metadata

    @property
    def public(self) -> bool:
        return self.audience == "public"

    @property
    def threshold(self) -> int:
        """Counts from 1 to this are suppressed in public outputs (the audit's configuration)."""
        return int(self.meta["publication"]["suppression_threshold"])

    # The audit's words and measures -------------------------------------------------------------------

    @cached_property
    def wording(self) -> dict[str, str]:
        """The audit's words: ``activity`` ("admissions"), ``activity_singular``, ``provider`` ("hospital"),
        ``providers``, ``population`` ("England") and ``national_unit_name`` ("England (all hospitals)").

        >>> ctx.wording["national_unit_name"] == f"{ctx.wording['population']} (all {ctx.wording['providers']})"
        True
        """
        words = {**DEFAULT_WORDING, **(self.meta.get("wording") or {})}
        words.setdefault("national_unit_name", f"{words['population']} (all {words['providers']})")
        return words

    @cached_property
    def risk_factor_wording(self) -> dict[str, dict]:
        """Each risk factor's name in reports and its levels' names, by factor: ``{"age80": {"label": "Age",
        "labels": {"0": "under 80", "1": "80 or over"}}}`` (the definition's ``label`` and ``labels``, as the
        bundle recorded the definition; a factor without them is absent).

        >>> isinstance(ctx.risk_factor_wording, dict)
        True
        """
        factors = ((self.meta.get("config") or {}).get("definition") or {}).get("risk_factors") or []
        return {str(f["name"]): {"label": str(f.get("label") or ""),
                                 "labels": {str(k): str(v) for k, v in (f.get("labels") or {}).items()}}
                for f in factors if isinstance(f, dict) and "name" in f and (f.get("label") or f.get("labels"))}

    def factor_label(self, name: str) -> str:
        """A risk factor's (or field's) name as reports write it: its ``label``, or the name itself."""
        return self.risk_factor_wording.get(name, {}).get("label") or name

    @cached_property
    def measures(self) -> list[dict]:
        """The audit's measures in declaration order (the bundle's metadata entries, dicts).

        A public report lists only the published ones. Each has ``id``, ``label``, ``description``,
        ``kind`` (proportion, mean, ratio, survival), ``type``, ``direction``, ``target`` and ``target_kind``
        ("national" or "standard"), ``adjusted``, ``carries_status``, ``headline`` (the statistic that
        carries the status), ``statistics``, ``levels``, ``value_unit``, ``method``, ``national``,
        ``horizons`` and ``cusum``.

        >>> [m["id"] for m in ctx.measures]                              # doctest: +ELLIPSIS
        ['mortality', ...]
        """
        every = list(self.meta.get("measures") or [])
        return [m for m in every if m.get("published", True)] if self.public else every

    def measure(self, measure_id: str) -> dict:
        """One measure's metadata entry; ``KeyError`` naming the measures this report has.

        >>> ctx.measure("mortality")["label"]                            # doctest: +ELLIPSIS
        '...'
        """
        for m in self.measures:
            if m["id"] == measure_id:
                return m
        known = ", ".join(m["id"] for m in self.measures) or "none"
        raise KeyError(f"measure {measure_id!r} is not in this {self.audience} report of {self.bundle.path} "
                       f"(its measures: {known})")

    # Units and their figures -----------------------------------------------------------------------------

    @cached_property
    def indicators(self) -> pd.DataFrame:
        """The indicator table as this audience may see it (one row per unit, measure and statistic).

        The public one is the table the national stage suppressed once for every report and the open
        data, so reports and ``indicators.csv`` hide the same cells; it holds published measures only.
        """
        if not self.public:
            return self.bundle.indicators.assign(suppressed=False)
        t = self.bundle.indicators_public
        return t[t["measure"].isin([m["id"] for m in self.measures])]

    @property
    def provider_name(self) -> str:
        rows = self.bundle.indicators
        match = rows.loc[(rows["level"] == "provider") & (rows["unit_id"] == self.provider), "unit_name"]
        return str(match.iat[0]) if len(match) else str(self.provider)

    @cached_property
    def unit_names(self) -> pd.Series:
        """Each unit's name by its code."""
        return self.indicators.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]

    def units(self, level: str = "provider") -> pd.DataFrame:
        """The units of a level with results: ``unit_id``, ``unit_name`` and ``parent_id`` (a consultant's
        provider), by code.

        >>> provider in set(ctx.units("provider")["unit_id"])
        True
        """
        t = self.indicators
        rows = t.loc[t["level"] == level, ["unit_id", "unit_name", "parent_id"]].drop_duplicates("unit_id")
        return rows.sort_values("unit_id").reset_index(drop=True)

    def unit_rows(self, level: str, unit: str | None, measure: str) -> pd.DataFrame:
        """One unit's rows of one measure (this audience's), indexed by statistic.

        ``level`` is "national" (``unit`` "national"), "provider" or "consultant". A measure id the bundle
        lacks raises ``KeyError`` naming its measures (a misspelt id would otherwise show an empty table); a
        unit with no rows for the measure gives an empty frame.

        >>> national = ctx.unit_rows("national", "national", "mortality")
        >>> bool(0 < national.loc["rate", "value"] < 1)
        True
        """
        self.measure(measure)
        t = self.indicators
        rows = t[(t["level"] == level) & (t["unit_id"] == unit) & (t["measure"] == measure)]
        return rows.set_index("statistic")

    def measure_table(self, measure_id: str, level: str = "provider", statistic: str | None = None) -> pd.DataFrame:
        """Every unit of ``level`` on one statistic of a measure (its headline unless named), by unit code.

        A measure id the bundle lacks raises ``KeyError`` naming its measures.

        >>> t = ctx.measure_table("mortality", "provider", "rate")
        >>> list(t.columns[:4])
        ['unit_id', 'unit_name', 'parent_id', 'numerator']
        """
        headline = self.measure(measure_id)["headline"]
        statistic = statistic or headline
        t = self.indicators
        rows = t[(t["level"] == level) & (t["measure"] == measure_id) & (t["statistic"] == statistic)]
        keep = ["unit_id", "unit_name", "parent_id"] + [c for c in rows.columns if c not in (
            "unit_id", "unit_name", "parent_id", "audit", "period", "measure", "statistic", "level")]
        return rows[keep].sort_values("unit_id").reset_index(drop=True)

    def consultants_at(self, provider: str | None = None) -> list[str]:
        """The codes of the consultants with records at a provider (this report's unless named), in code order:
        every consultant who operated there, one whose main provider (``parent_id``) is another included.

        >>> units = ctx.units("consultant")
        >>> set(units.loc[units["parent_id"] == provider, "unit_id"]) <= set(ctx.consultants_at())
        True
        """
        provider = provider or self.provider
        return self.bundle.consultants_at(provider) if provider is not None else []

    def provider_note(self, provider: str | None = None) -> dict[str, str]:
        """A provider's (this report's unless named) ``statement``, as written, and ``validated_on``, the ISO date
        it signed off its data: "" where it gave none; ``validated`` says whether the audit has a validation file
        at all (without one, no provider is said to be "not validated").

        >>> sorted(ctx.provider_note())
        ['statement', 'validated', 'validated_on']
        """
        notes = self.bundle.provider_notes
        row = notes[notes["provider_code"] == (provider or self.provider)]
        note = {"statement": "", "validated_on": ""} if row.empty else {
            "statement": str(row["statement"].iat[0]), "validated_on": str(row["validated_on"].iat[0])}
        return {**note, "validated": "validation" in (self.meta.get("data") or {})}

    def funnel_curve(self, measure_id: str, level: str = "provider") -> pd.DataFrame:
        """A measure's funnel limits at ``level``: columns statistic, x, lower95, upper95, lower998, upper998
        and target (empty when the measure has no funnel at that level).

        >>> set(ctx.funnel_curve("mortality")["statistic"]) <= {"oe_ratio", "adjusted_rate"}
        True
        """
        f = self.bundle.funnels
        curve = f[(f["measure"] == measure_id) & (f["level"] == level)]
        return curve.drop(columns=["measure", "level"]).sort_values("x").reset_index(drop=True)

    def model(self, measure_id: str) -> dict:
        """A measure's risk model document (``model.json``): model, performance, calibration, coefficients and
        family, or ``{"cox": ...}`` for a survival measure; empty for a measure with none."""
        return (self.bundle.model.get("measures") or {}).get(measure_id) or {}

    def km(self, measure_id: str) -> pd.DataFrame:
        """A survival measure's Kaplan-Meier step tables, every unit (``unit_id`` "national" too)."""
        km = self.bundle.km
        return km[km["measure"] == measure_id]

    def survival_tests(self, measure_id: str) -> pd.DataFrame:
        """Median survival and log-rank results of a survival measure by unit code (empty when none)."""
        tests = self.bundle.survival_tests
        tests = tests[tests["measure"] == measure_id]
        return tests.set_index("unit_id") if len(tests) else pd.DataFrame()

    def monitoring(self, measure_id: str, provider: str) -> pd.DataFrame:
        """One provider's RA-CUSUM and VLAD series of a measure, in order."""
        return self.bundle.provider_monitoring(provider, measure_id).reset_index(drop=True)

    def monitoring_signals(self, measure_id: str) -> pd.DataFrame:
        """Every RA-CUSUM signal of a measure in the period (one row per signalling record)."""
        return self.bundle.monitoring_signals(measure_id)

    def exclusions(self, measure_id: str, unit: str | None = None) -> pd.DataFrame:
        """Records a measure left out, by reason: columns unit_id, reason, records (one unit, or every one).

        Public: the bundle's ``exclusions_public`` (suppressed two-way across providers; ``records`` blank where
        its ``suppressed`` column is true)."""
        ex = (self.bundle.measure_exclusions_public if self.public else self.bundle.measure_exclusions)(measure_id)
        if unit is not None:
            ex = ex[ex["unit_id"] == unit]
        return ex.drop(columns="measure").reset_index(drop=True)

    # Disclosure decisions, all by auditreport.rules.disclosure --------------------------------------------

    def count_text(self, value: float | None, hidden: bool = False) -> str:
        """A count as this audience may read it: in public, ``*`` when small or ``hidden`` as a complement."""
        return format_count(value, self.threshold, self.public, hidden)

    def withheld(self, *counts: float) -> bool:
        """Whether statistics resting on these counts are withheld: public, and any count is small."""
        return self.public and bool(is_small(list(counts), self.threshold).any())

    def hidden_cells(self, counts: Mapping[Hashable, float]) -> set:
        """The cells of an additive group (cells adding up to a published total) to hide in public.

        Small cells and then the next smallest until no hidden one can be worked out by subtraction;
        none in a confidential report.
        """
        return suppress_group(counts, self.threshold) if self.public else set()


def load_context(bundle_dir: str | Path, audience: str, provider: str | None = None) -> ReportContext:
    """Load the bundle for one report and set the chart style every report uses.

    Raises ``ValueError`` for an unknown audience and ``KeyError`` for a provider without results.
    """
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, got {audience!r}")
    bundle = load_bundle(bundle_dir)
    ctx = ReportContext(bundle=bundle, audience=audience, provider=provider)
    if provider is not None:
        known = set(bundle.indicators.loc[bundle.indicators["level"] == "provider", "unit_id"])
        if provider not in known:
            raise KeyError(f"provider {provider!r} has no results in {bundle.path}")
    figures.apply_style()
    return ctx
