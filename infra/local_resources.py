"""Create by API what the emulator's CloudFormation silently ignores, from the template itself.

moto's CloudFormation creates many resource types but skips others without an error (it logs
"No Moto CloudFormation support for ..."): CloudWatch alarms, the Glue database, the model package
group, bucket and queue policies (the Athena workgroup and Glue tables: infra/local_analytics.py).
The local stack must still hold every resource of the template,
with the template's own names and settings, so this module makes the matching API calls from those
resources' properties (resolved by :class:`infra.local_resolver.Resolver`; each type's handler is an
:class:`infra.local_handler.Handler`).

Resources whose condition is false in LocalMode (the EC2 fleet, the Lambda, Redshift Serverless) are
reported with the local stand-in named in their ``Metadata: {Driftline: {LocalStandIn: ...}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from etl.aws import AwsClients, error_code
from etl.exceptions import StackError
from infra.local_analytics import ANALYTICS_HANDLERS
from infra.local_handler import Handler, LeftBehind

log = logging.getLogger(__name__)

#: provided_by labels
BY_CLOUDFORMATION = "emulator-cloudformation"


def by_api(resource_type: str) -> str:
    return f"emulator-api (moto ignores {resource_type} in CloudFormation)"


# -- handlers for the types moto's CloudFormation ignores ----------------------------------------


class GlueDatabase(Handler):
    resource_type = "AWS::Glue::Database"

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        return str(props["DatabaseInput"]["Name"])

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        glue = self.clients.client("glue")
        db_input = dict(props["DatabaseInput"])
        name = db_input["Name"]
        try:
            glue.create_database(DatabaseInput=db_input)
        except ClientError as exc:
            if error_code(exc) != "AlreadyExistsException":
                raise
            glue.update_database(Name=name, DatabaseInput=db_input)

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        try:
            self.clients.client("glue").get_database(Name=physical_id)
        except ClientError as exc:
            if error_code(exc) == "EntityNotFoundException":
                return False
            raise
        return True

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        try:
            self.clients.client("glue").delete_database(Name=physical_id)
        except ClientError as exc:
            if error_code(exc) != "EntityNotFoundException":
                raise


class S3BucketPolicy(Handler):
    resource_type = "AWS::S3::BucketPolicy"

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        return str(props["Bucket"])

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        bucket = props["Bucket"]
        self.clients.client("s3").put_bucket_policy(
            Bucket=bucket, Policy=json.dumps(props["PolicyDocument"])
        )

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        try:
            self.clients.client("s3").get_bucket_policy(Bucket=physical_id)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchBucketPolicy", "NoSuchBucket"):
                return False
            raise
        return True

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        try:
            self.clients.client("s3").delete_bucket_policy(Bucket=physical_id)
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchBucketPolicy", "NoSuchBucket"):
                raise


class CloudWatchAlarm(Handler):
    """PutMetricAlarm with the template's own threshold, period, M of N and missing-data mode."""

    resource_type = "AWS::CloudWatch::Alarm"
    _STRINGS = (
        "AlarmName",
        "AlarmDescription",
        "Namespace",
        "MetricName",
        "Statistic",
        "ExtendedStatistic",
        "ComparisonOperator",
        "TreatMissingData",
        "Unit",
        "EvaluateLowSampleCountPercentile",
        "ThresholdMetricId",
    )
    _INTS = ("Period", "EvaluationPeriods", "DatapointsToAlarm")
    _LISTS = ("AlarmActions", "OKActions", "InsufficientDataActions")

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        if "AlarmName" not in props:
            raise StackError(f"alarm {logical_id} needs an AlarmName for the local stack")
        return str(props["AlarmName"])

    def attribute(self, physical_id: str, props: dict[str, Any], name: str) -> str:
        if name == "Arn":
            alarms = self.clients.client("cloudwatch").describe_alarms(AlarmNames=[physical_id])
            return str(alarms["MetricAlarms"][0]["AlarmArn"])
        return super().attribute(physical_id, props, name)

    @classmethod
    def request(cls, props: dict[str, Any]) -> dict[str, Any]:
        """The PutMetricAlarm request for the resolved CloudFormation properties."""
        known = {
            *cls._STRINGS,
            *cls._INTS,
            *cls._LISTS,
            "Threshold",
            "Dimensions",
            "ActionsEnabled",
            "Metrics",
        }
        unknown = sorted(set(props) - known)
        if unknown:
            raise StackError(f"alarm property {unknown[0]} is not mapped to PutMetricAlarm locally")
        req: dict[str, Any] = {k: str(props[k]) for k in cls._STRINGS if k in props}
        req.update({k: int(props[k]) for k in cls._INTS if k in props})
        req.update({k: list(props[k]) for k in cls._LISTS if k in props})
        if "Threshold" in props:
            req["Threshold"] = float(props["Threshold"])
        if "Dimensions" in props:
            req["Dimensions"] = [
                {"Name": str(d["Name"]), "Value": str(d["Value"])} for d in props["Dimensions"]
            ]
        if "ActionsEnabled" in props:
            req["ActionsEnabled"] = props["ActionsEnabled"] in (True, "true")
        if "Metrics" in props:
            req["Metrics"] = props["Metrics"]
        return req

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        self.clients.client("cloudwatch").put_metric_alarm(**self.request(props))

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        found = self.clients.client("cloudwatch").describe_alarms(AlarmNames=[physical_id])
        return bool(found.get("MetricAlarms"))

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        self.clients.client("cloudwatch").delete_alarms(AlarmNames=[physical_id])


class ModelPackageGroup(Handler):
    resource_type = "AWS::SageMaker::ModelPackageGroup"

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        # CloudFormation's Ref returns the group's ARN
        return self._arn(str(props["ModelPackageGroupName"]))

    def _arn(self, name: str) -> str:
        account = self.clients.client("sts").get_caller_identity()["Account"]
        partition = _partition(self.clients)
        return (
            f"arn:{partition}:sagemaker:{self.clients.region}:{account}:model-package-group/{name}"
        )

    def attribute(self, physical_id: str, props: dict[str, Any], name: str) -> str:
        if name == "ModelPackageGroupArn":
            return physical_id
        return super().attribute(physical_id, props, name)

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        sm = self.clients.client("sagemaker")
        name = str(props["ModelPackageGroupName"])
        if self.exists(self._arn(name), props):
            return
        kwargs: dict[str, Any] = {"ModelPackageGroupName": name}
        if "ModelPackageGroupDescription" in props:
            kwargs["ModelPackageGroupDescription"] = str(props["ModelPackageGroupDescription"])
        sm.create_model_package_group(**kwargs)

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        try:
            self.clients.client("sagemaker").describe_model_package_group(
                ModelPackageGroupName=str(props["ModelPackageGroupName"])
            )
        except ClientError as exc:
            if error_code(exc) in ("ValidationException", "ResourceNotFound"):
                return False
            raise
        return True

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        sm = self.clients.client("sagemaker")
        name = str(props["ModelPackageGroupName"])
        if not self.exists(physical_id, props):
            return
        # a group with versions cannot be deleted: drop the versions first (local teardown only)
        paginator = sm.get_paginator("list_model_packages")
        for page in paginator.paginate(ModelPackageGroupName=name):
            for pkg in page.get("ModelPackageSummaryList", []):
                sm.delete_model_package(ModelPackageName=pkg["ModelPackageArn"])
        once = self.clients.session.client(  # no retries: moto answers 500 (not implemented)
            "sagemaker",
            endpoint_url=self.clients.endpoint_url,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        try:
            once.delete_model_package_group(ModelPackageGroupName=name)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 500:
                raise LeftBehind(
                    "moto does not implement DeleteModelPackageGroup; the group goes when the "
                    "emulator stops"
                ) from None
            raise


class SqsQueuePolicy(Handler):
    resource_type = "AWS::SQS::QueuePolicy"

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        return ",".join(str(q) for q in props["Queues"])

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        policy = json.dumps(props["PolicyDocument"])
        for url in props["Queues"]:
            self.clients.client("sqs").set_queue_attributes(
                QueueUrl=str(url), Attributes={"Policy": policy}
            )

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        for url in props["Queues"]:
            try:
                attrs = self.clients.client("sqs").get_queue_attributes(
                    QueueUrl=str(url), AttributeNames=["Policy"]
                )
            except ClientError as exc:
                if "NonExistentQueue" in error_code(exc):
                    return False
                raise
            if not attrs.get("Attributes", {}).get("Policy"):
                return False
        return True

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        for url in props["Queues"]:
            try:
                self.clients.client("sqs").set_queue_attributes(
                    QueueUrl=str(url), Attributes={"Policy": ""}
                )
            except ClientError as exc:
                if "NonExistentQueue" not in error_code(exc):
                    raise


HANDLERS: dict[str, type[Handler]] = {
    h.resource_type: h
    for h in (GlueDatabase, S3BucketPolicy, CloudWatchAlarm, ModelPackageGroup, SqsQueuePolicy)
}


def handler_for(resource_type: str, clients: AwsClients) -> Handler:
    cls = HANDLERS.get(resource_type) or ANALYTICS_HANDLERS.get(resource_type)
    if cls is None:
        raise StackError(
            f"{resource_type} is ignored by the emulator's CloudFormation and driftline has no "
            "local handler for it; add one to infra/local_resources.py (HANDLERS) or put the "
            "resource under an AWS-only condition with a Metadata.Driftline.LocalStandIn"
        )
    return cls(clients)


def cfn_attribute(clients: AwsClients, resource_type: str, physical_id: str, name: str) -> str:
    """``Fn::GetAtt`` of a resource the emulator's CloudFormation created, read back by API."""
    key = (resource_type, name)
    if key == ("AWS::KMS::Key", "Arn"):
        return str(clients.client("kms").describe_key(KeyId=physical_id)["KeyMetadata"]["Arn"])
    if key == ("AWS::Kinesis::Stream", "Arn"):
        summary = clients.client("kinesis").describe_stream_summary(StreamName=physical_id)
        return str(summary["StreamDescriptionSummary"]["StreamARN"])
    if key == ("AWS::S3::Bucket", "Arn"):
        return f"arn:{_partition(clients)}:s3:::{physical_id}"
    if key == ("AWS::SQS::Queue", "Arn"):
        attrs = clients.client("sqs").get_queue_attributes(
            QueueUrl=physical_id, AttributeNames=["QueueArn"]
        )
        return str(attrs["Attributes"]["QueueArn"])
    if key == ("AWS::SQS::Queue", "QueueName"):
        return physical_id.rstrip("/").rsplit("/", 1)[-1]
    if key == ("AWS::SNS::Topic", "TopicArn"):
        return physical_id
    if key == ("AWS::SNS::Topic", "TopicName"):
        return physical_id.rsplit(":", 1)[-1]
    if key == ("AWS::IAM::Role", "Arn"):
        return str(clients.client("iam").get_role(RoleName=physical_id)["Role"]["Arn"])
    if key == ("AWS::DynamoDB::Table", "Arn"):
        return str(
            clients.client("dynamodb").describe_table(TableName=physical_id)["Table"]["TableArn"]
        )
    if key == ("AWS::Events::Rule", "Arn"):
        return str(clients.client("events").describe_rule(Name=physical_id)["Arn"])
    if key == ("AWS::Logs::LogGroup", "Arn"):
        groups = clients.client("logs").describe_log_groups(logGroupNamePrefix=physical_id)
        return str(groups["logGroups"][0]["arn"])
    raise StackError(
        f"Fn::GetAtt {resource_type}.{name} is not readable locally; add it to "
        "infra/local_resources.cfn_attribute"
    )


def _partition(clients: AwsClients) -> str:
    return "aws-cn" if clients.region.startswith("cn-") else "aws"


# -- properties moto's CloudFormation drops from resources it does create -------------------------


def _fix_kms_key(
    clients: AwsClients, physical_id: str, props: dict[str, Any], apply: bool
) -> list[str]:
    # moto keeps a CloudFormation KeyPolicy as a dict and then fails DescribeKey with a 500.
    fixed: list[str] = []
    policy = props.get("KeyPolicy")
    if policy is not None:
        fixed.append("key policy")
        if apply:
            text = policy if isinstance(policy, str) else json.dumps(policy)
            clients.client("kms").put_key_policy(
                KeyId=physical_id, PolicyName="default", Policy=text
            )
    if props.get("EnableKeyRotation") in (True, "true"):
        fixed.append("rotation")
        if apply:
            clients.client("kms").enable_key_rotation(KeyId=physical_id)
    return fixed


def _fix_bucket(
    clients: AwsClients, physical_id: str, props: dict[str, Any], apply: bool
) -> list[str]:
    s3 = clients.client("s3")
    fixed: list[str] = []
    if not apply:
        names = {
            "VersioningConfiguration": "versioning",
            "PublicAccessBlockConfiguration": "public access block",
            "LifecycleConfiguration": "lifecycle",
        }
        return [label for key, label in names.items() if key in props]
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=physical_id,
            VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]},
        )
        fixed.append("versioning")
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=physical_id,
            PublicAccessBlockConfiguration={
                k: props["PublicAccessBlockConfiguration"][k] in (True, "true")
                for k in props["PublicAccessBlockConfiguration"]
            },
        )
        fixed.append("public access block")
    if "LifecycleConfiguration" in props:
        rules = [_lifecycle_rule(r) for r in props["LifecycleConfiguration"]["Rules"]]
        s3.put_bucket_lifecycle_configuration(
            Bucket=physical_id, LifecycleConfiguration={"Rules": rules}
        )
        fixed.append("lifecycle")
    return fixed


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in PutBucketLifecycleConfiguration's shape."""
    out: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"]}
    out["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "Transitions" in rule:
        out["Transitions"] = [
            {"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]}
            for t in rule["Transitions"]
        ]
    if "NoncurrentVersionExpiration" in rule:
        days = int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    return out


#: resource type -> applies the properties moto's CloudFormation drops; returns what it applied
PROPERTY_FIXERS: dict[str, Callable[[AwsClients, str, dict[str, Any], bool], list[str]]] = {
    "AWS::KMS::Key": _fix_kms_key,
    "AWS::S3::Bucket": _fix_bucket,
}
