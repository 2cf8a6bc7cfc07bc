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
