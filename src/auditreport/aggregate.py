"""Aggregate-data mode: funnel limits and HQIP flags from a one-row-per-unit CSV.

The kinds of measure the national stage judges, from a table of unit totals
(METHODS.md sections 1-4):

- ``proportion``: observed events and a denominator (value = O/n);
- ``ratio``: observed and expected (value = O/E), a count of deaths or a sum
  such as total length of stay;
- ``mean``: each unit's mean with its standard error, or with its standard
  deviation and number of records (value = the mean).

Writes a CSV of each unit's value, its own 95% and 99.8% interval, the target,
the funnel limits at its precision, its HQIP flag, the flag in words by the
measure's direction (``status``) and the method used, with the column names of
the national stage's ``indicators.csv``, and optionally a funnel plot (PNG and
SVG).  The statistics are those of ``auditreport.stats`` and the flag is
``rules.flags.flag_units``, the rule the national stage uses, so a unit table
gets the same flags here as in a full audit.
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
    DIRECTIONS,
    FLAG_METHODS,
    FLAGS,
    flag_units,
    flag_words,
)
from .stats import intervals
from .stats.funnel import (
    PROPORTION_LIMIT_METHODS,
    RATIO_LIMIT_METHODS,
    funnel_curve,
    normal_limits,
    proportion_limits,
    ratio_limits,
)
from .stats.overdispersion import (
    OD_METHODS,
    Overdispersion,
    estimate_mean,
    estimate_proportion,
    estimate_ratio,
)

__all__ = ["AggregateInputError", "AggregateOptionError", "run_aggregate", "plot_funnel_png_svg",
           "AGGREGATE_KINDS", "OUTPUT_COLUMNS"]

#: The kinds of measure aggregate mode judges (the national stage's, survival aside).
AGGREGATE_KINDS = ("proportion", "ratio", "mean")
#: Limit methods by kind (the first is the default); a mean has the normal funnel only.
LIMIT_METHODS = {"ratio": RATIO_LIMIT_METHODS, "proportion": PROPORTION_LIMIT_METHODS, "mean": ("normal",)}

OUTPUT_COLUMNS = ("unit", "observed", "value", "lower95", "upper95", "lower998", "upper998", "target",
                  "limit_lower95", "limit_upper95", "limit_lower998", "limit_upper998", "flag", "status", "method")
# plus "expected" (ratio) or "denominator" (proportion) after "observed"; a mean has no "observed" and gives
# "denominator" (n, when known), "sd" (when given) and "se" before "value".

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


def _choose_kind(kind: str | None, observed_col: str | None, expected_col: str | None, denominator_col: str | None,
                 mean_col: str | None, se_col: str | None, sd_col: str | None,
                 n_col: str | None) -> tuple[str, dict[str, str]]:
    """The measure's kind and its input columns (``run_aggregate`` parameter -> column), from ``kind`` or (when
    None) from the columns given."""
    given = {"expected_col": expected_col, "denominator_col": denominator_col, "mean_col": mean_col}
    precision = [p for p, c in given.items() if c is not None]
    if kind is None:
        if len(precision) != 1:
            raise AggregateOptionError(
                "give exactly one of the expected column (ratio), the denominator column (proportion) or the "
                "mean column (mean)", *(precision if len(precision) > 1 else ("expected_col", "denominator_col")))
        kind = {"expected_col": "ratio", "denominator_col": "proportion", "mean_col": "mean"}[precision[0]]
    if kind not in AGGREGATE_KINDS:
        raise AggregateOptionError(f"kind must be one of {AGGREGATE_KINDS}, got {kind!r}", "kind")
    own = {"ratio": "expected_col", "proportion": "denominator_col", "mean": "mean_col"}[kind]
    if given[own] is None:
        raise AggregateOptionError(f"kind {kind!r} needs the {own.removesuffix('_col')} column", own)
    wrong = [p for p in precision if p != own]
    if wrong:
        raise AggregateOptionError(f"kind {kind!r} takes the {own.removesuffix('_col')} column, not the "
                                   f"{wrong[0].removesuffix('_col')} column", *wrong)
    spread = {"se_col": se_col, "sd_col": sd_col, "n_col": n_col}
    if kind != "mean":
        if observed_col is None:
            raise AggregateOptionError(f"kind {kind!r} needs the observed column", "observed_col")
        extra = [p for p, c in spread.items() if c is not None]
        if extra:
            raise AggregateOptionError(f"{', '.join(p.removesuffix('_col') for p in extra)} apply to kind 'mean', "
                                       f"not {kind!r}", *extra)
        return kind, {"observed_col": observed_col, own: given[own]}
    if observed_col is not None:
        raise AggregateOptionError("kind 'mean' takes the mean column and its standard error, not an observed "
                                   "column", "observed_col")
    if se_col is not None and sd_col is not None:
        raise AggregateOptionError("give the standard error column or the standard deviation column, not both",
                                   "se_col", "sd_col")
    if se_col is None and (sd_col is None or n_col is None):
        raise AggregateOptionError("kind 'mean' needs the standard error column, or the standard deviation and the "
                                   "number of records columns", "se_col", "sd_col", "n_col")
    return kind, {p: c for p, c in {"mean_col": mean_col, "se_col": se_col, "sd_col": sd_col,
                                    "n_col": n_col}.items() if c is not None}


def _check_target(kind: str, target: float | None) -> None:
    if target is None:
        return
    t = float(target)
    if kind == "ratio" and not t > 0:
        raise AggregateOptionError(f"target ratio must be > 0, got {target!r}", "target")
    if kind == "proportion" and not 0.0 < t < 1.0:
        percent = f"; for {target:g}% give {target / 100:g}" if 1.0 <= t < 100.0 else ""
        raise AggregateOptionError(f"target proportion must be strictly between 0 and 1 (a fraction), got "
                                   f"{target!r}{percent}", "target")
    if kind == "mean" and not np.isfinite(t):
        raise AggregateOptionError(f"target mean must be a finite number, got {target!r}", "target")


def _method_text(kind: str, method: str, flag_method: str, od: Overdispersion, target: float, target_kind: str,
                 mean_text: tuple[str, str] = ("", "")) -> str:
    """The method column: kind, target, interval, limits, over-dispersion and flag rule in one line.

    ``mean_text`` is, for a mean, the interval's name and what the limits' standard error is.
    """
    limits = {
        ("ratio", "exact"): "exact Poisson (FunnelPlotR)",
        ("ratio", "phe"): "exact Poisson by observed events (PHEindicatormethods)",
        ("proportion", "wilson"): "Wilson-inverted (PHEindicatormethods)",
        ("proportion", "exact"): "exact binomial, interpolated (Spiegelhalter 2005)",
        ("mean", "normal"): f"normal, target -/+ z x standard error (Spiegelhalter 2005){mean_text[1]}",
    }[(kind, method)]
    interval = mean_text[0] if kind == "mean" else {
        ("ratio", False): "exact Poisson (Garwood) on O, divided by E",
        ("ratio", True): "exact Poisson on O below 10 events, Byars from 10 (PHEindicatormethods), divided by E",
        ("proportion", False): "Wilson score",
        ("proportion", True): "Wilson score",
    }[(kind, flag_method == "phe")]
    tail = {"ratio": "exact Poisson", "proportion": "exact binomial", "mean": "normal"}[kind]
    flag = {
        "discrete": f"{tail} tail and funnel limits must agree",
        "phe": "unit's interval against the target (PHEindicatormethods)",
        "limits": "value against the funnel limits (FunnelPlotR)",
    }[flag_method]
    text = (f"{kind}; target {target:.6g} ({target_kind}); interval {interval}; limits {limits}; "
            f"overdispersion {od.method}"
            + (f" (phi {od.phi:.4g}, tau2 {od.tau2:.4g}, units {od.n_units}, trimmed {od.n_trimmed})"
               if od.method != "none" else "")
            + f"; flag {flag_method}: {flag}")
    return text


def _read_table(path: Path, unit_col: str) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        # Units are codes: text, with nothing read as missing but a blank (a unit may be called "NA").
        # Blank lines are kept while reading so that row numbers in messages match the file's lines.
        df = pd.read_csv(path, encoding="utf-8-sig", dtype={unit_col: str}, keep_default_na=False,
                         na_values=[""], skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AggregateInputError(f"{path}: cannot read as CSV: {exc}") from exc
    # A row blank in every column (an empty line, or only commas, as spreadsheets export) is no unit: skip it.
    df = df[df.notna().any(axis=1)]
    return df, df.index.to_numpy() + 1


def run_aggregate(
    input_csv: str | Path,
    output_csv: str | Path,
    *,
    unit_col: str,
    observed_col: str | None = None,
    expected_col: str | None = None,
    denominator_col: str | None = None,
    mean_col: str | None = None,
    se_col: str | None = None,
    sd_col: str | None = None,
    n_col: str | None = None,
    kind: str | None = None,
    direction: str | None = None,
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
    unit_col : unit identifier (read as text, so codes keep their leading zeros).
    observed_col : observed events (or a sum, for a ratio); proportions and ratios.
    expected_col : expected events: kind "ratio" (value = O/E).
    denominator_col : cases: kind "proportion" (value = O/n).
    mean_col : each unit's mean: kind "mean"; with ``se_col`` (its standard
        error), or ``sd_col`` and ``n_col`` (the standard deviation of its
        records, denominator n - 1, and their number).
    kind : "proportion", "ratio" or "mean"; by default the kind whose column
        is given (exactly one of ``expected_col``, ``denominator_col`` and
        ``mean_col``).
    direction : "lower_is_better" or "higher_is_better": the ``status``
        column says "worse" or "better than expected" (HQIP's words) by it;
        None says "higher" or "lower than expected".
    target : a fixed standard.  Ratio: the target O/E (default 1; limits and
        the flag's tail are then those of a count with mean target x E,
        divided by E).  Proportion: a fraction (default the pooled sum O /
        sum n, as PHEindicatormethods and the national stage do).  Mean: a
        number on the values' scale (default the national mean: sum n x mean
        / sum n with ``n_col``; the precision-weighted mean sum(mean / se^2) /
        sum(1 / se^2) with ``se_col``).
    overdispersion : "none", "multiplicative", "additive" or "shmi" (ratios only).
    method : limit method; ratios "exact" (default) or "phe", proportions
        "wilson" (default) or "exact", means "normal" (the only one).
    flag_method : ``rules.flags.flag_units``'s method: "discrete" (default,
        the national stage's rule: the tail under the target and the funnel
        limits must agree; for proportions and ratios it needs whole-number
        counts), "phe" (the unit's interval against the target) or "limits"
        (the funnel limits alone, as FunnelPlotR).
    plot_prefix : if given, also write ``<prefix>.png`` and ``<prefix>.svg``.

    Returns
    -------
    The written table: unit; observed and expected (ratio), observed and
    denominator (proportion), or denominator (n, when given), sd (when given)
    and se (mean); value; the unit's interval ``lower95, upper95, lower998,
    upper998`` (Wilson for proportions; exact Poisson on O divided by E for
    ratios, PHE's exact-or-Byars with ``flag_method="phe"``; for means the t
    interval with the unit's own standard deviation, or mean -/+ z se when
    only the standard error is given); ``target``; the funnel limits
    ``limit_lower95, limit_upper95, limit_lower998, limit_upper998``; flag;
    status; method.  ``DataFrame.attrs`` carries ``kind``, ``direction``,
    ``target``, ``target_kind`` ("standard" or "national"),
    ``overdispersion`` (``Overdispersion.to_dict()``), ``limit_method``,
    ``flag_method`` and, for means, ``sd`` (the funnel's standard deviation).

    Notes
    -----
    The funnel of a mean: with ``sd_col`` and ``n_col`` the precision axis is
    n and the standard deviation is the national one of every record,
    recovered exactly from the table (the pooled within-unit sum of squares
    plus the between-unit one, over N - 1), as the national stage uses; with
    ``se_col`` each unit's own standard error is used and the precision axis
    is 1/se^2 (Spiegelhalter 2005, section 2.1).

    Raises
    ------
    AggregateOptionError (a ``ValueError``) for a bad option or a column the
    file does not have, naming the parameter(s) (``parameters``); ``AggregateInputError`` (a
    ``ValueError``) naming the file, column and rows for bad values;
    ``FileNotFoundError`` if the input is missing.
    """
    path = Path(input_csv)
    kind, cols = _choose_kind(kind, observed_col, expected_col, denominator_col, mean_col, se_col, sd_col, n_col)
    if direction is not None and direction not in DIRECTIONS:
        raise AggregateOptionError(f"direction must be one of {DIRECTIONS}, got {direction!r}", "direction")
    if overdispersion not in OD_METHODS:
        raise AggregateOptionError(f"overdispersion must be one of {OD_METHODS}, got {overdispersion!r}",
                                   "overdispersion")
    if kind != "ratio" and overdispersion == "shmi":
        column = "an expected column" if kind == "proportion" else "O/E"
        raise AggregateOptionError(f"overdispersion 'shmi' applies to ratios ({column}), not {kind}s",
                                   "overdispersion")
    allowed = LIMIT_METHODS[kind]
    method = method or allowed[0]
    if method not in allowed:
        raise AggregateOptionError(f"method for {kind} limits must be one of {allowed}, got {method!r}", "method")
    if flag_method not in FLAG_METHODS:
        raise AggregateOptionError(f"flag method must be one of {FLAG_METHODS}, got {flag_method!r}", "flag_method")
    _check_target(kind, target)
    if not path.is_file():
        raise FileNotFoundError(f"aggregate input not found: {path}")

    df, rows = _read_table(path, unit_col)
    for parameter, col in (("unit_col", unit_col), *cols.items()):
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
    if kind == "mean":
        j = _judge_mean(df, cols, path, rows, target, overdispersion, flag_method)
    else:
        values = {p: _numeric(df, c, path, rows) for p, c in cols.items()}
        j = _judge_count(kind, values, cols, path, rows, target, overdispersion, method, flag_method)
    t, od = j["target"], j["od"]
    (l95, u95), (l998, u998) = j["limits"]

    out = pd.DataFrame({"unit": units.to_numpy(dtype=object), **j["columns"]})
    out["target"] = t
    out["limit_lower95"], out["limit_upper95"], out["limit_lower998"], out["limit_upper998"] = l95, u95, l998, u998
    out["flag"] = j["flag"]
    out["status"] = [flag_words(f, direction) for f in j["flag"]]
    target_kind = "national" if target is None else "standard"
    out["method"] = _method_text(kind, method, flag_method, od, t, target_kind, j.get("text", ("", "")))
    out.attrs.update({"kind": kind, "direction": direction, "target": t, "target_kind": target_kind,
                      "overdispersion": od.to_dict(), "limit_method": method, "flag_method": flag_method})
    if kind == "mean":
        out.attrs["sd"] = j["sd"]
    out_path = Path(output_csv)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(out_path, index=False)

    if plot_prefix is not None:
        x = j["x"]
        x_lo, x_hi = max(float(x.min()) / 2.0, 1.0 if kind == "proportion" else 1e-3), float(x.max()) * 1.2
        if kind == "proportion":
            curve = funnel_curve(kind, t, x_lo, x_hi, method=method, overdispersion=od)
        elif kind == "mean":
            curve = funnel_curve(kind, t, x_lo, x_hi, overdispersion=od, sd=j["sd"])
        else:
            # Same construction as the units' limits: a count with mean t x E, divided by E.
            xs = np.geomspace(x_lo, x_hi, 200)
            (a95, b95), (a998, b998) = (ratio_limits(xs * t, lev, method, od) for lev in (0.95, 0.998))
            curve = pd.DataFrame({"x": xs, "lower95": a95 * t, "upper95": b95 * t,
                                  "lower998": a998 * t, "upper998": b998 * t})
        plot_funnel_png_svg(out, curve, kind=kind, target=t, prefix=plot_prefix, x=x, x_label=j.get("x_label"))
    return out


def _judge_count(kind, values, cols, path, rows, target, overdispersion, method, flag_method):
    """Proportion or ratio: columns, target, over-dispersion, limits and flags."""
    o = values["observed_col"]
    precision_param = "expected_col" if kind == "ratio" else "denominator_col"
    x = values[precision_param]
    observed_name, precision_name = cols["observed_col"], cols[precision_param]
    if (o < 0).any():
        raise AggregateInputError(f"{path}: column {observed_name!r} must be >= 0; negative at {_rows(o < 0, rows)}")
    if (x <= 0).any():
        raise AggregateInputError(f"{path}: column {precision_name!r} must be > 0; not so at {_rows(x <= 0, rows)}")
    if flag_method == "discrete":
        _require_counts(o, observed_name, path, rows)
        if kind == "proportion":
            _require_counts(x, precision_name, path, rows)
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
                f"{path}: column {observed_name!r} exceeds {precision_name!r} at {_rows(o > x, rows)}"
            )
        t = float(o.sum() / x.sum()) if target is None else float(target)
        if not 0.0 < t < 1.0:
            raise AggregateInputError(
                f"{path}: the pooled proportion {observed_name!r} / {precision_name!r} is {t:g}; limits need a "
                "target strictly between 0 and 1: give one (target, --target)"
            )
        od = estimate_proportion(o, x, t, overdispersion)
        lims = [proportion_limits(t, x, lev, method, od) for lev in (0.95, 0.998)]
        ci = [intervals.wilson(o, x, lev) for lev in (0.95, 0.998)]
    (lo95, hi95), (lo998, hi998) = ci
    columns = {
        "observed": _counts_as_integers(o),
        ("expected" if kind == "ratio" else "denominator"): x if kind == "ratio" else _counts_as_integers(x),
        "value": o / x,
        "lower95": lo95, "upper95": hi95, "lower998": lo998, "upper998": hi998,
    }
    flag = flag_units(kind, o, x, t, lims[0], lims[1], method=flag_method)
    return {"target": t, "od": od, "columns": columns, "limits": lims, "flag": flag, "x": x}


def _judge_mean(df, cols, path, rows, target, overdispersion, flag_method):
    """Mean: the standard error's source, the national SD, target, over-dispersion, limits and flags."""
    m = _numeric(df, cols["mean_col"], path, rows)
    n = _numeric(df, cols["n_col"], path, rows) if "n_col" in cols else None
    if n is not None:
        bad_n = (n < 1) | (n != np.round(n))
        if bad_n.any():
            raise AggregateInputError(f"{path}: column {cols['n_col']!r} must hold whole numbers >= 1 (records); "
                                      f"not so at {_rows(bad_n, rows)}")
    if "se_col" in cols:
        se = _numeric(df, cols["se_col"], path, rows)
        if (se <= 0).any():
            raise AggregateInputError(f"{path}: column {cols['se_col']!r} must be > 0 (a standard error); not so "
                                      f"at {_rows(se <= 0, rows)}")
        # Precision 1/se^2 with a record SD of 1: normal_limits then gives target -/+ z se at each unit.
        precision, sd_funnel = 1.0 / se**2, 1.0
        t = float(np.sum(m * precision) / np.sum(precision)) if target is None else float(target)
        (lo95, hi95), (lo998, hi998) = ((m - z * se, m + z * se) for z in (intervals.Z95, intervals.Z998))
        columns = {"se": se}
        text = ("normal, mean -/+ z x the unit's standard error", "; each unit's own standard error, precision 1/se^2")
        x_label = "Precision (1 / standard error squared)"
    else:
        # A unit of one record has no standard deviation: its cell may be blank (it adds nothing within units).
        raw_sd = df[cols["sd_col"]].where(~((n == 1) & df[cols["sd_col"]].isna()), 0.0)
        sd = _numeric(df.assign(**{cols["sd_col"]: raw_sd}), cols["sd_col"], path, rows)
        if (sd < 0).any():
            raise AggregateInputError(f"{path}: column {cols['sd_col']!r} must be >= 0 (a standard deviation); not "
                                      f"so at {_rows(sd < 0, rows)}")
        total_n = float(n.sum())
        if total_n < 2:
            raise AggregateInputError(f"{path}: column {cols['n_col']!r}: the table has {total_n:g} record(s); a "
                                      "standard deviation needs at least 2")
        grand = float(np.sum(n * m) / total_n)
        # The national SD of every record: within-unit sums of squares (n - 1) sd^2 plus between-unit n (m - M)^2.
        sd_funnel = float(np.sqrt((np.sum((n - 1.0) * sd**2) + np.sum(n * (m - grand) ** 2)) / (total_n - 1.0)))
        if not sd_funnel > 0:
            raise AggregateInputError(f"{path}: every record has the same value ({grand:g}); no funnel can be drawn")
        precision, se = n, sd / np.sqrt(n)
        t = grand if target is None else float(target)
        (lo95, hi95), (lo998, hi998) = (intervals.t_interval(m, sd, n, lev) for lev in (0.95, 0.998))
        columns = {"sd": np.where(n == 1, np.nan, sd), "se": np.where(n == 1, np.nan, se)}
        text = ("t with the unit's standard deviation", f"; national sd {sd_funnel:.6g} of every record")
        x_label = "Records (n)"
    if n is not None:
        columns = {"denominator": _counts_as_integers(n), **columns}
    od = estimate_mean(m, precision, t, sd_funnel, overdispersion)
    lims = [normal_limits(t, sd_funnel, precision, lev, od) for lev in (0.95, 0.998)]
    columns.update({"value": m, "lower95": lo95, "upper95": hi95, "lower998": lo998, "upper998": hi998})
    flag = flag_units("mean", m * precision, precision, t, lims[0], lims[1], method=flag_method, sd=sd_funnel)
    return {"target": t, "od": od, "columns": columns, "limits": lims, "flag": flag, "x": precision, "sd": sd_funnel,
            "text": text, "x_label": x_label}


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
    x: np.ndarray | None = None,
    x_label: str | None = None,
) -> tuple[Path, Path]:
    """Draw a funnel plot and write ``<prefix>.png`` and ``<prefix>.svg``.

    ``results`` is the table from ``run_aggregate``; ``curve`` a
    ``funnel_curve`` frame.  ``x`` is each unit's position on the precision
    axis (default: the ``expected`` column for ratios, ``denominator``
    otherwise).  Uses matplotlib's object API (no pyplot state, no global
    backend switch), so it is safe in a headless batch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = np.asarray(results["expected" if kind == "ratio" else "denominator"] if x is None else x, dtype=float)
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
            at = (results["flag"] == flag).to_numpy()
            ax.scatter(xs[at], sub["value"], s=22, color=colour, marker=marker, zorder=3,
                       label=flag.replace("_", " "))
            if label_flagged and flag != AS_EXPECTED:
                for x_unit, (_, row) in zip(xs[at], sub.iterrows(), strict=True):
                    ax.annotate(str(row["unit"]), (x_unit, row["value"]), fontsize=6,
                                xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(x_label or {"ratio": "Expected events", "proportion": "Cases (denominator)"}.get(kind, "Records"))
    ax.set_ylabel({"ratio": "Observed / expected", "proportion": "Proportion", "mean": "Mean"}[kind])
    vals = results["value"].to_numpy(float)
    finite = np.concatenate([vals[np.isfinite(vals)], [target]])
    span = finite.max() - finite.min()
    ax.set_ylim(max(0.0, finite.min() - 0.15 * span - 1e-9), finite.max() + 0.15 * span + 1e-9)
    ax.set_title(title or {"ratio": "Funnel plot: observed / expected", "proportion": "Funnel plot: proportion",
                           "mean": "Funnel plot: mean"}[kind])
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png, svg = prefix.with_name(prefix.name + ".png"), prefix.with_name(prefix.name + ".svg")
    fig.savefig(png)
    fig.savefig(svg)
    return png, svg
