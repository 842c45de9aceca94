"""The template deployed into the emulator: every resource present, and how it is provided."""

from __future__ import annotations

import base64
import json

import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from infra.stack import (
    TEMPLATE_PATH,
    deploy_local,
    describe_local,
    load_template,
    stack_status,
    teardown_local,
)
from infra.stack_aws import deploy_aws, destroy_aws
from tests.contracts import PARCEL_SCANS

pytestmark = pytest.mark.functional

REQUIRED_OUTPUTS = {
    "StreamName": "driftline-events",
    "LakeBucket": "driftline-lake-123456789012-us-east-1",
    "GlueDatabase": "driftline_lake",
    "KclApplicationName": "driftline-consumer",
    "MetricsNamespace": "Driftline",
    "DriftAlarmName": "driftline-drift-score",
    "DeadLetterAlarmName": "driftline-dead-letter-rate",
    "RetrainRuleName": "driftline-retrain-on-drift",
    "ModelPackageGroupName": "driftline-card-transactions",
    "TopicArn": "arn:aws:sns:us-east-1:123456789012:driftline-notifications",
    "IdempotencyTableName": "driftline-retrain-idempotency",
    "EndpointName": "driftline-card-transactions",
}


def test_deploy_local_provides_every_resource_of_the_template(aws: AwsClients) -> None:
    # GIVEN an empty emulator  WHEN the stack is deployed locally
    result = deploy_local(aws)
    template = load_template(TEMPLATE_PATH)

    # THEN every resource of the template is listed once, in template order, and none is missing
    assert [r.logical_id for r in result.resources] == list(template["Resources"])
    assert result.missing() == []
    by_id = {r.logical_id: r for r in result.resources}
    kinds = {r.logical_id: r.provided_by.split(" ")[0] for r in result.resources}
    print("\n" + "\n".join(f"{r.logical_id:30} {r.provided_by}" for r in result.resources))
    assert {k for k, v in kinds.items() if v == "emulator-api"} == {
        "GlueDatabase", "DriftAlarm", "QualityAlarm", "DeadLetterAlarm", "ConsumerLagAlarm",
        "RetrainQueuePolicy", "RetrainDeadLetterQueuePolicy", "ModelPackageGroup",
        "AthenaWorkgroup", "DeadLetterTable", "CompactionTable",
        "AlarmTransitionsTable", "DriftMetricsTable", "ModelVersionsTable",
    }  # fmt: skip
    assert by_id["Stream"].provided_by == "emulator-cloudformation"
    assert by_id["RedshiftWorkgroup"].provided_by.startswith("local stand-in: embedded PostgreSQL")
    assert by_id["RetrainFunction"].physical_id is None
    # AND the outputs other modules map to settings are there with the template's names
    assert {k: result.outputs[k] for k in REQUIRED_OUTPUTS} == REQUIRED_OUTPUTS
    assert result.outputs["RetrainQueueUrl"].endswith("/123456789012/driftline-retrain-events")
    assert "RedshiftWorkgroup" not in result.outputs

    # AND the resources are really there, with the template's settings
    assert (
        aws.client("kinesis").describe_stream_summary(StreamName="driftline-events")[
            "StreamDescriptionSummary"
        ]["OpenShardCount"]
        == 2
    )
    assert aws.client("glue").get_database(Name="driftline_lake")["Database"]["Name"] == (
        "driftline_lake"
    )
    [alarm] = aws.client("cloudwatch").describe_alarms(AlarmNames=["driftline-drift-score"])[
        "MetricAlarms"
    ]
    stream_dimension = [{"Name": "Stream", "Value": "driftline-events"}]
    assert (
        alarm["Threshold"], alarm["Period"], alarm["DatapointsToAlarm"],
        alarm["EvaluationPeriods"], alarm["TreatMissingData"], alarm["Dimensions"],
    ) == (1.0, 60, 2, 3, "notBreaching", stream_dimension)  # fmt: skip
    s3 = aws.client("s3")
    bucket = REQUIRED_OUTPUTS["LakeBucket"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert by_id["LakeBucketPolicy"].provided_by.startswith("not emulated: the emulator serves")
    s3.put_object(Bucket=bucket, Key="lake/t/probe.parquet", Body=b"x")  # no TLS-only deny locally
    aws.client("kms").describe_key(KeyId="alias/driftline-data")  # moto's dict policy repaired
    # AND the Athena workgroup enforces its result location under the lake bucket, encrypted
    wg = aws.client("athena").get_work_group(WorkGroup="driftline-analytics")["WorkGroup"]
    result_config = wg["Configuration"]["ResultConfiguration"]
    assert result_config["OutputLocation"] == f"s3://{bucket}/athena-results/"
    assert result_config["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert wg["Configuration"]["EnforceWorkGroupConfiguration"] is True
    assert wg["Configuration"]["BytesScannedCutoffPerQuery"] == 10737418240
    # AND the dead-letter table is projected (no partition registration ever)
    table = aws.client("glue").get_table(DatabaseName="driftline_lake", Name="dead_letters")
    params = table["Table"]["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["storage.location.template"] == (
        f"s3://{bucket}/dead-letters/${{table_name}}/event_date=${{event_date}}/"
    )
    # AND QuickSight is not there without a principal
    assert "QuickSightDataSourceArn" not in result.outputs


def test_describe_matches_deploy_and_a_second_deploy_changes_nothing(aws: AwsClients) -> None:
    # GIVEN a deployed local stack
    first = deploy_local(aws)
    # WHEN deployed again with the same parameters, then described
    second = deploy_local(aws)
    described = describe_local(aws)
    # THEN the resources and outputs are identical
    assert second.resources == first.resources
    assert described.resources == first.resources
    assert second.outputs == described.outputs == first.outputs


def test_update_with_a_parameter_changes_the_alarm(aws: AwsClients) -> None:
    # GIVEN a deployed stack  WHEN the drift threshold and M of N are changed by parameter
    deploy_local(aws)
    deploy_local(aws, parameters={"DriftThreshold": "0.35", "DriftDatapointsToAlarm": "3"})
    # THEN the alarm in the emulator follows the template's parameters
    [alarm] = aws.client("cloudwatch").describe_alarms(AlarmNames=["driftline-drift-score"])[
        "MetricAlarms"
    ]
    assert (alarm["Threshold"], alarm["DatapointsToAlarm"]) == (0.35, 3)


def test_alarm_event_reaches_the_retrain_queue_and_other_alarms_do_not(aws: AwsClients) -> None:
    # GIVEN the local stack (rule -> SQS queue)
    outputs = deploy_local(aws).outputs
    events, sqs = aws.client("events"), aws.client("sqs")

    def alarm_event(name: str, state: str) -> dict[str, str]:
        detail = {"alarmName": name, "state": {"value": state}, "previousState": {"value": "OK"}}
        return {
            "Source": "aws.cloudwatch",
            "DetailType": "CloudWatch Alarm State Change",
            "Detail": json.dumps(detail),
            "Resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
        }

    # WHEN the drift alarm goes to ALARM, then OK, and the lag alarm goes to ALARM
    events.put_events(
        Entries=[
            alarm_event("driftline-drift-score", "ALARM"),
            alarm_event("driftline-drift-score", "OK"),
            alarm_event("driftline-consumer-lag", "ALARM"),
        ]
    )
    got = sqs.receive_message(
        QueueUrl=outputs["RetrainQueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    # THEN exactly the drift ALARM transition is delivered
    bodies = [json.loads(m["Body"]) for m in got]
    assert [(b["detail"]["alarmName"], b["detail"]["state"]["value"]) for b in bodies] == [
        ("driftline-drift-score", "ALARM")
    ]


def test_teardown_removes_the_stack_and_what_was_created_by_api(aws: AwsClients) -> None:
    # GIVEN a deployed stack with an object in the (versioned, retained) lake bucket
    out = deploy_local(aws).outputs
    aws.client("s3").put_object(Bucket=out["LakeBucket"], Key="lake/x/part.parquet", Body=b"x")
    # WHEN it is torn down
    removed = teardown_local(aws)
    # THEN the stack, bucket, Glue database and alarms are gone
    cfn = aws.client("cloudformation")
    assert stack_status(cfn, "driftline") in (None, "DELETE_COMPLETE")
    assert aws.client("s3").list_buckets()["Buckets"] == []
    assert aws.client("glue").get_databases()["DatabaseList"] == []
    assert aws.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert aws.client("kinesis").list_streams()["StreamNames"] == []
    # AND only what moto cannot delete is reported as left behind
    assert [r.logical_id for r in removed if r.provided_by.startswith("left behind")] == [
        "ModelPackageGroup"
    ]
    # AND a new deployment after teardown works
    assert deploy_local(aws).missing() == []


# -- the AWS path, exercised against the emulator with LocalMode=false ---------------------------


def test_deploy_aws_path_packages_uploads_and_creates_the_fleet(aws: AwsClients) -> None:
    # GIVEN a VPC with two subnets in the emulator (the fleet's network on AWS)
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{z}")[
            "Subnet"
        ]["SubnetId"]
        for i, z in enumerate("ab")
    ]
    params = {"VpcId": vpc, "SubnetIds": ",".join(subnets), "ConsumerInstances": "2"}
    contract = load_contract(PARCEL_SCANS)
    # WHEN the AWS deploy path runs (artifacts bucket, app bundle, Lambda zip, contract, change
    # set by URL)
    result = deploy_aws(aws, stack_name="prod", parameters=params, contract=contract, poll=0.1)
    # THEN the artifacts are in the content-addressed artifacts bucket
    bucket = "driftline-artifacts-123456789012-us-east-1"
    keys = sorted(
        o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    )
    assert [k.split("/")[1] for k in keys] == ["app", "contracts", "lambda", "templates"]
    # AND the contract travels as the ContractKey parameter, byte for byte
    contract_key = next(k for k in keys if "/contracts/" in k)
    assert contract_key.startswith("prod/contracts/parcel_scans-")
    body = aws.client("s3").get_object(Bucket=bucket, Key=contract_key)["Body"].read()
    assert body == PARCEL_SCANS.read_bytes()
    contract_uri = f"s3://{bucket}/{contract_key}"
    # AND the AWS-only resources exist: the Lambda, the launch template and the ASG over the subnets
    types = {r.logical_id: r.type for r in result.resources}
    assert {"RetrainFunction", "ConsumerLaunchTemplate", "ConsumerGroup"} <= set(types)
    assert "RetrainQueue" not in types
    [group] = aws.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["prod-consumers"]
    )["AutoScalingGroups"]
    assert (group["DesiredCapacity"], sorted(group["VPCZoneIdentifier"].split(","))) == (
        2, sorted(subnets),
    )  # fmt: skip
    [version] = ec2.describe_launch_template_versions(LaunchTemplateName="prod-consumer")[
        "LaunchTemplateVersions"
    ]
    user_data = base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()
    assert "dnf install -y java-17-amazon-corretto-headless" in user_data
    assert "ExecStart=/opt/driftline/venv/bin/driftline consume --workers 1" in user_data
    assert "Restart=always" in user_data
    assert f"s3://{bucket}/{next(k for k in keys if '/app/' in k)}" in user_data
    # AND the fleet (unit env) and the Lambda (env) are given the contract's S3 object
    assert f"DRIFTLINE_CONTRACT_PATH={contract_uri}\n" in user_data
    fn = aws.client("lambda").get_function(FunctionName="prod-retrain")["Configuration"]
    assert (fn["Handler"], fn["Runtime"]) == ("retrain.handler.handler", "python3.11")
    assert fn["Environment"]["Variables"]["DRIFTLINE_CONTRACT_PATH"] == contract_uri
    # AND the parameters the contract decides are its own, not the card example's defaults
    stack = aws.client("cloudformation").describe_stacks(StackName="prod")["Stacks"][0]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert given["ModelName"] == "parcel-scans"
    assert given["ContractTask"] == str(contract.task)
    # AND what they load from there is the contract deployed
    assert load_contract(contract_uri, s3_client=aws.client("s3")).hash == contract.hash

    # WHEN the stack is destroyed  THEN the lake bucket and the key that encrypts it are kept
    key_id = next(
        r["PhysicalResourceId"]
        for r in aws.client("cloudformation").describe_stack_resources(StackName="prod")[
            "StackResources"
        ]
        if r["LogicalResourceId"] == "DataKey"
    )
    assert sorted(destroy_aws(aws, "prod", poll=0.1)) == sorted(
        [key_id, "prod-lake-123456789012-us-east-1"]
    )


def test_cli_deploy_and_destroy_local(emulator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the emulator named by DRIFTLINE_ENDPOINT_URL (no local state)
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", emulator)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", "/nonexistent-driftline-state")
    # WHEN `driftline deploy --stack cli --param ShardCount=3 --json` runs
    import contextlib
    import io

    from infra.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(
            [
                "deploy", "--stack", "cli", "--param", "ShardCount=3", "--json",
                "--contract", str(PARCEL_SCANS),
            ]
        )  # fmt: skip
    doc = json.loads(out.getvalue())
    # THEN the stack is there with 3 shards and its outputs are printed
    assert rc == 0
    assert doc["outputs"]["StreamName"] == "cli-events"
    aws = AwsClients(endpoint_url=emulator)
    summary = aws.client("kinesis").describe_stream_summary(StreamName="cli-events")
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 3
    # AND the Glue table of the contract given was created from it
    table = aws.client("glue").get_table(DatabaseName="cli_lake", Name="parcel_scans")["Table"]
    assert table["Parameters"]["driftline_contract_hash"] == load_contract(PARCEL_SCANS).hash
    # AND a malformed parameter is refused with exit code 2
    assert main(["deploy", "--stack", "cli", "--param", "oops"]) == 2
    # AND destroy removes it
    assert main(["destroy", "--stack", "cli"]) == 0
    assert aws.client("kinesis").list_streams()["StreamNames"] == []
