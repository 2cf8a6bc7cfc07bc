"""Aggregate-data mode: funnel limits and HQIP flags from a one-row-per-unit CSV.

Given observed events and either expected events (a ratio, O/E) or a
denominator (a proportion), with an optional target, writes a CSV of each
unit's value, its 95% and 99.8% funnel limits, its HQIP flag and the method
used, and optionally a funnel plot (PNG and SVG).  The statistics are those of
``auditreport.stats`` (see METHODS.md sections 2-4 and the docstrings there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .rules.flags import AS_EXPECTED, FLAGS, flag_units
from .stats.funnel import (
    PROPORTION_LIMIT_METHODS,
    RATIO_LIMIT_METHODS,
    funnel_curve,
    proportion_limits,
    ratio_limits,
)
from .stats.overdispersion import OD_METHODS, Overdispersion, estimate_proportion, estimate_ratio

__all__ = ["AggregateInputError", "run_aggregate", "plot_funnel_png_svg", "OUTPUT_COLUMNS"]

OUTPUT_COLUMNS = ("unit", "observed", "value", "lower95", "upper95", "lower998", "upper998", "flag", "method")
# plus "expected" (ratio mode) or "denominator" (proportion mode) after "observed".

_MAX_LISTED = 5


class AggregateInputError(ValueError):
    """A problem with the aggregate input file, naming the file and column."""


def _rows(mask: np.ndarray) -> str:
    # Report 1-based data rows, which with the header is the spreadsheet line minus one.
    idx = np.flatnonzero(mask) + 1
    shown = ", ".join(str(i) for i in idx[:_MAX_LISTED])
    more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
    return f"data row(s) {shown}{more}"


def _numeric(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        examples = ", ".join(repr(v) for v in raw[bad].head(3).tolist())
        raise AggregateInputError(
            f"{path}: column {col!r} must be numeric with no blanks; {_rows(bad)} have {examples}"
        )
    arr = values.to_numpy(dtype=float)
    if not np.isfinite(arr).all():
        raise AggregateInputError(f"{path}: column {col!r} has non-finite values at {_rows(~np.isfinite(arr))}")
    return arr


def _method_text(kind: str, method: str, od: Overdispersion, target: float) -> str:
    limits = {
        ("ratio", "exact"): "exact Poisson (FunnelPlotR)",
        ("ratio", "phe"): "exact Poisson by observed events (PHEindicatormethods)",
        ("proportion", "wilson"): "Wilson-inverted (PHEindicatormethods)",
        ("proportion", "exact"): "exact binomial, interpolated (Spiegelhalter 2005)",
    }[(kind, method)]
    text = f"{kind}; target {target:.6g}; limits {limits}; overdispersion {od.method}"
    if od.method != "none":
        text += f" (phi {od.phi:.4g}, tau2 {od.tau2:.4g}, units {od.n_units}, trimmed {od.n_trimmed})"
    return text


def run_aggregate(
    input_csv: str | Path,
    output_csv: str | Path,
    *,
    unit_col: str,
    observed_col: str,
    expected_col: str | None = None,
    denominator_col: str | None = None,
    target: float | None = None,
    overdispersion: str = "none",
    method: str | None = None,
    plot_prefix: str | Path | None = None,
) -> pd.DataFrame:
    """Compute funnel limits and HQIP flags for aggregate (one row per unit) data.

    Parameters
    ----------
    input_csv : CSV with one row per unit.
    output_csv : where to write the results (parent folders are created).
    unit_col, observed_col : unit identifier and observed events.
    expected_col : expected events; gives ratio mode (value = O/E).
    denominator_col : cases; gives proportion mode (value = O/n).  Exactly one
        of ``expected_col`` and ``denominator_col`` is required.
    target : ratio mode, the target O/E (default 1; limits are then those of
        a Poisson count with mean target x E, divided by E); proportion mode,
        the target proportion as a fraction (default: pooled sum O / sum n, as
        PHEindicatormethods does).
    overdispersion : "none", "multiplicative", "additive" or "shmi" (ratios only).
    method : limit method; ratios "exact" (default) or "phe", proportions
        "wilson" (default) or "exact".
    plot_prefix : if given, also write ``<prefix>.png`` and ``<prefix>.svg``.

    Returns
    -------
    The written table: unit, observed, expected or denominator, value,
    lower95, upper95, lower998, upper998, flag, method.  ``DataFrame.attrs``
    carries ``target``, ``kind`` and ``overdispersion`` (``Overdispersion.to_dict()``).

    Raises
    ------
    FileNotFoundError if the input is missing; ``AggregateInputError`` (a
    ``ValueError``) naming the file and column for missing columns or bad
    values; ``ValueError`` for bad options.
    """
    path = Path(input_csv)
    if (expected_col is None) == (denominator_col is None):
        raise ValueError("give exactly one of expected_col (ratio) or denominator_col (proportion)")
    kind = "ratio" if expected_col is not None else "proportion"
    if overdispersion not in OD_METHODS:
        raise ValueError(f"overdispersion must be one of {OD_METHODS}, got {overdispersion!r}")
    if kind == "proportion" and overdispersion == "shmi":
        raise ValueError("overdispersion 'shmi' applies to ratios (expected_col), not proportions")
    allowed = RATIO_LIMIT_METHODS if kind == "ratio" else PROPORTION_LIMIT_METHODS
    method = method or allowed[0]
    if method not in allowed:
        raise ValueError(f"method for {kind} limits must be one of {allowed}, got {method!r}")
    if not path.is_file():
        raise FileNotFoundError(f"aggregate input not found: {path}")

    try:
        df = pd.read_csv(path, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AggregateInputError(f"{path}: cannot read as CSV: {exc}") from exc
    precision_col = expected_col if kind == "ratio" else denominator_col
    missing = [c for c in (unit_col, observed_col, precision_col) if c not in df.columns]
    if missing:
        raise AggregateInputError(
            f"{path}: column(s) {', '.join(repr(c) for c in missing)} not found; available: {list(df.columns)}"
        )
    if df.empty:
        raise AggregateInputError(f"{path}: no data rows")
    units = df[unit_col]
    if units.isna().any():
        raise AggregateInputError(f"{path}: column {unit_col!r} is blank at {_rows(units.isna().to_numpy())}")
    dup = units.duplicated(keep=False).to_numpy()
    if dup.any():
        raise AggregateInputError(
            f"{path}: column {unit_col!r} must have one row per unit; repeated at {_rows(dup)}"
        )
    o = _numeric(df, observed_col, path)
    x = _numeric(df, precision_col, path)
    if (o < 0).any():
        raise AggregateInputError(f"{path}: column {observed_col!r} must be >= 0; negative at {_rows(o < 0)}")
    if (x <= 0).any():
        raise AggregateInputError(f"{path}: column {precision_col!r} must be > 0; not so at {_rows(x <= 0)}")

    if kind == "ratio":
        t = 1.0 if target is None else float(target)
        if not t > 0:
            raise ValueError(f"target ratio must be > 0, got {target!r}")
        value = o / x
        od = estimate_ratio(o, x * t, overdispersion)
        lims = [ratio_limits(x * t, lev, method, od) for lev in (0.95, 0.998)]
        lims = [(lo * t, hi * t) for lo, hi in lims]
    else:
        if (o > x).any():
            raise AggregateInputError(
                f"{path}: column {observed_col!r} exceeds {precision_col!r} at {_rows(o > x)}"
            )
        t = float(o.sum() / x.sum()) if target is None else float(target)
        if not 0.0 < t < 1.0:
            raise ValueError(f"target proportion must be strictly between 0 and 1 (a fraction), got {t!r}")
        value = o / x
        od = estimate_proportion(o, x, t, overdispersion)
        lims = [proportion_limits(t, x, lev, method, od) for lev in (0.95, 0.998)]
    (l95, u95), (l998, u998) = lims

    out = pd.DataFrame(
        {
            "unit": units.to_numpy(),
            "observed": o,
            ("expected" if kind == "ratio" else "denominator"): x,
            "value": value,
            "lower95": l95,
            "upper95": u95,
            "lower998": l998,
            "upper998": u998,
            "flag": flag_units(kind, o, x, t, (l95, u95), (l998, u998), method="limits"),
            "method": _method_text(kind, method, od, t),
        }
    )
    out.attrs.update({"kind": kind, "target": t, "overdispersion": od.to_dict(), "limit_method": method})
    out_path = Path(output_csv)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_path, index=False)

    if plot_prefix is not None:
        x_lo, x_hi = max(float(x.min()) / 2.0, 1.0 if kind == "proportion" else 1e-3), float(x.max()) * 1.2
        if kind == "proportion":
            curve = funnel_curve(kind, t, x_lo, x_hi, method=method, overdispersion=od)
        else:
            # Same construction as the units' limits: a count with mean t x E, divided by E.
            xs = np.geomspace(x_lo, x_hi, 200)
            (a95, b95), (a998, b998) = (ratio_limits(xs * t, lev, method, od) for lev in (0.95, 0.998))
            curve = pd.DataFrame({"x": xs, "lower95": a95 * t, "upper95": b95 * t,
                                  "lower998": a998 * t, "upper998": b998 * t})
        plot_funnel_png_svg(out, curve, kind=kind, target=t, prefix=plot_prefix)
    return out


_FLAG_STYLE = {
    "alarm_high": ("#b2182b", "^"),
    "alert_high": ("#ef8a62", "^"),
    "as_expected": ("#4d4d4d", "o"),
    "alert_low": ("#67a9cf", "v"),
    "alarm_low": ("#2166ac", "v"),
}


def plot_funnel_png_svg(
    results: pd.DataFrame,
    curve: pd.DataFrame,
    *,
    kind: str,
    target: float,
    prefix: str | Path,
    title: str | None = None,
    label_flagged: bool = True,
) -> tuple[Path, Path]:
    """Draw a funnel plot and write ``<prefix>.png`` and ``<prefix>.svg``.

    ``results`` is the table from ``run_aggregate``; ``curve`` a
    ``funnel_curve`` frame.  Uses matplotlib's object API (no pyplot state, no
    global backend switch), so it is safe in a headless batch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xcol = "expected" if kind == "ratio" else "denominator"
    fig = Figure(figsize=(7.5, 5.0), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(curve["x"], curve["lower95"], color="#1f77b4", lw=1.2, ls="--", label="95% limits")
    ax.plot(curve["x"], curve["upper95"], color="#1f77b4", lw=1.2, ls="--")
    ax.plot(curve["x"], curve["lower998"], color="#1f77b4", lw=1.2, label="99.8% limits")
    ax.plot(curve["x"], curve["upper998"], color="#1f77b4", lw=1.2)
    ax.axhline(target, color="black", lw=0.8, label=f"target {target:.3g}")
    for flag in FLAGS:
        sub = results[results["flag"] == flag]
        if len(sub):
            colour, marker = _FLAG_STYLE[flag]
            ax.scatter(sub[xcol], sub["value"], s=22, color=colour, marker=marker, zorder=3,
                       label=flag.replace("_", " "))
            if label_flagged and flag != AS_EXPECTED:
                for _, row in sub.iterrows():
                    ax.annotate(str(row["unit"]), (row[xcol], row["value"]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("Expected events" if kind == "ratio" else "Cases (denominator)")
    ax.set_ylabel("Observed / expected" if kind == "ratio" else "Proportion")
    vals = results["value"].to_numpy(float)
    finite = np.concatenate([vals[np.isfinite(vals)], [target]])
    span = finite.max() - finite.min()
    ax.set_ylim(max(0.0, finite.min() - 0.15 * span - 1e-9), finite.max() + 0.15 * span + 1e-9)
    ax.set_title(title or ("Funnel plot: observed / expected" if kind == "ratio" else "Funnel plot: proportion"))
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png, svg = prefix.with_name(prefix.name + ".png"), prefix.with_name(prefix.name + ".svg")
    fig.savefig(png)
    fig.savefig(svg)
    return png, svg
