"""The retrain loop's entry points.

* :func:`handler` — the Lambda signature ``handler(event, context)``: the EventBridge rule's target
  on AWS. Settings from the environment, clients built once.
* :func:`handle_event` — the gate: parse the alarm event, ignore anything that is not a matching
  ALARM transition (with the reason), claim the event id (idempotent), take the model's
  single-flight lock (with expiry and cool-down), then run. The local dispatcher calls it
  in-process for each message of the rule's SQS target.
* :func:`run_retrain` — one run, ungated: lake window → training job → champion vs challenger on
  the same holdout → register → (promote: deploy, publish the new baseline) → SNS.

>>> # outcome = run_retrain(settings, clients, event=None, now=datetime.now(UTC))
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from etl.contract import Contract, load_contract
from etl.exceptions import RetrainError
from etl.settings import Settings, load_settings
from retrain import registry
from retrain.artifacts import fetch_model, split_s3
from retrain.backends.base import ServingBackend, TrainingBackend, TrainingRequest
from retrain.data import Window, read_window, time_split
from retrain.evaluate import decide_promotion, score
from retrain.events import AlarmEvent, parse_alarm_event, should_retrain
from retrain.idempotency import COMPLETED, FAILED, DynamoStore, IdempotencyStore
from retrain.inference import LoadedModel, model_fn
from retrain.promote import activate
from retrain.train import BASELINE_FILE, METRICS_FILE, score_frame

log = logging.getLogger(__name__)

PROMOTED = "promoted"
REJECTED = "rejected"


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
    """What the gate decided: ``ran`` (with the outcome), or why no run started."""

    status: str
    reason: str
    event_id: str | None = None
    outcome: RetrainOutcome | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "event_id": self.event_id,
        }
        doc["outcome"] = self.outcome.to_dict() if self.outcome else None
        return doc


# -- resources derived from settings ---------------------------------------------------------
def idempotency_table(settings: Settings) -> str:
    return settings.idempotency_table or f"{settings.stack_name}-retrain-idempotency"


def model_group(settings: Settings) -> str:
    return settings.model_package_group or f"{settings.stack_name}-{settings.model_name}"


def work_dir(settings: Settings) -> Path:
    return Path(settings.model_cache_dir).resolve().parent / "retrain"


def model_cache(settings: Settings) -> Path:
    return Path(settings.model_cache_dir).resolve() / settings.model_name


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


def make_backends(
    settings: Settings, clients: AwsClients
) -> tuple[TrainingBackend, ServingBackend]:
    """The training and serving backends the settings name (sagemaker imported only if chosen)."""
    s3 = clients.client("s3")
    training: TrainingBackend
    serving: ServingBackend
    if settings.training_backend == "sagemaker":
        from retrain.backends.sagemaker import SageMakerTraining

        training = SageMakerTraining(
            clients.session,
            s3,
            role_arn=settings.require("sagemaker_role_arn"),
            region=settings.region,
            instance_type=settings.sagemaker_training_instance,
            framework_version=settings.sklearn_framework_version,
            work_dir=work_dir(settings),
        )
    else:
        from retrain.backends.local import LocalTraining

        training = LocalTraining(s3, work_dir(settings))
    if settings.serving_backend == "sagemaker":
        from retrain.backends.sagemaker import SageMakerServing

        serving = SageMakerServing(
            clients.client("sagemaker"),
            endpoint_name=settings.require("endpoint_name"),
            role_arn=settings.require("sagemaker_role_arn"),
            instance_type=settings.sagemaker_serving_instance,
            # the stack's endpoint alarms (EndpointErrorAlarmName / EndpointLatencyAlarmName)
            alarm_names=(
                f"{settings.stack_name}-endpoint-errors",
                f"{settings.stack_name}-endpoint-latency",
            ),
        )
    else:
        from retrain.backends.local import LocalServing

        serving = LocalServing(s3, model_cache(settings), settings.model_server_url)
    return training, serving


# -- one run ---------------------------------------------------------------------------------
def _run_id(settings: Settings, event: AlarmEvent | None, now: datetime) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    if event is not None:  # a retry of the same event reuses the same names
        digest = hashlib.sha256(event.event_id.encode()).hexdigest()[:8]
    else:
        digest = uuid.uuid4().hex[:8]
    return f"{settings.model_name}-{stamp}-{digest}"


def _holdout_scores(model: LoadedModel, holdout: Any, contract: Contract) -> dict[str, float]:
    label = contract.label
    assert label is not None  # time_split checked it
    return score(holdout[label.name].astype(bool).to_numpy(), score_frame(model, holdout))


def _put_json(s3: Any, uri: str, doc: Mapping[str, Any]) -> None:
    bucket, key = split_s3(uri)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        ContentType="application/json",
        Body=json.dumps(doc, sort_keys=True, default=float).encode(),
    )


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
) -> RetrainOutcome:
    """Retrain on the lake window ending at ``now``; promote the challenger if it wins.

    Not gated: callers that may see duplicates go through :func:`handle_event`.
    """
    import pandas as pd

    from etl.profile import Profile

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    contract = contract or load_contract(settings.contract_path)
    if training is None or serving is None:
        default_training, default_serving = make_backends(settings, clients)
        training = training or default_training
        serving = serving or default_serving
    s3 = clients.client("s3")
    sm = clients.client("sagemaker")
    bucket = settings.require("lake_bucket")
    group = model_group(settings)
    run_id = _run_id(settings, event, now)
    log.info("retrain run %s (event %s) starts", run_id, event.event_id if event else None)

    # 1. data: the last H hours of the lake, time-ordered split
    window = Window.last_hours(now, settings.retrain_window_hours)
    frame = read_window(
        clients.session,
        settings.endpoint_url,
        bucket=bucket,
        lake_prefix=settings.lake_prefix,
        contract=contract,
        window=window,
    )
    split = time_split(
        frame,
        contract,
        holdout_fraction=settings.retrain_holdout_fraction,
        window=window,
        min_rows=settings.retrain_min_rows,
    )
    timings["read_s"] = time.monotonic() - t0

    # 2. channels (local for the local backend, S3 for lineage and SageMaker)
    job_dir = work_dir(settings) / run_id
    prefix = f"s3://{bucket}/retrain/{settings.model_name}/{run_id}"
    channels: dict[str, tuple[Path, str]] = {}
    for name, part in (("train", split.train), ("test", split.holdout)):
        local = job_dir / "channels" / name
        local.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(part).to_parquet(local / f"{name}.parquet", index=False)
        uri = f"{prefix}/{name}/{name}.parquet"
        s3_bucket, key = split_s3(uri)
        s3.upload_file(str(local / f"{name}.parquet"), s3_bucket, key)
        channels[name] = (local, uri.rsplit("/", 1)[0] + "/")

    # 3. training job
    t1 = time.monotonic()
    hps = {"model-id": run_id, "source": channels["train"][1], **(hyperparameters or {})}
    result = training.train(
        TrainingRequest(
            run_id=run_id,
            train_dir=channels["train"][0],
            test_dir=channels["test"][0],
            train_uri=channels["train"][1],
            test_uri=channels["test"][1],
            output_uri=f"s3://{bucket}/models/{settings.model_name}/{run_id}/",
            hyperparameters=hps,
        )
    )
    timings["train_s"] = time.monotonic() - t1

    # 4. champion vs challenger on the same holdout
    t2 = time.monotonic()
    registry.ensure_group(sm, group)
    versions = registry.list_versions(sm, group)
    champ = registry.champion(versions)
    challenger_metrics = _holdout_scores(model_fn(str(result.model_dir)), split.holdout, contract)
    champion_metrics: dict[str, float] | None = None
    if champ is not None:
        champ_dir = fetch_model(s3, champ.model_data_url, job_dir / "champion")
        champion_metrics = _holdout_scores(model_fn(str(champ_dir)), split.holdout, contract)
    decision = decide_promotion(
        champion_metrics,
        challenger_metrics,
        metric=settings.promotion_metric,
        margin=settings.promotion_margin,
    )
    timings["evaluate_s"] = time.monotonic() - t2

    # 5. register with metrics and lineage
    baseline_doc = (result.model_dir / BASELINE_FILE).read_text()
    profile = Profile.from_json(baseline_doc, source=str(result.model_dir / BASELINE_FILE))
    metrics_uri = f"{prefix}/evaluation.json"
    _put_json(
        s3,
        metrics_uri,
        {
            "challenger": challenger_metrics,
            "champion": champion_metrics,
            "decision": decision.reason,
            "training": json.loads((result.model_dir / METRICS_FILE).read_text()),
        },
    )
    lineage = {
        "run_id": run_id,
        "event_id": event.event_id if event else "manual",
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "holdout_start": split.boundary.isoformat(),
        "train_rows": str(len(split.train)),
        "holdout_rows": str(len(split.holdout)),
        "training_data": channels["train"][1],
        "baseline_version": profile.version,
        "code_version": code_version(),
        "training_job": result.job_name,
        "champion_version": str(champ.version if champ else ""),
        "contract_hash": contract.hash,
    }
    version = registry.register(
        sm,
        group,
        registry.Candidate(
            model_data_url=result.model_data_url,
            image_uri=result.image_uri,
            metrics=challenger_metrics,
            champion_metrics=champion_metrics,
            lineage=lineage,
            metrics_uri=metrics_uri,
            description=decision.reason,
        ),
    )

    # 6. promote (deploy, then approve, then the new baseline) or reject
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
                image_uri=result.image_uri,
                model_dir=result.model_dir,
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
    timings["total_s"] = time.monotonic() - t0
    outcome = RetrainOutcome(
        status=status,
        reason=decision.reason,
        run_id=run_id,
        event_id=event.event_id if event else None,
        metric=decision.metric,
        metrics_champion=champion_metrics,
        metrics_challenger=challenger_metrics,
        model_version=version.version,
        champion_version=champ.version if champ else None,
        model_data_url=result.model_data_url,
        baseline_uri=baseline_uri,
        baseline_version=profile.version,
        window_start=window.start.isoformat(),
        window_end=window.end.isoformat(),
        train_rows=len(split.train),
        holdout_rows=len(split.holdout),
        endpoint=endpoint,
        timings={k: round(v, 3) for k, v in timings.items()},
    )
    log.info("retrain run %s: %s (%s)", run_id, status, decision.reason)

    # 7. tell people
    if settings.topic_arn:
        from retrain.notify import publish

        publish(clients.client("sns"), settings.topic_arn, outcome.to_dict())
    return outcome


# -- the gate --------------------------------------------------------------------------------
def handle_event(
    raw: Any,
    settings: Settings,
    clients: AwsClients,
    *,
    now: datetime | None = None,
    store: IdempotencyStore | None = None,
    clock: Callable[[], float] = time.time,
    run: Callable[..., RetrainOutcome] = run_retrain,
    **run_kwargs: Any,
) -> HandlerResult:
    """Parse, filter, claim, lock, run. Raises :class:`~retrain.events.MalformedEventError`
    (with the raw event) for anything that is not an alarm state-change event."""
    event = parse_alarm_event(raw)
    names = (settings.drift_alarm_name,) if settings.drift_alarm_name else ()
    decision = should_retrain(event, alarm_names=names, alarm_prefix=f"{settings.stack_name}-")
    if not decision.run:
        log.info("event %s ignored: %s", event.event_id, decision.reason)
        return HandlerResult("ignored", decision.reason, event.event_id)
    if store is None:
        dynamo = DynamoStore(clients.client("dynamodb"), idempotency_table(settings))
        dynamo.ensure_table()
        store = dynamo
    run_id = f"handler-{uuid.uuid4().hex[:12]}"
    claim = store.claim_event(event.event_id, run_id, clock(), settings.retrain_lock_ttl_s)
    if not claim.go:
        log.info("event %s not run: %s", event.event_id, claim.reason)
        return HandlerResult(claim.verdict.value, claim.reason, event.event_id)
    lock = store.acquire_lock(settings.model_name, run_id, clock(), settings.retrain_lock_ttl_s)
    if not lock.go:
        store.finish_event(event.event_id, run_id, COMPLETED, f"skipped: {lock.reason}")
        log.info("event %s not run: %s", event.event_id, lock.reason)
        return HandlerResult(lock.verdict.value, lock.reason, event.event_id)
    try:
        outcome = run(settings, clients, event=event, now=now or datetime.now(UTC), **run_kwargs)
    except Exception as exc:
        store.finish_event(event.event_id, run_id, FAILED, f"{type(exc).__name__}: {exc}")
        store.release_lock(settings.model_name, run_id, clock(), 0.0)
        raise
    store.finish_event(
        event.event_id,
        run_id,
        COMPLETED,
        json.dumps({"status": outcome.status, "version": outcome.model_version}),
    )
    store.release_lock(settings.model_name, run_id, clock(), settings.retrain_cooldown_s)
    return HandlerResult("ran", outcome.reason, event.event_id, outcome)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """AWS Lambda entry point (the EventBridge rule's target)."""
    logging.getLogger().setLevel(logging.INFO)
    settings = load_settings()
    if not Path(settings.model_cache_dir).is_absolute():
        # Lambda's working directory is read-only; only the temp directory is writable
        settings = settings.replace(
            model_cache_dir=str(Path(tempfile.gettempdir()) / "driftline" / "models")
        )
    clients = AwsClients.from_settings(settings)
    return handle_event(event, settings, clients).to_dict()
