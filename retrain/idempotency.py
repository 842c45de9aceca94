"""Exactly one run per event, one run in flight per model, and a cool-down after each run.

Two kinds of item in one DynamoDB table (partition key ``pk``, string):

* ``event#<event id>``: claimed with a conditional PutItem (``attribute_not_exists(pk)``, or the
  previous claim's in-progress expiry has passed, as Powertools' idempotency utility does). A
  duplicate delivery of the same event fails the condition and starts nothing.
* ``lock#<model>``: the single-flight lock: taken with a conditional UpdateItem when nobody holds
  it (or the holder's expiry has passed: a crashed run never blocks forever) and no cool-down is
  running; released with ``cooldown_until = now + cooldown`` so overlapping or bursty alarms
  start one run.

The decisions themselves are pure (:func:`decide_event_claim`, :func:`decide_lock`) and unit-tested;
the DynamoDB store encodes the same rules as condition expressions, so the emulator (or AWS)
arbitrates races, and uses the pure functions only to explain a refusal.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import ClientError

from etl.aws import error_code
from etl.exceptions import RetrainError

log = logging.getLogger(__name__)


class EventStatus(StrEnum):
    """An event's claim record (stored in the idempotency table as these words)."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    #: An ALARM that arrived during the cool-down: claimable again when it is delivered again.
    DEFERRED = "DEFERRED"


class Verdict(StrEnum):
    GO = "go"
    #: a deferred event delivered again: it may run (if its alarm is still in ALARM)
    RESUMED = "resumed"
    DUPLICATE = "duplicate"
    BUSY = "busy"
    COOLING_DOWN = "cooling_down"


@dataclass(frozen=True, slots=True)
class EventRecord:
    event_id: str
    status: EventStatus
    expires_at: float
    run_id: str = ""


@dataclass(frozen=True, slots=True)
class LockRecord:
    model: str
    holder: str | None
    expires_at: float
    cooldown_until: float


@dataclass(frozen=True, slots=True)
class ClaimDecision:
    verdict: Verdict
    reason: str
    #: COOLING_DOWN: seconds until the cool-down ends.
    retry_after_s: float = 0.0

    @property
    def go(self) -> bool:
        return self.verdict in (Verdict.GO, Verdict.RESUMED)


def decide_event_claim(existing: EventRecord | None, now: float) -> ClaimDecision:
    """May a handler claim this event id? Only if unseen, or a crashed claim has expired."""
    if existing is None:
        return ClaimDecision(Verdict.GO, "first delivery of this event")
    if existing.status == EventStatus.IN_PROGRESS and existing.expires_at <= now:
        return ClaimDecision(
            Verdict.GO, f"previous claim by run {existing.run_id!r} expired unfinished"
        )
    if existing.status == EventStatus.FAILED:
        return ClaimDecision(Verdict.GO, f"previous run {existing.run_id!r} failed; retrying")
    if existing.status == EventStatus.DEFERRED:
        return ClaimDecision(Verdict.RESUMED, "deferred during a cool-down; delivered again")
    return ClaimDecision(
        Verdict.DUPLICATE,
        f"event {existing.event_id!r} already {existing.status.lower()} by run {existing.run_id!r}",
    )


def decide_lock(existing: LockRecord | None, now: float) -> ClaimDecision:
    """May a run start for this model now? Not while another holds the lock or during cool-down."""
    if existing is None:
        return ClaimDecision(Verdict.GO, "no run has happened for this model")
    if existing.holder is not None and existing.expires_at > now:
        return ClaimDecision(
            Verdict.BUSY,
            f"run {existing.holder!r} holds the lock of {existing.model!r} for another"
            f" {existing.expires_at - now:.0f}s",
        )
    if existing.cooldown_until > now:
        return ClaimDecision(
            Verdict.COOLING_DOWN,
            f"model {existing.model!r} is cooling down for another"
            f" {existing.cooldown_until - now:.0f}s after its last run",
            retry_after_s=existing.cooldown_until - now,
        )
    if existing.holder is not None:
        return ClaimDecision(Verdict.GO, f"lock of crashed run {existing.holder!r} expired")
    return ClaimDecision(Verdict.GO, "lock free and cool-down over")


class IdempotencyStore(Protocol):
    def claim_event(
        self, event_id: str, run_id: str, now: float, ttl_s: float
    ) -> ClaimDecision: ...
    def finish_event(
        self, event_id: str, run_id: str, status: EventStatus, result: str
    ) -> None: ...
    def acquire_lock(self, model: str, run_id: str, now: float, ttl_s: float) -> ClaimDecision: ...
    def release_lock(self, model: str, run_id: str, now: float, cooldown_s: float) -> None: ...


class MemoryStore:
    """In-process store with the same rules (tests, and one-process tools)."""

    def __init__(self) -> None:
        self._events: dict[str, EventRecord] = {}
        self._locks: dict[str, LockRecord] = {}
        self._mutex = threading.Lock()

    def claim_event(self, event_id: str, run_id: str, now: float, ttl_s: float) -> ClaimDecision:
        with self._mutex:
            decision = decide_event_claim(self._events.get(event_id), now)
            if decision.go:
                self._events[event_id] = EventRecord(
                    event_id, EventStatus.IN_PROGRESS, now + ttl_s, run_id
                )
            return decision

    def finish_event(self, event_id: str, run_id: str, status: EventStatus, result: str) -> None:
        with self._mutex:
            self._events[event_id] = EventRecord(event_id, status, float("inf"), run_id)

    def acquire_lock(self, model: str, run_id: str, now: float, ttl_s: float) -> ClaimDecision:
        with self._mutex:
            current = self._locks.get(model)
            decision = decide_lock(current, now)
            if decision.go:
                cooldown = current.cooldown_until if current else 0.0
                self._locks[model] = LockRecord(model, run_id, now + ttl_s, cooldown)
            return decision

    def release_lock(self, model: str, run_id: str, now: float, cooldown_s: float) -> None:
        with self._mutex:
            current = self._locks.get(model)
            if current is not None and current.holder == run_id:
                self._locks[model] = LockRecord(model, None, 0.0, now + cooldown_s)


def _event_record(event_id: str, item: dict[str, Any] | None) -> EventRecord | None:
    if not item:
        return None
    return EventRecord(
        event_id,
        EventStatus(item["status"]["S"]),
        float(item["expires_at"]["N"]),
        item.get("run_id", {}).get("S", ""),
    )


def _is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class DynamoStore:
    """The rules above as DynamoDB conditional writes (one table, ``pk`` string key)."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._ddb = dynamodb
        self._table = table

    def ensure_table(self) -> None:
        """Create the table (on-demand) when it does not exist yet; wait until it is active."""
        try:
            self._ddb.describe_table(TableName=self._table)
            return
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
        try:
            self._ddb.create_table(
                TableName=self._table,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
        self._ddb.get_waiter("table_exists").wait(
            TableName=self._table, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )

    def _get(self, pk: str) -> dict[str, Any] | None:
        item = self._ddb.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        found: dict[str, Any] | None = item.get("Item")
        return found

    def claim_event(self, event_id: str, run_id: str, now: float, ttl_s: float) -> ClaimDecision:
        try:
            resp = self._ddb.put_item(
                TableName=self._table,
                ReturnValues="ALL_OLD",
                Item={
                    "pk": {"S": f"event#{event_id}"},
                    "status": {"S": EventStatus.IN_PROGRESS},
                    "expires_at": {"N": repr(now + ttl_s)},
                    "run_id": {"S": run_id},
                },
                ConditionExpression=(
                    "attribute_not_exists(pk) OR #s = :failed OR #s = :deferred"
                    " OR (#s = :progress AND expires_at <= :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":now": {"N": repr(now)},
                    ":failed": {"S": EventStatus.FAILED},
                    ":deferred": {"S": EventStatus.DEFERRED},
                    ":progress": {"S": EventStatus.IN_PROGRESS},
                },
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise RetrainError(
                    f"idempotency table {self._table!r}: PutItem failed ({exc}); check the table"
                    " exists and the role may write it"
                ) from exc
            existing = _event_record(event_id, self._get(f"event#{event_id}"))
            decision = decide_event_claim(existing, now)
            if decision.go:  # the competitor's state changed in between; stay safe
                return ClaimDecision(Verdict.DUPLICATE, "lost the race for this event")
            return decision
        return decide_event_claim(_event_record(event_id, resp.get("Attributes")), now)

    def finish_event(self, event_id: str, run_id: str, status: EventStatus, result: str) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key={"pk": {"S": f"event#{event_id}"}},
            UpdateExpression="SET #s = :s, #r = :r, expires_at = :inf",
            ConditionExpression="run_id = :run",
            ExpressionAttributeNames={"#s": "status", "#r": "result"},
            ExpressionAttributeValues={
                ":s": {"S": status},
                ":r": {"S": result[:4000]},
                ":inf": {"N": "1e30"},
                ":run": {"S": run_id},
            },
        )

    def acquire_lock(self, model: str, run_id: str, now: float, ttl_s: float) -> ClaimDecision:
        pk = f"lock#{model}"
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": pk}},
                UpdateExpression="SET holder = :me, expires_at = :exp",
                ConditionExpression=(
                    "(attribute_not_exists(holder) OR expires_at <= :now)"
                    " AND (attribute_not_exists(cooldown_until) OR cooldown_until <= :now)"
                ),
                ExpressionAttributeValues={
                    ":me": {"S": run_id},
                    ":exp": {"N": repr(now + ttl_s)},
                    ":now": {"N": repr(now)},
                },
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise RetrainError(
                    f"idempotency table {self._table!r}: lock UpdateItem failed ({exc})"
                ) from exc
            item = self._get(pk) or {}
            existing = LockRecord(
                model,
                item.get("holder", {}).get("S"),
                float(item.get("expires_at", {}).get("N", "0")),
                float(item.get("cooldown_until", {}).get("N", "0")),
            )
            decision = decide_lock(existing, now)
            if decision.go:
                return ClaimDecision(Verdict.BUSY, "lost the race for the lock")
            return decision
        return ClaimDecision(Verdict.GO, f"run {run_id!r} holds the lock of {model!r}")

    def release_lock(self, model: str, run_id: str, now: float, cooldown_s: float) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"lock#{model}"}},
                UpdateExpression="REMOVE holder SET expires_at = :zero, cooldown_until = :cool",
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={
                    ":me": {"S": run_id},
                    ":zero": {"N": "0"},
                    ":cool": {"N": repr(now + cooldown_s)},
                },
            )
        except ClientError as exc:
            if not _is_condition_failure(exc):
                raise
            log.warning("lock of %r was no longer held by run %r at release", model, run_id)
