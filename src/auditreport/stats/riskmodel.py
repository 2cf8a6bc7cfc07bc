"""Risk adjustment: patient-level risk models (METHODS.md sections 1 and 5).

A risk model turns each patient's risk factors into a prediction: for a 0/1 outcome (death within the audit's
window, a process event) a probability from a logistic model; for a value >= 0 (length of stay, minutes to
surgery) an expected value from a log-link GLM, Poisson or gamma (``fit_log_glm``; McCullagh & Nelder,
*Generalized Linear Models*, 2nd ed., 1989, ch. 6 and 8), as SHMI-style length-of-stay indicators and
FunnelPlotR's examples do. A unit's expected count (or expected total) is the sum of its patients' predictions.
The logistic model is either

* fitted on the national cohort of the period by maximum likelihood (``fit_logistic``), or
* a published model given as fixed coefficients, as logistic EuroSCORE is (``fixed_model``), optionally
  recalibrated to the current data by refitting the intercept, or the intercept and the slope, of the
  logistic recalibration model (Cox, "Two further applications of a model for binary regression",
  Biometrika 1958;45:562-565; Steyerberg, *Clinical Prediction Models*, 2nd ed., 2019, ch. 20).

Categorical risk factors use treatment coding against a reference level, with term names ``name[level]``
(the patsy/statsmodels-formula convention, without the ``T.`` prefix). Missing values are handled by a
per-factor rule (``RiskFactor.missing``) applied in ``impute_missing``, which also reports what it imputed so
that the count per unit can be published as data quality.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from auditreport.stats.intervals import Z95, wilson

__all__ = [
    "MISSING_LEVEL",
    "RiskFactor",
    "RiskFactorError",
    "RiskModel",
    "calibration_table",
    "coefficient_table",
    "design_matrix",
    "fit_logistic",
    "fit_log_glm",
    "FAMILIES",
    "LINKS",
    "fixed_model",
    "imputation_values",
    "impute_missing",
    "model_performance",
    "risks_and_outcomes",
    "term_names",
]

MISSING_LEVEL = "Missing"
_KINDS = ("numeric", "categorical")
_MISSING_RULES = ("reference", "missing_indicator", "median", "exclude")
_TRANSFORMS = (None, "centre")
_MODEL_KINDS = ("fitted", "fixed", "fixed_recalibrated")
_FORMAT = "auditreport.riskmodel"
_FORMAT_VERSION = 1
#: GLM families of a risk model: a 0/1 outcome (logistic), or a value >= 0 (log link).
FAMILIES = ("binomial", "poisson", "gamma")
#: The link of each family: logit for binomial, log for Poisson and gamma.
LINKS = {"binomial": "logit", "poisson": "log", "gamma": "log"}


class RiskFactorError(ValueError):
    """A risk factor declaration that breaks a rule of :class:`RiskFactor`.

    ``field`` is the field at fault (``kind``, ``categories``, ``reference``, ``missing``, ``transform``) and
    ``reason`` the rule, so that a caller reading a declaration from a file can name its own key; the message
    names the factor too.
    """

    def __init__(self, factor: str, field: str, reason: str):
        super().__init__(f"risk factor {factor!r}: {field} {reason}")
        self.factor = factor
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RiskFactor:
    """One risk factor as declared in an audit's configuration.

    ``missing`` rules:

    * ``"reference"``: categorical -> the reference level (the lowest-risk level, as NICOR audits do);
      numeric -> ``float(reference)`` when ``reference`` is given (e.g. a normal creatinine), else the
      national median (see ``imputation_values``).
    * ``"missing_indicator"``: categorical -> a separate level ``"Missing"`` with its own coefficient;
      numeric -> the median, plus a 0/1 term ``name[Missing]``.
    * ``"median"``: numeric only, the median of the observed values.
    * ``"exclude"``: the patient is dropped from the model and counted.

    ``transform="centre"`` subtracts the fitting data's mean (stored in the model) so that the intercept is the
    log-odds of a patient at the average; it does not change predictions.

    Construction checks every rule above (and that categories are at least two and distinct, the reference is
    one of them); these checks are the one validation of a declared risk factor: ``config.load_config`` builds
    its factors with this class and reports a :class:`RiskFactorError` with the file and key at fault.
    """

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    reference: str | None = None
    missing: str = "reference"
    transform: str | None = None

    def __post_init__(self) -> None:
        def fail(field_name: str, reason: str) -> RiskFactorError:
            return RiskFactorError(self.name, field_name, reason)

        if self.kind not in _KINDS:
            raise fail("kind", f"must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        if self.missing not in _MISSING_RULES:
            raise fail("missing", f"must be one of {', '.join(_MISSING_RULES)}, got {self.missing!r}")
        if self.transform not in _TRANSFORMS:
            raise fail("transform", f"must be 'centre' or none, got {self.transform!r}")
        # Frozen dataclass: normalise through object.__setattr__ so YAML lists/ints become tuples of str.
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        if self.reference is not None:
            object.__setattr__(self, "reference", str(self.reference))
        if self.kind == "categorical":
            if len(self.categories) < 2:
                raise fail("categories", f"a categorical factor needs at least two categories, got {self.categories}")
            if len(set(self.categories)) != len(self.categories):
                raise fail("categories", f"duplicate categories {self.categories}")
            if self.reference is not None and self.reference not in self.categories:
                raise fail("reference", f"{self.reference!r} is not one of the categories {self.categories}")
            if self.missing == "median":
                raise fail("missing", "rule 'median' applies to numeric factors only")
            if self.missing == "missing_indicator" and MISSING_LEVEL in self.categories:
                raise fail("missing", f"{MISSING_LEVEL!r} is already a category; use missing 'reference' to map "
                                      "blanks to it, or rename the level")
            if self.transform is not None:
                raise fail("transform", "transforms apply to numeric factors only")
        else:
            if self.categories:
                raise fail("categories", "a numeric factor takes no categories")
            if self.reference is not None:
                try:
                    float(self.reference)
                except ValueError:
                    raise fail("reference", f"a numeric factor's reference (its fill value) must be a number, "
                                            f"got {self.reference!r}") from None

    @property
    def reference_level(self) -> str:
        """The reference level of a categorical factor (the configured one, else the first category)."""
        if self.kind != "categorical":
            raise AttributeError(f"risk factor {self.name!r} is numeric and has no reference level")
        return self.reference if self.reference is not None else self.categories[0]

    @property
    def levels(self) -> tuple[str, ...]:
        """All levels a categorical factor may take after imputation (adds ``Missing`` when indicated)."""
        if self.kind != "categorical":
            return ()
        if self.missing == "missing_indicator":
            return (*self.categories, MISSING_LEVEL)
        return self.categories

    @property
    def terms(self) -> tuple[str, ...]:
        """Names of this factor's columns in the design matrix."""
        if self.kind == "numeric":
            if self.missing == "missing_indicator":
                return (self.name, f"{self.name}[{MISSING_LEVEL}]")
            return (self.name,)
        ref = self.reference_level
        return tuple(f"{self.name}[{lev}]" for lev in self.levels if lev != ref)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["categories"] = list(self.categories)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiskFactor:
        return cls(
            name=d["name"],
            kind=d["kind"],
            categories=tuple(d.get("categories", ())),
            reference=d.get("reference"),
            missing=d.get("missing", "reference"),
            transform=d.get("transform"),
        )


def term_names(factors: Sequence[RiskFactor]) -> list[str]:
    """Design-matrix column names: ``Intercept`` then each factor's terms in configuration order."""
    names = ["Intercept"]
    for f in factors:
        names.extend(f.terms)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate term names in risk factors: {names}")
    return names


# --------------------------------------------------------------------------------------------------------------
# Value handling


def _scalar_to_level(v: Any) -> str:
    # A categorical column holding NaN is read as float, so grade 3 arrives as 3.0; match it to level "3".
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, bytes):
        return v.decode()
    return str(v).strip()


def _as_levels(s: pd.Series) -> pd.Series:
    """The column as strings (object dtype) with missing values as NaN; blanks count as missing."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    labels = np.array([_scalar_to_level(u) for u in uniques] + [np.nan], dtype=object)
    labels[:-1][labels[:-1] == ""] = np.nan
    # codes == -1 picks the trailing NaN label.
    return pd.Series(labels[codes], index=s.index, dtype=object)


def _as_numeric(s: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_numeric(s, errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"risk factor {name!r} is numeric but its column holds non-numeric values: {exc}"
        ) from None


def _require_columns(df: pd.DataFrame, names: Iterable[str]) -> None:
    absent = [n for n in names if n not in df.columns]
    if absent:
        raise ValueError(f"risk factor column(s) not in the data: {absent}")


def imputation_values(df: pd.DataFrame, factors: Sequence[RiskFactor]) -> dict[str, float]:
    """Fill values for numeric factors whose rule needs one, computed from ``df`` (normally the national cohort).

    Median of the observed values for rules ``median`` and ``missing_indicator``, and for ``reference`` when the
    factor gives no numeric reference value. Compute these once nationally, store them with the model
    (``RiskModel.fill_values``) and reuse them for every unit, so that a patient's imputed value does not depend
    on which unit's data it was imputed with.
    """
    _require_columns(df, [f.name for f in factors])
    values: dict[str, float] = {}
    for f in factors:
        if f.kind != "numeric" or f.missing == "exclude":
            continue
        if f.missing == "reference" and f.reference is not None:
            values[f.name] = float(f.reference)
            continue
        x = _as_numeric(df[f.name], f.name)
        if x.notna().sum() == 0:
            raise ValueError(f"risk factor {f.name!r}: no observed values to take a median of")
        values[f.name] = float(x.median())
    return values


def impute_missing(
    df: pd.DataFrame,
    factors: Sequence[RiskFactor],
    values: Mapping[str, float] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply each factor's missing-value rule.

    Returns ``(data, flags)``:

    * ``data``: a copy of ``df`` with the risk-factor columns imputed (categorical as strings, numeric as float,
      plus a 0/1 column ``name[Missing]`` for numeric factors with the missing-indicator rule), and without the
      rows that a factor with rule ``"exclude"`` drops.
    * ``flags``: booleans on the *input* index, one column per factor (True where that factor was missing and its
      rule was applied, imputed or excluded), and ``excluded`` (True where the row was dropped from ``data``).
      Group it by unit to count imputations as data quality.

    ``values`` are numeric fill values (see ``imputation_values``); by default they are computed from ``df``.
    Categorical values are compared with the configured levels as strings (3.0 matches "3"); values outside the
    levels are left alone here and rejected by ``RiskModel.predict``/``fit_logistic``.
    """
    _require_columns(df, [f.name for f in factors])
    if values is None:
        values = imputation_values(df, factors)
    out = df.copy()
    flags = pd.DataFrame(index=df.index)
    excluded = np.zeros(len(df), dtype=bool)
    for f in factors:
        if f.kind == "categorical":
            col = _as_levels(df[f.name])
            miss = col.isna().to_numpy()
            if f.missing == "reference":
                col[miss] = f.reference_level
            elif f.missing == "missing_indicator":
                col[miss] = MISSING_LEVEL
            out[f.name] = col
        else:
            col = _as_numeric(df[f.name], f.name)
            miss = col.isna().to_numpy()
            if f.missing != "exclude" and miss.any():
                if f.name not in values:
                    raise ValueError(f"no fill value given for numeric risk factor {f.name!r}")
                col = col.where(~miss, float(values[f.name]))
            out[f.name] = col
            if f.missing == "missing_indicator":
                out[f"{f.name}[{MISSING_LEVEL}]"] = miss.astype(float)
        if f.missing == "exclude":
            excluded |= miss
        flags[f.name] = miss
    flags["excluded"] = excluded
    return out.loc[~excluded], flags


# --------------------------------------------------------------------------------------------------------------
# Design matrix


def design_matrix(
    df: pd.DataFrame,
    factors: Sequence[RiskFactor],
    centres: Mapping[str, float] | None = None,
) -> np.ndarray:
    """The model matrix (float64, columns as ``term_names(factors)``) built with numpy.

    Formula parsing (patsy) is avoided because it costs more on a national cohort and would silently drop or
    reorder levels; here every configured level has a fixed column.
    Raises ``ValueError`` naming the factor for missing values or levels outside the configuration.
    """
    centres = centres or {}
    _require_columns(df, [f.name for f in factors])
    names = term_names(factors)
    X = np.zeros((len(df), len(names)), dtype=np.float64)
    X[:, 0] = 1.0
    j = 1
    for f in factors:
        if f.kind == "numeric":
            x = _as_numeric(df[f.name], f.name).to_numpy()
            n_miss = int(np.isnan(x).sum())
            if n_miss:
                raise ValueError(
                    f"risk factor {f.name!r} has {n_miss} missing value(s); apply impute_missing "
                    "(or RiskModel.impute) first"
                )
            if f.transform == "centre":
                if f.name not in centres:
                    raise ValueError(f"risk factor {f.name!r} is centred but no centre is known")
                x = x - centres[f.name]
            X[:, j] = x
            j += 1
            if f.missing == "missing_indicator":
                ind_name = f"{f.name}[{MISSING_LEVEL}]"
                if ind_name not in df.columns:
                    raise ValueError(f"column {ind_name!r} absent; apply impute_missing first")
                X[:, j] = _as_numeric(df[ind_name], ind_name).to_numpy()
                j += 1
        else:
            levels = f.levels
            # Factorise once and translate the (few) distinct values, rather than converting a million cells to
            # strings: -1 marks a missing value, -2 a value outside the configured levels.
            raw_codes, uniques = pd.factorize(df[f.name], use_na_sentinel=True)
            labels = [_scalar_to_level(u) for u in uniques]
            position = {lev: k for k, lev in enumerate(levels)}
            lookup = np.array(
                [(-1 if lab == "" else position.get(lab, -2)) for lab in labels] + [-1], dtype=np.int64
            )
            codes = lookup[raw_codes]
            n_miss = int((codes == -1).sum())
            if n_miss:
                raise ValueError(
                    f"risk factor {f.name!r} has {n_miss} missing value(s); apply impute_missing "
                    "(or RiskModel.impute) first"
                )
            if (codes == -2).any():
                unexpected = sorted({lab for lab, k in zip(labels, lookup[:-1], strict=True) if k == -2})
                shown = ", ".join(repr(u) for u in unexpected[:10])
                raise ValueError(
                    f"risk factor {f.name!r}: unexpected level(s) {shown} "
                    f"(configured levels: {', '.join(repr(lev) for lev in levels)})"
                )
            ref = levels.index(f.reference_level)
            for k in range(len(levels)):
                if k == ref:
                    continue
                X[:, j] = codes == k
                j += 1
    return X


# --------------------------------------------------------------------------------------------------------------
# The model


def _json_float(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _from_json_float(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _jsonify(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonify(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonify(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _json_float(obj)
    return obj


# eq=False: field-wise == on pandas objects raises "truth value is ambiguous"; compare to_dict() instead.
@dataclass(eq=False)
class RiskModel:
    """A risk model: ``g(mu) = X @ coefficients`` with g the link of ``family``.

    ``family`` "binomial" (the default) is logistic, ``logit p = X b``; "poisson" and "gamma" have the log link,
    ``log mu = X b`` (``link`` says which, and is derived from the family). ``coefficients`` are the ones
    predictions use. For ``fixed_recalibrated`` models they are the published coefficients after recalibration
    (intercept ``a + b*b0``, others ``b*bj``); the published ones and the recalibration fit are kept in
    ``recalibration``. ``n``/``events`` count the patients the model was fitted or recalibrated on and their
    events (0 for an unrecalibrated fixed model; ``events`` is 0 for a log-link model, whose outcome total is
    ``outcome_total``). ``scale`` is the GLM's dispersion (1 for binomial and Poisson; the Pearson estimate for
    gamma, as statsmodels and R's ``summary.glm`` give it).
    """

    kind: str
    factors: tuple[RiskFactor, ...]
    coefficients: pd.Series
    std_errors: pd.Series | None = None
    conf_int: pd.DataFrame | None = None
    n: int = 0
    events: int = 0
    recalibration: dict | None = None
    fill_values: dict[str, float] = field(default_factory=dict)
    centres: dict[str, float] = field(default_factory=dict)
    p_values: pd.Series | None = None
    converged: bool | None = None
    family: str = "binomial"
    outcome_total: float | None = None
    scale: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _MODEL_KINDS:
            raise ValueError(f"model kind must be one of {_MODEL_KINDS}, got {self.kind!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"model family must be one of {FAMILIES}, got {self.family!r}")
        self.factors = tuple(self.factors)
        expected = term_names(self.factors)
        if list(self.coefficients.index) != expected:
            raise ValueError(
                f"coefficients index {list(self.coefficients.index)} does not match terms {expected}"
            )

    @property
    def terms(self) -> list[str]:
        return list(self.coefficients.index)

    @property
    def link(self) -> str:
        """"logit" (binomial) or "log" (Poisson, gamma)."""
        return LINKS[self.family]

    def impute(self, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``impute_missing`` with this model's stored national fill values (when it has them)."""
        return impute_missing(df, self.factors, self.fill_values or None)

    def linear_predictor(self, df: pd.DataFrame) -> np.ndarray:
        """``X b`` for each row of already-imputed data: the log-odds (logit link) or the log of the mean (log)."""
        X = design_matrix(df, self.factors, self.centres)
        return X @ self.coefficients.to_numpy(dtype=np.float64)

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """The prediction for each row of already-imputed data: ``expit(X b)``, a probability, for the logit link;
        ``exp(X b)``, an expected value, for the log link.

        Raises ``ValueError`` naming the factor for missing values or categories outside the configuration.
        """
        lp = self.linear_predictor(df)
        return np.exp(lp) if self.link == "log" else _expit(lp)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description; ``RiskModel.from_dict`` restores a model with identical predictions.

        Floats are stored as JSON numbers (Python's ``json`` writes the shortest repr that round-trips exactly);
        non-finite values become ``null``.
        """
        d: dict[str, Any] = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "kind": self.kind,
            "factors": [f.to_dict() for f in self.factors],
            # A list of pairs, not an object, so that term order survives any JSON tool.
            "coefficients": [[t, _json_float(v)] for t, v in self.coefficients.items()],
            "std_errors": None
            if self.std_errors is None
            else [_json_float(v) for v in self.std_errors.reindex(self.coefficients.index)],
            "conf_int": None
            if self.conf_int is None
            else [[_json_float(lo), _json_float(hi)] for lo, hi in self.conf_int.to_numpy()],
            "p_values": None
            if self.p_values is None
            else [_json_float(v) for v in self.p_values.reindex(self.coefficients.index)],
            "n": int(self.n),
            "events": int(self.events),
            "converged": None if self.converged is None else bool(self.converged),
            "recalibration": _jsonify(self.recalibration),
            "fill_values": {k: _json_float(v) for k, v in self.fill_values.items()},
            "centres": {k: _json_float(v) for k, v in self.centres.items()},
            "family": self.family,
            "link": self.link,
            "outcome_total": None if self.outcome_total is None else _json_float(self.outcome_total),
            "scale": None if self.scale is None else _json_float(self.scale),
        }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiskModel:
        """The model ``to_dict`` described; a description without ``family`` (written before log-link models
        existed) is a logistic model."""
        if d.get("format", _FORMAT) != _FORMAT:
            raise ValueError(f"not a risk model description (format {d.get('format')!r})")
        if int(d.get("format_version", _FORMAT_VERSION)) > _FORMAT_VERSION:
            raise ValueError(f"risk model format version {d['format_version']} is newer than this code reads")
        family = d.get("family", "binomial")
        if family in LINKS and d.get("link", LINKS[family]) != LINKS[family]:
            raise ValueError(f"risk model description: family {family!r} has link {LINKS[family]!r}, "
                             f"not {d['link']!r}")
        factors = tuple(RiskFactor.from_dict(f) for f in d["factors"])
        terms = [t for t, _ in d["coefficients"]]
        coef = pd.Series([_from_json_float(v) for _, v in d["coefficients"]], index=terms, dtype=float)
        se = (
            None
            if d.get("std_errors") is None
            else pd.Series([_from_json_float(v) for v in d["std_errors"]], index=terms, dtype=float)
        )
        ci = (
            None
            if d.get("conf_int") is None
            else pd.DataFrame(
                [[_from_json_float(a), _from_json_float(b)] for a, b in d["conf_int"]],
                index=terms,
                columns=["lower", "upper"],
            )
        )
        pv = (
            None
            if d.get("p_values") is None
            else pd.Series([_from_json_float(v) for v in d["p_values"]], index=terms, dtype=float)
        )
        return cls(
            kind=d["kind"],
            factors=factors,
            coefficients=coef,
            std_errors=se,
            conf_int=ci,
            n=int(d.get("n", 0)),
            events=int(d.get("events", 0)),
            recalibration=d.get("recalibration"),
            fill_values={k: float(v) for k, v in (d.get("fill_values") or {}).items()},
            centres={k: float(v) for k, v in (d.get("centres") or {}).items()},
            p_values=pv,
            converged=d.get("converged"),
            family=family,
            outcome_total=None if d.get("outcome_total") is None else float(d["outcome_total"]),
            scale=None if d.get("scale") is None else float(d["scale"]),
        )


def _expit(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x)


def _logit(p: np.ndarray) -> np.ndarray:
    from scipy.special import logit

    return logit(p)


def _outcome(df: pd.DataFrame, outcome: str) -> np.ndarray:
    if outcome not in df.columns:
        raise ValueError(f"outcome column {outcome!r} not in the data")
    y = pd.to_numeric(df[outcome], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(y, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            f"outcome {outcome!r} must be 0 or 1 with no missing values; {int(bad.sum())} row(s) are not"
        )
    return y


def _fitting_design(df: pd.DataFrame, factors: tuple[RiskFactor, ...]) -> tuple[np.ndarray, list[str], dict]:
    """Design matrix of the fitting data, its term names and the centres of centred factors (the data's means).

    Raises ``ValueError`` when a term has no patients (its coefficient cannot be estimated).
    """
    centres: dict[str, float] = {}
    for f in factors:
        if f.transform == "centre":
            centres[f.name] = float(_as_numeric(df[f.name], f.name).mean())
    X = design_matrix(df, factors, centres)
    names = term_names(factors)
    empty = [names[j] for j in range(1, X.shape[1]) if not X[:, j].any()]
    if empty:
        raise ValueError(f"term(s) with no patients in the fitting data, cannot be estimated: {empty}")
    return X, names, centres


def _check_rank(rank: int, names: list[str]) -> None:
    if rank < len(names):
        raise ValueError(
            f"the risk factors are collinear in the fitting data (design rank {rank} < {len(names)} terms {names}); "
            "drop or merge factors/levels"
        )


def fit_logistic(
    df: pd.DataFrame,
    factors: Sequence[RiskFactor],
    outcome: str = "outcome",
    *,
    fill_values: Mapping[str, float] | None = None,
) -> RiskModel:
    """Fit a logistic regression of ``outcome`` on the risk factors by maximum likelihood.

    statsmodels ``Logit`` (the Binomial GLM with its canonical link) fitted by Newton-Raphson (McCullagh &
    Nelder, *Generalized Linear Models*, 2nd ed., 1989, ch. 4); standard errors from the inverse Fisher
    information, Wald 95% intervals and p-values; identical to ``smf.glm(..., family=Binomial())``. Categorical factors are treatment-coded
    against their reference level. ``df`` must already be imputed (``impute_missing``); ``fill_values`` are the
    numeric fill values used for that, stored in the model so units' data are imputed the same way.

    ``ValueError`` is raised, rather than a model returned, when a configured level has no patients, when terms
    are collinear, or when the fit does not converge (separation: a level with no deaths or only deaths); the
    remedy in each case is to merge or drop levels in the audit's configuration.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    factors = tuple(factors)
    y = _outcome(df, outcome)
    X, names, centres = _fitting_design(df, factors)
    # Newton-Raphson on the logit likelihood (statsmodels Logit) rather than GLM's IRLS: the same maximum
    # likelihood estimate (the logit link is canonical, so observed and expected information coincide), but each
    # step is one X'WX product instead of a least-squares solve, the cheaper step on a national cohort.
    logit_model = sm.Logit(y, X)
    # statsmodels has already computed the rank (one QR); a singular Hessian would otherwise surface as a bare
    # LinAlgError from inside Newton's method.
    _check_rank(int(logit_model.df_model) + 1, names)
    with warnings.catch_warnings():
        # statsmodels repeats its separation warning at every Newton step; one clear error below replaces them.
        warnings.filterwarnings("ignore", category=PerfectSeparationWarning)
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        res = logit_model.fit(method="newton", maxiter=100, disp=0)
    converged = bool(res.mle_retvals.get("converged", False))
    if not converged:
        # Non-convergence of a logistic likelihood is almost always (quasi-)complete separation: a level with no
        # deaths or only deaths, whose coefficient drifts to infinity. Its predictions would be 0 or 1, so refuse
        # rather than publish expected counts from it.
        suspects = []
        for j, t in enumerate(names[1:], start=1):
            col = X[:, j]
            if np.isin(col, (0.0, 1.0)).all():
                ys = y[col == 1]
                if ys.size and (ys.min() == ys.max()):
                    suspects.append(f"{t} ({ys.size} patients, {int(ys.sum())} deaths)")
        if not suspects:
            suspects = [t for t, b in zip(names, res.params, strict=True) if abs(b) > 10]
        raise ValueError(
            "the logistic risk model did not converge, which usually means separation (a level with no deaths or "
            f"only deaths); suspect terms: {suspects or names}. Merge rare levels in the audit's configuration."
        )
    return _fitted_model(res, factors, names, y, fill_values, centres, converged, events=int(y.sum()))


def _fitted_model(res: Any, factors: Sequence[RiskFactor], names: list[str], y: np.ndarray,
                  fill_values: Mapping[str, Any] | None, centres: Any, converged: bool, **extra: Any) -> RiskModel:
    """A :class:`RiskModel` from a fitted statsmodels result: coefficients, standard errors, 95% CIs, p-values."""
    ci = np.asarray(res.conf_int(alpha=0.05))
    return RiskModel(
        kind="fitted",
        factors=factors,
        coefficients=pd.Series(np.asarray(res.params), index=names, dtype=float),
        std_errors=pd.Series(np.asarray(res.bse), index=names, dtype=float),
        conf_int=pd.DataFrame(ci, index=names, columns=["lower", "upper"]),
        p_values=pd.Series(np.asarray(res.pvalues), index=names, dtype=float),
        n=int(len(y)),
        recalibration=None,
        fill_values=dict(fill_values or {}),
        centres=centres,
        converged=converged,
        **extra,
    )


def _value_outcome(df: pd.DataFrame, outcome: str, family: str) -> np.ndarray:
    """The outcome of a log-link model: numbers >= 0 (Poisson) or > 0 (gamma), none missing."""
    if outcome not in df.columns:
        raise ValueError(f"outcome column {outcome!r} not in the data")
    y = pd.to_numeric(df[outcome], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(y) | (y <= 0 if family == "gamma" else y < 0)
    if bad.any():
        rule = "> 0 (a gamma model's values must be positive; use family poisson for values that can be 0)" \
            if family == "gamma" else ">= 0"
        rows = ", ".join(str(r) for r in df.index[bad][:5])
        raise ValueError(f"outcome {outcome!r} must be a number {rule} with no missing values; {int(bad.sum())} "
                         f"row(s) are not (index {rows}{' ...' if bad.sum() > 5 else ''})")
    return y


def _glm_family(family: str):
    """The statsmodels family object with the log link, for "poisson" or "gamma"."""
    import statsmodels.api as sm

    if family == "poisson":
        return sm.families.Poisson()
    if family == "gamma":
        return sm.families.Gamma(link=sm.families.links.Log())
    raise ValueError(f"a log-link risk model's family must be 'poisson' or 'gamma', got {family!r}")


def fit_log_glm(
    df: pd.DataFrame,
    factors: Sequence[RiskFactor],
    family: str = "poisson",
    outcome: str = "y",
    *,
    fill_values: Mapping[str, float] | None = None,
) -> RiskModel:
    """Fit a log-link GLM of a value >= 0 (length of stay, minutes) on the risk factors.

    ``log E[y] = X b`` with a Poisson (``family="poisson"``: variance proportional to the mean; y may be any
    number >= 0, the quasi-Poisson estimating equations, whose point estimates are the Poisson ones) or gamma
    (``family="gamma"``: constant coefficient of variation; y > 0) family, fitted by IRLS in statsmodels
    ``GLM`` (McCullagh & Nelder 1989, ch. 6 and 8); identical to R's ``glm(y ~ ..., family = poisson)`` and
    ``glm(..., family = Gamma(link = "log"))`` and to ``smf.glm(..., family=Poisson())`` /
    ``Gamma(link=Log())``. With an intercept and the canonical (Poisson) log link, the fitted values sum to the
    observed total, so the national O/E is exactly 1; for gamma it is close to, not exactly, 1.

    Standard errors, Wald intervals and p-values are statsmodels' (gamma: scaled by the Pearson dispersion,
    kept in ``scale``). Categorical factors are treatment-coded; ``df`` must already be imputed
    (``impute_missing``); ``fill_values`` are stored as in ``fit_logistic``.

    ``ValueError`` is raised for an outcome outside the family's range (naming the rows), a configured level
    with no patients, a level whose values are all 0 (its coefficient would be minus infinity), collinear
    terms, or a fit that does not converge.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"los": [2.0, 3.0, 4.0, 8.0, 9.0, 7.0], "urgent": ["no", "no", "no", "yes", "yes", "yes"]})
    >>> m = fit_log_glm(df, [RiskFactor("urgent", "categorical", ("no", "yes"))], "poisson", "los")
    >>> m.link, [round(float(v), 4) for v in m.predict(df)]
    ('log', [3.0, 3.0, 3.0, 8.0, 8.0, 8.0])
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    fam = _glm_family(family)
    factors = tuple(factors)
    y = _value_outcome(df, outcome, family)
    X, names, centres = _fitting_design(df, factors)
    # A level whose values are all 0 has its Poisson coefficient at minus infinity (IRLS stops at a large
    # negative number and calls it converged), and predicts 0 for its patients: refuse it, as separation is.
    all_zero = [f"{t} ({int((X[:, j] == 1).sum())} patients, every value 0)"
                for j, t in enumerate(names[1:], start=1)
                if np.isin(X[:, j], (0.0, 1.0)).all() and not y[X[:, j] == 1].any()]
    if all_zero or not y.any():
        raise ValueError(f"the {family} risk model cannot be fitted: {', '.join(all_zero) or 'every value is 0'}; "
                         "its coefficient would be minus infinity. Merge rare levels in the audit's configuration.")
    model = sm.GLM(y, X, family=fam)
    _check_rank(int(model.df_model) + 1, names)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PerfectSeparationWarning)
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        # A Poisson family given non-integer values warns on every call of its log-likelihood; the estimating
        # equations (quasi-Poisson) are what is wanted here.
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        res = model.fit(maxiter=100)
    converged = bool(getattr(res, "converged", True))
    if not converged or not np.all(np.isfinite(res.params)):
        raise ValueError(f"the {family} risk model did not converge (terms {names}); merge rare levels or drop "
                         "factors in the audit's configuration.")
    return _fitted_model(res, factors, names, y, fill_values, centres, converged, events=0, family=family,
                         outcome_total=float(y.sum()), scale=float(res.scale))


def fixed_model(
    coefficients: Mapping[str, float],
    factors: Sequence[RiskFactor],
    recalibrate: str | None = None,
    df: pd.DataFrame | None = None,
    outcome: str = "outcome",
    *,
    centres: Mapping[str, float] | None = None,
    fill_values: Mapping[str, float] | None = None,
    family: str = "binomial",
) -> RiskModel:
    """A published model given as fixed coefficients (as logistic EuroSCORE is), optionally recalibrated.

    ``family`` "binomial" (default) is a logistic model; "poisson" or "gamma" a published log-link model of a
    value, recalibrated the same way on the log scale (``log mu = a + b*lp``) with that family's GLM.

    ``coefficients`` must name exactly the terms of ``term_names(factors)``. ``recalibrate``:

    * ``None``: predictions use the published coefficients;
    * ``"intercept"``: refit the intercept ``a`` of ``logit p = a + lp`` (``lp`` the published linear predictor,
      as an offset), i.e. recalibration-in-the-large;
    * ``"intercept_slope"``: refit ``a`` and ``b`` of ``logit p = a + b*lp`` (logistic recalibration; Cox 1958;
      Steyerberg 2019, ch. 20; Janssen et al., J Clin Epidemiol 2008;61:76-86).

    ``df`` (already imputed) is the current data to recalibrate on. The recalibration fit (a, b, their standard
    errors, the data's n and events) and the published coefficients are kept in ``model.recalibration``.
    """
    import statsmodels.api as sm

    factors = tuple(factors)
    names = term_names(factors)
    given = {str(k): float(v) for k, v in coefficients.items()}
    missing = [t for t in names if t not in given]
    extra = [t for t in given if t not in names]
    if missing or extra:
        raise ValueError(
            f"fixed coefficients do not match the risk factors' terms; missing {missing}, unexpected {extra} "
            f"(expected terms: {names})"
        )
    coef = pd.Series([given[t] for t in names], index=names, dtype=float)
    centres = dict(centres or {})
    for f in factors:
        if f.transform == "centre" and f.name not in centres:
            raise ValueError(f"risk factor {f.name!r} is centred: give the published centre in `centres`")
    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {FAMILIES}, got {family!r}")
    base = RiskModel(
        kind="fixed", factors=factors, coefficients=coef, centres=centres, fill_values=dict(fill_values or {}),
        family=family,
    )
    if recalibrate is None:
        return base
    if recalibrate not in ("intercept", "intercept_slope"):
        raise ValueError(f"recalibrate must be None, 'intercept' or 'intercept_slope', got {recalibrate!r}")
    if df is None:
        raise ValueError("recalibration needs the current data: pass df")
    if family == "binomial":
        y, glm_family = _outcome(df, outcome), sm.families.Binomial()
    else:
        y, glm_family = _value_outcome(df, outcome, family), _glm_family(family)
    lp = base.linear_predictor(df)
    with warnings.catch_warnings():
        # Poisson with non-integer values: see fit_log_glm.
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        if recalibrate == "intercept":
            res = sm.GLM(y, np.ones((len(y), 1)), family=glm_family, offset=lp).fit()
        else:
            res = sm.GLM(y, np.column_stack([np.ones(len(y)), lp]), family=glm_family).fit()
    if recalibrate == "intercept":
        a, b = float(res.params[0]), 1.0
        se_a, se_b = float(res.bse[0]), None
    else:
        a, b = float(res.params[0]), float(res.params[1])
        se_a, se_b = float(res.bse[0]), float(res.bse[1])
    new = coef * b
    new.iloc[0] = a + b * coef.iloc[0]
    recal = {
        "method": recalibrate,
        "intercept": a,
        "slope": b,
        "intercept_se": se_a,
        "slope_se": se_b,
        "n": int(len(y)),
        "events": int(y.sum()) if family == "binomial" else 0,
        "published_coefficients": {t: float(v) for t, v in coef.items()},
    }
    return RiskModel(
        kind="fixed_recalibrated",
        factors=factors,
        coefficients=new,
        n=int(len(y)),
        events=int(y.sum()) if family == "binomial" else 0,
        recalibration=recal,
        fill_values=dict(fill_values or {}),
        centres=centres,
        converged=bool(res.converged),
        family=family,
        outcome_total=None if family == "binomial" else float(y.sum()),
        scale=None if family == "binomial" else float(res.scale),
    )


# --------------------------------------------------------------------------------------------------------------
# Model quality


def risks_and_outcomes(p: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Predicted risks and observed outcomes as float arrays, checked: what model quality and monitoring take.

    ``p`` and ``y`` must be 1-D and of one length, ``p`` probabilities in [0, 1] and ``y`` 0 or 1, neither with
    missing values; a ``ValueError`` says which rule failed.
    """
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError("predicted risks and outcomes must be 1-D")
    if p.shape != y.shape:
        raise ValueError(f"predicted risks and outcomes differ in length ({p.size} and {y.size})")
    if np.isnan(p).any() or ((p < 0) | (p > 1)).any():
        raise ValueError("predicted risks must be probabilities in [0, 1] with no missing values")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0 or 1 with no missing values")
    return p, y


def _auc_delong(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Area under the ROC curve and its DeLong standard error.

    DeLong, DeLong & Clarke-Pearson, "Comparing the areas under two or more correlated receiver operating
    characteristic curves: a nonparametric approach", Biometrics 1988;44:837-845, with the midrank algorithm of
    Sun & Xu, IEEE Signal Processing Letters 2014;21:1389-1393 (O(n log n), ties counted one half). This is
    pROC's default ``ci.auc`` method.
    """
    from scipy.stats import rankdata

    pos, neg = p[y == 1], p[y == 0]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        return float("nan"), float("nan")
    r_all = rankdata(np.concatenate([pos, neg]))
    # Placement values: V10_i = share of non-events ranked below event i (ties 1/2), V01_j likewise.
    v10 = (r_all[:m] - rankdata(pos)) / n
    v01 = 1.0 - (r_all[m:] - rankdata(neg)) / m
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return auc, float("nan")
    var = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    return auc, float(math.sqrt(var))


def _auc_se_hanley_mcneil(auc: float, n_events: int, n_nonevents: int) -> float:
    """Hanley & McNeil, "The meaning and use of the area under a ROC curve", Radiology 1982;143:29-36, eq. 2.

    Q1 = A/(2-A), Q2 = 2A^2/(1+A) assume exponential score distributions.
    """
    a = auc
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_events - 1) * (q1 - a * a) + (n_nonevents - 1) * (q2 - a * a)) / (
        n_events * n_nonevents
    )
    return float(math.sqrt(var))


def _risk_groups(p: np.ndarray, groups: int) -> np.ndarray:
    """Group number (0-based) of each patient by quantiles of predicted risk.

    Follows R's ``ResourceSelection::hoslem.test``: breaks at ``quantile(p, 0:g/g)`` (type 7, numpy's default),
    duplicate breaks dropped, intervals closed on the right with the lowest included. Patients with equal risk
    therefore always share a group, and there may be fewer than ``groups`` groups when risks are tied.
    """
    breaks = np.unique(np.quantile(p, np.linspace(0, 1, groups + 1)))
    if breaks.size < 2:
        return np.zeros(p.size, dtype=int)
    # right=True: bin k holds breaks[k-1] < p <= breaks[k]; clip folds the minimum into the first bin.
    return np.clip(np.searchsorted(breaks, p, side="left") - 1, 0, breaks.size - 2)


def calibration_table(p: Any, y: Any, groups: int = 10) -> pd.DataFrame:
    """Observed and expected deaths by groups (tenths by default) of predicted risk.

    Columns ``group`` (1 = lowest risk), ``n``, ``observed``, ``expected`` (sum of p), ``observed_rate``,
    ``expected_rate``, ``lower95``/``upper95`` (Wilson score interval of the observed rate, the package's one,
    :func:`auditreport.stats.intervals.wilson`). Groups are formed as in ``ResourceSelection::hoslem.test``
    (see ``_risk_groups``), the same groups the Hosmer-Lemeshow statistic in ``model_performance`` uses.
    """
    p, y = risks_and_outcomes(p, y)
    g = _risk_groups(p, groups)
    frame = pd.DataFrame({"g": g, "y": y, "p": p})
    agg = frame.groupby("g", sort=True).agg(n=("y", "size"), observed=("y", "sum"), expected=("p", "sum"))
    lower, upper = wilson(agg["observed"].to_numpy(), agg["n"].to_numpy(), level=0.95)
    return pd.DataFrame(
        {
            "group": np.arange(1, len(agg) + 1),
            "n": agg["n"].to_numpy(dtype=int),
            "observed": agg["observed"].to_numpy(dtype=int),
            "expected": agg["expected"].to_numpy(dtype=float),
            "observed_rate": (agg["observed"] / agg["n"]).to_numpy(dtype=float),
            "expected_rate": (agg["expected"] / agg["n"]).to_numpy(dtype=float),
            "lower95": lower,
            "upper95": upper,
        }
    )


def model_performance(p: Any, y: Any, *, c_ci: str = "delong", groups: int = 10) -> dict[str, Any]:
    """Discrimination and calibration of predicted risks ``p`` against outcomes ``y`` (METHODS.md section 5).

    * ``c_statistic``: area under the ROC curve (ties count one half), with ``c_se`` and a Wald 95% interval
      ``c_lower``-``c_upper`` clipped to [0, 1]. ``c_ci="delong"`` (default; DeLong et al. 1988, as pROC) or
      ``"hanley_mcneil"`` (Hanley & McNeil 1982, eq. 2); ``c_method`` says which was used.
    * ``calibration_in_the_large``: intercept ``a`` of ``logit P(y=1) = a + logit p`` (``logit p`` an offset);
      0 when overall observed equals expected on the logit scale. ``calibration_slope``: ``b`` in
      ``logit P(y=1) = a + b logit p``; 1 when predictions are neither too extreme nor too moderate (Cox 1958;
      Steyerberg, *Clinical Prediction Models*, 2019, ch. 15). Both with Wald 95% intervals.
    * ``brier``: mean squared error of p (Brier, Monthly Weather Review 1950;78:1-3).
    * ``hosmer_lemeshow`` / ``hosmer_lemeshow_df`` / ``hosmer_lemeshow_p``: sum over risk groups of
      (O - E)^2 / (E (1 - E/n)), chi-squared on groups - 2 degrees of freedom (Hosmer & Lemeshow, Commun Stat
      1980;A9:1043-1069), groups as ``calibration_table``.
    * ``n``, ``events``, ``expected`` (sum of p).
    """
    import statsmodels.api as sm
    from scipy.stats import chi2

    p, y = risks_and_outcomes(p, y)
    n, events = int(p.size), int(y.sum())
    auc, se_delong = _auc_delong(p, y)
    if c_ci == "delong":
        se, method = se_delong, "DeLong (DeLong, DeLong & Clarke-Pearson 1988)"
    elif c_ci == "hanley_mcneil":
        se = _auc_se_hanley_mcneil(auc, events, n - events) if 0 < events < n else float("nan")
        method = "Hanley-McNeil (Hanley & McNeil 1982)"
    else:
        raise ValueError(f"c_ci must be 'delong' or 'hanley_mcneil', got {c_ci!r}")
    c_lower = max(0.0, auc - Z95 * se) if math.isfinite(se) else float("nan")
    c_upper = min(1.0, auc + Z95 * se) if math.isfinite(se) else float("nan")

    out: dict[str, Any] = {
        "n": n,
        "events": events,
        "expected": float(p.sum()),
        "c_statistic": auc,
        "c_se": se,
        "c_lower": c_lower,
        "c_upper": c_upper,
        "c_method": method,
    }

    nan = float("nan")
    citl = slope = (nan, nan, nan)
    if 0 < events < n:
        # Risks of exactly 0 or 1 (possible from a fixed model) would give infinite logits.
        lp = _logit(np.clip(p, 1e-15, 1 - 1e-15))
        binom = sm.families.Binomial()
        r0 = sm.GLM(y, np.ones((n, 1)), family=binom, offset=lp).fit()
        ci0 = np.asarray(r0.conf_int())
        citl = (float(r0.params[0]), float(ci0[0, 0]), float(ci0[0, 1]))
        if np.ptp(lp) > 0:
            r1 = sm.GLM(y, np.column_stack([np.ones(n), lp]), family=binom).fit()
            ci1 = np.asarray(r1.conf_int())
            slope = (float(r1.params[1]), float(ci1[1, 0]), float(ci1[1, 1]))
    out.update(
        calibration_in_the_large=citl[0],
        citl_lower=citl[1],
        citl_upper=citl[2],
        calibration_slope=slope[0],
        slope_lower=slope[1],
        slope_upper=slope[2],
        brier=float(np.mean((p - y) ** 2)),
    )

    table = calibration_table(p, y, groups)
    e, o, m = table["expected"].to_numpy(), table["observed"].to_numpy(), table["n"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        hl = float(np.sum((o - e) ** 2 / (e * (1 - e / m))))
    hl_df = len(table) - 2
    out.update(
        hosmer_lemeshow=hl,
        hosmer_lemeshow_df=hl_df,
        hosmer_lemeshow_p=float(chi2.sf(hl, hl_df)) if hl_df > 0 and math.isfinite(hl) else nan,
        hosmer_lemeshow_groups=len(table),
    )
    return out


def coefficient_table(model: RiskModel) -> pd.DataFrame:
    """The model's coefficients for the national report.

    Columns ``term``, ``coefficient`` (log odds ratio), ``std_error``, ``odds_ratio``, ``lower95``/``upper95``
    (Wald 95% interval of the *odds ratio*, exp of the coefficient's interval) and ``p_value`` (Wald). Interval,
    standard error and p-value are NaN for fixed models, whose published coefficients carry none here. The
    intercept's "odds ratio" is the odds for a patient at the reference of every factor.

    For a log-link model (Poisson, gamma) exp(coefficient) is a ratio of means, not of odds, and the column is
    named ``mean_ratio`` instead of ``odds_ratio`` (the intercept's is the mean value at the reference).
    """
    terms = model.coefficients.index
    coef = model.coefficients.to_numpy(dtype=float)
    nan = np.full(coef.size, np.nan)
    se = nan if model.std_errors is None else model.std_errors.reindex(terms).to_numpy(dtype=float)
    if model.conf_int is None:
        lo, hi = nan, nan
    else:
        ci = model.conf_int.reindex(terms).to_numpy(dtype=float)
        lo, hi = np.exp(ci[:, 0]), np.exp(ci[:, 1])
    pv = nan if model.p_values is None else model.p_values.reindex(terms).to_numpy(dtype=float)
    return pd.DataFrame(
        {
            "term": list(terms),
            "coefficient": coef,
            "std_error": se,
            ("mean_ratio" if model.link == "log" else "odds_ratio"): np.exp(coef),
            "lower95": lo,
            "upper95": hi,
            "p_value": pv,
        }
    )
