"""Create by API what the emulator's CloudFormation silently ignores, from the template itself.

moto's CloudFormation creates many resource types but skips others without an error (it logs
"No Moto CloudFormation support for ..."): CloudWatch alarms, the Glue database, the model package
group, bucket and queue policies (the Athena workgroup and Glue tables: infra/local_analytics.py).
The local stack must still hold every resource of the template,
with the template's own names and settings, so this module resolves those resources' properties (a
small resolver for exactly the intrinsics the template uses) and makes the matching API calls.

Resources whose condition is false in LocalMode (the EC2 fleet, the Lambda, Redshift Serverless) are
reported with the local stand-in named in their ``Metadata: {Driftline: {LocalStandIn: ...}}``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from etl.aws import AwsClients, error_code
from etl.exceptions import StackError

log = logging.getLogger(__name__)

#: The value ``{"Ref": "AWS::NoValue"}`` resolves to; dropped from dicts and lists.
NO_VALUE: Any = object()

#: provided_by labels
BY_CLOUDFORMATION = "emulator-cloudformation"


def by_api(resource_type: str) -> str:
    return f"emulator-api (moto ignores {resource_type} in CloudFormation)"


class Resolver:
    """Resolve CloudFormation intrinsics against one stack's parameters and resources.

    Only what driftline's template uses: ``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::If``,
    ``Fn::Join``, ``Fn::Split``, ``Fn::Select``, ``Fn::ToJsonString`` and the condition
    functions (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``). Anything else
    fails with a :class:`StackError` naming it, rather than producing a wrong value.

    >>> r = Resolver({"Parameters": {"P": {"Type": "String", "Default": "x"}}}, {},
    ...              {"AWS::StackName": "s"}, ref=lambda _: "", get_att=lambda _a, _b: "")
    >>> r.resolve({"Fn::Sub": "${AWS::StackName}-${P}"})
    's-x'
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        *,
        ref: Callable[[str], str],
        get_att: Callable[[str, str], str],
    ) -> None:
        self.template = template
        self.pseudo = dict(pseudo)
        self._ref = ref
        self._get_att = get_att
        declared = template.get("Parameters", {})
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise StackError(
                f"parameter {unknown[0]!r} is not declared by the template; "
                f"declared: {sorted(declared)}"
            )
        self.parameters: dict[str, str] = {}
        for name, spec in declared.items():
            if name in parameters:
                self.parameters[name] = str(parameters[name])
            elif "Default" in spec:
                default = spec["Default"]
                self.parameters[name] = (
                    ",".join(map(str, default)) if isinstance(default, list) else str(default)
                )
            else:
                raise StackError(f"parameter {name!r} has no default; pass it (--param {name}=...)")
        self._conditions: dict[str, bool] = {}

    # -- conditions -------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = self.template.get("Conditions", {}).get(name)
            if spec is None:
                raise StackError(f"condition {name!r} is not defined in the template's Conditions")
            self._conditions[name] = self._condition_value(spec)
        return self._conditions[name]

    def _condition_value(self, spec: Any) -> bool:
        if isinstance(spec, dict) and len(spec) == 1:
            ((fn, arg),) = spec.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return bool(str(left) == str(right))
            if fn == "Fn::Not":
                return not self._condition_value(arg[0])
            if fn == "Fn::And":
                return all(self._condition_value(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._condition_value(a) for a in arg)
        raise StackError(f"unsupported condition expression {spec!r}")

    def resource_enabled(self, logical_id: str) -> bool:
        cond = self.template["Resources"][logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    # -- values -----------------------------------------------------------------------------
    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            spec = self.template["Parameters"][name]
            if spec.get("Type", "String") in ("CommaDelimitedList", "List<String>") or str(
                spec.get("Type", "")
            ).startswith("List<"):
                return [v for v in self.parameters[name].split(",") if v]
            return self.parameters[name]
        if name in self.template.get("Resources", {}):
            return self._ref(name)
        raise StackError(f"Ref to {name!r}, which is no parameter, pseudo parameter or resource")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _function(self, fn: str, arg: Any) -> Any:
        if fn == "Fn::Sub":
            return self._sub(arg)
        if fn == "Fn::GetAtt":
            logical, _, attr = arg.partition(".") if isinstance(arg, str) else (arg[0], ".", arg[1])
            return self._get_att(logical, attr)
        if fn == "Fn::If":
            cond, when_true, when_false = arg
            return self.resolve(when_true if self.condition(cond) else when_false)
        if fn == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(x) for x in self.resolve(items))
        if fn == "Fn::Split":
            sep, text = arg
            return str(self.resolve(text)).split(sep)
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if fn == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        raise StackError(
            f"the local resolver does not support {fn}; use Ref, Fn::Sub, Fn::GetAtt, Fn::If, "
            "Fn::Join, Fn::Split, Fn::Select or Fn::ToJsonString in properties that are created "
            "locally (infra/local_resources.py)"
        )

    _SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, _, attr = name.partition(".")
                return str(self._get_att(logical, attr))
            value = self.ref(name)
            if value is NO_VALUE:
                raise StackError(f"Fn::Sub cannot substitute AWS::NoValue in {text!r}")
            return ",".join(value) if isinstance(value, list) else str(value)

        return self._SUB_VAR.sub(replace, str(text)).replace("${!", "${")


# -- handlers for the types moto's CloudFormation ignores ----------------------------------------


class LeftBehind(Exception):  # noqa: N818 - a signal, not an error
    """The emulator cannot delete this resource; the message says why and when it goes."""


class _Handler:
    resource_type = ""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        """The id CloudFormation's Ref would return, derived from the resolved properties."""
        raise NotImplementedError

    def attribute(self, physical_id: str, props: dict[str, Any], name: str) -> str:
        raise StackError(f"Fn::GetAtt {self.resource_type}.{name} is not supported locally")

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        raise NotImplementedError

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        raise NotImplementedError

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        raise NotImplementedError


class GlueDatabase(_Handler):
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


class S3BucketPolicy(_Handler):
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


class CloudWatchAlarm(_Handler):
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


class ModelPackageGroup(_Handler):
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


class SqsQueuePolicy(_Handler):
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


HANDLERS: dict[str, type[_Handler]] = {
    h.resource_type: h
    for h in (GlueDatabase, S3BucketPolicy, CloudWatchAlarm, ModelPackageGroup, SqsQueuePolicy)
}


def handler_for(resource_type: str, clients: AwsClients) -> _Handler:
    from infra.local_analytics import ANALYTICS_HANDLERS

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
