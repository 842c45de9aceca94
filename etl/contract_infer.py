"""Propose a data contract from sample records (``driftline contract infer``), for a person to edit.

Pure: records in, a contract document (and its TOML text) out. What it decides, field by field:

* type: ``bool`` / ``int`` / ``float`` / ``string``, and ``timestamp`` for strings that are all
  ISO-8601 date-times; a field seen with two types becomes ``string`` with a note;
* ``required = false`` when some record lacks the field, ``nullable = true`` when one has null;
* numeric bounds from the data, widened by ``margin`` of the observed range on each side (never
  below 0 when nothing was negative; whole numbers for ``int``);
* string fields with few distinct values (at most ``max_categories``, and each value seen at least
  twice on average) become categorical features with those ``allowed`` values;
* the record id: a field present, non-null and distinct in every record (``*_id``/``id`` names
  first); the event time: a timestamp field present in every record (``*time*``/``*_at`` first);
* the partition key: another always-present string field with many values (an entity id such as a
  device), else the record id.

Numeric, boolean and categorical fields become features, other strings attributes. No label is
guessed: mark it yourself (``role = "label"``).

>>> doc = infer_contract([{"id": "a", "t": "2026-01-01T00:00:00Z", "x": 1.5},
...                       {"id": "b", "t": "2026-01-01T00:00:01Z", "x": 2.5}], name="demo")
>>> [(f["name"], f["type"], f["role"]) for f in doc.fields]
[('id', 'string', 'id'), ('t', 'timestamp', 'event_time'), ('x', 'float', 'feature')]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etl.contract import METADATA_COLUMNS, PARTITION_COLUMNS, WAREHOUSE_LOADED_AT, parse_contract
from etl.exceptions import ContractError
from etl.identifiers import identifier_problem

DEFAULT_MARGIN = 0.1
DEFAULT_MAX_CATEGORIES = 20
DEFAULT_MAX_RECORD_BYTES = 64 * 1024
KINESIS_MAX_RECORD_BYTES = 1024 * 1024
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")


@dataclass
class _Seen:
    """What the sample showed of one field."""

    name: str
    present: int = 0
    nulls: int = 0
    types: set[str] = field(default_factory=set)
    low: float = math.inf
    high: float = -math.inf
    #: Count per distinct non-null value (strings as themselves, numbers by their repr).
    values: dict[str, int] = field(default_factory=dict)
    #: False once a string value is not an ISO-8601 date-time.
    timestamps: bool = True

    def add(self, value: Any) -> None:
        self.present += 1
        if value is None:
            self.nulls += 1
            return
        kind = _kind(value)
        self.types.add(kind)
        if kind in ("int", "float") and math.isfinite(value):
            self.low, self.high = min(self.low, value), max(self.high, value)
        if kind == "string":
            self.timestamps = self.timestamps and _is_timestamp(value)
        key = value if isinstance(value, str) else repr(value)
        self.values[key] = self.values.get(key, 0) + 1


@dataclass(frozen=True)
class InferredContract:
    """A proposed contract: ``doc`` parses with :func:`etl.contract.parse_contract`."""

    doc: dict[str, Any]
    records: int
    notes: dict[str, str]

    @property
    def fields(self) -> list[dict[str, Any]]:
        fields: list[dict[str, Any]] = self.doc["fields"]
        return fields

    def to_toml(self) -> str:
        return render_toml(self)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"  # objects and arrays: the contract has no type for them


def _is_timestamp(text: str) -> bool:
    if not _ISO.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def infer_contract(
    records: Iterable[Mapping[str, Any]],
    *,
    name: str,
    margin: float = DEFAULT_MARGIN,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    max_line_bytes: int = 0,
) -> InferredContract:
    """A contract proposal for ``records`` (parsed JSON objects); see the module docstring."""
    seen: dict[str, _Seen] = {}
    n = 0
    for record in records:
        if not isinstance(record, Mapping):
            raise ContractError(f"sample record {n + 1} is not a JSON object")
        n += 1
        for key, value in record.items():
            seen.setdefault(key, _Seen(key)).add(value)
    if n == 0:
        raise ContractError("the sample has no records; pass a JSON-lines file of real records")
    _check_names(name, seen)
    notes: dict[str, str] = {}
    fields = [_field(s, n, margin, max_categories, notes) for s in seen.values()]
    id_name = _pick_id(seen, n, fields)
    time_name = _pick_event_time(seen, n, fields)
    for f in fields:
        if f["name"] == id_name:
            f["role"] = "id"
            f.pop("allowed", None)
        elif f["name"] == time_name:
            f["role"] = "event_time"
    partition_key = _pick_partition_key(seen, n, fields, id_name)
    doc: dict[str, Any] = {
        "name": name,
        "version": 1,
        "partition_key": partition_key,
        "max_record_bytes": _record_limit(max_line_bytes),
        "fields": fields,
    }
    parse_contract(doc, "<inferred>")  # what is proposed must load
    return InferredContract(doc=doc, records=n, notes=notes)


def _check_names(name: str, seen: Mapping[str, _Seen]) -> None:
    problem = identifier_problem(name)
    if problem is not None:
        raise ContractError(f"contract name: {problem}; pass --name")
    reserved = set(METADATA_COLUMNS) | set(PARTITION_COLUMNS) | {WAREHOUSE_LOADED_AT}
    bad = {k: identifier_problem(k) for k in seen}
    bad.update({k: "the pipeline adds a column of this name" for k in seen if k in reserved})
    wrong = {k: v for k, v in bad.items() if v is not None}
    if wrong:
        listed = "; ".join(f"{k!r}: {v}" for k, v in sorted(wrong.items()))
        raise ContractError(
            f"record keys must be lower-case identifiers that no SQL engine reserves: {listed}."
            " The contract names fields exactly as the records do: rename them at the producer"
        )


def _field(
    s: _Seen, n: int, margin: float, max_categories: int, notes: dict[str, str]
) -> dict[str, Any]:
    types = s.types or {"string"}
    if types == {"int", "float"}:
        ftype = "float"
    elif len(types) == 1 and types != {"other"}:
        ftype = next(iter(types))
    else:
        ftype = "string"
        notes[s.name] = (
            f"seen as {sorted(types)}; proposed as string: records of another type become dead"
            " letters (wrong_type) until you decide"
        )
    if ftype == "string" and s.timestamps and s.values:
        ftype = "timestamp"
    out: dict[str, Any] = {"name": s.name, "type": ftype, "role": "attribute"}
    out["required"] = s.present == n
    out["nullable"] = s.nulls > 0
    if ftype in ("int", "float") and s.low <= s.high:
        out["role"] = "feature"
        out.update(_bounds(s.low, s.high, margin, integer=ftype == "int"))
    elif ftype == "bool":
        out["role"] = "feature"
    elif ftype == "string":
        non_null = s.present - s.nulls
        if len(s.values) <= max_categories and non_null >= 2 * len(s.values):
            out["role"] = "feature"
            out["allowed"] = sorted(s.values)
    return out


def _bounds(low: float, high: float, margin: float, *, integer: bool) -> dict[str, float]:
    pad = (high - low) * margin or abs(high) * margin or 1.0
    lo, hi = low - pad, high + pad
    if low >= 0:
        lo = max(lo, 0.0)
    if integer:
        return {"min": float(math.floor(lo)), "max": float(math.ceil(hi))}
    return {"min": _round(lo, up=False), "max": _round(hi, up=True)}


def _round(x: float, *, up: bool) -> float:
    """Rounded outward (never into the data) to four significant digits: readable bounds."""
    if x == 0:
        return 0.0
    scale = 10.0 ** (3 - math.floor(math.log10(abs(x))))
    return (math.ceil(x * scale) if up else math.floor(x * scale)) / scale


def _always(s: _Seen, n: int) -> bool:
    return s.present == n and s.nulls == 0


def _pick_id(seen: Mapping[str, _Seen], n: int, fields: list[dict[str, Any]]) -> str:
    types = {f["name"]: f["type"] for f in fields}
    unique = [
        s.name
        for s in seen.values()
        if _always(s, n) and types[s.name] in ("string", "int") and len(s.values) == n
    ]
    # A distinct string beats a distinct integer (which may be a counter that happens to be).
    pool = [u for u in unique if types[u] == "string"] or unique
    if not pool:
        raise ContractError(
            "no field is present, non-null and distinct in every sample record, so none can be"
            " the record id; add one at the producer (e.g. a UUID per record)"
        )
    return sorted(pool, key=lambda k: (not _looks_like_id(k), list(seen).index(k)))[0]


def _looks_like_id(name: str) -> bool:
    return name == "id" or name.endswith("_id") or name.endswith("id")


def _pick_event_time(seen: Mapping[str, _Seen], n: int, fields: list[dict[str, Any]]) -> str:
    times: list[str] = [
        f["name"] for f in fields if f["type"] == "timestamp" and _always(seen[f["name"]], n)
    ]
    if not times:
        raise ContractError(
            "no field holds an ISO-8601 date-time (e.g. 2026-03-01T08:00:00Z) in every sample"
            " record, so none can be the event time; add one at the producer"
        )

    def timeish(k: str) -> bool:
        return "time" in k or k.endswith("_at") or k.endswith("_ts") or k == "ts"

    return sorted(times, key=lambda k: (not timeish(k), list(seen).index(k)))[0]


def _pick_partition_key(
    seen: Mapping[str, _Seen], n: int, fields: list[dict[str, Any]], id_name: str
) -> str:
    entity: list[str] = [
        f["name"]
        for f in fields
        if f["type"] == "string"
        and f["role"] == "attribute"
        and f["name"] != id_name
        and _always(seen[f["name"]], n)
    ]
    if not entity:
        return id_name
    return sorted(entity, key=lambda k: (not _looks_like_id(k), list(seen).index(k)))[0]


def _record_limit(max_line_bytes: int) -> int:
    """Room for records four times the largest sample line, within Kinesis' 1 MiB."""
    want = max(DEFAULT_MAX_RECORD_BYTES, 4 * max_line_bytes)
    return min(KINESIS_MAX_RECORD_BYTES, -(-want // 1024) * 1024)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML basic strings
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def render_toml(inferred: InferredContract) -> str:
    """The proposal as a commented TOML contract file."""
    doc = inferred.doc
    lines = [
        f"# Data contract proposed by `driftline contract infer` from {inferred.records} sample"
        " records.",
        "# Review every field: bounds and allowed values come from the sample only (records",
        '# outside them become dead letters), and mark the training target with role = "label".',
        "# Check it with `driftline contract check PATH`; docs/contracts.md explains every key.",
    ]
    for key in ("name", "version", "partition_key", "max_record_bytes"):
        lines.append(f"{key} = {_toml_value(doc[key])}")
    for f in doc["fields"]:
        lines.append("")
        note = inferred.notes.get(f["name"])
        if note:
            lines.append(f"# NOTE: {note}")
        lines.append("[[fields]]")
        for key in ("name", "type", "role", "required", "nullable", "min", "max", "allowed"):
            if key in f:
                lines.append(f"{key} = {_toml_value(f[key])}")
    return "\n".join(lines) + "\n"
