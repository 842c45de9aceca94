"""run_retrain end to end against the emulator: lake → train (subprocess) → champion vs
challenger → registry → local model server swap → new current baseline → SNS."""

from __future__ import annotations

import json
import math
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.profile import read_pointer
from etl.settings import Settings, load_settings
from etl.synthetic import Scenario, generate_frame
from infra.model_server import ServerProcess, start_model_server
from retrain import registry
from retrain.results import OutcomeStatus
from retrain.run import run_retrain
from retrain.wiring import RunDeps, model_group
from tests.functional.retrain_lake import T0, write_lake

pytestmark = pytest.mark.functional


def _settings(emulator: str, tmp: Path, topic: str, server: ServerProcess) -> Settings:
    return load_settings(
        {
            "endpoint_url": emulator,
            "lake_bucket": "lake",
            "topic_arn": topic,
            "model_cache_dir": str(tmp / "models"),
            "model_server_url": server.url,
            "model_server_token_file": str(server.token_file),
            "retrain_window_hours": 3.0,
            "retrain_min_rows": 200,
        },
        env={},
        config_path=None,
    )


def _post(url: str, record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    req = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(record).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read()), str(resp.headers["X-Model-Id"])


def test_drift_retrain_promotes_then_a_worse_challenger_is_rejected(
    aws: AwsClients, emulator: str, tmp_path: Path
) -> None:
    # GIVEN 8 hours in the lake: stationary for 4 h, then drifted (label relation changed)
    contract = load_contract()
    aws.client("s3").create_bucket(Bucket="lake")
    frame = generate_frame(
        12_000,
        seed=11,
        scenario=Scenario.DRIFT,
        drift_at=0.5,
        start=T0,
        events_per_second=12_000 / (8 * 3600),
    )
    write_lake(frame, session=aws.session, endpoint=emulator, bucket="lake", contract=contract)
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="retrain-news")["TopicArn"]
    queue = sqs.create_queue(QueueName="retrain-news")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    server = start_model_server(tmp_path / "server", None, model_root=tmp_path / "models")
    try:
        settings = _settings(emulator, tmp_path, topic, server)

        # WHEN the first run trains on the stationary hours (no champion yet)
        first = run_retrain(settings, aws, event=None, now=T0 + timedelta(hours=4))

        # THEN it is promoted, served, and its profile is the current baseline
        assert first.status == OutcomeStatus.PROMOTED and first.model_version == 1
        assert first.metrics_champion is None and first.champion_version is None
        record = frame.iloc[-1][[f.name for f in contract.features]].to_dict()
        record = {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()
        }
        _, served = _post(server.url, record)
        assert served == first.run_id

        # WHEN the second run trains on the drifted hours
        second = run_retrain(settings, aws, event=None, now=T0 + timedelta(hours=8))

        # THEN the challenger wins on the same holdout by far more than the margin
        assert second.status == OutcomeStatus.PROMOTED, second.reason
        assert second.champion_version == 1 and second.model_version == 2
        assert second.metrics_champion is not None
        assert second.metrics_champion["roc_auc"] < 0.7
        assert second.metrics_challenger["roc_auc"] >= 0.85
        assert second.metrics_champion["rows"] == second.metrics_challenger["rows"] == 1125
        # AND the server now answers with the new model
        assert _post(server.url, record)[1] == second.run_id
        # AND the new baseline is current (its window is the drifted training data)
        pointer = read_pointer(aws.client("s3"), "lake", "baselines", contract.name)
        assert pointer is not None and pointer.uri == second.baseline_uri
        assert pointer.version == second.baseline_version

        # WHEN a much weaker model (one stump) challenges on the same window
        third = run_retrain(
            settings,
            aws,
            event=None,
            now=T0 + timedelta(hours=8),
            deps=RunDeps(hyperparameters={"max-iter": "1", "max-leaf-nodes": "2"}),
        )

        # THEN it is rejected with the reason recorded, and the champion keeps serving
        assert third.status == OutcomeStatus.REJECTED
        assert "below the margin" in third.reason
        assert _post(server.url, record)[1] == second.run_id
        versions = registry.list_versions(aws.client("sagemaker"), model_group(settings))
        assert [(v.version, v.status) for v in versions] == [
            (1, "Approved"),
            (2, "Approved"),
            (3, "Rejected"),
        ]
        champ = registry.champion(versions)
        assert champ is not None and champ.version == 2
        assert versions[2].reason == third.reason
        assert versions[1].lineage["window_end"] == (T0 + timedelta(hours=8)).isoformat()
        assert versions[1].lineage["baseline_version"] == second.baseline_version
        assert versions[1].metrics["roc_auc"] == pytest.approx(
            second.metrics_challenger["roc_auc"], abs=1e-5
        )

        # AND SNS carried champion vs challenger for each run
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        bodies = sorted(
            (json.loads(m["Body"]) for m in got["Messages"]), key=lambda d: d["model_version"]
        )
        assert [(b["model_version"], b["status"]) for b in bodies] == [
            (1, OutcomeStatus.PROMOTED),
            (2, OutcomeStatus.PROMOTED),
            (3, OutcomeStatus.REJECTED),
        ]
        assert bodies[1]["metrics_champion"]["roc_auc"] == pytest.approx(
            second.metrics_champion["roc_auc"]
        )
    finally:
        server.stop()
