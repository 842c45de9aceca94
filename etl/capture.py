"""Prediction capture in SageMaker's data-capture format, with a bounded buffer that never blocks.

A SageMaker endpoint with ``DataCaptureConfig`` writes one JSON line per invocation to
``s3://<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<name>.jsonl``::

    {"captureData": {"endpointInput": {"observedContentType": "application/json", "mode": "INPUT",
                                       "data": "...", "encoding": "JSON"},
                     "endpointOutput": {"observedContentType": "application/json",
                                        "mode": "OUTPUT", "data": "...", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "...", "inferenceId": "...", "inferenceTime": "...Z"},
     "eventVersion": "0"}

The local model server writes the same lines to the emulator's S3 (adding ``modelVersion`` to
``eventMetadata``: readers of the format ignore keys they do not know), and
:func:`predictions_of` reads either back as one row per scored record: the contract's id, the
features, the score, the model version and the time.

Capture must never slow or fail a prediction: :class:`CaptureBuffer` takes lines without blocking
up to a bound and counts what it had to drop; a writer thread (``infra/capture_sink.py``) empties
it to S3.

>>> line = capture_line(b'{"id": "a", "x": 1}', "application/json",
...                     b'{"predictions": [{"score": 0.25}]}', "application/json",
...                     event_id="e1", when=0.0, model_version="m1")
>>> [(p.record_id("id"), p.score, p.model_version) for p in predictions_of(line)]
[('a', 0.25, 'm1')]
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

#: SageMaker's data-capture event version.
EVENT_VERSION = "0"
DEFAULT_VARIANT = "AllTraffic"
#: Where captured predictions go in the lake bucket: the SageMaker endpoint's DataCaptureConfig
#: (retrain/wiring.py), the local model server (infra/model_server_proc.py) and the ingester
#: (etl/capture_lake.py; the template's CaptureIngestFunction reads it).
CAPTURE_PREFIX = "capture"


def capture_uri(bucket: str) -> str:
    """``s3://<lake bucket>/capture``: the one capture destination of a stack."""
    return f"s3://{bucket}/{CAPTURE_PREFIX}"


class Encoding(StrEnum):
    JSON = "JSON"
    CSV = "CSV"
    BASE64 = "BASE64"


def _encode(body: bytes, content_type: str) -> tuple[str, Encoding]:
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), Encoding.BASE64
    if kind == "application/json":
        return text, Encoding.JSON
    if kind == "text/csv":
        return text, Encoding.CSV
    return base64.b64encode(body).decode(), Encoding.BASE64


def _decode(part: Mapping[str, Any]) -> str:
    data = str(part.get("data", ""))
    if part.get("encoding") == Encoding.BASE64:
        return base64.b64decode(data).decode()
    return data


def iso_time(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def capture_line(
    input_body: bytes,
    input_type: str,
    output_body: bytes,
    output_type: str,
    *,
    event_id: str,
    when: float,
    model_version: str | None = None,
    inference_id: str | None = None,
) -> str:
    """One invocation as a data-capture JSON line (no trailing newline)."""
    in_data, in_enc = _encode(input_body, input_type)
    out_data, out_enc = _encode(output_body, output_type)
    meta: dict[str, Any] = {"eventId": event_id, "inferenceTime": iso_time(when)}
    if inference_id is not None:
        meta["inferenceId"] = inference_id
    if model_version is not None:
        meta["modelVersion"] = model_version
    doc = {
        "captureData": {
            "endpointInput": {
                "observedContentType": input_type,
                "mode": "INPUT",
                "data": in_data,
                "encoding": in_enc.value,
            },
            "endpointOutput": {
                "observedContentType": output_type,
                "mode": "OUTPUT",
                "data": out_data,
                "encoding": out_enc.value,
            },
        },
        "eventMetadata": meta,
        "eventVersion": EVENT_VERSION,
    }
    return json.dumps(doc, separators=(",", ":"))


def capture_key(prefix: str, endpoint: str, variant: str, when: float, name: str) -> str:
    """Where SageMaker puts a capture file: ``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/``."""
    t = datetime.fromtimestamp(when, UTC)
    return f"{prefix.strip('/')}/{endpoint}/{variant}/{t:%Y/%m/%d/%H}/{name}.jsonl"


@dataclass(frozen=True, slots=True)
class CapturedPrediction:
    """One scored record read back from a capture line."""

    features: Mapping[str, Any]
    score: float
    model_version: str | None
    inference_time: str
    event_id: str

    def record_id(self, id_field: str) -> str | None:
        value = self.features.get(id_field)
        return None if value is None else str(value)


def _input_records(text: str) -> list[Mapping[str, Any]]:
    """The invocation's records as objects (one, a list, or ``{"instances": [...]}``)."""
    doc = json.loads(text)
    if isinstance(doc, Mapping) and "instances" in doc:
        doc = doc["instances"]
    rows = doc if isinstance(doc, list) else [doc]
    return [r for r in rows if isinstance(r, Mapping)]


def _scores(text: str, content_type: str) -> list[float]:
    if content_type.split(";", 1)[0].strip().lower() == "text/csv":
        return [float(x) for x in text.split()]
    doc = json.loads(text)
    return [float(p["score"]) for p in doc.get("predictions", [])]


class LineProblem(StrEnum):
    """Why a capture line could not be read (the ingester's dead letters carry it)."""

    NOT_JSON = "capture_not_json"
    NOT_CAPTURE = "capture_shape"
    BAD_BODY = "capture_body"
    COUNT_MISMATCH = "capture_count_mismatch"


class MalformedLineError(ValueError):
    """A capture line that is not SageMaker's data-capture format (or disagrees with itself)."""

    def __init__(self, problem: LineProblem, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem, self.detail = problem, detail


def _parsed(line: str) -> tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]]:
    """(endpointInput, endpointOutput, eventMetadata) of a line, or :class:`MalformedLineError`."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise MalformedLineError(LineProblem.NOT_JSON, str(exc)) from None
    try:
        data, meta = doc["captureData"], doc.get("eventMetadata", {})
        inp, out = data["endpointInput"], data["endpointOutput"]
        if not all(isinstance(x, Mapping) for x in (inp, out, meta)):
            raise TypeError("endpointInput, endpointOutput and eventMetadata must be objects")
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedLineError(
            LineProblem.NOT_CAPTURE, f"not a data-capture line ({type(exc).__name__}: {exc})"
        ) from None
    return inp, out, meta


def predictions_of(line: str, *, strict: bool = False) -> list[CapturedPrediction]:
    """The scored records of one capture line (empty if the input was not JSON records, or the
    counts of inputs and outputs differ: such a line cannot be joined by id).

    ``strict``: a line that is not the format, whose bodies do not parse, or whose inputs and
    outputs differ in number raises :class:`MalformedLineError` (the ingester's dead letters)."""
    inp, out, meta = _parsed(line)
    in_type = str(inp.get("observedContentType", ""))
    if in_type.split(";", 1)[0].strip().lower() != "application/json":
        return []  # CSV rows or binary bodies carry no id to join by
    try:
        records = _input_records(_decode(inp))
        scores = _scores(_decode(out), str(out.get("observedContentType", "")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedLineError(
            LineProblem.BAD_BODY, f"input or output body unreadable ({type(exc).__name__}: {exc})"
        ) from None
    if len(records) != len(scores):
        if strict:
            raise MalformedLineError(
                LineProblem.COUNT_MISMATCH, f"{len(records)} input records, {len(scores)} scores"
            )
        return []
    return [
        CapturedPrediction(
            features=r,
            score=s,
            model_version=meta.get("modelVersion"),
            inference_time=str(meta.get("inferenceTime", "")),
            event_id=str(meta.get("eventId", "")),
        )
        for r, s in zip(records, scores, strict=True)
    ]


class CaptureBuffer:
    """Lines waiting for the writer: ``offer`` never blocks; past ``max_lines`` it drops and counts.

    Thread-safe: request threads offer, one writer thread drains.
    """

    def __init__(self, max_lines: int = 10_000) -> None:
        if max_lines < 1:
            raise ValueError(f"max_lines={max_lines} must be >= 1")
        self.max_lines = max_lines
        self._lines: deque[str] = deque()
        self._lock = threading.Lock()
        self.offered = 0
        self.dropped = 0

    def offer(self, line: str) -> bool:
        with self._lock:
            self.offered += 1
            if len(self._lines) >= self.max_lines:
                self.dropped += 1
                return False
            self._lines.append(line)
            return True

    def drain(self, limit: int | None = None) -> list[str]:
        with self._lock:
            n = len(self._lines) if limit is None else min(limit, len(self._lines))
            return [self._lines.popleft() for _ in range(n)]

    def count_dropped(self, n: int) -> None:
        """Lines the writer gave up on (S3 failing past its retries)."""
        with self._lock:
            self.dropped += n

    def __len__(self) -> int:
        return len(self._lines)


def iter_lines(body: bytes) -> Iterator[str]:
    for raw in body.decode().splitlines():
        if raw.strip():
            yield raw
