"""Report blocks as HTML, through the Jinja templates in ``presentation/templates`` (autoescaped).

:func:`block_html` writes one typed block (:mod:`auditreport.presentation.blocks`); :func:`table`,
:func:`flag_badge` and :func:`count` give the same markup to pages built outside the report
notebooks (the publication site and indexes), so a table or a flag looks the same everywhere.
Every text is escaped by the templates; only cells a caller marks ``raw`` pass through as HTML.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence

import jinja2
from markupsafe import Markup

from auditreport.presentation.blocks import Code, Count, Cover, Flag, Group, Paragraph, Section, Strong, Table
from auditreport.rules.flags import FLAG_LABELS, FLAG_ORDER, FLAG_SHORT_LABELS, flag_description, flag_words

#: Tables this short are kept on one page; longer ones may break between rows (headers repeat).
KEEP_TOGETHER_ROWS = 14


def _flag_info(flag: str | None, direction: str = "") -> dict[str, object]:
    """How a flag badge reads: by the measure's direction where given ("Alarm: worse than expected"),
    otherwise by side ("Alarm (high)")."""
    flag = flag or ""
    if direction and flag:
        label, title = flag_words(flag, direction), flag_description(flag, direction)
    else:
        label = FLAG_SHORT_LABELS.get(flag, flag)
        title = FLAG_LABELS.get(flag, label) if flag else "No comparison is made for this measure"
    return {"css": flag or "none", "label": label, "rank": FLAG_ORDER.get(flag, len(FLAG_ORDER)), "title": title}


def _column_kinds(t: Table) -> list[str]:
    """Each column of ``t`` as "count", "num" (right-aligned) or "" (text), for as many cells as a row has."""
    width = max([len(t.headers), *(len(row) for row in t.rows)])
    return ["count" if i in t.counts else "num" if i in t.numeric else "" for i in range(width)]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("auditreport.presentation", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
    env.globals.update(flag_info=_flag_info, column_kinds=_column_kinds, zip=zip,
                       keep_together_rows=KEEP_TOGETHER_ROWS)
    env.tests.update(count_piece=lambda x: isinstance(x, Count), flag_piece=lambda x: isinstance(x, Flag),
                     strong_piece=lambda x: isinstance(x, Strong), code_piece=lambda x: isinstance(x, Code))
    return env


# Compiled when this module is imported, so a report kernel forked from the preloaded zygote
# (execution/kernel_forkserver.py) inherits the compiled macros instead of compiling them again.
_MACROS = _environment().get_template("blocks.html.j2").module


def block_html(block: Paragraph | Table | Cover | Group) -> Markup:
    """The HTML of one block that holds no chart (a :class:`Group` of such blocks included)."""
    if isinstance(block, Paragraph):
        return _MACROS.paragraph(block)
    if isinstance(block, Table):
        return _MACROS.table(block)
    if isinstance(block, Cover):
        return _MACROS.cover(block)
    if isinstance(block, Group):
        return _MACROS.group_open(block) + Markup("").join(block_html(b) for b in block.blocks) + _MACROS.group_close()
    raise TypeError(f"{type(block).__name__} cannot be written as one HTML fragment")


def heading_html(section: Section) -> Markup:
    """The heading of a section (empty when it has no title)."""
    return _MACROS.heading(section.title, section.level) if section.title else Markup("")


def esc(value: object) -> str:
    """``value`` as HTML text (``None`` as empty), for pages assembled outside the templates."""
    return html.escape("" if value is None else str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str = "",
          numeric: Sequence[int] = (), counts: Sequence[int] = (), css_class: str = "data",
          raw: bool = False, count_measures: Mapping[int, str] | None = None) -> str:
    """An HTML table as the reports write it; cells are escaped unless ``raw`` (already-built HTML).

    Columns in ``counts`` hold counts of patients or events: their cells carry a ``data-count``
    attribute so the disclosure checker (``publication.checker``) finds every count in what was written.
    ``count_measures`` maps those of them that count a measure's unit results (a unit's events, records
    analysed for the measure, observed) to the measure's id, written ``data-count-measure``: the checker
    then follows that measure's publication policy (contract section 5).
    """
    cell = Markup if raw else str
    rows = tuple(tuple(cell(v) for v in row) for row in rows)
    return str(_MACROS.table(Table(tuple(headers), rows, caption, tuple(numeric), tuple(counts), css_class,
                                   dict(count_measures or {}))))


def count(text: str, measure: str | None = None, tag: str = "strong") -> str:
    """A count inside a sentence as HTML, labelled (``data-count``) for the disclosure checker; a measure's
    unit result also names the measure (``data-count-measure``)."""
    return str(_MACROS.count(text, tag, measure))


def flag_badge(flag: str, direction: str = "") -> str:
    """The flag in words and colour as HTML (the words carry the meaning; colour only reinforces it).

    With the measure's ``direction`` the words say "worse" or "better than expected"."""
    return str(_MACROS.flag_badge(flag, direction))
