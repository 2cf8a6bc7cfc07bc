"""The pieces every measure's sections are made of: statistics named and written as text, status in
words by the measure's direction, and the measure's funnel chart.

A measure is its metadata entry in the bundle (``ReportContext.measures``); its statistics are rows of
the indicator table (``rate``, ``oe_ratio``, ``adjusted_rate``, ``mean``, ``median``, ``survival_<h>d``,
``cox_oe_ratio``). Every word a reader sees comes from the measure's label and unit and the audit's
wording (``ctx.wording``), never from a fixed outcome.
"""

from __future__ import annotations

import pandas as pd

from auditreport.presentation import figures
from auditreport.presentation.blocks import Chart, Flag, Inline, chart
from auditreport.presentation.context import ReportContext
from auditreport.presentation.formatting import num, pct
from auditreport.rules.disclosure import LOW_VOLUME_ID, SUPPRESSED
from auditreport.rules.flags import flag_words

#: Statistics written as percentages; the others are ratios or values in the measure's unit.
PERCENT_STATISTICS = ("rate", "adjusted_rate")
RATIO_STATISTICS = ("oe_ratio", "cox_oe_ratio")

#: Where a flagged unit sits against its funnel.
FLAG_PLACE = {"alarm_high": "above the 99.8% control limit", "alert_high": "above the 95% control limit",
              "alert_low": "below the 95% control limit", "alarm_low": "below the 99.8% control limit"}


def survival_horizon(statistic: str) -> int:
    """"survival_365d" -> 365 (to order horizons by time: as text, 1825 sorts before 730)."""
    return int(statistic.removeprefix("survival_").removesuffix("d"))


def is_percent(statistic: str) -> bool:
    return statistic in PERCENT_STATISTICS or statistic.startswith("survival_")


def statistic_label(measure: dict, statistic: str) -> str:
    """The name of one of a measure's statistics as a table row reads it ("Risk-adjusted rate")."""
    unit = f" ({measure['value_unit']})" if measure.get("value_unit") else ""
    if statistic.startswith("survival_"):
        return f"Survival at {survival_horizon(statistic)} days"
    return {"rate": "Crude rate" if measure.get("adjusted") else "Rate",
            "oe_ratio": "Observed / expected (O/E)",
            "adjusted_rate": "Risk-adjusted rate",
            "mean": f"Mean{unit}", "median": f"Median{unit}",
            "cox_oe_ratio": "Cox observed / expected (Cox O/E)"}.get(statistic, statistic.replace("_", " "))


def value_text(measure: dict, statistic: str, value: float) -> str:
    """A value of a statistic as text: percentages, ratios to two decimals, means and medians to one
    decimal with their unit; NaN (suppressed) as ``*``."""
    if is_percent(statistic):
        return pct(value)
    if statistic in RATIO_STATISTICS:
        return num(value)
    if value != value:
        return SUPPRESSED
    unit = measure.get("value_unit") or ""
    return f"{value:,.1f}{' ' + unit if unit else ''}"


def range_text(measure: dict, statistic: str, lower: float, upper: float) -> str:
    """Two values of a statistic as a range, the unit once: "6.2 to 7.0 hours", "5.4% to 9.0%"."""
    low, high = value_text(measure, statistic, lower), value_text(measure, statistic, upper)
    unit = measure.get("value_unit") or ""
    if unit and low.endswith(f" {unit}"):
        low = low.removesuffix(f" {unit}")
    return f"{low} to {high}"


def interval_text(measure: dict, statistic: str, row: pd.Series) -> str:
    """A row's 95% interval as text (``*`` where suppressed or not computed)."""
    if bool(row.get("suppressed", False)) or row["lower95"] != row["lower95"]:
        return SUPPRESSED
    return range_text(measure, statistic, row["lower95"], row["upper95"])


def target_text(measure: dict) -> str:
    """What the measure's units are held to: "the standard of 90%" or "the national value"."""
    if measure.get("target_kind") == "standard" and measure.get("target") is not None:
        return f"the standard of {value_text(measure, measure['headline'], float(measure['target']))}"
    return "the national value"


def carries_flag(measure: dict, statistic: str) -> bool:
    """Whether this statistic carries the measure's outlier status (the headline of a measure with status,
    and the O/E an adjusted proportion's headline is judged on)."""
    if not measure.get("carries_status"):
        return False
    same_judgement = measure["kind"] == "proportion" and measure.get("adjusted") and statistic == "oe_ratio"
    return statistic == measure["headline"] or bool(same_judgement)


def status_cell(measure: dict, statistic: str, flag: str) -> Inline:
    """A status table cell: the flag badge in words by direction where the statistic carries a status,
    otherwise why it carries none."""
    if carries_flag(measure, statistic):
        return Flag(flag or "", measure.get("direction", ""))
    if measure.get("carries_status"):
        return "Context (no status)"
    return "No status (not risk-adjusted)" if measure.get("type") != "process" else "No status"


def status_sentence(ctx: ReportContext, measure: dict, row: pd.Series) -> str:
    """A plain-English sentence on where a unit's headline sits: within the expected range, or which way
    and how far outside it, "worse" or "better" by the measure's direction."""
    statistic = measure["headline"]
    label = lower_first(statistic_label(measure, statistic).split(" (")[0] if statistic in ("mean", "median")
                         else statistic_label(measure, statistic))
    if not measure.get("carries_status"):
        return (f"{measure['label']} is not risk-adjusted, so no outlier status is given: differences between "
                f"{ctx.wording['providers']} may reflect the {ctx.wording['activity']} they treat.")
    if bool(row.get("low_volume", False)):
        return (f"Its {label} is not shown on its own: it had fewer {ctx.wording['activity']} than the minimum "
                "volume, so its result is in the pooled low-volume group.")
    if bool(row.get("suppressed", False)) or row["value"] != row["value"]:
        return (f"Its {label} is not shown because it involves small numbers, or could be used with other "
                "published figures to work them out.")
    value = value_text(measure, statistic, row["value"])
    flag = row["flag"] or ""
    if flag == "as_expected":
        return f"Its {label} of {value} is within the expected range around {target_text(measure)}."
    if flag in FLAG_PLACE:
        return (f"Its {label} of {value} is {FLAG_PLACE[flag]} around {target_text(measure)} "
                f"({lower_first(flag_words(flag, measure['direction']))}).")
    return f"Its {label} is {value}; it was not assessed against the limits."


def lower_first(text: str) -> str:
    """"Observed / expected (O/E)" -> "observed / expected (O/E)": a label inside a sentence."""
    return text[:1].lower() + text[1:]


def funnel_statistic(ctx: ReportContext, measure: dict, level: str = "provider") -> str | None:
    """The statistic a measure's funnel plots: the curve's (an adjusted proportion is drawn as O/E)."""
    curve = ctx.funnel_curve(measure["id"], level)
    if curve.empty:
        return None
    stats = list(dict.fromkeys(curve["statistic"]))
    if measure["kind"] == "proportion" and measure.get("adjusted"):
        return "oe_ratio"
    return measure["headline"] if measure["headline"] in stats else stats[0]


def _funnel_axis(ctx: ReportContext, measure: dict, statistic: str) -> tuple[str, str, str]:
    """The x column of a funnel, its axis label and its words in the alt text."""
    if statistic in RATIO_STATISTICS:
        if measure["kind"] == "survival":
            return "expected", "Expected deaths over follow-up (log scale)", "expected deaths"
        if measure["kind"] == "ratio":
            what = f"expected {measure.get('value_unit') or 'total'}"
            return "expected", f"{what.capitalize()} (log scale)", what
        return "expected", "Expected count (log scale)", "expected"
    return "denominator", f"{ctx.wording['activity'].capitalize()} (log scale)", ctx.wording["activity"]


def funnel_chart(ctx: ReportContext, measure_id: str, level: str = "provider",
                 highlight: str | set[str] | None = None) -> Chart | None:
    """The funnel plot of a measure across ``level`` units, with its 95% and 99.8% limits around the
    target (the national value, or the fixed standard as "standard 90%").

    ``highlight`` is a unit code (drawn as a labelled diamond) or a set of codes (e.g. a provider's
    consultants); by default the report's provider at provider level. Units without a value (suppressed in
    public) are not plotted. ``None`` when the measure has no funnel at that level.
    """
    measure = ctx.measure(measure_id)
    statistic = funnel_statistic(ctx, measure, level)
    if statistic is None:
        return None
    curve = ctx.funnel_curve(measure_id, level)
    if statistic in set(curve["statistic"]):
        curve = curve[curve["statistic"] == statistic]
    units = ctx.measure_table(measure_id, level, statistic)
    units = units[units["value"].notna() & (units["unit_id"] != LOW_VOLUME_ID)]  # a pool is no unit to place
    x, xlabel, x_words = _funnel_axis(ctx, measure, statistic)
    percent = is_percent(statistic)
    target = float(curve["target"].iat[0]) if len(curve) else float(units["target"].iat[0])
    if statistic in RATIO_STATISTICS:
        target_label, ylabel = "O/E = 1 (as expected)", "Observed / expected ratio"
    elif measure.get("target_kind") == "standard":
        target_label, ylabel = f"standard {value_text(measure, statistic, target)}", measure["label"]
    else:
        target_label, ylabel = "national", measure["label"]
    unit = measure.get("value_unit") or ""
    if unit and statistic in ("mean", "median") and unit not in ylabel.lower():
        ylabel = f"{ylabel} ({unit})"
    if highlight is None and level == "provider" and ctx.provider:
        highlight = ctx.provider
    one = highlight if isinstance(highlight, str) else None
    label = (ctx.unit_names.get(one, one) if one else
             f"this {ctx.wording['provider']}'s {level}s" if highlight else None)
    return chart(figures.funnel_plot(
        units, curve, target=target, x=x, y="value", xlabel=xlabel,
        ylabel=f"{ylabel} (%)" if percent else ylabel, title=f"{measure['label']}: {_plural(ctx, level)}",
        percent=percent, highlight=one, highlight_set=None if one or not highlight else set(highlight),
        highlight_label=label, target_label=target_label, x_words=x_words))


def _plural(ctx: ReportContext, level: str) -> str:
    return ctx.wording["providers"] if level == "provider" else f"{level}s"


def hidden_units(ctx: ReportContext, measure_id: str, level: str = "provider") -> int:
    """How many units of a level have no value to plot (suppressed or below the minimum volume in public, or no
    eligible records)."""
    measure = ctx.measure(measure_id)
    statistic = funnel_statistic(ctx, measure, level) or measure["headline"]
    t = ctx.measure_table(measure_id, level, statistic)
    return int(t.loc[t["unit_id"] != LOW_VOLUME_ID, "value"].isna().sum())


def no_eligible_records(rows: pd.DataFrame) -> bool:
    """Whether a unit's rows of a measure say it had no eligible records: every denominator is 0.

    A blank denominator is a suppressed count (1 to the threshold, or hidden so others cannot be worked
    out) in a public report, not a zero, so a unit with some is not said to have had none."""
    return bool((rows["denominator"] == 0).all())
