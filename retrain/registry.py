"""The model registry: a SageMaker model package group, one versioned package per candidate.

Every candidate is registered, promoted or not, with its metrics and lineage in
``CustomerMetadataProperties`` (string map: ``metric.<name>``, ``champion.<name>``,
``lineage.window_start`` ...) and its metrics document as ``ModelMetrics``. The champion is the
Approved version promoted most recently (``promoted_at``), so ``rollback`` is "promote an older
approved version again".

Every call takes a SageMaker client (boto3 ``sagemaker``), so the same code runs on AWS and on the
emulator (moto implements the model package group APIs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from etl.aws import error_code
from etl.exceptions import RetrainError


class Approval(StrEnum):
    """A version's ``ModelApprovalStatus`` (SageMaker's words)."""

    APPROVED = "Approved"
    REJECTED = "Rejected"
    PENDING = "PendingManualApproval"


_MAX_VALUE = 256


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a training run produced, to be registered."""

    model_data_url: str
    image_uri: str
    metrics: Mapping[str, float]
    lineage: Mapping[str, str]
    metrics_uri: str | None = None
    champion_metrics: Mapping[str, float] | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    version: int
    arn: str
    status: Approval
    model_data_url: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    champion_metrics: Mapping[str, float] = field(default_factory=dict)
    lineage: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)
    created: datetime | None = None

    @property
    def promoted_at(self) -> float:
        return float(self.properties.get("promoted_at", "0") or 0)

    @property
    def reason(self) -> str:
        return self.properties.get("decision", "")


def _clip(value: object) -> str:
    text = str(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def properties_for(candidate: Candidate) -> dict[str, str]:
    props = {f"metric.{k}": _clip(f"{float(v):.6g}") for k, v in candidate.metrics.items()}
    for k, v in (candidate.champion_metrics or {}).items():
        props[f"champion.{k}"] = _clip(f"{float(v):.6g}")
    # AWS refuses empty values: an unknown lineage item is left out
    props.update({f"lineage.{k}": _clip(v) for k, v in candidate.lineage.items() if v != ""})
    return props


def _parse_props(
    props: Mapping[str, str],
) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
    metrics: dict[str, float] = {}
    champion: dict[str, float] = {}
    lineage: dict[str, str] = {}
    for key, value in props.items():
        head, _, name = key.partition(".")
        if head == "metric":
            metrics[name] = float(value)
        elif head == "champion":
            champion[name] = float(value)
        elif head == "lineage":
            lineage[name] = value
    return metrics, champion, lineage


def _version_from(desc: Mapping[str, Any]) -> ModelVersion:
    props = dict(desc.get("CustomerMetadataProperties") or {})
    metrics, champion, lineage = _parse_props(props)
    containers = (desc.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return ModelVersion(
        version=int(desc.get("ModelPackageVersion", 0)),
        arn=str(desc["ModelPackageArn"]),
        status=Approval(desc.get("ModelApprovalStatus", Approval.PENDING)),
        model_data_url=str(containers[0].get("ModelDataUrl", "")),
        metrics=metrics,
        champion_metrics=champion,
        lineage=lineage,
        properties=props,
        created=desc.get("CreationTime"),
    )


def ensure_group(sagemaker: Any, group: str, description: str = "driftline models") -> None:
    """Create the model package group unless it exists (the stack may have made it)."""
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=group)
        return
    except ClientError as exc:
        if error_code(exc) not in (
            "ValidationException",
            "ResourceNotFound",
        ):
            raise
    sagemaker.create_model_package_group(
        ModelPackageGroupName=group, ModelPackageGroupDescription=description
    )


def register(
    sagemaker: Any, group: str, candidate: Candidate, *, status: Approval = Approval.PENDING
) -> ModelVersion:
    """Register ``candidate`` as the group's next version; returns it as described."""
    status = _approval(status)
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": _clip(candidate.description or "driftline candidate"),
        "InferenceSpecification": {
            "Containers": [
                {"Image": candidate.image_uri, "ModelDataUrl": candidate.model_data_url}
            ],
            "SupportedContentTypes": ["application/json", "text/csv"],
            "SupportedResponseMIMETypes": ["application/json", "text/csv"],
        },
        "ModelApprovalStatus": status,
        "CustomerMetadataProperties": properties_for(candidate),
    }
    if candidate.metrics_uri:
        request["ModelMetrics"] = {
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": candidate.metrics_uri}
            }
        }
    run_id = candidate.lineage.get("run_id")
    if run_id:
        request["MetadataProperties"] = {
            "GeneratedBy": _clip(run_id),
            "CommitId": _clip(candidate.lineage.get("code_version", "unknown")),
        }
    try:
        arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
    except ClientError as exc:
        raise RetrainError(
            f"registering a model in group {group!r} failed: {exc}; check the group exists"
        ) from exc
    return describe(sagemaker, arn)


def describe(sagemaker: Any, arn: str) -> ModelVersion:
    return _version_from(sagemaker.describe_model_package(ModelPackageName=arn))


def list_versions(sagemaker: Any, group: str) -> list[ModelVersion]:
    """Every version of the group, oldest first, fully described."""
    arns: list[str] = []
    kwargs: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "SortBy": "CreationTime",
        "SortOrder": "Ascending",
        "MaxResults": 100,
    }
    while True:
        try:
            page = sagemaker.list_model_packages(**kwargs)
        except ClientError as exc:
            raise RetrainError(f"listing model group {group!r} failed: {exc}") from exc
        arns += [s["ModelPackageArn"] for s in page.get("ModelPackageSummaryList", [])]
        token = page.get("NextToken")
        if not token:
            break
        kwargs["NextToken"] = token
    return sorted((describe(sagemaker, a) for a in arns), key=lambda v: v.version)


def find(versions: Sequence[ModelVersion], version: int) -> ModelVersion:
    for v in versions:
        if v.version == version:
            return v
    raise RetrainError(
        f"model version {version} does not exist; versions are {[v.version for v in versions]}"
    )


def champion(versions: Sequence[ModelVersion]) -> ModelVersion | None:
    """The Approved version promoted last (ties: the higher version)."""
    approved = [v for v in versions if v.status == Approval.APPROVED]
    if not approved:
        return None
    return max(approved, key=lambda v: (v.promoted_at, v.version))


def _approval(status: str) -> Approval:
    try:
        return Approval(status)
    except ValueError:
        raise RetrainError(
            f"model approval status {status!r} is not one of {[str(a) for a in Approval]}"
        ) from None


def set_status(
    sagemaker: Any,
    version: ModelVersion,
    status: Approval,
    *,
    reason: str,
    properties: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Approve or reject ``version``, keeping its metadata and adding ``properties``."""
    status = _approval(status)
    merged = {
        **version.properties,
        **{k: _clip(v) for k, v in (properties or {}).items()},
        "decision": _clip(reason),
    }
    sagemaker.update_model_package(
        ModelPackageArn=version.arn,
        ModelApprovalStatus=status,
        ApprovalDescription=_clip(reason),
        CustomerMetadataProperties=merged,
    )
    return describe(sagemaker, version.arn)
