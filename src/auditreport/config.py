"""Audit definitions: the YAML files in ``params/``, loaded and checked.

An audit definition says what data to read, how its columns map onto the
fields the pipeline knows, which outcome to measure, how to adjust for risk,
and what may be published. Every problem is reported with the file and the
key at fault, so a statistician editing YAML is told exactly what to fix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auditreport.errors import ConfigError
from auditreport.stats.riskmodel import RiskFactor, RiskFactorError

#: Fields of the normalised patient table and whether an audit must map them.
STANDARD_COLUMNS: dict[str, bool] = {
    "patient_id": True,
    "provider_code": True,
    "provider_name": False,
    "consultant_code": False,
    "procedure_date": False,
    "death_date": False,
    "followup_end": False,
    "time": False,  # days from procedure to death or censoring, when dates are not given
    "event": False,  # 1 = died, 0 = censored, when dates are not given
}

OVERDISPERSION_METHODS = ("none", "multiplicative", "additive", "shmi")


@dataclass(frozen=True)
class RiskFactorColumn:
    """Where a declared risk factor's values are read from, and the range a numeric value must lie in."""

    column: str
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class RiskModelSpec:
    method: str  # "fit" | "fixed"
    covariates: tuple[str, ...]
    coefficients: dict[str, float] = field(default_factory=dict)
    recalibrate: str | None = None  # None | "intercept" | "intercept_slope"


@dataclass(frozen=True)
class AuditConfig:
    """A validated audit definition."""

    path: Path
    id: str
    name: str
    period_label: str
    period_start: dt.date | None
    period_end: dt.date | None
    source: Path
    providers_file: Path | None
    extract_date: dt.date | None
    columns: dict[str, str]
    risk_factors: tuple[RiskFactor, ...]  # as the risk model uses them, in declaration order
    risk_factor_columns: dict[str, RiskFactorColumn]  # by factor name: the extract's column and valid range
    outcome_days: int
    outcome_label: str
    risk_model: RiskModelSpec
    horizons: tuple[int, ...]
    ci_transform: str
    overdispersion: str
    suppression_threshold: int
    publish_consultants: bool
    contact: str
    raw: dict[str, Any]
    cusum_h: float | None = None  # RA-CUSUM control limit fixed by configuration, or None to simulate
    cusum_arl: int = 2000  # in-control average run length (patients) that h is simulated for

    @property
    def factor_names(self) -> list[str]:
        return [f.name for f in self.risk_factors]

    def fingerprint(self) -> str:
        """SHA-256 of the definition's content (not its location)."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["source"] = str(self.source)
        d["providers_file"] = str(self.providers_file) if self.providers_file else None
        return json.loads(json.dumps(d, default=str))


_TOP_KEYS = {
    "audit": True,
    "data": True,
    "columns": True,
    "risk_factors": False,
    "outcome": True,
    "risk_model": False,
    "survival": False,
    "limits": False,
    "publication": False,
    "monitoring": False,
}


class _Reader:
    """Typed access to a nested mapping that names the file and key on error."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: key '{key}': {message}")

    def mapping(self, parent: dict, key: str, where: str, required: bool = True,
                allowed: set[str] | None = None) -> dict:
        full = f"{where}.{key}" if where else key
        if key not in parent or parent[key] is None:
            if required:
                raise self.fail(full, "is required but missing")
            return {}
        value = parent[key]
        if not isinstance(value, dict):
            raise self.fail(full, f"must be a mapping, got {type(value).__name__}")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.fail(f"{full}.{unknown[0]}",
                                f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def get(self, parent: dict, key: str, where: str, types: type | tuple[type, ...],
            required: bool = True, default: Any = None) -> Any:
        full = f"{where}.{key}" if where else key
        if key not in parent or parent[key] is None:
            if required:
                raise self.fail(full, "is required but missing")
            return default
        value = parent[key]
        # YAML booleans are ints in Python; never accept one where a number is wanted.
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(full, f"must be {_type_names(types)}, got a boolean")
        if not isinstance(value, types):
            raise self.fail(full, f"must be {_type_names(types)}, got {type(value).__name__} {value!r}")
        return value

    def date(self, parent: dict, key: str, where: str, required: bool = True) -> dt.date | None:
        full = f"{where}.{key}" if where else key
        value = parent.get(key)
        if value is None:
            if required:
                raise self.fail(full, "is required but missing")
            return None
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.fail(full, f"must be a date YYYY-MM-DD, got {value!r}") from None


def _type_names(types: type | tuple[type, ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def load_config(path: str | Path) -> AuditConfig:
    """Read and validate an audit definition.

    Raises :class:`ConfigError` naming the file and the offending key.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: audit definition not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of sections, got {type(raw).__name__}")
    r = _Reader(path)
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise r.fail(unknown[0], f"unknown section (allowed: {', '.join(_TOP_KEYS)})")
    for key, required in _TOP_KEYS.items():
        if required and key not in raw:
            raise r.fail(key, "is required but missing")

    audit = r.mapping(raw, "audit", "", allowed={"id", "name", "period", "contact"})
    audit_id = r.get(audit, "id", "audit", str)
    if not audit_id.replace("-", "").replace("_", "").isalnum():
        raise r.fail("audit.id", f"must be letters, digits, '-' or '_' (it names folders), got {audit_id!r}")
    period = r.mapping(audit, "period", "audit", allowed={"label", "start", "end"})
    period_label = str(r.get(period, "label", "audit.period", (str, int)))
    if not period_label.replace("-", "").replace("_", "").isalnum():
        raise r.fail("audit.period.label", f"must be letters, digits, '-' or '_', got {period_label!r}")
    start = r.date(period, "start", "audit.period", required=False)
    end = r.date(period, "end", "audit.period", required=False)
    if start and end and end < start:
        raise r.fail("audit.period.end", f"{end} is before audit.period.start {start}")

    data = r.mapping(raw, "data", "", allowed={"source", "providers", "extract_date"})
    source = _resolve(path, r.get(data, "source", "data", str))
    providers_file = data.get("providers")
    providers_path = _resolve(path, r.get(data, "providers", "data", str)) if providers_file else None
    extract_date = r.date(data, "extract_date", "data", required=False)

    columns_raw = r.mapping(raw, "columns", "", allowed=set(STANDARD_COLUMNS))
    columns: dict[str, str] = {}
    for key, required in STANDARD_COLUMNS.items():
        value = r.get(columns_raw, key, "columns", str, required=required)
        if value is not None:
            columns[key] = value
    has_dates = "procedure_date" in columns
    has_times = "time" in columns and "event" in columns
    if not has_dates and not has_times:
        raise r.fail("columns", "map either procedure_date (with death_date and followup_end) "
                                "or time and event")
    if has_dates:
        for key in ("death_date", "followup_end"):
            if key not in columns:
                raise r.fail(f"columns.{key}", "is required when columns.procedure_date is given")

    factors, factor_columns = _risk_factors(r, raw)
    names = [f.name for f in factors]

    outcome = r.mapping(raw, "outcome", "", allowed={"death_within_days", "label"})
    outcome_days = r.get(outcome, "death_within_days", "outcome", int)
    if outcome_days <= 0:
        raise r.fail("outcome.death_within_days", f"must be positive, got {outcome_days}")
    outcome_label = r.get(outcome, "label", "outcome", str, required=False,
                          default=f"{outcome_days}-day mortality")

    model_raw = r.mapping(raw, "risk_model", "", required=False,
                          allowed={"method", "covariates", "coefficients", "recalibrate"})
    method = r.get(model_raw, "method", "risk_model", str, required=False, default="fit")
    if method not in ("fit", "fixed"):
        raise r.fail("risk_model.method", f"must be 'fit' or 'fixed', got {method!r}")
    covariates = r.get(model_raw, "covariates", "risk_model", list, required=False, default=names)
    for i, c in enumerate(covariates):
        if c not in names:
            raise r.fail(f"risk_model.covariates[{i}]", f"{c!r} is not a declared risk factor "
                                                        f"(declared: {', '.join(names) or 'none'})")
    coefficients = r.get(model_raw, "coefficients", "risk_model", dict, required=method == "fixed",
                         default={})
    for term, value in coefficients.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise r.fail(f"risk_model.coefficients.{term}", f"must be a number, got {value!r}")
    recalibrate = r.get(model_raw, "recalibrate", "risk_model", str, required=False)
    if recalibrate not in (None, "intercept", "intercept_slope"):
        raise r.fail("risk_model.recalibrate", f"must be 'intercept' or 'intercept_slope', got {recalibrate!r}")
    risk_model = RiskModelSpec(method, tuple(covariates), {k: float(v) for k, v in coefficients.items()},
                               recalibrate)

    surv = r.mapping(raw, "survival", "", required=False, allowed={"horizons", "ci_transform"})
    horizons = r.get(surv, "horizons", "survival", list, required=False, default=[outcome_days, 365])
    for i, h in enumerate(horizons):
        if isinstance(h, bool) or not isinstance(h, int) or h <= 0:
            raise r.fail(f"survival.horizons[{i}]", f"must be a positive whole number of days, got {h!r}")
    ci_transform = r.get(surv, "ci_transform", "survival", str, required=False, default="log-log")
    if ci_transform not in ("log", "log-log", "plain"):
        raise r.fail("survival.ci_transform", f"must be log, log-log or plain, got {ci_transform!r}")

    limits = r.mapping(raw, "limits", "", required=False, allowed={"overdispersion"})
    overdispersion = r.get(limits, "overdispersion", "limits", str, required=False, default="none")
    if overdispersion not in OVERDISPERSION_METHODS:
        raise r.fail("limits.overdispersion",
                     f"must be one of {', '.join(OVERDISPERSION_METHODS)}, got {overdispersion!r}")

    pub = r.mapping(raw, "publication", "", required=False,
                    allowed={"suppression_threshold", "publish_consultants"})
    threshold = r.get(pub, "suppression_threshold", "publication", int, required=False, default=7)
    if threshold < 0:
        raise r.fail("publication.suppression_threshold", f"must be 0 or more, got {threshold}")
    publish_consultants = r.get(pub, "publish_consultants", "publication", bool, required=False,
                                default=False)

    cusum_h, cusum_arl = _monitoring(r, raw)

    return AuditConfig(
        path=path, id=audit_id, name=r.get(audit, "name", "audit", str), period_label=period_label,
        period_start=start, period_end=end, source=source, providers_file=providers_path,
        extract_date=extract_date, columns=columns, risk_factors=tuple(factors),
        risk_factor_columns=factor_columns,
        outcome_days=outcome_days, outcome_label=outcome_label, risk_model=risk_model,
        horizons=tuple(horizons), ci_transform=ci_transform, overdispersion=overdispersion,
        suppression_threshold=threshold, publish_consultants=publish_consultants,
        contact=r.get(audit, "contact", "audit", str, required=False, default=""), raw=raw,
        cusum_h=cusum_h, cusum_arl=cusum_arl,
    )


def _monitoring(r: _Reader, raw: dict) -> tuple[float | None, int]:
    """The RA-CUSUM control limit: ``monitoring.cusum_h`` fixed, or ``monitoring.cusum_arl`` to simulate for.

    METHODS.md section 7: h is either fixed in the configuration or chosen for a stated in-control average run
    length; giving both would leave it ambiguous which was used, so that is an error.
    """
    mon = r.mapping(raw, "monitoring", "", required=False, allowed={"cusum_h", "cusum_arl"})
    h = r.get(mon, "cusum_h", "monitoring", (int, float), required=False)
    arl = r.get(mon, "cusum_arl", "monitoring", int, required=False)
    if h is not None and arl is not None:
        raise r.fail("monitoring", "give cusum_h (a fixed control limit) or cusum_arl (simulate h for that "
                                   "in-control average run length), not both")
    if h is not None and not h > 0:
        raise r.fail("monitoring.cusum_h", f"must be a positive number, got {h!r}")
    if arl is not None and arl < 10:
        raise r.fail("monitoring.cusum_arl", f"must be a whole number of patients, at least 10, got {arl!r}")
    return (float(h) if h is not None else None), (int(arl) if arl is not None else 2000)


#: The YAML key of each field of :class:`RiskFactor` (where they differ), to name the key at fault.
_FACTOR_KEYS = {"kind": "type"}


def _risk_factors(r: _Reader, raw: dict) -> tuple[list[RiskFactor], dict[str, RiskFactorColumn]]:
    """The declared risk factors, checked by :class:`RiskFactor` itself, and where each one's values are read.

    This function checks only what the YAML adds: its shape and types, unique and unreserved names, the column
    and the range. The statistical rules (kinds, categories, reference level, missing-value rule) are
    :class:`RiskFactor`'s, and its error is reported with the file and the key (``risk_factors[2].categories``).
    """
    items = r.get(raw, "risk_factors", "", list, required=False, default=[])
    factors: list[RiskFactor] = []
    columns: dict[str, RiskFactorColumn] = {}
    allowed = {"name", "column", "type", "categories", "reference", "missing", "range"}
    for i, item in enumerate(items):
        where = f"risk_factors[{i}]"
        if not isinstance(item, dict):
            raise r.fail(where, f"must be a mapping, got {item!r}")
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise r.fail(f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        name = r.get(item, "name", where, str)
        if name in columns:
            raise r.fail(f"{where}.name", f"{name!r} is declared twice")
        if name in STANDARD_COLUMNS or name == "outcome":
            raise r.fail(f"{where}.name", f"{name!r} is reserved; choose another name")
        kind = r.get(item, "type", where, str)
        categories = r.get(item, "categories", where, list, required=kind == "categorical", default=[])
        # A categorical factor's reference defaults to its first category (RiskFactor.reference_level).
        reference = r.get(item, "reference", where, (str, int, float), required=False,
                          default=categories[0] if kind == "categorical" and categories else None)
        try:
            factor = RiskFactor(name=name, kind=kind, categories=tuple(categories), reference=reference,
                                missing=r.get(item, "missing", where, str, required=False, default="reference"))
        except RiskFactorError as exc:
            raise r.fail(f"{where}.{_FACTOR_KEYS.get(exc.field, exc.field)}", exc.reason) from None
        lo = hi = None
        rng = r.get(item, "range", where, list, required=False)
        if rng is not None:
            if kind != "numeric":
                raise r.fail(f"{where}.range", "applies to numeric factors only (a categorical factor's valid "
                                               "values are its categories)")
            if len(rng) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in rng):
                raise r.fail(f"{where}.range", f"must be [minimum, maximum], got {rng!r}")
            lo, hi = float(rng[0]), float(rng[1])
        factors.append(factor)
        columns[name] = RiskFactorColumn(column=r.get(item, "column", where, str, required=False, default=name),
                                         minimum=lo, maximum=hi)
    return factors, columns


def _resolve(config_path: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (config_path.parent / p).resolve()
