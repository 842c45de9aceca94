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
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError

from etl import keys
from etl.aws import error_code
from etl.capture import CAPTURE_PREFIX, CapturedPrediction, MalformedLineError, predictions_of
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
from etl.lake import LakeWriter, WriterOptions, table_writer
from etl.records import letter_head

CAPTURE_SHARD = "capture"
PREDICTION_TIME = "prediction_time"
PREDICTION_SCORE = "prediction_score"
MODEL_VERSION = "model_version"
CAPTURE_EVENT_ID = "capture_event_id"
#: Lines of one capture object get sequence numbers object_digest * LINE_SPAN + line.
LINE_SPAN = 10_000_000

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class CaptureDeadLetter:
    """A capture line that could not be read, with where it came from (the lake writer puts it
    under the dead-letter prefix of the predictions table, with the object's flush)."""

    reason: str
    detail: str
    data: bytes
    capture_object: str
    line: int

    def to_json(self, dead_at: datetime) -> str:
        doc = letter_head(self.reason, self.detail, self.data)
        doc.update(
            capture_object=self.capture_object,
            line=self.line,
            dead_at=dead_at.astimezone(UTC).isoformat(),
        )
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def read_capture(
    body: bytes, where: str
) -> tuple[list[CapturedPrediction], list[CaptureDeadLetter]]:
    """The predictions of a capture object's lines, and a dead letter per line that is not the
    format (``where``: the object's ``s3://`` URI, kept with each dead letter)."""
    found: list[CapturedPrediction] = []
    dead: list[CaptureDeadLetter] = []
    for n, raw in enumerate(body.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            found += predictions_of(raw.decode("utf-8"), strict=True)
        except UnicodeDecodeError as exc:
            dead.append(CaptureDeadLetter(NOT_UTF8, str(exc), raw, where, n))
        except MalformedLineError as exc:
            dead.append(CaptureDeadLetter(exc.problem.value, exc.detail, raw, where, n))
    return found, dead


#: The dead-letter reason of a capture line that is not UTF-8.
NOT_UTF8 = "capture_not_utf8"


@dataclass(slots=True)
class IngestReport:
    objects: int = 0
    skipped: int = 0
    rows: int = 0
    without_id: int = 0
    dead_letters: int = 0
    #: Objects listed but older than ``since`` (not looked at).
    older: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class CaptureIngester:
    """Moves capture objects under ``s3://bucket/prefix/`` into the predictions table.

    Safe to run again and side by side: an object's rows, dead letters and manifest have keys
    derived from the object's key, so a second run (or a concurrent one) writes the same objects,
    and an object whose manifest is committed is skipped without being read.
    """

    def __init__(
        self,
        s3: Any,
        writer: LakeWriter,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.s3, self.writer, self._clock = s3, writer, clock
        self.pcontract = writer.contract

    def ingest(self, bucket: str, prefix: str, *, since: datetime | None = None) -> IngestReport:
        """Every ``.jsonl`` capture object under the prefix (``since``: only those written since
        then, by their LastModified: a schedule looks back a few of its periods, not at all)."""
        report = IngestReport()
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix.strip("/") + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith(".jsonl"):
                    continue
                if since is not None and obj["LastModified"] < since:
                    report.older += 1
                    continue
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
        found, dead = read_capture(body, f"s3://{bucket}/{key}")
        preds = list(enumerate(found))  # numbered in order: a line may hold several records
        got = capture_rows(preds, self.pcontract, key, self._clock())
        self.writer.write(CAPTURE_SHARD, got.first_sequence, got.last_sequence, got.rows, dead)
        report.objects += 1
        report.rows += got.rows.num_rows
        report.without_id += got.without_id
        report.dead_letters += len(dead)

    def _committed(self, bucket: str, m_key: str) -> bool:
        try:
            doc = json.loads(self.s3.get_object(Bucket=bucket, Key=m_key)["Body"].read())
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return bool(doc.get("state") == "committed")


def ingester_for(settings: Any, clients: Any, contract: Contract) -> CaptureIngester:
    """The stack's ingester (``settings``: an :class:`etl.settings.Settings`, ``clients`` its
    :class:`etl.aws.AwsClients`): the predictions table next to the contract's, its Glue table
    created or updated first."""
    options = WriterOptions(
        compression=settings.parquet_compression,
        max_attempts=settings.s3_max_attempts,
        backoff_base_s=settings.s3_backoff_base_s,
    )
    writer = table_writer(settings, predictions_contract(contract), clients, options)
    if writer.catalog is not None:  # always: the ingester's table is created before it writes
        writer.catalog.ensure_table()
    return CaptureIngester(writer.s3, writer)


#: How far back the scheduled run looks (LastModified) unless its event says ``since_s``.
DEFAULT_LOOKBACK_S = 3 * 3600.0


def handler(event: Any, context: Any = None) -> dict[str, int]:
    """Lambda entry point of the scheduled ingest (template: CaptureIngestFunction); the event
    may give ``{"since_s": 10800}`` (objects written in the last 3 hours, the default)."""
    from datetime import timedelta

    from etl.aws import AwsClients
    from etl.contract import contract_for_settings
    from etl.settings import load_settings

    since_s = float((event or {}).get("since_s", DEFAULT_LOOKBACK_S))
    settings = load_settings()
    clients = AwsClients.from_settings(settings)
    ingester = ingester_for(settings, clients, contract_for_settings(settings, clients))
    since = datetime.now(UTC) - timedelta(seconds=since_s)
    report = ingester.ingest(settings.require("lake_bucket"), CAPTURE_PREFIX, since=since)
    log.info("capture ingest report %s", json.dumps(report.to_dict()))
    return report.to_dict()
