"""Resolve a command's settings: config + env, then the local stack's state and outputs.

The local stack (``driftline local up``) records its endpoint and the stack's outputs in
``.driftline/state.json`` (``DRIFTLINE_STATE_DIR`` moves it). Commands run against it whenever it is
up, unless ``DRIFTLINE_ENDPOINT_URL`` or an explicit setting says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.aws import AwsClients
from etl.exceptions import ConfigError
from etl.settings import Settings, load_settings

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
    "RedshiftSecretArn": "redshift_secret_arn",
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


def settings_from_outputs(outputs: Mapping[str, str]) -> dict[str, str]:
    return {key: outputs[name] for name, key in OUTPUT_SETTINGS.items() if name in outputs}


def resolve_settings(
    overrides: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None
) -> tuple[Settings, LocalState | None]:
    """Settings for a CLI command, filled in from the running local stack when there is one."""
    env = os.environ if env is None else env
    base = load_settings(overrides, env=env)
    local = LocalState.load(state_dir(env))
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
    # explicit overrides still win
    fill.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return base.replace(**fill), local


def clients_for(settings: Settings) -> AwsClients:
    return AwsClients(region=settings.region, endpoint_url=settings.endpoint_url)


def add_contract_option(parser: argparse.ArgumentParser) -> None:
    """``--contract PATH`` (one definition for every command that touches data)."""
    parser.add_argument(
        "--contract",
        metavar="PATH",
        default=None,
        help="the data contract (TOML); default: the contract_path setting, else the shipped"
        " card_transactions example",
    )


def contract_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings override ``--contract`` asks for (an absolute path, checked to load)."""
    path = getattr(args, "contract", None)
    if not path:
        return {}
    from etl.contract import load_contract

    resolved = str(Path(path).resolve())
    load_contract(resolved)  # a bad contract fails here, naming the file and the key
    return {"contract_path": resolved}
