"""RecordDecoder: the fast path, then the reference path for the rest, then the lake columns."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.contract import Contract
from etl.records._checks import TS_UTC
from etl.records._fast import FastPath, Split, pick
from etl.records._reference import ReferencePath
from etl.records._types import DeadLetter, DecodedBatch, Problem, RawRecord

_DATA = operator.attrgetter("data")
_SEQUENCE_NUMBER = operator.attrgetter("sequence_number")
_ARRIVAL_MS = operator.attrgetter("approximate_arrival_ms")


class RecordDecoder:
    """Turns KCL records into lake rows for one contract. Stateless between batches.

    ``fast_path=False`` sends every record through the reference path: the same rows, dead
    letters and details, several times slower (what the tests compare the fast path against).
    """

    def __init__(self, contract: Contract, *, fast_path: bool = True) -> None:
        self.contract = contract
        self.schema = contract.arrow_schema(with_metadata=True, with_partitions=False)
        self._fields_schema = contract.arrow_schema(with_metadata=False)
        self._fast = FastPath(contract) if fast_path else None
        self._reference = ReferencePath(contract)

    def decode(
        self, records: Sequence[RawRecord], *, shard_id: str, ingest_time: datetime
    ) -> DecodedBatch:
        """Decode and validate ``records``; good rows keep their input order."""
        bad: dict[int, Problem] = {}
        datas: list[bytes] = list(map(_DATA, records))
        sizes = np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))
        fast = self._fast_split(datas, sizes, bad)
        fields, good = fast.table, fast.rows
        if fast.rest:
            ref_table, ref_rows = self._reference.decode(datas, fast.rest, bad, shard_id)
            fields, good = self._merge(fast.table, fast.rows, ref_table, ref_rows)
        dead = [DeadLetter.of(records[i], problem, shard_id) for i, problem in sorted(bad.items())]
        input_bytes = int(sizes.sum())
        good_bytes = input_bytes if len(good) == len(records) else int(sizes[good].sum())
        return DecodedBatch(
            table=self._lake_table(fields, pick(records, good), shard_id, ingest_time),
            dead_letters=dead,
            good_bytes=good_bytes,
            input_bytes=input_bytes,
        )

    def _fast_split(self, datas: list[bytes], sizes: np.ndarray, bad: dict[int, Problem]) -> Split:
        if self._fast is None:
            return Split(self._fields_schema.empty_table(), [], list(range(len(datas))))
        return self._fast.decode(datas, sizes, bad)

    def _merge(
        self, fast: pa.Table, fast_rows: list[int], ref: pa.Table, ref_rows: list[int]
    ) -> tuple[pa.Table, list[int]]:
        """Both paths' rows as one table in input order, and their input positions."""
        if not ref_rows:
            return fast, fast_rows
        if not fast_rows:
            return ref, ref_rows
        fast = pa.Table.from_arrays(fast.columns, schema=self._fields_schema)
        merged = np.concatenate([np.asarray(fast_rows), np.asarray(ref_rows)])
        order = np.argsort(merged, kind="stable")
        table = pa.concat_tables([fast, ref]).take(pa.array(order))
        rows: list[int] = merged[order].tolist()
        return table, rows

    def _lake_table(
        self, fields: pa.Table, kept: Sequence[RawRecord], shard_id: str, ingest_time: datetime
    ) -> pa.Table:
        """The contract's columns plus the lake's metadata columns for the ``kept`` records."""
        m = len(kept)
        ingest_us = int(_as_utc(ingest_time).timestamp() * 1_000_000)
        arrays = [
            *fields.columns,
            pa.repeat(pa.scalar(shard_id, pa.string()), m),
            pa.array(list(map(_SEQUENCE_NUMBER, kept)), pa.string()),
            _arrival_times(list(map(_ARRIVAL_MS, kept))),
            pa.repeat(pa.scalar(ingest_us, TS_UTC), m),
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _arrival_times(arrivals: list[int | None]) -> pa.Array:
    """Milliseconds since the epoch (or None) to UTC microseconds."""
    try:
        us = np.fromiter(arrivals, dtype=np.int64, count=len(arrivals)) * 1000
        return pa.array(us).view(TS_UTC)
    except TypeError:  # a None: the KCL did not say
        return pc.multiply(pa.array(arrivals, pa.int64()), 1000).cast(TS_UTC)


def _as_utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
