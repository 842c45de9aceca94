"""The fast path: msgspec decodes each payload straight into the contract's fields, in C.

No Python runs per record on a clean batch: the size and UTF-8 screens are ``map``s of C functions,
the decodes run inside ``list.extend(map(decode, ...))``, and the rows become Arrow columns in one
struct-array call. msgspec refuses what the contract refuses (wrong types, missing required fields,
nulls where none are allowed, numbers out of bounds or not finite, ints past 64 bits, strings not
allowed), so only timestamp text is left to check afterwards, column-wise in Arrow.

The fast path may reject, never accept, what the reference path rejects: a record it cannot vouch
for goes to the reference path, which finds and words the problem.
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import msgspec
import numpy as np
import pyarrow as pa

from etl.contract import Contract, Field, FieldType
from etl.records._checks import INT64_MAX, INT64_MIN, oversize, parse_timestamps
from etl.records._types import Problem

_T = TypeVar("_T")

#: The Python type msgspec decodes each field type into (timestamps stay text for Arrow to parse).
_PY_TYPES: dict[FieldType, type] = {
    FieldType.STRING: str,
    FieldType.INT: int,
    FieldType.FLOAT: float,
    FieldType.BOOL: bool,
    FieldType.TIMESTAMP: str,
}


class Split(NamedTuple):
    """What the fast path made of a batch."""

    #: the decoded fields of the records it vouches for, timestamps parsed
    table: pa.Table
    #: the input positions of the table's rows, ascending
    rows: list[int]
    #: the input positions the reference path must judge, ascending
    rest: list[int]


class FastPath:
    """Decodes the plainly valid records of a batch; sets aside the rest. Stateless."""

    def __init__(self, contract: Contract) -> None:
        self._limit = contract.max_record_bytes
        self._decode = msgspec.json.Decoder(_row_type(contract)).decode
        # Timestamps as strings: parsed column-wise afterwards, so a bad one fails only its row.
        self._schema = pa.schema(
            [
                pa.field(f.name, pa.string() if f.type is FieldType.TIMESTAMP else f.arrow_type)
                for f in contract.fields
            ]
        )
        self._struct = pa.struct(list(self._schema))
        self._timestamps = [
            k for k, f in enumerate(contract.fields) if f.type is FieldType.TIMESTAMP
        ]
        self._empty = contract.arrow_schema(with_metadata=False).empty_table()

    def decode(self, datas: list[bytes], sizes: np.ndarray, bad: dict[int, Problem]) -> Split:
        """Decode ``datas``; oversize payloads go to ``bad``, doubtful ones to ``Split.rest``."""
        cand, rest = self._screen(datas, sizes, bad)
        tuples, failed = self._decode_each(pick(datas, cand))
        rows, moved, _ = _split(cand, failed)
        table, refused = self._to_table(tuples)
        rows, moved_too, _ = _split(rows, refused)
        rest += moved + moved_too
        if not rows:
            return Split(self._empty, [], sorted(rest))
        table, unparsed = self._parse_timestamps(table)
        rows, moved, keep = _split(rows, unparsed)
        if keep is not None:
            rest += moved
            table = table.filter(pa.array(keep))
        rest.sort()
        return Split(table, rows, rest)  # columns as the lake wants them; decode sets the schema

    def _screen(
        self, datas: list[bytes], sizes: np.ndarray, bad: dict[int, Problem]
    ) -> tuple[list[int], list[int]]:
        """(candidates for msgspec, payloads for the reference path); oversize ones are dead.

        msgspec checks UTF-8 only in the fields it builds, not in the unknown ones it skips; the
        reference path judges any payload that is not plainly ASCII and valid UTF-8.
        """
        n = len(datas)
        limit = self._limit
        dead: list[int] = (
            np.flatnonzero(sizes > limit).tolist() if n and sizes.max() > limit else []
        )
        for i in dead:
            bad[i] = oversize(int(sizes[i]), limit)
        rest: list[int] = []
        ascii_flags = np.fromiter(map(bytes.isascii, datas), dtype=bool, count=n)
        if not ascii_flags.all():
            screened = set(dead)
            rest = [
                i
                for i in np.flatnonzero(~ascii_flags).tolist()
                if i not in screened and not _is_utf8(datas[i])
            ]
        if not dead and not rest:
            return list(range(n)), rest
        keep = np.ones(n, dtype=bool)
        keep[dead + rest] = False
        return np.flatnonzero(keep).tolist(), rest

    def _decode_each(self, datas: Sequence[bytes]) -> tuple[list[tuple[Any, ...]], list[int]]:
        """One tuple per decoded payload (fields in contract order) and the positions that failed.

        When a decode raises, the rows decoded before it are already in the list, so its position
        is known; decoding resumes after it. The structs never pile up: each becomes a tuple.
        """
        decode, astuple = self._decode, msgspec.structs.astuple
        tuples: list[tuple[Any, ...]] = []
        failed: list[int] = []
        at = 0
        while at < len(datas):
            try:
                tuples.extend(map(astuple, map(decode, itertools.islice(datas, at, None))))
                break
            except (msgspec.MsgspecError, ValueError):
                at = len(tuples) + len(failed)  # the decode that raised
                failed.append(at)
                at += 1
        return tuples, failed

    def _to_table(self, tuples: list[tuple[Any, ...]]) -> tuple[pa.Table, list[int]]:
        """The tuples as one table, and the positions of those Arrow refuses (left out)."""
        parts, refused = self._to_structs(tuples, 0)
        if len(parts) != 1:
            parts = [pa.concat_arrays(parts) if parts else pa.array([], self._struct)]
        return pa.Table.from_arrays(parts[0].flatten(), schema=self._schema), refused

    def _to_structs(
        self, tuples: Sequence[tuple[Any, ...]], at: int
    ) -> tuple[list[pa.StructArray], list[int]]:
        """Every column in a single C call; when Arrow refuses a value (a lone surrogate in a
        string), bisect to set aside only the tuples that hold one."""
        try:
            return [pa.array(tuples, self._struct)], []
        except (OverflowError, UnicodeEncodeError, pa.ArrowException):
            if len(tuples) == 1:
                return [], [at]
        mid = len(tuples) // 2
        left, refused_left = self._to_structs(tuples[:mid], at)
        right, refused_right = self._to_structs(tuples[mid:], at + mid)
        return left + right, refused_left + refused_right

    def _parse_timestamps(self, table: pa.Table) -> tuple[pa.Table, list[int]]:
        """The table with timestamps parsed, and the rows whose text did not parse."""
        unparsed: list[int] = []
        for pos in self._timestamps:
            field = table.schema.field(pos)
            parsed, bad = parse_timestamps(table.column(pos).combine_chunks())
            unparsed += bad
            table = table.set_column(pos, field.name, parsed)
        return table, unparsed


def _row_type(contract: Contract) -> Any:
    """A msgspec Struct mirroring the contract: the same refusals as the reference path, or more.

    Attributes are ``f0``, ``f1``, ... renamed to the field names, so any field name works.
    """
    specs: list[Any] = []
    for k, f in enumerate(contract.fields):
        typ: Any = _value_type(f)
        if f.nullable:
            typ = typ | None
        specs.append((f"f{k}", typ) if f.required else (f"f{k}", typ, None))
    rename = {f"f{k}": f.name for k, f in enumerate(contract.fields)}
    # gc=False: rows hold only scalars, so they can never be part of a reference cycle
    return msgspec.defstruct("Row", specs, kw_only=True, rename=rename, gc=False)


def _value_type(f: Field) -> Any:
    """The type msgspec checks a non-null value of ``f`` against, bounds and allowed values in."""
    if f.allowed is not None and f.type is FieldType.STRING:
        return Literal[f.allowed]
    if f.type is FieldType.FLOAT:  # bounds in C; also refuses what is not finite
        low = -sys.float_info.max if f.min is None else f.min
        high = sys.float_info.max if f.max is None else f.max
        return Annotated[float, msgspec.Meta(ge=low, le=high)]
    if f.type is FieldType.INT:  # bounds in C; also refuses what does not fit 64 bits
        low_i = INT64_MIN if f.min is None else max(math.ceil(f.min), INT64_MIN)
        high_i = INT64_MAX if f.max is None else min(math.floor(f.max), INT64_MAX)
        return Annotated[int, msgspec.Meta(ge=low_i, le=high_i)]
    return _PY_TYPES[f.type]


def pick(items: Sequence[_T], indices: list[int]) -> Sequence[_T]:
    """``items[i] for i in indices`` (ascending, distinct), gathered in C."""
    if len(indices) == len(items):  # distinct and in range: that is every item, in order
        return items
    if len(indices) < 2:  # itemgetter of one index returns the item, not a tuple
        return [items[i] for i in indices]
    picked: tuple[_T, ...] = operator.itemgetter(*indices)(items)
    return picked


def _split(
    items: list[int], positions: list[int]
) -> tuple[list[int], list[int], np.ndarray | None]:
    """``items`` less those at ``positions``, those, and the mask of the kept (None: all kept)."""
    if not positions:
        return items, [], None
    keep = np.ones(len(items), dtype=bool)
    keep[positions] = False
    array = np.asarray(items, dtype=np.int64)
    kept: list[int] = array[keep].tolist()
    removed: list[int] = array[~keep].tolist()
    return kept, removed, keep


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
