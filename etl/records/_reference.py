"""The reference path: ``json.loads`` per record, then every value checked on its own.

It judges what the fast path cannot vouch for (poison, mostly) and words every problem. Each payload
is checked for size, UTF-8 and JSON once; then, field by field in contract order, every object's
value is checked by :func:`~etl.records._checks.check_value`, and a record's first problem is the
one reported. Values at fault are nulled, and the surviving rows become Arrow columns. Timestamp
text is parsed by Arrow, as on the fast path, so both accept exactly the same text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from etl.contract import Contract, Field, FieldType
from etl.records._checks import (
    check_null,
    check_value,
    non_utf8,
    not_an_object,
    oversize,
    parse_timestamps,
    wrong_type,
)
from etl.records._types import Problem, Reason

log = logging.getLogger(__name__)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class ReferencePath:
    """Judges records one value at a time. Stateless between batches."""

    def __init__(self, contract: Contract) -> None:
        self._fields = contract.fields
        self._limit = contract.max_record_bytes
        self._known = frozenset(f.name for f in contract.fields)
        self._loads = json.JSONDecoder(parse_constant=_reject_constant).decode
        self._schema = contract.arrow_schema(with_metadata=False)
        self._empty = self._schema.empty_table()

    def decode(
        self, datas: Sequence[bytes], indices: list[int], bad: dict[int, Problem], shard_id: str
    ) -> tuple[pa.Table, list[int]]:
        """The good rows among ``datas`` at ``indices`` and their positions; the rest to ``bad``."""
        objs, pos = self._parse_payloads(datas, indices, bad)
        if not objs:  # every one failed as a payload (the usual case for poison)
            return self._empty, []
        self._log_unknown(objs, shard_id)
        found: dict[int, Problem] = {}
        columns: list[list[Any] | pa.Array] = []
        for f in self._fields:
            columns.append(self._column(f, objs, found))
            if len(found) == len(objs):  # all dead (the usual case here): the first problem
                break  # of each is found, later fields cannot change a verdict
        for k, problem in found.items():
            bad[pos[k]] = problem
        if len(found) == len(objs):
            return self._empty, []
        keep = [k for k in range(len(objs)) if k not in found]
        arrays = [
            _survivors(f, col, keep if found else None)
            for f, col in zip(self._fields, columns, strict=True)
        ]
        return pa.Table.from_arrays(arrays, schema=self._schema), [pos[k] for k in keep]

    def _parse_payloads(
        self, datas: Sequence[bytes], indices: list[int], bad: dict[int, Problem]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """The JSON objects among the payloads and their positions; size, UTF-8, JSON to ``bad``."""
        objs: list[dict[str, Any]] = []
        pos: list[int] = []
        for i in indices:
            obj = self._parse(datas[i])
            if isinstance(obj, tuple):
                bad[i] = obj
            else:
                objs.append(obj)
                pos.append(i)
        return objs, pos

    def _parse(self, data: bytes) -> dict[str, Any] | Problem:
        """One payload's JSON object, or its problem."""
        if len(data) > self._limit:
            return oversize(len(data), self._limit)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return non_utf8(exc)
        try:
            obj = self._loads(text)
        except (ValueError, RecursionError) as exc:
            return Reason.MALFORMED_JSON, str(exc)[:200]
        if type(obj) is not dict:
            return not_an_object(obj)
        return obj

    def _log_unknown(self, objs: list[dict[str, Any]], shard_id: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            unknown = sum(len(o.keys() - self._known) for o in objs)
            if unknown:
                log.debug(
                    "ignored %d unknown fields in %d records of %s", unknown, len(objs), shard_id
                )

    @staticmethod
    def _column(
        f: Field, objs: list[dict[str, Any]], found: dict[int, Problem]
    ) -> list[Any] | pa.Array:
        """Every object's value of ``f``, checked; a value at fault is nulled and its record's
        first problem kept in ``found``. Timestamps come back parsed, as an Arrow array."""
        values = [o.get(f.name) for o in objs]
        for k, value in enumerate(values):
            if value is None:
                problem = check_null(f, objs[k])
            else:
                values[k], problem = check_value(f, value)
            if problem is not None:
                found.setdefault(k, problem)
                values[k] = None
        if f.type is not FieldType.TIMESTAMP:
            return values
        parsed, unparsed = parse_timestamps(pa.array(values, pa.string()))
        for k in unparsed:
            found.setdefault(k, wrong_type(f, values[k]))
        return parsed


def _survivors(f: Field, column: list[Any] | pa.Array, keep: list[int] | None) -> pa.Array:
    """The kept rows of a checked column (all of them when ``keep`` is None) as Arrow."""
    if isinstance(column, list):
        values = column if keep is None else [column[k] for k in keep]
        return pa.array(values, f.arrow_type)
    return column if keep is None else column.take(pa.array(keep, pa.int64()))
