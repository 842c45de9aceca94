"""The event gate: which events run, exactly once, one run per model at a time.

* :func:`handle_event` — parse the event; an alarm event that is a matching ALARM transition
  claims its event id (idempotent), takes the model's single-flight lock (expiry, cool-down),
  then runs (``wait=True``, the local dispatcher: both steps in this process) or starts
  (``wait=False``, the Lambda: the lock stays held until step 2). An ALARM during the cool-down
  is deferred and delivered again when it ends (:mod:`retrain.redeliver` on AWS; the local
  dispatcher itself). A training job event goes to :func:`handle_training_event`.
* :func:`handle_training_event` — step 2, idempotent per event id too; releases the lock.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import ClientError

from etl.aws import AwsClients
from etl.exceptions import RetrainError
from etl.settings import Settings
from retrain.backends.base import JobStatus
from retrain.events import (
    ALARM,
    AlarmEvent,
    Decision,
    ScheduledEvent,
    TrainingJobEvent,
    parse_event,
    should_finish,
    should_retrain,
)
from retrain.finish import fail_run, finish_run
from retrain.idempotency import DynamoStore, EventStatus, IdempotencyStore, Verdict
from retrain.redeliver import Redeliver
from retrain.results import GateStatus, HandlerResult, RetrainOutcome
from retrain.run import run_retrain
from retrain.runs import (
    RunState,
    Step,
    decide_step,
    job_prefix,
    load_state,
    model_name,
    run_id_for_job,
    settings_contract,
)
from retrain.start import start_run
from retrain.triggers import Trigger, quality_alarm_name, quality_prefix, trigger_of
from retrain.wiring import RunDeps, drift_prefix, idempotency_table, lock_ttl

log = logging.getLogger(__name__)


class RunFn(Protocol):
    def __call__(
        self, settings: Settings, clients: AwsClients, *, event: AlarmEvent | None, now: datetime
    ) -> RetrainOutcome: ...


@dataclass(frozen=True)
class GateDeps:
    """The gate's parts a caller may hand in: the idempotency store (else the stack's DynamoDB
    table), the clock, the one-process run (else :func:`retrain.run.run_retrain` with the run's
    :class:`~retrain.wiring.RunDeps`) and how a deferred alarm is delivered again (AWS)."""

    store: IdempotencyStore | None = None
    clock: Callable[[], float] = time.time
    run: RunFn | None = None
    redeliver: Redeliver | None = None


@dataclass(frozen=True)
class _Claim:
    store: IdempotencyStore
    holder: str
    resumed: bool
    #: What started the run, recorded with the event's result (drift, quality, schedule).
    trigger: Trigger = Trigger.DRIFT


def _store(settings: Settings, clients: AwsClients) -> IdempotencyStore:
    dynamo = DynamoStore(clients.client("dynamodb"), idempotency_table(settings))
    dynamo.ensure_table()
    return dynamo


def _admit(
    decision: Decision, event_id: str, settings: Settings, clients: AwsClients, gate: GateDeps
) -> _Claim | HandlerResult:
    """Both steps' way in: an event the decision ignores, or one another holder has claimed,
    ends here with the result to return; otherwise the claim (store, holder id, whether the
    event was deferred before)."""
    if not decision.run:
        log.info("event %s ignored: %s", event_id, decision.reason)
        return HandlerResult(GateStatus.IGNORED, decision.reason, event_id)
    store = gate.store or _store(settings, clients)
    holder = f"handler-{uuid.uuid4().hex[:12]}"
    claim = store.claim_event(event_id, holder, gate.clock(), settings.retrain_lock_ttl_s)
    if claim.go:
        return _Claim(store, holder, claim.verdict is Verdict.RESUMED)
    log.info("event %s not run: %s", event_id, claim.reason)
    return HandlerResult(GateStatus(claim.verdict.value), claim.reason, event_id)


def _still_in_alarm(clients: AwsClients, alarm_name: str) -> bool:
    found = clients.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    return bool(found) and found[0].get("StateValue") == ALARM


def _alarm_decision(
    event: AlarmEvent | ScheduledEvent, settings: Settings, deps: RunDeps
) -> tuple[Decision, AlarmEvent | None]:
    """Whether the event starts a run, and the alarm that triggers it (None: scheduled)."""
    if isinstance(event, ScheduledEvent):
        # the safety net: no alarm to check; the lock's cool-down still applies
        return Decision(True, "scheduled safety-net retrain"), None
    contract = deps.contract or settings_contract(settings)
    # unset, only this stack's drift alarms (the rule's own prefix) start a run; the quality
    # alarm of the contract's task starts one like the drift alarm (docs/quality.md)
    names = (settings.drift_alarm_name,) if settings.drift_alarm_name else ()
    if names or event.alarm_name.startswith(quality_prefix(settings.stack_name)):
        names = (*names, quality_alarm_name(settings.stack_name, contract.task))
    decision = should_retrain(event, alarm_names=names, alarm_prefix=drift_prefix(settings))
    if decision.run and contract.label is None:
        decision = Decision(False, f"no retrain: contract {contract.name!r} declares no label")
    return decision, event


def _defer(
    raw: Any, event_id: str, claim: _Claim, lock_reason: str, retry_after_s: float, gate: GateDeps
) -> HandlerResult:
    """Keep an ALARM that met the cool-down for its end (CloudWatch sends no new event while
    the alarm stays in ALARM); on AWS, schedule its delivery then."""
    reason = f"{lock_reason}; deferred to the end of the cool-down"
    if gate.redeliver is not None:
        at = datetime.fromtimestamp(gate.clock(), UTC) + timedelta(seconds=retry_after_s)
        doc = json.loads(raw) if isinstance(raw, str | bytes) else raw
        try:
            reason = f"{reason}; delivered again by {gate.redeliver(doc, at)}"
        except RetrainError as exc:  # kept as deferred: the daily safety net covers it
            log.warning("event %s not scheduled again: %s", event_id, exc)
            reason = f"{reason}; not scheduled again: {exc}"
    claim.store.finish_event(event_id, claim.holder, EventStatus.DEFERRED, reason)
    return HandlerResult(GateStatus.DEFERRED, reason, event_id, retry_after_s=retry_after_s)


def handle_event(
    raw: Any,
    settings: Settings,
    clients: AwsClients,
    *,
    now: datetime | None = None,
    wait: bool = True,
    deps: RunDeps | None = None,
    gate: GateDeps | None = None,
) -> HandlerResult:
    """Parse, filter, claim, lock, run. Raises :class:`~retrain.events.MalformedEventError`
    (with the raw event) for anything that is neither an alarm state change nor a training job
    state change (nor the scheduled safety net).

    ``wait=True`` (local): the run is one process (``gate.run``), the lock released at its end.
    ``wait=False`` (the Lambda): step 1 only; the lock stays held until the training job's
    state-change event reaches :func:`handle_training_event`.
    """
    deps, gate = deps or RunDeps(), gate or GateDeps()
    event = parse_event(raw)
    if isinstance(event, TrainingJobEvent):
        return handle_training_event(event, settings, clients, deps=deps, gate=gate)
    decision, trigger = _alarm_decision(event, settings, deps)
    admitted = _admit(decision, event.event_id, settings, clients, gate)
    if isinstance(admitted, HandlerResult):
        return admitted
    claim = admitted
    if claim.resumed and trigger is not None and not _still_in_alarm(clients, trigger.alarm_name):
        reason = f"alarm {trigger.alarm_name!r} left ALARM during the cool-down"
        claim.store.finish_event(
            event.event_id, claim.holder, EventStatus.COMPLETED, f"ignored: {reason}"
        )
        return HandlerResult(GateStatus.IGNORED, reason, event.event_id)
    ttl = lock_ttl(settings, wait=wait)
    lock = claim.store.acquire_lock(model_name(settings), claim.holder, gate.clock(), ttl)
    if lock.verdict is Verdict.COOLING_DOWN and trigger is not None:
        return _defer(raw, event.event_id, claim, lock.reason, lock.retry_after_s, gate)
    if not lock.go:
        claim.store.finish_event(
            event.event_id, claim.holder, EventStatus.COMPLETED, f"skipped: {lock.reason}"
        )
        log.info("event %s not run: %s", event.event_id, lock.reason)
        return HandlerResult(GateStatus(lock.verdict.value), lock.reason, event.event_id)
    when = now or datetime.now(UTC)
    claim = replace(claim, trigger=trigger_of(event, settings.stack_name))
    if wait:
        return _run_here(settings, clients, trigger, when, event.event_id, claim, deps, gate)
    return _start_here(settings, clients, trigger, when, event.event_id, claim, deps, gate)


def _run_here(
    settings: Settings,
    clients: AwsClients,
    trigger: AlarmEvent | None,
    now: datetime,
    event_id: str,
    claim: _Claim,
    deps: RunDeps,
    gate: GateDeps,
) -> HandlerResult:
    """Both steps in this process; the lock is released (with the cool-down) at the end."""
    model = model_name(settings)
    try:
        if gate.run is not None:
            outcome = gate.run(settings, clients, event=trigger, now=now)
        else:
            outcome = run_retrain(
                settings, clients, event=trigger, now=now, deps=deps, trigger=claim.trigger
            )
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        claim.store.finish_event(event_id, claim.holder, EventStatus.FAILED, failure)
        claim.store.release_lock(model, claim.holder, gate.clock(), 0.0)
        raise
    result = json.dumps(
        {
            "status": str(outcome.status),
            "version": outcome.model_version,
            "trigger": str(claim.trigger),
        }
    )
    claim.store.finish_event(event_id, claim.holder, EventStatus.COMPLETED, result)
    claim.store.release_lock(model, claim.holder, gate.clock(), settings.retrain_cooldown_s)
    return HandlerResult(GateStatus.RAN, outcome.reason, event_id, outcome)


def _start_here(
    settings: Settings,
    clients: AwsClients,
    trigger: AlarmEvent | None,
    now: datetime,
    event_id: str,
    claim: _Claim,
    deps: RunDeps,
    gate: GateDeps,
) -> HandlerResult:
    """Step 1 only; the lock stays held: step 2 (the job's state-change event) releases it."""
    try:
        state = start_run(
            settings, clients, event=trigger, now=now, deps=deps, holder=claim.holder,
            trigger=claim.trigger,
        )  # fmt: skip
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        claim.store.finish_event(event_id, claim.holder, EventStatus.FAILED, failure)
        claim.store.release_lock(model_name(settings), claim.holder, gate.clock(), 0.0)
        raise
    started = {
        "status": str(GateStatus.STARTED),
        "run_id": state.run_id,
        "job": state.job_name,
        "trigger": str(claim.trigger),
    }
    claim.store.finish_event(event_id, claim.holder, EventStatus.COMPLETED, json.dumps(started))
    reason = f"training job {state.job_name} started"
    log.info("event %s: %s", event_id, reason)
    return HandlerResult(
        GateStatus.STARTED, reason, event_id, run_id=state.run_id, training_job=state.job_name
    )


def _end_run(
    store: IdempotencyStore,
    settings: Settings,
    state: RunState,
    clock: Callable[[], float],
    *,
    failure: str | None,
) -> None:
    """Release the run's lock (cool-down after a finished run, none after a failure); after a
    failure also mark its alarm event failed, so a redelivery of that event may retry."""
    if state.holder is None:
        return
    if failure is not None and state.event_id:
        try:
            store.finish_event(state.event_id, state.holder, EventStatus.FAILED, failure)
        except ClientError as exc:  # the event's claim moved on (expired, re-claimed)
            log.warning("alarm event %s not marked failed: %s", state.event_id, exc)
    cooldown = 0.0 if failure is not None else settings.retrain_cooldown_s
    store.release_lock(model_name(settings), state.holder, clock(), cooldown)


def handle_training_event(
    event: TrainingJobEvent,
    settings: Settings,
    clients: AwsClients,
    *,
    deps: RunDeps | None = None,
    gate: GateDeps | None = None,
) -> HandlerResult:
    """Step 2: a training job of this stack and model ended. Idempotent per event id; finishes
    the run (Completed) or records its failure (Failed/Stopped); releases the run's lock."""
    deps, gate = deps or RunDeps(), gate or GateDeps()
    decision = should_finish(event, job_prefix=job_prefix(settings))
    admitted = _admit(decision, event.event_id, settings, clients, gate)
    if isinstance(admitted, HandlerResult):
        return admitted
    claim = admitted
    run_id = run_id_for_job(settings, event.job_name) or ""
    ids: dict[str, Any] = {"run_id": run_id, "training_job": event.job_name}
    try:
        state = load_state(clients.client("s3"), settings, run_id)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        claim.store.finish_event(event.event_id, claim.holder, EventStatus.FAILED, failure)
        raise
    step = decide_step(event, state)
    if step.step is Step.IGNORE or state is None:
        why = f"ignored: {step.reason}"
        claim.store.finish_event(event.event_id, claim.holder, EventStatus.COMPLETED, why)
        log.info("event %s ignored: %s", event.event_id, step.reason)
        return HandlerResult(GateStatus.IGNORED, step.reason, event.event_id, **ids)
    if step.step is Step.FAIL:
        try:
            fail_run(settings, clients, state, step.reason)
        finally:
            _end_run(claim.store, settings, state, gate.clock, failure=step.reason)
            done = json.dumps({"status": str(GateStatus.FAILED), **ids})
            claim.store.finish_event(event.event_id, claim.holder, EventStatus.COMPLETED, done)
        return HandlerResult(GateStatus.FAILED, step.reason, event.event_id, **ids)
    return _finish_here(event, settings, clients, state, claim, deps, gate)


def _finish_here(
    event: TrainingJobEvent,
    settings: Settings,
    clients: AwsClients,
    state: RunState,
    claim: _Claim,
    deps: RunDeps,
    gate: GateDeps,
) -> HandlerResult:
    """Step 2 of a completed job, then the lock released with the cool-down."""
    try:
        job = deps.training_for(settings, clients).describe(event.job_name)
        job = replace(
            job,
            status=JobStatus.COMPLETED,  # the event is SageMaker's word; describe may lag
            model_data_url=job.model_data_url or event.model_data_url,
        )
        outcome = finish_run(settings, clients, state, job, deps=deps)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        claim.store.finish_event(event.event_id, claim.holder, EventStatus.FAILED, failure)
        _end_run(claim.store, settings, state, gate.clock, failure=failure)
        raise
    # step 2's claim is the training job's event: the run's own record says what started it
    result = json.dumps(
        {
            "status": str(outcome.status),
            "version": outcome.model_version,
            "trigger": str(state.trigger) if state.trigger else None,
        }
    )
    claim.store.finish_event(event.event_id, claim.holder, EventStatus.COMPLETED, result)
    _end_run(claim.store, settings, state, gate.clock, failure=None)
    return HandlerResult(
        GateStatus.RAN,
        outcome.reason,
        event.event_id,
        outcome,
        run_id=state.run_id,
        training_job=event.job_name,
    )
