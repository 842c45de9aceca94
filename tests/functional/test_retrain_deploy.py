"""Blue/green endpoint deployment: request shapes checked by botocore's Stubber (moto lacks
UpdateEndpoint) against the real SageMaker service model."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from retrain import deploy

pytestmark = pytest.mark.functional
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
ROLE = "arn:aws:iam::123456789012:role/driftline-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _client() -> object:
    return boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def _plan() -> deploy.EndpointPlan:
    spec = deploy.EndpointSpec(
        endpoint_name="driftline-fraud",
        role_arn=ROLE,
        instance_type="ml.m5.large",
        alarm_names=("driftline-fraud-errors", "driftline-fraud-latency"),
        kms_key_arn=KEY,
    )
    return deploy.plan(
        spec, version=7, image_uri=IMAGE, model_data_url="s3://lake/models/fraud/r7/model.tar.gz"
    )


def _expect_model_and_config(stub: Stubber) -> None:
    stub.add_response(
        "create_model",
        {"ModelArn": ARN + "model/driftline-fraud-v000007"},
        {
            "ModelName": "driftline-fraud-v000007",
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": "s3://lake/models/fraud/r7/model.tar.gz",
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                },
            },
            "ExecutionRoleArn": ROLE,
            # the model container runs without network; its storage is encrypted with our key
            "EnableNetworkIsolation": True,
        },
    )
    stub.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": ARN + "endpoint-config/driftline-fraud-v000007"},
        {
            "EndpointConfigName": "driftline-fraud-v000007",
            "KmsKeyId": KEY,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "driftline-fraud-v000007",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                }
            ],
        },
    )


def test_an_existing_endpoint_gets_a_canary_blue_green_update_with_auto_rollback() -> None:
    sm = _client()
    with Stubber(sm) as stub:  # type: ignore[arg-type]
        # GIVEN the endpoint exists
        _expect_model_and_config(stub)
        stub.add_response(
            "describe_endpoint",
            {
                "EndpointName": "driftline-fraud",
                "EndpointArn": ARN + "endpoint/driftline-fraud",
                "EndpointConfigName": "driftline-fraud-v000006",
                "EndpointStatus": "InService",
                "CreationTime": "2026-03-01T00:00:00Z",
                "LastModifiedTime": "2026-03-01T00:00:00Z",
            },
            {"EndpointName": "driftline-fraud"},
        )
        # THEN UpdateEndpoint carries the canary policy and the alarms (validated by botocore)
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": ARN + "endpoint/driftline-fraud"},
            {
                "EndpointName": "driftline-fraud",
                "EndpointConfigName": "driftline-fraud-v000007",
                "RetainAllVariantProperties": False,
                "DeploymentConfig": {
                    "BlueGreenUpdatePolicy": {
                        "TrafficRoutingConfiguration": {
                            "Type": "CANARY",
                            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                            "WaitIntervalInSeconds": 300,
                        },
                        "TerminationWaitInSeconds": 300,
                        "MaximumExecutionTimeoutInSeconds": 3600,
                    },
                    "AutoRollbackConfiguration": {
                        "Alarms": [
                            {"AlarmName": "driftline-fraud-errors"},
                            {"AlarmName": "driftline-fraud-latency"},
                        ]
                    },
                },
            },
        )
        # WHEN deployed
        assert deploy.deploy(sm, _plan()) == "driftline-fraud"
        stub.assert_no_pending_responses()


def test_a_missing_endpoint_is_created() -> None:
    sm = _client()
    with Stubber(sm) as stub:  # type: ignore[arg-type]
        _expect_model_and_config(stub)
        stub.add_client_error(
            "describe_endpoint", "ValidationException", "Could not find endpoint", 400
        )
        stub.add_response(
            "create_endpoint",
            {"EndpointArn": ARN + "endpoint/driftline-fraud"},
            {"EndpointName": "driftline-fraud", "EndpointConfigName": "driftline-fraud-v000007"},
        )
        deploy.deploy(sm, _plan())
        stub.assert_no_pending_responses()


def test_waiting_follows_status_with_backoff_and_reports_a_rollback() -> None:
    sm = _client()
    sleeps: list[float] = []
    base = {
        "EndpointName": "e",
        "EndpointArn": ARN + "endpoint/driftline-fraud",
        "CreationTime": "2026-03-01T00:00:00Z",
        "LastModifiedTime": "2026-03-01T00:00:00Z",
    }
    with Stubber(sm) as stub:  # type: ignore[arg-type]
        for status in ("Updating", "Updating", "InService"):
            stub.add_response("describe_endpoint", {**base, "EndpointStatus": status})
        assert deploy.wait_in_service(sm, "e", sleep=sleeps.append) == "InService"
        assert sleeps == [5.0, 7.5]
        stub.add_response(
            "describe_endpoint",
            {
                **base,
                "EndpointStatus": "RollingBack",
                "FailureReason": "alarm driftline-fraud-errors",
            },
        )
        with pytest.raises(Exception, match="is RollingBack: alarm driftline-fraud-errors"):
            deploy.wait_in_service(sm, "e", sleep=sleeps.append)


def test_the_endpoint_config_captures_requests_and_responses_encrypted_with_the_data_key() -> None:
    # GIVEN a plan with a capture destination next to the lake (issue 16)
    import dataclasses

    p = dataclasses.replace(_plan(), capture_s3_uri="s3://lake/capture")
    sm = _client()
    with Stubber(sm) as stub:  # type: ignore[arg-type]
        stub.add_response("create_model", {"ModelArn": ARN + "model/driftline-fraud-v000007"})
        # THEN CreateEndpointConfig carries SageMaker's DataCaptureConfig: all requests, input and
        # output, JSON and CSV kept as text, encrypted with the stack's key
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": ARN + "endpoint-config/driftline-fraud-v000007"},
            {
                "EndpointConfigName": "driftline-fraud-v000007",
                "KmsKeyId": KEY,
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": "driftline-fraud-v000007",
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                        "InitialVariantWeight": 1.0,
                    }
                ],
                "DataCaptureConfig": {
                    "EnableCapture": True,
                    "InitialSamplingPercentage": 100,
                    "DestinationS3Uri": "s3://lake/capture",
                    "KmsKeyId": KEY,
                    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                    "CaptureContentTypeHeader": {
                        "CsvContentTypes": ["text/csv"],
                        "JsonContentTypes": ["application/json"],
                    },
                },
            },
        )
        stub.add_client_error("describe_endpoint", "ValidationException", "Could not find")
        stub.add_response("create_endpoint", {"EndpointArn": ARN + "endpoint/driftline-fraud"})
        # WHEN it is deployed
        assert deploy.deploy(sm, p) == "driftline-fraud"
        stub.assert_no_pending_responses()
