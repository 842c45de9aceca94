"""Captured predictions into the lake: their own table, partitioned like the records.

The capture files (SageMaker's, or the local model server's in the same format; see
``etl/capture.py``) become rows of ``<contract>_predictions``: the contract's id field, the
prediction's time (the event time: partitions ``event_date``/``event_hour`` of the inference),
its score and model version, the capture event id, and the features as the model saw them
(nullable attributes: stored, never monitored). The table is described by a contract derived
from the user's (:func:`predictions_contract`), so the lake writer, its manifests and the Glue
catalog are the ones the records use.

Each capture object is written as one flush whose "shard" is ``capture`` and whose sequence range
is derived from the object's key (a digest) and the line numbers: ingesting an object again
rewrites the same Parquet objects, and an object whose manifest is committed is skipped.

>>> from etl.contract import load_contract
>>> predictions_contract(load_contract()).name
'card_transactions_predictions'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError

from etl import keys
from etl.aws import error_code
from etl.capture import CapturedPrediction, iter_lines, predictions_of
from etl.contract import (
    ARRIVAL_TIME,
    INGEST_TIME,
    SEQUENCE_NUMBER,
    SHARD_ID,
    Contract,
    Field,
    FieldType,
    Role,
)
from etl.lake import LakeWriter

CAPTURE_SHARD = "capture"
PREDICTION_TIME = "prediction_time"
PREDICTION_SCORE = "prediction_score"
MODEL_VERSION = "model_version"
CAPTURE_EVENT_ID = "capture_event_id"
#: Lines of one capture object get sequence numbers object_digest * LINE_SPAN + line.
LINE_SPAN = 10_000_000


def predictions_contract(contract: Contract) -> Contract:
    """The contract of the captured-predictions table derived from the records' contract."""
    idf = contract.id_field
    fields = (
        Field(idf.name, idf.type, Role.ID),
        Field(PREDICTION_TIME, FieldType.TIMESTAMP, Role.EVENT_TIME),
        Field(PREDICTION_SCORE, FieldType.FLOAT, Role.ATTRIBUTE),
        Field(MODEL_VERSION, FieldType.STRING, Role.ATTRIBUTE, required=False, nullable=True),
        Field(CAPTURE_EVENT_ID, FieldType.STRING, Role.ATTRIBUTE),
        *(
            replace(f, role=Role.ATTRIBUTE, required=False, nullable=True, min=None, max=None)
            for f in contract.features
        ),
    )
    return Contract(
        name=f"{contract.name}_predictions",
        version=contract.version,
        partition_key=idf.name,
        fields=fields,
        source=f"predictions of {contract.source or contract.name}",
    )


#: Captured predictions numbered within their capture object.
Numbered = list[tuple[int, CapturedPrediction]]
#: The predictions table's own columns before the features.
_FIXED = 5


def _first_sequence(capture_key: str) -> int:
    digest = int(hashlib.sha256(capture_key.encode()).hexdigest()[:15], 16)
    return digest * LINE_SPAN


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class CaptureRows:
    """One capture object's rows, and the predictions that could not become rows (no id)."""

    rows: pa.Table
    first_sequence: str
    last_sequence: str
    without_id: int


def capture_rows(
    preds: Numbered, pcontract: Contract, capture_key: str, ingested: datetime
) -> CaptureRows:
    """Rows of the predictions table (its Arrow schema with the lake's metadata columns)."""
    idf = pcontract.id_field.name
    base = _first_sequence(capture_key)
    cols: dict[str, list[Any]] = {f.name: [] for f in pcontract.fields}
    cols.update({SHARD_ID: [], SEQUENCE_NUMBER: [], ARRIVAL_TIME: [], INGEST_TIME: []})
    without_id = 0
    for line_no, p in preds:
        rid = p.record_id(idf)
        if rid is None:
            without_id += 1
            continue
        t = _timestamp(p.inference_time)
        row = {
            idf: rid,
            PREDICTION_TIME: t,
            PREDICTION_SCORE: p.score,
            MODEL_VERSION: p.model_version,
            CAPTURE_EVENT_ID: p.event_id,
        }
        for f in pcontract.fields[_FIXED:]:
            cols[f.name].append(_feature(f, p.features.get(f.name)))
        for name, value in row.items():
            cols[name].append(value)
        cols[SHARD_ID].append(CAPTURE_SHARD)
        cols[SEQUENCE_NUMBER].append(str(base + line_no))
        cols[ARRIVAL_TIME].append(t)
        cols[INGEST_TIME].append(ingested)
    table = pa.table(cols, schema=pcontract.arrow_schema(with_metadata=True))
    return CaptureRows(table, str(base), str(base + LINE_SPAN - 1), without_id)


def _feature(f: Field, value: Any) -> Any:
    """A captured feature value in the column's type (None if it does not fit: kept, not lost,
    in the capture file itself)."""
    if value is None:
        return None
    try:
        if f.type is FieldType.TIMESTAMP:
            return _timestamp(str(value))
        if f.type is FieldType.FLOAT:
            return float(value)
        if f.type is FieldType.INT:
            return int(value)
        if f.type is FieldType.BOOL:
            return value if isinstance(value, bool) else None
        return str(value)
    except (TypeError, ValueError):
        return None


@dataclass(slots=True)
class IngestReport:
    objects: int = 0
    skipped: int = 0
    rows: int = 0
    without_id: int = 0


class CaptureIngester:
    """Moves capture objects under ``s3://bucket/prefix/`` into the predictions table."""

    def __init__(
        self,
        s3: Any,
        writer: LakeWriter,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.s3, self.writer, self._clock = s3, writer, clock
        self.pcontract = writer.contract

    def ingest(self, bucket: str, prefix: str) -> IngestReport:
        report = IngestReport()
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix.strip("/") + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"].endswith(".jsonl"):
                    self._one(bucket, obj["Key"], report)
        return report

    def _one(self, bucket: str, key: str, report: IngestReport) -> None:
        base = str(_first_sequence(key))
        lay = self.writer.layout
        last = str(int(base) + LINE_SPAN - 1)
        stream = self.writer.options.stream
        m_key = keys.manifest_key(lay.manifest_prefix, lay.table, CAPTURE_SHARD, base, last, stream)
        if self._committed(lay.bucket, m_key):
            report.skipped += 1
            return
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        found = [p for line in iter_lines(body) for p in predictions_of(line)]
        preds = list(enumerate(found))  # numbered in order: a line may hold several records
        got = capture_rows(preds, self.pcontract, key, self._clock())
        self.writer.write(CAPTURE_SHARD, got.first_sequence, got.last_sequence, got.rows)
        report.objects += 1
        report.rows += got.rows.num_rows
        report.without_id += got.without_id

    def _committed(self, bucket: str, m_key: str) -> bool:
        try:
            doc = json.loads(self.s3.get_object(Bucket=bucket, Key=m_key)["Body"].read())
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return bool(doc.get("state") == "committed")
