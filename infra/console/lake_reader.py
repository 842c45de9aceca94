"""The lake as the console sees it: manifests (rows, last write) and dead-letter files.

Both are immutable per (key, ETag): the console lists the prefix on every call and reads only
objects it has not read at that ETag, so a refresh costs one listing.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from infra.console.context import BackendError, Console, guard

#: At most this many dead-letter files are read for one page (newest first).
MAX_DEAD_LETTER_FILES = 200


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    etag: str
    modified: datetime
    size: int


def list_prefix(console: Console, prefix: str) -> list[Listed]:
    s3 = console.clients.client("s3")
    bucket = console.settings.require("lake_bucket")

    def run() -> list[Listed]:
        out: list[Listed] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                out.append(Listed(o["Key"], o["ETag"].strip('"'), o["LastModified"], o["Size"]))
        return out

    return guard("S3", f"s3:ListObjectsV2 s3://{bucket}/{prefix}", run)


def _read_new(console: Console, cache_name: str, listed: list[Listed], parse: Any) -> list[Any]:
    """Parsed bodies of ``listed`` in order, reading only keys not cached at their ETag."""
    cache = console.bucket_cache(cache_name)
    s3 = console.clients.client("s3")
    bucket = console.settings.require("lake_bucket")
    todo = [o for o in listed if cache.get(o.key, (None,))[0] != o.etag]

    def fetch(o: Listed) -> tuple[Listed, Any]:
        body = guard(
            "S3",
            f"s3:GetObject s3://{bucket}/{o.key}",
            lambda: s3.get_object(Bucket=bucket, Key=o.key)["Body"].read(),  # noqa: PLW0108
        )
        return o, parse(o, body)

    if todo:
        with ThreadPoolExecutor(8) as pool:
            for o, parsed in pool.map(fetch, todo):
                cache[o.key] = (o.etag, parsed)
    return [cache[o.key][1] for o in listed]


@dataclass
class LakeSummary:
    objects: int = 0
    bytes: int = 0
    rows: int = 0
    dead_letters: int = 0
    manifests: int = 0
    last_write: datetime | None = None
    manifest_keys: dict[str, str] = field(default_factory=dict)


def lake_summary(console: Console) -> LakeSummary:
    """Rows and dead letters from the flush manifests; objects and last write from the listing."""
    s = console.settings
    table = console.contract.name
    out = LakeSummary()
    for o in list_prefix(console, f"{s.lake_prefix}/{table}/"):
        out.objects += 1
        out.bytes += o.size
        out.last_write = o.modified if out.last_write is None else max(out.last_write, o.modified)
    listed = [
        o for o in list_prefix(console, f"{s.manifest_prefix}/{table}/") if o.key.endswith(".json")
    ]
    for o, m in zip(listed, _read_new(console, "manifests", listed, _parse_manifest), strict=True):
        out.manifests += 1
        out.rows += m.rows
        out.dead_letters += m.dead_letters
        out.manifest_keys[o.key] = o.etag
    return out


@dataclass(frozen=True, slots=True)
class ManifestFacts:
    rows: int
    dead_letters: int
    written_at: str


def _parse_manifest(o: Listed, body: bytes) -> ManifestFacts:
    try:
        doc = json.loads(body)
        return ManifestFacts(
            int(doc.get("rows", 0)), int(doc.get("dead_letters", 0)), str(doc.get("written_at", ""))
        )
    except (ValueError, TypeError, AttributeError):
        raise BackendError("S3", f"parsing manifest {o.key}", "not a manifest JSON") from None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    shard_id: str
    sequence_number: str
    arrival: str | None
    dead_at: str | None
    payload: str
    base64: bool
    size: int
    key: str


def _parse_dead_letters(o: Listed, body: bytes) -> list[DeadLetter]:
    out: list[DeadLetter] = []
    for line in body.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        b64 = "payload_base64" in doc
        payload = str(doc.get("payload_base64") if b64 else doc.get("payload", ""))
        out.append(
            DeadLetter(
                reason=str(doc.get("reason", "")),
                detail=str(doc.get("detail", "")),
                shard_id=str(doc.get("shard_id", "")),
                sequence_number=str(doc.get("sequence_number", "")),
                arrival=doc.get("approximate_arrival_time"),
                dead_at=doc.get("dead_at"),
                payload=payload,
                base64=b64,
                size=len(payload),
                key=o.key,
            )
        )
    return out


@dataclass
class DeadLetters:
    letters: list[DeadLetter]
    files_read: int
    files_total: int

    @property
    def by_reason(self) -> list[tuple[str, int]]:
        return Counter(d.reason for d in self.letters).most_common()


def dead_letters(console: Console, max_files: int = MAX_DEAD_LETTER_FILES) -> DeadLetters:
    """The dead letters of the newest ``max_files`` files, newest first."""
    s = console.settings
    listed = [
        o
        for o in list_prefix(console, f"{s.dead_letter_prefix}/{console.contract.name}/")
        if o.key.endswith(".jsonl")
    ]
    listed.sort(key=lambda o: (o.modified, o.key), reverse=True)
    newest = listed[:max_files]
    parsed = _read_new(console, "dead_letters", newest, _parse_dead_letters)
    letters = [d for batch in parsed for d in reversed(batch)]
    return DeadLetters(letters, len(newest), len(listed))
