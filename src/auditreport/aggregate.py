"""Aggregate-data mode: funnel limits and HQIP flags from a one-row-per-unit CSV.

Given observed events and either expected events (a ratio, O/E) or a
denominator (a proportion), with an optional target, writes a CSV of each
unit's value, its own 95% and 99.8% interval, the target, the funnel limits at
its precision, its HQIP flag and the method used, with the column names of the
national stage's ``indicators.csv``, and optionally a funnel plot (PNG and
SVG).  The statistics are those of ``auditreport.stats`` and the flag is
``rules.flags.flag_units``, the rule the national stage uses, so a unit table
gets the same flags here as in a full audit (METHODS.md sections 2-4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .rules.flags import (
    ALARM_HIGH,
    ALARM_LOW,
    ALERT_HIGH,
    ALERT_LOW,
    AS_EXPECTED,
    FLAG_METHODS,
    FLAGS,
    flag_units,
)
from .stats import intervals
from .stats.funnel import (
    PROPORTION_LIMIT_METHODS,
    RATIO_LIMIT_METHODS,
    funnel_curve,
    proportion_limits,
    ratio_limits,
)
from .stats.overdispersion import OD_METHODS, Overdispersion, estimate_proportion, estimate_ratio

__all__ = ["AggregateInputError", "AggregateOptionError", "run_aggregate", "plot_funnel_png_svg",
           "OUTPUT_COLUMNS"]

OUTPUT_COLUMNS = ("unit", "observed", "value", "lower95", "upper95", "lower998", "upper998", "target",
                  "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998", "flag", "method")
# plus "expected" (ratio mode) or "denominator" (proportion mode) after "observed".

_MAX_LISTED = 5


class AggregateInputError(ValueError):
    """A problem with the values in the aggregate input file, naming the file, column and rows."""


class AggregateOptionError(ValueError):
    """A bad option of :func:`run_aggregate`; ``parameters`` names the keyword argument(s) at fault."""

    def __init__(self, message: str, *parameters: str):
        self.parameters = parameters
        super().__init__(message)


def _rows(mask: np.ndarray, rows: np.ndarray) -> str:
    """Name the data rows where ``mask`` holds; ``rows`` is each kept row's 1-based data row in the file."""
    # Blank lines count, so data row n is line n + 1 of the file, as a spreadsheet shows it, minus one.
    idx = rows[np.asarray(mask, dtype=bool)]
    shown = ", ".join(str(i) for i in idx[:_MAX_LISTED])
    more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
    return f"data row(s) {shown}{more}"


def _numeric(df: pd.DataFrame, col: str, path: Path, rows: np.ndarray) -> np.ndarray:
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        examples = ", ".join("(blank)" if pd.isna(v) else repr(v) for v in raw[bad].head(3).tolist())
        # "1,719" is read as text, not guessed at ("1,5" may be a decimal comma): say how to make it a number.
        grouped = raw[bad].astype(str).str.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?").any()
        remedy = "; remove the thousands separators" if grouped else ""
        raise AggregateInputError(
            f"{path}: column {col!r} must be numeric with no blanks; {_rows(bad, rows)} have {examples}{remedy}"
        )
    arr = values.to_numpy(dtype=float)
    if not np.isfinite(arr).all():
        raise AggregateInputError(f"{path}: column {col!r} has non-finite values at {_rows(~np.isfinite(arr), rows)}")
    return arr


def _require_counts(values: np.ndarray, col: str, path: Path, rows: np.ndarray) -> None:
    """The discrete rule's tails are those of counts: whole numbers only."""
    bad = values != np.round(values)
    if bad.any():
        raise AggregateInputError(
            f"{path}: column {col!r} must hold whole numbers (counts) for the discrete flag rule; not so at "
            f"{_rows(bad, rows)}; for a measure that is not a count use the flag method 'limits' or 'phe' "
            "(--flag-method)"
        )


def _counts_as_integers(values: np.ndarray) -> np.ndarray:
    """Whole-number counts as integers, so the output reads 34 deaths, not 34.0; other values unchanged."""
    return values.astype(np.int64) if (values == np.round(values)).all() else values


def _method_text(kind: str, method: str, flag_method: str, od: Overdispersion, target: float) -> str:
    limits = {
        ("ratio", "exact"): "exact Poisson (FunnelPlotR)",
        ("ratio", "phe"): "exact Poisson by observed events (PHEindicatormethods)",
        ("proportion", "wilson"): "Wilson-inverted (PHEindicatormethods)",
        ("proportion", "exact"): "exact binomial, interpolated (Spiegelhalter 2005)",
    }[(kind, method)]
    interval = {
        ("ratio", False): "exact Poisson (Garwood) on O, divided by E",
        ("ratio", True): "exact Poisson on O below 10 events, Byars from 10 (PHEindicatormethods), divided by E",
        ("proportion", False): "Wilson score",
        ("proportion", True): "Wilson score",
    }[(kind, flag_method == "phe")]
    flag = {
        "discrete": f"exact {'Poisson' if kind == 'ratio' else 'binomial'} tail and funnel limits must agree",
        "phe": "unit's interval against the target (PHEindicatormethods)",
        "limits": "value against the funnel limits (FunnelPlotR)",
    }[flag_method]
    text = (f"{kind}; target {target:.6g}; interval {interval}; limits {limits}; overdispersion {od.method}"
            + (f" (phi {od.phi:.4g}, tau2 {od.tau2:.4g}, units {od.n_units}, trimmed {od.n_trimmed})"
               if od.method != "none" else "")
            + f"; flag {flag_method}: {flag}")
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
    flag_method: str = "discrete",
    plot_prefix: str | Path | None = None,
) -> pd.DataFrame:
    """Compute intervals, funnel limits and HQIP flags for aggregate (one row per unit) data.

    Parameters
    ----------
    input_csv : CSV with one row per unit.
    output_csv : where to write the results (parent folders are created).
    unit_col, observed_col : unit identifier (read as text, so codes keep
        their leading zeros) and observed events.
    expected_col : expected events; gives ratio mode (value = O/E).
    denominator_col : cases; gives proportion mode (value = O/n).  Exactly one
        of ``expected_col`` and ``denominator_col`` is required.
    target : ratio mode, the target O/E (default 1; limits and the flag's
        tail are then those of a Poisson count with mean target x E, divided
        by E); proportion mode, the target proportion as a fraction (default:
        pooled sum O / sum n, as PHEindicatormethods and the national stage
        do).
    overdispersion : "none", "multiplicative", "additive" or "shmi" (ratios only).
    method : limit method; ratios "exact" (default) or "phe", proportions
        "wilson" (default) or "exact".
    flag_method : ``rules.flags.flag_units``'s method: "discrete" (default,
        the national stage's rule: exact tail and funnel limits must agree;
        needs whole-number counts), "phe" (PHEindicatormethods' labels) or
        "limits" (the funnel limits alone, as FunnelPlotR).
    plot_prefix : if given, also write ``<prefix>.png`` and ``<prefix>.svg``.

    Returns
    -------
    The written table: unit, observed, expected or denominator, value, the
    unit's interval ``lower95, upper95, lower998, upper998`` (Wilson for
    proportions; exact Poisson on O divided by E for ratios, PHE's
    exact-or-Byars with ``flag_method="phe"``), ``target``, the funnel limits
    ``limit_lower95, limit_upper95, limit_lower998, limit_upper998``, flag,
    method.  ``DataFrame.attrs`` carries ``kind``, ``target``,
    ``overdispersion`` (``Overdispersion.to_dict()``), ``limit_method`` and
    ``flag_method``.

    Raises
    ------
    AggregateOptionError (a ``ValueError``) for a bad option or a column the
    file does not have, naming the parameter(s) (``parameters``); ``AggregateInputError`` (a
    ``ValueError``) naming the file, column and rows for bad values;
    ``FileNotFoundError`` if the input is missing.
    """
    path = Path(input_csv)
    if (expected_col is None) == (denominator_col is None):
        raise AggregateOptionError("give exactly one of the expected column (ratio mode) or the denominator column "
                                   "(proportion mode)", "expected_col", "denominator_col")
    kind = "ratio" if expected_col is not None else "proportion"
    if overdispersion not in OD_METHODS:
        raise AggregateOptionError(f"overdispersion must be one of {OD_METHODS}, got {overdispersion!r}",
                                   "overdispersion")
    if kind == "proportion" and overdispersion == "shmi":
        raise AggregateOptionError("overdispersion 'shmi' applies to ratios (an expected column), not proportions",
                                   "overdispersion")
    allowed = RATIO_LIMIT_METHODS if kind == "ratio" else PROPORTION_LIMIT_METHODS
    method = method or allowed[0]
    if method not in allowed:
        raise AggregateOptionError(f"method for {kind} limits must be one of {allowed}, got {method!r}", "method")
    if flag_method not in FLAG_METHODS:
        raise AggregateOptionError(f"flag method must be one of {FLAG_METHODS}, got {flag_method!r}", "flag_method")
    if target is not None:
        if kind == "ratio" and not float(target) > 0:
            raise AggregateOptionError(f"target ratio must be > 0, got {target!r}", "target")
        if kind == "proportion" and not 0.0 < float(target) < 1.0:
            percent = f"; for {target:g}% give {target / 100:g}" if 1.0 <= float(target) < 100.0 else ""
            raise AggregateOptionError(f"target proportion must be strictly between 0 and 1 (a fraction), got "
                                       f"{target!r}{percent}", "target")
    if not path.is_file():
        raise FileNotFoundError(f"aggregate input not found: {path}")

    try:
        # Units are codes: text, with nothing read as missing but a blank (a unit may be called "NA").
        # Blank lines are kept while reading so that row numbers in messages match the file's lines.
        df = pd.read_csv(path, encoding="utf-8-sig", dtype={unit_col: str}, keep_default_na=False,
                         na_values=[""], skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AggregateInputError(f"{path}: cannot read as CSV: {exc}") from exc
    # A row blank in every column (an empty line, or only commas, as spreadsheets export) is no unit: skip it.
    df = df[df.notna().any(axis=1)]
    rows = df.index.to_numpy() + 1
    precision_col = expected_col if kind == "ratio" else denominator_col
    for parameter, col in (("unit_col", unit_col), ("observed_col", observed_col),
                           ("expected_col" if kind == "ratio" else "denominator_col", precision_col)):
        if col not in df.columns:
            raise AggregateOptionError(f"column {col!r} not found in {path}; available: {list(df.columns)}",
                                       parameter)
    if df.empty:
        raise AggregateInputError(f"{path}: no data rows")
    units = df[unit_col]
    blank = (units.isna() | (units.str.strip() == "")).to_numpy()
    if blank.any():
        raise AggregateInputError(f"{path}: column {unit_col!r} is blank at {_rows(blank, rows)}; name the unit "
                                  "of each row, or delete the row")
    dup = units.duplicated(keep=False).to_numpy()
    if dup.any():
        raise AggregateInputError(
            f"{path}: column {unit_col!r} must have one row per unit; repeated at {_rows(dup, rows)}"
        )
    o = _numeric(df, observed_col, path, rows)
    x = _numeric(df, precision_col, path, rows)
    if (o < 0).any():
        raise AggregateInputError(f"{path}: column {observed_col!r} must be >= 0; negative at {_rows(o < 0, rows)}")
    if (x <= 0).any():
        raise AggregateInputError(f"{path}: column {precision_col!r} must be > 0; not so at {_rows(x <= 0, rows)}")
    if flag_method == "discrete":
        _require_counts(o, observed_col, path, rows)
        if kind == "proportion":
            _require_counts(x, precision_col, path, rows)

    value = o / x
    if kind == "ratio":
        t = 1.0 if target is None else float(target)
        od = estimate_ratio(o, x * t, overdispersion)
        lims = [ratio_limits(x * t, lev, method, od) for lev in (0.95, 0.998)]
        lims = [(lo * t, hi * t) for lo, hi in lims]
        interval_method = "phe" if flag_method == "phe" else "exact"
        ci = [intervals.ratio_interval(o, x, lev, method=interval_method) for lev in (0.95, 0.998)]
    else:
        if (o > x).any():
            raise AggregateInputError(
                f"{path}: column {observed_col!r} exceeds {precision_col!r} at {_rows(o > x, rows)}"
            )
        t = float(o.sum() / x.sum()) if target is None else float(target)
        if not 0.0 < t < 1.0:
            raise AggregateInputError(
                f"{path}: the pooled proportion {observed_col!r} / {precision_col!r} is {t:g}; limits need a "
                "target strictly between 0 and 1: give one (target, --target)"
            )
        od = estimate_proportion(o, x, t, overdispersion)
        lims = [proportion_limits(t, x, lev, method, od) for lev in (0.95, 0.998)]
        ci = [intervals.wilson(o, x, lev) for lev in (0.95, 0.998)]
    (l95, u95), (l998, u998) = lims
    (lo95, hi95), (lo998, hi998) = ci

    out = pd.DataFrame(
        {
            "unit": units.to_numpy(dtype=object),
            "observed": _counts_as_integers(o),
            ("expected" if kind == "ratio" else "denominator"): x if kind == "ratio" else _counts_as_integers(x),
            "value": value,
            "lower95": lo95,
            "upper95": hi95,
            "lower998": lo998,
            "upper998": hi998,
            "target": t,
            "limit_lower95": l95,
            "limit_upper95": u95,
            "limit_lower998": l998,
            "limit_upper998": u998,
            "flag": flag_units(kind, o, x, t, (l95, u95), (l998, u998), method=flag_method),
            "method": _method_text(kind, method, flag_method, od, t),
        }
    )
    out.attrs.update({"kind": kind, "target": t, "overdispersion": od.to_dict(), "limit_method": method,
                      "flag_method": flag_method})
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
    ALARM_HIGH: ("#b2182b", "^"),
    ALERT_HIGH: ("#ef8a62", "^"),
    AS_EXPECTED: ("#4d4d4d", "o"),
    ALERT_LOW: ("#67a9cf", "v"),
    ALARM_LOW: ("#2166ac", "v"),
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
