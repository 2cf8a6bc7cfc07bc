"""Small HTML building blocks for report sections (escaped, no scripts)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from auditreport.rules.flags import FLAG_LABELS, FLAG_ORDER, FLAG_SHORT_LABELS


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


#: Tables this short are kept on one page; longer ones may break between rows (headers repeat).
KEEP_TOGETHER_ROWS = 14


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str = "",
          numeric: Sequence[int] = (), counts: Sequence[int] = (), css_class: str = "data",
          raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (already-built HTML).

    Columns in ``counts`` hold counts of patients or events: their cells carry a
    ``data-count`` attribute so the disclosure checker can find every count in
    what was written (``publication.checker``), whatever the column is called.
    """
    cell = (lambda v: str(v)) if raw else esc
    head = "".join(f"<th scope='col' class='num'>{esc(h)}</th>" if i in numeric or i in counts
                   else f"<th scope='col'>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            attrs = (" class='num'" if i in numeric or i in counts else "") + (" data-count" if i in counts else "")
            cells.append(f"<td{attrs}>{cell(v)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    keep = " keep" if len(body) <= KEEP_TOGETHER_ROWS else ""
    return (f"<table class='{css_class}{keep}'>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def count(text: str, tag: str = "strong") -> str:
    """A count inside a sentence, labelled for the disclosure checker."""
    return f"<{tag} data-count>{esc(text)}</{tag}>"


def flag_badge(flag: str) -> str:
    """The flag in words and colour (the words carry the meaning; colour only reinforces it)."""
    flag = flag or ""
    label = FLAG_SHORT_LABELS.get(flag, flag)
    title = FLAG_LABELS.get(flag, label) if flag else "No comparison is made for this indicator"
    # data-sort orders flags by severity when a sortable table is sorted on this column.
    rank = FLAG_ORDER.get(flag, len(FLAG_ORDER))
    return (f"<span class='flag flag-{esc(flag or 'none')}' title='{esc(title)}' data-sort='{rank}'>"
            f"{esc(label)}</span>")


def pct(value: float, digits: int = 1) -> str:
    return "*" if value != value else f"{value * 100:.{digits}f}%"  # NaN -> suppressed mark


def num(value: float, digits: int = 2) -> str:
    return "*" if value != value else f"{value:.{digits}f}"
