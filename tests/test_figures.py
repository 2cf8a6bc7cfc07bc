"""Chart helpers: the speed-ups must not change a pixel."""

from __future__ import annotations

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from auditreport.presentation import figures  # noqa: E402


def _chart(kind: str, low: float, high: float, trim: bool) -> tuple[np.ndarray, int, Figure]:
    """A chart's pixels, how many ticks Matplotlib made for it, and the figure (closed)."""
    figures.apply_style()
    fig, ax = plt.subplots(figsize=(4, 2.5))
    x = np.geomspace(low, high, 50) if kind == "log" else np.linspace(low, high, 50)
    ax.plot(x, np.sqrt(x))
    if kind == "log":
        ax.set_xscale("log")
    elif kind == "multiple":
        ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator((high - low) / 7))
        ax.yaxis.set_minor_locator(matplotlib.ticker.AutoMinorLocator())
    if trim:
        figures.only_ticks_in_view(fig)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba()).copy()
    made = sum(len(axis.majorTicks) + len(axis.minorTicks) for axis in (ax.xaxis, ax.yaxis))
    plt.close(fig)
    return pixels, made, fig


@pytest.mark.parametrize(("kind", "low", "high"), [
    ("log", 0.76, 280.0), ("log", 3.0, 40.0), ("log", 1.0, 1000.0), ("log", 0.02, 0.05),
    ("linear", 0.0, 1.0), ("linear", 13.0, 2871.0), ("linear", 0.0031, 0.0047), ("multiple", 2.0, 61.0),
])
def test_only_ticks_in_view_draws_the_same_chart_with_fewer_ticks(kind, low, high):
    plain, plain_made, _ = _chart(kind, low, high, trim=False)
    trimmed, trimmed_made, fig = _chart(kind, low, high, trim=True)
    assert np.array_equal(plain, trimmed)
    assert trimmed_made < plain_made
    assert isinstance(fig.axes[0].xaxis.get_major_locator(), figures.InViewLocator)


def test_only_ticks_in_view_leaves_fixed_and_date_ticks_alone():
    fig, (fixed, dated) = plt.subplots(1, 2)
    fixed.set_xticks([0, 1, 2], ["low", "mid", "high"])
    dated.plot(pd.date_range("2024-04-01", periods=12, freq="MS"), np.arange(12))
    locators = [axis.get_major_locator() for axis in (fixed.xaxis, dated.xaxis)]
    figures.only_ticks_in_view(fig)
    plt.close(fig)
    assert [axis.get_major_locator() for axis in (fixed.xaxis, dated.xaxis)] == locators
    assert isinstance(fixed.yaxis.get_major_locator(), figures.InViewLocator)


def _funnel(target_label: str, units_x: list[float], curve_x: np.ndarray, y: list[float], lower: float,
            upper: float) -> Figure:
    units = pd.DataFrame({"unit_id": [f"U{i}" for i in range(len(units_x))], "flag": "as_expected",
                          "x": units_x, "value": y})
    spread = 1 / np.sqrt(curve_x)
    curve = pd.DataFrame({"x": curve_x, "lower95": lower - spread, "upper95": upper + spread,
                          "lower998": lower - 2 * spread, "upper998": upper + 2 * spread})
    return figures.funnel_plot(units, curve, target=(lower + upper) / 2, x="x", y="value", xlabel="Admissions",
                               ylabel="Rate", title="T", highlight="U0", highlight_label="Hospital A",
                               target_label=target_label, x_words="admissions")


def test_funnel_names_its_target_and_keeps_the_units_in_view():
    """A fixed standard is named in the legend and the alt text; a funnel whose units all have thousands of
    expected units is drawn from near them, not from 1, and not from zero when every value is far above it."""
    fig = _funnel("standard 90.0%", [8000.0, 20000.0, 50000.0], np.geomspace(1, 60000, 200), [1.01, 0.99, 1.0],
                  1.0, 1.0)
    try:
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "standard 90.0%" in labels and "national" not in labels
        assert "around the standard 90.0%" in fig.alt_text and "8,000 admissions" in fig.alt_text
        low, high = fig.axes[0].get_xlim()
        assert 1000 < low < 8000 and high >= 50000  # from a quarter of the smallest unit's precision
        bottom, top = fig.axes[0].get_ylim()
        assert 0.9 < bottom < 0.99 and 1.01 < top < 1.2
    finally:
        plt.close(fig)
    fig = _funnel("national", [10.0, 50.0], np.geomspace(1, 60, 50), [0.2, 0.1], 0.15, 0.15)
    try:
        assert fig.axes[0].get_ylim()[0] == 0  # a rate is drawn from zero
    finally:
        plt.close(fig)


def test_calibration_and_monitoring_charts_use_the_measures_words():
    cal = pd.DataFrame({"group": [1, 2], "expected_rate": [0.1, 0.3], "observed_rate": [0.12, 0.28],
                        "lower95": [0.08, 0.22], "upper95": [0.16, 0.34]})
    fig = figures.calibration_plot(cal, what="stays over 14 days", title="Long stays: calibration")
    try:
        assert fig.axes[0].get_xlabel() == "Expected stays over 14 days (%), by tenth of predicted risk"
        assert "mortality" not in fig.alt_text and fig.alt_text.startswith("Long stays: calibration")
    finally:
        plt.close(fig)
    series = pd.DataFrame({"index": range(4), "procedure_date": pd.NaT, "vlad": [0.1, -0.8, -0.7, 0.2],
                           "s_upper": [0.0, 1.0, 0.5, 0.0], "s_lower": [0.0, 0.0, -0.2, 0.0],
                           "signal_upper": False, "signal_lower": False})
    fig = figures.vlad_plot(series, title="VLAD", order_label="Admissions, in order", events="deaths in hospital")
    try:
        assert fig.axes[0].get_xlabel() == "Admissions, in order"  # no dates: the records' order, in its words
        assert fig.axes[0].get_ylabel() == "Expected - observed deaths in hospital"
    finally:
        plt.close(fig)
