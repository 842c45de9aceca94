"""The durable state of one retrain run between its two steps, and the step-2 decision.

Step 1 (the alarm) reads the lake window, writes the channels, starts the training job and saves a
:class:`RunState` as JSON next to the channels: ``s3://<lake>/retrain/<model>/<run>/run.json``.
Step 2 (the training job's state-change event) finds the run from the job's name, loads the state
and, per :func:`decide_step`, finishes it (evaluate, register, promote or reject) or records the
failure. Both steps release the model's single-flight lock as its holder (``holder``).

Training job names are ``<stack>-<run id>`` with run ids ``<model>-<YYYYmmddTHHMMSSZ>-<8 hex>``,
so ``<stack>-<model>-`` is the prefix the template's rule matches, and the run id is the job name
minus ``<stack>-``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from etl.aws import is_not_found
from etl.contract import Contract, Task, contract_for_settings, load_contract
from etl.exceptions import RetrainError
from etl.settings import Settings
from retrain.artifacts import split_s3
from retrain.backends.base import JobStatus
from retrain.events import TrainingJobEvent
from retrain.triggers import Trigger

STATE_FILE = "run.json"


class RunStatus(StrEnum):
    """A run's durable state (``run.json``)."""

    TRAINING = "training"
    FINISHED = "finished"
    FAILED = "failed"


_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True, slots=True)
class RunState:
    """Everything step 2 needs from step 1 (JSON via :meth:`to_dict` / :meth:`from_dict`)."""

    run_id: str
    job_name: str
    status: RunStatus
    #: The alarm event that started the run (None for a manual run).
    event_id: str | None
    #: The single-flight lock's holder (the gate's claim id); None when the run is ungated.
    holder: str | None
    window_start: str
    window_end: str
    holdout_start: str
    train_rows: int
    holdout_rows: int
    train_uri: str
    test_uri: str
    output_uri: str
    image_uri: str
    hyperparameters: dict[str, str]
    started_at: float
    #: The champion and the current baseline when the run started (lineage; step 2 re-reads the
    #: champion, which may have changed by a manual rollback meanwhile).
    champion_version: int | None = None
    baseline_version: str | None = None
    reason: str = ""
    model_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: A late-label contract's records of the window with no label yet (left out of training;
    #: ``retrain.data.time_split``); None for an inline contract.
    unlabelled_rows: int | None = None
    #: What started the run (drift, quality, schedule, manual); None in records written before
    #: runs recorded it.
    trigger: Trigger | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RunState:
        known = {f for f in cls.__dataclass_fields__}
        missing = [k for k in ("run_id", "job_name", "status") if k not in doc]
        if missing:
            raise RetrainError(f"run state lacks {missing}: {dict(doc)!r:.300}")
        fields = {k: v for k, v in doc.items() if k in known}
        fields["status"] = RunStatus(fields["status"])
        if fields.get("trigger") is not None:
            fields["trigger"] = Trigger(fields["trigger"])
        return cls(**fields)


# -- names -------------------------------------------------------------------------------------
def model_name_for(contract: Contract) -> str:
    """The model's default name: the contract's, hyphens for underscores (SageMaker names)."""
    return contract.name.replace("_", "-")


@functools.lru_cache(maxsize=8)
def _contract_at(path: str | None, mtime_ns: int) -> Contract:
    return load_contract(path)


_S3_CONTRACTS: dict[str, Contract] = {}


def settings_contract(settings: Settings) -> Contract:
    """The contract ``settings.contract_path`` names (the shipped example when unset); a file is
    read again when it changes, an ``s3://`` one once per process."""
    path = settings.contract_path
    if path and path.startswith("s3://"):
        if path not in _S3_CONTRACTS:
            _S3_CONTRACTS[path] = contract_for_settings(settings)
        return _S3_CONTRACTS[path]
    mtime = Path(path).stat().st_mtime_ns if path and Path(path).is_file() else 0
    return _contract_at(path, mtime)


def model_name(settings: Settings) -> str:
    """``model_name`` when set, else :func:`model_name_for` of the settings' contract."""
    return settings.model_name or model_name_for(settings_contract(settings))


def promotion_metric(settings: Settings, contract: Contract) -> str:
    """``promotion_metric`` when set, else the task's: ROC AUC (binary) or RMSE (regression)."""
    if settings.promotion_metric:
        return settings.promotion_metric
    return "rmse" if contract.task is Task.REGRESSION else "roc_auc"


def job_prefix(settings: Settings) -> str:
    """The prefix of every training job of this stack and model (the rule's prefix match)."""
    return f"{settings.stack_name}-{model_name(settings)}-"


def job_name(settings: Settings, run_id: str) -> str:
    """``<stack>-<run id>``; SageMaker allows 63 characters, letters, digits and hyphens."""
    name = f"{settings.stack_name}-{run_id}"
    if not _JOB_NAME.match(name):
        raise RetrainError(
            f"training job name {name!r} is not a valid SageMaker name (at most 63 letters, digits"
            " and hyphens): shorten stack_name or model_name"
        )
    return name


def run_id_for_job(settings: Settings, name: str) -> str | None:
    """The run id a job name of this stack and model carries, else None."""
    if not name.startswith(job_prefix(settings)):
        return None
    return name[len(settings.stack_name) + 1 :]


def run_prefix(settings: Settings, run_id: str) -> str:
    return f"s3://{settings.require('lake_bucket')}/retrain/{model_name(settings)}/{run_id}"


def state_uri(settings: Settings, run_id: str) -> str:
    return f"{run_prefix(settings, run_id)}/{STATE_FILE}"


# -- storage -----------------------------------------------------------------------------------
def save_state(s3: Any, settings: Settings, state: RunState) -> str:
    uri = state_uri(settings, state.run_id)
    bucket, key = split_s3(uri)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        ContentType="application/json",
        Body=json.dumps(state.to_dict(), sort_keys=True, default=float).encode(),
    )
    return uri


def load_state(s3: Any, settings: Settings, run_id: str) -> RunState | None:
    """The run's state, or None when no run of that id was started here."""
    bucket, key = split_s3(state_uri(settings, run_id))
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RetrainError(f"s3://{bucket}/{key}: run state is not JSON ({exc})") from None
    if not isinstance(doc, Mapping):
        raise RetrainError(f"s3://{bucket}/{key}: run state is not a JSON object")
    return RunState.from_dict(doc)


# -- step 2's decision (pure) ------------------------------------------------------------------
class Step(StrEnum):
    FINISH = "finish"
    FAIL = "fail"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class StepDecision:
    step: Step
    reason: str


def decide_step(event: TrainingJobEvent, state: RunState | None) -> StepDecision:
    """What a training job's terminal event does to its run."""
    if state is None:
        return StepDecision(
            Step.IGNORE, f"no run state for training job {event.job_name!r} (not started here)"
        )
    if state.job_name != event.job_name:
        return StepDecision(
            Step.IGNORE,
            f"run {state.run_id!r} trains {state.job_name!r}, not {event.job_name!r}",
        )
    if state.status is not RunStatus.TRAINING:
        return StepDecision(
            Step.IGNORE, f"run {state.run_id!r} is already {state.status}; nothing to do"
        )
    if event.status is JobStatus.COMPLETED:
        return StepDecision(Step.FINISH, f"training job {event.job_name!r} completed")
    if event.status in (JobStatus.FAILED, JobStatus.STOPPED):
        why = f": {event.failure_reason}" if event.failure_reason else ""
        return StepDecision(
            Step.FAIL, f"training job {event.job_name!r} {event.status.lower()}{why}"
        )
    return StepDecision(Step.IGNORE, f"training job {event.job_name!r} is still {event.status}")
