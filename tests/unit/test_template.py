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
from infra.local_resources import CloudWatchAlarm, Resolver
from infra.stack import TEMPLATE_PATH, load_template

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"

#: (resource, Sid) of statements that may use Resource "*" or a service-wide action, and why.
WILDCARD_ALLOWLIST: dict[tuple[str, str], str] = {
    # A key policy's Resource "*" means "this key"; the account root must administer its key.
    ("DataKey", "AccountAdministersKey"): "key policy: root administers the key (AWS default)",
    ("DataKey", "ServicesUseKey"): "key policy: Resource '*' is this key; scoped by SourceAccount",
    # GetAuthorizationToken has no resource-level permissions (IAM service authorization reference).
    ("SageMakerExecutionRole", "EcrAuthorizationToken"): "ecr:GetAuthorizationToken needs '*'",
    # PutMetricData has no resource-level permissions; the namespace condition scopes it instead.
    ("SageMakerExecutionRole", "SageMakerMetrics"): "PutMetricData needs '*'; namespace condition",
    ("ConsumerRole", "PutMetricDataOwnNamespaces"): "PutMetricData needs '*'; namespace condition",
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


def test_cfn_lint_is_clean() -> None:
    # GIVEN the template  WHEN cfn-lint (all regions' specs for us-east-1) checks it
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE_PATH)
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
