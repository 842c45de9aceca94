"""The AWS path's two steps through the handler against the emulator: the alarm starts a SageMaker
training job and returns (lock held, run state in S3); the job's state-change event finishes the
run (promotion in the registry) or records its failure (lock released).

moto records training jobs (``CreateTrainingJob``/``DescribeTrainingJob``, Completed at once) but
runs nothing: the backend under test is :class:`SageMakerTraining` with only the SDK's job
submission replaced by a direct ``CreateTrainingJob`` to the emulator, plus the job's work done
by the training script locally, its ``model.tar.gz`` put where the job says (``S3ModelArtifacts``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.settings import Settings, load_settings
from etl.synthetic import Scenario, generate_frame
from retrain import registry
from retrain.backends.base import TrainingRequest
from retrain.backends.local import LocalServing, LocalTraining
from retrain.backends.sagemaker import JobConfig, SageMakerTraining
from retrain.events import example_event, example_training_event
from retrain.gate import handle_event
from retrain.results import OutcomeStatus
from retrain.runs import RunStatus, load_state
from retrain.wiring import RunDeps, model_cache, model_group
from tests.functional.retrain_lake import T0, write_lake

pytestmark = pytest.mark.functional

ROLE = "arn:aws:iam::123456789012:role/driftline-sagemaker-us-east-1"
ALARM = "driftline-drift-score"


class EmulatedSageMakerTraining(SageMakerTraining):
    """The real backend (``start``, ``describe``) with the job submitted to the emulator."""

    def __init__(self, aws: AwsClients, work: Path) -> None:
        config = JobConfig(
            role_arn=ROLE,
            region="us-east-1",
            instance_type="ml.m5.large",
            framework_version="1.2-1",
        )
        super().__init__(aws.session, config, sagemaker_client=aws.client("sagemaker"))
        self._script = LocalTraining(aws.client("s3"), work)
        self.created: list[str] = []

    def image_uri(self) -> str:
        return "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"

    def _create_job(self, request: TrainingRequest) -> None:
        self.sagemaker.create_training_job(
            TrainingJobName=request.job_name,
            AlgorithmSpecification={"TrainingImage": self.image_uri(), "TrainingInputMode": "File"},
            RoleArn=ROLE,
            HyperParameters=dict(request.hyperparameters),
            InputDataConfig=[
                {
                    "ChannelName": name,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": uri,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
                for name, uri in (("train", request.train_uri), ("test", request.test_uri))
            ],
            OutputDataConfig={"S3OutputPath": request.output_uri},
            ResourceConfig={
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 10,
            },
            StoppingCondition={"MaxRuntimeInSeconds": int(self.config.max_runtime_s)},
        )
        self.created.append(request.job_name)
        url = self.describe(request.job_name).model_data_url
        # the job's work: the training script under the contract; the artifact where it belongs
        self._script.start(replace(request, output_uri=url.rsplit("/", 1)[0] + "/"))


def _settings(emulator: str, tmp: Path) -> Settings:
    return load_settings(
        {
            "endpoint_url": emulator,
            "lake_bucket": "lake",
            "model_cache_dir": str(tmp / "models"),
            "retrain_window_hours": 3.0,
            "retrain_min_rows": 200,
            "retrain_cooldown_s": 300.0,
        },
        env={},
        config_path=None,
    )


@pytest.fixture
def lake(aws: AwsClients, emulator: str) -> None:
    aws.client("s3").create_bucket(Bucket="lake")
    frame = generate_frame(
        3_000, seed=5, scenario=Scenario.STATIONARY, start=T0, events_per_second=3_000 / (4 * 3600)
    )
    write_lake(
        frame, session=aws.session, endpoint=emulator, bucket="lake", contract=load_contract()
    )


def _lock(aws: AwsClients) -> dict[str, Any]:
    item = aws.client("dynamodb").get_item(
        TableName="driftline-retrain-idempotency", Key={"pk": {"S": "lock#card-transactions"}}
    )
    return {k: next(iter(v.values())) for k, v in item["Item"].items()}


def test_alarm_starts_the_job_and_its_completed_event_promotes_once(
    aws: AwsClients, emulator: str, tmp_path: Path, lake: None
) -> None:
    # GIVEN 4 hours of lake data, no champion, and the SageMaker training backend
    settings = _settings(emulator, tmp_path)
    training = EmulatedSageMakerTraining(aws, tmp_path / "jobs")
    serving = LocalServing(aws.client("s3"), model_cache(settings), None)
    now = T0 + timedelta(hours=4)

    # WHEN the ALARM event reaches the handler as on AWS (step 1, no waiting)
    started = handle_event(
        example_event(ALARM, event_id="alarm-1"),
        settings,
        aws,
        now=now,
        wait=False,
        deps=RunDeps(training=training, serving=serving),
    )
    # THEN it returns with the job started and the run's state recorded; the lock stays held
    assert started.status == "started" and started.outcome is None
    job = started.training_job
    assert job is not None and job.startswith("driftline-card-transactions-20260301T040000Z-")
    assert training.created == [job]
    assert started.reason == f"training job {job} started"
    assert aws.client("sagemaker").describe_training_job(TrainingJobName=job)[
        "TrainingJobStatus"
    ] == ("Completed")
    state = load_state(aws.client("s3"), settings, job.removeprefix("driftline-"))
    assert state is not None
    assert (state.status, state.job_name, state.event_id, state.run_id) == (
        RunStatus.TRAINING,
        job,
        "alarm-1",
        started.run_id,
    )
    assert (state.window_start, state.window_end) == (
        "2026-03-01T01:00:00+00:00",
        "2026-03-01T04:00:00+00:00",
    )
    assert state.train_rows + state.holdout_rows == 2_250
    assert (state.champion_version, state.baseline_version) == (None, None)
    assert state.hyperparameters["model-id"] == state.run_id
    lock = _lock(aws)
    assert lock["holder"] == state.holder
    assert float(lock["expires_at"]) - state.started_at == pytest.approx(1800 + 7200, abs=60)
    # AND an overlapping alarm meanwhile starts nothing
    busy = handle_event(
        example_event(ALARM, event_id="alarm-2"),
        settings,
        aws,
        now=now,
        wait=False,
        deps=RunDeps(training=training),
    )
    assert busy.status == "busy" and training.created == [job]
    assert registry.list_versions(aws.client("sagemaker"), model_group(settings)) == []

    # WHEN the job's Completed event arrives (step 2)
    completed = example_training_event(job, "Completed", event_id="sm-1")
    done = handle_event(
        completed, settings, aws, wait=False, deps=RunDeps(training=training, serving=serving)
    )
    # THEN the run is finished: the challenger is registered, approved and deployed
    assert done.status == "ran" and done.outcome is not None
    assert (done.run_id, done.training_job) == (state.run_id, job)
    outcome = done.outcome
    assert outcome.status == OutcomeStatus.PROMOTED and outcome.reason.startswith(
        "no champion yet; challenger"
    )
    assert outcome.model_data_url == (
        f"s3://lake/models/card-transactions/{state.run_id}/{job}/output/model.tar.gz"
    )
    versions = registry.list_versions(aws.client("sagemaker"), model_group(settings))
    champion = registry.champion(versions)
    assert [v.version for v in versions] == [1] and champion is not None
    assert (champion.version, champion.status) == (1, registry.Approval.APPROVED)
    assert champion.lineage["training_job"] == job
    assert champion.lineage["event_id"] == "alarm-1"
    assert (model_cache(settings) / "CURRENT").read_text().endswith("/v1")
    finished = load_state(aws.client("s3"), settings, state.run_id)
    assert finished is not None and (finished.status, finished.model_version) == (
        RunStatus.FINISHED,
        1,
    )
    # AND the lock is released into the cool-down
    lock = _lock(aws)
    assert "holder" not in lock and float(lock["cooldown_until"]) > state.started_at

    # WHEN the same event is delivered again, or another event of the same job arrives
    dup = handle_event(
        completed, settings, aws, wait=False, deps=RunDeps(training=training, serving=serving)
    )
    other = handle_event(
        example_training_event(job, "Completed", event_id="sm-2"),
        settings,
        aws,
        wait=False,
        deps=RunDeps(training=training, serving=serving),
    )
    # THEN nothing more happens
    assert dup.status == "duplicate" and dup.reason.startswith("event 'sm-1' already completed")
    assert other.status == "ignored"
    assert other.reason == f"run {state.run_id!r} is already finished; nothing to do"
    assert len(registry.list_versions(aws.client("sagemaker"), model_group(settings))) == 1
    # AND a job of another stack is ignored before any claim
    foreign = handle_event(
        example_training_event("otherstack-fraud-20260301T040000Z-1", event_id="sm-3"),
        settings,
        aws,
        wait=False,
    )
    assert foreign.status == "ignored"


def test_a_failed_job_records_the_failure_releases_the_lock_and_notifies(
    aws: AwsClients, emulator: str, tmp_path: Path, lake: None
) -> None:
    # GIVEN a started run and a topic with a queue subscribed
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="retrain-news")["TopicArn"]
    queue = sqs.create_queue(QueueName="retrain-news")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    settings = _settings(emulator, tmp_path).replace(topic_arn=topic)
    training = EmulatedSageMakerTraining(aws, tmp_path / "jobs")
    now = T0 + timedelta(hours=4)
    started = handle_event(
        example_event(ALARM, event_id="alarm-1"),
        settings,
        aws,
        now=now,
        wait=False,
        deps=RunDeps(training=training),
    )
    assert started.status == "started" and started.training_job is not None
    job = started.training_job

    # WHEN the job's Failed event arrives
    failed = handle_event(
        example_training_event(
            job, "Failed", event_id="sm-f", failure_reason="AlgorithmError: out of memory"
        ),
        settings,
        aws,
        wait=False,
        deps=RunDeps(training=training),
    )
    # THEN the run is recorded as failed, nothing is registered, people are told
    reason = f"training job {job!r} failed: AlgorithmError: out of memory"
    assert (failed.status, failed.reason) == ("failed", reason)
    state = load_state(aws.client("s3"), settings, job.removeprefix("driftline-"))
    assert state is not None and (state.status, state.reason) == (RunStatus.FAILED, reason)
    assert registry.list_versions(aws.client("sagemaker"), model_group(settings)) == []
    msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    docs = [json.loads(m["Body"]) for m in msgs.get("Messages", [])]
    assert [(d["status"], d["reason"], d["training_job"]) for d in docs] == [
        ("failed", reason, job)
    ]
    # AND the lock is free with no cool-down: the next alarm starts a new job at once
    again = handle_event(
        example_event(ALARM, event_id="alarm-2"),
        settings,
        aws,
        now=now,
        wait=False,
        deps=RunDeps(training=training),
    )
    assert again.status == "started" and again.training_job not in (None, job)
    assert training.created == [job, again.training_job]
    # AND the failed alarm event may be retried by a redelivery
    item = aws.client("dynamodb").get_item(
        TableName="driftline-retrain-idempotency", Key={"pk": {"S": "event#alarm-1"}}
    )["Item"]
    assert item["status"]["S"] == "FAILED"
