"""Idempotency and single-flight against the emulator's DynamoDB, with racing threads."""

from __future__ import annotations

import threading
import time

import pytest

from etl.aws import AwsClients
from retrain.idempotency import DynamoStore, EventStatus, Verdict

pytestmark = pytest.mark.functional


def _race(n: int, action: object) -> list[Verdict]:
    barrier = threading.Barrier(n)
    results: list[Verdict] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        verdict = action(i)  # type: ignore[operator]
        with lock:
            results.append(verdict)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_racing_claims_of_one_event_let_exactly_one_through(aws: AwsClients) -> None:
    # GIVEN the table (created on demand) and 8 threads, each with its own client
    DynamoStore(aws.client("dynamodb"), "idem").ensure_table()
    stores = [
        DynamoStore(AwsClients(endpoint_url=aws.endpoint_url).client("dynamodb"), "idem")
        for _ in range(8)
    ]
    # WHEN all claim the same event id at once
    got = _race(8, lambda i: stores[i].claim_event("ev-1", f"run-{i}", 1000.0, 600.0).verdict)
    # THEN exactly one may run, the rest are duplicates
    assert sorted(got) == [Verdict.DUPLICATE] * 7 + [Verdict.GO]


def test_racing_lock_takers_start_one_run_then_cool_down(aws: AwsClients) -> None:
    store = DynamoStore(aws.client("dynamodb"), "idem")
    store.ensure_table()
    stores = [
        DynamoStore(AwsClients(endpoint_url=aws.endpoint_url).client("dynamodb"), "idem")
        for _ in range(6)
    ]
    # WHEN six runs for different events race for the model's lock
    got = _race(6, lambda i: stores[i].acquire_lock("fraud", f"run-{i}", 1000.0, 600.0).verdict)
    # THEN one holds it and the others are told it is busy
    assert sorted(got) == [Verdict.BUSY] * 5 + [Verdict.GO]
    holder = aws.client("dynamodb").get_item(TableName="idem", Key={"pk": {"S": "lock#fraud"}})
    winner = holder["Item"]["holder"]["S"]
    # WHEN the holder releases with a 300 s cool-down
    store.release_lock("fraud", winner, 1100.0, 300.0)
    # THEN a new run inside the cool-down is refused with the time left, and allowed after it
    inside = store.acquire_lock("fraud", "run-x", 1200.0, 600.0)
    assert (inside.verdict, inside.reason) == (
        Verdict.COOLING_DOWN,
        "model 'fraud' is cooling down for another 200s after its last run",
    )
    assert store.acquire_lock("fraud", "run-y", 1400.0, 600.0).verdict is Verdict.GO
    # AND a crashed holder's lock expires
    assert store.acquire_lock("fraud", "run-z", 1500.0, 600.0).verdict is Verdict.BUSY
    assert store.acquire_lock("fraud", "run-z", 2001.0, 600.0).verdict is Verdict.GO


def test_a_completed_event_stays_a_duplicate(aws: AwsClients) -> None:
    store = DynamoStore(aws.client("dynamodb"), "idem")
    store.ensure_table()
    assert store.claim_event("ev-2", "run-a", 1000.0, 60.0).go
    store.finish_event("ev-2", "run-a", EventStatus.COMPLETED, '{"status": "promoted"}')
    later = store.claim_event("ev-2", "run-b", 99_999.0, 60.0)
    assert (later.verdict, later.reason) == (
        Verdict.DUPLICATE,
        "event 'ev-2' already completed by run 'run-a'",
    )


def test_two_deliveries_racing_through_the_gate_start_one_run(
    aws: AwsClients, emulator: str
) -> None:
    # GIVEN the same ALARM event delivered twice at once, and a slow run
    from datetime import UTC, datetime

    from etl.settings import load_settings
    from retrain.events import example_event
    from retrain.gate import GateDeps, handle_event

    settings = load_settings(
        {"endpoint_url": emulator, "drift_alarm_name": "driftline-drift"}, env={}, config_path=None
    )
    runs: list[str] = []

    def slow_run(settings: object, clients: object, *, event: object, now: object) -> object:
        runs.append("run")
        time.sleep(0.5)
        raise RuntimeError("stop here")  # the outcome does not matter for the gate

    def deliver(i: int) -> str:
        try:
            result = handle_event(
                example_event("driftline-drift", event_id="ev-9"),
                settings,
                AwsClients(endpoint_url=emulator),
                now=datetime(2026, 3, 1, tzinfo=UTC),
                gate=GateDeps(run=slow_run),
            )
        except RuntimeError:
            return "ran"
        return result.status

    DynamoStore(aws.client("dynamodb"), "driftline-retrain-idempotency").ensure_table()
    # WHEN both race THEN exactly one started a run
    got = _race(2, deliver)
    assert sorted(got) == ["duplicate", "ran"]  # type: ignore[type-var]
    assert runs == ["run"]
