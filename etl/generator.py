"""How the synthetic generator draws each field of a contract: the ``[generator]`` table, or
defaults derived from the contract's types, bounds and allowed values.

A contract may carry a ``[generator]`` table (see ``etl/contracts/*.toml``); every key is optional,
so a hand-written contract with none still generates a stream, a drift scenario and a learnable
label. Per field (``[generator.fields.NAME]``):

* numbers: ``dist`` (``normal`` with ``mean``/``sd``, ``lognormal`` with ``mu``/``sigma``,
  ``exponential`` with ``scale``, ``uniform`` with ``low``/``high``) or a ``values``/``weights``
  choice; ``round`` (decimals); values are clipped to the contract's ``min``/``max``;
* strings and bools: ``values`` and ``weights`` (strings without ``allowed`` that are not features,
  such as an entity id used as the partition key, come from a ``pool`` of ``prefix`` + number);
* any field: ``null_rate`` (only where the contract lets the field be null or absent);
* ``drift``: the same keys again for the drifted world (e.g. ``drift = { mu = 4.1 }``).

The label (``[generator.label]``, ``[generator.label.drift]`` for the drifted world, and
``[generator.label.concept]`` for the concept scenario, where only the relation changes: the
features keep their stationary distribution; it defaults to the drift relation) is
``intercept + sum(terms)``: a binary label is drawn with probability ``sigmoid`` of it, a
regression label is it plus ``noise`` (normal sd). A term is ``weight`` times ``(x - center) /
scale`` of a ``feature`` (``log = true`` takes its log first) and/or the indicator that every
condition of ``when`` holds (``[["amount", ">", 40.0], ["device", "==", "wearable"]]``; a null
never satisfies one).

>>> from etl.contract import load_contract
>>> spec = plan_for(load_contract())
>>> spec.fields["amount"].dist, spec.label.intercept
('lognormal', -4.7)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from etl.contract import Contract, Field, FieldType, Role, Task
from etl.exceptions import ContractError

DISTS: dict[str, tuple[str, ...]] = {
    "normal": ("mean", "sd"),
    "lognormal": ("mu", "sigma"),
    "exponential": ("scale",),
    "uniform": ("low", "high"),
}
OPS = (">", ">=", "<", "<=", "==", "!=")
DEFAULT_NULL_RATE = 0.02
DEFAULT_POOL = 1_000
DEFAULT_CATEGORIES = 5
_FIELD_KEYS = {"dist", "values", "weights", "round", "null_rate", "pool", "prefix", "drift"}
_FIELD_KEYS |= {p for ps in DISTS.values() for p in ps}
_TERM_KEYS = {"weight", "feature", "log", "center", "scale", "when"}


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """How one field is drawn in the stationary world (``params``) and the drifted one."""

    name: str
    type: FieldType
    #: ``choice``, ``pool``, ``id``, ``event_time``, ``timestamp`` or one of :data:`DISTS`.
    dist: str
    params: Mapping[str, float]
    drift_params: Mapping[str, float]
    values: tuple[Any, ...] = ()
    weights: tuple[float, ...] = ()
    drift_weights: tuple[float, ...] = ()
    null_rate: float = 0.0
    decimals: int | None = None
    low: float | None = None
    high: float | None = None
    pool: int = DEFAULT_POOL
    prefix: str = ""

    def center_scale(self, *, log: bool) -> tuple[float, float]:
        """Location and spread of the stationary world (what a term standardises by)."""
        p = self.params
        if self.dist == "lognormal":
            if log:
                return p["mu"], p["sigma"]
            mean = math.exp(p["mu"] + p["sigma"] ** 2 / 2)
            return mean, mean * math.sqrt(math.exp(p["sigma"] ** 2) - 1)
        if self.dist == "normal":
            c, s = p["mean"], p["sd"]
        elif self.dist == "exponential":
            c, s = p["scale"], p["scale"]
        elif self.dist == "uniform":
            c, s = (p["low"] + p["high"]) / 2, (p["high"] - p["low"]) / math.sqrt(12)
        elif self.dist == "choice" and self.type in (FieldType.INT, FieldType.FLOAT):
            total = sum(self.weights)
            c = sum(float(v) * w for v, w in zip(self.values, self.weights, strict=True)) / total
            var = sum(
                (float(v) - c) ** 2 * w for v, w in zip(self.values, self.weights, strict=True)
            )
            s = math.sqrt(var / total)
        else:
            return 0.0, 1.0
        if log:
            return math.log(max(c, 1e-9)), 1.0
        return c, s if s > 0 else 1.0


@dataclass(frozen=True, slots=True)
class Term:
    weight: float
    feature: str | None = None
    log: bool = False
    center: float = 0.0
    scale: float = 1.0
    when: tuple[tuple[str, str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class LabelPlan:
    intercept: float
    terms: tuple[Term, ...]
    drift_intercept: float
    drift_terms: tuple[Term, ...]
    noise: float = 0.5
    #: The concept scenario's relation (over the stationary features); the drift one by default.
    concept_intercept: float | None = None
    concept_terms: tuple[Term, ...] | None = None

    def relation(self, *, drifted: bool, concept: bool) -> tuple[float, tuple[Term, ...]]:
        """(intercept, terms) of the stationary, drifted or concept world's label."""
        if concept and self.concept_terms is not None and self.concept_intercept is not None:
            return self.concept_intercept, self.concept_terms
        if drifted or concept:
            return self.drift_intercept, self.drift_terms
        return self.intercept, self.terms


@dataclass(frozen=True, slots=True)
class Plan:
    """Every field's plan (contract order) and the label's, for one contract."""

    contract: Contract
    fields: Mapping[str, FieldPlan]
    label: LabelPlan | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _num(where: str, key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ContractError(f"{where}.{key}: expected a finite number, got {raw!r}")
    return float(raw)


def _table(where: str, raw: Any) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ContractError(f"{where}: expected a table, got {raw!r}")
    return raw


def _default_params(f: Field) -> tuple[str, dict[str, float], dict[str, float]]:
    """A distribution inside the field's bounds, and a drift that moves it by about one sd."""
    lo, hi = f.min, f.max
    if lo is not None and hi is not None:
        mid, sd = (lo + hi) / 2, (hi - lo) / 6 or 1.0
        return "normal", {"mean": mid, "sd": sd}, {"mean": mid + sd, "sd": sd}
    if lo is not None:
        return "exponential", {"scale": 10.0}, {"scale": 20.0}
    if hi is not None:
        return "normal", {"mean": hi - 20.0, "sd": 5.0}, {"mean": hi - 12.0, "sd": 5.0}
    return "normal", {"mean": 0.0, "sd": 1.0}, {"mean": 1.0, "sd": 1.0}


def _default_choice(f: Field) -> tuple[tuple[Any, ...], tuple[float, ...], tuple[float, ...]]:
    if f.type is FieldType.BOOL:
        return (False, True), (0.7, 0.3), (0.4, 0.6)
    values = f.allowed or tuple(f"{f.name}_{i}" for i in range(DEFAULT_CATEGORIES))
    weights = tuple(0.6**i for i in range(len(values)))
    return tuple(values), weights, tuple(reversed(weights))


def _choice(
    where: str, f: Field, raw: Mapping[str, Any], drift: Mapping[str, Any]
) -> tuple[tuple[Any, ...], tuple[float, ...], tuple[float, ...]]:
    values, weights, drift_weights = _default_choice(f)
    if "values" in raw:
        values = tuple(raw["values"]) if isinstance(raw["values"], list) else ()
        if not values:
            raise ContractError(
                f"{where}.values: expected a non-empty array, got {raw['values']!r}"
            )
        for v in values:
            _check_value(f"{where}.values", f, v)
        weights = tuple(1.0 for _ in values)
        drift_weights = weights
    for key, src in (("weights", raw), ("drift.weights", drift)):
        w = src.get("weights")
        if w is None:
            continue
        if not isinstance(w, list) or len(w) != len(values):
            raise ContractError(f"{where}.{key}: expected {len(values)} numbers, got {w!r}")
        ws = tuple(_num(where, key, x) for x in w)
        if any(x < 0 for x in ws) or sum(ws) <= 0:
            raise ContractError(f"{where}.{key}: weights must be >= 0 with a positive sum")
        if key == "weights":
            weights = ws
            drift_weights = ws if "weights" not in drift else drift_weights
        else:
            drift_weights = ws
    return values, weights, drift_weights


def _check_value(where: str, f: Field, v: Any) -> None:
    ok = {
        FieldType.STRING: isinstance(v, str),
        FieldType.BOOL: isinstance(v, bool),
        FieldType.INT: isinstance(v, int) and not isinstance(v, bool),
        FieldType.FLOAT: isinstance(v, int | float) and not isinstance(v, bool),
    }.get(f.type, False)
    if not ok:
        raise ContractError(f"{where}: {v!r} is not a {f.type.value} ({f.name})")
    if f.allowed is not None and v not in f.allowed:
        raise ContractError(f"{where}: {v!r} is not in the contract's allowed values {f.allowed}")
    outside = (f.min is not None and v < f.min) or (f.max is not None and v > f.max)
    if isinstance(v, int | float) and not isinstance(v, bool) and outside:
        raise ContractError(f"{where}: {v!r} is outside [{f.min}, {f.max}] ({f.name})")


def _field_plan(contract: Contract, f: Field, raw: Mapping[str, Any]) -> FieldPlan:
    where = f"{contract.source or contract.name}: generator.fields.{f.name}"
    unknown = sorted(set(raw) - _FIELD_KEYS)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown}; allowed are {sorted(_FIELD_KEYS)}")
    drift = _table(f"{where}.drift", raw.get("drift", {}))
    null_rate = _null_rate(where, f, raw)
    if f.role in (Role.ID, Role.EVENT_TIME):
        if f.role is Role.ID and f.type not in (FieldType.STRING, FieldType.INT):
            raise ContractError(
                f"{where}: the generator makes unique ids of type string or int, not"
                f" {f.type.value}; give the id field one of those types"
            )
        return FieldPlan(f.name, f.type, f.role.value, {}, {})
    common: dict[str, Any] = {"null_rate": null_rate, "low": f.min, "high": f.max}
    if f.type is FieldType.TIMESTAMP:
        return FieldPlan(f.name, f.type, "timestamp", {}, {}, **common)
    is_number = f.type in (FieldType.INT, FieldType.FLOAT)
    if is_number and "values" not in raw:
        return _numeric_plan(where, f, raw, drift, common)
    pooled = f.type is FieldType.STRING and f.role is not Role.FEATURE and f.allowed is None
    if pooled and "values" not in raw:
        pool = raw.get("pool", DEFAULT_POOL)
        if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1:
            raise ContractError(f"{where}.pool: expected an integer >= 1, got {pool!r}")
        prefix = str(raw.get("prefix", f"{f.name}-"))
        return FieldPlan(f.name, f.type, "pool", {}, {}, pool=pool, prefix=prefix, **common)
    values, weights, dweights = _choice(where, f, raw, drift)
    return FieldPlan(f.name, f.type, "choice", {}, {}, values, weights, dweights, **common)


def _null_rate(where: str, f: Field, raw: Mapping[str, Any]) -> float:
    """The field's share of nulls: as given (0 for a required, non-nullable field), else the
    default for a field that may be null."""
    null_rate = DEFAULT_NULL_RATE if (f.nullable or not f.required) else 0.0
    if "null_rate" in raw:
        null_rate = _num(where, "null_rate", raw["null_rate"])
        if not 0 <= null_rate < 1 or (null_rate > 0 and f.required and not f.nullable):
            raise ContractError(
                f"{where}.null_rate: {null_rate} must be in [0, 1), and 0 for a required,"
                " non-nullable field"
            )
    return null_rate


def _numeric_plan(
    where: str,
    f: Field,
    raw: Mapping[str, Any],
    drift: Mapping[str, Any],
    common: dict[str, Any],
) -> FieldPlan:
    """A number drawn from a distribution (the field's default, or ``dist`` with its
    parameters); ``drift`` overrides parameters after the drift point."""
    dist, params, dparams = _default_params(f)
    if "dist" in raw:
        dist = str(raw["dist"])
        if dist not in DISTS:
            raise ContractError(f"{where}.dist: got {dist!r}, expected one of {sorted(DISTS)}")
        params = {p: _num(where, p, raw.get(p)) for p in DISTS[dist]}
        dparams = dict(params)
    dparams.update({p: _num(f"{where}.drift", p, drift[p]) for p in DISTS[dist] if p in drift})
    decimals = raw.get("round", 0 if f.type is FieldType.INT else 3)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or decimals < 0:
        raise ContractError(f"{where}.round: expected an integer >= 0, got {decimals!r}")
    return FieldPlan(f.name, f.type, dist, params, dparams, decimals=decimals, **common)


def _term(where: str, raw: Any, plans: Mapping[str, FieldPlan]) -> Term:
    t = _table(where, raw)
    unknown = sorted(set(t) - _TERM_KEYS)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown}; allowed are {sorted(_TERM_KEYS)}")
    feature = t.get("feature")
    log = bool(t.get("log", False))
    center, scale = 0.0, 1.0
    if feature is not None:
        fp = plans.get(str(feature))
        if fp is None or fp.type not in (FieldType.INT, FieldType.FLOAT):
            raise ContractError(f"{where}.feature: {feature!r} is not a numeric field")
        center, scale = fp.center_scale(log=log)
        center = _num(where, "center", t["center"]) if "center" in t else center
        scale = _num(where, "scale", t["scale"]) if "scale" in t else scale
    when = []
    for i, cond in enumerate(t.get("when", [])):
        if not (isinstance(cond, list) and len(cond) == 3 and cond[1] in OPS):
            raise ContractError(
                f"{where}.when[{i}]: expected [field, op, value] with op in {OPS}, got {cond!r}"
            )
        if str(cond[0]) not in plans:
            raise ContractError(f"{where}.when[{i}]: {cond[0]!r} is not a field")
        when.append((str(cond[0]), str(cond[1]), cond[2]))
    if "weight" not in t:
        raise ContractError(f"{where}: missing key 'weight'")
    return Term(_num(where, "weight", t["weight"]), feature, log, center, scale, tuple(when))


def _default_terms(features: Sequence[FieldPlan], *, drifted: bool) -> tuple[Term, ...]:
    """Up to three features drive the label; after the drift the relation turns around."""
    terms = []
    for fp in features[:3]:
        sign = -1.0 if drifted else 1.0
        if fp.type in (FieldType.INT, FieldType.FLOAT):
            c, s = fp.center_scale(log=fp.dist == "lognormal")
            terms.append(Term(1.6 * sign, fp.name, fp.dist == "lognormal", c, s))
        elif fp.dist == "choice":
            value = fp.values[-1] if drifted else fp.values[0]
            if fp.type is FieldType.BOOL:
                value = True
            terms.append(Term(1.6, when=((fp.name, "==", value),)))
    return tuple(terms)


def _label_plan(contract: Contract, plans: Mapping[str, FieldPlan]) -> LabelPlan | None:
    if contract.label is None:
        return None
    where = f"{contract.source or contract.name}: generator.label"
    raw = _table(where, contract.generator.get("label", {}))
    drift = _table(f"{where}.drift", raw.get("drift", {}))
    features = [plans[f.name] for f in contract.features if plans[f.name].dist != "timestamp"]
    binary = contract.task is Task.BINARY_CLASSIFICATION
    base = -1.2 if binary else 0.0

    def terms(src: Mapping[str, Any], w: str, *, drifted: bool) -> tuple[Term, ...]:
        if "terms" not in src:
            return _default_terms(features, drifted=drifted)
        if not isinstance(src["terms"], list):
            raise ContractError(f"{w}.terms: expected an array of tables")
        return tuple(_term(f"{w}.terms[{i}]", t, plans) for i, t in enumerate(src["terms"]))

    intercept = _num(where, "intercept", raw.get("intercept", base))
    before = terms(raw, where, drifted=False)
    after = (
        terms(drift, f"{where}.drift", drifted=True)
        if "terms" in drift or "terms" not in raw
        else before
    )
    drift_intercept = _num(where, "drift.intercept", drift.get("intercept", intercept))
    concept = _table(f"{where}.concept", raw.get("concept", {}))
    unknown = sorted(set(concept) - {"intercept", "terms"})
    if unknown:
        raise ContractError(
            f"{where}.concept: unknown keys {unknown}; allowed are ['intercept', 'terms']"
        )
    return LabelPlan(
        intercept=intercept,
        terms=before,
        drift_intercept=drift_intercept,
        drift_terms=after,
        noise=_num(where, "noise", raw.get("noise", 0.5)),
        concept_intercept=_num(
            where, "concept.intercept", concept.get("intercept", drift_intercept)
        ),
        concept_terms=terms(concept, f"{where}.concept", drifted=True)
        if "terms" in concept
        else after,
    )


def plan_for(contract: Contract) -> Plan:
    """The generator plan of ``contract``; every error names the ``generator`` key."""
    gen = contract.generator
    where = f"{contract.source or contract.name}: generator"
    known = {"fields", "label"}
    unknown = sorted(set(gen) - known)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown}; allowed are {sorted(known)}")
    raw_fields = _table(f"{where}.fields", gen.get("fields", {}))
    names = {f.name for f in contract.fields}
    stray = sorted(set(raw_fields) - names)
    if stray:
        raise ContractError(f"{where}.fields: {stray} are not fields of the contract")
    plans = {
        f.name: _field_plan(
            contract, f, _table(f"{where}.fields.{f.name}", raw_fields.get(f.name, {}))
        )
        for f in contract.fields
    }
    return Plan(contract, plans, _label_plan(contract, plans))


__all__ = ["DISTS", "FieldPlan", "LabelPlan", "Plan", "Term", "plan_for"]
