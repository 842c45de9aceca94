"""Compaction: objects and bytes the shared queries read, and DuckDB's time, before and after.

    python -m bench.compaction [--hours 24] [--shards 4] [--flush-minutes 1] [--rows-per-flush 25]
                               [--runs 1] [--writers 8] [--json]

A lake of ``--hours`` simulated hours from ``--shards`` shards, written by the real lake writer
(``etl.lake.LakeWriter``: pending manifest, Parquet object, committed manifest) with one flush per
shard per ``--flush-minutes`` simulated minutes (1: what a consumer flushing every 60 s leaves
behind) into the emulator's S3 (moto over HTTP on 127.0.0.1), ``--writers`` flushes at a time
(the default 24 h x 4 shards is 5,760 flushes, 17,280 PUTs; profiled, the PUTs through moto are
nearly all of the writing time, ~17 ms each: one at a time, 1 h took 17 s at load 2.6, so 24 h
~7 min; 8 at a time it is ~3x faster). Then, in the same run:

* **before**: the three lake queries of ``etl/sql/`` (``LAKE_QUERIES``) through ``LakeQuery``
  (DuckDB over pyarrow's S3 filesystem), best of ``--runs`` runs on a fresh connection each
  (listing + reading + SQL);
* ``Compactor.run`` (the ``driftline lake compact`` code, grace 0 so the small objects go);
* **after**: the same queries, same runs.

Reported: the objects and object bytes the lake table's view reads (what Athena opens and is billed
on at most: it reads only the columns a query needs), the compaction's own time, the queries' time
before and after, and the ratio before/after (higher is better). Numbers are for this machine and
moto; on S3 each object costs a GET and Athena per-file overhead, so the object count is the figure
that carries over.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl.analytics import LAKE_QUERIES
from etl.aws import AwsClients
from etl.compaction import (
    CompactionOptions,
    Compactor,
    TableLocation,
    list_objects,
    resolve_visible,
)
from etl.contract import (
    ARRIVAL_TIME,
    INGEST_TIME,
    SEQUENCE_NUMBER,
    SHARD_ID,
    Contract,
    load_contract,
)
from etl.lake import LakeLayout, LakeWriter
from etl.query import LakeQuery
from etl.synthetic import generate_frame
from infra.emulator import start_emulator

BUCKET = "bench-lake"
START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LakeShape:
    """The simulated lake: ``hours`` x ``shards``, a flush per shard per ``every`` minutes."""

    hours: int
    shards: int
    rows_per_flush: int
    every: int = 1
    #: Concurrent flushes (the fleet's consumers write in parallel too); 1 = one at a time.
    writers: int = 8


def write_lake(s3: Any, contract: Contract, shape: LakeShape) -> tuple[int, int]:
    """One flush per shard per ``every`` simulated minutes, ``writers`` flushes at a time, each
    through :meth:`LakeWriter.write` (pending manifest, Parquet object, committed manifest);
    returns (flushes, rows)."""
    hours, shards, every = shape.hours, shape.shards, shape.every
    n = hours * 60 // every * shards * shape.rows_per_flush
    frame = generate_frame(n, seed=3, start=START, events_per_second=n / (hours * 3600))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    writer = LakeWriter(contract, LakeLayout(BUCKET, contract.name), s3)
    micros = pc.cast(table[contract.event_time_field.name], pa.int64())
    minutes = pc.divide(micros, 60_000_000 * every).to_numpy()
    shard_of = np.arange(n) % shards
    order = np.lexsort((minutes, shard_of))  # by shard, then minute: each flush is a slice
    table, minutes, shard_of = table.take(pa.array(order)), minutes[order], shard_of[order]
    keys = shard_of * (int(minutes.max()) + 1) + minutes
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], n]
    ts = pa.timestamp("us", tz="UTC")
    schema = contract.arrow_schema(with_metadata=True)

    def flush(number: int, lo: int, hi: int) -> None:
        shard_id = f"shardId-{int(shard_of[lo]):012d}"
        part = table.slice(lo, hi - lo)
        first = number * 10_000 + 1
        seqs = [str(first + i) for i in range(part.num_rows)]
        now = datetime.fromtimestamp((int(minutes[lo]) + 1) * 60 * every, UTC)
        k = part.num_rows
        part = (
            part.append_column(SHARD_ID, pa.array([shard_id] * k))
            .append_column(SEQUENCE_NUMBER, pa.array(seqs))
            .append_column(ARRIVAL_TIME, pa.array([now] * k, ts))
            .append_column(INGEST_TIME, pa.array([now] * k, ts))
        ).cast(schema)
        writer.write(shard_id, seqs[0], seqs[-1], part)

    spans = list(zip(starts.tolist(), ends.tolist(), strict=True))
    with ThreadPoolExecutor(max_workers=max(1, shape.writers)) as pool:
        # list(): re-raises the first failed flush here.
        list(pool.map(lambda item: flush(item[0], *item[1]), enumerate(spans)))
    return len(spans), n


def scanned(s3: Any, contract: Contract) -> tuple[int, int]:
    """(objects, bytes) the lake table's view reads now."""
    loc = TableLocation(BUCKET, contract.name)
    sizes = {i.key: i.size for i in list_objects(s3, BUCKET, loc.objects_prefix)}
    keys = resolve_visible(s3, loc)
    return len(keys), sum(sizes[k] for k in keys)


def time_queries(aws: AwsClients, contract: Contract, runs: int) -> tuple[float, dict[str, int]]:
    """Best-of-``runs`` seconds for all shared queries on a fresh connection; rows per query."""
    best = float("inf")
    rows: dict[str, int] = {}
    for _ in range(runs):
        t = time.perf_counter()
        q = LakeQuery(BUCKET, clients=aws, contract=contract)
        for name in LAKE_QUERIES:
            rows[name] = len(q.run_file(name).rows)
        q.close()
        best = min(best, time.perf_counter() - t)
    return best, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--rows-per-flush", type=int, default=25)
    ap.add_argument("--flush-minutes", type=int, default=1, help="simulated minutes per flush")
    ap.add_argument("--runs", type=int, default=1, help="best of N query runs (each fresh)")
    ap.add_argument("--writers", type=int, default=8, help="concurrent flushes while writing")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--strict", action="store_true", help="exit 1 unless after is faster")
    args = ap.parse_args(argv)
    contract = load_contract()
    emu = start_emulator(Path(tempfile.mkdtemp(prefix="driftline-bench-compaction-")))
    try:
        aws = AwsClients(endpoint_url=emu.endpoint)
        s3 = aws.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        t = time.perf_counter()
        shape = LakeShape(
            args.hours, args.shards, args.rows_per_flush, args.flush_minutes, args.writers
        )
        flushes, n = write_lake(s3, contract, shape)
        write_s = time.perf_counter() - t
        before_files, before_bytes = scanned(s3, contract)
        before_s, before_rows = time_queries(aws, contract, args.runs)
        compactor = Compactor(
            s3,
            contract,
            TableLocation(BUCKET, contract.name),
            CompactionOptions(grace=timedelta(0)),
            clock=lambda: START + timedelta(hours=args.hours + 3),
        )
        t = time.perf_counter()
        report = compactor.run(older_than=timedelta(hours=2))
        compact_s = time.perf_counter() - t
        after_files, after_bytes = scanned(s3, contract)
        after_s, after_rows = time_queries(aws, contract, args.runs)
    finally:
        emu.stop()
    if after_rows != before_rows:
        print(f"result rows differ: {before_rows} vs {after_rows}", file=sys.stderr)
        return 1
    out = {
        "rows": n,
        "flushes": flushes,
        "write_s": round(write_s, 1),
        "objects_before": before_files,
        "objects_after": after_files,
        "bytes_before": before_bytes,
        "bytes_after": after_bytes,
        "compaction_s": round(compact_s, 2),
        "compacted_hours": len(report.hours),
        "queries_before_s": round(before_s, 3),
        "queries_after_s": round(after_s, 3),
        "speedup": round(before_s / after_s, 2),
        "objects_ratio": round(before_files / max(after_files, 1), 1),
        "load_average": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        for k, v in out.items():
            print(f"{k:18} {v}")
    return 1 if args.strict and out["speedup"] <= 1.0 else 0


if __name__ == "__main__":
    sys.exit(main())
