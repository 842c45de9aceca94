"""The model registry against the emulator's SageMaker model package group."""

from __future__ import annotations

import pytest

from etl.aws import AwsClients
from etl.exceptions import RetrainError
from retrain import registry

pytestmark = pytest.mark.functional
GROUP = "driftline-fraud"


def _candidate(auc: float, run: str) -> registry.Candidate:
    return registry.Candidate(
        model_data_url=f"s3://lake/models/fraud/{run}/model.tar.gz",
        image_uri="driftline/local-sklearn:latest",
        metrics={"roc_auc": auc, "rows": 1125.0},
        champion_metrics={"roc_auc": 0.6},
        lineage={
            "run_id": run,
            "window_start": "2026-03-01T05:00:00+00:00",
            "baseline_version": f"b-{run}",
            "code_version": "abc123",
            "empty": "",
        },
        metrics_uri=f"s3://lake/retrain/fraud/{run}/evaluation.json",
    )


def test_register_approve_reject_list_and_champion(aws: AwsClients) -> None:
    sm = aws.client("sagemaker")
    # GIVEN a fresh group (created once; a second ensure is a no-op)
    registry.ensure_group(sm, GROUP)
    registry.ensure_group(sm, GROUP)
    # WHEN three candidates are registered
    v1 = registry.register(sm, GROUP, _candidate(0.81, "r1"))
    v2 = registry.register(sm, GROUP, _candidate(0.92, "r2"))
    v3 = registry.register(sm, GROUP, _candidate(0.70, "r3"))
    # THEN they are versions 1..3, pending, with metrics and lineage read back
    assert [v.version for v in (v1, v2, v3)] == [1, 2, 3]
    assert v2.status == registry.Approval.PENDING
    assert v2.metrics == {"roc_auc": 0.92, "rows": 1125.0}
    assert v2.champion_metrics == {"roc_auc": 0.6}
    assert v2.lineage == {
        "run_id": "r2",
        "window_start": "2026-03-01T05:00:00+00:00",
        "baseline_version": "b-r2",
        "code_version": "abc123",
    }
    assert v2.model_data_url == "s3://lake/models/fraud/r2/model.tar.gz"
    desc = sm.describe_model_package(ModelPackageName=v2.arn)
    assert desc["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith(
        "r2/evaluation.json"
    )

    # WHEN 1 and 2 are approved (in that order) and 3 rejected with a reason
    registry.set_status(
        sm, v1, registry.Approval.APPROVED, reason="first", properties={"promoted_at": "100"}
    )
    registry.set_status(
        sm, v2, registry.Approval.APPROVED, reason="better", properties={"promoted_at": "200"}
    )
    registry.set_status(sm, v3, registry.Approval.REJECTED, reason="below the margin")
    versions = registry.list_versions(sm, GROUP)
    # THEN the list shows each status, metadata survives the update, and 2 is the champion
    assert [(v.version, v.status) for v in versions] == [
        (1, "Approved"),
        (2, "Approved"),
        (3, "Rejected"),
    ]
    assert versions[2].reason == "below the margin"
    assert versions[1].metrics["roc_auc"] == 0.92
    champ = registry.champion(versions)
    assert champ is not None and champ.version == 2
    # AND a rollback (re-promoting 1) makes 1 the champion
    registry.set_status(
        sm,
        versions[0],
        registry.Approval.APPROVED,
        reason="rollback",
        properties={"promoted_at": "300"},
    )
    champ = registry.champion(registry.list_versions(sm, GROUP))
    assert champ is not None and champ.version == 1 and champ.reason == "rollback"
    with pytest.raises(
        RetrainError, match=r"model version 9 does not exist; versions are \[1, 2, 3\]"
    ):
        registry.find(versions, 9)
