"""Warehouse load: our binary COPY + MERGE path against row INSERTs, same rows, same run.

    python -m bench.warehouse_load [--rows N] [--strict] [--json]

One embedded PostgreSQL 18 (``infra.pg``, on 127.0.0.1) serves both sides; each loads the same N
lake rows (an Arrow table in the card-transactions contract's lake schema) into an empty table with
the same DDL (``etl.warehouse.ddl``, primary key on (shard_id, sequence_number)):

* **ours**: ``PostgresWarehouse.load_tables`` — one transaction: temp staging table, psycopg 3
  binary ``COPY ... FROM STDIN (FORMAT BINARY)`` fed by ``write_row``, ``MERGE`` into the target
  (de-duplicated on the identity), ledger row. This is the loader's real path minus the S3 read.
* **row INSERTs, one per statement**: a parameterised ``INSERT ... ON CONFLICT DO NOTHING`` (the
  same idempotence) executed once per row, one transaction — the row-at-a-time loader.
* **row INSERTs, executemany**: the same statement through psycopg 3's ``executemany``, which
  pipelines the statements (no round trip per row): the strong form of the baseline.

Every side starts from the same Arrow table, so Arrow → Python conversion is charged to the
baselines (ours encodes Arrow straight into COPY's binary format, see etl/warehouse/pgbinary.py).
Target: ours >= 10x the row-INSERT rows/s (``--strict`` exits 1 below it); the ratio against the
pipelined executemany is printed too (see docs/BENCHMARKS.md for why it is lower).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa

from etl.contract import Contract, load_contract
from etl.synthetic import generate_frame
from etl.warehouse import ddl
from etl.warehouse.ddl import Dialect
from etl.warehouse.ledger import LedgerEntry
from etl.warehouse.postgres import PostgresWarehouse, arrow_rows
from infra.pg import start_postgres

TARGET_RATIO = 10.0


def lake_rows(contract: Contract, n: int, seed: int = 11) -> pa.Table:
    """``n`` lake rows of the contract (its synthetic records plus the lake's metadata)."""
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    seqs = np.arange(1, n + 1)
    frame = generate_frame(n, seed=seed, start=t0, events_per_second=1000 / 37, contract=contract)
    table = pa.Table.from_pandas(frame, schema=contract.arrow_schema(with_metadata=False))
    meta = {
        "shard_id": [f"shardId-{i % 4:012d}" for i in seqs],
        "sequence_number": [str(i) for i in seqs],
        "approximate_arrival_time": [t0 + timedelta(milliseconds=int(i) * 37 + 5) for i in seqs],
        "ingest_time": [t0 + timedelta(milliseconds=int(i) * 37 + 900) for i in seqs],
    }
    for name, values in meta.items():
        table = table.append_column(name, pa.array(values))
    return table.cast(contract.arrow_schema(with_metadata=True))


def _ours(dsn: str, contract: Contract, rows: pa.Table, schema: str) -> float:
    wh = PostgresWarehouse(dsn, contract, schema=schema)
    wh.ensure_tables()
    t = time.perf_counter()
    inserted = wh.load_tables([rows], [LedgerEntry("bench/m.json", "e", rows.num_rows)], False)
    seconds = time.perf_counter() - t
    wh.close()
    assert inserted == rows.num_rows, (inserted, rows.num_rows)
    return seconds


def _inserts(dsn: str, contract: Contract, rows: pa.Table, schema: str, many: bool) -> float:
    """The same rows by ``INSERT ... ON CONFLICT DO NOTHING``, executemany or one per row."""
    PostgresWarehouse(dsn, contract, schema=schema).ensure_tables()
    cols = [c.name for c in ddl.lake_columns(contract, Dialect.POSTGRES)]
    sql = (
        f"INSERT INTO {schema}.{contract.name} ({', '.join(cols)}, loaded_at)"
        f" VALUES ({', '.join(['%s'] * len(cols))}, clock_timestamp())"
        " ON CONFLICT (shard_id, sequence_number) DO NOTHING"
    )
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            if many:
                cur.executemany(sql, list(arrow_rows(rows)))
            else:
                for row in arrow_rows(rows):
                    cur.execute(sql, row)
        seconds = time.perf_counter() - t
        (count,) = conn.execute(f"SELECT count(*) FROM {schema}.{contract.name}").fetchone()  # type: ignore[misc]
    assert count == rows.num_rows, (schema, count)
    return seconds


def run(n: int, repeats: int = 3) -> dict[str, float]:
    """Best of ``repeats`` for each side (the machine is shared), each into a fresh table."""
    contract = load_contract()
    rows = lake_rows(contract, n)
    best = {"ours": float("inf"), "executemany": float("inf"), "per_row": float("inf")}
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        pg = start_postgres(Path(tmp), durable=True)
        try:
            for rep in range(repeats):
                best["ours"] = min(best["ours"], _ours(pg.dsn, contract, rows, f"ours_{rep}"))
                for mode in ("executemany", "per_row"):
                    secs = _inserts(pg.dsn, contract, rows, f"{mode}_{rep}", mode == "executemany")
                    best[mode] = min(best[mode], secs)
        finally:
            pg.stop()
    copy_s = best["ours"]
    timings = best
    return {
        "rows": n,
        "copy_merge_s": round(copy_s, 3),
        "copy_merge_rows_per_s": round(n / copy_s),
        "executemany_s": round(timings["executemany"], 3),
        "executemany_rows_per_s": round(n / timings["executemany"]),
        "per_row_insert_s": round(timings["per_row"], 3),
        "per_row_insert_rows_per_s": round(n / timings["per_row"]),
        "ratio_vs_per_row_insert": round(timings["per_row"] / copy_s, 1),
        "ratio_vs_executemany": round(timings["executemany"] / copy_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warehouse_load", description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per side")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 below {TARGET_RATIO}x")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.rows, args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"rows                              {result['rows']:>10,}")
        for label, key in (
            ("ours (binary COPY + MERGE)", "copy_merge"),
            ("row INSERTs, one per statement", "per_row_insert"),
            ("row INSERTs, executemany", "executemany"),
        ):
            print(f"{label:<34}{result[key + '_rows_per_s']:>10,} rows/s  ({result[key + '_s']} s)")
        print(
            f"ratio vs row INSERTs              {result['ratio_vs_per_row_insert']:>10}x"
            f"  (target >= {TARGET_RATIO}x)"
        )
        print(f"ratio vs executemany              {result['ratio_vs_executemany']:>10}x")
    if args.strict and result["ratio_vs_per_row_insert"] < TARGET_RATIO:
        print(f"FAIL: ratio {result['ratio_vs_per_row_insert']} < {TARGET_RATIO}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
