"""Step 1 of a run: lake window → time-ordered split → channels in S3 → run state → training job
started (not awaited).

The channels are what the training job reads (:mod:`retrain.fit`): ``train`` and ``test``
(Parquet), ``contract`` (the contract's canonical JSON) and ``baseline`` (the drift profile of the
training rows, built here with ``etl.profile`` so the job needs neither the profile code nor
Python 3.11).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from etl.contract import Contract
from etl.settings import Settings
from retrain import registry
from retrain.artifacts import split_s3
from retrain.backends.base import TrainingBackend, TrainingRequest
from retrain.data import Split, Window, read_window, time_split
from retrain.events import AlarmEvent
from retrain.fit import BASELINE_FILE, CONTRACT_FILE
from retrain.runs import (
    RunState,
    RunStatus,
    job_name,
    model_name,
    run_prefix,
    save_state,
)
from retrain.train import baseline_json
from retrain.triggers import Trigger, trigger_of
from retrain.wiring import RunDeps, model_group, require_label, work_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Channel:
    """One input channel of the job: a local folder (the local backend) and its S3 prefix."""

    local: Path
    uri: str


def run_id_for(settings: Settings, event: AlarmEvent | None, now: datetime) -> str:
    """``<model>-<YYYYmmddTHHMMSSZ>-<8 hex>``; a retry of the same event reuses the same name."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if event is not None:
        digest = hashlib.sha256(event.event_id.encode()).hexdigest()[:8]
    else:
        digest = uuid.uuid4().hex[:8]
    return f"{model_name(settings)}-{stamp}-{digest}"


def read_split(settings: Settings, clients: AwsClients, contract: Contract, now: datetime) -> Split:
    """The last ``retrain_window_hours`` of the lake, split by time into train and holdout."""
    window = Window.last_hours(now, settings.retrain_window_hours)
    frame = read_window(
        clients.session,
        settings.endpoint_url,
        bucket=settings.require("lake_bucket"),
        lake_prefix=settings.lake_prefix,
        contract=contract,
        window=window,
        manifest_prefix=settings.manifest_prefix,
    )
    return time_split(
        frame,
        contract,
        holdout_fraction=settings.retrain_holdout_fraction,
        window=window,
        min_rows=settings.retrain_min_rows,
    )


def _upload(s3: Any, local: Path, uri: str) -> None:
    bucket, key = split_s3(uri)
    s3.upload_file(str(local), bucket, key)


def write_channels(
    s3: Any, split: Split, contract: Contract, job_dir: Path, prefix: str
) -> dict[str, Channel]:
    """The four channels, written locally under ``job_dir/channels`` and uploaded to S3 (for
    lineage, SageMaker and step 2)."""
    import pandas as pd

    files: dict[str, tuple[str, str | None]] = {
        "train": ("train.parquet", None),
        "test": ("test.parquet", None),
        "contract": (CONTRACT_FILE, json.dumps(contract.to_dict(), indent=1, sort_keys=True)),
        "baseline": (
            BASELINE_FILE,
            baseline_json(split.train, contract, source=f"{prefix}/train/"),
        ),
    }
    frames = {"train": split.train, "test": split.holdout}
    channels: dict[str, Channel] = {}
    for name, (filename, text) in files.items():
        local = job_dir / "channels" / name
        local.mkdir(parents=True, exist_ok=True)
        if text is None:
            pd.DataFrame(frames[name]).to_parquet(local / filename, index=False)
        else:
            (local / filename).write_text(text)
        _upload(s3, local / filename, f"{prefix}/{name}/{filename}")
        channels[name] = Channel(local, f"{prefix}/{name}/")
    return channels


def initial_state(
    settings: Settings,
    clients: AwsClients,
    *,
    run_id: str,
    split: Split,
    channels: dict[str, Channel],
    contract: Contract,
    deps: RunDeps,
    training: TrainingBackend,
) -> RunState:
    """The run's state before its job starts: names, the split, lineage (champion, baseline)."""
    from etl.profile import read_pointer

    sm = clients.client("sagemaker")
    bucket = settings.require("lake_bucket")
    registry.ensure_group(sm, model_group(settings))
    champ = registry.champion(registry.list_versions(sm, model_group(settings)))
    pointer = read_pointer(clients.client("s3"), bucket, settings.baseline_prefix, contract.name)
    return RunState(
        run_id=run_id,
        job_name=job_name(settings, run_id),
        status=RunStatus.TRAINING,
        event_id=None,
        holder=None,
        window_start=split.window.start.isoformat(),
        window_end=split.window.end.isoformat(),
        holdout_start=split.boundary.isoformat(),
        train_rows=len(split.train),
        holdout_rows=len(split.holdout),
        train_uri=channels["train"].uri,
        test_uri=channels["test"].uri,
        output_uri=f"s3://{bucket}/models/{model_name(settings)}/{run_id}/",
        image_uri=training.image_uri(),
        hyperparameters={
            "model-id": run_id,
            "source": channels["train"].uri,
            **deps.hyperparameters,
        },
        started_at=time.time(),
        champion_version=champ.version if champ else None,
        baseline_version=pointer.version if pointer else None,
    )


def training_request(
    state: RunState, channels: dict[str, Channel], code_uri: str
) -> TrainingRequest:
    return TrainingRequest(
        run_id=state.run_id,
        train_dir=channels["train"].local,
        test_dir=channels["test"].local,
        train_uri=state.train_uri,
        test_uri=state.test_uri,
        output_uri=state.output_uri,
        hyperparameters=state.hyperparameters,
        job_name=state.job_name,
        code_uri=code_uri,
        contract_dir=channels["contract"].local,
        contract_uri=channels["contract"].uri,
        baseline_dir=channels["baseline"].local,
        baseline_uri=channels["baseline"].uri,
    )


def start_run(
    settings: Settings,
    clients: AwsClients,
    *,
    event: AlarmEvent | None,
    now: datetime,
    deps: RunDeps | None = None,
    holder: str | None = None,
    trigger: Trigger | None = None,
) -> RunState:
    """Step 1: lake window → time-ordered split → channels in S3 → run state saved → training
    job started (not awaited). ``holder`` is the single-flight lock's holder that step 2 releases;
    ``trigger`` is recorded with the run (default: the event's, ``manual`` without one).
    """
    t0 = time.monotonic()
    deps = deps or RunDeps()
    contract = deps.contract_for(settings, clients)
    require_label(contract)
    training = deps.training_for(settings, clients)
    s3 = clients.client("s3")
    run_id = run_id_for(settings, event, now)
    log.info("retrain run %s (event %s) starts", run_id, event.event_id if event else None)
    split = read_split(settings, clients, contract, now)
    prefix = run_prefix(settings, run_id)
    channels = write_channels(s3, split, contract, work_dir(settings) / run_id, prefix)
    state = initial_state(
        settings, clients, run_id=run_id, split=split, channels=channels, contract=contract,
        deps=deps, training=training,
    )  # fmt: skip
    state = replace(
        state,
        event_id=event.event_id if event else None,
        holder=holder,
        trigger=trigger or trigger_of(event, settings.stack_name),
        extra={"read_s": round(time.monotonic() - t0, 3)},
        unlabelled_rows=split.unlabelled if contract.labels.late else None,
    )
    # saved before the job starts: its state-change event can never find the run missing
    save_state(s3, settings, state)
    try:
        training.start(training_request(state, channels, f"{prefix}/code"))
    except Exception as exc:
        failed = replace(state, status=RunStatus.FAILED, reason=f"start failed: {exc}")
        save_state(s3, settings, failed)
        raise
    return state
