"""Small HTML building blocks for report sections (escaped, no scripts)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from auditreport.stats.outliers import FLAG_LABELS

FLAG_SHORT = {"alarm_high": "Alarm (high)", "alert_high": "Alert (high)", "as_expected": "As expected",
              "alert_low": "Alert (low)", "alarm_low": "Alarm (low)", "": "Not assessed"}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, caption: str = "",
          numeric: Sequence[int] = (), css_class: str = "data", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (already-built HTML)."""
    cell = (lambda v: str(v)) if raw else esc
    head = "".join(f"<th scope='col'>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f"<td class='num'>{cell(v)}</td>" if i in numeric else f"<td>{cell(v)}</td>"
                        for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f"<table class='{css_class}'>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def flag_badge(flag: str) -> str:
    """The flag in words and colour (the words carry the meaning; colour only reinforces it)."""
    flag = flag or ""
    label = FLAG_SHORT.get(flag, flag)
    title = FLAG_LABELS.get(flag, label) if flag else "No comparison is made for this indicator"
    return f"<span class='flag flag-{esc(flag or 'none')}' title='{esc(title)}'>{esc(label)}</span>"


def pct(value: float, digits: int = 1) -> str:
    return "*" if value != value else f"{value * 100:.{digits}f}%"  # NaN -> suppressed mark


def num(value: float, digits: int = 2) -> str:
    return "*" if value != value else f"{value:.{digits}f}"
