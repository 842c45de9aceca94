"""Idempotency per event and single-flight per model: the pure decisions, then the gate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.settings import load_settings
from retrain.events import example_event
from retrain.gate import GateDeps, handle_event
from retrain.idempotency import (
    EventRecord,
    EventStatus,
    LockRecord,
    MemoryStore,
    Verdict,
    decide_event_claim,
    decide_lock,
)
from retrain.results import HandlerResult, RetrainOutcome


@pytest.mark.parametrize(
    ("existing", "verdict", "reason"),
    [
        (None, Verdict.GO, "first delivery of this event"),
        (
            EventRecord("e", EventStatus.IN_PROGRESS, 150.0, "r1"),
            Verdict.DUPLICATE,
            "event 'e' already in_progress by run 'r1'",
        ),
        (
            EventRecord("e", EventStatus.IN_PROGRESS, 100.0, "r1"),
            Verdict.GO,
            "previous claim by run 'r1' expired unfinished",
        ),
        (
            EventRecord("e", EventStatus.COMPLETED, 1e30, "r1"),
            Verdict.DUPLICATE,
            "event 'e' already completed by run 'r1'",
        ),
        (
            EventRecord("e", EventStatus.FAILED, 1e30, "r1"),
            Verdict.GO,
            "previous run 'r1' failed; retrying",
        ),
    ],
)
def test_event_claim(existing: EventRecord | None, verdict: Verdict, reason: str) -> None:
    got = decide_event_claim(existing, now=100.0)
    assert (got.verdict, got.reason) == (verdict, reason)


@pytest.mark.parametrize(
    ("existing", "verdict", "reason"),
    [
        (None, Verdict.GO, "no run has happened for this model"),
        (
            LockRecord("m", "r1", 160.0, 0.0),
            Verdict.BUSY,
            "run 'r1' holds the lock of 'm' for another 60s",
        ),
        (LockRecord("m", "r1", 90.0, 0.0), Verdict.GO, "lock of crashed run 'r1' expired"),
        (
            LockRecord("m", None, 0.0, 400.0),
            Verdict.COOLING_DOWN,
            "model 'm' is cooling down for another 300s after its last run",
        ),
        (LockRecord("m", None, 0.0, 100.0), Verdict.GO, "lock free and cool-down over"),
    ],
)
def test_lock(existing: LockRecord | None, verdict: Verdict, reason: str) -> None:
    got = decide_lock(existing, now=100.0)
    assert (got.verdict, got.reason) == (verdict, reason)


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _fake_run(calls: list[str]) -> Any:
    def run(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        calls.append(event.event_id)
        return RetrainOutcome(
            status="promoted",
            reason="ok",
            run_id="r",
            event_id=event.event_id,
            metric="roc_auc",
            metrics_champion=None,
            metrics_challenger={"roc_auc": 0.9},
            model_version=len(calls),
            champion_version=None,
            model_data_url="s3://b/k",
            baseline_uri=None,
            baseline_version="v",
            window_start="",
            window_end="",
            train_rows=1,
            holdout_rows=1,
        )

    return run


def test_duplicate_and_overlapping_events_start_exactly_one_run() -> None:
    # GIVEN the gate with an in-memory store, a fake run and a controllable clock
    settings = load_settings(
        {"retrain_cooldown_s": 300, "drift_alarm_name": "driftline-drift-score"},
        env={},
        config_path=None,
    )
    store, clock, calls = MemoryStore(), _Clock(), []
    clients = AwsClients()

    def handle(event_id: str, alarm: str = "driftline-drift-score") -> HandlerResult:
        return handle_event(
            example_event(alarm, event_id=event_id),
            settings,
            clients,
            now=datetime(2026, 3, 1, tzinfo=UTC),
            gate=GateDeps(store=store, clock=clock, run=_fake_run(calls)),
        )

    # WHEN the same event arrives twice, then a second alarm within the cool-down
    first, dup = handle("e1"), handle("e1")
    clock.t += 60
    overlap = handle("e2")
    # THEN one run started; the duplicate says why not, the overlap is deferred to the cool-down's
    # end (CloudWatch sends no new event while the alarm stays in ALARM)
    assert [first.status, dup.status, overlap.status] == ["ran", "duplicate", "deferred"]
    assert dup.reason.startswith("event 'e1' already completed by run 'handler-")
    assert overlap.reason == (
        "model 'card-transactions' is cooling down for another 240s after its last run;"
        " deferred to the end of the cool-down"
    )
    assert overlap.retry_after_s == 240
    assert calls == ["e1"]
    # AND after the cool-down a new event runs again, while a redelivered e1 does not
    clock.t += 300
    assert handle("e3").status == "ran"
    assert handle("e1").status == "duplicate"
    assert calls == ["e1", "e3"]
    # AND an event of another alarm is ignored before any claim
    ignored = handle("e4", alarm="driftline-dead-letter-rate")
    assert ignored.status == "ignored"


def test_a_failed_run_releases_the_lock_and_the_event_can_be_retried() -> None:
    settings = load_settings(env={}, config_path=None)
    store, clock, calls = MemoryStore(), _Clock(), []

    def boom(settings: Any, clients: Any, *, event: Any, now: datetime) -> RetrainOutcome:
        calls.append("boom")
        raise RuntimeError("training crashed")

    now = datetime(2026, 3, 1, tzinfo=UTC)
    # WHEN the run fails THEN the error propagates (the message stays on the queue)
    with pytest.raises(RuntimeError, match="training crashed"):
        handle_event(
            example_event("driftline-drift-score", event_id="e1"),
            settings,
            AwsClients(),
            now=now,
            gate=GateDeps(store=store, clock=clock, run=boom),
        )
    # AND the redelivery runs (no cool-down after a failure)
    again = handle_event(
        example_event("driftline-drift-score", event_id="e1"),
        settings,
        AwsClients(),
        now=now,
        gate=GateDeps(store=store, clock=clock, run=_fake_run(calls)),
    )
    assert again.status == "ran" and calls == ["boom", "e1"]


def test_a_contract_without_a_label_is_ignored_with_a_reason_before_any_claim(
    tmp_path: Any,
) -> None:
    # GIVEN settings naming a contract whose only candidate target is an attribute (no label)
    path = tmp_path / "no_label.toml"
    path.write_text(
        'name = "plain_events"\npartition_key = "k"\n'
        '[[fields]]\nname = "id"\ntype = "string"\nrole = "id"\n'
        '[[fields]]\nname = "k"\ntype = "string"\n'
        '[[fields]]\nname = "at"\ntype = "timestamp"\nrole = "event_time"\n'
        '[[fields]]\nname = "x"\ntype = "float"\nrole = "feature"\n'
    )
    settings = load_settings({"contract_path": str(path)}, env={}, config_path=None)
    store, calls = MemoryStore(), []
    # WHEN the drift alarm's event arrives
    result = handle_event(
        example_event("driftline-drift-score", event_id="e1"),
        settings,
        AwsClients(),
        now=datetime(2026, 3, 1, tzinfo=UTC),
        gate=GateDeps(store=store, clock=_Clock(), run=_fake_run(calls)),
    )
    # THEN nothing runs, and the decision says why (no KeyError, no failed run)
    assert (result.status, result.reason) == (
        "ignored",
        "no retrain: contract 'plain_events' declares no label",
    )
    assert calls == []
