"""The driftline stack on AWS: the artifacts bucket, packaging and upload, deploy and destroy.

The template, change sets and the stack's result types are shared with the local stack
(:mod:`infra.stack`); this module adds what only AWS needs: code and template in a private,
versioned artifacts bucket, the contract as a content-addressed object (``ContractKey``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from etl.aws import AwsClients, error_code, is_not_found, split_s3_uri
from etl.contract import Contract, load_contract
from etl.exceptions import StackError
from infra.stack import (
    TEMPLATE_PATH,
    ResourceStatus,
    StackResult,
    apply_change_set,
    cfn_resources,
    contract_parameters,
    delete_stack_and_wait,
    deployed_template,
    stack_outputs,
    stack_status,
)

log = logging.getLogger(__name__)


def artifacts_bucket_name(account: str, region: str) -> str:
    """One artifacts bucket per account and region, shared by every driftline stack there."""
    return f"driftline-artifacts-{account}-{region}"


def ensure_artifacts_bucket(clients: AwsClients) -> str:
    """Create the artifacts bucket if absent: private, encrypted, versioned, TLS only."""
    account = str(clients.client("sts").get_caller_identity()["Account"])
    bucket = artifacts_bucket_name(account, clients.region)
    s3 = clients.client("s3")
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        return bucket
    except ClientError as exc:
        if not is_not_found(exc, "NoSuchBucket"):
            raise StackError(
                f"artifacts bucket {bucket} is not usable ({error_code(exc)}); it may belong to "
                "another account"
            ) from None
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if clients.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": clients.region}
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if clients.endpoint_url is None:  # the emulator is plain HTTP and enforces bucket policies
        deny = {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
        s3.put_bucket_policy(
            Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]})
        )
    log.info("created artifacts bucket %s", bucket)
    return bucket


def _upload_once(clients: AwsClients, bucket: str, key: str, path: Path) -> None:
    s3 = clients.client("s3")
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return  # content-addressed: already there
    except ClientError as exc:
        if not is_not_found(exc):
            raise
    s3.upload_file(str(path), bucket, key)


@dataclass(frozen=True)
class Artifacts:
    bucket: str
    app_key: str
    lambda_key: str
    template_url: str


def upload_artifacts(
    clients: AwsClients, stack_name: str, *, template_path: Path | None = None,
    root: Path | None = None, work_dir: Path | None = None,
) -> Artifacts:  # fmt: skip
    """Build the app bundle and the Lambda zip, upload them and the template; return their keys."""
    from infra.lambda_pkg import ROOT, build_app_bundle, build_lambda_zip

    src = root or ROOT
    bucket = ensure_artifacts_bucket(clients)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        app = build_app_bundle(src, Path(tmp))
        fn = build_lambda_zip(src, Path(tmp))
        app_key, fn_key = f"{stack_name}/app/{app.name}", f"{stack_name}/lambda/{fn.name}"
        _upload_once(clients, bucket, app_key, app.path)
        _upload_once(clients, bucket, fn_key, fn.path)
    body = (template_path or TEMPLATE_PATH).read_bytes()
    tkey = f"{stack_name}/templates/driftline-{hashlib.sha256(body).hexdigest()[:12]}.yaml"
    clients.client("s3").put_object(Bucket=bucket, Key=tkey, Body=body)
    # moto reads the template from its own S3 by parsing this same URL (no network involved)
    url = f"https://{bucket}.s3.{clients.region}.amazonaws.com/{tkey}"
    return Artifacts(bucket, app_key, fn_key, url)


def upload_contract(clients: AwsClients, bucket: str, stack_name: str, contract: Contract) -> str:
    """Put the contract (its source text) in the artifacts bucket; returns its key.

    Content-addressed (``<stack>/contracts/<name>-<sha12>.toml``): a changed contract is a new
    ``ContractKey``, so the consumers' launch template changes and the fleet rolls onto it."""
    text = contract_text(contract, clients)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    key = f"{stack_name}/contracts/{contract.name}-{digest}.toml"
    clients.client("s3").put_object(
        Bucket=bucket, Key=key, Body=text.encode(), ContentType="application/toml"
    )
    return key


def contract_text(contract: Contract, clients: AwsClients | None = None) -> str:
    """The TOML a contract was loaded from (a file, an ``s3://`` object or the shipped example)."""
    source = contract.source
    if source.startswith("s3://"):
        if clients is None:
            raise StackError(f"reading {source} needs AWS clients")
        bucket, key = split_s3_uri(source, StackError)
        body: bytes = clients.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body.decode()
    if source.startswith("etl/contracts/"):
        from importlib import resources

        return resources.files("etl.contracts").joinpath(source.rsplit("/", 1)[1]).read_text()
    return Path(source).read_text()


def deploy_aws(
    clients: AwsClients,
    *,
    stack_name: str = "driftline",
    parameters: Mapping[str, str] | None = None,
    contract: Contract | None = None,
    template_path: Path | None = None,
    root: Path | None = None,
    timeout: float = 3600.0,
    poll: float = 10.0,
) -> StackResult:
    """Package, upload, create or update the stack through a change set, wait; return outputs.

    The contract (default: the shipped example) travels as the ``ContractKey`` parameter."""
    art = upload_artifacts(clients, stack_name, template_path=template_path, root=root)
    contract = contract or load_contract()
    contract_key = upload_contract(clients, art.bucket, stack_name, contract)
    params = {
        **contract_parameters(contract),
        "LocalMode": "false",
        "ArtifactsBucket": art.bucket,
        "AppArtifactKey": art.app_key,
        "LambdaCodeKey": art.lambda_key,
        "ContractKey": contract_key,
        **{k: str(v) for k, v in (parameters or {}).items()},
    }
    cfn = clients.client("cloudformation")
    apply_change_set(
        cfn, stack_name, params, template_url=art.template_url, timeout=timeout, poll=poll
    )
    return describe_aws(clients, stack_name)


def describe_aws(clients: AwsClients, stack_name: str = "driftline") -> StackResult:
    cfn = clients.client("cloudformation")
    resources = [
        ResourceStatus(lid, rtype, physical, "aws-cloudformation")
        for lid, (rtype, physical) in cfn_resources(cfn, stack_name).items()
    ]
    return StackResult(outputs=stack_outputs(cfn, stack_name), resources=resources)


def destroy_aws(
    clients: AwsClients, stack_name: str = "driftline", *, timeout: float = 3600.0,
    poll: float = 10.0,
) -> list[str]:  # fmt: skip
    """Delete the stack and wait. Returns the physical ids of resources kept by DeletionPolicy."""
    cfn = clients.client("cloudformation")
    if stack_status(cfn, stack_name) is None:
        return []
    template = deployed_template(cfn, stack_name, None)
    made = cfn_resources(cfn, stack_name)
    kept = delete_stack_and_wait(
        cfn, stack_name, template, made, f"stack {stack_name}", timeout, poll
    )
    return [physical for _rtype, physical in kept]
