"""The binary COPY encoder against a real PostgreSQL: every value survives the round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pyarrow as pa
import pytest

from etl.warehouse.pgbinary import encode
from infra.pg import PgProcess

pytestmark = pytest.mark.functional


def test_random_rows_round_trip_through_copy(pg_server: PgProcess) -> None:
    # GIVEN 5,000 seeded rows: unicode and empty strings, extreme numbers, old timestamps, NULLs
    rng = np.random.default_rng(42)
    n = 5_000
    words = ["", "a", "héllo", "日本語", "tab\there", "quote'\"", "x" * 300, "emoji 🚀"]
    null = rng.random((5, n)) < 0.1

    def maybe(i: int, values: list[object]) -> list[object]:
        return [None if null[i][j] else v for j, v in enumerate(values)]

    base = datetime(1970, 1, 1, tzinfo=UTC)
    table = pa.table(
        {
            "s": pa.array(maybe(0, [words[k] for k in rng.integers(0, len(words), n)])),
            "i": pa.array(maybe(1, rng.integers(-(2**62), 2**62, n).tolist()), pa.int64()),
            "f": pa.array(maybe(2, (rng.standard_normal(n) * 1e12).tolist()), pa.float64()),
            "b": pa.array(maybe(3, (rng.random(n) < 0.5).tolist()), pa.bool_()),
            "t": pa.array(
                maybe(
                    4, [base + timedelta(microseconds=int(u)) for u in rng.integers(0, 2**50, n)]
                ),
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    # WHEN it is COPYed in binary format into a temp table and read back
    with psycopg.connect(pg_server.dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE rt (s text, i int8, f float8, b bool, t timestamptz)")
        with cur.copy("COPY rt FROM STDIN (FORMAT BINARY)") as copy:
            for part in encode(table, chunk_rows=1_000):
                copy.write(part)
        cur.execute("SELECT s, i, f, b, t FROM rt")
        back = cur.fetchall()
    # THEN every row is identical, in order
    expected = list(zip(*(c.to_pylist() for c in table.columns), strict=True))
    assert len(back) == n
    assert back == expected
