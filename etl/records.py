"""Decode and validate a batch of Kinesis records into an Arrow table plus dead letters.

This is the consumer's hot path, so it works column-wise: each payload is checked for size, UTF-8
and JSON once, then every contract field becomes one Python list that is type-checked with a single
``set(map(type, values))`` and converted to Arrow in one call. Only a column that fails the fast
check is walked value by value to name the records at fault, so a clean batch never pays for
per-field branching.

Every bad record becomes exactly one :class:`DeadLetter` carrying the first problem found: payload
problems first (``oversize``, ``non_utf8``, ``malformed_json``, ``not_an_object``), then field
problems in contract order. Fields the contract does not know are ignored (counted in debug logs).

Type rules: strings take JSON strings; bools take ``true``/``false`` only; ints take JSON integers
(an integral float such as ``3.0`` is accepted, ``3.5`` and ``true`` are not); floats take integers
and floats (not bools; ``NaN``/``Infinity`` tokens are not JSON and fail as ``malformed_json``);
timestamps take ISO-8601 strings with ``Z`` or an offset (naive means UTC).

>>> from datetime import UTC, datetime
>>> from etl.contract import load_contract
>>> dec = RecordDecoder(load_contract())
>>> batch = dec.decode([RawRecord(b"{", "1", "k")], shard_id="shardId-0",
...                    ingest_time=datetime(2026, 1, 1, tzinfo=UTC))
>>> batch.table.num_rows, batch.dead_letters[0].reason
(0, 'malformed_json')
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.contract import Contract, Field, FieldType

log = logging.getLogger(__name__)

#: Width of a zero-padded sequence number (AWS uses up to 56 digits; moto uses small integers).
SEQ_WIDTH = 56

_TS_UTC = pa.timestamp("us", tz="UTC")
_TS_NAIVE = pa.timestamp("us")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ONLY_NONE = frozenset({type(None)})


class Reason(StrEnum):
    """Why a record went to the dead letters."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    WRONG_TYPE = "wrong_type"
    MISSING_REQUIRED = "missing_required"
    NULL_NOT_ALLOWED = "null_not_allowed"
    OUT_OF_RANGE = "out_of_range"
    NOT_ALLOWED_VALUE = "not_allowed_value"
    NON_UTF8 = "non_utf8"
    OVERSIZE = "oversize"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as the KCL hands it over (payload already base64-decoded)."""

    data: bytes
    sequence_number: str
    partition_key: str
    approximate_arrival_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed decoding or validation, with everything needed to replay it."""

    reason: str
    detail: str
    data: bytes
    shard_id: str
    sequence_number: str
    partition_key: str
    approximate_arrival_ms: int | None

    def to_json(self, dead_at: datetime) -> str:
        """One JSON line; the payload as text when it is UTF-8, else as ``payload_base64``."""
        doc: dict[str, Any] = {"reason": self.reason, "detail": self.detail}
        try:
            doc["payload"] = self.data.decode("utf-8")
        except UnicodeDecodeError:
            doc["payload_base64"] = base64.b64encode(self.data).decode("ascii")
        doc.update(
            shard_id=self.shard_id,
            sequence_number=self.sequence_number,
            partition_key=self.partition_key,
            approximate_arrival_time=(
                _iso_ms(self.approximate_arrival_ms)
                if self.approximate_arrival_ms is not None
                else None
            ),
            dead_at=_iso(dead_at),
        )
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """The good rows as an Arrow table (lake schema without partitions) and the dead letters."""

    table: pa.Table
    dead_letters: list[DeadLetter]
    good_bytes: int


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _iso_ms(ms: int) -> str:
    return _iso(datetime.fromtimestamp(ms / 1000, tz=UTC))


# -- sequence numbers ---------------------------------------------------------------------------


def _check_sequence(seq: str) -> None:
    if not (isinstance(seq, str) and seq.isascii() and seq.isdigit()):
        raise ValueError(f"sequence number must be a string of digits, got {seq!r}")


def sequence_key(seq: str) -> int:
    """The sequence number as an integer: the only correct way to order them.

    >>> sequence_key("9") < sequence_key("10")
    True
    """
    _check_sequence(seq)
    return int(seq)


def pad_sequence(seq: str) -> str:
    """Zero-pad to :data:`SEQ_WIDTH` digits so string order equals numeric order (object keys).

    >>> pad_sequence("42")[-4:], len(pad_sequence("42"))
    ('0042', 56)
    """
    _check_sequence(seq)
    stripped = seq.lstrip("0") or "0"
    if len(stripped) > SEQ_WIDTH:
        raise ValueError(f"sequence number {seq!r} has more than {SEQ_WIDTH} digits")
    return stripped.zfill(SEQ_WIDTH)


# -- decoding -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_ALLOWED_TYPES: dict[FieldType, frozenset[type]] = {
    FieldType.STRING: frozenset({str}),
    FieldType.INT: frozenset({int}),
    FieldType.FLOAT: frozenset({int, float}),
    FieldType.BOOL: frozenset({bool}),
    FieldType.TIMESTAMP: frozenset({str}),
}
_EXPECTED: dict[FieldType, str] = {
    FieldType.STRING: "a JSON string",
    FieldType.INT: "a JSON integer",
    FieldType.FLOAT: "a JSON number",
    FieldType.BOOL: "true or false",
    FieldType.TIMESTAMP: "an ISO-8601 timestamp string",
}
_JSON_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _show(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _wrong_type(f: Field, value: Any) -> str:
    kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    return f"{f.name}: expected {_EXPECTED[f.type]}, got {kind} {_show(value)}"


def _cast_timestamps(arr: pa.Array) -> pa.Array:
    """ISO-8601 strings to UTC microseconds: zone-aware first, else naive (taken as UTC)."""
    try:
        return pc.cast(arr, _TS_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pc.cast(pc.cast(arr, _TS_NAIVE), _TS_UTC)


def _parse_timestamps(arr: pa.Array) -> tuple[pa.Array, list[int]]:
    """Parse a string array; on failure, bisect to find the unparseable positions (nulled)."""
    try:
        return _cast_timestamps(arr), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(arr) == 1:
            return pa.nulls(1, _TS_UTC), [0]
    mid = len(arr) // 2
    left, bad_left = _parse_timestamps(arr.slice(0, mid))
    right, bad_right = _parse_timestamps(arr.slice(mid))
    merged = pa.concat_arrays([left, right])
    return merged, bad_left + [mid + b for b in bad_right]


class RecordDecoder:
    """Turns KCL records into lake rows for one contract. Stateless between batches."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.schema = contract.arrow_schema(with_metadata=True, with_partitions=False)
        self._known = frozenset(f.name for f in contract.fields)
        self._json = json.JSONDecoder(parse_constant=_reject_constant).decode
        self._allowed_sets = {
            f.name: pa.array(list(f.allowed), pa.string()) for f in contract.fields if f.allowed
        }

    def decode(
        self, records: Sequence[RawRecord], *, shard_id: str, ingest_time: datetime
    ) -> DecodedBatch:
        """Decode and validate ``records``; good rows keep their input order."""
        bad: dict[int, tuple[Reason, str]] = {}
        objs, pos = self._parse_payloads(records, bad)
        m = len(objs)
        local_bad: dict[int, tuple[Reason, str]] = {}

        def flag(k: int, reason: Reason, detail: str) -> None:
            if k not in local_bad:
                local_bad[k] = (reason, detail)

        arrays = [self._column(f, objs, flag) for f in self.contract.fields]

        if log.isEnabledFor(logging.DEBUG):
            unknown = sum(len(o.keys() - self._known) for o in objs)
            if unknown:
                log.debug("ignored %d unknown fields in %d records of %s", unknown, m, shard_id)

        seqs = [records[i].sequence_number for i in pos]
        arrivals = [records[i].approximate_arrival_ms for i in pos]
        ingest_us = int(_as_utc(ingest_time).timestamp() * 1_000_000)
        arrays += [
            pa.array([shard_id] * m, pa.string()),
            pa.array(seqs, pa.string()),
            pc.multiply(pa.array(arrivals, pa.int64()), 1000).cast(_TS_UTC),
            pa.array(np.full(m, ingest_us, dtype=np.int64), pa.int64()).cast(_TS_UTC),
        ]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if local_bad:
            keep = np.ones(m, dtype=bool)
            keep[list(local_bad)] = False
            table = table.filter(pa.array(keep))
            for k, problem in local_bad.items():
                bad[pos[k]] = problem

        dead = [
            DeadLetter(
                reason=reason.value,
                detail=detail,
                data=records[i].data,
                shard_id=shard_id,
                sequence_number=records[i].sequence_number,
                partition_key=records[i].partition_key,
                approximate_arrival_ms=records[i].approximate_arrival_ms,
            )
            for i, (reason, detail) in sorted(bad.items())
        ]
        good_bytes = sum(len(r.data) for r in records) - sum(len(d.data) for d in dead)
        return DecodedBatch(table=table, dead_letters=dead, good_bytes=good_bytes)

    # -- steps ----------------------------------------------------------------------------------

    def _parse_payloads(
        self, records: Sequence[RawRecord], bad: dict[int, tuple[Reason, str]]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        limit = self.contract.max_record_bytes
        loads = self._json
        objs: list[dict[str, Any]] = []
        pos: list[int] = []
        for i, rec in enumerate(records):
            data = rec.data
            if len(data) > limit:
                bad[i] = (Reason.OVERSIZE, f"{len(data)} bytes > max_record_bytes={limit}")
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad[i] = (Reason.NON_UTF8, f"invalid UTF-8 at byte {exc.start}: {exc.reason}")
                continue
            try:
                obj = loads(text)
            except (ValueError, RecursionError) as exc:
                bad[i] = (Reason.MALFORMED_JSON, str(exc)[:200])
                continue
            if type(obj) is not dict:
                kind = _JSON_TYPE_NAMES.get(type(obj), type(obj).__name__)
                bad[i] = (Reason.NOT_AN_OBJECT, f"expected a JSON object, got {kind} {_show(obj)}")
                continue
            objs.append(obj)
            pos.append(i)
        return objs, pos

    def _column(
        self,
        f: Field,
        objs: list[dict[str, Any]],
        flag: Callable[[int, Reason, str], None],
    ) -> pa.Array:
        name = f.name
        values = [o.get(name) for o in objs]
        types = set(map(type, values))
        extra = types - _ALLOWED_TYPES[f.type]
        if extra == _ONLY_NONE:
            if not (f.nullable and not f.required):  # else a null is always fine
                self._check_nulls(f, objs, values, flag)
        elif extra:
            self._fix_values(f, objs, values, flag)
        arr = self._to_arrow(f, values, flag)
        if f.min is not None or f.max is not None:
            self._check_range(f, arr, flag)
        if f.allowed is not None:
            outside = pc.invert(pc.is_in(arr, value_set=self._allowed_sets[name]))
            for k in _true_positions(pc.and_(outside, pc.is_valid(arr))):
                flag(
                    k,
                    Reason.NOT_ALLOWED_VALUE,
                    f"{name}: {_show(values[k])} is not one of {list(f.allowed)}",
                )
        return arr

    def _check_nulls(
        self,
        f: Field,
        objs: list[dict[str, Any]],
        values: list[Any],
        flag: Callable[[int, Reason, str], None],
    ) -> None:
        """Flag missing values of a required field and nulls of a non-nullable one."""
        for k in [k for k, v in enumerate(values) if v is None]:
            self._check_null(f, objs[k], k, flag)

    @staticmethod
    def _check_null(
        f: Field, obj: dict[str, Any], k: int, flag: Callable[[int, Reason, str], None]
    ) -> None:
        if f.name not in obj:
            if f.required:
                flag(k, Reason.MISSING_REQUIRED, f"{f.name}: required field is missing")
        elif not f.nullable:
            flag(k, Reason.NULL_NOT_ALLOWED, f"{f.name}: null is not allowed")

    def _fix_values(
        self,
        f: Field,
        objs: list[dict[str, Any]],
        values: list[Any],
        flag: Callable[[int, Reason, str], None],
    ) -> None:
        """Slow path for one column: flag the values at fault and null them out (in place)."""
        allowed = _ALLOWED_TYPES[f.type]
        for k, v in enumerate(values):
            t = type(v)
            if t in allowed:
                continue
            if v is None:
                self._check_null(f, objs[k], k, flag)
                continue
            if f.type is FieldType.INT and t is float and v.is_integer():
                values[k] = int(v)
                continue
            flag(k, Reason.WRONG_TYPE, _wrong_type(f, v))
            values[k] = None

    def _to_arrow(
        self, f: Field, values: list[Any], flag: Callable[[int, Reason, str], None]
    ) -> pa.Array:
        if f.type is FieldType.TIMESTAMP:
            parsed, bad = _parse_timestamps(pa.array(values, pa.string()))
            for k in bad:
                flag(k, Reason.WRONG_TYPE, _wrong_type(f, values[k]))
            return parsed
        if f.type is FieldType.INT:
            try:
                return pa.array(values, pa.int64())
            except (OverflowError, pa.ArrowInvalid):
                for k, v in enumerate(values):
                    if v is not None and not _INT64_MIN <= v <= _INT64_MAX:
                        flag(k, Reason.OUT_OF_RANGE, f"{f.name}: {v} does not fit a 64-bit integer")
                        values[k] = None
                return pa.array(values, pa.int64())
        if f.type is FieldType.FLOAT:
            try:
                return pa.array(values, pa.float64())
            except (OverflowError, pa.ArrowInvalid):  # an integer too big for a double
                for k, v in enumerate(values):
                    if type(v) is int:
                        try:
                            float(v)
                        except OverflowError:
                            flag(
                                k,
                                Reason.OUT_OF_RANGE,
                                f"{f.name}: {_show(v)} does not fit a double",
                            )
                            values[k] = None
                return pa.array(values, pa.float64())
        return pa.array(values, f.arrow_type)

    def _check_range(
        self, f: Field, arr: pa.Array, flag: Callable[[int, Reason, str], None]
    ) -> None:
        low = pc.less(arr, f.min) if f.min is not None else None
        high = pc.greater(arr, f.max) if f.max is not None else None
        out = low if high is None else high if low is None else pc.or_(low, high)
        if out is None or not pc.any(out).as_py():
            return
        low_s = "-inf" if f.min is None else f"{f.min:g}"
        high_s = "+inf" if f.max is None else f"{f.max:g}"
        bounds = f"[{low_s}, {high_s}]"
        for k in _true_positions(out):
            flag(k, Reason.OUT_OF_RANGE, f"{f.name}: {arr[k].as_py()!r} is outside {bounds}")


def _true_positions(mask: pa.Array) -> list[int]:
    filled = pc.fill_null(mask, False)
    if not pc.any(filled).as_py():
        return []
    return [int(k) for k in np.flatnonzero(filled.to_numpy(zero_copy_only=False))]


def _as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


__all__ = [
    "SEQ_WIDTH",
    "DeadLetter",
    "DecodedBatch",
    "RawRecord",
    "Reason",
    "RecordDecoder",
    "pad_sequence",
    "sequence_key",
]
