"""The label join's state on S3, saved with the consumer's checkpoint discipline.

A shard's join state is written after a flush is durable and BEFORE the checkpoint, under a key
named by the last sequence number the state includes::

    quality-state/<table>/<shard>/<last:056d>.json

A restarted processor loads the snapshot named by its checkpoint, exactly: a snapshot written for
a flush that was never checkpointed lies past the checkpoint and is ignored, and the records after
the checkpoint are replayed into the restored state, so each prediction and label counts once
(and the join ignores a repeat anyway). Snapshots older than the checkpoint's are pruned.

>>> snapshot_key("quality-state", "tx", "shardId-0", "42").rsplit("/", 1)[1] == f"{42:056d}.json"
True
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from etl.aws import error_code
from etl.exceptions import LakeWriteError
from etl.keys import pad_sequence, parse_manifest_name, sequence_key

STATE_PREFIX = "quality-state"
_MISSING = {"NoSuchKey", "404", "NotFound"}


def snapshot_prefix(prefix: str, table: str, shard_id: str) -> str:
    return f"{prefix}/{table}/{shard_id}/"


def snapshot_key(prefix: str, table: str, shard_id: str, last_sequence: str) -> str:
    return f"{snapshot_prefix(prefix, table, shard_id)}{pad_sequence(last_sequence)}.json"


class JoinStateStore:
    """Save, load and prune one table's join snapshots in the lake bucket (client injected)."""

    def __init__(self, s3: Any, bucket: str, table: str, prefix: str = STATE_PREFIX) -> None:
        self.s3, self.bucket, self.table, self.prefix = s3, bucket, table, prefix

    def save(self, shard_id: str, last_sequence: str, doc: dict[str, Any]) -> str:
        """Write the state that includes every record up to ``last_sequence``; returns the key."""
        key = snapshot_key(self.prefix, self.table, shard_id, last_sequence)
        body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        except ClientError as exc:
            raise LakeWriteError(
                f"saving the label join's state s3://{self.bucket}/{key} failed"
                f" ({error_code(exc)}); the checkpoint waits for it"
            ) from exc
        return key

    def load(self, shard_id: str, checkpoint: str | None) -> dict[str, Any] | None:
        """The snapshot at exactly ``checkpoint``, or ``None`` (no checkpoint, or none saved)."""
        if checkpoint is None or not checkpoint.isdigit():
            return None  # TRIM_HORIZON / LATEST / SHARD_END: nothing of ours to restore
        key = snapshot_key(self.prefix, self.table, shard_id, checkpoint)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                return None
            raise
        doc: dict[str, Any] = json.loads(body)
        return doc

    def sequences(self, shard_id: str) -> list[str]:
        """Sequence numbers of the shard's snapshots, in order."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=snapshot_prefix(self.prefix, self.table, shard_id)
        )
        names = [o["Key"] for page in pages for o in page.get("Contents", [])]
        # a snapshot's name is one padded sequence number: reuse the manifest name parser's rule
        seqs = [parse_manifest_name(f"0-{n.rsplit('/', 1)[-1]}")[1] for n in names]
        return sorted(seqs, key=sequence_key)

    def prune(self, shard_id: str, keep_from: str) -> int:
        """Delete the shard's snapshots older than ``keep_from`` (the checkpoint's); returns how
        many."""
        old = [s for s in self.sequences(shard_id) if sequence_key(s) < sequence_key(keep_from)]
        for s in old:
            self.s3.delete_object(
                Bucket=self.bucket, Key=snapshot_key(self.prefix, self.table, shard_id, s)
            )
        return len(old)
