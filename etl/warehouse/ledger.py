"""The load ledger: which manifest versions the warehouse already holds.

The ledger is a table in the warehouse itself (``<schema>.load_ledger``: manifest key, ETag, rows,
time) and each batch writes its ledger rows in the same transaction as its MERGE, so "merged" and
"recorded" commit together. A crash between COPY and MERGE therefore leaves neither target rows nor
ledger rows, and the next run loads the manifest again.

This module is the pure part: given what S3 lists and what the ledger holds, which manifests to
read, and how to cut them into batches.

>>> listed = [ManifestRef("m/a.json", "e1"), ManifestRef("m/b.json", "e2")]
>>> todo = to_read(listed, {"m/a.json": "e1"})
>>> [r.key for r in todo]
['m/b.json']
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from etl.warehouse.source import FlushManifest, ManifestRef

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    manifest_key: str
    etag: str
    rows: int

    @classmethod
    def of(cls, manifest: FlushManifest) -> LedgerEntry:
        return cls(manifest.key, manifest.etag, manifest.rows)


def to_read(listed: Sequence[ManifestRef], loaded: Mapping[str, str]) -> list[ManifestRef]:
    """Manifests whose current version (ETag) is not in the ledger: new ones and rewritten ones."""
    return [ref for ref in listed if loaded.get(ref.key) != ref.etag]


def to_load(manifests: Sequence[FlushManifest], loaded: Mapping[str, str]) -> list[FlushManifest]:
    """Committed manifests not yet loaded at this version; pending ones wait for their commit."""
    seen: set[str] = set()
    out: list[FlushManifest] = []
    for m in manifests:
        if m.committed and loaded.get(m.key) != m.etag and m.key not in seen:
            seen.add(m.key)
            out.append(m)
    return out


def ranges_overlap(manifests: Sequence[FlushManifest]) -> bool:
    """Whether two manifests of a batch cover a common (shard, sequence number).

    Flushes of one shard cover disjoint ranges unless a replay cut them at other boundaries; only
    then does the batch's staging data need de-duplicating before the MERGE.
    """
    by_shard: dict[str, list[tuple[int, int]]] = {}
    for m in manifests:
        by_shard.setdefault(m.shard_id, []).append((int(m.first_sequence), int(m.last_sequence)))
    for ranges in by_shard.values():
        ranges.sort()
        reach = ranges[0][1]
        for first, last in ranges[1:]:
            if first <= reach:
                return True
            reach = max(reach, last)
    return False


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive batches of at most ``size`` items."""
    if size <= 0:
        raise ValueError(f"batch size must be > 0, got {size}")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
