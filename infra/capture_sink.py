"""The model server's capture writer: a thread that empties the capture buffer to S3.

Request threads only ``offer`` a line to the :class:`~etl.capture.CaptureBuffer` (never blocking;
a full buffer drops and counts). This thread puts what the buffer holds every ``interval_s`` as
one JSON-lines object at SageMaker's data-capture key
(``<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/<time>-<random>.jsonl``, names as unique as
SageMaker's own). A failed put is
retried at the next tick with the same lines; after ``max_attempts`` they are dropped and counted,
so S3 trouble never grows the server's memory past the buffer's bound.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from etl.aws import error_code
from etl.capture import CaptureBuffer, capture_key, capture_line

log = logging.getLogger("infra.capture")


class CaptureSink:
    """Capture lines for one endpoint variant, written to ``s3://bucket/prefix/`` by a thread."""

    def __init__(
        self,
        s3: Any,
        s3_uri: str,
        endpoint_name: str,
        *,
        variant: str = "AllTraffic",
        buffer: CaptureBuffer | None = None,
        interval_s: float = 1.0,
        max_attempts: int = 3,
    ) -> None:
        if not s3_uri.startswith("s3://"):
            raise ValueError(f"capture destination {s3_uri!r} must be an s3://bucket/prefix URI")
        self.bucket, _, self.prefix = s3_uri[len("s3://") :].partition("/")
        self.s3, self.endpoint_name, self.variant = s3, endpoint_name, variant
        self.buffer = buffer or CaptureBuffer()
        self.interval_s, self.max_attempts = interval_s, max_attempts
        self.written = self.objects = 0
        self._retry: list[str] = []
        self._attempts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def capture(
        self, body: bytes, content_type: str, out: bytes, out_type: str, model_version: str
    ) -> None:
        """Offer one invocation (never raises, never blocks: capture must not fail a request)."""
        try:
            now = time.time()
            line = capture_line(
                body,
                content_type,
                out,
                out_type,
                event_id=str(uuid.uuid4()),
                when=now,
                model_version=model_version,
            )
            self.buffer.offer(line)
        except Exception:  # a capture problem is counted, the prediction is already answered
            self.buffer.count_dropped(1)
            log.exception("capturing a prediction failed")

    def start(self) -> CaptureSink:
        self._thread = threading.Thread(target=self._run, name="capture-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is held, then stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> None:
        lines = self._retry or self.buffer.drain()
        if not lines:
            return
        when = time.time()
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(when))}-{uuid.uuid4().hex[:12]}"
        key = capture_key(self.prefix, self.endpoint_name, self.variant, when, name)
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
        except (ClientError, BotoCoreError) as exc:
            self._attempts += 1
            code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
            if self._attempts >= self.max_attempts:
                log.error("capture: %d lines dropped after %s (%s)", len(lines), code, key)
                self.buffer.count_dropped(len(lines))
                self._retry, self._attempts = [], 0
            else:
                log.warning("capture: put %s failed (%s); retrying", key, code)
                self._retry = lines
            return
        self._retry, self._attempts = [], 0
        self.written += len(lines)
        self.objects += 1

    def stats(self) -> dict[str, int]:
        return {
            "offered": self.buffer.offered,
            "written": self.written,
            "dropped": self.buffer.dropped,
            "objects": self.objects,
            "held": len(self.buffer),
        }
