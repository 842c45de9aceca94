"""The CloudFormation template: cfn-lint clean, no unexplained IAM wildcards, checkov clean.

checkov is not in the lock (its pins conflict with ours): `make tools` installs it into
`.venv-tools`; without that venv the checkov test is skipped. Nothing here talks to the network:
checkov runs with --skip-download and its proxies pointed at a closed loopback port.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from etl.exceptions import StackError
from infra.local_resolver import Resolver
from infra.local_resources import CloudWatchAlarm
from infra.stack import TEMPLATE_PATH, load_template

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"

#: (resource, Sid) of statements that may use Resource "*" or a service-wide action, and why.
WILDCARD_ALLOWLIST: dict[tuple[str, str], str] = {
    # A key policy's Resource "*" means "this key"; the account root must administer its key.
    ("DataKey", "AccountAdministersKey"): "key policy: root administers the key (AWS default)",
    ("DataKey", "ServicesUseKey"): "key policy: Resource '*' is this key; scoped by SourceAccount",
    (
        "DataKey",
        "LogsUseKey",
    ): "key policy: the Logs guide's statement; scoped by encryption context",
    ("DataKey", "AutoScalingUsesKey"): "key policy: the EC2 Auto Scaling guide's statement",
    ("DataKey", "AutoScalingAttachesVolumes"): "key policy: CreateGrant for AWS resources only",
    # GetAuthorizationToken has no resource-level permissions (IAM service authorization reference).
    ("SageMakerExecutionRole", "EcrAuthorizationToken"): "ecr:GetAuthorizationToken needs '*'",
    # PutMetricData has no resource-level permissions; the namespace condition scopes it instead.
    ("SageMakerExecutionRole", "SageMakerMetrics"): "PutMetricData needs '*'; namespace condition",
    ("ConsumerRole", "PutMetricDataOwnNamespaces"): "PutMetricData needs '*'; namespace condition",
    # ListMetrics and GetMetricData have no resource-level permissions; read-only.
    ("AnalyticsExportFunctionRole", "ReadMetrics"): "ListMetrics/GetMetricData need '*'; read-only",
    # A Deny on every action for non-TLS requests is the point of the TLS-only bucket policy.
    ("LakeBucketPolicy", "DenyInsecureTransport"): "deny s3:* without TLS",
}


def _template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every policy statement of the template, with the resource it belongs to."""
    out: list[tuple[str, dict[str, Any]]] = []
    for logical_id, spec in template["Resources"].items():
        props = spec.get("Properties", {})
        docs = [props.get(k) for k in ("PolicyDocument", "KeyPolicy", "AssumeRolePolicyDocument")]
        docs += [p.get("PolicyDocument") for p in props.get("Policies", [])]
        for doc in docs:
            if isinstance(doc, dict):
                out += [(logical_id, st) for st in doc.get("Statement", [])]
    return out


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_is_clean_including_informational_rules() -> None:
    # GIVEN the template  WHEN cfn-lint checks it with its informational rules too (I3011: every
    # stateful resource says what happens to its data on delete and replace)
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE_PATH, config=ManualArgs(include_checks=["I"]))
    # THEN nothing is reported (suppressions live in the template, each with a comment)
    assert [str(m) for m in matches] == []


def test_no_wildcard_action_on_wildcard_resource() -> None:
    # GIVEN every policy statement of the template
    statements = _statements(_template())
    assert len(statements) > 40
    # WHEN looking for Action "*" on Resource "*"
    offenders = [
        (lid, st.get("Sid"))
        for lid, st in statements
        if "*" in _as_list(st.get("Action", [])) and "*" in _as_list(st.get("Resource", []))
    ]
    # THEN there is none at all
    assert offenders == []


def test_every_wildcard_resource_or_service_wide_action_is_allowlisted_with_a_sid() -> None:
    # GIVEN every statement with Resource "*" or an action like "kms:*"
    flagged = {
        (lid, st.get("Sid", "<no Sid>"))
        for lid, st in _statements(_template())
        if "*" in _as_list(st.get("Resource", []))
        or any(str(a).endswith(":*") or a == "*" for a in _as_list(st.get("Action", [])))
    }
    # THEN each carries a Sid and is in the allowlist with its reason, and the allowlist is current
    assert flagged == set(WILDCARD_ALLOWLIST)


def test_put_metric_data_is_limited_to_our_namespaces() -> None:
    # GIVEN the consumer role's PutMetricData statement
    [st] = [
        st
        for lid, st in _statements(_template())
        if lid == "ConsumerRole" and st.get("Sid") == "PutMetricDataOwnNamespaces"
    ]
    # THEN it is conditioned on the metrics namespace and the KCL's own namespace
    assert st["Condition"]["StringEquals"]["cloudwatch:namespace"] == [
        {"Ref": "MetricsNamespace"},
        {"Fn::Sub": "${AWS::StackName}-consumer"},
    ]


def test_kcl_tables_and_their_indexes_are_the_only_dynamodb_resources_of_the_consumer() -> None:
    [st] = [
        st
        for lid, st in _statements(_template())
        if lid == "ConsumerRole" and st.get("Sid") == "KclTables"
    ]
    tables = [r["Fn::Sub"].rsplit(":table/", 1)[1] for r in st["Resource"]]
    assert tables == [
        "${AWS::StackName}-consumer",
        "${AWS::StackName}-consumer/index/*",
        "${AWS::StackName}-consumer-WorkerMetricStats",
        "${AWS::StackName}-consumer-WorkerMetricStats/index/*",
        "${AWS::StackName}-consumer-CoordinatorState",
        "${AWS::StackName}-consumer-CoordinatorState/index/*",
    ]


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov not installed: run `make tools`")
def test_checkov_has_no_failed_checks_and_every_skip_has_a_reason() -> None:
    # GIVEN checkov from the tools venv, offline (no Prisma Cloud download; proxies to loopback)
    env = {
        **os.environ,
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "BC_SKIP_MAPPING": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    }
    proc = subprocess.run(
        [str(CHECKOV), "-f", str(TEMPLATE_PATH), "--framework", "cloudformation",
         "--skip-download", "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    # THEN nothing fails
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    # AND every suppression in the template says why
    for spec in _template()["Resources"].values():
        for skip in spec.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 20, skip


# -- the local resolver and the alarm mapping (pure) ---------------------------------------------


def _resolver(parameters: dict[str, str] | None = None) -> Resolver:
    refs = {"Stream": "s-events", "Topic": "arn:aws:sns:us-east-1:1:s-notifications"}
    return Resolver(
        _template(),
        {"LocalMode": "true", **(parameters or {})},
        {"AWS::StackName": "s", "AWS::Region": "us-east-1", "AWS::AccountId": "1",
         "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"},
        ref=lambda lid: refs[lid],
        get_att=lambda lid, attr: f"{lid}.{attr}",
    )  # fmt: skip


def test_drift_alarm_request_comes_from_the_template_defaults() -> None:
    # GIVEN the template's DriftAlarm resolved with default parameters
    r = _resolver()
    props = r.resolve(_template()["Resources"]["DriftAlarm"]["Properties"])
    # WHEN mapped to PutMetricAlarm
    req = CloudWatchAlarm.request(props)
    req.pop("AlarmDescription")
    # THEN threshold, period = window, 2 of 3 and missing-data mode are the template's
    assert req == {
        "AlarmName": "s-drift-score",
        "Namespace": "Driftline",
        "MetricName": "DriftScore",
        "Dimensions": [{"Name": "Stream", "Value": "s-events"}],
        "Statistic": "Maximum",
        "Period": 60,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": ["arn:aws:sns:us-east-1:1:s-notifications"],
        "OKActions": ["arn:aws:sns:us-east-1:1:s-notifications"],
    }


def test_parameters_override_alarm_settings() -> None:
    r = _resolver({"DriftThreshold": "0.35", "DriftWindowSeconds": "30"})
    req = CloudWatchAlarm.request(r.resolve(_template()["Resources"]["DriftAlarm"]["Properties"]))
    assert (req["Threshold"], req["Period"]) == (0.35, 30)


def test_resolver_conditions_split_join_and_novalue() -> None:
    r = _resolver()
    assert (r.condition("IsLocal"), r.condition("IsAws"), r.condition("HasLayers")) == (
        True, False, False,
    )  # fmt: skip
    assert r.resolve({"Fn::Join": ["_", {"Fn::Split": ["-", "a-b-c"]}]}) == "a_b_c"
    assert r.resolve({"K": {"Ref": "AWS::NoValue"}, "L": [1, {"Ref": "AWS::NoValue"}]}) == {
        "L": [1]
    }
    assert r.resolve({"Fn::Sub": ["${X}-${AWS::Region}-${!Literal}", {"X": "y"}]}) == (
        "y-us-east-1-${Literal}"
    )


def test_resolver_refuses_what_it_does_not_know() -> None:
    r = _resolver()
    with pytest.raises(StackError, match="does not support Fn::FindInMap"):
        r.resolve({"Fn::FindInMap": ["M", "a", "b"]})
    with pytest.raises(StackError, match="not declared by the template"):
        _resolver({"NoSuchParameter": "1"})
    with pytest.raises(StackError, match="no parameter, pseudo parameter or resource"):
        r.resolve({"Ref": "Nope"})


# -- analytics: workgroup, projected tables, optional QuickSight ---------------------------------


def test_the_workgroup_enforces_encrypted_results_under_the_lake_and_a_scan_cutoff() -> None:
    resources = _template()["Resources"]
    config = resources["AthenaWorkgroup"]["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "AthenaBytesScannedCutoff"}
    assert config["ResultConfiguration"] == {
        "OutputLocation": {"Fn::Sub": "s3://${LakeBucket}/athena-results/"},
        "EncryptionConfiguration": {
            "EncryptionOption": "SSE_KMS",
            "KmsKey": {"Fn::GetAtt": ["DataKey", "Arn"]},
        },
    }
    rules = resources["LakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    [expire] = [r for r in rules if r["Id"] == "expire-athena-results"]
    assert (expire["Prefix"], expire["ExpirationInDays"]) == (
        "athena-results/",
        {"Ref": "AthenaResultsExpirationDays"},
    )


def test_lake_side_tables_are_projected() -> None:
    resources = _template()["Resources"]
    for logical_id in ("DeadLetterTable", "CompactionTable"):
        params = resources[logical_id]["Properties"]["TableInput"]["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.table_name.type"] == "injected"
        assert "${!table_name}" in params["storage.location.template"]["Fn::Sub"]


def test_exported_tables_are_projected_parquet_with_the_exporters_columns() -> None:
    from etl.export import SCHEMAS, ExportTable, object_key

    glue_types = {"timestamp[us, tz=UTC]": "timestamp", "string": "string",
                  "double": "double", "int64": "bigint"}  # fmt: skip
    resources = _template()["Resources"]
    by_name = {
        spec["Properties"]["TableInput"]["Name"]: spec["Properties"]["TableInput"]
        for spec in resources.values()
        if spec["Type"] == "AWS::Glue::Table"
    }
    for table in ExportTable:
        # GIVEN the Glue table of each exported table
        tin = by_name[str(table)]
        # THEN its columns are the exporter's, typed alike, partitioned by the day
        assert [(c["Name"], c["Type"]) for c in tin["StorageDescriptor"]["Columns"]] == [
            (f.name, glue_types[str(f.type)]) for f in SCHEMAS[table]
        ]
        assert tin["PartitionKeys"] == [{"Name": "event_date", "Type": "string"}]
        # AND the projection finds the very objects the exporter writes
        params = tin["Parameters"]
        assert params["projection.enabled"] == "true"
        template = params["storage.location.template"]["Fn::Sub"]
        key = object_key(table, "2026-01-05")
        assert template.replace("${!event_date}", "2026-01-05") == (
            "s3://${LakeBucket}/" + key.rsplit("/", 1)[0] + "/"
        )


def test_the_export_function_is_scheduled_and_writes_only_the_analytics_prefix() -> None:
    resources = _template()["Resources"]
    rule = resources["AnalyticsExportRule"]["Properties"]
    assert rule["ScheduleExpression"] == {"Ref": "AnalyticsExportSchedule"}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["AnalyticsExportFunction", "Arn"]}
    fn = resources["AnalyticsExportFunction"]["Properties"]
    assert fn["Handler"] == "etl.export.handler"
    statements = resources["AnalyticsExportFunctionRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    writes = [
        st
        for st in statements
        if any(a.startswith("s3:Put") for a in st["Action"] if isinstance(st["Action"], list))
    ]
    assert [w["Resource"] for w in writes] == [
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::${LakeBucket}/analytics/*"}
    ]
    # AND no statement deletes or writes anything else
    actions = {a for st in statements for a in st["Action"]}
    assert not {a for a in actions if "Delete" in a or a.startswith(("iam:", "sagemaker:Update"))}


def _policy(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = resources[role]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    return statements


def test_the_capture_ingest_function_is_scheduled_and_writes_only_the_predictions_table() -> None:
    # GIVEN the template's capture ingest function, its rule and its role
    resources = _template()["Resources"]
    rule = resources["CaptureIngestRule"]["Properties"]
    fn = resources["CaptureIngestFunction"]["Properties"]
    statements = _policy(resources, "CaptureIngestFunctionRole")
    # THEN the schedule invokes the etl.capture_lake handler, looking back three hours
    assert rule["ScheduleExpression"] == {"Ref": "CaptureIngestSchedule"}
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["CaptureIngestFunction", "Arn"]}
    assert json.loads(rule["Targets"][0]["Input"]) == {"since_s": 10800}
    assert fn["Handler"] == "etl.capture_lake.handler"
    assert fn["Code"]["S3Key"] == {"Ref": "LambdaCodeKey"}  # the Lambda zip of lambda_pkg
    assert fn["ReservedConcurrentExecutions"] == 1
    env = fn["Environment"]["Variables"]
    assert env["DRIFTLINE_CONTRACT_PATH"] == {"Fn::Sub": "s3://${ArtifactsBucket}/${ContractKey}"}
    # AND it reads the capture prefix and writes only the predictions table's objects
    by_sid = {st["Sid"]: st for st in statements}
    assert by_sid["CaptureRead"]["Action"] == "s3:GetObject"
    assert by_sid["CaptureRead"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${LakeBucket}/capture/*"
    }
    writes = [st for st in statements if "s3:PutObject" in _as_list(st["Action"])]
    assert [r["Fn::Sub"].split(":::", 1)[1] for w in writes for r in w["Resource"]] == [
        "${LakeBucket}/lake/*_predictions/*",
        "${LakeBucket}/manifests/*_predictions/*",
        "${LakeBucket}/dead-letters/*_predictions/*",
    ]
    glue = by_sid["PredictionsTable"]["Resource"][-1]["Fn::Sub"]
    assert glue.endswith(":table/${GlueDatabase}/*_predictions")
    # AND nothing deletes, and the data key is the stack's own
    actions = {a for st in statements for a in _as_list(st["Action"])}
    assert not {a for a in actions if "Delete" in a or a.startswith(("iam:", "sagemaker:"))}
    assert by_sid["DataKey"]["Resource"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    # AND the handler the rule names is in the Lambda zip's packages
    from infra.lambda_pkg import LAMBDA_PACKAGES

    assert fn["Handler"].split(".", 1)[0] in LAMBDA_PACKAGES


@pytest.mark.parametrize(
    ("task", "name", "metric", "stat", "operator", "threshold"),
    [
        ("binary_classification", "s-quality-auc", "QualityAUC", "Minimum", "LessThanThreshold", 0),
        ("regression", "s-quality-rmse", "QualityRMSE", "Maximum", "GreaterThanThreshold", 1e300),
    ],
)
def test_the_quality_alarm_watches_the_contracts_task_figure(
    task: str, name: str, metric: str, stat: str, operator: str, threshold: float
) -> None:
    # GIVEN the template resolved for a contract's task
    r = _resolver({"ContractTask": task})
    t = _template()
    req = CloudWatchAlarm.request(r.resolve(t["Resources"]["QualityAlarm"]["Properties"]))
    # THEN the alarm watches that task's figure, in its direction, unarmed
    assert (req["AlarmName"], req["MetricName"], req["Statistic"]) == (name, metric, stat)
    assert (req["ComparisonOperator"], req["Threshold"]) == (operator, threshold)
    assert r.resolve(t["Outputs"]["QualityAlarmName"]["Value"]) == name
    # AND the retrain function may read and re-arm exactly that alarm
    by_sid = {st["Sid"]: st for st in _policy(t["Resources"], "RetrainFunctionRole")}
    assert by_sid["ArmQualityAlarm"]["Action"] == "cloudwatch:PutMetricAlarm"
    arn = f"arn:aws:cloudwatch:us-east-1:1:alarm:{name}"
    assert r.resolve(by_sid["ArmQualityAlarm"]["Resource"]) == [arn]
    assert arn in r.resolve(by_sid["ReadAlarms"]["Resource"])


def test_quicksight_exists_only_with_a_principal_and_reads_only_the_lake() -> None:
    template = _template()
    # GIVEN the QuickSight resources  THEN each hangs on HasQuickSight (principal ARN not empty)
    quicksight = {
        lid
        for lid, spec in template["Resources"].items()
        if "QuickSight" in spec["Type"] or lid.startswith("QuickSight")
    }
    assert quicksight == {"QuickSightAthenaRole", "QuickSightDataSource"}
    assert {template["Resources"][lid]["Condition"] for lid in quicksight} == {"HasQuickSight"}
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "QuickSightPrincipalArn"}, ""]}]} in (
        template["Conditions"]["HasQuickSight"]["Fn::And"]
    )
    # AND its role may query the workgroup, read the catalog and the lake, write only results
    actions = {
        st["Sid"]: sorted(_as_list(st["Action"]))
        for lid, st in _statements(template)
        if lid == "QuickSightAthenaRole" and st.get("Sid")
    }
    assert actions == {
        "Workgroup": [
            "athena:GetQueryExecution",
            "athena:GetQueryResults",
            "athena:GetWorkGroup",
            "athena:StartQueryExecution",
            "athena:StopQueryExecution",
        ],
        "Catalog": sorted(
            [
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:GetTables",
                "glue:GetPartition",
                "glue:GetPartitions",
            ]
        ),
        "LakeRead": ["s3:GetObject"],
        "QueryResults": sorted(
            [
                "s3:GetObject",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ]
        ),
        "LakeBucket": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
        "DataKey": ["kms:Decrypt", "kms:GenerateDataKey"],
    }


# -- security review --------------------------------------------------------------------------


def _refs(node: Any) -> set[str]:
    """Logical ids a template fragment refers to (Ref, GetAtt, ${X} in Sub)."""
    import re

    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else str(value).split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def test_every_kms_key_guarding_retained_data_is_retained_too() -> None:
    # GIVEN the resources whose data outlives the stack (DeletionPolicy Retain)
    resources = _template()["Resources"]
    retained = [lid for lid, spec in resources.items() if spec.get("DeletionPolicy") == "Retain"]
    assert "LakeBucket" in retained
    # WHEN following their references to KMS keys
    keys = {
        ref
        for lid in retained
        for ref in _refs(resources[lid].get("Properties", {}))
        if resources.get(ref, {}).get("Type") == "AWS::KMS::Key"
    }
    # THEN each such key is kept on delete and on replacement (else the data becomes unreadable)
    assert keys == {"DataKey"}
    for key in keys:
        assert resources[key]["DeletionPolicy"] == "Retain"
        assert resources[key]["UpdateReplacePolicy"] == "Retain"


def _key_statement(sid: str) -> dict[str, Any]:
    [st] = [st for lid, st in _statements(_template()) if lid == "DataKey" and st.get("Sid") == sid]
    return st


def test_key_policy_lets_the_auto_scaling_service_linked_role_launch_encrypted_volumes() -> None:
    # GIVEN the EC2 Auto Scaling guide's two statements for a customer managed EBS key
    role = {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
        "autoscaling.${AWS::URLSuffix}/AWSServiceRoleForAutoScaling"
    }
    use, grant = _key_statement("AutoScalingUsesKey"), _key_statement("AutoScalingAttachesVolumes")
    # THEN the service-linked role may use the key and create grants for AWS resources only
    assert use["Principal"] == {"AWS": role} and grant["Principal"] == {"AWS": role}
    assert sorted(use["Action"]) == [
        "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*",
    ]  # fmt: skip
    assert grant["Action"] == "kms:CreateGrant"
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": True}}
    # AND the launch template's root volume is the one encrypted with that key
    lt = _template()["Resources"]["ConsumerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert lt["BlockDeviceMappings"][0]["Ebs"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}


def test_logs_key_statement_is_the_documented_one_scoped_to_this_stacks_log_groups() -> None:
    import fnmatch

    # GIVEN the key policy's CloudWatch Logs statement
    st = _key_statement("LogsUseKey")
    # THEN it has the actions of the Logs user guide's statement
    assert sorted(st["Action"]) == [
        "kms:Decrypt*", "kms:Describe*", "kms:Encrypt*", "kms:GenerateDataKey*", "kms:ReEncrypt*",
    ]  # fmt: skip
    assert st["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.${AWS::URLSuffix}"}}
    # AND the encryption context admits every log group of the stack and no other stack's
    r = _resolver()
    patterns = r.resolve(st["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    groups = [
        r.resolve(spec["Properties"]["LogGroupName"])
        for spec in _template()["Resources"].values()
        if spec["Type"] == "AWS::Logs::LogGroup"
    ]
    assert len(groups) == 6
    arn = "arn:aws:logs:us-east-1:1:log-group:{}".format
    for group in groups:
        assert any(fnmatch.fnmatchcase(arn(group), p) for p in patterns), group
    for other in (
        "/aws/lambda/s-dev-retrain",
        "/aws/lambda/s-dev-compaction",
        "/driftline/s-dev/consumer",
        "/aws/lambda/x",
    ):
        assert not any(fnmatch.fnmatchcase(arn(other), p) for p in patterns), other


def test_roles_attach_no_managed_policies() -> None:
    # GIVEN every IAM role (a managed policy grants what the inline statements do not show)
    roles = {
        lid: spec["Properties"]
        for lid, spec in _template()["Resources"].items()
        if spec["Type"] == "AWS::IAM::Role"
    }
    assert {"ConsumerRole", "RetrainFunctionRole", "SageMakerExecutionRole"} <= set(roles)
    # THEN none attaches one: every right a role has is an inline statement the tests read
    assert {lid: p.get("ManagedPolicyArns", []) for lid, p in roles.items()} == {
        lid: [] for lid in roles
    }


def _sagemaker_resources(stack: str) -> list[str]:
    r = Resolver(
        _template(),
        {"LocalMode": "false"},
        {"AWS::StackName": stack, "AWS::Region": "us-east-1", "AWS::AccountId": "1",
         "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"},
        ref=lambda lid: lid,
        get_att=lambda lid, attr: f"{lid}.{attr}",
    )  # fmt: skip
    out: list[str] = []
    for _lid, st in _statements(_template()):
        for res in _as_list(st.get("Resource", [])):
            value = r.resolve(res)
            if isinstance(value, str) and ":sagemaker:" in value:
                out.append(value)
    return out


@pytest.mark.parametrize(
    "sibling",
    ["driftline-dev", "driftline-fraud", "driftline-x-fraud", "driftline-card-transactions-v1"],
)
def test_stack_driftline_cannot_touch_a_sibling_stacks_sagemaker_resources(sibling: str) -> None:
    import fnmatch

    # GIVEN the SageMaker ARNs the roles of stack `driftline` (model `card-transactions`, the
    # default contract's name) are granted
    granted = _sagemaker_resources("driftline")
    assert len(granted) >= 6
    # AND the names stack `sibling` gives its endpoint, models, configs, jobs and packages
    arn = "arn:aws:sagemaker:us-east-1:1:{}".format
    theirs = [
        arn(f"endpoint/{sibling}-card-transactions"),
        arn(f"endpoint-config/{sibling}-card-transactions-v000003"),
        arn(f"model/{sibling}-card-transactions-v000003"),
        arn(f"training-job/{sibling}-card-transactions-20260101t000000z-0123abcd"),
        arn(f"model-package-group/{sibling}-card-transactions"),
        arn(f"model-package/{sibling}-card-transactions/3"),
    ]
    # THEN none of them matches a granted ARN, while the stack's own names do
    assert [(g, t) for g in granted for t in theirs if fnmatch.fnmatchcase(t, g)] == []
    ours = [t.replace(sibling, "driftline") for t in theirs]
    assert all(any(fnmatch.fnmatchcase(o, g) for g in granted) for o in ours)


def test_every_log_group_has_a_retention_and_roles_write_only_to_those_or_sagemakers_own() -> None:
    resources = _template()["Resources"]
    groups = {lid: s for lid, s in resources.items() if s["Type"] == "AWS::Logs::LogGroup"}
    # GIVEN every log group of the template  THEN each has a retention and our key
    for lid, spec in groups.items():
        assert spec["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, lid
        assert spec["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, lid
    # AND no role may create a log group (which would have no retention)
    creates = [
        (lid, st.get("Sid"))
        for lid, st in _statements(_template())
        if "logs:CreateLogGroup" in _as_list(st.get("Action", []))
    ]
    assert creates == []


def test_redshift_manages_its_admin_password_and_no_secret_needs_a_rotation_suppression() -> None:
    resources = _template()["Resources"]
    ns = resources["RedshiftNamespace"]["Properties"]
    assert ns["ManageAdminPassword"] is True
    assert "AdminUserPassword" not in ns
    assert ns["AdminPasswordSecretKmsKeyId"] == {"Ref": "DataKey"}
    assert [lid for lid, s in resources.items() if s["Type"] == "AWS::SecretsManager::Secret"] == []


#: Every checkov suppression, reviewed: (resource, check) -> the fact its reason rests on.
CHECKOV_SKIPS = {
    ("LakeBucket", "CKV_AWS_18"): "creates no CloudTrail trail",
    ("RetrainFunction", "CKV_AWS_117"): "calls only AWS APIs",
    ("RetrainFunction", "CKV_AWS_115"): "idempotency table's lock",
    ("RetrainFunction", "CKV_AWS_173"): "resource names only",
    ("CompactionFunction", "CKV_AWS_117"): "calls only S3",
    ("CompactionFunction", "CKV_AWS_116"): "the next scheduled run retries it",
    ("CompactionFunction", "CKV_AWS_173"): "resource names only",
    ("AnalyticsExportFunction", "CKV_AWS_117"): "calls only AWS APIs",
    ("AnalyticsExportFunction", "CKV_AWS_116"): "the next scheduled run retries it",
    ("AnalyticsExportFunction", "CKV_AWS_173"): "resource names only",
    ("CaptureIngestFunction", "CKV_AWS_117"): "calls only S3 and Glue",
    ("CaptureIngestFunction", "CKV_AWS_116"): "the next scheduled run retries them",
    ("CaptureIngestFunction", "CKV_AWS_173"): "resource names only",
}


def test_every_checkov_suppression_is_reviewed_and_claims_nothing_the_stack_lacks() -> None:
    resources = _template()["Resources"]
    skips = {
        (lid, s["id"]): s["comment"]
        for lid, spec in resources.items()
        for s in spec.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    # THEN the suppressions are exactly the reviewed ones, each stating the reviewed fact
    assert set(skips) == set(CHECKOV_SKIPS)
    for key, fact in CHECKOV_SKIPS.items():
        assert fact in " ".join(skips[key].split()), key
    # AND a reason never leans on a trail, rotation or log bucket the template does not create
    types = {spec["Type"] for spec in resources.values()}
    for key, comment in skips.items():
        if "CloudTrail" in comment and "AWS::CloudTrail::Trail" not in types:
            assert "creates no CloudTrail trail" in " ".join(comment.split()), key
    # AND the environment the Lambda suppression speaks of holds no secret-like name
    env = resources["RetrainFunction"]["Properties"]["Environment"]["Variables"]
    assert [k for k in env if any(w in k for w in ("SECRET", "PASSWORD", "TOKEN", "DSN"))] == []


def test_the_local_retrain_queue_redrives_to_the_dead_letter_queue() -> None:
    props = _template()["Resources"]["RetrainQueue"]["Properties"]
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["RetrainDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }


def test_the_contract_travels_to_the_fleet_the_lambda_and_their_roles() -> None:
    # GIVEN the template
    t = _template()
    contract_uri = {"Fn::Sub": "s3://${ArtifactsBucket}/${ContractKey}"}
    contract_arn = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactsBucket}/${ContractKey}"}
    # THEN ContractKey is a parameter that AWS deploys must set
    assert t["Parameters"]["ContractKey"]["Default"] == ""
    asserts = t["Rules"]["AwsNeedsNetworkAndArtifacts"]["Assertions"]
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "ContractKey"}, ""]}]} in [
        a["Assert"] for a in asserts
    ]
    # AND the Lambda gets the contract's S3 URI, and its role may read exactly that object
    env = t["Resources"]["RetrainFunction"]["Properties"]["Environment"]["Variables"]
    assert env["DRIFTLINE_CONTRACT_PATH"] == contract_uri
    sids = {(lid, st.get("Sid")): st for lid, st in _statements(t) if isinstance(st, dict)}
    assert sids[("RetrainFunctionRole", "ContractRead")]["Resource"] == contract_arn
    # AND the fleet's unit env names it, and the instance role may read it
    user_data = t["Resources"]["ConsumerLaunchTemplate"]["Properties"]["LaunchTemplateData"][
        "UserData"
    ]["Fn::Base64"]["Fn::Sub"]
    assert "DRIFTLINE_CONTRACT_PATH=s3://${ArtifactsBucket}/${ContractKey}\n" in user_data
    assert contract_arn in sids[("ConsumerRole", "AppArtifactRead")]["Resource"]


def test_models_and_configs_are_granted_by_their_fixed_length_names() -> None:
    import fnmatch

    from retrain.deploy import version_name

    # GIVEN the names retrain/deploy.py gives stack `driftline`'s versions
    granted = _sagemaker_resources("driftline")
    arn = "arn:aws:sagemaker:us-east-1:1:{}".format
    # THEN each version's model and config is granted, whatever the version's digits
    for v in (1, 42, 999_999):
        name = version_name("driftline-card-transactions", v)
        for kind in ("model", "endpoint-config"):
            assert any(fnmatch.fnmatchcase(arn(f"{kind}/{name}"), g) for g in granted), name
    # AND a stack named like one of its versions cannot reach them, nor they its
    other = version_name("driftline-card-transactions-v1-card-transactions", 3)
    assert not any(fnmatch.fnmatchcase(arn(f"model/{other}"), g) for g in granted)


def _retrain_statements() -> dict[str, dict[str, Any]]:
    role = _template()["Resources"]["RetrainFunctionRole"]["Properties"]
    return {st["Sid"]: st for p in role["Policies"] for st in p["PolicyDocument"]["Statement"]}


def test_training_jobs_and_models_are_granted_only_isolated_and_under_the_stacks_key() -> None:
    # GIVEN the retrain function's statements
    sts = _retrain_statements()
    # THEN CreateTrainingJob is allowed only with network isolation and the stack's key on the
    # volume and the output, CreateModel only with network isolation, and nowhere else
    train = sts["SageMakerIsolatedTraining"]
    assert train["Action"] == "sagemaker:CreateTrainingJob"
    assert train["Condition"] == {
        "Bool": {"sagemaker:NetworkIsolation": "true"},
        "StringEquals": {
            "sagemaker:VolumeKmsKey": {"Fn::GetAtt": ["DataKey", "Arn"]},
            "sagemaker:OutputKmsKey": {"Fn::GetAtt": ["DataKey", "Arn"]},
        },
    }
    model = sts["SageMakerIsolatedModels"]
    assert model["Action"] == "sagemaker:CreateModel"
    assert model["Condition"] == {"Bool": {"sagemaker:NetworkIsolation": "true"}}
    creating = [
        sid
        for sid, st in sts.items()
        for a in _as_list(st["Action"])
        if a in ("sagemaker:CreateTrainingJob", "sagemaker:CreateModel", "sagemaker:*")
    ]
    assert sorted(creating) == ["SageMakerIsolatedModels", "SageMakerIsolatedTraining"]


def test_a_deferred_alarm_is_delivered_again_by_a_schedule_of_the_stacks_own_group() -> None:
    resources = _template()["Resources"]
    env = resources["RetrainFunction"]["Properties"]["Environment"]["Variables"]
    sts = _retrain_statements()
    # GIVEN the function's redelivery settings  THEN they name the group, the role and itself
    assert env["DRIFTLINE_REDELIVERY_GROUP"] == {"Ref": "RetrainRedeliveryGroup"}
    assert env["DRIFTLINE_REDELIVERY_ROLE_ARN"] == {"Fn::GetAtt": ["RetrainRedeliveryRole", "Arn"]}
    assert env["DRIFTLINE_REDELIVERY_TARGET_ARN"]["Fn::Sub"].endswith(
        ":function:${AWS::StackName}-retrain"
    )
    group = resources["RetrainRedeliveryGroup"]["Properties"]["Name"]
    assert group == {"Fn::Sub": "${AWS::StackName}-retrain"}
    # AND the function may create schedules in that group only, and pass that role to the
    # scheduler only
    create = sts["RedeliverDeferredAlarms"]
    assert create["Action"] == "scheduler:CreateSchedule"
    assert create["Resource"]["Fn::Sub"].endswith(":schedule/${RetrainRedeliveryGroup}/*")
    passing = sts["PassRedeliveryRole"]
    assert passing["Resource"] == {"Fn::GetAtt": ["RetrainRedeliveryRole", "Arn"]}
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": {"Fn::Sub": "scheduler.${AWS::URLSuffix}"}}
    }
    # AND the scheduler's role may invoke the retrain function and nothing else, assumed only
    # by this account's schedules of this stack's group
    role = resources["RetrainRedeliveryRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": {"Fn::Sub": "scheduler.${AWS::URLSuffix}"}}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    (policy,) = role["Policies"]
    (invoke,) = policy["PolicyDocument"]["Statement"]
    assert invoke["Action"] == "lambda:InvokeFunction"
    assert invoke["Resource"]["Fn::Sub"].endswith(":function:${AWS::StackName}-retrain")


def test_every_function_of_ours_gets_the_deployed_contract() -> None:
    # A function without DRIFTLINE_CONTRACT_PATH silently used the shipped example contract
    # (the compaction Lambda compacted the card table whatever was deployed): every function
    # running driftline code gets the deployed one, and its role may read it.
    t = _template()
    resources, params = t["Resources"], t["Parameters"]
    checked = []
    for lid, spec in resources.items():
        if spec["Type"] != "AWS::Lambda::Function":
            continue
        handler = spec["Properties"]["Handler"]
        if isinstance(handler, dict):
            handler = params[handler["Ref"]]["Default"]
        if handler.split(".", 1)[0] not in ("etl", "consumers", "retrain", "infra"):
            continue
        checked.append(lid)
        env = spec["Properties"]["Environment"]["Variables"]
        assert env.get("DRIFTLINE_CONTRACT_PATH") == {
            "Fn::Sub": "s3://${ArtifactsBucket}/${ContractKey}"
        }, lid
        role = spec["Properties"]["Role"]["Fn::GetAtt"][0]
        reads = [
            s
            for s in _policy(resources, role)
            if "s3:GetObject" in _as_list(s["Action"])
            and {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactsBucket}/${ContractKey}"}
            in _as_list(s["Resource"])
        ]
        assert reads, f"{lid}'s role {role} cannot read the contract"
    assert {"CompactionFunction", "CaptureIngestFunction", "RetrainFunction"} <= set(checked)
    assert "AnalyticsExportFunction" in checked
