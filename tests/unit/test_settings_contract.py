"""Settings precedence and validation; contract validation. A bad value fails naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from etl.contract import FieldType, Role, load_contract, parse_contract
from etl.exceptions import ConfigError, ContractError
from etl.settings import load_settings, to_env


def test_precedence_is_override_then_env_then_file_then_default(tmp_path: Path) -> None:
    # GIVEN a config file and an environment that disagree
    cfg = tmp_path / "driftline.toml"
    cfg.write_text('flush_max_records = 10\nflush_max_age_s = 5.0\nstack_name = "fromfile"\n')
    env = {"DRIFTLINE_FLUSH_MAX_RECORDS": "20"}
    # WHEN settings are resolved with an explicit override for one key
    s = load_settings({"stack_name": "explicit"}, env=env, config_path=cfg)
    # THEN override > env > file > default
    assert (s.stack_name, s.flush_max_records, s.flush_max_age_s) == ("explicit", 20, 5.0)
    assert s.region == "us-east-1"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"DRIFTLINE_FLUSH_MAX_RECORDS": "many"}, "flush_max_records"),
        ({"DRIFTLINE_FLUSH_MAX_RECORDS": "0"}, "flush_max_records"),
        ({"DRIFTLINE_FLUSH_MAX_AGE_S": "-1"}, "flush_max_age_s"),
        ({"DRIFTLINE_PARQUET_COMPRESSION": "lz5"}, "parquet_compression"),
        ({"DRIFTLINE_ENDPOINT_URL": "127.0.0.1:4566"}, "endpoint_url"),
        ({"DRIFTLINE_METRICS_HIGH_RESOLUTION": "maybe"}, "metrics_high_resolution"),
        ({"DRIFTLINE_STACK_NAME": "9lives"}, "stack_name"),
        ({"DRIFTLINE_LAKE_PREFIX": "/lake/"}, "lake_prefix"),
    ],
)
def test_bad_values_fail_at_start_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env, config_path=None)
    assert err.value.key == key and str(err.value).startswith(f"{key}:")


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "driftline.toml"
    cfg.write_text("flush_max_recrods = 10\n")
    with pytest.raises(ConfigError, match="flush_max_recrods: unknown setting"):
        load_settings(env={}, config_path=cfg)


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env={"DRIFTLINE_CONFIG": str(tmp_path / "nope.toml")})


def test_require_names_the_key_and_the_fix() -> None:
    s = load_settings(env={}, config_path=None)
    with pytest.raises(ConfigError, match="stream_name: is not set; set DRIFTLINE_STREAM_NAME"):
        s.require("stream_name")


def test_to_env_round_trips_in_a_child_process() -> None:
    s = load_settings(
        {
            "flush_max_records": 7,
            "metrics_high_resolution": True,
            "endpoint_url": "http://127.0.0.1:1",
        },
        env={},
        config_path=None,
    )
    assert load_settings(env=to_env(s), config_path=None) == s


def test_the_shipped_contract_has_the_card_transaction_fields() -> None:
    c = load_contract()
    assert [f.name for f in c.features] == [
        "amount",
        "merchant_category",
        "hour",
        "distance_from_home_km",
        "device",
        "country",
    ]
    assert (c.id_field.name, c.event_time_field.name, c.label.name if c.label else None) == (
        "transaction_id",
        "event_time",
        "is_fraud",
    )
    assert c.field("hour").type is FieldType.INT and c.field("is_fraud").role is Role.LABEL
    assert len(c.hash) == 64 and c.hash == load_contract().hash


def _doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": "t",
        "partition_key": "id",
        "fields": [
            {"name": "id", "type": "string", "role": "id"},
            {"name": "ts", "type": "timestamp", "role": "event_time"},
            {"name": "x", "type": "float", "role": "feature"},
        ],
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(fields=[{"name": "id", "type": "text", "role": "id"}]), "type: got 'text'"),
        (_doc(partition_key="nope"), "partition_key 'nope' is not a field"),
        (
            _doc(fields=[{"name": "ts", "type": "timestamp", "role": "event_time"}]),
            "exactly one field with role 'id'",
        ),
        (
            _doc(
                fields=[
                    {"name": "id", "type": "string", "role": "id"},
                    {"name": "ts", "type": "string", "role": "event_time"},
                ]
            ),
            "must have type 'timestamp'",
        ),
        (
            _doc(
                fields=[
                    {"name": "id", "type": "string", "role": "id"},
                    {"name": "ts", "type": "timestamp", "role": "event_time"},
                    {"name": "shard_id", "type": "string"},
                ]
            ),
            "clash with lake columns",
        ),
        (
            _doc(fields=[{"name": "id", "type": "string", "role": "id", "colour": "red"}]),
            "unknown keys ['colour']",
        ),
        (
            _doc(fields=[{"name": "id", "type": "string", "role": "id", "min": 1}]),
            "only numeric fields take bounds",
        ),
        (
            _doc(
                fields=[
                    {"name": "id", "type": "string", "role": "id"},
                    {"name": "ts", "type": "timestamp", "role": "event_time"},
                    {"name": "n", "type": "int", "allowed": ["1", "2"]},
                ]
            ),
            "fields[2] (n).allowed: only string fields take allowed values, this is int",
        ),
        (_doc(max_record_bytes=2_000_000), "max_record_bytes=2000000"),
    ],
)
def test_invalid_contracts_are_refused_with_the_offending_key(
    doc: dict[str, object], message: str
) -> None:
    with pytest.raises(ContractError, match=re.escape(message)):
        parse_contract(doc, "c.toml")


def test_contract_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("name = \n")
    with pytest.raises(ContractError, match=r"c\.toml: not valid TOML"):
        load_contract(bad)
    with pytest.raises(ContractError, match="does not exist"):
        load_contract(tmp_path / "missing.toml")


def _task_doc(label_type: str | None, task: str | None = None) -> dict[str, object]:
    fields: list[dict[str, object]] = [
        {"name": "id", "type": "string", "role": "id"},
        {"name": "at", "type": "timestamp", "role": "event_time"},
        {"name": "x", "type": "float", "role": "feature"},
    ]
    if label_type is not None:
        fields.append({"name": "y", "type": label_type, "role": "label"})
    doc: dict[str, object] = {"name": "t", "partition_key": "id", "fields": fields}
    if task is not None:
        doc["task"] = task
    return doc


@pytest.mark.parametrize(
    ("label_type", "task", "expected"),
    [
        ("bool", None, "binary_classification"),
        ("float", None, "regression"),
        ("int", None, "regression"),
        ("int", "binary_classification", "binary_classification"),
        ("float", "regression", "regression"),
        (None, None, None),
    ],
)
def test_the_task_is_declared_or_follows_the_label_type(
    label_type: str | None, task: str | None, expected: str | None
) -> None:
    c = parse_contract(_task_doc(label_type, task))
    assert (c.task.value if c.task else None) == expected
    assert c.to_dict().get("task") == expected


@pytest.mark.parametrize(
    ("label_type", "task", "message"),
    [
        ("bool", "regression", "task='regression' needs a label of type ['int', 'float']"),
        ("float", "binary_classification", "needs a label of type ['bool', 'int']"),
        ("string", None, "label 'y' is a string; a label must be a bool"),
        (None, "regression", "task='regression' but no field has role 'label'"),
        ("bool", "ranking", "'task' got 'ranking', expected one of"),
    ],
)
def test_a_task_that_does_not_fit_the_label_fails_naming_the_key(
    label_type: str | None, task: str | None, message: str
) -> None:
    with pytest.raises(ContractError) as err:
        parse_contract(_task_doc(label_type, task))
    assert message in str(err.value)


def test_two_labels_are_refused() -> None:
    doc = _task_doc("bool")
    doc["fields"].append({"name": "z", "type": "bool", "role": "label"})  # type: ignore[attr-defined]
    with pytest.raises(ContractError, match="at most one field may have role 'label'"):
        parse_contract(doc)
