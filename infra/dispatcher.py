"""Local stand-in for "EventBridge rule → Lambda": poll the rule's SQS target, call the handler.

moto cannot invoke a Lambda target, so locally the retrain rule targets an SQS queue and this
dispatcher calls :func:`retrain.gate.handle_event` in-process for each message, the same code
the Lambda runs. A message is deleted only after the handler returned (a crash mid-run leaves it on
the queue, and its visibility timeout brings it back; the handler's idempotency makes that safe).
A malformed message is not retried forever and not lost: it goes to the dead-letter prefix of the
lake bucket (``dead-letters/retrain-events/<date>/<message id>.json``) with the reason, then is
deleted; one the handler keeps failing on moves to the retrain dead-letter queue after five
receives (the queue's redrive policy). An ALARM that arrives during the model's cool-down is
deferred: the message stays on the queue, invisible until the cool-down ends, and then runs if
its alarm is still in ALARM (CloudWatch sends no second event while it stays there).

    python -m infra.dispatcher            # polls until SIGTERM, with the local stack's settings
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from etl.redact import RedactingFilter, redact
from etl.settings import Settings
from infra.procs import spawn_module
from retrain.events import MalformedEventError
from retrain.gate import GateDeps, handle_event
from retrain.results import GateStatus, HandlerResult
from retrain.wiring import RunDeps

log = logging.getLogger("infra.dispatcher")

DEAD_LETTER_FOLDER = "retrain-events"
#: SQS's longest visibility timeout (12 hours).
MAX_VISIBILITY_S = 43_200


@dataclass
class DispatchReport:
    received: int = 0
    results: list[HandlerResult] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)


class Dispatcher:
    """Polls ``settings.retrain_queue_url`` and hands each event to the retrain handler."""

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients,
        *,
        handle: Callable[..., HandlerResult] = handle_event,
        deps: RunDeps | None = None,
        gate: GateDeps | None = None,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self._queue = settings.require("retrain_queue_url")
        self._handle = handle
        self._deps = deps or RunDeps()
        self._gate = gate or GateDeps()
        self._sqs = clients.client("sqs")

    def _dead_letter(self, message: dict[str, Any], reason: str) -> str:
        now = datetime.now(UTC)
        key = (
            f"{self._settings.dead_letter_prefix}/{DEAD_LETTER_FOLDER}/"
            f"event_date={now:%Y-%m-%d}/{message['MessageId']}.json"
        )
        doc = {
            "reason": reason,
            "body": message.get("Body", ""),
            "message_id": message["MessageId"],
            "queue": self._queue,
            "received_at": now.isoformat(),
        }
        bucket = self._settings.require("lake_bucket")
        self._clients.client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(doc, sort_keys=True).encode(),
            ContentType="application/json",
        )
        return f"s3://{bucket}/{key}"

    def poll_once(self, *, max_messages: int = 10, wait_s: int = 0) -> DispatchReport:
        """Receive up to ``max_messages`` and dispatch each; returns what happened."""
        resp = self._sqs.receive_message(
            QueueUrl=self._queue,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
        )
        report = DispatchReport()
        for message in resp.get("Messages", []):
            report.received += 1
            message_id = message["MessageId"]
            try:
                result = self._handle(
                    message.get("Body", ""),
                    self._settings,
                    self._clients,
                    deps=self._deps,
                    gate=self._gate,
                )
            except MalformedEventError as exc:
                uri = self._dead_letter(message, str(exc))
                log.warning("message %s is malformed (%s); kept at %s", message_id, exc, uri)
                report.dead_lettered.append(uri)
            except Exception as exc:
                # left on the queue: the visibility timeout redelivers it (5 times, then the DLQ)
                log.exception("handler failed on message %s; it stays on the queue", message_id)
                report.failed.append(redact(f"{message_id}: {type(exc).__name__}: {exc}"))
                continue
            else:
                report.results.append(result)
                log.info("message %s: %s (%s)", message_id, result.status, result.reason)
                if result.status is GateStatus.DEFERRED:
                    self._defer(message, result.retry_after_s or 0.0)
                    report.deferred.append(message_id)
                    continue
            self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])
        return report

    def _defer(self, message: dict[str, Any], seconds: float) -> None:
        """Keep the message, invisible until the cool-down is over (plus a second)."""
        self._sqs.change_message_visibility(
            QueueUrl=self._queue,
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=min(MAX_VISIBILITY_S, math.ceil(seconds) + 1),
        )

    def run_forever(self, stop: threading.Event, *, wait_s: int = 5) -> None:
        while not stop.is_set():
            try:
                self.poll_once(wait_s=wait_s)
            except Exception:
                log.exception("polling %s failed; retrying", self._queue)
                stop.wait(2.0)


def start_dispatcher(state_dir: Path, *, env: dict[str, str] | None = None) -> int:
    """Start ``python -m infra.dispatcher`` as a process (own session, log in ``state_dir``);
    returns its pid (stop it with ``infra.procs.stop_pid``)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    return spawn_module("infra.dispatcher", [], state_dir / "dispatcher.log", env=env).pid


def main(argv: list[str] | None = None) -> int:
    from infra.context import clients_for, resolve_settings

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    settings, _ = resolve_settings()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Dispatcher(settings, clients_for(settings)).run_forever(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
