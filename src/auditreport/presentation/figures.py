"""Every chart in every report, in one consistent style.

The highlighted provider is always drawn the same way (a large dark-blue
diamond with its name), other units as small grey points; limits are dashed
(95%) and solid (99.8%) so the chart still reads in greyscale.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from auditreport.rules.flags import (  # noqa: E402
    ALARM_HIGH,
    ALARM_LOW,
    ALERT_HIGH,
    ALERT_LOW,
    AS_EXPECTED,
    NOT_ASSESSED,
)

HIGHLIGHT = "#003087"  # NHS blue
NATIONAL = "#425563"
OTHERS = "#9AA5AE"
LIMIT95 = "#768692"
LIMIT998 = "#231F20"
FLAG_COLOURS = {ALARM_HIGH: "#D5281B", ALERT_HIGH: "#ED8B00", AS_EXPECTED: OTHERS,
                ALERT_LOW: "#41B6E6", ALARM_LOW: "#005EB8", NOT_ASSESSED: OTHERS}

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
    "legend.fontsize": 8, "legend.frameon": False, "font.family": "DejaVu Sans",
    # Titles sit at the top of the axes. Left to itself, Matplotlib measures every tick label of every
    # axes at each draw to see whether a title must move up clear of labels on top; these charts have none.
    "axes.titley": 1.0,
}


_CASE_MIX_LABEL_SIZE = 6.5  # points; the case-mix chart measures its category labels at this size


def apply_style() -> None:
    plt.rcParams.update(STYLE)


def _margins(fig: Figure, *, left: float = 0.75, right: float = 0.3, top: float = 0.35,
             bottom: float = 0.55, hspace: float | None = None, wspace: float | None = None) -> None:
    """Fixed margins in inches (``hspace``/``wspace`` between panels as Matplotlib's fractions).

    For charts whose labels are short and known, or measured beforehand (the case-mix chart).

    Measuring every label to fit the layout (``tight_layout``) costs about as much as drawing the
    chart; these charts have the same axes furniture in every report, so fixed margins give the
    same picture for a fraction of the time.
    """
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height, hspace=hspace, wspace=wspace)


def _label_width(fig: Figure, labels: list[str], size: float) -> float:
    """The width in inches of the widest of ``labels`` at font ``size`` (points), as drawn."""
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    font = FontProperties(size=size)
    widest = max((renderer.get_text_width_height_descent(label, font, ismath=False)[0] for label in labels),
                 default=0.0)
    return widest / fig.dpi


def _alt(fig: Figure, text: str) -> Figure:
    """Attach alt text (the report's <img alt>): what the chart shows, for readers who cannot see it."""
    fig.alt_text = text  # type: ignore[attr-defined]
    return fig


def _outliers_words(flags: pd.Series) -> str:
    """The coloured points of a funnel in words, for its alt text: how many units are flagged on each side
    (the flag vocabulary of :mod:`auditreport.rules.flags`: an alarm is beyond the 99.8% limit, an alert
    beyond the 95% one). A reader who cannot see the colours gets what the colours say."""
    counts = flags.value_counts()
    parts = []
    for side, alarm, alert in (("high", ALARM_HIGH, ALERT_HIGH), ("low", ALARM_LOW, ALERT_LOW)):
        found = [f"{int(counts.get(flag, 0))} {name}" for flag, name in ((alarm, "alarm"), (alert, "alert"))
                 if counts.get(flag, 0)]
        parts.append(f"{' and '.join(found)} {side}" if found else f"none {side}")
    return f" Units flagged: {'; '.join(parts)}."


def _plain_number(value: float, _position: object = None) -> str:
    """A tick label as a plain number ("0.5", "20", "1e+04" only past a million): a module-level function, not
    a lambda, so a figure that uses it can be pickled (the chart cache keys a figure by its pickle)."""
    return f"{value:g}"


def funnel_plot(units: pd.DataFrame, curve: pd.DataFrame, *, target: float, x: str, y: str,
                xlabel: str, ylabel: str, title: str, highlight: str | None = None,
                highlight_label: str | None = None, percent: bool = False,
                highlight_set: set[str] | None = None, target_label: str = "national",
                x_words: str = "") -> Figure:
    """Funnel plot: ``units`` has columns unit_id, flag and the ``x`` and ``y`` columns.

    ``highlight`` is one unit (a diamond labelled with its name); ``highlight_set``
    several (diamonds, one legend entry), e.g. a provider's consultants. ``target_label`` names the
    target line in the legend ("national", "standard 90%"); ``x_words`` says what x counts in the alt
    text ("admissions", "expected days").
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(7.0, 4.3))
    scale = 100.0 if percent else 1.0
    xs = units[x].to_numpy(float)
    xs = xs[np.isfinite(xs) & (xs > 0)]
    if xs.size and len(curve):
        # The limits from a quarter of the smallest unit's precision: a curve drawn from 1 when every unit has
        # thousands (expected days of stay) would squeeze the units into a corner.
        curve = curve[curve["x"] >= min(xs.min() / 4, curve["x"].max())]
    ax.plot(curve["x"], curve["upper998"] * scale, color=LIMIT998, lw=1.1, label="99.8% limits")
    ax.plot(curve["x"], curve["lower998"] * scale, color=LIMIT998, lw=1.1)
    ax.plot(curve["x"], curve["upper95"] * scale, color=LIMIT95, lw=1.1, ls="--", label="95% limits")
    ax.plot(curve["x"], curve["lower95"] * scale, color=LIMIT95, lw=1.1, ls="--")
    ax.axhline(target * scale, color=NATIONAL, lw=1.0, ls=":", label=target_label)
    chosen = set(highlight_set or ()) | ({highlight} if highlight else set())
    others = units[~units["unit_id"].isin(chosen)]
    colours = others["flag"].map(FLAG_COLOURS).fillna(OTHERS)
    ax.scatter(others[x], others[y] * scale, s=16, c=colours, edgecolors="white", linewidths=0.4,
               label="other units" if len(others) else None, zorder=3)
    me = units[units["unit_id"].isin(chosen)]
    if not me.empty:
        ax.scatter(me[x], me[y] * scale, s=90 if highlight else 50, marker="D", color=HIGHLIGHT,
                   edgecolors="white", linewidths=1.0, zorder=5, label=_short(highlight_label or highlight or "", 30))
        if highlight and len(me) == 1:
            # Label inside the axes: towards the centre, so a unit at the edge is not cut off.
            px, py = float(me[x].iat[0]), float(me[y].iat[0]) * scale
            right = px > np.sqrt(np.nanmin(curve["x"]) * np.nanmax(curve["x"]))
            ax.annotate(_short(highlight_label or highlight), (px, py), xytext=(-8 if right else 8, 10),
                        textcoords="offset points", ha="right" if right else "left", color=HIGHLIGHT,
                        fontweight="bold", fontsize=8, zorder=6,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain_number))
    # Under two decades Matplotlib labels minor ticks too, in scientific notation ("3 x 10^0"): plainly, as the major.
    ax.xaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    finite = np.concatenate([units[y].to_numpy(float) * scale, curve["upper95"].to_numpy(float) * scale])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        top = min(np.nanmax(finite) * 1.05, (curve["upper998"].max() * scale) * 1.2 + 1e-9)
        top = max(top, np.nanmax(units[y].to_numpy(float) * scale, initial=0) * 1.1)
        # From zero, unless every limit and unit sits far above it (a mean of 66 years, O/E of days of stay
        # near 1 at thousands of expected days), where zero would flatten the funnel into a line.
        low = np.concatenate([units[y].to_numpy(float) * scale, curve["lower998"].to_numpy(float) * scale])
        low = low[np.isfinite(low)]
        bottom = float(low.min()) if low.size else 0.0
        bottom = 0.0 if bottom < 0.5 * top else max(0.0, bottom - 0.15 * (top - bottom))
        ax.set_ylim(bottom, top)
    # Legend below the plot: inside it would cover the limits where they are steepest.
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 0.0), bbox_transform=fig.transFigure, ncols=5,
              fontsize=7.5)
    _margins(fig, bottom=0.95)  # the x label, then the legend under it
    n = len(units)
    where = ""
    if highlight and len(me) == 1:
        at = f"{px:,.0f}" if px >= 100 else f"{px:.3g}"
        where = (f" {highlight_label or highlight} is shown as a blue diamond at {at} "
                 f"{x_words or x}, {py:.{1 if percent else 2}f}{'%' if percent else ''}.")
    return _alt(fig, f"{title}. Funnel plot of {n} units: {ylabel} against {xlabel}, with 95% (dashed) and 99.8% "
                     f"(solid) control limits around the {target_label.removesuffix(' (as expected)')}"
                     + ("" if any(c.isdigit() for c in target_label) else
                        f" ({target * scale:.2f}{'%' if percent else ''})") + f".{where}"
                     + _outliers_words(units["flag"]))


class InViewLocator(matplotlib.ticker.Locator):
    """The ticks another locator gives, less those well outside the axis's view.

    Matplotlib makes a tick (two marks, a grid line and two labels) for every location its locator
    gives, and draws only those in view. Locators give more: a step beyond each end, and on a log axis
    every 2..9 multiple of a decade beyond each end. Locations within a millionth of the view's width (in axis coordinates) of its ends
    are kept, so none that Matplotlib would draw is lost.
    """

    def __init__(self, inner: matplotlib.ticker.Locator):
        self.inner = inner

    def set_axis(self, axis) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def __call__(self) -> list[float]:
        locations = np.asarray(self.inner(), dtype=float)
        transform = self.axis.get_transform()
        low, high = sorted(transform.transform(np.asarray(self.axis.get_view_interval(), dtype=float)))
        slack = (high - low) * 1e-6
        with np.errstate(invalid="ignore", divide="ignore"):
            where = transform.transform(locations)
        return list(locations[(where >= low - slack) & (where <= high + slack)])

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        return self.inner.tick_values(vmin, vmax)


# Locators of evenly spread positions, whose labels do not depend on the positions out of view.
_REGULAR_LOCATORS = (matplotlib.ticker.MaxNLocator, matplotlib.ticker.LogLocator,
                     matplotlib.ticker.AutoMinorLocator, matplotlib.ticker.MultipleLocator)


def only_ticks_in_view(fig: Figure) -> Figure:
    """Make every axis of ``fig`` create ticks only where they can be drawn (:class:`InViewLocator`).

    The picture is the same (the ticks dropped are those Matplotlib would not draw); fewer ticks means
    less to create and lay out in every chart.

    Only regular locators are wrapped: a fixed locator's labels are matched to its positions by index,
    and date axes choose their label format from all positions. The charts' own tick formatters do not
    use the position index either.
    """
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for ticks in (axis.major, axis.minor):
                if isinstance(ticks.locator, _REGULAR_LOCATORS) \
                        and not isinstance(ticks.formatter, matplotlib.ticker.FixedFormatter):
                    locator = InViewLocator(ticks.locator)
                    (axis.set_major_locator if ticks is axis.major else axis.set_minor_locator)(locator)
    return fig


def _short(label: str, width: int = 34) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def km_plot(national: pd.DataFrame, unit: pd.DataFrame | None, *, unit_label: str, horizon_max: float,
            title: str, at_risk_times: list[float] | None = None,
            at_risk_format: Callable[[int], str] = str, xlabel: str = "Days") -> Figure:
    """Kaplan-Meier curves (unit against national) with CIs and a numbers-at-risk table below.

    The numbers at risk are shown at the x-axis ticks, under them, with the row
    labels in the left margin; ``at_risk_format`` lets public reports suppress
    small numbers at risk.
    """
    apply_style()
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(7.0, 4.8), height_ratios=[4, 1.1], sharex=True)
    series = [("National", national, NATIONAL, "--")]
    if unit is not None:
        series.append((_short(unit_label, 28), unit, HIGHLIGHT, "-"))
    # The alt text names the unit in full: a shortened label is for the legend's width, not for a reader.
    names = ["National"] + ([unit_label] if unit is not None else [])
    for label, km, colour, ls in series:
        km = km[km["time"] <= horizon_max]
        ax.step(km["time"], km["survival"] * 100, where="post", color=colour, ls=ls, lw=1.4, label=label)
        ax.fill_between(km["time"], km["lower"] * 100, km["upper"] * 100, step="post", color=colour, alpha=0.15,
                        lw=0)
    ax.set_ylabel("Survival (%)")
    lows = [km.loc[km["time"] <= horizon_max, "lower"].min() for _, km, _, _ in series]
    ax.set_ylim(max(0, np.nanmin(lows) * 100 - 3), 100.5)
    ax.set_title(title, loc="left")
    ax.legend(loc="lower left", title="Shaded: 95% confidence interval", title_fontsize=7)
    ax.set_xlim(0, horizon_max)
    step = 30 if horizon_max <= 120 else 60 if horizon_max <= 400 else 180
    times = at_risk_times or [float(t) for t in np.arange(0, horizon_max + 1, step)]
    ax.set_xticks(times)
    tab.set_axis_off()
    for row, (label, km, colour, _) in enumerate(series):
        yy = 0.65 - row * 0.5
        # x in axes units (left of the first column of numbers), y in data units like the numbers.
        tab.text(-0.07, yy, label, ha="right", va="center", color=colour, fontsize=7.5,
                 transform=tab.get_yaxis_transform())
        for t in times:
            tab.text(t, yy, at_risk_format(at_risk(km, t)), ha="center", va="center", fontsize=7.5, color=colour)
    tab.set_ylim(-0.4, 1.1)
    tab.set_title("Number at risk", loc="left", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_tick_params(labelbottom=True)
    # Room on the left for the numbers-at-risk row labels, and between the panels for the x axis.
    gap = 0.8
    _margins(fig, left=2.1, right=0.4, bottom=0.1, hspace=gap / ((fig.get_figheight() - 0.45 - gap) / 2))
    return _alt(fig, f"{title}: survival (%) against {xlabel.lower()}, "
                     + " and ".join(names) + f", to {horizon_max:g} days, with 95% intervals "
                     "and the number at risk below.")
def at_risk(km: pd.DataFrame, t: float) -> int:
    """Patients still at risk just before time ``t`` (from a Kaplan-Meier step table)."""
    later = km[km["time"] >= t]
    if later.empty:
        return 0
    row = later.iloc[0]
    return int(row["at_risk"])


def case_mix_chart(mix: pd.DataFrame, *, unit_label: str) -> Figure:
    """Case mix against national: provider bars beside national ones, variable by variable.

    ``mix`` has columns variable, category, share (the unit's; NaN where
    withheld) and national. The provider is the solid dark-blue bar (as its
    diamond on the funnels), national is a light grey bar with a dark edge, so the
    two differ in greyscale too. The variables are stacked in two panels on one
    scale of 0 to 100% of patients (a panel per variable takes longer to draw,
    and gives each variable its own scale, which flatters small differences);
    the table below gives every figure.
    """
    apply_style()
    variables = list(dict.fromkeys(mix["variable"]))
    height = {v: int((mix["variable"] == v).sum()) + 1.4 for v in variables}  # categories + heading + gap
    # Split the variables, in order, where the two panels come out closest to the same height.
    split = min(range(len(variables) + 1), key=lambda k: max(sum(height[v] for v in variables[:k]),
                                                             sum(height[v] for v in variables[k:])))
    columns = [variables[:split], variables[split:]]
    rows_needed = max(sum(height[v] for v in column) for column in columns)
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 0.14 * rows_needed + 0.9))
    shares = np.concatenate([mix["share"].to_numpy(float), mix["national"].to_numpy(float)]) * 100
    top = float(np.nanmax(shares, initial=1.0))
    category_labels: list[list[str]] = []
    for ax, column in zip(axes, columns, strict=True):
        ticks: list[float] = []
        labels: list[str] = []
        y = 0.0
        for variable in column:
            rows = mix[mix["variable"] == variable]
            ax.text(0.01, y + 0.1, variable, transform=ax.get_yaxis_transform(), ha="left", va="center",
                    fontsize=7.5, fontweight="bold")
            at = y + 1 + np.arange(len(rows))
            ax.barh(at - 0.2, rows["share"].fillna(0) * 100, height=0.4, color=HIGHLIGHT,
                    label=_short(unit_label, 30))
            # A withheld share must not read as zero: mark it with the suppression sign.
            for yy in at[rows["share"].isna().to_numpy()]:
                ax.text(0.5, yy - 0.2, "* withheld", va="center", fontsize=6, color=HIGHLIGHT)
            ax.barh(at + 0.2, rows["national"] * 100, height=0.4, color="#D8DDE0", edgecolor=NATIONAL, lw=0.6,
                    label="National")
            ticks += list(at)
            # Banded categories ("03: 0.807% to 1.17%") are labelled by band number; the table gives the range.
            labels += [_short(str(c).split(":")[0], 18) for c in rows["category"]]
            y = float(at[-1]) + 1.4 if len(at) else y + 1.4
        # The category labels are placed where tick labels would be, as plain text: a tick is three
        # lines and two labels, and this chart would need about fifty of them.
        ax.yaxis.set_major_locator(matplotlib.ticker.NullLocator())
        beside = ax.get_yaxis_transform() + ScaledTranslation(-plt.rcParams["ytick.major.pad"] / 72, 0,
                                                              fig.dpi_scale_trans)
        for at_y, label in zip(ticks, labels, strict=True):
            ax.text(0, at_y, label, transform=beside, ha="right", va="center_baseline",
                    fontsize=_CASE_MIX_LABEL_SIZE)
        category_labels.append(labels)
        ax.tick_params(axis="x", labelsize=6.5)
        ax.set_ylim(rows_needed - 0.6, -0.8)  # the same row height in both panels
        ax.set_xlim(0, min(100.0, top * 1.08))
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("Share of patients (%)", fontsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles[:2], labels[:2], loc="upper right", ncols=2, fontsize=7.5)
    fig.suptitle("Case mix against national", x=0.01, ha="left", fontsize=10)
    # Only the category labels vary between reports: measure those (not every artist, as tight_layout
    # would, which cost half the chart's time) and leave fixed room for the rest.
    widths = [_label_width(fig, labels, _CASE_MIX_LABEL_SIZE) for labels in category_labels]
    left, gap, right = widths[0] + 0.12, widths[1] + 0.3, 0.15
    panel = (fig.get_figwidth() - left - gap - right) / 2
    _margins(fig, left=left, right=right, top=0.42, bottom=0.42, wspace=gap / panel)
    return _alt(fig, f"Case mix against national: share of {unit_label}'s patients in each group of "
                     + ", ".join(variables) + ", beside the national share; the table below gives the figures.")


def calibration_plot(cal: pd.DataFrame, *, c_statistic: float | None = None, slope: float | None = None,
                     what: str = "rate", title: str = "Calibration of the risk model") -> Figure:
    """Observed against expected ``what`` (a rate: "30-day mortality") by tenth of predicted risk, with 95%
    intervals and the identity line.

    ``cal`` has columns group, expected_rate, observed_rate, lower95, upper95
    (observed values may be NaN where withheld under the small-numbers rule).
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    if cal.empty:
        ax.text(0.5, 0.5, "No calibration table in the results", ha="center", transform=ax.transAxes)
        return _alt(fig, f"{title}: no calibration table")
    e, o = cal["expected_rate"] * 100, cal["observed_rate"] * 100
    top = float(np.nanmax(np.concatenate([e.to_numpy(), (cal["upper95"] * 100).to_numpy()]))) * 1.05
    ax.plot([0, top], [0, top], color=LIMIT95, ls="--", lw=1, label="perfect calibration")
    shown = o.notna()
    ax.errorbar(e[shown], o[shown], yerr=[(o - cal["lower95"] * 100)[shown], (cal["upper95"] * 100 - o)[shown]],
                fmt="o", color=HIGHLIGHT, ms=5, capsize=2, lw=1, label="observed (95% CI)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"Expected {what} (%), by tenth of predicted risk")
    ax.set_ylabel(f"Observed {what} (%)")
    ax.set_title(title, loc="left")
    notes = []
    if c_statistic is not None:
        notes.append(f"c-statistic {c_statistic:.3f}")
    if slope is not None:
        notes.append(f"calibration slope {slope:.2f}")
    if (~shown).any():
        notes.append(f"{int((~shown).sum())} tenth(s) withheld (small numbers)")
    if notes:
        ax.text(0.02, 0.97, "; ".join(notes), transform=ax.transAxes, va="top", fontsize=7.5, color=NATIONAL)
    ax.legend(loc="lower right")
    _margins(fig)
    return _alt(fig, f"{title}: observed against expected {what} (%) in each tenth of "
                     "predicted risk, with 95% intervals; points on the dashed diagonal mean the model is well "
                     "calibrated. " + "; ".join(notes))


SIGNAL_HIGH = FLAG_COLOURS[ALARM_HIGH]
SIGNAL_LOW = FLAG_COLOURS[ALARM_LOW]


def _x_axis(series: pd.DataFrame, order_label: str) -> tuple[pd.Series, str]:
    """The record's date where the audit has dates, otherwise its position in the provider's series."""
    dates = series["procedure_date"] if "procedure_date" in series else None
    if dates is not None and dates.notna().all() and len(series):
        return pd.to_datetime(dates), "Date"
    return series["index"] + 1, order_label


def _from_origin(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Prepend the chart's starting point (0 before the first patient) so every patient's step is drawn."""
    x0 = x.iloc[0] if np.issubdtype(np.asarray(x).dtype, np.datetime64) else 0
    return np.r_[np.asarray([x0], dtype=np.asarray(x).dtype), np.asarray(x)], np.r_[0.0, np.asarray(y, float)]


def cusum_plot(series: pd.DataFrame, *, h_upper: float, h_lower: float, title: str,
               order_label: str = "Records, in order") -> Figure:
    """Upper (R = 2) and lower (R = 1/2) RA-CUSUM of one provider, control limits dashed, signals marked.

    ``series`` is a provider's slice of the bundle's ``monitoring`` table. The lower chart is drawn below zero
    (Steiner et al. 2000), so rising above +h means worse than predicted and falling below -h better.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    x, xlabel = _x_axis(series, order_label)
    ax.step(*_from_origin(x, series["s_upper"]), where="pre", color=HIGHLIGHT, lw=1.2,
            label="Upper CUSUM (detects odds x2)")
    ax.step(*_from_origin(x, series["s_lower"]), where="pre", color=NATIONAL, lw=1.2, ls="--",
            label="Lower CUSUM (detects odds x1/2)")
    ax.axhline(h_upper, color=LIMIT998, lw=1.0, ls=":", label=f"control limits (+{h_upper:.2f} / -{h_lower:.2f})")
    ax.axhline(-h_lower, color=LIMIT998, lw=1.0, ls=":")
    ax.axhline(0, color=OTHERS, lw=0.8)
    up, lo = series["signal_upper"].to_numpy(bool), series["signal_lower"].to_numpy(bool)
    if up.any():
        ax.scatter(x[up], series.loc[up, "s_upper"], marker="^", s=60, color=SIGNAL_HIGH, zorder=5,
                   label="signal: worse than predicted")
    if lo.any():
        ax.scatter(x[lo], series.loc[lo, "s_lower"], marker="v", s=60, color=SIGNAL_LOW, zorder=5,
                   label="signal: better than predicted")
    ax.set_ylim(-h_lower * 1.25, h_upper * 1.7)  # headroom for the legend above the upper limit
    ax.set_xlabel(xlabel)
    ax.set_ylabel("CUSUM (log-likelihood ratio)")
    ax.set_title(title, loc="left")
    ax.legend(loc="upper left", ncols=2, fontsize=7)
    _margins(fig)
    fig.alt_text = (f"{title}: upper and lower risk-adjusted CUSUM with control limits at +{h_upper:.2f} and "
                    f"-{h_lower:.2f}; {int(up.sum())} upper and {int(lo.sum())} lower signal(s).")
    return fig


def vlad_plot(series: pd.DataFrame, *, title: str, order_label: str = "Records, in order",
              events: str = "events") -> Figure:
    """VLAD of one provider: cumulative expected minus observed ``events``, with CUSUM signals marked."""
    apply_style()
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    x, xlabel = _x_axis(series, order_label)
    ax.step(*_from_origin(x, series["vlad"]), where="pre", color=HIGHLIGHT, lw=1.3, label=f"expected minus observed {events}")
    ax.axhline(0, color=NATIONAL, lw=0.9, ls=":", label="as predicted")
    for column, colour, marker, label in (("signal_upper", SIGNAL_HIGH, "^", "upper CUSUM signal"),
                                          ("signal_lower", SIGNAL_LOW, "v", "lower CUSUM signal")):
        hit = series[column].to_numpy(bool)
        if hit.any():
            ax.scatter(x[hit], series.loc[hit, "vlad"], marker=marker, s=55, color=colour, zorder=5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"Expected - observed {events}")
    ax.set_title(title, loc="left")
    ax.legend(loc="best")
    _margins(fig)
    last = float(series["vlad"].iloc[-1]) if len(series) else 0.0
    fig.alt_text = f"{title}: the running total of expected minus observed {events} ends at {last:+.1f}."
    return fig
