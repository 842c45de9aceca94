"""The retrain loop's entry points.

A run has two steps with durable state in between (:mod:`retrain.runs`):

1. :func:`start_run` — lake window → time-ordered split → channels in S3 → run state
   (``retrain/<model>/<run>/run.json``) → training job started, not awaited;
2. :func:`finish_run` — when the job completed: champion vs challenger on the same holdout →
   register → (promote: deploy, publish the new baseline) or reject → SNS; :func:`fail_run` when
   it failed or was stopped.

* :func:`handler` — the Lambda signature ``handler(event, context)``: the target of the alarm rule
  (step 1, returns once the job started) and of the training-job rule (step 2). A Lambda
  invocation never waits for training.
* :func:`handle_event` — the gate: parse the event; an alarm event that is a matching ALARM
  transition claims its event id (idempotent), takes the model's single-flight lock (expiry,
  cool-down), then runs (``wait=True``, the local dispatcher: both steps in this process) or
  starts (``wait=False``, the Lambda: the lock stays held until step 2). A training job event goes
  to :func:`handle_training_event` (idempotent per event id too; releases the lock).
* :func:`run_retrain` — one run, ungated, both steps in one process (start, wait, finish).

>>> # outcome = run_retrain(settings, clients, event=None, now=datetime.now(UTC))
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from etl import jsonsafe
from etl.aws import AwsClients
from etl.contract import Contract, contract_for_settings
from etl.exceptions import LabelRequiredError, RetrainError
from etl.settings import Settings, load_settings
from retrain import registry
from retrain.artifacts import fetch_model, split_s3
from retrain.backends.base import (
    COMPLETED as JOB_COMPLETED,
)
from retrain.backends.base import (
    ServingBackend,
    TrainingBackend,
    TrainingJob,
    TrainingRequest,
)
from retrain.data import Window, read_window, time_split
from retrain.evaluate import decide_promotion, score
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
from retrain.idempotency import (
    COMPLETED,
    DEFERRED,
    FAILED,
    DynamoStore,
    IdempotencyStore,
    Verdict,
)
from retrain.inference import LoadedModel, model_fn
from retrain.promote import activate
from retrain.runs import (
    FAILED as RUN_FAILED,
)
from retrain.runs import (
    FINISHED,
    TRAINING,
    RunState,
    Step,
    decide_step,
    job_name,
    job_prefix,
    load_state,
    model_name,
    promotion_metric,
    run_id_for_job,
    run_prefix,
    save_state,
    settings_contract,
)
from retrain.train import BASELINE_FILE, CONTRACT_FILE, METRICS_FILE, labels, score_frame

log = logging.getLogger(__name__)

PROMOTED = "promoted"
REJECTED = "rejected"
#: HandlerResult.status of step 1 on AWS (the training job runs; step 2 finishes the run)
STARTED = "started"


@dataclass(frozen=True)
class RetrainOutcome:
    """What one run did; ``to_dict()`` is what SNS carries and the CLI prints."""

    status: str
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

    @property
    def promoted(self) -> bool:
        return self.status == PROMOTED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HandlerResult:
    """What the gate decided: ``ran`` (with the outcome), ``started`` (step 1: the training job
    runs), ``failed`` (step 2: the job failed or was stopped), or why nothing happened."""

    status: str
    reason: str
    event_id: str | None = None
    outcome: RetrainOutcome | None = None
    run_id: str | None = None
    training_job: str | None = None
    #: ``deferred``: seconds until the cool-down ends (the local dispatcher redelivers then)
    retry_after_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "event_id": self.event_id,
        }
        doc["outcome"] = self.outcome.to_dict() if self.outcome else None
        if self.run_id is not None:
            doc["run_id"] = self.run_id
        if self.training_job is not None:
            doc["training_job"] = self.training_job
        if self.retry_after_s is not None:
            doc["retry_after_s"] = round(self.retry_after_s, 3)
        return doc


# -- resources derived from settings ---------------------------------------------------------
def idempotency_table(settings: Settings) -> str:
    return settings.idempotency_table or f"{settings.stack_name}-retrain-idempotency"


def model_group(settings: Settings) -> str:
    return settings.model_package_group or f"{settings.stack_name}-{model_name(settings)}"


def work_dir(settings: Settings) -> Path:
    return Path(settings.model_cache_dir).resolve().parent / "retrain"


def model_cache(settings: Settings) -> Path:
    return Path(settings.model_cache_dir).resolve() / model_name(settings)


def pointer_path(settings: Settings) -> Path:
    """The file the local serving backend points at the model to serve; a model server started
    with ``pointer=pointer_path(settings)`` follows promotions without ``model_server_url``."""
    from retrain.backends.local import POINTER_FILE

    return model_cache(settings) / POINTER_FILE


def code_version() -> str:
    """The git commit of this checkout, else the package version."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).parent,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"driftline-{version('driftline')}"
    except PackageNotFoundError:
        return "unknown"


def make_training(settings: Settings, clients: AwsClients) -> TrainingBackend:
    """The training backend the settings name (sagemaker imported only if chosen)."""
    if settings.training_backend == "sagemaker":
        from retrain.backends.sagemaker import SageMakerTraining

        return SageMakerTraining(
            clients.session,
            clients.client("s3"),
            role_arn=settings.require("sagemaker_role_arn"),
            region=settings.region,
            instance_type=settings.sagemaker_training_instance,
            framework_version=settings.sklearn_framework_version,
            work_dir=work_dir(settings),
            max_runtime_s=settings.sagemaker_training_max_runtime_s,
            sagemaker_client=clients.client("sagemaker"),
            kms_key_arn=settings.data_key_arn,
        )
    from retrain.backends.local import LocalTraining

    return LocalTraining(clients.client("s3"), work_dir(settings))


def make_serving(settings: Settings, clients: AwsClients) -> ServingBackend:
    """The serving backend the settings name."""
    if settings.serving_backend == "sagemaker":
        from retrain.backends.sagemaker import SageMakerServing

        return SageMakerServing(
            clients.client("sagemaker"),
            endpoint_name=settings.require("endpoint_name"),
            role_arn=settings.require("sagemaker_role_arn"),
            instance_type=settings.sagemaker_serving_instance,
            # the stack's endpoint alarms (EndpointErrorAlarmName / EndpointLatencyAlarmName)
            alarm_names=(
                f"{settings.stack_name}-endpoint-errors",
                f"{settings.stack_name}-endpoint-latency",
            ),
            kms_key_arn=settings.data_key_arn,
            # data capture next to the lake: the model-quality join reads it (docs/quality.md)
            capture_s3_uri=(
                f"s3://{settings.lake_bucket}/capture" if settings.lake_bucket else None
            ),
        )
    from retrain.backends.local import LocalServing

    token = settings.model_server_token_file
    return LocalServing(
        clients.client("s3"),
        model_cache(settings),
        settings.model_server_url,
        Path(token) if token else None,
    )


def make_backends(
    settings: Settings, clients: AwsClients
) -> tuple[TrainingBackend, ServingBackend]:
    """The training and serving backends the settings name."""
    return make_training(settings, clients), make_serving(settings, clients)


# -- one run, in two steps -------------------------------------------------------------------
def _run_id(settings: Settings, event: AlarmEvent | None, now: datetime) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if event is not None:  # a retry of the same event reuses the same names
        digest = hashlib.sha256(event.event_id.encode()).hexdigest()[:8]
    else:
        digest = uuid.uuid4().hex[:8]
    return f"{model_name(settings)}-{stamp}-{digest}"


def _holdout_scores(model: LoadedModel, holdout: Any, contract: Contract) -> dict[str, float]:
    task = contract.task.value if contract.task else ""
    return score(labels(holdout, contract), score_frame(model, holdout), task=task)


def require_label(contract: Contract) -> None:
    """Retraining needs a label: say so plainly for a contract without one."""
    if contract.label is None:
        raise LabelRequiredError(
            f"contract {contract.name!r} declares no label, so there is no model to retrain; the"
            " lake, warehouse and drift monitoring work without one. To retrain, give the target"
            ' field role = "label" and set task ("binary_classification" or "regression")'
        )


def _contract_channel(s3: Any, contract: Contract, job_dir: Path, prefix: str) -> tuple[Path, str]:
    """The contract as the training job's own input channel ``contract`` (``contract.json``)."""
    local = job_dir / "channels" / "contract"
    local.mkdir(parents=True, exist_ok=True)
    (local / CONTRACT_FILE).write_text(json.dumps(contract.to_dict(), indent=1, sort_keys=True))
    bucket, key = split_s3(f"{prefix}/contract/{CONTRACT_FILE}")
    s3.upload_file(str(local / CONTRACT_FILE), bucket, key)
    return local, f"{prefix}/contract/"


def _put_json(s3: Any, uri: str, doc: Mapping[str, Any]) -> None:
    bucket, key = split_s3(uri)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        ContentType="application/json",
        Body=jsonsafe.dumps(doc, sort_keys=True, default=float).encode(),
    )


def _read_parquet(s3: Any, uri: str) -> Any:
    import pandas as pd

    bucket, key = split_s3(uri)
    return pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def start_run(
    settings: Settings,
    clients: AwsClients,
    *,
    event: AlarmEvent | None,
    now: datetime,
    training: TrainingBackend | None = None,
    contract: Contract | None = None,
    hyperparameters: Mapping[str, str] | None = None,
    holder: str | None = None,
) -> RunState:
    """Step 1: lake window → time-ordered split → channels in S3 → run state saved → training
    job started (not awaited). ``holder`` is the single-flight lock's holder that step 2 releases.
    """
    import pandas as pd

    from etl.profile import read_pointer

    t0 = time.monotonic()
    contract = contract or contract_for_settings(settings, clients)
    require_label(contract)
    training = training or make_training(settings, clients)
    s3 = clients.client("s3")
    sm = clients.client("sagemaker")
    bucket = settings.require("lake_bucket")
    run_id = _run_id(settings, event, now)
    name = job_name(settings, run_id)
    log.info("retrain run %s (event %s) starts", run_id, event.event_id if event else None)

    # the last H hours of the lake, time-ordered split
    window = Window.last_hours(now, settings.retrain_window_hours)
    frame = read_window(
        clients.session,
        settings.endpoint_url,
        bucket=bucket,
        lake_prefix=settings.lake_prefix,
        contract=contract,
        window=window,
        manifest_prefix=settings.manifest_prefix,
    )
    split = time_split(
        frame,
        contract,
        holdout_fraction=settings.retrain_holdout_fraction,
        window=window,
        min_rows=settings.retrain_min_rows,
    )

    # channels (local for the local backend, S3 for lineage, SageMaker and step 2)
    job_dir = work_dir(settings) / run_id
    prefix = run_prefix(settings, run_id)
    channels: dict[str, tuple[Path, str]] = {}
    for part_name, part in (("train", split.train), ("test", split.holdout)):
        local = job_dir / "channels" / part_name
        local.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(part).to_parquet(local / f"{part_name}.parquet", index=False)
        uri = f"{prefix}/{part_name}/{part_name}.parquet"
        s3_bucket, key = split_s3(uri)
        s3.upload_file(str(local / f"{part_name}.parquet"), s3_bucket, key)
        channels[part_name] = (local, uri.rsplit("/", 1)[0] + "/")
    channels["contract"] = _contract_channel(s3, contract, job_dir, prefix)

    # lineage at the start: the champion and the current baseline
    registry.ensure_group(sm, model_group(settings))
    champ = registry.champion(registry.list_versions(sm, model_group(settings)))
    pointer = read_pointer(s3, bucket, settings.baseline_prefix, contract.name)
    hps = {"model-id": run_id, "source": channels["train"][1], **(hyperparameters or {})}
    state = RunState(
        run_id=run_id,
        job_name=name,
        status=TRAINING,
        event_id=event.event_id if event else None,
        holder=holder,
        window_start=window.start.isoformat(),
        window_end=window.end.isoformat(),
        holdout_start=split.boundary.isoformat(),
        train_rows=len(split.train),
        holdout_rows=len(split.holdout),
        train_uri=channels["train"][1],
        test_uri=channels["test"][1],
        output_uri=f"s3://{bucket}/models/{model_name(settings)}/{run_id}/",
        image_uri=training.image_uri(),
        hyperparameters=hps,
        started_at=time.time(),
        champion_version=champ.version if champ else None,
        baseline_version=pointer.version if pointer else None,
        extra={"read_s": round(time.monotonic() - t0, 3)},
    )
    # saved before the job starts: its state-change event can never find the run missing
    save_state(s3, settings, state)
    try:
        training.start(
            TrainingRequest(
                run_id=run_id,
                train_dir=channels["train"][0],
                test_dir=channels["test"][0],
                train_uri=state.train_uri,
                test_uri=state.test_uri,
                output_uri=state.output_uri,
                hyperparameters=hps,
                job_name=name,
                code_uri=f"{prefix}/code",
                contract_dir=channels["contract"][0],
                contract_uri=channels["contract"][1],
            )
        )
    except Exception as exc:
        save_state(s3, settings, replace(state, status=RUN_FAILED, reason=f"start failed: {exc}"))
        raise
    return state


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


def finish_run(
    settings: Settings,
    clients: AwsClients,
    state: RunState,
    job: TrainingJob,
    *,
    serving: ServingBackend | None = None,
    contract: Contract | None = None,
    timings: Mapping[str, float] | None = None,
) -> RetrainOutcome:
    """Step 2 of a completed job: champion and challenger on the run's holdout → register →
    promote (deploy, approve, new baseline) or reject → SNS. Saves the run state as finished (or
    failed, when anything here raises)."""
    s3 = clients.client("s3")
    try:
        outcome = _finish(settings, clients, state, job, serving, contract, timings or {})
    except Exception as exc:
        save_state(
            s3, settings, replace(state, status=RUN_FAILED, reason=f"{type(exc).__name__}: {exc}")
        )
        raise
    save_state(
        s3,
        settings,
        replace(state, status=FINISHED, reason=outcome.reason, model_version=outcome.model_version),
    )
    # tell people
    if settings.topic_arn:
        from retrain.notify import publish

        publish(clients.client("sns"), settings.topic_arn, outcome.to_dict())
    return outcome


def _finish(
    settings: Settings,
    clients: AwsClients,
    state: RunState,
    job: TrainingJob,
    serving: ServingBackend | None,
    contract: Contract | None,
    timings_in: Mapping[str, float],
) -> RetrainOutcome:
    from etl.profile import Profile

    timings = {**state.extra, **timings_in}
    t2 = time.monotonic()
    contract = contract or contract_for_settings(settings, clients)
    serving = serving or make_serving(settings, clients)
    s3 = clients.client("s3")
    sm = clients.client("sagemaker")
    group = model_group(settings)
    job_dir = work_dir(settings) / state.run_id
    prefix = run_prefix(settings, state.run_id)
    if not job.model_data_url:
        raise RetrainError(f"training job {job.name} completed without a model artifact")
    model_dir = fetch_model(s3, job.model_data_url, job_dir / "challenger")
    holdout = _read_parquet(s3, f"{state.test_uri}test.parquet")

    # champion vs challenger on the same holdout
    registry.ensure_group(sm, group)
    champ = registry.champion(registry.list_versions(sm, group))
    challenger_metrics = _holdout_scores(model_fn(str(model_dir)), holdout, contract)
    champion_metrics: dict[str, float] | None = None
    if champ is not None:
        champ_dir = fetch_model(s3, champ.model_data_url, job_dir / "champion")
        champion_metrics = _holdout_scores(model_fn(str(champ_dir)), holdout, contract)
    decision = decide_promotion(
        champion_metrics,
        challenger_metrics,
        metric=promotion_metric(settings, contract),
        margin=settings.promotion_margin,
    )
    timings["evaluate_s"] = time.monotonic() - t2

    # register with metrics and lineage
    profile = Profile.from_json(
        (model_dir / BASELINE_FILE).read_text(), source=str(model_dir / BASELINE_FILE)
    )
    metrics_uri = f"{prefix}/evaluation.json"
    _put_json(
        s3,
        metrics_uri,
        {
            "challenger": challenger_metrics,
            "champion": champion_metrics,
            "decision": decision.reason,
            "training": json.loads((model_dir / METRICS_FILE).read_text()),
        },
    )
    lineage = {
        "run_id": state.run_id,
        "event_id": state.event_id or "manual",
        "window_start": state.window_start,
        "window_end": state.window_end,
        "holdout_start": state.holdout_start,
        "train_rows": str(state.train_rows),
        "holdout_rows": str(state.holdout_rows),
        "training_data": state.train_uri,
        "baseline_version": profile.version,
        "code_version": code_version(),
        "training_job": job.name,
        "champion_version": str(champ.version if champ else ""),
        "contract_hash": contract.hash,
    }
    version = registry.register(
        sm,
        group,
        registry.Candidate(
            model_data_url=job.model_data_url,
            image_uri=state.image_uri,
            metrics=challenger_metrics,
            champion_metrics=champion_metrics,
            lineage=lineage,
            metrics_uri=metrics_uri,
            description=decision.reason,
        ),
    )

    # promote (deploy, then approve, then the new baseline) or reject
    baseline_uri: str | None = None
    endpoint: str | None = None
    if decision.promote:
        t3 = time.monotonic()
        try:
            activation = activate(
                settings,
                s3,
                sm,
                serving,
                version,
                reason=decision.reason,
                image_uri=state.image_uri,
                model_dir=model_dir,
                staging_dir=job_dir,
            )
        except RetrainError as exc:
            registry.set_status(sm, version, registry.REJECTED, reason=f"deployment failed: {exc}")
            raise
        endpoint = activation.deployment.endpoint
        baseline_uri = activation.baseline_uri
        timings["deploy_s"] = time.monotonic() - t3
        status = PROMOTED
    else:
        registry.set_status(sm, version, registry.REJECTED, reason=decision.reason)
        status = REJECTED
    timings.setdefault("total_s", time.time() - state.started_at)
    outcome = RetrainOutcome(
        status=status,
        reason=decision.reason,
        run_id=state.run_id,
        event_id=state.event_id,
        metric=decision.metric,
        metrics_champion=champion_metrics,
        metrics_challenger=challenger_metrics,
        model_version=version.version,
        champion_version=champ.version if champ else None,
        model_data_url=job.model_data_url,
        baseline_uri=baseline_uri,
        baseline_version=profile.version,
        window_start=state.window_start,
        window_end=state.window_end,
        train_rows=state.train_rows,
        holdout_rows=state.holdout_rows,
        endpoint=endpoint,
        timings={k: round(v, 3) for k, v in timings.items()},
    )
    log.info("retrain run %s: %s (%s)", state.run_id, status, decision.reason)
    return outcome


def fail_run(
    settings: Settings, clients: AwsClients, state: RunState, reason: str
) -> dict[str, Any]:
    """Step 2 of a job that failed or was stopped: record it in the run state and tell people.
    Returns the notification document."""
    save_state(clients.client("s3"), settings, replace(state, status=RUN_FAILED, reason=reason))
    doc: dict[str, Any] = {
        "status": RUN_FAILED,
        "reason": reason,
        "run_id": state.run_id,
        "event_id": state.event_id,
        "training_job": state.job_name,
        "metric": promotion_metric(settings, settings_contract(settings)),
        "model_version": None,
        "window_start": state.window_start,
        "window_end": state.window_end,
    }
    log.warning("retrain run %s failed: %s", state.run_id, reason)
    if settings.topic_arn:
        from retrain.notify import publish

        publish(clients.client("sns"), settings.topic_arn, doc)
    return doc


def run_retrain(
    settings: Settings,
    clients: AwsClients,
    *,
    event: AlarmEvent | None,
    now: datetime,
    training: TrainingBackend | None = None,
    serving: ServingBackend | None = None,
    contract: Contract | None = None,
    hyperparameters: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RetrainOutcome:
    """Retrain on the lake window ending at ``now``; promote the challenger if it wins.

    Both steps in one process: :func:`start_run`, wait for the job, :func:`finish_run`. Not
    gated: callers that may see duplicates go through :func:`handle_event`. A failed training
    job raises :class:`RetrainError` (after recording it and notifying).
    """
    t0 = time.monotonic()
    contract = contract or contract_for_settings(settings, clients)
    training = training or make_training(settings, clients)
    state = start_run(
        settings,
        clients,
        event=event,
        now=now,
        training=training,
        contract=contract,
        hyperparameters=hyperparameters,
    )
    t1 = time.monotonic()
    job = wait_for_training(
        training,
        state.job_name,
        timeout_s=settings.sagemaker_training_max_runtime_s + 600.0,
        sleep=sleep,
    )
    if job.status != JOB_COMPLETED:
        reason = job.failure_reason or f"training job {job.name} {job.status}"
        fail_run(settings, clients, state, reason)
        raise RetrainError(reason)
    timings = {"train_s": time.monotonic() - t1}
    outcome = finish_run(
        settings, clients, state, job, serving=serving, contract=contract, timings=timings
    )
    return replace(outcome, timings={**outcome.timings, "total_s": round(time.monotonic() - t0, 3)})


# -- the gate --------------------------------------------------------------------------------
def _store(settings: Settings, clients: AwsClients) -> IdempotencyStore:
    dynamo = DynamoStore(clients.client("dynamodb"), idempotency_table(settings))
    dynamo.ensure_table()
    return dynamo


def lock_ttl(settings: Settings, *, wait: bool) -> float:
    """How long a run holds the model's lock: one process's run, or (two steps) the training
    job's longest runtime plus the time to finish."""
    if wait:
        return settings.retrain_lock_ttl_s
    return settings.retrain_lock_ttl_s + settings.sagemaker_training_max_runtime_s


def handle_event(
    raw: Any,
    settings: Settings,
    clients: AwsClients,
    *,
    now: datetime | None = None,
    store: IdempotencyStore | None = None,
    clock: Callable[[], float] = time.time,
    run: Callable[..., RetrainOutcome] = run_retrain,
    wait: bool = True,
    **run_kwargs: Any,
) -> HandlerResult:
    """Parse, filter, claim, lock, run. Raises :class:`~retrain.events.MalformedEventError`
    (with the raw event) for anything that is neither an alarm state change nor a training job
    state change.

    ``wait=True`` (local): the run is one process (``run``), the lock released at its end.
    ``wait=False`` (the Lambda): step 1 only; the lock stays held until the training job's
    state-change event reaches :func:`handle_training_event`.
    """
    event = parse_event(raw)
    if isinstance(event, TrainingJobEvent):
        return handle_training_event(
            event, settings, clients, store=store, clock=clock, **_pick(run_kwargs, _STEP2_ARGS)
        )
    trigger: AlarmEvent | None
    if isinstance(event, ScheduledEvent):
        # the safety net: no alarm to check; the lock's cool-down still applies
        decision, trigger = Decision(True, "scheduled safety-net retrain"), None
    else:
        # unset, only this stack's drift alarms (the rule's own prefix) start a run
        names = (settings.drift_alarm_name,) if settings.drift_alarm_name else ()
        decision = should_retrain(event, alarm_names=names, alarm_prefix=drift_prefix(settings))
        trigger = event
    contract = run_kwargs.get("contract") or settings_contract(settings)
    if decision.run and contract.label is None:
        decision = Decision(False, f"no retrain: contract {contract.name!r} declares no label")
    admitted = _admit(decision, event.event_id, store, settings, clients, clock)
    if isinstance(admitted, HandlerResult):
        return admitted
    store, run_id, resumed = admitted
    if resumed and trigger is not None and not _still_in_alarm(clients, trigger.alarm_name):
        reason = f"alarm {trigger.alarm_name!r} left ALARM during the cool-down"
        store.finish_event(event.event_id, run_id, COMPLETED, f"ignored: {reason}")
        return HandlerResult("ignored", reason, event.event_id)
    lock = store.acquire_lock(model_name(settings), run_id, clock(), lock_ttl(settings, wait=wait))
    if lock.verdict is Verdict.COOLING_DOWN and trigger is not None:
        # CloudWatch sends no new event while the alarm stays in ALARM: keep this one for later
        store.finish_event(event.event_id, run_id, DEFERRED, lock.reason)
        reason = f"{lock.reason}; deferred to the end of the cool-down"
        return HandlerResult("deferred", reason, event.event_id, retry_after_s=lock.retry_after_s)
    if not lock.go:
        store.finish_event(event.event_id, run_id, COMPLETED, f"skipped: {lock.reason}")
        log.info("event %s not run: %s", event.event_id, lock.reason)
        return HandlerResult(lock.verdict.value, lock.reason, event.event_id)
    try:
        if not wait:
            state = start_run(
                settings,
                clients,
                event=trigger,
                now=now or datetime.now(UTC),
                holder=run_id,
                **_pick(run_kwargs, _STEP1_ARGS),
            )
        else:
            outcome = run(
                settings, clients, event=trigger, now=now or datetime.now(UTC), **run_kwargs
            )
    except Exception as exc:
        store.finish_event(event.event_id, run_id, FAILED, f"{type(exc).__name__}: {exc}")
        store.release_lock(model_name(settings), run_id, clock(), 0.0)
        raise
    if not wait:
        # the lock stays held: step 2 (the job's state-change event) releases it
        store.finish_event(
            event.event_id,
            run_id,
            COMPLETED,
            json.dumps({"status": STARTED, "run_id": state.run_id, "job": state.job_name}),
        )
        reason = f"training job {state.job_name} started"
        log.info("event %s: %s", event.event_id, reason)
        return HandlerResult(
            STARTED, reason, event.event_id, run_id=state.run_id, training_job=state.job_name
        )
    store.finish_event(
        event.event_id,
        run_id,
        COMPLETED,
        json.dumps({"status": outcome.status, "version": outcome.model_version}),
    )
    store.release_lock(model_name(settings), run_id, clock(), settings.retrain_cooldown_s)
    return HandlerResult("ran", outcome.reason, event.event_id, outcome)


def _admit(
    decision: Decision,
    event_id: str,
    store: IdempotencyStore | None,
    settings: Settings,
    clients: AwsClients,
    clock: Callable[[], float],
) -> tuple[IdempotencyStore, str, bool] | HandlerResult:
    """Both steps' way in: an event the decision ignores, or one another holder has claimed,
    ends here with the result to return; otherwise (the store, this claim's holder id, whether
    the event was deferred before)."""
    if not decision.run:
        log.info("event %s ignored: %s", event_id, decision.reason)
        return HandlerResult("ignored", decision.reason, event_id)
    if store is None:
        store = _store(settings, clients)
    holder = f"handler-{uuid.uuid4().hex[:12]}"
    claim = store.claim_event(event_id, holder, clock(), settings.retrain_lock_ttl_s)
    if claim.go:
        return store, holder, claim.verdict is Verdict.RESUMED
    log.info("event %s not run: %s", event_id, claim.reason)
    return HandlerResult(claim.verdict.value, claim.reason, event_id)


def drift_prefix(settings: Settings) -> str:
    """The name prefix of this stack's drift alarms (the retrain rule matches the same)."""
    return f"{settings.stack_name}-drift-"


def _still_in_alarm(clients: AwsClients, alarm_name: str) -> bool:
    found = clients.client("cloudwatch").describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    return bool(found) and found[0].get("StateValue") == ALARM


_STEP1_ARGS = ("training", "contract", "hyperparameters")
_STEP2_ARGS = ("training", "serving", "contract")


def _pick(kwargs: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in names}


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
            store.finish_event(state.event_id, state.holder, FAILED, failure)
        except ClientError as exc:  # the event's claim moved on (expired, re-claimed)
            log.warning("alarm event %s not marked failed: %s", state.event_id, exc)
    cooldown = 0.0 if failure is not None else settings.retrain_cooldown_s
    store.release_lock(model_name(settings), state.holder, clock(), cooldown)


def handle_training_event(
    event: TrainingJobEvent,
    settings: Settings,
    clients: AwsClients,
    *,
    store: IdempotencyStore | None = None,
    clock: Callable[[], float] = time.time,
    training: TrainingBackend | None = None,
    serving: ServingBackend | None = None,
    contract: Contract | None = None,
) -> HandlerResult:
    """Step 2: a training job of this stack and model ended. Idempotent per event id; finishes
    the run (Completed) or records its failure (Failed/Stopped); releases the run's lock."""
    decision = should_finish(event, job_prefix=job_prefix(settings))
    admitted = _admit(decision, event.event_id, store, settings, clients, clock)
    if isinstance(admitted, HandlerResult):
        return admitted
    store, claim_id, _ = admitted
    run_id = run_id_for_job(settings, event.job_name) or ""
    try:
        state = load_state(clients.client("s3"), settings, run_id)
    except Exception as exc:
        store.finish_event(event.event_id, claim_id, FAILED, f"{type(exc).__name__}: {exc}")
        raise
    step = decide_step(event, state)
    ids = {"run_id": run_id, "training_job": event.job_name}
    job_ids: dict[str, Any] = {"run_id": run_id, "training_job": event.job_name}
    if step.step is Step.IGNORE or state is None:
        store.finish_event(event.event_id, claim_id, COMPLETED, f"ignored: {step.reason}")
        log.info("event %s ignored: %s", event.event_id, step.reason)
        return HandlerResult("ignored", step.reason, event.event_id, **job_ids)
    if step.step is Step.FAIL:
        try:
            fail_run(settings, clients, state, step.reason)
        finally:
            _end_run(store, settings, state, clock, failure=step.reason)
            store.finish_event(
                event.event_id, claim_id, COMPLETED, json.dumps({"status": RUN_FAILED, **ids})
            )
        return HandlerResult(RUN_FAILED, step.reason, event.event_id, **job_ids)
    try:
        training = training or make_training(settings, clients)
        job = training.describe(event.job_name)
        job = replace(
            job,
            status=JOB_COMPLETED,  # the event is SageMaker's word; describe may lag behind it
            model_data_url=job.model_data_url or event.model_data_url,
        )
        outcome = finish_run(settings, clients, state, job, serving=serving, contract=contract)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        store.finish_event(event.event_id, claim_id, FAILED, failure)
        _end_run(store, settings, state, clock, failure=failure)
        raise
    store.finish_event(
        event.event_id,
        claim_id,
        COMPLETED,
        json.dumps({"status": outcome.status, "version": outcome.model_version}),
    )
    _end_run(store, settings, state, clock, failure=None)
    return HandlerResult("ran", outcome.reason, event.event_id, outcome, **job_ids)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """AWS Lambda entry point: the alarm rule's target (step 1: start the training job) and the
    training-job rule's target (step 2: finish the run)."""
    logging.getLogger().setLevel(logging.INFO)
    settings = load_settings()
    if not Path(settings.model_cache_dir).is_absolute():
        # Lambda's working directory is read-only; only the temp directory is writable
        settings = settings.replace(
            model_cache_dir=str(Path(tempfile.gettempdir()) / "driftline" / "models")
        )
    clients = AwsClients.from_settings(settings)
    return handle_event(event, settings, clients, wait=False).to_dict()
