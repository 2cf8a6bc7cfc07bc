"""Typed report sections: what a section says, separate from how it is written out as HTML.

A report section is a :class:`Section` (a heading and its blocks, in order). Blocks are paragraphs,
tables, charts, the cover, and groups or subsections of these. Text is plain: it is escaped once,
where the templates write it (:mod:`auditreport.presentation.display`), so a provider called
``<script>`` prints as text and no section has to remember to escape. The few marked-up pieces
inside a sentence (a count the disclosure checker must find, a flag badge, emphasis, code) are
inline objects rather than HTML strings.

Disclosure decisions are made before a block is built (by the section builders through
:class:`auditreport.presentation.context.ReportContext`); blocks only carry the resulting text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from matplotlib.figure import Figure

# Inline pieces of a paragraph or table cell ----------------------------------------------------------------

@dataclass(frozen=True)
class Count:
    """A count of patients or events inside a sentence, marked for the disclosure checker (``data-count``).

    ``measure`` is the id of the measure whose unit result the count is (a unit's events or records in the
    measure): marked ``data-count-measure`` too, so the checker follows that measure's publication policy.
    """

    text: str
    measure: str | None = None


@dataclass(frozen=True)
class Strong:
    """Emphasised text."""

    text: str


@dataclass(frozen=True)
class Code:
    """A code or fingerprint, set in monospace."""

    text: str


@dataclass(frozen=True)
class Flag:
    """An outlier flag as a badge: its words carry the meaning, colour only reinforces it.

    ``direction`` is the measure's (``"lower_is_better"`` or ``"higher_is_better"``): with it the badge
    says "worse" or "better than expected" (``rules.flags.flag_words``); without it, "high" or "low".
    """

    flag: str
    direction: str = ""


Inline = str | Count | Strong | Code | Flag


# Blocks ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Paragraph:
    """A paragraph of plain text and inline pieces; ``css_class`` is ``"lead"``, ``"note"``, ``"code"`` or ""."""

    parts: tuple[Inline, ...]
    css_class: str = ""


def paragraph(*parts: Inline, css_class: str = "") -> Paragraph:
    """A :class:`Paragraph` of ``parts`` (plain strings and inline pieces), in order."""
    return Paragraph(tuple(parts), css_class)


@dataclass(frozen=True)
class Table:
    """A data table. Cells are plain text or inline pieces.

    ``numeric`` and ``counts`` are column positions: both are right-aligned, and cells of ``counts``
    columns (counts of patients or events) carry ``data-count`` so the disclosure checker finds every
    count in what was written, whatever the column is called. ``count_measures`` maps a count column to
    the measure whose unit results it counts (``data-count-measure``; contract section 5).
    """

    headers: tuple[str, ...]
    rows: tuple[tuple[Inline, ...], ...]
    caption: str = ""
    numeric: tuple[int, ...] = ()
    counts: tuple[int, ...] = ()
    css_class: str = "data"
    count_measures: dict[int, str] = field(default_factory=dict)


def table(headers: Sequence[str], rows: Sequence[Sequence[Inline]], *, caption: str = "",
          numeric: Sequence[int] = (), counts: Sequence[int] = (), css_class: str = "data",
          count_measures: Mapping[int, str] | None = None) -> Table:
    """A :class:`Table` from lists (cells that are numbers become their ``str``)."""
    return Table(tuple(headers), tuple(tuple(c if isinstance(c, Inline) else str(c) for c in row) for row in rows),
                 caption, tuple(numeric), tuple(counts), css_class, dict(count_measures or {}))


@dataclass(frozen=True)
class Chart:
    """A matplotlib figure and its alt text (what the chart shows, for readers who cannot see it)."""

    figure: Figure
    alt: str


def chart(figure: Figure) -> Chart:
    """A :class:`Chart` whose alt text is the figure's own (set by :mod:`figures`) or else its titles."""
    alt = getattr(figure, "alt_text", "")
    if not alt:
        titles = [ax.get_title(loc="left") or ax.get_title() for ax in figure.axes]
        alt = "; ".join(t for t in titles if t) or "Chart"
    return Chart(figure, alt)


@dataclass(frozen=True)
class Group:
    """Blocks laid out together in one ``<div class=css_class>`` (e.g. the case-mix tables side by side)."""

    blocks: tuple[Block, ...]
    css_class: str


@dataclass(frozen=True)
class Cover:
    """The report's first page: audience, audit, unit, period and where the figures came from.

    ``running`` is the running header of the PDF's later pages.
    """

    audience: str
    audience_label: str
    audit_name: str
    heading: str
    provider_code: str | None
    code_label: str
    period: str
    measures: str
    produced: str
    package_version: str
    commit: str
    data_sha: str
    config_sha: str
    running: str


@dataclass(frozen=True)
class Section:
    """A heading (``title``, none if empty) at ``level`` and its blocks; subsections are blocks too."""

    title: str
    blocks: tuple[Block, ...] = field(default=())
    level: int = 2


Block = Paragraph | Table | Chart | Group | Cover | Section


def section(title: str, *blocks: Block | None, level: int = 2) -> Section:
    """A :class:`Section` of the given blocks, leaving out ``None`` (a part that does not apply)."""
    return Section(title, tuple(b for b in blocks if b is not None), level)
