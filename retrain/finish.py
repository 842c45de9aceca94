"""Step 2 of a run: the training job ended.

Completed (:func:`finish_run`): champion and challenger on the run's holdout → register with
metrics and lineage → promote (deploy, approve, new baseline) or reject → SNS. Failed or stopped
(:func:`fail_run`): record it and tell people.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from etl import jsonsafe
from etl.aws import AwsClients
from etl.contract import Contract
from etl.exceptions import RetrainError
from etl.settings import Settings
from retrain import registry
from retrain.artifacts import fetch_model, split_s3
from retrain.backends.base import ServingBackend, TrainingJob
from retrain.evaluate import PromotionDecision, decide_promotion, score
from retrain.fit import BASELINE_FILE, METRICS_FILE
from retrain.inference import model_fn
from retrain.promote import activate
from retrain.quality_alarm import arm_at_promotion
from retrain.results import OutcomeStatus, RetrainOutcome
from retrain.runs import RunState, RunStatus, promotion_metric, run_prefix, save_state
from retrain.train import labels, score_frame
from retrain.wiring import RunDeps, code_version, model_group, work_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Champion and challenger on the same holdout, and what the promotion rule made of it."""

    champion: registry.ModelVersion | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    decision: PromotionDecision


@dataclass(frozen=True, slots=True)
class Promotion:
    status: OutcomeStatus
    endpoint: str | None = None
    baseline_uri: str | None = None
    #: The quality alarm's new line (retrain/quality_alarm.py), None when not armed.
    quality_alarm: dict[str, Any] | None = None


def _read_parquet(s3: Any, uri: str) -> Any:
    import pandas as pd

    bucket, key = split_s3(uri)
    return pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def _put_json(s3: Any, uri: str, doc: Mapping[str, Any]) -> None:
    bucket, key = split_s3(uri)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        ContentType="application/json",
        Body=jsonsafe.dumps(doc, sort_keys=True, default=float).encode(),
    )


def _holdout_scores(model_dir: Path, holdout: Any, contract: Contract) -> dict[str, float]:
    model = model_fn(str(model_dir))
    task = contract.task.value if contract.task else ""
    return score(labels(holdout, contract), score_frame(model, holdout), task=task)


def evaluate(
    settings: Settings,
    clients: AwsClients,
    state: RunState,
    challenger_dir: Path,
    contract: Contract,
) -> Evaluation:
    """The challenger and the current champion (re-read: a manual rollback may have changed it)
    scored on the run's holdout, and the promotion rule's decision."""
    s3, sm = clients.client("s3"), clients.client("sagemaker")
    group = model_group(settings)
    holdout = _read_parquet(s3, f"{state.test_uri}test.parquet")
    registry.ensure_group(sm, group)
    champ = registry.champion(registry.list_versions(sm, group))
    challenger = _holdout_scores(challenger_dir, holdout, contract)
    champion: dict[str, float] | None = None
    if champ is not None:
        champ_dir = fetch_model(s3, champ.model_data_url, challenger_dir.parent / "champion")
        champion = _holdout_scores(champ_dir, holdout, contract)
    decision = decide_promotion(
        champion,
        challenger,
        metric=promotion_metric(settings, contract),
        margin=settings.promotion_margin,
    )
    return Evaluation(champ, challenger, champion, decision)


def lineage(
    state: RunState, job: TrainingJob, ev: Evaluation, baseline_version: str, contract: Contract
) -> dict[str, str]:
    """Where the version came from, recorded with it in the registry."""
    return {
        "run_id": state.run_id,
        "event_id": state.event_id or "manual",
        "window_start": state.window_start,
        "window_end": state.window_end,
        "holdout_start": state.holdout_start,
        "train_rows": str(state.train_rows),
        "holdout_rows": str(state.holdout_rows),
        "training_data": state.train_uri,
        "baseline_version": baseline_version,
        "code_version": code_version(),
        "training_job": job.name,
        "champion_version": str(ev.champion.version if ev.champion else ""),
        "contract_hash": contract.hash,
        "trigger": str(state.trigger) if state.trigger else "",
    }


def register(
    settings: Settings,
    clients: AwsClients,
    state: RunState,
    job: TrainingJob,
    ev: Evaluation,
    model_dir: Path,
    contract: Contract,
) -> registry.ModelVersion:
    """The challenger as the group's next version, with its metrics (also as a JSON document)
    and lineage."""
    s3 = clients.client("s3")
    metrics_uri = f"{run_prefix(settings, state.run_id)}/evaluation.json"
    _put_json(
        s3,
        metrics_uri,
        {
            "challenger": ev.challenger_metrics,
            "champion": ev.champion_metrics,
            "decision": ev.decision.reason,
            "training": json.loads((model_dir / METRICS_FILE).read_text()),
        },
    )
    baseline_version = str(json.loads((model_dir / BASELINE_FILE).read_text())["version"])
    candidate = registry.Candidate(
        model_data_url=job.model_data_url,
        image_uri=state.image_uri,
        metrics=ev.challenger_metrics,
        champion_metrics=ev.champion_metrics,
        lineage=lineage(state, job, ev, baseline_version, contract),
        metrics_uri=metrics_uri,
        description=ev.decision.reason,
    )
    return registry.register(clients.client("sagemaker"), model_group(settings), candidate)


def promote_or_reject(
    settings: Settings,
    clients: AwsClients,
    version: registry.ModelVersion,
    decision: PromotionDecision,
    serving: ServingBackend,
    state: RunState,
    contract: Contract,
) -> Promotion:
    """Deploy, approve and publish the baseline of a winner; reject a loser (and a winner whose
    deployment failed, before raising)."""
    sm = clients.client("sagemaker")
    if not decision.promote:
        registry.set_status(sm, version, registry.Approval.REJECTED, reason=decision.reason)
        return Promotion(OutcomeStatus.REJECTED)
    job_dir = work_dir(settings) / state.run_id
    try:
        activation = activate(
            settings,
            clients,
            serving,
            version,
            reason=decision.reason,
            image_uri=state.image_uri,
            model_dir=job_dir / "challenger",
            staging_dir=job_dir,
        )
    except RetrainError as exc:
        why = f"deployment failed: {exc}"
        registry.set_status(sm, version, registry.Approval.REJECTED, reason=why)
        raise
    armed = arm_at_promotion(settings, clients, contract, activation.version)
    return Promotion(
        OutcomeStatus.PROMOTED,
        activation.deployment.endpoint,
        activation.baseline_uri,
        armed.to_dict() if armed else None,
    )


def _finish(
    settings: Settings,
    clients: AwsClients,
    state: RunState,
    job: TrainingJob,
    deps: RunDeps,
    timings: dict[str, float],
) -> RetrainOutcome:
    t2 = time.monotonic()
    contract = deps.contract_for(settings, clients)
    if not job.model_data_url:
        raise RetrainError(f"training job {job.name} completed without a model artifact")
    job_dir = work_dir(settings) / state.run_id
    model_dir = fetch_model(clients.client("s3"), job.model_data_url, job_dir / "challenger")
    ev = evaluate(settings, clients, state, model_dir, contract)
    timings["evaluate_s"] = time.monotonic() - t2
    version = register(settings, clients, state, job, ev, model_dir, contract)
    t3 = time.monotonic()
    serving = deps.serving_for(settings, clients)
    done = promote_or_reject(settings, clients, version, ev.decision, serving, state, contract)
    if done.status is OutcomeStatus.PROMOTED:
        timings["deploy_s"] = time.monotonic() - t3
    timings.setdefault("total_s", time.time() - state.started_at)
    outcome = RetrainOutcome(
        status=done.status,
        reason=ev.decision.reason,
        run_id=state.run_id,
        event_id=state.event_id,
        metric=ev.decision.metric,
        metrics_champion=ev.champion_metrics,
        metrics_challenger=ev.challenger_metrics,
        model_version=version.version,
        champion_version=ev.champion.version if ev.champion else None,
        model_data_url=job.model_data_url,
        baseline_uri=done.baseline_uri,
        baseline_version=version.lineage.get("baseline_version", ""),
        window_start=state.window_start,
        window_end=state.window_end,
        train_rows=state.train_rows,
        holdout_rows=state.holdout_rows,
        endpoint=done.endpoint,
        timings={k: round(v, 3) for k, v in timings.items()},
        unlabelled_rows=state.unlabelled_rows,
        trigger=str(state.trigger) if state.trigger else None,
        quality_alarm=done.quality_alarm,
    )
    log.info("retrain run %s: %s (%s)", state.run_id, done.status, ev.decision.reason)
    return outcome


def finish_run(
    settings: Settings,
    clients: AwsClients,
    state: RunState,
    job: TrainingJob,
    *,
    deps: RunDeps | None = None,
    timings: Mapping[str, float] | None = None,
) -> RetrainOutcome:
    """Step 2 of a completed job: champion and challenger on the run's holdout → register →
    promote (deploy, approve, new baseline) or reject → SNS. Saves the run state as finished (or
    failed, when anything here raises)."""
    s3 = clients.client("s3")
    try:
        outcome = _finish(
            settings, clients, state, job, deps or RunDeps(), {**state.extra, **(timings or {})}
        )
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        save_state(s3, settings, replace(state, status=RunStatus.FAILED, reason=why))
        raise
    finished = replace(
        state,
        status=RunStatus.FINISHED,
        reason=outcome.reason,
        model_version=outcome.model_version,
    )
    save_state(s3, settings, finished)
    notify(settings, clients, outcome.to_dict())
    return outcome


def notify(settings: Settings, clients: AwsClients, doc: Mapping[str, Any]) -> None:
    """Tell people (the stack's SNS topic), when there is one."""
    if settings.topic_arn:
        from retrain.notify import publish

        publish(clients.client("sns"), settings.topic_arn, dict(doc))


def fail_run(
    settings: Settings, clients: AwsClients, state: RunState, reason: str
) -> dict[str, Any]:
    """Step 2 of a job that failed or was stopped: record it in the run state and tell people.
    Returns the notification document."""
    from retrain.runs import settings_contract

    failed = replace(state, status=RunStatus.FAILED, reason=reason)
    save_state(clients.client("s3"), settings, failed)
    doc: dict[str, Any] = {
        "status": str(RunStatus.FAILED),
        "reason": reason,
        "run_id": state.run_id,
        "event_id": state.event_id,
        "training_job": state.job_name,
        "metric": promotion_metric(settings, settings_contract(settings)),
        "model_version": None,
        "window_start": state.window_start,
        "window_end": state.window_end,
        "trigger": str(state.trigger) if state.trigger else None,
    }
    log.warning("retrain run %s failed: %s", state.run_id, reason)
    notify(settings, clients, doc)
    return doc
