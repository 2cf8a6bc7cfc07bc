"""Funnel plots as inline, accessible SVG for the publication site (issue #15, contract section 7).

A funnel on the site is not a picture: every unit is an element of its own (``<g class="unit"
tabindex="0" role="img" aria-label=...>`` with a ``<title>``), so a reader can hover it for a tooltip,
reach it with the keyboard and hear its name, value, 95% interval and status; a screen reader reads the
figure's ``<desc>``, and the page gives the same figures as a table below it (WCAG 2.2 1.1.1, 1.4.1: the
page's own unit is a labelled diamond, not a colour only).

The geometry is the report's (``presentation.figures.funnel_plot``): a log x axis of the units'
precision (records, or expected counts for O/E), the 95% (dashed) and 99.8% (solid) limit curves from the
bundle's ``funnels`` table, restricted to a quarter of the smallest unit's precision, and the target line.

:class:`Funnel` lays out one measure's funnel once and renders each unit's element once, so a site of
120 provider pages (or 500 consultant pages) draws each page's funnel by joining strings: only the
highlighted unit is rendered again per page. :func:`funnel_svg` is the same as one pure call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

#: The drawing's size in SVG user units (it scales to the page's width; the text stays legible at 100%).
WIDTH, HEIGHT = 680.0, 380.0
#: Room for the axes' tick labels and titles: left, right, top, bottom.
MARGIN = (72.0, 20.0, 14.0, 58.0)


@dataclass(frozen=True)
class FunnelPoint:
    """One unit on a funnel: where it is drawn and what it says.

    ``label`` is the whole text of its tooltip and accessible name ("Alpha: 4.2% (95% interval 3.1% to
    5.6%); as expected"); ``status`` is a CSS word for its marker ("worse", "better", "as_expected", "none");
    ``pooled`` marks a low-volume group (drawn as a square: it carries no status).
    """

    unit_id: str
    name: str
    x: float
    y: float
    label: str
    status: str = "none"
    pooled: bool = False


@dataclass(frozen=True)
class FunnelAxes:
    """What the funnel is of: its title, axis titles (with units), the target line and its words.

    ``percent`` draws y as a percentage (values are proportions 0-1); ``svg_id`` prefixes the ids inside
    the SVG (title, desc, clip path), so several funnels can share a page.
    """

    svg_id: str
    title: str
    xlabel: str
    ylabel: str
    target: float
    target_label: str
    percent: bool = False
    description: str = ""


@dataclass(frozen=True)
class _Scale:
    """Data to drawing coordinates: log x, linear y (y grows downwards in SVG)."""

    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        left, right = MARGIN[0], WIDTH - MARGIN[1]
        span = math.log10(self.x1) - math.log10(self.x0) or 1.0
        return left + (math.log10(value) - math.log10(self.x0)) / span * (right - left)

    def y(self, value: float) -> float:
        top, bottom = MARGIN[2], HEIGHT - MARGIN[3]
        span = (self.y1 - self.y0) or 1.0
        return bottom - (value - self.y0) / span * (bottom - top)


def y_range(ys: np.ndarray, curve: pd.DataFrame) -> tuple[float, float]:
    """The y axis's range, as the report's funnel: from zero unless every limit and unit sits far above it,
    up to a little above the highest unit or 95% limit but not far above the 99.8% limit."""
    ys = ys[np.isfinite(ys)]
    highs = np.concatenate([ys, curve["upper95"].to_numpy(float)]) if len(curve) else ys
    highs = highs[np.isfinite(highs)]
    if not highs.size:
        return 0.0, 1.0
    top = float(np.max(highs)) * 1.05
    if len(curve) and np.isfinite(curve["upper998"]).any():
        top = min(top, float(np.nanmax(curve["upper998"])) * 1.2 + 1e-9)
    top = max(top, float(np.max(ys, initial=0.0)) * 1.1)
    lows = np.concatenate([ys, curve["lower998"].to_numpy(float)]) if len(curve) else ys
    lows = lows[np.isfinite(lows)]
    bottom = float(lows.min()) if lows.size else 0.0
    bottom = 0.0 if bottom < 0.5 * top else max(0.0, bottom - 0.15 * (top - bottom))
    return bottom, top if top > bottom else bottom + 1.0


def x_ticks(x0: float, x1: float) -> list[float]:
    """Ticks of a log axis at 1, 2 and 5 times the powers of ten in view (only 1 and 10s over many
    decades), so a reader can place a unit's size without counting gridlines."""
    steps = (1, 2, 5) if math.log10(x1 / x0) <= 3 else (1,)
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(x0)), math.ceil(math.log10(x1)) + 1) for m in steps]
    return [t for t in ticks if x0 <= t <= x1]


def y_ticks(y0: float, y1: float, count: int = 5) -> list[float]:
    """At least ``count`` round ticks (1, 2, 2.5 or 5 times a power of ten apart) between y0 and y1."""
    raw = (y1 - y0) / count
    power = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = max(m * power for m in (1, 2, 2.5, 5) if m * power <= raw * (1 + 1e-9))
    first = math.ceil(y0 / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((y1 - first) / step + 1e-9) + 1)]


def tick_text(value: float, percent: bool = False) -> str:
    """A tick's label: "1,000", "2.5", "0.2", "12%"."""
    if percent:
        shown = value * 100
        return f"{shown:.0f}%" if abs(shown - round(shown)) < 1e-6 else f"{shown:.1f}%"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


def _path(xs: Sequence[float], ys: Sequence[float], scale: _Scale) -> str:
    """An SVG path through the finite points, in drawing coordinates (a gap where a value is missing)."""
    parts, pen = [], "M"
    for x, y in zip(xs, ys, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)) or x <= 0:
            pen = "M"
            continue
        parts.append(f"{pen}{scale.x(x):.1f},{scale.y(y):.1f}")
        pen = "L"
    return "".join(parts)


@lru_cache(maxsize=1)
def _macros():
    env = jinja2.Environment(loader=jinja2.PackageLoader("auditreport.publication", "templates/site"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("funnel.svg.j2").module


class Funnel:
    """One measure's funnel at one level, laid out once; :meth:`svg` draws it with one unit highlighted.

    Points without a finite, positive x or a finite y (suppressed, low volume, no records) are left out:
    the table beside the figure lists them.
    """

    def __init__(self, points: Sequence[FunnelPoint], curve: pd.DataFrame, axes: FunnelAxes):
        self.axes = axes
        self.points = [p for p in points if np.isfinite(p.x) and p.x > 0 and np.isfinite(p.y)]
        xs = np.array([p.x for p in self.points], dtype=float)
        curve = curve.sort_values("x") if len(curve) else curve
        if xs.size and len(curve):
            curve = curve[curve["x"] >= min(xs.min() / 4, curve["x"].max())]
        all_x = np.concatenate([xs, curve["x"].to_numpy(float)]) if len(curve) else xs
        all_x = all_x[np.isfinite(all_x) & (all_x > 0)]
        x0, x1 = (float(all_x.min()), float(all_x.max())) if all_x.size else (1.0, 10.0)
        x0, x1 = (x0 / 1.15, x1 * 1.15) if x1 > x0 else (x0 / 2, x0 * 2)
        y0, y1 = y_range(np.array([p.y for p in self.points], dtype=float), curve)
        scale = self.scale = _Scale(x0, x1, y0, y1)
        cx = curve["x"].to_numpy(float) if len(curve) else np.array([])
        limits = {name: _path(cx, curve[name].to_numpy(float), scale) if len(curve) else ""
                  for name in ("upper95", "lower95", "upper998", "lower998")}
        frame = {
            "axes": axes, "width": WIDTH, "height": HEIGHT, "left": MARGIN[0], "right": WIDTH - MARGIN[1],
            "top": MARGIN[2], "bottom": HEIGHT - MARGIN[3], "limits": limits,
            "target_y": scale.y(axes.target) if np.isfinite(axes.target) and y0 <= axes.target <= y1 else None,
            "xticks": [(scale.x(t), tick_text(t)) for t in x_ticks(x0, x1)],
            "yticks": [(scale.y(t), tick_text(t, axes.percent)) for t in y_ticks(y0, y1)],
        }
        macros = _macros()
        self._frame = frame
        self._open = str(macros.open(frame))
        self._static = str(macros.frame(frame))
        self._tail = str(macros.tail(frame))
        self._units = {p.unit_id: str(macros.unit(self._place(p), False)) for p in self.points}
        self._order = [p.unit_id for p in self.points]
        self._by_id = {p.unit_id: p for p in self.points}

    def _place(self, point: FunnelPoint) -> dict:
        """A point in drawing coordinates, with where its own label goes (towards the centre)."""
        x, y = self.scale.x(point.x), self.scale.y(point.y)
        right = x > (MARGIN[0] + WIDTH - MARGIN[1]) / 2
        return {"p": point, "cx": f"{x:.1f}", "cy": f"{y:.1f}", "top": f"{y - 8:.1f}", "rx": f"{x - 4.5:.1f}",
                "ry": f"{y - 4.5:.1f}", "anchor": "end" if right else "start",
                "lx": f"{x - 10 if right else x + 10:.1f}", "ly": f"{max(y - 9, MARGIN[2] + 10):.1f}"}

    def svg(self, highlight: str | None = None, highlight_note: str = "", legend: str = "") -> Markup:
        """The SVG with ``highlight``'s unit drawn as a labelled diamond on top of the others (``None``:
        none highlighted); ``highlight_note`` is added to the figure's description ("Alpha is shown as a
        diamond labelled with its name") and ``legend`` names the diamond in the legend."""
        own = self._by_id.get(highlight) if highlight is not None else None
        units = "".join(self._units[u] for u in self._order if own is None or u != own.unit_id)
        if own is not None:
            units += str(_macros().unit(self._place(own), True))
        desc = self.axes.description + (f" {highlight_note}" if highlight_note and own is not None else "")
        legend = (legend or own.name) if own is not None else ""
        macros = _macros()
        return Markup(self._open + str(macros.desc(self._frame, desc)) + self._static
                      + str(macros.legend(self._frame, legend)) + units + self._tail)

    @property
    def drawn(self) -> list[str]:
        """The unit ids drawn, in drawing order (others before the highlighted one)."""
        return list(self._order)


def funnel_svg(points: Sequence[FunnelPoint], curve: pd.DataFrame, axes: FunnelAxes,
               highlight: str | None = None, highlight_note: str = "", legend: str = "") -> Markup:
    """A funnel plot as inline SVG: one focusable element per unit (name, value, interval and status in
    its ``<title>`` and ``aria-label``), the 95% and 99.8% limit curves (columns x, lower95, upper95,
    lower998, upper998 of ``curve``), the target line, axes with ticks and titles, and ``highlight``'s
    unit as a labelled diamond."""
    return Funnel(points, curve, axes).svg(highlight, highlight_note, legend)
