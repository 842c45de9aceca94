"""Resolve a command's settings: config + env, then the local stack's state and outputs.

The local stack (``driftline local up``) records its endpoint and the stack's outputs in
``.driftline/state.json`` (``DRIFTLINE_STATE_DIR`` moves it). Commands run against it whenever it is
up, unless ``DRIFTLINE_ENDPOINT_URL`` or an explicit setting says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from etl.exceptions import ConfigError
from etl.settings import DEFAULT_CONFIG_FILE, Settings, load_settings

#: Stack output name -> settings key. Outputs not listed here stay in ``LocalState.outputs``.
OUTPUT_SETTINGS: dict[str, str] = {
    "StreamName": "stream_name",
    "LakeBucket": "lake_bucket",
    "GlueDatabase": "glue_database",
    "KclApplicationName": "application_name",
    "RetrainQueueUrl": "retrain_queue_url",
    "ModelPackageGroupName": "model_package_group",
    "TopicArn": "topic_arn",
    "DriftAlarmName": "drift_alarm_name",
    "IdempotencyTableName": "idempotency_table",
    "EndpointName": "endpoint_name",
    "SageMakerRoleArn": "sagemaker_role_arn",
    "RedshiftWorkgroup": "redshift_workgroup",
    "RedshiftDatabase": "redshift_database",
    "DataKeyArn": "data_key_arn",
}


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("DRIFTLINE_STATE_DIR", ".driftline")).resolve()


@dataclass
class LocalState:
    """What ``driftline local up`` started and created."""

    endpoint: str
    stack_name: str
    region: str = "us-east-1"
    pids: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path | None = None) -> LocalState | None:
        path = (directory or state_dir()) / "state.json"
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
            return cls(**doc)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(
                "state", f"{path} is unreadable ({exc}); run `driftline local down`"
            ) from None

    def save(self, directory: Path | None = None) -> Path:
        d = directory or state_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))
        tmp.replace(path)
        return path


#: Key of ``LocalState.extra`` holding the contract the local stack was started with.
STATE_CONTRACT = "contract_path"


def add_contract_option(parser: argparse.ArgumentParser) -> None:
    """``--contract PATH``, taken by every command that touches data (:func:`resolve_settings`)."""
    parser.add_argument(
        "--contract",
        default=None,
        metavar="PATH",
        help="data contract (TOML file or s3:// URI); default: contract_path from the env or"
        " driftline.toml, else the one the local stack was started with, else the shipped example",
    )


def normalize_contract_path(value: str | None, key: str = "contract_path") -> str | None:
    """An absolute path (child processes run elsewhere) or an ``s3://`` URI; a missing file fails
    here, naming ``key``."""
    if value is None or value == "" or value.startswith("s3://"):
        return value or None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            key, f"{value!r} is not a file; pass a contract TOML (`driftline contract check PATH`)"
        )
    return str(path)


def settings_from_outputs(outputs: Mapping[str, str]) -> dict[str, str]:
    return {key: outputs[name] for name, key in OUTPUT_SETTINGS.items() if name in outputs}


NO_LOCAL_STACK = (
    "no local stack is up; run `driftline local up` or pass --stack NAME to use the stack on AWS"
)
#: Settings that say "this command targets that place", whoever sets them.
_TARGET_KEYS = ("stack_name", "endpoint_url")


def resolve_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    args: argparse.Namespace | None = None,
    needs_aws: bool = True,
) -> tuple[Settings, LocalState | None]:
    """Settings for a CLI command, filled in from the running local stack when there is one.

    ``args`` contributes ``--contract``. The contract's precedence: the flag, then
    ``DRIFTLINE_CONTRACT_PATH``, then ``driftline.toml``, then the contract the local stack was
    started with (``driftline local up --contract``), then the shipped example.

    With no local stack up, a command that ``needs_aws`` goes to AWS only when told which stack
    (``--stack``, ``DRIFTLINE_STACK_NAME``, an endpoint, or the config file): it never falls back
    to real AWS by surprise (and then fails on credentials)."""
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    flag = getattr(args, "contract", None)
    if flag is not None:
        overrides["contract_path"] = normalize_contract_path(flag, "--contract")
    base = load_settings(overrides, env=env)
    base = base.replace(contract_path=normalize_contract_path(base.contract_path))
    local = LocalState.load(state_dir(env))
    if local is None and needs_aws and not _targets_explicitly(env, overrides):
        raise ConfigError("stack", NO_LOCAL_STACK)
    if local is None or "DRIFTLINE_ENDPOINT_URL" in env:
        return base, local
    fill: dict[str, Any] = {
        "endpoint_url": local.endpoint,
        "region": local.region,
        "stack_name": local.stack_name,
    }
    for key, value in settings_from_outputs(local.outputs).items():
        if getattr(base, key) is None:
            fill[key] = value
    if base.contract_path is None and local.extra.get(STATE_CONTRACT):
        fill["contract_path"] = str(local.extra[STATE_CONTRACT])
    # explicit overrides still win
    fill.update({k: v for k, v in overrides.items() if v is not None})
    return base.replace(**fill), local


def _targets_explicitly(env: Mapping[str, str], overrides: Mapping[str, Any] | None) -> bool:
    if any(f"DRIFTLINE_{k.upper()}" in env for k in _TARGET_KEYS):
        return True
    if any((overrides or {}).get(k) is not None for k in _TARGET_KEYS):
        return True
    config = env.get("DRIFTLINE_CONFIG") or DEFAULT_CONFIG_FILE
    try:
        doc = tomllib.loads(Path(config).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return any(k in doc for k in _TARGET_KEYS)


def clients_for(settings: Settings) -> AwsClients:
    return AwsClients(region=settings.region, endpoint_url=settings.endpoint_url)
