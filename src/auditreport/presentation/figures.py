"""Every chart in every report, in one consistent style.

The highlighted provider is always drawn the same way (a large dark-blue
diamond with its name), other units as small grey points; limits are dashed
(95%) and solid (99.8%) so the chart still reads in greyscale.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

HIGHLIGHT = "#003087"  # NHS blue
NATIONAL = "#425563"
OTHERS = "#9AA5AE"
LIMIT95 = "#768692"
LIMIT998 = "#231F20"
FLAG_COLOURS = {"alarm_high": "#D5281B", "alert_high": "#ED8B00", "as_expected": OTHERS,
                "alert_low": "#41B6E6", "alarm_low": "#005EB8", "": OTHERS}

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
    "legend.fontsize": 8, "legend.frameon": False, "font.family": "DejaVu Sans",
}


def apply_style() -> None:
    plt.rcParams.update(STYLE)


def funnel_plot(units: pd.DataFrame, curve: pd.DataFrame, *, target: float, x: str, y: str,
                xlabel: str, ylabel: str, title: str, highlight: str | None = None,
                highlight_label: str | None = None, percent: bool = False) -> Figure:
    """Funnel plot: ``units`` has columns unit_id, flag and the ``x`` and ``y`` columns."""
    apply_style()
    fig, ax = plt.subplots(figsize=(7.0, 4.3))
    scale = 100.0 if percent else 1.0
    ax.plot(curve["x"], curve["upper998"] * scale, color=LIMIT998, lw=1.1, label="99.8% limits")
    ax.plot(curve["x"], curve["lower998"] * scale, color=LIMIT998, lw=1.1)
    ax.plot(curve["x"], curve["upper95"] * scale, color=LIMIT95, lw=1.1, ls="--", label="95% limits")
    ax.plot(curve["x"], curve["lower95"] * scale, color=LIMIT95, lw=1.1, ls="--")
    ax.axhline(target * scale, color=NATIONAL, lw=1.0, ls=":", label="national")
    others = units if highlight is None else units[units["unit_id"] != highlight]
    colours = others["flag"].map(FLAG_COLOURS).fillna(OTHERS)
    ax.scatter(others[x], others[y] * scale, s=16, c=colours, edgecolors="white", linewidths=0.4,
               label="other units", zorder=3)
    if highlight is not None:
        me = units[units["unit_id"] == highlight]
        if not me.empty:
            ax.scatter(me[x], me[y] * scale, s=90, marker="D", color=HIGHLIGHT, edgecolors="white",
                       linewidths=1.0, zorder=5, label=highlight_label or highlight)
            ax.annotate(highlight_label or highlight, (me[x].iat[0], me[y].iat[0] * scale),
                        xytext=(8, 8), textcoords="offset points", color=HIGHLIGHT, fontweight="bold",
                        fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    finite = np.concatenate([units[y].to_numpy(float) * scale, curve["upper95"].to_numpy(float) * scale])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        ax.set_ylim(0, min(np.nanmax(finite) * 1.05, (curve["upper998"].max() * scale) * 1.2 + 1e-9))
    ax.legend(loc="upper right", ncols=2)
    fig.tight_layout()
    return fig


def km_plot(national: pd.DataFrame, unit: pd.DataFrame | None, *, unit_label: str, horizon_max: float,
            title: str, at_risk_times: list[float] | None = None) -> Figure:
    """Kaplan-Meier curves (unit against national) with CIs and a numbers-at-risk table below."""
    apply_style()
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(7.0, 4.6), height_ratios=[4, 1], sharex=True)
    series = [("National", national, NATIONAL, "--")]
    if unit is not None:
        series.append((unit_label, unit, HIGHLIGHT, "-"))
    for label, km, colour, ls in series:
        km = km[km["time"] <= horizon_max]
        ax.step(km["time"], km["survival"] * 100, where="post", color=colour, ls=ls, lw=1.4, label=label)
        ax.fill_between(km["time"], km["lower"] * 100, km["upper"] * 100, step="post", color=colour, alpha=0.15,
                        lw=0)
    ax.set_ylabel("Survival (%)")
    lows = [km.loc[km["time"] <= horizon_max, "lower"].min() for _, km, _, _ in series]
    ax.set_ylim(max(0, np.nanmin(lows) * 100 - 3), 100.5)
    ax.set_title(title, loc="left")
    ax.legend(loc="lower left")
    times = at_risk_times or list(np.linspace(0, horizon_max, 5).round())
    tab.set_axis_off()
    for row, (label, km, colour, _) in enumerate(series):
        tab.text(-0.01 * horizon_max, 0.7 - row * 0.45, label, ha="right", va="center", color=colour,
                 fontsize=8, transform=tab.transData)
        for t in times:
            tab.text(t, 0.7 - row * 0.45, str(at_risk(km, t)), ha="center", va="center", fontsize=8,
                     color=colour)
    tab.set_ylim(-0.3, 1.1)
    tab.set_title("Number at risk", loc="left", fontsize=8)
    ax.set_xlim(0, horizon_max)
    ax.set_xlabel("Days since procedure")
    ax.xaxis.set_tick_params(labelbottom=True)
    fig.tight_layout()
    return fig


def at_risk(km: pd.DataFrame, t: float) -> int:
    """Patients still at risk just before time ``t`` (from a Kaplan-Meier step table)."""
    later = km[km["time"] >= t]
    if later.empty:
        return 0
    row = later.iloc[0]
    return int(row["at_risk"])


SIGNAL_HIGH = FLAG_COLOURS["alarm_high"]
SIGNAL_LOW = FLAG_COLOURS["alarm_low"]


def _x_axis(series: pd.DataFrame) -> tuple[pd.Series, str]:
    """Procedure date where the audit has dates, otherwise the patient's position in the provider's series."""
    dates = series["procedure_date"] if "procedure_date" in series else None
    if dates is not None and dates.notna().all() and len(series):
        return pd.to_datetime(dates), "Procedure date"
    return series["index"] + 1, "Patients, in order"


def _from_origin(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Prepend the chart's starting point (0 before the first patient) so every patient's step is drawn."""
    x0 = x.iloc[0] if np.issubdtype(np.asarray(x).dtype, np.datetime64) else 0
    return np.r_[np.asarray([x0], dtype=np.asarray(x).dtype), np.asarray(x)], np.r_[0.0, np.asarray(y, float)]


def cusum_plot(series: pd.DataFrame, *, h_upper: float, h_lower: float, title: str) -> Figure:
    """Upper (R = 2) and lower (R = 1/2) RA-CUSUM of one provider, control limits dashed, signals marked.

    ``series`` is a provider's slice of the bundle's ``monitoring`` table. The lower chart is drawn below zero
    (Steiner et al. 2000), so rising above +h means worse than predicted and falling below -h better.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    x, xlabel = _x_axis(series)
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
    fig.tight_layout()
    fig.alt_text = (f"{title}: upper and lower risk-adjusted CUSUM with control limits at +{h_upper:.2f} and "
                    f"-{h_lower:.2f}; {int(up.sum())} upper and {int(lo.sum())} lower signal(s).")
    return fig


def vlad_plot(series: pd.DataFrame, *, title: str) -> Figure:
    """VLAD of one provider: cumulative expected minus observed deaths, with CUSUM signals marked."""
    apply_style()
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    x, xlabel = _x_axis(series)
    ax.step(*_from_origin(x, series["vlad"]), where="pre", color=HIGHLIGHT, lw=1.3, label="statistical lives gained")
    ax.axhline(0, color=NATIONAL, lw=0.9, ls=":", label="as predicted")
    for column, colour, marker, label in (("signal_upper", SIGNAL_HIGH, "^", "upper CUSUM signal"),
                                          ("signal_lower", SIGNAL_LOW, "v", "lower CUSUM signal")):
        hit = series[column].to_numpy(bool)
        if hit.any():
            ax.scatter(x[hit], series.loc[hit, "vlad"], marker=marker, s=55, color=colour, zorder=5, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Expected - observed deaths")
    ax.set_title(title, loc="left")
    ax.legend(loc="best")
    fig.tight_layout()
    last = float(series["vlad"].iloc[-1]) if len(series) else 0.0
    fig.alt_text = f"{title}: the running total of expected minus observed deaths ends at {last:+.1f}."
    return fig
