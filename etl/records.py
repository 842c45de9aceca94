"""Decode and validate a batch of Kinesis records into an Arrow table plus dead letters.

This is the consumer's hot path. The fast path runs no Python per record: sizes and an ASCII screen
are ``map``s of C functions, msgspec decodes each payload straight into the contract's fields
(unknown fields are skipped in C), and the rows become Arrow columns in one struct-array call; the
checks the decoder cannot make (null rules, finiteness, ranges, allowed values, timestamp text)
run column-wise in Arrow/numpy. Whatever the fast path cannot vouch for goes to the reference
path, which is column-wise too: each payload is checked for size, UTF-8 and JSON once, then every
contract field becomes one Python list that is type-checked with a single ``set(map(type,
values))`` and converted to Arrow in one call; only a column that fails is walked value by value
to name the records at fault. The fast path may reject, never accept, what the reference rejects.

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
import importlib
import itertools
import json
import logging
import math
import operator
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from etl.contract import Contract, Field, FieldType

log = logging.getLogger(__name__)

#: Width of a zero-padded sequence number (AWS uses up to 56 digits; moto uses small integers).
_TS_UTC = pa.timestamp("us", tz="UTC")
_TS_NAIVE = pa.timestamp("us")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_ONLY_NONE = frozenset({type(None)})
_ROW_IN_ERROR = re.compile(r"\bin row (\d+)")
#: Up to this many values, the slow path checks a column in Python rather than with Arrow calls.
_SMALL = 64
#: Below this many candidates a batch (or a bisected part of one) goes straight to the slow path.
_FAST_MIN = 8
#: Records per Arrow parse: large enough to amortise the call, small enough that re-parsing a
#: block around a bad record stays cheap (measured: ~300k records/s of 1 KB from 256 up).
_FAST_BLOCK = 256


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
    #: One of several user records the KCL de-aggregated from one KPL record: they share its
    #: sequence number, which is a row's identity in the lake and the warehouse (not supported).
    KPL_AGGREGATED = "kpl_aggregated"


class RawRecord(NamedTuple):
    """One record as the KCL hands it over (payload already base64-decoded).

    A named tuple rather than a dataclass: the consumer builds one per record, and a tuple can be
    built in C (``map(tuple.__new__, repeat(RawRecord), rows)``) for a sixth of the cost.
    """

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
    #: payload bytes of every record in the batch, good or dead (what a buffer limit counts)
    input_bytes: int


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _iso_ms(ms: int) -> str:
    return _iso(datetime.fromtimestamp(ms / 1000, tz=UTC))


# -- sequence numbers ---------------------------------------------------------------------------


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
    """Turns KCL records into lake rows for one contract. Stateless between batches.

    ``parser`` picks the bulk decoder of the fast path: ``"msgspec"`` (typed, skips unknown fields
    cheaply; needs the optional ``msgspec`` package), ``"arrow"`` (pyarrow's JSON reader), or
    ``"auto"`` (msgspec when installed). Results are identical; only the speed differs.
    """

    def __init__(self, contract: Contract, *, parser: str = "auto") -> None:
        self.contract = contract
        self.schema = contract.arrow_schema(with_metadata=True, with_partitions=False)
        self._known = frozenset(f.name for f in contract.fields)
        self._json = json.JSONDecoder(parse_constant=_reject_constant).decode
        self._allowed_sets = {
            f.name: pa.array(list(f.allowed), pa.string()) for f in contract.fields if f.allowed
        }
        self._fields_schema = contract.arrow_schema(with_metadata=False)
        self._empty_fields = self._fields_schema.empty_table()
        # Everything nullable (missing and null are told apart by the slow path), timestamps as
        # strings (parsed column-wise afterwards, so a bad one does not fail the whole block).
        self._parse_schema = pa.schema(
            [
                pa.field(f.name, pa.string() if f.type is FieldType.TIMESTAMP else f.arrow_type)
                for f in contract.fields
            ]
        )
        self._empty_parse = self._parse_schema.empty_table()
        self._parse_struct = pa.struct(list(self._parse_schema))
        self._parse_options = pa_json.ParseOptions(
            explicit_schema=self._parse_schema, unexpected_field_behavior="ignore"
        )
        if parser not in ("auto", "msgspec", "arrow"):
            raise ValueError(f"parser must be 'auto', 'msgspec' or 'arrow', got {parser!r}")
        msgspec = _msgspec() if parser != "arrow" else None
        if parser == "msgspec" and msgspec is None:
            raise ValueError("parser='msgspec' needs the msgspec package; install it or use 'auto'")
        self.parser = "msgspec" if msgspec is not None else "arrow"
        self._typed: Callable[[bytes], Any] | None = None
        self._typed_errors: tuple[type[BaseException], ...] = (ValueError,)
        self._typed_astuple: Callable[[Any], tuple[Any, ...]] = tuple
        if msgspec is not None:
            self._build_typed(msgspec)

    def _build_typed(self, msgspec: Any) -> None:
        """A msgspec Struct mirroring the contract: same refusals as the slow path, or stricter."""
        py: dict[FieldType, type] = {
            FieldType.STRING: str,
            FieldType.INT: int,
            FieldType.FLOAT: float,
            FieldType.BOOL: bool,
            FieldType.TIMESTAMP: str,  # parsed by Arrow afterwards, exactly as the slow path does
        }
        specs: list[Any] = []
        rename: dict[str, str] = {}
        for k, f in enumerate(self.contract.fields):
            attr = f"f{k}"
            rename[attr] = f.name
            base: Any = py[f.type]
            if f.allowed is not None and f.type is FieldType.STRING:
                base = Literal[f.allowed]
            elif f.type is FieldType.FLOAT:  # bounds in C; also refuses what is not finite
                low = -sys.float_info.max if f.min is None else f.min
                high = sys.float_info.max if f.max is None else f.max
                base = Annotated[float, msgspec.Meta(ge=low, le=high)]
            elif f.type is FieldType.INT:  # bounds in C; also refuses what does not fit 64 bits
                low_i = _INT64_MIN if f.min is None else max(math.ceil(f.min), _INT64_MIN)
                high_i = _INT64_MAX if f.max is None else min(math.floor(f.max), _INT64_MAX)
                base = Annotated[int, msgspec.Meta(ge=low_i, le=high_i)]
            typ: Any = base | None if f.nullable else base
            specs.append((attr, typ) if f.required else (attr, typ, None))
        # gc=False: rows hold only scalars, so they can never be part of a reference cycle
        row = msgspec.defstruct("Row", specs, kw_only=True, rename=rename, gc=False)
        self._typed = msgspec.json.Decoder(row).decode
        self._typed_astuple = msgspec.structs.astuple
        self._typed_errors = (msgspec.MsgspecError, ValueError)

    def decode(
        self, records: Sequence[RawRecord], *, shard_id: str, ingest_time: datetime
    ) -> DecodedBatch:
        """Decode and validate ``records``; good rows keep their input order."""
        bad: dict[int, tuple[Reason, str]] = {}
        datas: list[bytes] = list(map(_DATA, records))
        sizes = np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))
        fast_table, fast_idx, slow_idx = self._fast_path(records, datas, sizes, bad)
        slow_table, slow_good = self._slow_path(records, slow_idx, bad, shard_id)
        if not slow_good:
            fields, good = fast_table, fast_idx
        elif not fast_idx:
            fields, good = slow_table, slow_good
        else:  # merge back into input order
            fast_table = pa.Table.from_arrays(fast_table.columns, schema=self._fields_schema)
            fields = pa.concat_tables([fast_table, slow_table])
            merged = np.concatenate([np.asarray(fast_idx), np.asarray(slow_good)])
            order = np.argsort(merged, kind="stable")
            fields = fields.take(pa.array(order))
            good = merged[order].tolist()

        m = len(good)
        kept = _pick(records, good)
        seqs = list(map(_SEQUENCE_NUMBER, kept))
        arrivals = list(map(_ARRIVAL_MS, kept))
        ingest_us = int(_as_utc(ingest_time).timestamp() * 1_000_000)
        arrays = [*fields.columns]
        arrays += [
            pa.repeat(pa.scalar(shard_id, pa.string()), m),
            pa.array(seqs, pa.string()),
            _arrival_times(arrivals),
            pa.repeat(pa.scalar(ingest_us, _TS_UTC), m),
        ]
        table = pa.Table.from_arrays(arrays, schema=self.schema)

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
        input_bytes = int(sizes.sum())
        good_bytes = input_bytes if m == len(records) else int(sizes[good].sum())
        return DecodedBatch(
            dead_letters=dead, table=table, good_bytes=good_bytes, input_bytes=input_bytes
        )

    # -- fast path: Arrow's JSON reader over the whole batch ------------------------------------

    def _fast_path(
        self,
        records: Sequence[RawRecord],
        datas: list[bytes],
        sizes: np.ndarray,
        bad: dict[int, tuple[Reason, str]],
    ) -> tuple[pa.Table, list[int], list[int]]:
        """Decode the plainly valid records in bulk; the rest go to the slow path.

        Returns the parsed fields table, the record indices of its rows, and the indices the slow
        path must judge. The fast path may only reject, never accept what the slow path (the
        reference) would reject: both parsers refuse type mismatches, missing required fields and
        nulls where the type has none, so only null rules, non-finite floats, ranges and allowed
        values are re-checked afterwards, column-wise.
        """
        if self._typed is not None:
            table, idx, slow = self._fast_typed(datas, sizes, bad)
        else:
            table, idx, slow = self._fast_arrow(records, bad)
        if not idx:
            return self._empty_fields, [], sorted(slow)
        table, unparsed = self._cast_timestamps(table)
        suspect = self._suspects(table, unparsed)
        if suspect is not None:
            keep = pc.invert(suspect)
            slow += [idx[k] for k in _true_positions(suspect)]
            idx = [i for i, ok in zip(idx, keep.to_pylist(), strict=True) if ok]
            table = table.filter(keep)
        slow.sort()
        return table, idx, slow  # columns as the lake wants them; the schema is set in decode

    def _fast_typed(
        self, datas: list[bytes], sizes: np.ndarray, bad: dict[int, tuple[Reason, str]]
    ) -> tuple[pa.Table, list[int], list[int]]:
        """msgspec: one typed C decode per record; unknown fields are skipped, never built.

        No Python runs per record on a clean batch: the size and UTF-8 screens are ``map``s of C
        functions, and the decodes run inside ``list.extend(map(decode, ...))``. When a decode
        raises, the rows decoded before it are already in the list, so its position is known; it
        goes to the slow path and decoding resumes after it.
        """
        limit = self.contract.max_record_bytes
        decode, errors = self._typed, self._typed_errors
        assert decode is not None
        n = len(datas)
        rejects: list[int] = (
            np.flatnonzero(sizes > limit).tolist() if n and sizes.max() > limit else []
        )
        slow: list[int] = []
        for i in rejects:
            bad[i] = (Reason.OVERSIZE, f"{sizes[i]} bytes > max_record_bytes={limit}")
        # msgspec checks UTF-8 only in the fields it builds, not in the unknown ones it skips; the
        # slow path judges any payload that is not plainly ASCII and valid UTF-8.
        ascii_flags = np.fromiter(map(bytes.isascii, datas), dtype=bool, count=n)
        if not ascii_flags.all():
            screened = set(rejects)
            for i in np.flatnonzero(~ascii_flags).tolist():
                if i not in screened and not _is_utf8(datas[i]):
                    slow.append(i)
            rejects.extend(slow)
        if rejects:
            keep = np.ones(n, dtype=bool)
            keep[rejects] = False
            cand: list[int] = np.flatnonzero(keep).tolist()
            datas = list(_pick(datas, cand))
        else:
            cand = list(range(n))
        # Straight to one tuple per row (fields in contract order): the structs never pile up.
        astuple = self._typed_astuple
        rows: list[tuple[Any, ...]] = []
        failed: list[int] = []
        at = 0
        while at < len(datas):
            try:
                rows.extend(map(astuple, map(decode, itertools.islice(datas, at, None))))
                break
            except errors:
                k = len(rows) + len(failed)  # the decode that raised
                failed.append(k)
                at = k + 1
        if failed:
            slow += [cand[k] for k in failed]
            slow.sort()
            keep = np.ones(len(cand), dtype=bool)
            keep[failed] = False
            idx = np.asarray(cand)[keep].tolist()
        else:
            idx = cand
        if not rows:
            return self._empty_parse, [], slow
        try:  # the tuples as one struct array: every column converted in a single C call
            parsed = pa.array(rows, self._parse_struct)
        except (OverflowError, UnicodeEncodeError, pa.ArrowException):  # e.g. an int over 64 bits
            return self._empty_parse, [], sorted(slow + idx)
        return pa.Table.from_arrays(parsed.flatten(), schema=self._parse_schema), idx, slow

    def _fast_arrow(
        self, records: Sequence[RawRecord], bad: dict[int, tuple[Reason, str]]
    ) -> tuple[pa.Table, list[int], list[int]]:
        """Arrow's C++ JSON reader over NDJSON blocks of the records that look well-formed."""
        limit = self.contract.max_record_bytes
        cand: list[int] = []
        slow: list[int] = []
        for i, rec in enumerate(records):
            data = rec.data
            if len(data) > limit:
                bad[i] = (Reason.OVERSIZE, f"{len(data)} bytes > max_record_bytes={limit}")
            elif (
                data
                and data[0] == 0x7B  # "{"
                and data[-1] == 0x7D  # "}"
                and b"\n" not in data
                and (data.isascii() or _is_utf8(data))
            ):
                cand.append(i)
            else:
                slow.append(i)
        if len(cand) < _FAST_MIN:
            return self._empty_parse, [], sorted(slow + cand)
        pieces: list[tuple[list[int], pa.Table]] = []
        for lo in range(0, len(cand), _FAST_BLOCK):  # a bad record re-parses one block at most
            self._parse_block(records, cand[lo : lo + _FAST_BLOCK], pieces, slow)
        if not pieces:
            return self._empty_parse, [], slow
        idx = [i for chunk, _ in pieces for i in chunk]
        table = pieces[0][1] if len(pieces) == 1 else pa.concat_tables([t for _, t in pieces])
        return table, idx, slow

    def _parse_block(
        self,
        records: Sequence[RawRecord],
        cand: list[int],
        pieces: list[tuple[list[int], pa.Table]],
        slow: list[int],
    ) -> None:
        """Parse ``cand`` as one NDJSON block, setting aside the records Arrow rejects.

        Arrow names the row for most errors ("... in row N"): that record goes to the slow path
        and the parts before and after it are parsed on their own. Errors without a row (a value
        that does not convert) bisect the block. Small remainders go to the slow path directly.
        """
        if len(cand) < _FAST_MIN:
            slow.extend(cand)
            return
        block = b"\n".join([records[i].data for i in cand])
        try:
            table = pa_json.read_json(
                pa.py_buffer(block),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=len(block) + 1),
                parse_options=self._parse_options,
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            found = _ROW_IN_ERROR.search(str(exc))
            row = int(found.group(1)) if found else -1
            if 0 <= row < len(cand):
                slow.append(cand[row])
                self._parse_block(records, cand[:row], pieces, slow)
                self._parse_block(records, cand[row + 1 :], pieces, slow)
                return
            table = None
        if table is not None and table.num_rows == len(cand):
            pieces.append((cand, table))
            return
        mid = len(cand) // 2
        self._parse_block(records, cand[:mid], pieces, slow)
        self._parse_block(records, cand[mid:], pieces, slow)

    def _cast_timestamps(self, table: pa.Table) -> tuple[pa.Table, list[int]]:
        """Timestamps arrive as strings; returns the table and the rows whose text did not parse."""
        unparsed: list[int] = []
        for f in self.contract.fields:
            if f.type is FieldType.TIMESTAMP:
                pos = table.schema.get_field_index(f.name)
                parsed, bad = _parse_timestamps(table.column(pos).combine_chunks())
                unparsed += bad
                table = table.set_column(pos, f.name, parsed)
        return table, unparsed

    @staticmethod
    def _numbers_plainly_fine(f: Field, col: pa.ChunkedArray) -> bool:
        """Aggregates instead of a mask per rule: all finite and min/max within the bounds."""
        if not col.null_count:  # numpy's min/max are cheaper calls, and NaN propagates to both
            values = col.to_numpy()
            if not len(values):
                return True
            low, high = values.min().item(), values.max().item()
            if f.type is FieldType.FLOAT and not (math.isfinite(low) and math.isfinite(high)):
                return False
            return (f.min is None or low >= f.min) and (f.max is None or high <= f.max)
        if f.type is FieldType.FLOAT:
            total = pc.sum(col).as_py()
            if total is not None and not math.isfinite(total):
                return False
        mm = pc.min_max(col).as_py()
        low, high = mm["min"], mm["max"]
        if low is None:
            return True
        return (f.min is None or low >= f.min) and (f.max is None or high <= f.max)

    def _suspects(self, table: pa.Table, unparsed: list[int]) -> pa.Array | None:
        """Rows the fast path cannot vouch for (null rules, non-finite floats, ranges, allowed)."""
        masks: list[pa.Array] = []
        if unparsed:
            flags = np.zeros(table.num_rows, dtype=bool)
            flags[unparsed] = True
            masks.append(pa.array(flags))
        if self._typed is not None:
            # msgspec refused what the contract refuses: wrong types, missing required fields,
            # nulls where they are not allowed (a null it returns is a missing optional field),
            # numbers out of bounds or not finite, strings not allowed. Only timestamp text is left.
            return masks[0] if masks else None
        for f in self.contract.fields:
            col = table.column(f.name)
            if col.null_count and not (f.nullable and not f.required):
                masks.append(pc.is_null(col))
            if f.is_numeric and not self._numbers_plainly_fine(f, col):
                if f.type is FieldType.FLOAT:
                    masks.append(pc.invert(pc.is_finite(col)))
                if f.min is not None:
                    masks.append(pc.less(col, f.min))
                if f.max is not None:
                    masks.append(pc.greater(col, f.max))
            if f.allowed is not None:
                masks.append(pc.invert(pc.is_in(col, value_set=self._allowed_sets[f.name])))
        masks = [pc.fill_null(m, False) for m in masks]
        masks = [m for m in masks if pc.any(m).as_py()]
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = pc.or_(out, m)
        return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out

    # -- slow path: json.loads per record, then column-wise checks -----------------------------

    def _slow_path(
        self,
        records: Sequence[RawRecord],
        indices: list[int],
        bad: dict[int, tuple[Reason, str]],
        shard_id: str,
    ) -> tuple[pa.Table, list[int]]:
        if not indices:
            return self._empty_fields, []
        objs, pos = self._parse_payloads(records, indices, bad)
        if not objs:  # every one failed as a payload (the usual case for poison)
            return self._empty_fields, []
        local_bad: dict[int, tuple[Reason, str]] = {}

        def flag(k: int, reason: Reason, detail: str) -> None:
            if k not in local_bad:
                local_bad[k] = (reason, detail)

        if log.isEnabledFor(logging.DEBUG):
            unknown = sum(len(o.keys() - self._known) for o in objs)
            if unknown:
                log.debug(
                    "ignored %d unknown fields in %d records of %s", unknown, len(objs), shard_id
                )
        columns: list[list[Any] | pa.Array] = []
        for f in self.contract.fields:
            columns.append(self._column(f, objs, flag))
            if len(local_bad) == len(objs):  # all dead (the usual case here): the first problem
                break  # of each is found, later fields cannot change a verdict
        for k, problem in local_bad.items():
            bad[pos[k]] = problem
        if len(local_bad) == len(objs):
            return self._empty_fields, []
        keep = [k for k in range(len(objs)) if k not in local_bad]
        arrays = [
            _survivors(f, col, keep if local_bad else None)
            for f, col in zip(self.contract.fields, columns, strict=True)
        ]
        return pa.Table.from_arrays(arrays, schema=self._fields_schema), [pos[k] for k in keep]

    # -- steps ----------------------------------------------------------------------------------

    def _parse_payloads(
        self, records: Sequence[RawRecord], indices: list[int], bad: dict[int, tuple[Reason, str]]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        limit = self.contract.max_record_bytes
        loads = self._json
        objs: list[dict[str, Any]] = []
        pos: list[int] = []
        for i in indices:
            data = records[i].data
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
    ) -> list[Any] | pa.Array:
        """Check one field of every object: its values (bad ones nulled) or their Arrow array.

        A few values are checked in Python and stay a list (Arrow's per-call cost dominates there,
        and most of them belong to records that are dead by the end); timestamps and longer
        columns are converted and checked column-wise in Arrow. Both give the same verdicts.
        """
        name = f.name
        values = [o.get(name) for o in objs]
        types = set(map(type, values))
        extra = types - _ALLOWED_TYPES[f.type]
        if extra == _ONLY_NONE:
            if not (f.nullable and not f.required):  # else a null is always fine
                self._check_nulls(f, objs, values, flag)
        elif extra:
            self._fix_values(f, objs, values, flag)
        if len(values) <= _SMALL and f.type is not FieldType.TIMESTAMP:
            self._check_values(f, values, flag)
            return values
        arr = self._to_arrow(f, values, flag)
        if f.type is FieldType.FLOAT and not _finite_sum(arr):
            for k in _true_positions(pc.invert(pc.is_finite(arr))):
                flag(k, *_not_finite(f, values[k]))
        if f.min is not None or f.max is not None:
            self._check_range(f, arr, flag)
        if f.allowed is not None:
            outside = pc.invert(pc.is_in(arr, value_set=self._allowed_sets[name]))
            for k in _true_positions(pc.and_(outside, pc.is_valid(arr))):
                flag(k, *_not_allowed(f, values[k]))
        return arr

    @staticmethod
    def _check_values(
        f: Field, values: list[Any], flag: Callable[[int, Reason, str], None]
    ) -> None:
        """The column-wise checks of :meth:`_column`, value by value, with the same details.

        Values at fault are nulled; a float column's integers become the doubles Arrow would hold.
        """
        low, high = f.min, f.max
        for k, v in enumerate(values):
            if v is None:
                continue
            problem: tuple[Reason, str] | None = None
            if f.type is FieldType.STRING:
                try:
                    v.encode("utf-8")
                except UnicodeEncodeError:
                    problem = _bad_unicode(f, v)
            elif f.type is FieldType.INT and not _INT64_MIN <= v <= _INT64_MAX:
                problem = _over_int64(f, v)
            elif f.type is FieldType.FLOAT:
                try:
                    values[k] = x = float(v)
                except OverflowError:
                    problem = _over_double(f, v)
                else:
                    if not math.isfinite(x):
                        problem = _not_finite(f, v)
            if problem is None and f.is_numeric:
                x = values[k]
                if (low is not None and x < low) or (high is not None and x > high):
                    problem = _outside(f, x)
            if problem is None and f.allowed is not None and v not in f.allowed:
                problem = _not_allowed(f, v)
            if problem is not None:
                flag(k, *problem)
                values[k] = None

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
            parsed, bad = _parse_timestamps(self._strings(f, values, flag))
            for k in bad:
                flag(k, Reason.WRONG_TYPE, _wrong_type(f, values[k]))
            return parsed
        if f.type is FieldType.INT:
            try:
                return pa.array(values, pa.int64())
            except (OverflowError, pa.ArrowInvalid):
                for k, v in enumerate(values):
                    if v is not None and not _INT64_MIN <= v <= _INT64_MAX:
                        flag(k, *_over_int64(f, v))
                        values[k] = None
                return pa.array(values, pa.int64())
        if f.type is FieldType.FLOAT:
            try:
                return pa.array(values, pa.float64())
            except (OverflowError, pa.ArrowInvalid):
                # An integer past 2**53: Arrow refuses to round it, JSON readers (and the fast
                # path) take the nearest double. Past ~1.8e308 there is none.
                for k, v in enumerate(values):
                    if type(v) is int:
                        try:
                            values[k] = float(v)
                        except OverflowError:
                            flag(k, *_over_double(f, v))
                            values[k] = None
                return pa.array(values, pa.float64())
        if f.type is FieldType.STRING:
            return self._strings(f, values, flag)
        return pa.array(values, f.arrow_type)

    @staticmethod
    def _strings(f: Field, values: list[Any], flag: Callable[[int, Reason, str], None]) -> pa.Array:
        try:
            return pa.array(values, pa.string())
        except (UnicodeEncodeError, pa.ArrowException):  # "\ud800": a lone surrogate escape
            for k, v in enumerate(values):
                try:
                    if v is not None:
                        v.encode("utf-8")
                except UnicodeEncodeError:
                    flag(k, *_bad_unicode(f, v))
                    values[k] = None
            return pa.array(values, pa.string())

    def _check_range(
        self, f: Field, arr: pa.Array, flag: Callable[[int, Reason, str], None]
    ) -> None:
        mm = pc.min_max(arr).as_py()  # one aggregate; the masks only when a bound is crossed
        if mm["min"] is None or (
            (f.min is None or mm["min"] >= f.min) and (f.max is None or mm["max"] <= f.max)
        ):
            return
        low = pc.less(arr, f.min) if f.min is not None else None
        high = pc.greater(arr, f.max) if f.max is not None else None
        out = low if high is None else high if low is None else pc.or_(low, high)
        if out is None or not pc.any(out).as_py():
            return
        for k in _true_positions(out):
            flag(k, *_outside(f, arr[k].as_py()))


def _bounds(f: Field) -> str:
    low = "-inf" if f.min is None else f"{f.min:g}"
    high = "+inf" if f.max is None else f"{f.max:g}"
    return f"[{low}, {high}]"


# One wording per problem, whichever check finds it (column-wise in Arrow or value by value).


def _not_allowed(f: Field, value: Any) -> tuple[Reason, str]:
    return (
        Reason.NOT_ALLOWED_VALUE,
        f"{f.name}: {_show(value)} is not one of {list(f.allowed or ())}",
    )


def _not_finite(f: Field, value: Any) -> tuple[Reason, str]:
    return Reason.OUT_OF_RANGE, f"{f.name}: {_show(value)} is not a finite number"


def _outside(f: Field, value: Any) -> tuple[Reason, str]:
    return Reason.OUT_OF_RANGE, f"{f.name}: {value!r} is outside {_bounds(f)}"


def _over_int64(f: Field, value: int) -> tuple[Reason, str]:
    return Reason.OUT_OF_RANGE, f"{f.name}: {value} does not fit a 64-bit integer"


def _over_double(f: Field, value: int) -> tuple[Reason, str]:
    return Reason.OUT_OF_RANGE, f"{f.name}: {_show(value)} does not fit a double"


def _bad_unicode(f: Field, value: str) -> tuple[Reason, str]:
    return Reason.NON_UTF8, f"{f.name}: {_show(value)} is not valid Unicode"


def _survivors(f: Field, column: list[Any] | pa.Array, keep: list[int] | None) -> pa.Array:
    """The kept rows of a checked column (all of them when ``keep`` is None) as Arrow."""
    if isinstance(column, list):
        values = column if keep is None else [column[k] for k in keep]
        return pa.array(values, f.arrow_type)
    return column if keep is None else column.take(pa.array(keep, pa.int64()))


_T = TypeVar("_T")
_DATA = operator.attrgetter("data")
_SEQUENCE_NUMBER = operator.attrgetter("sequence_number")
_ARRIVAL_MS = operator.attrgetter("approximate_arrival_ms")


def _pick(records: Sequence[_T], good: list[int]) -> Sequence[_T]:
    """``records[i] for i in good`` (ascending, distinct), gathered in C."""
    if len(good) == len(records):  # distinct and in range: that is every record, in order
        return records
    if len(good) < 2:  # itemgetter of one index returns the item, not a tuple
        return [records[i] for i in good]
    picked: tuple[_T, ...] = operator.itemgetter(*good)(records)
    return picked


def _finite_sum(arr: pa.Array) -> bool:
    """True when every value is finite (or null): the sum is then finite too, barring overflow."""
    total = pc.sum(arr).as_py()
    return total is None or math.isfinite(total)


def _arrival_times(arrivals: list[int | None]) -> pa.Array:
    """Milliseconds since the epoch (or None) to UTC microseconds."""
    try:
        us = np.fromiter(arrivals, dtype=np.int64, count=len(arrivals)) * 1000
        return pa.array(us).view(_TS_UTC)
    except TypeError:  # a None: the KCL did not say
        return pc.multiply(pa.array(arrivals, pa.int64()), 1000).cast(_TS_UTC)


def _true_positions(mask: pa.Array) -> list[int]:
    filled = pc.fill_null(mask, False)
    if not pc.any(filled).as_py():
        return []
    return [int(k) for k in np.flatnonzero(filled.to_numpy(zero_copy_only=False))]


def _msgspec() -> Any:
    """The optional msgspec module, or None."""
    try:
        return importlib.import_module("msgspec")
    except ImportError:
        return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


__all__ = [
    "DeadLetter",
    "DecodedBatch",
    "RawRecord",
    "Reason",
    "RecordDecoder",
]
