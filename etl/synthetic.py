"""Seeded synthetic records for any data contract, with a drift scenario and poison.

What each field looks like comes from the contract's ``[generator]`` table, or from defaults
derived from its types, bounds and allowed values (see :mod:`etl.generator`). Three scenarios:

* ``stationary``: one fixed world;
* ``drift``: records before ``drift_at`` (a fraction of ``n``) come from the stationary world; the
  rest from a shifted one: numeric features move, categorical mixes change, and the label follows
  a *different relation* to the features, so a model trained before the drift ranks the drifted
  records badly and one retrained on them recovers;
* ``concept``: a concept drift. Every feature keeps its stationary distribution throughout (input
  drift detection has nothing to see); after ``drift_at`` only the label's relation to the
  features changes (``[generator.label.concept]``, else the drift relation), so a model trained
  before ranks the later records badly, and only its quality on the labels shows it.

The same ``(n, seed, scenario, drift_at, start, events_per_second, contract)`` always gives the
same rows. The event-time field advances by ``1 / events_per_second``; ids are unique across seeds.

>>> recs = generate_records(3, seed=7)      # the shipped card-transactions example
>>> recs[0]["event_time"], recs[1]["event_time"]
('2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.020000Z')
>>> generate_records(3, seed=7) == recs
True
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from etl.contract import Contract, FieldType, Task, load_contract
from etl.generator import FieldPlan, Plan, Term, plan_for


class Scenario(StrEnum):
    STATIONARY = "stationary"
    DRIFT = "drift"
    CONCEPT = "concept"


DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
POISON_KINDS = ("malformed_json", "wrong_type", "missing_required", "non_utf8", "oversize")


@dataclass(frozen=True, slots=True)
class Column:
    """One generated column: values (int64 microseconds for timestamps) and where it is null."""

    values: np.ndarray
    null: np.ndarray


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _uuid_ids(seed: int, n: int) -> list[str]:
    """UUID-shaped ids from (seed, index): unique across runs with different seeds."""
    ids = []
    for i in range(n):
        h = hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=16).hexdigest()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def _draw_dist(rng: np.random.Generator, dist: str, p: Mapping[str, float], n: int) -> np.ndarray:
    if dist == "normal":
        return rng.normal(p["mean"], p["sd"], size=n)
    if dist == "lognormal":
        return rng.lognormal(p["mu"], p["sigma"], size=n)
    if dist == "exponential":
        return rng.exponential(p["scale"], size=n)
    return rng.uniform(p["low"], p["high"], size=n)


def _draw(
    rng: np.random.Generator, fp: FieldPlan, n: int, drifted: np.ndarray, ctx: _Ctx
) -> Column:
    """Both worlds drawn for every row (a fixed number of draws per field), then picked."""
    if fp.dist == "id":
        ids: list[Any] = (
            _uuid_ids(ctx.seed, n)
            if fp.type is FieldType.STRING
            else [ctx.seed * 1_000_000_000 + i for i in range(n)]
        )
        return Column(np.asarray(ids, dtype=object), np.zeros(n, dtype=bool))
    if fp.dist == "event_time":
        return Column(ctx.event_time_us, np.zeros(n, dtype=bool))
    if fp.dist == "timestamp":
        lag = rng.uniform(0, 86_400_000_000, size=n).astype(np.int64)
        values = ctx.event_time_us - lag
    elif fp.dist == "pool":
        width = len(str(fp.pool - 1))
        picks = rng.integers(0, fp.pool, size=n).tolist()
        values = np.asarray([f"{fp.prefix}{k:0{width}d}" for k in picks], dtype=object)
    elif fp.dist == "choice":
        options = np.empty(len(fp.values), dtype=object)
        options[:] = list(fp.values)
        before = rng.choice(len(options), size=n, p=np.asarray(fp.weights) / sum(fp.weights))
        after = rng.choice(
            len(options), size=n, p=np.asarray(fp.drift_weights) / sum(fp.drift_weights)
        )
        values = options[np.where(drifted, after, before)]
        if fp.type is FieldType.INT:
            values = values.astype(np.int64)
        elif fp.type is FieldType.FLOAT:
            values = values.astype(np.float64)
    else:
        values = np.where(
            drifted,
            _draw_dist(rng, fp.dist, fp.drift_params, n),
            _draw_dist(rng, fp.dist, fp.params, n),
        )
        values = _fit_bounds(values, fp)
    null = rng.random(n) < fp.null_rate if fp.null_rate > 0 else np.zeros(n, dtype=bool)
    return Column(values, null)


def _fit_bounds(values: np.ndarray, fp: FieldPlan) -> np.ndarray:
    """Rounded to the plan's decimals and clipped into the contract's bounds."""
    values = np.round(values, fp.decimals or 0)
    if fp.low is not None or fp.high is not None:
        values = np.clip(values, fp.low, fp.high)
    return values.astype(np.int64 if fp.type is FieldType.INT else np.float64)


@dataclass(frozen=True, slots=True)
class _Ctx:
    seed: int
    event_time_us: np.ndarray


def _condition(col: Column, op: str, value: Any) -> np.ndarray:
    v = col.values
    with np.errstate(invalid="ignore"):
        if op == "==":
            out = v == value
        elif op == "!=":
            out = v != value
        else:
            num = np.asarray(v, dtype=np.float64)
            out = {">": num > value, ">=": num >= value, "<": num < value, "<=": num <= value}[op]
    hit: np.ndarray = np.asarray(out, dtype=bool) & ~col.null
    return hit


def _linear(
    terms: tuple[Term, ...], intercept: float, cols: Mapping[str, Column], n: int
) -> np.ndarray:
    z = np.full(n, intercept, dtype=np.float64)
    for t in terms:
        part = np.full(n, t.weight, dtype=np.float64)
        if t.feature is not None:
            col = cols[t.feature]
            x = np.asarray(col.values, dtype=np.float64)
            if t.log:
                x = np.log(np.maximum(x, 1e-9))
            part = part * np.where(col.null, 0.0, (x - t.center) / t.scale)
        for name, op, value in t.when:
            part = part * _condition(cols[name], op, value)
        z += part
    return z


def _label(
    rng: np.random.Generator,
    plan: Plan,
    cols: Mapping[str, Column],
    changed: np.ndarray,
    scenario: Scenario,
) -> Column:
    """The label: the stationary relation before the change, the drift or concept one after."""
    label = plan.contract.label
    lp = plan.label
    assert label is not None and lp is not None
    n = len(changed)
    after = lp.relation(drifted=True, concept=scenario is Scenario.CONCEPT)
    z = np.where(
        changed,
        _linear(after[1], after[0], cols, n),
        _linear(lp.terms, lp.intercept, cols, n),
    )
    draw = rng.random(n)
    noise = rng.normal(0.0, lp.noise, size=n)
    if plan.contract.task is Task.BINARY_CLASSIFICATION:
        hit = draw < _sigmoid(z)
        values: np.ndarray = hit if label.type is FieldType.BOOL else hit.astype(np.int64)
    else:
        fp = plan.fields[label.name]
        values = _fit_bounds(z + noise, replace(fp, decimals=fp.decimals or 3))
    return Column(values, np.zeros(n, dtype=bool))


def generate_columns(
    n: int,
    *,
    seed: int = 0,
    scenario: Scenario | str = Scenario.STATIONARY,
    drift_at: float = 0.5,
    start: datetime | None = None,
    events_per_second: float = 50.0,
    contract: Contract | None = None,
) -> dict[str, Column]:
    """Every field of ``contract`` (the card example by default) for ``n`` rows, column-wise."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= drift_at <= 1.0:
        raise ValueError(f"drift_at is a fraction of n in [0, 1], got {drift_at}")
    if events_per_second <= 0:
        raise ValueError(f"events_per_second must be > 0, got {events_per_second}")
    contract = contract or _default_contract()
    plan = _plan(contract)
    scenario = Scenario(scenario)
    start = DEFAULT_START if start is None else start
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    changed = idx >= round(drift_at * n)
    if scenario is Scenario.STATIONARY:
        changed = np.zeros(n, dtype=bool)
    # the features' world: drifted only in the drift scenario (a concept drift keeps them)
    drifted = changed if scenario is Scenario.DRIFT else np.zeros(n, dtype=bool)
    start_us = int(start.timestamp() * 1_000_000)
    event_us = start_us + np.floor(idx * (1_000_000 / events_per_second)).astype(np.int64)
    ctx = _Ctx(seed, event_us)
    label = contract.label
    cols = {
        f.name: _draw(rng, plan.fields[f.name], n, drifted, ctx)
        for f in contract.fields
        if label is None or f.name != label.name
    }
    if label is not None:
        cols[label.name] = _label(rng, plan, cols, changed, scenario)
    return {f.name: cols[f.name] for f in contract.fields}


def generate_records(
    n: int,
    *,
    seed: int = 0,
    scenario: Scenario | str = Scenario.STATIONARY,
    drift_at: float = 0.5,
    start: datetime | None = None,
    events_per_second: float = 50.0,
    contract: Contract | None = None,
) -> list[dict[str, Any]]:
    """``n`` JSON-ready records (timestamps as ISO-8601 UTC with ``Z``; a null optional field
    that may not be null is left out)."""
    contract = contract or _default_contract()
    cols = generate_columns(
        n,
        seed=seed,
        scenario=scenario,
        drift_at=drift_at,
        start=start,
        events_per_second=events_per_second,
        contract=contract,
    )
    lists: list[tuple[str, list[Any], list[bool], bool]] = []
    for f in contract.fields:
        col = cols[f.name]
        if f.type is FieldType.TIMESTAMP:
            text = np.datetime_as_string(col.values.astype("datetime64[us]"), unit="us")
            values = [f"{t}Z" for t in text.tolist()]
        else:
            values = col.values.tolist()
        lists.append((f.name, values, col.null.tolist(), f.nullable))
    out: list[dict[str, Any]] = []
    for i in range(n):
        rec: dict[str, Any] = {}
        for name, values, null, nullable in lists:
            if not null[i]:
                rec[name] = values[i]
            elif nullable:
                rec[name] = None
        out.append(rec)
    return out


def generate_frame(
    n: int,
    *,
    seed: int = 0,
    scenario: Scenario | str = Scenario.STATIONARY,
    drift_at: float = 0.5,
    start: datetime | None = None,
    events_per_second: float = 50.0,
    contract: Contract | None = None,
) -> pd.DataFrame:
    """The same rows as :func:`generate_records`, typed per the contract (timestamps UTC)."""
    contract = contract or _default_contract()
    cols = generate_columns(
        n,
        seed=seed,
        scenario=scenario,
        drift_at=drift_at,
        start=start,
        events_per_second=events_per_second,
        contract=contract,
    )
    schema = contract.arrow_schema(with_metadata=False)
    arrays = []
    for f in contract.fields:
        col = cols[f.name]
        mask = col.null if col.null.any() else None
        if f.type is FieldType.TIMESTAMP:
            arr = pa.array(col.values, pa.int64(), mask=mask).cast(f.arrow_type)
        elif f.type is FieldType.STRING:
            arr = pa.array(col.values.tolist(), pa.string(), mask=mask)
        else:
            arr = pa.array(col.values, f.arrow_type, mask=mask)
        arrays.append(arr)
    table = pa.table(arrays, schema=schema)
    frame: pd.DataFrame = table.to_pandas()
    return frame


# -- encoding and poison ------------------------------------------------------------------------


@functools.cache
def _default_contract() -> Contract:
    return load_contract()


_PLANS: dict[tuple[Contract, str], Plan] = {}


def _plan(contract: Contract) -> Plan:
    """The contract's generator plan, built once per (contract, generator table)."""
    key = (contract, json.dumps(contract.generator, sort_keys=True, default=str))
    if key not in _PLANS:
        _PLANS[key] = plan_for(contract)
    return _PLANS[key]


def encode_record(record: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as the producer puts it on the stream."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_WRONG_TYPES: dict[str, tuple[Any, ...]] = {
    "string": (42, True, 3.5, ["x"], {"v": "x"}),
    "int": ("7", 7.5, True, [7]),
    "float": ("12.50", True, [1.0], {"v": 1.0}),
    "bool": ("yes", 1, 0.0, "true"),
    "timestamp": (1767225600, True, 3.5),
}


def make_poison(
    kind: str, rng: np.random.Generator, record: dict[str, Any], *, contract: Contract | None = None
) -> bytes:
    """A payload built from ``record`` that has exactly the defect ``kind`` (see ``POISON_KINDS``).

    ``oversize`` is valid JSON of a valid record padded past ``contract.max_record_bytes`` but under
    Kinesis' 1 MiB record limit.
    """
    contract = contract or _default_contract()
    if kind == "malformed_json":
        text = encode_record(record)
        cut = int(rng.integers(1, max(2, len(text) // 2)))
        return text[:-cut]  # a truncated object never parses
    if kind == "wrong_type":
        fld = contract.fields[int(rng.integers(0, len(contract.fields)))]
        options = _WRONG_TYPES[fld.type.value]
        return encode_record({**record, fld.name: options[int(rng.integers(0, len(options)))]})
    if kind == "missing_required":
        required = [f.name for f in contract.fields if f.required]
        name = required[int(rng.integers(0, len(required)))]
        return encode_record({k: v for k, v in record.items() if k != name})
    if kind == "non_utf8":
        text = encode_record(record)
        bad = bytes([0xFF, 0xFE, int(rng.integers(0x80, 0xC0))])  # never valid UTF-8
        anchor = text.find(b'":"') + 3  # inside the first string value
        if anchor < 3:  # no string value: inside the first key instead
            anchor = 2
        return text[:anchor] + bad + text[anchor:]
    if kind == "oversize":
        limit = contract.max_record_bytes
        base = len(encode_record({**record, "padding": ""}))
        extra = int(rng.integers(1, 1024))
        pad_len = max(0, limit - base) + extra
        out = encode_record({**record, "padding": "x" * pad_len})
        if (
            len(out) >= 1024 * 1024
        ):  # pragma: no cover - only with a contract near the Kinesis limit
            raise ValueError(
                f"max_record_bytes={limit} leaves no room for an oversize record under 1 MiB"
            )
        return out
    raise ValueError(f"unknown poison kind {kind!r}; expected one of {POISON_KINDS}")


__all__ = [
    "POISON_KINDS",
    "Column",
    "Scenario",
    "encode_record",
    "generate_columns",
    "generate_frame",
    "generate_records",
    "make_poison",
]
