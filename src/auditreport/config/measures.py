"""The quality measures an audit publishes: the ``measures:`` section of an audit definition.

Each measure is one of four kinds (METHODS.md section 1, "Measures"):

- ``proportion``: a 0/1 event per eligible record (a column, an expression such as ``los > 14``, or the
  built-in ``death_within_days``), optionally risk-adjusted by logistic regression;
- ``mean``: a continuous value per record (minutes to surgery), mean and median with intervals;
- ``ratio``: a continuous value judged as observed / expected, E from a log-link GLM (Poisson or gamma), as
  SHMI does for deaths and FunnelPlotR for length of stay;
- ``survival``: time to death from dates or time-and-event columns (Kaplan-Meier, log-rank, Cox O/E).

Every problem is reported with the file, the measure's id and the key (``measures[2] (los).risk_model.family``).
The older single-outcome form (``outcome:``, ``risk_model:``, ``survival:``) is read as two measures,
``mortality`` and ``survival``, by :func:`legacy_measures`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditreport.config.expressions import ExpressionError, parse_expression
from auditreport.config.yaml_reader import Reader
from auditreport.rules.disclosure import POLICIES

MEASURE_KINDS = ("proportion", "mean", "ratio", "survival")
DIRECTIONS = ("lower_is_better", "higher_is_better")
MEASURE_TYPES = ("outcome", "process")
LEVELS = ("provider", "consultant")
OVERDISPERSION_METHODS = ("none", "multiplicative", "additive", "shmi")
CI_TRANSFORMS = ("log", "log-log", "plain")
#: Risk model family each kind may use; the first is the default.
FAMILIES = {"proportion": ("binomial",), "ratio": ("poisson", "gamma"), "survival": ("cox",)}

#: The statistic that carries a measure's status (or, with none, leads its row): see :attr:`Measure.headline`.
_KEYS_COMMON = {"id", "label", "description", "kind", "type", "direction", "levels", "published",
                "publication_policy"}
_KEYS_BY_KIND = {
    "proportion": {"event", "death_within_days", "eligible", "target", "overdispersion", "risk_model", "monitoring"},
    "mean": {"value", "value_unit", "eligible", "target", "overdispersion"},
    "ratio": {"value", "value_unit", "eligible", "overdispersion", "risk_model"},
    "survival": {"horizons", "ci_transform", "risk_model", "overdispersion"},
}


@dataclass(frozen=True)
class MeasureRiskModel:
    """How a measure is adjusted for case mix: a model fitted nationally, or published coefficients.

    ``family`` is ``binomial`` (logistic, proportions), ``poisson`` or ``gamma`` (log link, ratios) or ``cox``
    (survival). ``coefficients`` and ``recalibrate`` apply to ``method: fixed`` only.
    """

    method: str
    covariates: tuple[str, ...]
    family: str
    coefficients: dict[str, float] = field(default_factory=dict)
    recalibrate: str | None = None


@dataclass(frozen=True)
class Measure:
    """One quality measure of an audit, as declared (see the module docstring and the README)."""

    id: str
    label: str
    description: str
    kind: str
    type: str
    direction: str
    event: str | None = None
    death_within_days: int | None = None
    value: str | None = None
    value_unit: str = ""
    eligible: str | None = None
    target: float | None = None
    levels: tuple[str, ...] = ("provider",)
    overdispersion: str = "none"
    risk_model: MeasureRiskModel | None = None
    monitoring: bool = False
    published: bool = True
    horizons: tuple[int, ...] = ()
    ci_transform: str = "log-log"
    publication_policy: str | None = None  # overrides publication.policy for this measure (None: the audit's)

    @property
    def adjusted(self) -> bool:
        """Whether the measure is risk-adjusted (a model predicts each record's expected outcome)."""
        return self.risk_model is not None

    @property
    def carries_status(self) -> bool:
        """Whether units are flagged on this measure: risk-adjusted, or a process measure (METHODS section 4).

        An unadjusted outcome is context only: without allowing for case mix, a high rate is not evidence
        of poor care, so it is never called an outlier. A survival measure is flagged on its Cox O/E.
        """
        if self.kind == "survival":
            return self.adjusted
        return self.adjusted or self.type == "process"

    @property
    def statistics(self) -> tuple[str, ...]:
        """The statistics the national stage gives each unit, headline first where it has one."""
        if self.kind == "proportion":
            return ("adjusted_rate", "oe_ratio", "rate") if self.adjusted else ("rate",)
        if self.kind == "mean":
            return ("mean", "median")
        if self.kind == "ratio":
            return ("oe_ratio", "mean", "median")
        surv = tuple(f"survival_{h}d" for h in self.horizons)
        return (("cox_oe_ratio",) + surv) if self.adjusted else surv

    @property
    def headline(self) -> str:
        """The statistic that carries the status, or leads the at-a-glance row when there is no status.

        An adjusted proportion's risk-adjusted rate (flagged as its O/E is), an unadjusted proportion's rate,
        a mean's mean, a ratio's O/E, a survival measure's Cox O/E (or its survival at the last horizon).
        """
        if self.kind == "survival" and not self.adjusted:
            return f"survival_{self.horizons[-1]}d"
        return self.statistics[0]

    @property
    def target_kind(self) -> str:
        """``"standard"`` when judged against a fixed value, else ``"national"`` (the national value or O/E 1)."""
        return "standard" if self.target is not None else "national"


@dataclass(frozen=True)
class MeasureContext:
    """What a measure's declaration is checked against: the audit's columns, risk factors and defaults."""

    factor_names: tuple[str, ...]
    has_dates: bool
    has_times: bool
    has_consultants: bool
    overdispersion: str


def parse_measures(r: Reader, items: Any, ctx: MeasureContext) -> tuple[Measure, ...]:
    """The ``measures:`` list, each entry checked; raises ``ConfigError`` naming the measure and the key."""
    if not isinstance(items, list) or not items:
        raise r.fail("measures", "must be a list of at least one measure (see the README, 'Measures')")
    measures: list[Measure] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise r.fail(f"measures[{i}]", f"must be a mapping, got {item!r}")
        measure = _measure(r, item, i, ctx)
        if measure.id in seen:
            raise r.fail(f"measures[{i}].id", f"{measure.id!r} is used twice (also measures[{seen[measure.id]}]); "
                                              "each measure needs its own id")
        seen[measure.id] = i
        measures.append(measure)
    return tuple(measures)


def _measure(r: Reader, item: dict, i: int, ctx: MeasureContext) -> Measure:
    where = f"measures[{i}]"
    mid = r.get(item, "id", where, str)
    if not mid.replace("_", "").isalnum() or not mid[0].isalpha():
        raise r.fail(f"{where}.id", f"must start with a letter and hold letters, digits or '_' (it names "
                                    f"columns and files), got {mid!r}")
    where = f"measures[{i}] ({mid})"
    kind = r.get(item, "kind", where, str)
    if kind not in MEASURE_KINDS:
        raise r.fail(f"{where}.kind", f"must be one of {', '.join(MEASURE_KINDS)}, got {kind!r}")
    if kind == "mean" and "risk_model" in item:
        raise r.fail(f"{where}.risk_model", "a mean is not risk-adjusted; declare kind: ratio to judge the value "
                                            "as observed / expected from a log-link model")
    allowed = _KEYS_COMMON | _KEYS_BY_KIND[kind]
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise r.fail(f"{where}.{unknown[0]}", f"is not a key of a {kind} measure (allowed: {', '.join(sorted(allowed))})")
    mtype = r.get(item, "type", where, str, required=False, default="outcome")
    if mtype not in MEASURE_TYPES:
        raise r.fail(f"{where}.type", f"must be outcome or process, got {mtype!r}")
    direction = r.get(item, "direction", where, str, required=mtype == "process" and kind != "survival",
                      default="lower_is_better")
    if direction not in DIRECTIONS:
        raise r.fail(f"{where}.direction", f"must be lower_is_better or higher_is_better, got {direction!r}")
    risk = _risk_model(r, item, where, kind, ctx)
    values: dict[str, Any] = {
        "id": mid, "label": r.get(item, "label", where, str),
        "description": r.get(item, "description", where, str, required=False, default=""),
        "kind": kind, "type": mtype, "direction": direction, "risk_model": risk,
        "levels": _levels(r, item, where, ctx),
        "published": r.get(item, "published", where, bool, required=False, default=True),
        "publication_policy": _publication_policy(r, item, where),
    }
    if kind in ("proportion", "mean", "ratio"):
        values["eligible"] = _expression(r, item, "eligible", where, required=False)
        values["overdispersion"] = _overdispersion(r, item, where, "multiplicative" if kind == "ratio"
                                                   and ctx.overdispersion == "none" else ctx.overdispersion)
    if kind == "proportion":
        values.update(_proportion(r, item, where, ctx, risk))
    elif kind in ("mean", "ratio"):
        values["value"] = _expression(r, item, "value", where, required=True)
        values["value_unit"] = r.get(item, "value_unit", where, str, required=False, default="")
        if kind == "mean":
            values["target"] = _target(r, item, where, kind, risk)
        elif risk is None:
            raise r.fail(f"{where}.risk_model", "is required for a ratio measure (observed / expected needs a "
                                                "model of the expected value); use kind: mean for an unadjusted "
                                                "average")
    else:
        values.update(_survival(r, item, where, ctx))
        values["overdispersion"] = _overdispersion(r, item, where, ctx.overdispersion)
    return Measure(**values)


def _proportion(r: Reader, item: dict, where: str, ctx: MeasureContext,
                risk: MeasureRiskModel | None) -> dict[str, Any]:
    has_event, has_death = item.get("event") is not None, item.get("death_within_days") is not None
    if has_event == has_death:
        raise r.fail(f"{where}.event", "give either event (a 0/1 column or an expression such as 'los > 14') or "
                                       "death_within_days (the built-in: death within N days of the procedure)")
    out: dict[str, Any] = {"target": _target(r, item, where, "proportion", risk)}
    if has_death:
        days = r.get(item, "death_within_days", where, int)
        if days <= 0:
            raise r.fail(f"{where}.death_within_days", f"must be a positive whole number of days, got {days}")
        if not (ctx.has_dates or ctx.has_times):
            raise r.fail(f"{where}.death_within_days", "needs columns.procedure_date, death_date and followup_end, "
                                                       "or columns.time and event; with a 0/1 death column use "
                                                       "event: <column> instead")
        out["death_within_days"] = days
    else:
        out["event"] = _expression(r, item, "event", where, required=True)
    monitoring = r.get(item, "monitoring", where, bool, required=False)
    if monitoring and (risk is None or not ctx.has_dates):
        raise r.fail(f"{where}.monitoring", "RA-CUSUM and VLAD need a risk model (risk_model) and dates to order "
                                            "records by (columns.procedure_date)")
    out["monitoring"] = bool(monitoring) if monitoring is not None else (risk is not None and ctx.has_dates)
    return out


def _survival(r: Reader, item: dict, where: str, ctx: MeasureContext) -> dict[str, Any]:
    if not (ctx.has_dates or ctx.has_times):
        raise r.fail(f"{where}.kind", "a survival measure needs follow-up: columns.procedure_date, death_date and "
                                      "followup_end, or columns.time and event")
    horizons = r.get(item, "horizons", where, list, required=False, default=[365])
    for j, h in enumerate(horizons):
        if isinstance(h, bool) or not isinstance(h, int) or h <= 0:
            raise r.fail(f"{where}.horizons[{j}]", f"must be a positive whole number of days, got {h!r}")
    if not horizons:
        raise r.fail(f"{where}.horizons", "must list at least one horizon in days")
    transform = r.get(item, "ci_transform", where, str, required=False, default="log-log")
    if transform not in CI_TRANSFORMS:
        raise r.fail(f"{where}.ci_transform", f"must be log, log-log or plain, got {transform!r}")
    return {"horizons": tuple(sorted(set(horizons))), "ci_transform": transform}


def _target(r: Reader, item: dict, where: str, kind: str, risk: MeasureRiskModel | None) -> float | None:
    target = r.get(item, "target", where, (int, float), required=False)
    if target is None:
        return None
    if risk is not None:
        raise r.fail(f"{where}.target", "a fixed standard applies to an unadjusted measure; a risk-adjusted one "
                                        "is judged against what its case mix predicts (O/E 1)")
    if kind == "proportion" and not 0 < target < 1:
        raise r.fail(f"{where}.target", f"a proportion's standard must lie strictly between 0 and 1 (0.9 for 90%), "
                                        f"got {target!r}")
    return float(target)


def _levels(r: Reader, item: dict, where: str, ctx: MeasureContext) -> tuple[str, ...]:
    levels = item.get("levels")
    if levels is None:
        return ("provider", "consultant") if ctx.has_consultants else ("provider",)
    if not isinstance(levels, list) or not levels:
        raise r.fail(f"{where}.levels", f"must be a list drawn from {', '.join(LEVELS)}, got {levels!r}")
    for j, level in enumerate(levels):
        if level not in LEVELS:
            raise r.fail(f"{where}.levels[{j}]", f"must be one of {', '.join(LEVELS)}, got {level!r}")
        if level == "consultant" and not ctx.has_consultants:
            raise r.fail(f"{where}.levels[{j}]", "consultant results need columns.consultant_code")
    return tuple(level for level in LEVELS if level in levels)


def _publication_policy(r: Reader, item: dict, where: str) -> str | None:
    """A measure's own publication policy (``rules.disclosure.POLICIES``), or None to follow the audit's."""
    policy = r.get(item, "publication_policy", where, str, required=False)
    if policy is not None and policy not in POLICIES:
        raise r.fail(f"{where}.publication_policy", f"must be one of {', '.join(POLICIES)}, got {policy!r} "
                                                    "(leave it out to follow publication.policy)")
    return policy


def _overdispersion(r: Reader, item: dict, where: str, default: str) -> str:
    method = r.get(item, "overdispersion", where, str, required=False, default=default)
    if method not in OVERDISPERSION_METHODS:
        raise r.fail(f"{where}.overdispersion", f"must be one of {', '.join(OVERDISPERSION_METHODS)}, got {method!r}")
    return method


def _expression(r: Reader, item: dict, key: str, where: str, required: bool) -> str | None:
    text = r.get(item, key, where, (str, int, float) if key != "eligible" else str, required=required)
    if text is None:
        return None
    try:
        return parse_expression(str(text)).text
    except ExpressionError as exc:
        raise r.fail(f"{where}.{key}", str(exc)) from None


def _risk_model(r: Reader, item: dict, where: str, kind: str, ctx: MeasureContext) -> MeasureRiskModel | None:
    raw = item.get("risk_model")
    if raw is None:
        return None
    return parse_risk_model(r, raw, f"{where}.risk_model", kind, ctx.factor_names)


def parse_risk_model(r: Reader, raw: Any, where: str, kind: str, factor_names: tuple[str, ...]) -> MeasureRiskModel:
    """A ``risk_model:`` mapping for a measure of ``kind``; covariates must be declared risk factors."""
    if not isinstance(raw, dict):
        raise r.fail(where, f"must be a mapping, got {raw!r}")
    allowed = {"method", "covariates", "family", "coefficients", "recalibrate"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise r.fail(f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
    method = r.get(raw, "method", where, str, required=False, default="fit")
    if method not in ("fit", "fixed") or (method == "fixed" and kind == "survival"):
        allowed_methods = "'fit'" if kind == "survival" else "'fit' or 'fixed'"
        raise r.fail(f"{where}.method", f"must be {allowed_methods}, got {method!r}")
    families = FAMILIES[kind]
    family = r.get(raw, "family", where, str, required=False, default=families[0])
    if family not in families:
        raise r.fail(f"{where}.family", f"a {kind} measure's model family must be {' or '.join(families)}, "
                                        f"got {family!r}")
    covariates = r.get(raw, "covariates", where, list, required=False, default=list(factor_names))
    for j, c in enumerate(covariates):
        if c not in factor_names:
            raise r.fail(f"{where}.covariates[{j}]", f"{c!r} is not a declared risk factor (declared: "
                                                     f"{', '.join(factor_names) or 'none'})")
    if len(set(covariates)) != len(covariates):
        raise r.fail(f"{where}.covariates", "names a risk factor twice")
    coefficients = r.get(raw, "coefficients", where, dict, required=method == "fixed", default={})
    for term, value in coefficients.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise r.fail(f"{where}.coefficients.{term}", f"must be a number, got {value!r}")
    recalibrate = r.get(raw, "recalibrate", where, str, required=False)
    if recalibrate not in (None, "intercept", "intercept_slope"):
        raise r.fail(f"{where}.recalibrate", f"must be 'intercept' or 'intercept_slope', got {recalibrate!r}")
    if kind == "survival" and not covariates:
        raise r.fail(f"{where}.covariates", "a Cox model needs at least one risk factor (leave risk_model out "
                                            "for survival without Cox O/E)")
    return MeasureRiskModel(method=method, covariates=tuple(covariates), family=family,
                            coefficients={k: float(v) for k, v in coefficients.items()}, recalibrate=recalibrate)


def legacy_measures(r: Reader, raw: dict, ctx: MeasureContext) -> tuple[Measure, ...]:
    """The older single-outcome definition (``outcome:``, ``risk_model:``, ``survival:``) as measures.

    ``outcome: {death_within_days: N}`` becomes ``mortality`` (a risk-adjusted proportion with RA-CUSUM
    monitoring where dates allow) and the survival section a ``survival`` measure with Cox O/E on the same
    covariates, exactly what that form always computed. With no risk factors declared, both are unadjusted.
    """
    outcome = r.mapping(raw, "outcome", "", allowed={"death_within_days", "label"})
    days = r.get(outcome, "death_within_days", "outcome", int)
    if days <= 0:
        raise r.fail("outcome.death_within_days", f"must be positive, got {days}")
    label = r.get(outcome, "label", "outcome", str, required=False, default=f"{days}-day mortality")
    model_raw = raw.get("risk_model") or {}
    risk = None
    if ctx.factor_names or model_raw:
        risk = parse_risk_model(r, dict(model_raw), "risk_model", "proportion", ctx.factor_names)
        if not risk.covariates and risk.method == "fit":
            risk = None
    surv = r.mapping(raw, "survival", "", required=False, allowed={"horizons", "ci_transform"})
    horizons = r.get(surv, "horizons", "survival", list, required=False, default=[days, 365])
    transform = r.get(surv, "ci_transform", "survival", str, required=False, default="log-log")
    levels = ("provider", "consultant") if ctx.has_consultants else ("provider",)
    mortality = Measure(
        id="mortality", label=label, description=f"Deaths within {days} days of the procedure", kind="proportion",
        type="outcome", direction="lower_is_better", death_within_days=days, levels=levels,
        overdispersion=ctx.overdispersion, risk_model=risk, monitoring=risk is not None and ctx.has_dates)
    survival_item = {"horizons": horizons, "ci_transform": transform}
    checked = _survival(r, survival_item, "survival", ctx)
    cox = (MeasureRiskModel(method="fit", covariates=risk.covariates, family="cox")
           if risk is not None and risk.covariates else None)
    survival = Measure(id="survival", label="Survival", description="Survival after the procedure",
                       kind="survival", type="outcome", direction="lower_is_better", levels=("provider",),
                       overdispersion=ctx.overdispersion, risk_model=cox, **checked)
    return mortality, survival
