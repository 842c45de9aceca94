"""Test helper: write lake flushes (Parquet objects + manifest) the way the consumer does.

Layout and manifest format are the lake contract of docs/architecture.md; this stands in for the
consumer's writer so the warehouse and lake-query tests do not depend on it.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl.contract import Contract, FieldType

BASE_TIME = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def make_rows(
    contract: Contract,
    shard_id: str,
    first: int,
    count: int,
    *,
    seed: int = 7,
    start: datetime = BASE_TIME,
    ingest_time: datetime | None = None,
    arrival_time: datetime | None = None,
) -> pa.Table:
    """``count`` seeded lake rows of ``shard_id`` with sequence numbers ``first..first+count-1``.

    ``arrival_time`` is Kinesis' (the same on every replay of a record; another stream
    incarnation's records arrive later); ``ingest_time`` the consumer's (new on a replay).

    Event times step 61 s per sequence number, so ranges cross hour partitions.
    """
    rng = np.random.default_rng(seed + first)
    seqs = list(range(first, first + count))
    cols: dict[str, Any] = {}
    for f in contract.fields:
        if f.name == contract.id_field.name:
            cols[f.name] = [f"tx-{shard_id[-4:]}-{s}" for s in seqs]
        elif f.type is FieldType.TIMESTAMP:
            cols[f.name] = [start + timedelta(seconds=61 * s) for s in seqs]
        elif f.type is FieldType.FLOAT:
            vals = rng.gamma(2.0, 20.0, count).round(2).tolist()
            cols[f.name] = [None if f.nullable and i % 5 == 0 else v for i, v in enumerate(vals)]
        elif f.type is FieldType.INT:
            cols[f.name] = rng.integers(0, 24, count).tolist()
        elif f.type is FieldType.BOOL:
            cols[f.name] = [bool(v) for v in rng.random(count) < 0.1]
        else:
            choices = list(f.allowed or ("a", "b", "c", "d"))
            cols[f.name] = [choices[i] for i in rng.integers(0, len(choices), count)]
    ingest = ingest_time or datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    cols["shard_id"] = [shard_id] * count
    cols["sequence_number"] = [str(s) for s in seqs]
    arrival = arrival_time or datetime(2026, 1, 5, 11, 59, 59, tzinfo=UTC)
    cols["approximate_arrival_time"] = [arrival] * count
    cols["ingest_time"] = [ingest] * count
    return pa.Table.from_pydict(cols, schema=contract.arrow_schema(with_metadata=True))


def write_flush(
    s3: Any,
    bucket: str,
    contract: Contract,
    rows: pa.Table,
    *,
    state: str = "committed",
    lake_prefix: str = "lake",
    manifest_prefix: str = "manifests",
) -> str:
    """Write one flush of ``rows`` (one shard, one sequence range); returns the manifest key."""
    table = contract.name
    shard = rows.column("shard_id")[0].as_py()
    seqs = [int(s) for s in rows.column("sequence_number").to_pylist()]
    first, last = f"{min(seqs):056d}", f"{max(seqs):056d}"
    hours = pc.strftime(rows.column(contract.event_time_field.name), format="%Y-%m-%dT%H")
    objects = []
    for value in sorted(set(hours.to_pylist())):
        part = rows.filter(pc.equal(hours, value))
        day, hour = value.split("T")
        folder = f"{lake_prefix}/{table}/event_date={day}/event_hour={hour}"
        key = f"{folder}/{shard}-{first}-{last}.parquet"
        buf = io.BytesIO()
        pq.write_table(part, buf, compression="zstd")
        objects.append(
            {
                "key": key,
                "rows": part.num_rows,
                "event_date": day,
                "event_hour": hour,
                "body": buf.getvalue(),
            }
        )
    m_key = f"{manifest_prefix}/{table}/{shard}/{first}-{last}.json"

    def manifest(st: str) -> bytes:
        doc = {
            "version": 1,
            "state": st,
            "table": table,
            "shard_id": shard,
            "first_sequence": str(min(seqs)),
            "last_sequence": str(max(seqs)),
            "objects": [
                {k: v for k, v in o.items() if k != "body"} | {"bytes": len(o["body"])}
                for o in objects
            ],
            "dead_letter_keys": [],
            "rows": rows.num_rows,
            "written_at": datetime.now(UTC).isoformat(),
        }
        return json.dumps(doc, sort_keys=True).encode()

    s3.put_object(Bucket=bucket, Key=m_key, Body=manifest("pending"))
    for o in objects:
        s3.put_object(Bucket=bucket, Key=o["key"], Body=o["body"])
    if state == "committed":
        s3.put_object(Bucket=bucket, Key=m_key, Body=manifest("committed"))
    return m_key
