"""What a run and the event gate return: their statuses (one ``StrEnum`` per family) and the
result documents SNS carries, the CLI prints and the dispatcher reads.

Other status families live with what they describe: a training job's (SageMaker's words,
:class:`retrain.backends.base.JobStatus`), a registered version's (SageMaker's,
:class:`retrain.registry.Approval`), a run's durable state (:class:`retrain.runs.RunStatus`) and
an event's claim record (:class:`retrain.idempotency.EventStatus`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class OutcomeStatus(StrEnum):
    """How a finished run ended."""

    PROMOTED = "promoted"
    REJECTED = "rejected"


class GateStatus(StrEnum):
    """What the gate did with an event."""

    #: the run ran (both steps here, or step 2 from the training job's event)
    RAN = "ran"
    #: step 1 on AWS: the training job runs; its state-change event finishes the run
    STARTED = "started"
    #: step 2: the training job failed or was stopped
    FAILED = "failed"
    #: not an event that starts or finishes a run (or the alarm left ALARM meanwhile)
    IGNORED = "ignored"
    #: an ALARM during the cool-down: delivered again when the cool-down ends
    DEFERRED = "deferred"
    #: the event was handled before (or is being handled)
    DUPLICATE = "duplicate"
    #: another run of the model holds its lock
    BUSY = "busy"
    #: a scheduled run inside the cool-down
    COOLING_DOWN = "cooling_down"


@dataclass(frozen=True)
class RetrainOutcome:
    """What one run did; ``to_dict()`` is what SNS carries and the CLI prints."""

    status: OutcomeStatus
    reason: str
    run_id: str
    event_id: str | None
    metric: str
    metrics_champion: dict[str, float] | None
    metrics_challenger: dict[str, float]
    model_version: int
    champion_version: int | None
    model_data_url: str
    baseline_uri: str | None
    baseline_version: str
    window_start: str
    window_end: str
    train_rows: int
    holdout_rows: int
    endpoint: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Late labels: records of the window left out for having no label yet (None: inline).
    unlabelled_rows: int | None = None
    #: What started the run: drift, quality, schedule or manual (``retrain.triggers.Trigger``).
    trigger: str | None = None
    #: A promotion's quality alarm line (alarm, champion, holdout figure, margin, threshold).
    quality_alarm: dict[str, Any] | None = None

    @property
    def promoted(self) -> bool:
        return self.status == OutcomeStatus.PROMOTED

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["status"] = str(self.status)
        return doc


@dataclass(frozen=True)
class HandlerResult:
    """What the gate decided (:class:`GateStatus`), why, and what it ran or started."""

    status: GateStatus
    reason: str
    event_id: str | None = None
    outcome: RetrainOutcome | None = None
    run_id: str | None = None
    training_job: str | None = None
    #: ``deferred``: seconds until the cool-down ends (the event is delivered again then)
    retry_after_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": str(self.status),
            "reason": self.reason,
            "event_id": self.event_id,
            "outcome": self.outcome.to_dict() if self.outcome else None,
        }
        if self.run_id is not None:
            doc["run_id"] = self.run_id
        if self.training_job is not None:
            doc["training_job"] = self.training_job
        if self.retry_after_s is not None:
            doc["retry_after_s"] = round(self.retry_after_s, 3)
        return doc
