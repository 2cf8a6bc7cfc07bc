"""Report sections as notebook output, and the capture of that output as HTML.

:func:`show` is what a report notebook calls: each typed section becomes rich output in order, the
text and tables as HTML through the templates (consecutive ones in one output) and each chart as a
PNG with its alt text (:mod:`auditreport.presentation.png`, RGB so the PDF embeds it unchanged).

:func:`capture` is for code that runs a report's cells without a kernel (``reproduce``) and wants
the HTML they would show: inside ``with capture() as html:``, :func:`show` appends each HTML output
to the list ``html`` instead of displaying it, and closes charts without drawing them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import matplotlib.pyplot as plt
from IPython.display import HTML, Image, display
from markupsafe import Markup

from auditreport.presentation import figures, png
from auditreport.presentation.blocks import Block, Chart, Section
from auditreport.presentation.tables import block_html, heading_html

#: The lists :func:`capture` is collecting into, innermost last (empty: display for real).
_capturing: list[list[str]] = []


def outputs(*items: Section | Block | None) -> list[Markup | Chart]:
    """The output of ``items`` in order: HTML fragments, with consecutive ones joined, and charts.

    ``None`` (a section that does not apply to this report) gives nothing.
    """
    out: list[Markup | Chart] = []

    def add(item: Section | Block | None) -> None:
        if item is None:
            return
        if isinstance(item, Section):
            add_html(heading_html(item))
            for block in item.blocks:
                add(block)
        elif isinstance(item, Chart):
            out.append(item)
        else:
            add_html(block_html(item))

    def add_html(fragment: Markup) -> None:
        if not fragment:
            return
        if out and isinstance(out[-1], Markup):
            out[-1] += fragment
        else:
            out.append(fragment)

    for item in items:
        add(item)
    return out


def show(*items: Section | Block | None) -> None:
    """Display report sections in order (charts become PNGs with alt text, then close).

    Inside :func:`capture`, collect their HTML instead.
    """
    for part in outputs(*items):
        if isinstance(part, Chart):
            if not _capturing:
                data = png.figure_png(figures.only_ticks_in_view(part.figure), dpi=150)
                display(Image(data=data, format="png"), metadata={"alt": part.alt})
            plt.close(part.figure)
        elif _capturing:
            _capturing[-1].append(str(part))
        else:
            display(HTML(str(part)))


@contextlib.contextmanager
def capture() -> Iterator[list[str]]:
    """Collect what :func:`show` would display as HTML fragments, in order, into the list yielded."""
    html: list[str] = []
    _capturing.append(html)
    try:
        yield html
    finally:
        _capturing.pop()
