"""Chart helpers: the speed-ups must not change a pixel."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from auditreport.presentation import figures  # noqa: E402


def _log_chart(low: float, high: float, in_view: bool) -> tuple[np.ndarray, int]:
    """A log-x chart's pixels and how many minor ticks Matplotlib made for it."""
    figures.apply_style()
    fig, ax = plt.subplots(figsize=(4, 2.5))
    x = np.geomspace(low, high, 50)
    ax.plot(x, np.sqrt(x))
    ax.set_xscale("log")
    if in_view:
        ax.xaxis.set_minor_locator(figures.InViewLocator(ax.xaxis.get_minor_locator()))
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba()).copy()
    made = len(ax.xaxis.minorTicks)
    plt.close(fig)
    return pixels, made


@pytest.mark.parametrize(("low", "high"), [(0.76, 280.0), (3.0, 40.0), (1.0, 1000.0), (0.02, 0.05)])
def test_in_view_minor_ticks_draw_the_same_chart_with_fewer_ticks(low, high):
    plain, plain_made = _log_chart(low, high, in_view=False)
    clipped, clipped_made = _log_chart(low, high, in_view=True)
    assert np.array_equal(plain, clipped)
    assert clipped_made < plain_made


def test_funnel_plots_use_in_view_minor_ticks():
    units = pd.DataFrame({"unit_id": ["A", "B", "C"], "flag": ["as_expected"] * 3,
                          "expected": [2.0, 10.0, 40.0], "ratio": [0.5, 1.2, 0.9]})
    x = np.geomspace(1, 50, 20)
    curve = pd.DataFrame({"x": x, "upper998": 1 + 3 / np.sqrt(x), "lower998": np.maximum(0, 1 - 3 / np.sqrt(x)),
                          "upper95": 1 + 2 / np.sqrt(x), "lower95": np.maximum(0, 1 - 2 / np.sqrt(x))})
    fig = figures.funnel_plot(units, curve, target=1.0, x="expected", y="ratio", xlabel="Expected deaths",
                              ylabel="O/E", title="Funnel", highlight="B")
    try:
        assert isinstance(fig.axes[0].xaxis.get_minor_locator(), figures.InViewLocator)
    finally:
        plt.close(fig)
