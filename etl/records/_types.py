"""What goes in and out of the decoder: raw records, dead letters and their reasons, batches."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import pyarrow as pa


class Reason(StrEnum):
    """Why a record went to the dead letters."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    WRONG_TYPE = "wrong_type"
    MISSING_REQUIRED = "missing_required"
    NULL_NOT_ALLOWED = "null_not_allowed"
    OUT_OF_RANGE = "out_of_range"
    NOT_ALLOWED_VALUE = "not_allowed_value"
    NON_UTF8 = "non_utf8"
    OVERSIZE = "oversize"
    #: One of several user records the KCL de-aggregated from one KPL record: they share its
    #: sequence number, which is a row's identity in the lake and the warehouse (not supported).
    KPL_AGGREGATED = "kpl_aggregated"


#: The first problem found in a record: its reason and a detail naming the field and the value.
Problem = tuple[Reason, str]


class RawRecord(NamedTuple):
    """One record as the KCL hands it over (payload already base64-decoded).

    A named tuple rather than a dataclass: the consumer builds one per record, and a tuple can be
    built in C (``map(tuple.__new__, repeat(RawRecord), rows)``) for a sixth of the cost.
    """

    data: bytes
    sequence_number: str
    partition_key: str
    approximate_arrival_ms: int | None = None


def letter_head(reason: str, detail: str, data: bytes) -> dict[str, Any]:
    """A dead letter's first keys: why, and the payload as text when it is UTF-8, else as
    ``payload_base64`` (every dead-letter line of the lake starts so)."""
    doc: dict[str, Any] = {"reason": reason, "detail": detail}
    try:
        doc["payload"] = data.decode("utf-8")
    except UnicodeDecodeError:
        doc["payload_base64"] = base64.b64encode(data).decode("ascii")
    return doc


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed decoding or validation, with everything needed to replay it."""

    reason: str
    detail: str
    data: bytes
    shard_id: str
    sequence_number: str
    partition_key: str
    approximate_arrival_ms: int | None

    @classmethod
    def of(cls, record: RawRecord, problem: Problem, shard_id: str) -> DeadLetter:
        """The dead letter of ``record`` from ``shard_id`` for ``problem``."""
        reason, detail = problem
        return cls(
            reason=reason.value,
            detail=detail,
            data=record.data,
            shard_id=shard_id,
            sequence_number=record.sequence_number,
            partition_key=record.partition_key,
            approximate_arrival_ms=record.approximate_arrival_ms,
        )

    def to_json(self, dead_at: datetime) -> str:
        """One JSON line; the payload as text when it is UTF-8, else as ``payload_base64``."""
        doc = letter_head(self.reason, self.detail, self.data)
        doc.update(
            shard_id=self.shard_id,
            sequence_number=self.sequence_number,
            partition_key=self.partition_key,
            approximate_arrival_time=(
                _iso_ms(self.approximate_arrival_ms)
                if self.approximate_arrival_ms is not None
                else None
            ),
            dead_at=_iso(dead_at),
        )
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """The good rows as an Arrow table (lake schema without partitions) and the dead letters."""

    table: pa.Table
    dead_letters: list[DeadLetter]
    good_bytes: int
    #: payload bytes of every record in the batch, good or dead (what a buffer limit counts)
    input_bytes: int


def _iso(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _iso_ms(ms: int) -> str:
    return _iso(datetime.fromtimestamp(ms / 1000, tz=UTC))
