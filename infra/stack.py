"""Deploy, describe and tear down driftline's CloudFormation stack, on AWS and in the emulator.

One template (``infra/templates/driftline.yaml``) is the single source of truth for names and
settings. Both targets go through a change set (CREATE or UPDATE; "no changes" is success). Locally
the stack is deployed with ``LocalMode=true`` and then :mod:`infra.local_resources` creates by API
what the emulator's CloudFormation ignores; :class:`StackResult` lists every resource of the
template with how it is provided. What only AWS needs (the artifacts bucket, uploads, deploy and
destroy) is in :mod:`infra.stack_aws`.

>>> result = deploy_local(AwsClients(endpoint_url="http://127.0.0.1:5000"))  # doctest: +SKIP
>>> result.outputs["StreamName"]  # doctest: +SKIP
'driftline-events'
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from etl.aws import AwsClients, error_code
from etl.exceptions import StackError
from infra import local_resources as lr
from infra.local_handler import LeftBehind
from infra.local_resolver import Resolver

log = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "driftline.yaml"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
LOCAL_PARAMETERS: dict[str, str] = {"LocalMode": "true"}
#: the Metadata key under which a resource names its local stand-in
METADATA_KEY = "Driftline"


@dataclass(frozen=True)
class ResourceStatus:
    """One resource of the template and how it is provided where the stack runs."""

    logical_id: str
    type: str
    physical_id: str | None
    provided_by: str

    @property
    def present(self) -> bool:
        """Created (by CloudFormation or by API); False for stand-ins and absent resources."""
        return self.physical_id is not None and not self.provided_by.startswith(
            ("local stand-in", "not emulated", "missing")
        )


@dataclass
class StackResult:
    outputs: dict[str, str] = field(default_factory=dict)
    resources: list[ResourceStatus] = field(default_factory=list)

    def missing(self) -> list[ResourceStatus]:
        return [r for r in self.resources if r.provided_by.startswith("missing")]

    def to_json(self) -> dict[str, Any]:
        return {
            "outputs": dict(self.outputs),
            "resources": [r.__dict__ for r in self.resources],
        }


# -- template ----------------------------------------------------------------------------------


def contract_parameters(contract: Any, model_name: str | None = None) -> dict[str, str]:
    """The template parameters a contract decides, for every deploy (local or AWS): ``ModelName``
    (the registry group, endpoint and training jobs; the settings' ``model_name`` or the
    contract's name) and ``ContractTask`` (the quality alarm watches AUC for binary
    classification and contracts without a label, RMSE for regression)."""
    from retrain.runs import model_name_for

    task = getattr(contract, "task", None)
    return {
        "ModelName": model_name or model_name_for(contract),
        "ContractTask": "regression" if str(task) == "regression" else "binary_classification",
    }


def load_template(path: Path | None = None) -> dict[str, Any]:
    """The template as plain data, with YAML short forms (``!Ref``, ``!Sub`` ...) expanded."""
    import yaml  # type: ignore[import-untyped, unused-ignore]  # types-PyYAML is not locked

    loader: Any = type("_CfnLoader", (yaml.SafeLoader,), {})

    def construct(ldr: Any, suffix: str, node: Any) -> dict[str, Any]:
        fn = (
            "Ref"
            if suffix == "Ref"
            else ("Condition" if suffix == "Condition" else f"Fn::{suffix}")
        )
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = ldr.construct_scalar(node)
            if fn == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = ldr.construct_sequence(node, deep=True)
        else:
            value = ldr.construct_mapping(node, deep=True)
        return {fn: value}

    yaml.add_multi_constructor("!", construct, Loader=loader)
    text = (path or TEMPLATE_PATH).read_text()
    doc = yaml.load(text, Loader=loader)
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise StackError(f"{path or TEMPLATE_PATH} is not a CloudFormation template (no Resources)")
    return doc


# -- change sets (AWS and emulator alike) ---------------------------------------------------------


def stack_status(cfn: Any, stack_name: str) -> str | None:
    """The stack's status, or None when it does not exist (or only a review-stage shell exists)."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if error_code(exc) == "ValidationError":
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def wait_until(
    probe: Callable[[], tuple[bool, str | None]], what: str, timeout: float, poll: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, failure = probe()
        if failure is not None:
            raise StackError(f"{what} failed: {failure}")
        if done:
            return
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not finish within {timeout:.0f}s; check the console")
        time.sleep(poll)


def apply_change_set(
    cfn: Any,
    stack_name: str,
    parameters: Mapping[str, str],
    *,
    template_body: str | None = None,
    template_url: str | None = None,
    timeout: float = 3600.0,
    poll: float = 5.0,
) -> str:
    """Create (or update) ``stack_name`` through a change set; returns CREATE, UPDATE or NONE."""
    kind = "CREATE" if _changeable_status(cfn, stack_name) is None else "UPDATE"
    name = f"driftline-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    source: dict[str, str] = (
        {"TemplateURL": template_url} if template_url else {"TemplateBody": template_body or ""}
    )
    cfn.create_change_set(
        StackName=stack_name,
        ChangeSetName=name,
        ChangeSetType=kind,
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
        Capabilities=CAPABILITIES,
        **source,
    )
    if not _wait_change_set(cfn, stack_name, name, timeout, poll):
        cfn.delete_change_set(StackName=stack_name, ChangeSetName=name)
        log.info("stack %s: no changes", stack_name)
        return "NONE"
    cfn.execute_change_set(StackName=stack_name, ChangeSetName=name)

    def executed() -> tuple[bool, str | None]:
        now = stack_status(cfn, stack_name) or "MISSING"
        if now in (f"{kind}_COMPLETE",):
            return True, None
        if "ROLLBACK" in now or now.endswith("_FAILED"):
            return False, f"{now}; {first_failure(cfn, stack_name)}"
        return False, None

    wait_until(executed, f"{kind} of stack {stack_name}", timeout, poll)
    log.info("stack %s: %s complete", stack_name, kind)
    return kind


def _changeable_status(cfn: Any, stack_name: str) -> str | None:
    """The stack's status when a change set may be made (None: create it), else a StackError."""
    status = stack_status(cfn, stack_name)
    if status == "REVIEW_IN_PROGRESS":
        cfn.delete_stack(StackName=stack_name)  # an earlier CREATE change set never executed
        return None
    if status == "ROLLBACK_COMPLETE":
        raise StackError(
            f"stack {stack_name} is in ROLLBACK_COMPLETE (its creation failed); "
            f"delete it (`driftline destroy --stack {stack_name}`) and deploy again"
        )
    if status is not None and status.endswith("_IN_PROGRESS"):
        raise StackError(f"stack {stack_name} is busy ({status}); wait for it and retry")
    return status


def _wait_change_set(cfn: Any, stack_name: str, name: str, timeout: float, poll: float) -> bool:
    """Wait until the change set is created; False when it holds no changes (nothing to do)."""
    no_changes = False

    def created() -> tuple[bool, str | None]:
        nonlocal no_changes
        cs = cfn.describe_change_set(StackName=stack_name, ChangeSetName=name)
        if cs["Status"] == "FAILED":
            reason = str(cs.get("StatusReason", ""))
            if "didn't contain changes" in reason or "No updates" in reason:
                no_changes = True
                return True, None
            return False, reason
        return cs["Status"] == "CREATE_COMPLETE", None

    wait_until(created, f"change set {name} of {stack_name}", timeout, poll)
    return not no_changes


def first_failure(cfn: Any, stack_name: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except ClientError:
        return "no events"
    for ev in reversed(events):
        if str(ev.get("ResourceStatus", "")).endswith("_FAILED"):
            return f"{ev.get('LogicalResourceId')}: {ev.get('ResourceStatusReason')}"
    return "see the stack's events"


def delete_stack_and_wait(
    cfn: Any,
    stack_name: str,
    template: Mapping[str, Any],
    made: Mapping[str, tuple[str, str]],
    what: str,
    timeout: float,
    poll: float,
) -> list[tuple[str, str]]:
    """Delete the stack and wait until it is gone; returns the (type, physical id) of what the
    template retains (``DeletionPolicy: Retain``), which outlives the stack."""
    retained = [
        made[lid]
        for lid, spec in template["Resources"].items()
        if spec.get("DeletionPolicy") == "Retain" and lid in made
    ]
    cfn.delete_stack(StackName=stack_name)

    def gone() -> tuple[bool, str | None]:
        now = stack_status(cfn, stack_name)
        if now == "DELETE_FAILED":
            return False, first_failure(cfn, stack_name)
        return now in (None, "DELETE_COMPLETE"), None

    wait_until(gone, f"deletion of {what}", timeout, poll)
    return retained


def stack_outputs(cfn: Any, stack_name: str) -> dict[str, str]:
    stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: str(o["OutputValue"]) for o in stacks[0].get("Outputs", []) or []}


def stack_parameters(cfn: Any, stack_name: str) -> dict[str, str]:
    stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    return {
        p["ParameterKey"]: str(p.get("ParameterValue", ""))
        for p in stacks[0].get("Parameters", []) or []
    }


# -- the local stack ----------------------------------------------------------------------------


def cfn_resources(cfn: Any, stack_name: str) -> dict[str, tuple[str, str]]:
    """logical id -> (type, physical id) for what the emulator's CloudFormation created."""
    out: dict[str, tuple[str, str]] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"StackName": stack_name}
        if token:
            kwargs["NextToken"] = token
        page = cfn.list_stack_resources(**kwargs)
        for r in page.get("StackResourceSummaries", []):
            logical, physical = r.get("LogicalResourceId"), r.get("PhysicalResourceId")
            if logical and physical:  # moto lists ignored resources with empty ids
                out[str(logical)] = (str(r["ResourceType"]), str(physical))
        token = page.get("NextToken")
        if not token:
            return out


class _LocalStack:
    """Walks the template once: resolves, then creates / checks / deletes the API resources."""

    def __init__(
        self,
        clients: AwsClients,
        stack_name: str,
        template: dict[str, Any],
        parameters: Mapping[str, str],
    ) -> None:
        self.clients = clients
        self.stack_name = stack_name
        self.template = template
        self.cfn = clients.client("cloudformation")
        self.cfn_made = cfn_resources(self.cfn, stack_name)
        account = str(clients.client("sts").get_caller_identity()["Account"])
        stack_id = str(self.cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackId"])
        partition = "aws-cn" if clients.region.startswith("cn-") else "aws"
        pseudo = {
            "AWS::StackName": stack_name,
            "AWS::StackId": stack_id,
            "AWS::Region": clients.region,
            "AWS::AccountId": account,
            "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
        }
        self.resolver = Resolver(template, parameters, pseudo, ref=self._ref, get_att=self._get_att)
        self._props: dict[str, dict[str, Any]] = {}
        self._resolving: set[str] = set()

    # Ref / GetAtt ------------------------------------------------------------------------
    def _spec(self, logical_id: str) -> dict[str, Any]:
        spec: dict[str, Any] = self.template["Resources"][logical_id]
        return spec

    def _ref(self, logical_id: str) -> str:
        if logical_id in self.cfn_made:
            return self.cfn_made[logical_id][1]
        spec = self._spec(logical_id)
        if not self.resolver.resource_enabled(logical_id):
            raise StackError(
                f"Ref to {logical_id}, whose condition {spec.get('Condition')} is false here; "
                "guard the reference with the same condition (Fn::If)"
            )
        handler = lr.handler_for(spec["Type"], self.clients)
        return handler.physical_id(logical_id, self.props(logical_id), self.stack_name)

    def _get_att(self, logical_id: str, attr: str) -> str:
        physical = self._ref(logical_id)
        rtype = self._spec(logical_id)["Type"]
        if logical_id in self.cfn_made:
            return lr.cfn_attribute(self.clients, rtype, physical, attr)
        return lr.handler_for(rtype, self.clients).attribute(physical, self.props(logical_id), attr)

    def props(self, logical_id: str) -> dict[str, Any]:
        if logical_id not in self._props:
            if logical_id in self._resolving:
                raise StackError(f"circular reference through {logical_id}")
            self._resolving.add(logical_id)
            raw = self._spec(logical_id).get("Properties", {})
            self._props[logical_id] = self.resolver.resolve(raw)
            self._resolving.discard(logical_id)
        return self._props[logical_id]

    # walk ---------------------------------------------------------------------------------
    def statuses(self, action: str) -> list[ResourceStatus]:
        """``action``: "create" (idempotent), "check", or "delete" the API-provided resources."""
        order = list(self.template["Resources"])
        if action == "delete":
            order.reverse()
        out: list[ResourceStatus] = []
        for logical_id in order:
            spec = self._spec(logical_id)
            rtype = str(spec["Type"])
            if not self.resolver.resource_enabled(logical_id):
                out.append(ResourceStatus(logical_id, rtype, None, self._stand_in(logical_id)))
                continue
            if logical_id in self.cfn_made:
                provided = lr.BY_CLOUDFORMATION
                fixer = lr.PROPERTY_FIXERS.get(rtype)
                if fixer is not None and action != "delete":
                    physical = self.cfn_made[logical_id][1]
                    fixed = fixer(
                        self.clients, physical, self.props(logical_id), action == "create"
                    )
                    if fixed:
                        provided += f" (+ emulator-api: {', '.join(fixed)})"
                out.append(
                    ResourceStatus(logical_id, rtype, self.cfn_made[logical_id][1], provided)
                )
                continue
            handler = lr.handler_for(rtype, self.clients)
            props = self.props(logical_id)
            physical = handler.physical_id(logical_id, props, self.stack_name)
            provided = lr.by_api(rtype)
            if action == "create":
                handler.create(logical_id, props, self.stack_name)
            elif action == "delete":
                try:
                    handler.delete(physical, props)
                except LeftBehind as exc:
                    provided = f"left behind: {exc}"
            elif not handler.exists(physical, props):
                provided = f"missing (expected by API: {rtype})"
            out.append(ResourceStatus(logical_id, rtype, physical, provided))
        if action == "delete":
            out.reverse()
        return out

    def _stand_in(self, logical_id: str) -> str:
        spec = self._spec(logical_id)
        meta = spec.get("Metadata", {}).get(METADATA_KEY, {})
        stand_in = meta.get("LocalStandIn")
        if stand_in:
            return f"local stand-in: {stand_in}"
        reason = meta.get("NotEmulated") or f"condition {spec.get('Condition')} is false locally"
        return f"not emulated: {reason}"

    def outputs(self) -> dict[str, str]:
        """Every output whose condition holds, resolved here; moto's own value where it has one."""
        from_cfn = stack_outputs(self.cfn, self.stack_name)
        out: dict[str, str] = {}
        for name, spec in self.template.get("Outputs", {}).items():
            cond = spec.get("Condition")
            if cond is not None and not self.resolver.condition(cond):
                continue
            value = from_cfn.get(name)
            if value is None or "${" in value:
                resolved = self.resolver.resolve(spec["Value"])
                value = ",".join(resolved) if isinstance(resolved, list) else str(resolved)
            out[name] = value
        return out


def _local_parameters(parameters: Mapping[str, str] | None) -> dict[str, str]:
    return {**LOCAL_PARAMETERS, **{k: str(v) for k, v in (parameters or {}).items()}}


def deploy_local(
    clients: AwsClients,
    *,
    stack_name: str = "driftline",
    parameters: Mapping[str, str] | None = None,
    template_path: Path | None = None,
) -> StackResult:
    """Deploy the template into the emulator (create or update) and create what it ignores."""
    if clients.endpoint_url is None:
        raise StackError("deploy_local needs the emulator's endpoint (AwsClients.endpoint_url)")
    path = template_path or TEMPLATE_PATH
    template = load_template(path)
    params = _local_parameters(parameters)
    cfn = clients.client("cloudformation")
    apply_change_set(cfn, stack_name, params, template_body=path.read_text(), timeout=120, poll=0.1)
    stack = _LocalStack(clients, stack_name, template, stack_parameters(cfn, stack_name))
    resources = stack.statuses("create")
    return StackResult(outputs=stack.outputs(), resources=resources)


def describe_local(
    clients: AwsClients, stack_name: str = "driftline", *, template_path: Path | None = None
) -> StackResult:
    """Every resource of the deployed local stack and how it is provided; nothing is created."""
    cfn = clients.client("cloudformation")
    if stack_status(cfn, stack_name) is None:
        raise StackError(f"no local stack {stack_name}; run `driftline local up`")
    template = deployed_template(cfn, stack_name, template_path)
    stack = _LocalStack(clients, stack_name, template, stack_parameters(cfn, stack_name))
    return StackResult(outputs=stack.outputs(), resources=stack.statuses("check"))


def teardown_local(
    clients: AwsClients,
    stack_name: str = "driftline",
    *,
    template_path: Path | None = None,
    purge_retained: bool = True,
    timeout: float = 120.0,
) -> list[ResourceStatus]:
    """Delete the API-created resources, then the stack; locally retained buckets go too."""
    cfn = clients.client("cloudformation")
    if stack_status(cfn, stack_name) is None:
        return []
    template = deployed_template(cfn, stack_name, template_path)
    stack = _LocalStack(clients, stack_name, template, stack_parameters(cfn, stack_name))
    removed = stack.statuses("delete")
    retained = delete_stack_and_wait(
        cfn, stack_name, template, stack.cfn_made, f"local stack {stack_name}", timeout, 0.1
    )
    if purge_retained:
        for rtype, physical in retained:
            if rtype == "AWS::S3::Bucket":
                empty_and_delete_bucket(clients, physical)
    return removed


def deployed_template(cfn: Any, stack_name: str, template_path: Path | None) -> dict[str, Any]:
    if template_path is not None:
        return load_template(template_path)
    body = cfn.get_template(StackName=stack_name)["TemplateBody"]
    if isinstance(body, dict):
        return body
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(body)
    try:
        return load_template(Path(fh.name))
    finally:
        Path(fh.name).unlink()


def empty_and_delete_bucket(clients: AwsClients, bucket: str) -> None:
    """Delete every object version and delete marker, then the bucket (local teardown)."""
    s3 = clients.client("s3")
    try:
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket):
            items = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for i in range(0, len(items), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": items[i : i + 1000]})
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) != "NoSuchBucket":
            raise
