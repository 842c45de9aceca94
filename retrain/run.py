"""One run, ungated, both steps in one process: start the job, wait for it, finish the run.

The local dispatcher (through the gate), ``driftline retrain`` and the demo use this path; on AWS
the two steps are two Lambda invocations (:mod:`retrain.gate`).

>>> # outcome = run_retrain(settings, clients, event=None, now=datetime.now(UTC))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from etl.aws import AwsClients
from etl.exceptions import RetrainError
from etl.settings import Settings
from retrain.backends.base import JobStatus, TrainingBackend, TrainingJob
from retrain.events import AlarmEvent
from retrain.finish import fail_run, finish_run
from retrain.results import RetrainOutcome
from retrain.start import start_run
from retrain.triggers import Trigger
from retrain.wiring import RunDeps


def wait_for_training(
    training: TrainingBackend,
    name: str,
    *,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
    first_delay_s: float = 15.0,
) -> TrainingJob:
    """Follow the job with ``describe`` and backoff until it ends (the local path's wait)."""
    delay, deadline = first_delay_s, time.monotonic() + timeout_s
    while True:
        job = training.describe(name)
        if job.done:
            return job
        if time.monotonic() > deadline:
            raise RetrainError(f"training job {name} still {job.status} after {timeout_s:.0f}s")
        sleep(delay)
        delay = min(delay * 1.5, 120.0)


def run_retrain(
    settings: Settings,
    clients: AwsClients,
    *,
    event: AlarmEvent | None,
    now: datetime,
    deps: RunDeps | None = None,
    trigger: Trigger | None = None,
) -> RetrainOutcome:
    """Retrain on the lake window ending at ``now``; promote the challenger if it wins.

    Not gated: callers that may see duplicates go through :func:`retrain.gate.handle_event`. A
    failed training job raises :class:`RetrainError` (after recording it and notifying). The run
    records ``trigger`` (default: the event's; ``manual`` without one, as ``driftline retrain``).
    """
    t0 = time.monotonic()
    deps = deps or RunDeps()
    # both steps use the same backend and contract
    training = deps.training_for(settings, clients)
    deps = replace(deps, training=training, contract=deps.contract_for(settings, clients))
    state = start_run(settings, clients, event=event, now=now, deps=deps, trigger=trigger)
    t1 = time.monotonic()
    job = wait_for_training(
        training,
        state.job_name,
        timeout_s=settings.sagemaker_training_max_runtime_s + 600.0,
        sleep=deps.sleep,
    )
    if job.status is not JobStatus.COMPLETED:
        reason = job.failure_reason or f"training job {job.name} {job.status}"
        fail_run(settings, clients, state, reason)
        raise RetrainError(reason)
    timings = {"train_s": time.monotonic() - t1}
    outcome = finish_run(settings, clients, state, job, deps=deps, timings=timings)
    total = round(time.monotonic() - t0, 3)
    return replace(outcome, timings={**outcome.timings, "total_s": total})
