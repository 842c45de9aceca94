"""Partition split and Parquet encoding of one flush (pure Arrow, no S3)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from etl.lake import encode_parquet, split_partitions

TS = pa.timestamp("us", tz="UTC")


def _table(times: list[datetime], chunks: int = 1) -> pa.Table:
    n = len(times)
    table = pa.table({"id": [f"r{i}" for i in range(n)], "event_time": pa.array(times, TS)})
    if n == 0:
        return table
    step = max(1, n // chunks)
    return pa.concat_tables([table.slice(lo, step) for lo in range(0, n, step)])


def test_one_hour_is_one_partition_and_the_table_itself() -> None:
    # GIVEN events from the first to the last microsecond of one hour, in 4 chunks
    start = datetime(2026, 3, 1, 7, tzinfo=UTC)
    table = _table(
        [start, start + timedelta(minutes=30), start + timedelta(microseconds=3_599_999_999)], 3
    )
    # WHEN split
    parts = split_partitions(table, "event_time")
    # THEN one partition, labelled by the hour, holding every row without a copy
    assert [(d, h) for d, h, _ in parts] == [("2026-03-01", "07")]
    assert parts[0][2] is table


def test_rows_are_split_by_hour_in_sorted_order_across_a_day_boundary() -> None:
    # GIVEN unordered events in three hours, one of them on the next day, one exactly on the hour
    times = [
        datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 1, 22, 15, tzinfo=UTC),
        datetime(2026, 3, 1, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 0, 30, tzinfo=UTC),
    ]
    # WHEN split
    parts = split_partitions(_table(times, 2), "event_time")
    # THEN partitions come in (date, hour) order and each holds exactly its rows
    assert [(d, h, p.column("id").to_pylist()) for d, h, p in parts] == [
        ("2026-03-01", "22", ["r2"]),
        ("2026-03-01", "23", ["r1", "r3"]),
        ("2026-03-02", "00", ["r0", "r4"]),
    ]


def test_empty_flush_has_no_partitions() -> None:
    assert split_partitions(_table([]), "event_time") == []


def test_a_chunked_flush_encodes_to_the_same_rows() -> None:
    # GIVEN a flush made of many small decoded batches
    start = datetime(2026, 3, 1, 7, tzinfo=UTC)
    times = [start + timedelta(seconds=i) for i in range(1000)]
    table = _table(times, chunks=25)
    assert table.column("id").num_chunks > 1
    # WHEN encoded
    body = encode_parquet(table, "zstd", unique_columns=("id",))
    # THEN a second reader gets every row back, in order, with the schema, in one row group
    back = pq.read_table(io.BytesIO(body))
    assert back.equals(table.combine_chunks())
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    assert meta.num_row_groups == 1
    assert meta.row_group(0).column(0).compression == "ZSTD"
