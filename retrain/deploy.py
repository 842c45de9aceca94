"""Blue/green deployment of a model version to a SageMaker endpoint, with auto-rollback.

CreateModel → CreateEndpointConfig → UpdateEndpoint with a ``BlueGreenUpdatePolicy`` (canary: a
slice of capacity first, then all of it) and ``AutoRollbackConfiguration`` on the endpoint's error
and latency alarms; CreateEndpoint when the endpoint does not exist yet. moto lacks
UpdateEndpoint, so the request shapes are checked with botocore's Stubber against the service
model (tests/functional/test_retrain_deploy.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from etl.aws import error_code, error_message
from etl.exceptions import RetrainError

VARIANT = "AllTraffic"
INFERENCE_PROGRAM = "inference.py"
CODE_DIR = "/opt/ml/model/code"


class EndpointStatus(StrEnum):
    """The endpoint's ``EndpointStatus`` (SageMaker's words) that a deployment waits on."""

    IN_SERVICE = "InService"
    FAILED = "Failed"
    ROLLING_BACK = "RollingBack"
    OUT_OF_SERVICE = "OutOfService"


#: A deployment that reaches one of these did not take (the blue fleet serves, or nothing does).
_BROKEN = (EndpointStatus.FAILED, EndpointStatus.ROLLING_BACK, EndpointStatus.OUT_OF_SERVICE)


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    endpoint_name: str
    model_name: str
    config_name: str
    image_uri: str
    model_data_url: str
    role_arn: str
    instance_type: str
    instance_count: int = 1
    alarm_names: tuple[str, ...] = ()
    canary_percent: int = 10
    canary_wait_s: int = 300
    termination_wait_s: int = 300
    max_execution_timeout_s: int = 3600
    #: KMS key of the endpoint's storage volume (the stack's data key); None: AWS managed.
    kms_key_arn: str | None = None
    #: Where the endpoint captures every request and response (``s3://bucket/prefix``, encrypted
    #: with ``kms_key_arn``); None: no capture. The model-quality join reads it (docs/quality.md).
    capture_s3_uri: str | None = None


#: Models and endpoint configs are ``<endpoint>-v<version, 6 digits>``: a fixed length, so the
#: template grants ``<stack>-<model>-v??????`` and no other stack's names can match it.
VERSION_DIGITS = 6
_MAX_NAME = 63


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """The endpoint a stack serves from and how its versions run (from settings)."""

    endpoint_name: str
    role_arn: str
    instance_type: str
    alarm_names: tuple[str, ...] = ()
    #: KMS key of the endpoint's storage volume (the stack's data key); None: AWS managed.
    kms_key_arn: str | None = None
    #: Where the endpoint captures requests and responses; None: no capture (docs/quality.md).
    capture_s3_uri: str | None = None


def version_name(endpoint_name: str, version: int) -> str:
    """``<endpoint>-v000007``: the model's and the endpoint config's name for a version."""
    name = f"{endpoint_name}-v{version:0{VERSION_DIGITS}d}"
    if not 0 < version < 10**VERSION_DIGITS or len(name) > _MAX_NAME:
        raise RetrainError(
            f"model name {name!r} for version {version} is not a valid SageMaker name (at most"
            f" {_MAX_NAME} characters, versions below {10**VERSION_DIGITS}): shorten the stack"
            " or model name"
        )
    return name


def plan(spec: EndpointSpec, *, version: int, image_uri: str, model_data_url: str) -> EndpointPlan:
    """Names derived from (endpoint, version): a retry creates the same resources."""
    name = version_name(re.sub(r"[^a-zA-Z0-9-]", "-", spec.endpoint_name), version)
    return EndpointPlan(
        endpoint_name=spec.endpoint_name,
        model_name=name,
        config_name=name,
        image_uri=image_uri,
        model_data_url=model_data_url,
        role_arn=spec.role_arn,
        instance_type=spec.instance_type,
        alarm_names=spec.alarm_names,
        kms_key_arn=spec.kms_key_arn,
        capture_s3_uri=spec.capture_s3_uri,
    )


def deployment_config(p: EndpointPlan) -> dict[str, Any]:
    """BlueGreenUpdatePolicy (canary, then all) + AutoRollbackConfiguration."""
    cfg: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": p.canary_percent},
                "WaitIntervalInSeconds": p.canary_wait_s,
            },
            "TerminationWaitInSeconds": p.termination_wait_s,
            "MaximumExecutionTimeoutInSeconds": p.max_execution_timeout_s,
        }
    }
    if p.alarm_names:
        cfg["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in p.alarm_names]}
    return cfg


def data_capture_config(p: EndpointPlan) -> dict[str, Any]:
    """SageMaker data capture of every request and response, JSON and CSV kept as text."""
    cfg: dict[str, Any] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": p.capture_s3_uri,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }
    if p.kms_key_arn:
        cfg["KmsKeyId"] = p.kms_key_arn
    return cfg


def _exists(sagemaker: Any, endpoint_name: str) -> bool:
    try:
        sagemaker.describe_endpoint(EndpointName=endpoint_name)
        return True
    except ClientError as exc:
        if error_code(exc) == "ValidationException":
            return False
        raise


def _ignore_exists(call: Callable[..., Any], **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except ClientError as exc:
        message = error_message(exc)
        if "already exist" not in message.lower():
            raise


def deploy(sagemaker: Any, p: EndpointPlan) -> str:
    """Create the model and config (idempotent), then update (or create) the endpoint."""
    try:
        _ignore_exists(
            sagemaker.create_model,
            ModelName=p.model_name,
            PrimaryContainer={
                "Image": p.image_uri,
                "ModelDataUrl": p.model_data_url,
                "Environment": {
                    "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
                    "SAGEMAKER_SUBMIT_DIRECTORY": CODE_DIR,
                },
            },
            ExecutionRoleArn=p.role_arn,
            # the inference code is in the model artifact: the container needs no network
            EnableNetworkIsolation=True,
        )
        _ignore_exists(
            sagemaker.create_endpoint_config,
            **({"KmsKeyId": p.kms_key_arn} if p.kms_key_arn else {}),
            **({"DataCaptureConfig": data_capture_config(p)} if p.capture_s3_uri else {}),
            EndpointConfigName=p.config_name,
            ProductionVariants=[
                {
                    "VariantName": VARIANT,
                    "ModelName": p.model_name,
                    "InitialInstanceCount": p.instance_count,
                    "InstanceType": p.instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
        )
        if _exists(sagemaker, p.endpoint_name):
            sagemaker.update_endpoint(
                EndpointName=p.endpoint_name,
                EndpointConfigName=p.config_name,
                RetainAllVariantProperties=False,
                DeploymentConfig=deployment_config(p),
            )
        else:
            sagemaker.create_endpoint(
                EndpointName=p.endpoint_name, EndpointConfigName=p.config_name
            )
    except ClientError as exc:
        raise RetrainError(
            f"deploying {p.model_name} to endpoint {p.endpoint_name!r} failed: {exc}"
        ) from exc
    return p.endpoint_name


def wait_in_service(
    sagemaker: Any,
    endpoint_name: str,
    *,
    timeout_s: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll with backoff until InService (ok) or Failed / rolled back (RetrainError)."""
    delay, deadline = 5.0, time.monotonic() + timeout_s
    while True:
        desc = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        status = str(desc.get("EndpointStatus"))
        if status == EndpointStatus.IN_SERVICE:
            return status
        if status in _BROKEN:
            raise RetrainError(
                f"endpoint {endpoint_name!r} is {status}: {desc.get('FailureReason', '')}"
            )
        if time.monotonic() > deadline:
            raise RetrainError(f"endpoint {endpoint_name!r} still {status} after {timeout_s:.0f}s")
        sleep(delay)
        delay = min(delay * 1.5, 60.0)
