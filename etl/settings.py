"""One frozen, typed settings object per process.

Built once at the entry point. Precedence, highest first: explicit overrides (CLI flags), then the
environment (``DRIFTLINE_<KEY>``), then a TOML file (``driftline.toml`` or ``DRIFTLINE_CONFIG``),
then the defaults below. A bad value fails at start and names the key.

>>> s = load_settings(env={"DRIFTLINE_FLUSH_MAX_RECORDS": "100"}, config_path=None)
>>> s.flush_max_records
100
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.exceptions import ConfigError

ENV_PREFIX = "DRIFTLINE_"
DEFAULT_CONFIG_FILE = "driftline.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a driftline process needs to know, resolved once."""

    # -- where: AWS or the local emulator ------------------------------------------------
    stack_name: str = "driftline"
    region: str = "us-east-1"
    #: None means real AWS; the local stack sets the emulator's URL.
    endpoint_url: str | None = None
    contract_path: str | None = None

    # -- resources (the stack's outputs fill these in; explicit values win) --------------
    stream_name: str | None = None
    lake_bucket: str | None = None
    glue_database: str | None = None
    #: The stack's Athena workgroup (output ``AthenaWorkgroup``; ``<stack>-analytics``).
    athena_workgroup: str | None = None
    lake_prefix: str = "lake"
    dead_letter_prefix: str = "dead-letters"
    manifest_prefix: str = "manifests"
    baseline_prefix: str = "baselines"

    # -- consumer --------------------------------------------------------------------------
    application_name: str | None = None
    flush_max_records: int = 50_000
    flush_max_bytes: int = 64 * 1024 * 1024
    flush_max_age_s: float = 60.0
    parquet_compression: str = "zstd"
    s3_max_attempts: int = 6
    s3_backoff_base_s: float = 0.2
    kcl_jars: str | None = None
    #: Records per GetRecords (the KCL default is 10,000). Each batch arrives as one JSON line
    #: that the child parses whole; 2,500 keeps its transient memory small (bench.processor_memory).
    kcl_max_records: int = 2_500
    kcl_idle_time_ms: int = 250
    #: The record processor's structured log; the fleet sets one file per worker. None: stderr.
    processor_log_file: str | None = None
    #: Tests only: a crash injected in the flush protocol ("after_pending_manifest" or
    #: "after_parquet_put"), fired once per ``fault_token`` file (created when it fires).
    fault: str | None = None
    fault_token: str | None = None

    # -- drift -----------------------------------------------------------------------------
    drift_window_s: float = 60.0
    drift_min_rows: int = 500
    #: False windows per feature that the calibrated drift thresholds allow (baseline build).
    drift_target_rate: float = 1e-4
    metrics_namespace: str = "Driftline"
    metrics_high_resolution: bool = False
    #: Score each decoded batch with the served model and publish model-quality windows of the
    #: inline labels (consumers/quality_observer.py, docs/quality.md); off by default.
    quality_scoring: bool = False
    #: A quality window closes after ``drift_window_s`` and at least this many labels.
    quality_min_labels: int = 200
    #: The quality alarm's line, set at every promotion (docs/quality.md): a binary model's
    #: champion holdout ROC AUC minus this (absolute) ...
    quality_auc_margin: float = 0.05
    #: ... a regression model's champion holdout RMSE times (1 + this): RMSE has the label's unit,
    #: so its margin is relative.
    quality_rmse_margin: float = 0.25

    # -- producer --------------------------------------------------------------------------
    producer_max_attempts: int = 8
    producer_backoff_base_s: float = 0.05

    # -- retrain -----------------------------------------------------------------------------
    #: Hours of lake data a retrain reads (the most recent part is held out).
    retrain_window_hours: float = 6.0
    retrain_holdout_fraction: float = 0.25
    retrain_min_rows: int = 500
    #: Metric champion and challenger are compared on (default: the contract's task's, roc_auc for
    #: binary classification, rmse for regression), and the margin the challenger must win by.
    promotion_metric: str | None = None
    promotion_margin: float = 0.01
    #: After a completed run no new run starts for this long; a run's lock expires after the TTL.
    retrain_cooldown_s: float = 300.0
    retrain_lock_ttl_s: float = 1800.0
    training_backend: str = "local"
    serving_backend: str = "local"
    #: Default: the contract's name with hyphens for underscores (``retrain.runs.model_name``).
    model_name: str | None = None
    endpoint_name: str | None = None
    idempotency_table: str | None = None
    retrain_queue_url: str | None = None
    model_package_group: str | None = None
    topic_arn: str | None = None
    drift_alarm_name: str | None = None
    #: URL of the local model server (set by whoever starts it); local serving reloads it.
    model_server_url: str | None = None
    #: The server's reload token file (``model_server.token``, mode 0600, in its state folder).
    model_server_token_file: str | None = None
    model_cache_dir: str = ".driftline/models"
    model_max_request_bytes: int = 1024 * 1024
    #: SageMaker only: execution role, instance types, framework version.
    sagemaker_role_arn: str | None = None
    sagemaker_training_instance: str = "ml.m5.large"
    #: A SageMaker training job's stopping condition; the lock of a run that waits for the job's
    #: state-change event (AWS) lasts this long plus ``retrain_lock_ttl_s``.
    sagemaker_training_max_runtime_s: float = 7200.0
    sagemaker_serving_instance: str = "ml.m5.large"
    sklearn_framework_version: str = "1.2-1"
    #: The stack's KMS key (output DataKeyArn): SageMaker training volume/output and endpoint
    #: storage are encrypted with it.
    data_key_arn: str | None = None
    #: AWS: an alarm deferred by the cool-down is delivered again to this target (the retrain
    #: function) by a one-time EventBridge Scheduler schedule in this group, assuming this role.
    redelivery_target_arn: str | None = None
    redelivery_role_arn: str | None = None
    redelivery_group: str | None = None

    # -- warehouse ---------------------------------------------------------------------------
    #: "postgres" (the embedded local warehouse, or any PostgreSQL >= 15) or "redshift-data".
    warehouse_backend: str = "postgres"
    #: libpq DSN of the PostgreSQL warehouse; the local stack's state fills it in.
    warehouse_dsn: str | None = None
    #: DSN ``warehouse query`` connects with: a read-only role (the local stack's reader);
    #: unset, it uses ``warehouse_dsn`` (still in a read-only transaction).
    warehouse_query_dsn: str | None = None
    warehouse_schema: str = "driftline"
    warehouse_batch_manifests: int = 50
    redshift_workgroup: str | None = None
    redshift_database: str | None = None
    redshift_secret_arn: str | None = None
    #: IAM role Redshift assumes for COPY; "default" uses the namespace's default role.
    redshift_iam_role: str = "default"

    def require(self, key: str) -> str:
        """The value of a resource setting that must be known by now (e.g. from stack outputs)."""
        value = getattr(self, key)
        if value in (None, ""):
            raise ConfigError(
                key,
                f"is not set; set {ENV_PREFIX}{key.upper()} or run `driftline local up` /"
                " `driftline deploy` so the stack's outputs provide it",
            )
        return str(value)

    def replace(self, **changes: Any) -> Settings:
        return _build({**dataclasses.asdict(self), **changes}, origin="override")


_VALID_COMPRESSION = ("zstd", "snappy", "gzip", "none")
FAULT_POINTS = ("after_pending_manifest", "after_parquet_put")


def _coerce(key: str, raw: Any, annotation: Any) -> Any:
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
    if raw is None or (optional and isinstance(raw, str) and raw == ""):
        if optional:
            return None
        raise ConfigError(key, f"must be a {annotation.__name__}, got nothing")
    coerce = _COERCERS.get(annotation)
    if coerce is None:  # pragma: no cover
        raise ConfigError(key, f"unsupported setting type {annotation!r}")
    return coerce(key, raw)


def _to_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(key, f"expected true/false, got {raw!r}")


def _to_int(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(key, f"expected an integer, got {raw!r}")
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected an integer, got {raw!r}") from None


def _to_float(key: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ConfigError(key, f"expected a number, got {raw!r}")
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected a number, got {raw!r}") from None


def _to_str(key: str, raw: Any) -> str:
    if not isinstance(raw, str | int | float):
        raise ConfigError(key, f"expected a string, got {raw!r}")
    return str(raw)


_COERCERS: dict[Any, Callable[[str, Any], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
}


def _build(values: Mapping[str, Any], origin: str) -> Settings:
    hints = typing.get_type_hints(Settings)
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            unknown[0], f"unknown setting (from {origin}); known keys: {sorted(known)}"
        )
    coerced = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
    s = Settings(**coerced)
    _check(s)
    return s


def _check(s: Settings) -> None:
    _check_positive(s)
    _check_retrain(s)
    if s.fault is not None and (s.fault not in FAULT_POINTS or not s.fault_token):
        raise ConfigError(
            "fault",
            f"got {s.fault!r} (token {s.fault_token!r}); expected one of {FAULT_POINTS} with"
            " DRIFTLINE_FAULT_TOKEN naming a file to create when it fires; unset it in production",
        )
    if not 0 < s.drift_target_rate < 0.5:
        raise ConfigError(
            "drift_target_rate", f"must be in (0, 0.5), got {s.drift_target_rate}; e.g. 1e-4"
        )
    if s.kcl_idle_time_ms < 0:
        raise ConfigError("kcl_idle_time_ms", f"must be >= 0, got {s.kcl_idle_time_ms}")
    if s.parquet_compression not in _VALID_COMPRESSION:
        raise ConfigError(
            "parquet_compression",
            f"got {s.parquet_compression!r}, expected one of {_VALID_COMPRESSION}",
        )
    _check_names(s)
    _check_warehouse(s)


def _check_positive(s: Settings) -> None:
    positive_ints = (
        "flush_max_records",
        "flush_max_bytes",
        "s3_max_attempts",
        "kcl_max_records",
        "drift_min_rows",
        "quality_min_labels",
        "producer_max_attempts",
        "warehouse_batch_manifests",
    )
    for key in positive_ints:
        if getattr(s, key) <= 0:
            raise ConfigError(key, f"must be > 0, got {getattr(s, key)}")
    for key in (
        "flush_max_age_s",
        "drift_window_s",
        "s3_backoff_base_s",
        "producer_backoff_base_s",
    ):
        if getattr(s, key) <= 0:
            raise ConfigError(key, f"must be > 0 seconds, got {getattr(s, key)}")


def _check_names(s: Settings) -> None:
    """The endpoint, the stack name and the lake prefixes: names other systems will parse."""
    if s.endpoint_url is not None and not s.endpoint_url.startswith(("http://", "https://")):
        raise ConfigError("endpoint_url", f"expected an http(s) URL, got {s.endpoint_url!r}")
    if not s.stack_name.replace("-", "").isalnum() or not s.stack_name[:1].isalpha():
        raise ConfigError(
            "stack_name",
            f"got {s.stack_name!r}; use letters, digits and hyphens, starting with a letter",
        )
    for key in ("lake_prefix", "dead_letter_prefix", "manifest_prefix", "baseline_prefix"):
        value = getattr(s, key)
        if not value or value.startswith("/") or value.endswith("/"):
            raise ConfigError(
                key, f"got {value!r}; use a non-empty prefix without leading/trailing '/'"
            )


_PROMOTION_METRICS = (
    "roc_auc",
    "average_precision",
    "accuracy",
    "f1",
    "log_loss",
    "rmse",
    "mae",
    "r2",
)
_BACKENDS = ("local", "sagemaker")


def _check_retrain(s: Settings) -> None:
    for key in ("retrain_window_hours", "retrain_lock_ttl_s", "sagemaker_training_max_runtime_s"):
        if getattr(s, key) <= 0:
            raise ConfigError(key, f"must be > 0, got {getattr(s, key)}")
    if not 0 < s.retrain_holdout_fraction < 1:
        raise ConfigError(
            "retrain_holdout_fraction", f"must be in (0, 1), got {s.retrain_holdout_fraction}"
        )
    for key in ("retrain_min_rows", "model_max_request_bytes"):
        if getattr(s, key) <= 0:
            raise ConfigError(key, f"must be > 0, got {getattr(s, key)}")
    keys = ("promotion_margin", "quality_auc_margin", "quality_rmse_margin", "retrain_cooldown_s")
    for key in keys:
        if getattr(s, key) < 0:
            raise ConfigError(key, f"must be >= 0, got {getattr(s, key)}")
    if s.promotion_metric is not None and s.promotion_metric not in _PROMOTION_METRICS:
        raise ConfigError(
            "promotion_metric", f"got {s.promotion_metric!r}, expected one of {_PROMOTION_METRICS}"
        )
    for key in ("training_backend", "serving_backend"):
        if getattr(s, key) not in _BACKENDS:
            raise ConfigError(key, f"got {getattr(s, key)!r}, expected one of {_BACKENDS}")
    if s.model_name is not None and not s.model_name.replace("-", "").isalnum():
        raise ConfigError("model_name", f"got {s.model_name!r}; use letters, digits and hyphens")


_VALID_WAREHOUSE_BACKENDS = ("postgres", "redshift-data")


def _check_warehouse(s: Settings) -> None:
    if s.warehouse_backend not in _VALID_WAREHOUSE_BACKENDS:
        raise ConfigError(
            "warehouse_backend",
            f"got {s.warehouse_backend!r}, expected one of {_VALID_WAREHOUSE_BACKENDS}",
        )
    if not s.warehouse_schema.isidentifier() or s.warehouse_schema != s.warehouse_schema.lower():
        raise ConfigError(
            "warehouse_schema",
            f"got {s.warehouse_schema!r}; use a lower-case SQL identifier such as 'driftline'",
        )


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | Path | None = DEFAULT_CONFIG_FILE,
) -> Settings:
    """Resolve settings: overrides > ``DRIFTLINE_*`` env > TOML file > defaults.

    ``config_path`` defaults to ``driftline.toml`` in the working directory when it exists;
    ``DRIFTLINE_CONFIG`` names another file (which then must exist).
    """
    env = os.environ if env is None else env
    known = {f.name for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}

    explicit_file = env.get(f"{ENV_PREFIX}CONFIG")
    path = Path(explicit_file) if explicit_file else (Path(config_path) if config_path else None)
    if path is not None:
        if path.is_file():
            try:
                doc = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
            for key, val in doc.items():
                if key not in known:
                    raise ConfigError(
                        key, f"unknown setting in {path}; known keys: {sorted(known)}"
                    )
                values[key] = val
        elif explicit_file:
            raise ConfigError("config", f"{ENV_PREFIX}CONFIG names {path}, which does not exist")

    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in known:
            values[key] = raw
    for key, val in (overrides or {}).items():
        if val is not None:
            values[key] = val
    return _build(values, origin="environment/config")


def to_env(settings: Settings) -> dict[str, str]:
    """The ``DRIFTLINE_*`` variables that rebuild ``settings`` in a child process."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        val = getattr(settings, f.name)
        if val is None:
            continue
        out[f"{ENV_PREFIX}{f.name.upper()}"] = (
            str(val).lower() if isinstance(val, bool) else str(val)
        )
    return out
