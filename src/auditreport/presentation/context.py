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


@dataclass
class ReportContext:
    """One report's bundle, audience (``"local"`` or ``"public"``) and provider (``None``: national)."""

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

    @cached_property
    def indicators(self) -> pd.DataFrame:
        """The indicator table as this audience may see it.

        The public one is the table the national stage suppressed once for every report and the open
        data, so reports and ``indicators.csv`` hide the same cells.
        """
        if not self.public:
            return self.bundle.indicators.assign(suppressed=False)
        return self.bundle.indicators_public

    @property
    def provider_name(self) -> str:
        rows = self.bundle.indicators
        match = rows.loc[(rows["level"] == "provider") & (rows["unit_id"] == self.provider), "unit_name"]
        return str(match.iat[0]) if len(match) else str(self.provider)

    @cached_property
    def unit_names(self) -> pd.Series:
        """Each unit's name by its code."""
        return self.indicators.drop_duplicates("unit_id").set_index("unit_id")["unit_name"]

    def unit_rows(self, level: str, unit: str | None) -> pd.DataFrame:
        """One unit's indicator rows (this audience's), indexed by indicator."""
        t = self.indicators
        return t[(t["level"] == level) & (t["unit_id"] == unit)].set_index("indicator")

    @cached_property
    def survival_tests(self) -> pd.DataFrame:
        """Median survival and log-rank results by unit code (empty when the audit has no survival)."""
        tests = self.bundle.survival_tests
        return tests.set_index("unit_id") if len(tests) else pd.DataFrame()

    def monitoring_signals(self) -> pd.DataFrame:
        """Every RA-CUSUM signal of the period (one row per signalling patient)."""
        return self.bundle.monitoring_signals()

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
