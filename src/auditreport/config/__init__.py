"""Audit definitions: the YAML files in ``params/``, loaded and checked.

An audit definition says what data to read, how its columns map onto the
fields the pipeline knows, which quality measures to publish and how each is
adjusted for risk (``measures:``, see :mod:`auditreport.config.measures`), the
words its reports use, and what may be published. Every problem is reported with the file and the
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

from auditreport.config.measures import (
    DIRECTIONS,
    LEVELS,
    MEASURE_KINDS,
    OVERDISPERSION_METHODS,
    Measure,
    MeasureContext,
    MeasureRiskModel,
    legacy_measures,
    parse_measures,
)
from auditreport.config.yaml_reader import Reader
from auditreport.errors import ConfigError
from auditreport.stats.riskmodel import RiskFactor, RiskFactorError

__all__ = ["AuditConfig", "DIRECTIONS", "LEVELS", "MEASURE_KINDS", "OVERDISPERSION_METHODS", "Measure",
           "MeasureRiskModel", "RiskFactorColumn", "RiskFactorWording", "STANDARD_COLUMNS", "Wording",
           "load_config"]

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



@dataclass(frozen=True)
class RiskFactorColumn:
    """Where a declared risk factor's values are read from, and the range a numeric value must lie in."""

    column: str
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class RiskFactorWording:
    """How reports name a risk factor and its levels (``label``, ``labels`` in the definition)."""

    label: str
    levels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Wording:
    """The audit's own words, so no report says "procedures" or "England" for an audit of admissions in Wales.

    ``activity`` names what one record is, in the plural ("admissions", "procedures", "operations",
    "patients"); ``provider``/``providers`` the kind of unit ("hospital", "trust"); ``population`` the
    country or network the national figure covers.
    """

    activity: str = "cases"
    activity_singular: str = "case"
    provider: str = "provider"
    providers: str = "providers"
    population: str = "National"

    @property
    def national_unit_name(self) -> str:
        """The name of the national row: "England (all providers)"."""
        return f"{self.population} (all {self.providers})"

    def to_dict(self) -> dict[str, str]:
        return {**asdict(self), "national_unit_name": self.national_unit_name}


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
    risk_factor_wording: dict[str, RiskFactorWording]  # by factor name: its label and level labels in reports
    measures: tuple[Measure, ...]  # in declaration order, ids unique
    wording: Wording
    overdispersion: str  # the audit's default (limits.overdispersion); each measure has its own
    suppression_threshold: int
    publish_consultants: bool
    contact: str
    raw: dict[str, Any]
    cusum_h: float | None = None  # RA-CUSUM control limit fixed by configuration, or None to simulate
    cusum_arl: int = 2000  # in-control average run length (patients) that h is simulated for
    provider_notebook: Path | None = None  # the audit's own provider notebook (None: the packaged default)
    national_notebook: Path | None = None  # the audit's own national notebook (None: the packaged default)
    consultants_file: Path | None = None  # named consultants (data.consultants; README, "Named consultants")
    statements_file: Path | None = None  # providers' statements, their right to respond (data.statements)
    validation_file: Path | None = None  # the date each provider signed off its data (data.validation)

    @property
    def factor_names(self) -> list[str]:
        return [f.name for f in self.risk_factors]

    def measure(self, measure_id: str) -> Measure:
        """The measure with this id (``KeyError`` naming the ids there are)."""
        for m in self.measures:
            if m.id == measure_id:
                return m
        raise KeyError(f"{self.path}: no measure {measure_id!r} (measures: {', '.join(m.id for m in self.measures)})")

    def factors_of(self, measure: Measure) -> list[RiskFactor]:
        """The declared risk factors a measure's model uses, in its ``covariates`` order (none if unadjusted)."""
        if measure.risk_model is None:
            return []
        by_name = {f.name: f for f in self.risk_factors}
        return [by_name[name] for name in measure.risk_model.covariates]

    def data_files(self) -> dict[str, Path]:
        """Every data file the definition names, by its ``data:`` key: the extract (``source``), then the
        optional ``providers``, ``consultants``, ``statements`` and ``validation`` files that are given.

        What the national stage reads, so what its outputs record (path and SHA-256) and what a rerun checks.
        """
        files = {"source": self.source, "providers": self.providers_file, "consultants": self.consultants_file,
                 "statements": self.statements_file, "validation": self.validation_file}
        return {key: path for key, path in files.items() if path is not None}

    def fingerprint(self) -> str:
        """SHA-256 of the definition's content (not its location)."""
        text = json.dumps(self.raw, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["source"] = str(self.source)
        d["providers_file"] = str(self.providers_file) if self.providers_file else None
        for key in ("provider_notebook", "national_notebook", "consultants_file", "statements_file",
                    "validation_file"):
            d[key] = str(d[key]) if d[key] else None
        return json.loads(json.dumps(d, default=str))


_TOP_KEYS = {
    "audit": True,
    "data": True,
    "columns": True,
    "wording": False,
    "risk_factors": False,
    "measures": False,
    "outcome": False,  # the older form of one mortality measure (see config.measures.legacy_measures)
    "risk_model": False,
    "survival": False,
    "limits": False,
    "publication": False,
    "monitoring": False,
    "notebooks": False,
}


#: The optional data files beside the extract and the providers file (``data:`` keys; each is read and checked
#: by ``auditreport.data.validation``): named consultants, providers' statements and validation dates.
_OPTIONAL_FILES = ("consultants", "statements", "validation")


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
    r = Reader(path)
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

    data = r.mapping(raw, "data", "", allowed={"source", "providers", "extract_date", *_OPTIONAL_FILES})
    source = _resolve(path, r.get(data, "source", "data", str))
    providers_file = data.get("providers")
    providers_path = _resolve(path, r.get(data, "providers", "data", str)) if providers_file else None
    extract_date = r.date(data, "extract_date", "data", required=False)
    optional_files = {f"{key}_file": _resolve(path, r.get(data, key, "data", str)) if data.get(key) else None
                      for key in _OPTIONAL_FILES}

    columns_raw = r.mapping(raw, "columns", "", allowed=set(STANDARD_COLUMNS))
    columns: dict[str, str] = {}
    for key, required in STANDARD_COLUMNS.items():
        value = r.get(columns_raw, key, "columns", str, required=required)
        if value is not None:
            columns[key] = value
    has_dates = "procedure_date" in columns
    has_times = "time" in columns and "event" in columns
    if ("time" in columns) != ("event" in columns):
        raise r.fail("columns.time" if "event" in columns else "columns.event",
                     "time and event are mapped together (days of follow-up, and 1 = died, 0 = censored)")
    if has_dates:
        for key in ("death_date", "followup_end"):
            if key not in columns:
                raise r.fail(f"columns.{key}", "is required when columns.procedure_date is given")

    if optional_files["consultants_file"] is not None and "consultant_code" not in columns:
        raise r.fail("data.consultants", "names the consultants of the extract's consultant codes: map "
                                         "columns.consultant_code too (or leave data.consultants out)")

    factors, factor_columns, factor_wording = _risk_factors(r, raw)

    limits = r.mapping(raw, "limits", "", required=False, allowed={"overdispersion"})
    overdispersion = r.get(limits, "overdispersion", "limits", str, required=False, default="none")
    if overdispersion not in OVERDISPERSION_METHODS:
        raise r.fail("limits.overdispersion",
                     f"must be one of {', '.join(OVERDISPERSION_METHODS)}, got {overdispersion!r}")

    measure_ctx = MeasureContext(factor_names=tuple(f.name for f in factors), has_dates=has_dates,
                                 has_times=has_times, has_consultants="consultant_code" in columns,
                                 overdispersion=overdispersion)
    measures = _measures(r, raw, measure_ctx)

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
        risk_factor_columns=factor_columns, risk_factor_wording=factor_wording, measures=measures,
        wording=_wording(r, raw), overdispersion=overdispersion,
        suppression_threshold=threshold, publish_consultants=publish_consultants,
        contact=r.get(audit, "contact", "audit", str, required=False, default=""), raw=raw,
        cusum_h=cusum_h, cusum_arl=cusum_arl, **_notebooks(r, raw, path), **optional_files,
    )


def _measures(r: Reader, raw: dict, ctx: MeasureContext) -> tuple[Measure, ...]:
    """``measures:``, or the older ``outcome:`` form read as measures; one of the two, not both."""
    if "measures" in raw and "outcome" in raw:
        raise r.fail("outcome", "give measures: (outcome: is the older form of a single mortality measure; "
                                "declare it as a measure with death_within_days instead)")
    if "measures" in raw:
        for key in ("risk_model", "survival"):
            if key in raw:
                raise r.fail(key, f"belongs to the older outcome: form; with measures:, give each measure its "
                                  f"own {key.replace('survival', 'horizons and ci_transform')}")
        return parse_measures(r, raw["measures"], ctx)
    if "outcome" in raw:
        return legacy_measures(r, raw, ctx)
    raise r.fail("measures", "is required: the quality measures the audit publishes (see the README, 'Measures')")


def _wording(r: Reader, raw: dict) -> Wording:
    """The ``wording:`` section: the audit's names for a record, a provider and its population."""
    fields_ = Wording.__dataclass_fields__
    words = r.mapping(raw, "wording", "", required=False, allowed=set(fields_))
    values = {key: r.get(words, key, "wording", str, required=False, default=fields_[key].default)
              for key in fields_}
    for key, value in values.items():
        if not value.strip():
            raise r.fail(f"wording.{key}", "must not be blank")
    if "activity" in words and "activity_singular" not in words:
        values["activity_singular"] = values["activity"].removesuffix("s")
    if "provider" in words and "providers" not in words:
        values["providers"] = values["provider"] + "s"
    return Wording(**values)


def _notebooks(r: Reader, raw: dict, path: Path) -> dict[str, Path | None]:
    """The audit's own provider and national notebooks (``notebooks:``), resolved beside the definition."""
    nbs = r.mapping(raw, "notebooks", "", required=False, allowed={"provider", "national"})
    out: dict[str, Path | None] = {}
    for key in ("provider", "national"):
        value = r.get(nbs, key, "notebooks", str, required=False)
        resolved = _resolve(path, value) if value else None
        if resolved is not None and not resolved.is_file():
            raise r.fail(f"notebooks.{key}", f"{resolved} not found (auditreport notebooks {path.name} copies the "
                                             "default notebooks to start from)")
        out[f"{key}_notebook"] = resolved
    return out


def _monitoring(r: Reader, raw: dict) -> tuple[float | None, int]:
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


def _risk_factors(r: Reader, raw: dict) -> tuple[list[RiskFactor], dict[str, RiskFactorColumn],
                                                 dict[str, RiskFactorWording]]:
    """The declared risk factors, checked by :class:`RiskFactor` itself, and where each one's values are read.

    This function checks only what the YAML adds: its shape and types, unique and unreserved names, the column
    and the range. The statistical rules (kinds, categories, reference level, missing-value rule) are
    :class:`RiskFactor`'s, and its error is reported with the file and the key (``risk_factors[2].categories``).
    """
    items = r.get(raw, "risk_factors", "", list, required=False, default=[])
    factors: list[RiskFactor] = []
    columns: dict[str, RiskFactorColumn] = {}
    wording: dict[str, RiskFactorWording] = {}
    allowed = {"name", "column", "type", "categories", "reference", "missing", "range", "label", "labels"}
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
        labels = r.get(item, "labels", where, dict, required=False, default={})
        for level, text in labels.items():
            if isinstance(text, bool):
                raise r.fail(f"{where}.labels.{_level_text(level)}",
                             f"reads as {str(text).lower()}, not as words: YAML takes an unquoted yes, no, on, off, "
                             f"true or false as true or false; quote it ({_level_text(level)}: \"{'yes' if text else 'no'}\")")
        level_names = {_level_text(k): str(v) for k, v in labels.items()}
        unknown_levels = sorted(set(level_names) - set(factor.levels)) if kind == "categorical" else []
        if unknown_levels:
            raise r.fail(f"{where}.labels.{unknown_levels[0]}", f"is not one of the categories "
                                                               f"({', '.join(factor.levels)})")
        wording[name] = RiskFactorWording(label=r.get(item, "label", where, str, required=False,
                                                      default=name.replace("_", " ").capitalize()),
                                          levels=level_names)
        columns[name] = RiskFactorColumn(column=r.get(item, "column", where, str, required=False, default=name),
                                         minimum=lo, maximum=hi)
    return factors, columns, wording


def _level_text(value: object) -> str:
    """A category as the risk model names it: 1, 1.0 and "1" are the level "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _resolve(config_path: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (config_path.parent / p).resolve()
