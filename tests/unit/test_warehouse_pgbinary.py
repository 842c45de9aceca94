"""The binary COPY encoder, byte for byte, and the ledger's overlap rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from etl.exceptions import WarehouseError
from etl.warehouse.ledger import ranges_overlap
from etl.warehouse.pgbinary import HEADER, TRAILER, encode, encode_rows
from etl.warehouse.source import FlushManifest


def test_header_and_trailer_are_postgres_signature() -> None:
    assert b"PGCOPY\n\xff\r\n\x00" + bytes(8) == HEADER
    assert TRAILER == b"\xff\xff"


def test_each_type_and_null_encodes_as_postgres_expects() -> None:
    # GIVEN one row of every supported type, and one row of NULLs
    table = pa.table(
        {
            "s": pa.array(["hé", None]),
            "i": pa.array([-2, None], pa.int64()),
            "f": pa.array([1.5, None], pa.float64()),
            "b": pa.array([True, None]),
            "t": pa.array(
                [datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    # WHEN encoded
    body = encode_rows(table)
    # THEN row 1: 5 fields; 'hé' is 3 UTF-8 bytes; -2 as int8; 1.5 as float8; true; 1 s after
    # PostgreSQL's epoch as microseconds. Row 2: 5 fields, each length -1.
    row1 = (
        "0005"
        + "00000003"
        + "68c3a9"
        + "00000008"
        + "fffffffffffffffe"
        + "00000008"
        + "3ff8000000000000"
        + "00000001"
        + "01"
        + "00000008"
        + "00000000000f4240"
    )
    row2 = "0005" + "ffffffff" * 5
    assert body.hex() == row1 + row2


def test_pre_2000_timestamps_are_negative() -> None:
    table = pa.table(
        {
            "t": pa.array(
                [datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)], pa.timestamp("us", tz="UTC")
            )
        }
    )
    assert encode_rows(table).hex() == "0001" + "00000008" + "fffffffffff0bdc0"


def test_sliced_chunked_strings_use_their_own_offsets() -> None:
    # GIVEN a string column that is a slice of a chunked array
    col = pa.chunked_array([["aa", "b"], ["ccc", None, "dddd"]])
    table = pa.table({"s": col}).slice(1, 3)
    # WHEN encoded  THEN only b, ccc, NULL appear
    assert encode_rows(table).hex() == (
        "0001" + "00000001" + "62" + "0001" + "00000003" + "636363" + "0001" + "ffffffff"
    )


def test_stream_is_header_chunks_trailer() -> None:
    table = pa.table({"i": pa.array(range(5), pa.int64())})
    parts = encode(table, chunk_rows=2)
    assert parts[0] == HEADER and parts[-1] == TRAILER
    assert b"".join(parts[1:-1]) == encode_rows(table)
    assert len(parts) == 5


def test_unsupported_types_are_refused() -> None:
    with pytest.raises(WarehouseError, match="no encoding for Arrow type list<item: int64>"):
        encode_rows(pa.table({"x": pa.array([[1]])}))


def fm(shard: str, first: int, last: int) -> FlushManifest:
    return FlushManifest(
        f"m/{shard}/{first}", "e", "t", shard, str(first), str(last), "committed", (), 0
    )


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([("s0", 1, 10), ("s0", 11, 20), ("s1", 1, 20)], False),
        ([("s0", 11, 20), ("s0", 1, 11)], True),
        ([("s0", 1, 100), ("s0", 200, 300), ("s0", 50, 60)], True),
        ([("s0", 1, 100), ("s1", 50, 60)], False),
        ([], False),
    ],
)
def test_ranges_overlap(ranges: list[tuple[str, int, int]], expected: bool) -> None:
    assert ranges_overlap([fm(*r) for r in ranges]) is expected
