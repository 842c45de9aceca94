"""The loader's input: committed flush manifests and the Parquet objects they list, on S3.

Compactions (etl/compaction.py) add manifests under ``manifests/<table>/_compacted/`` in the same
format: they are loaded like flushes, and the small objects they superseded are left out of the
flush manifests read afterwards (they may be gone; their rows come with the compacted objects).

The consumer writes a manifest per flush (``manifests/<table>/<shard>/<first>-<last>.json``),
``pending`` before its data objects and ``committed`` after them. The loader only ever loads
committed manifests, and remembers each one by (key, ETag): a replayed flush rewrites its manifest,
so the ETag changes and the manifest is loaded again; the MERGE on the record's identity keeps that
free of duplicates.

Objects are read with boto3 (threads, one GET each) and decoded by pyarrow, then conformed to the
current contract's lake schema: a column the object lacks (written before a field was added) is all
nulls; types are cast to the contract's.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from etl.compaction import TableLocation, read_compactions
from etl.conform import conform
from etl.contract import Contract
from etl.exceptions import CompactionError, WarehouseError

COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class ManifestRef:
    """A manifest as listed: its key and the ETag of its current version."""

    key: str
    etag: str


@dataclass(frozen=True, slots=True)
class LakeObjectRef:
    key: str
    rows: int
    event_date: str
    event_hour: str
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class FlushManifest:
    """One flush as the loader sees it (parsed from the manifest JSON, unknown keys ignored)."""

    key: str
    etag: str
    table: str
    shard_id: str
    first_sequence: str
    last_sequence: str
    state: str
    objects: tuple[LakeObjectRef, ...]
    rows: int

    @property
    def committed(self) -> bool:
        return self.state == COMMITTED


def _etag(raw: str) -> str:
    return raw.strip('"')


def parse_manifest(key: str, etag: str, body: bytes | str) -> FlushManifest:
    """Parse a manifest; a malformed one is an error naming its key (never skipped silently)."""
    try:
        doc = json.loads(body)
        objects = tuple(
            LakeObjectRef(
                key=str(o["key"]),
                rows=int(o["rows"]),
                event_date=str(o["event_date"]),
                event_hour=str(o["event_hour"]),
                bytes=int(o.get("bytes", 0)),
            )
            for o in doc["objects"]
        )
        return FlushManifest(
            key=key,
            etag=_etag(etag),
            table=str(doc["table"]),
            shard_id=str(doc["shard_id"]),
            first_sequence=str(doc["first_sequence"]),
            last_sequence=str(doc["last_sequence"]),
            state=str(doc["state"]),
            objects=objects,
            rows=int(doc.get("rows", sum(o.rows for o in objects))),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WarehouseError(
            f"manifest {key!r} is malformed ({type(exc).__name__}: {exc}); expected the lake"
            " writer's manifest JSON (version 1) — fix or delete the object"
        ) from None


def _client_error(what: str, exc: Exception) -> WarehouseError:
    return WarehouseError(f"{what} failed: {exc}; check the lake bucket and the endpoint")


class LakeSource:
    """Lists and reads one table's manifests and objects in the lake bucket."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        table: str,
        *,
        manifest_prefix: str = "manifests",
        threads: int = 8,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.table = table
        self.prefix = f"{manifest_prefix}/{table}/"
        self.manifest_prefix = manifest_prefix
        self.threads = threads

    def list_manifests(self) -> list[ManifestRef]:
        """Every manifest of the table, in key order (shard, then sequence)."""
        refs: list[ManifestRef] = []
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(".json"):
                        refs.append(ManifestRef(obj["Key"], _etag(obj["ETag"])))
        except (ClientError, BotoCoreError) as exc:
            raise _client_error(f"listing s3://{self.bucket}/{self.prefix}", exc) from exc
        return sorted(refs, key=lambda r: r.key)

    def read_manifest(self, key: str) -> FlushManifest:
        """The manifest's current version; its ETag is the one of the body actually read."""
        try:
            resp = self.s3.get_object(Bucket=self.bucket, Key=key)
            body = resp["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _client_error(f"reading s3://{self.bucket}/{key}", exc) from exc
        return parse_manifest(key, resp["ETag"], body)

    def read_manifests(self, keys: Sequence[str]) -> list[FlushManifest]:
        """The manifests, without the objects a committed compaction superseded: those rows are
        loaded from the compacted objects (the compaction manifest is listed as a unit of work
        too), and the small objects may already be deleted."""
        with ThreadPoolExecutor(self.threads) as pool:
            manifests = list(pool.map(self.read_manifest, keys))
        if not manifests:
            return manifests
        superseded = self.superseded()
        return [
            replace(m, objects=tuple(o for o in m.objects if o.key not in superseded))
            if any(o.key in superseded for o in m.objects)
            else m
            for m in manifests
        ]

    def superseded(self) -> set[str]:
        """Small object keys that committed compactions replaced (etl/compaction.py)."""
        loc = TableLocation(self.bucket, self.table, manifest_prefix=self.manifest_prefix)
        try:
            return {k for c in read_compactions(self.s3, loc) for k in c.supersedes}
        except CompactionError as exc:
            raise WarehouseError(str(exc)) from None

    def read_object(self, key: str) -> pa.Table:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _client_error(
                f"reading s3://{self.bucket}/{key} (listed by a committed manifest)", exc
            ) from exc
        return pq.read_table(io.BytesIO(body))

    def read_objects(self, keys: Sequence[str], contract: Contract) -> Iterator[pa.Table]:
        """The objects' rows, conformed to ``contract``'s lake schema, in the order given."""
        schema = contract.arrow_schema(with_metadata=True)
        with ThreadPoolExecutor(self.threads) as pool:
            for key, table in zip(keys, pool.map(self.read_object, keys), strict=True):
                yield conform(table, schema, key)
