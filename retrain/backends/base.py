"""The two backend interfaces: train a model from channels; serve a registered version.

Training is split so that nothing has to wait for a job inside one process: ``start`` submits the
job and returns, ``describe`` reads its state (``InProgress`` until it ends ``Completed``,
``Failed`` or ``Stopped``). The AWS path starts the job from the alarm's Lambda invocation and
finishes the run from the job's state-change event; the local path waits in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class JobStatus(StrEnum):
    """A training job's status in SageMaker's words (``TrainingJobStatus``, and the
    state-change event's ``TrainingJobStatus``); the local backend uses the same."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED)


@dataclass(frozen=True, slots=True)
class TrainingRequest:
    """Channels already uploaded to S3 (``*_uri``) and present locally (``*_dir``)."""

    run_id: str
    train_dir: Path
    test_dir: Path
    train_uri: str
    test_uri: str
    #: s3://bucket/prefix/ under which the model artifact goes.
    output_uri: str
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    #: The training job's name (unique per run; the state-change event carries it).
    job_name: str = ""
    #: s3://bucket/prefix where a remote backend stages the training code ("" = its default).
    code_uri: str = ""
    #: The contract the job trains on, as its own input channel ``contract`` (``contract.json``).
    contract_dir: Path | None = None
    contract_uri: str = ""
    #: The drift baseline of the training rows, as the channel ``baseline`` (``baseline.json``).
    baseline_dir: Path | None = None
    baseline_uri: str = ""


@dataclass(frozen=True, slots=True)
class TrainingJob:
    """A training job's state as the backend reports it."""

    name: str
    status: JobStatus
    #: s3://…/model.tar.gz once ``Completed``.
    model_data_url: str = ""
    failure_reason: str = ""

    @property
    def done(self) -> bool:
        return self.status.terminal


@dataclass(frozen=True, slots=True)
class Deployment:
    endpoint: str
    model_id: str
    seconds: float


class TrainingBackend(Protocol):
    name: str

    def image_uri(self) -> str: ...

    def start(self, request: TrainingRequest) -> str:
        """Submit the job named ``request.job_name``; returns without waiting for it to end."""
        ...

    def describe(self, job_name: str) -> TrainingJob: ...


class ServingBackend(Protocol):
    name: str

    def deploy(
        self, *, version: int, model_data_url: str, image_uri: str, model_dir: Path | None
    ) -> Deployment: ...
