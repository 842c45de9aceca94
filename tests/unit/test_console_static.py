"""The console's vendored files match the sha256s recorded in VENDOR.md; the predict form and its
parsing follow whatever contract they are given; templates escape what they show."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from etl.contract import parse_contract
from infra.console.app import template_env
from infra.console.predict import FormError, inputs, parse_form, parse_raw

STATIC = Path(__file__).resolve().parents[2] / "infra" / "console" / "static"


def test_vendored_files_match_their_recorded_sha256() -> None:
    # GIVEN the table of VENDOR.md
    rows = re.findall(
        r"^\| (vendor/\S+) \|.*\| ([0-9a-f]{64}) \|$", (STATIC / "VENDOR.md").read_text(), re.M
    )
    # THEN every vendored file is listed once and has that digest
    assert sorted(p for p, _ in rows) == sorted(
        f"vendor/{p.name}" for p in (STATIC / "vendor").iterdir()
    )
    for path, digest in rows:
        assert hashlib.sha256((STATIC / path).read_bytes()).hexdigest() == digest, path


SENSORS = parse_contract(
    {
        "name": "sensor_readings",
        "version": 1,
        "partition_key": "device",
        "fields": [
            {"name": "reading_id", "type": "string", "role": "id"},
            {"name": "at", "type": "timestamp", "role": "event_time"},
            {"name": "device", "type": "string", "role": "attribute"},
            {"name": "temperature", "type": "float", "role": "feature", "min": -40, "max": 125},
            {"name": "mode", "type": "string", "role": "feature", "allowed": ["eco", "boost"]},
            {"name": "retries", "type": "int", "role": "feature", "min": 0, "nullable": True,
             "required": False},
            {"name": "door_open", "type": "bool", "role": "feature"},
            {"name": "failed", "type": "bool", "role": "label", "nullable": True,
             "required": False},
        ],
    }
)  # fmt: skip


def test_form_inputs_follow_any_contract() -> None:
    got = [(i.name, i.kind, i.min, i.max, i.choices, i.required) for i in inputs(SENSORS)]
    assert got == [
        ("temperature", "number", -40, 125, (), True),
        ("mode", "select", None, None, ("eco", "boost"), True),
        ("retries", "number", 0, None, (), False),
        ("door_open", "bool", None, None, ("true", "false"), True),
    ]


def test_form_values_are_checked_against_the_contract() -> None:
    ok = {"f.temperature": "21.5", "f.mode": "eco", "f.retries": "", "f.door_open": "false"}
    assert parse_form(SENSORS, ok) == {
        "temperature": 21.5, "mode": "eco", "retries": None, "door_open": False,
    }  # fmt: skip
    bad = {"f.temperature": "200", "f.mode": "turbo", "f.retries": "1.5", "f.door_open": ""}
    with pytest.raises(FormError) as info:
        parse_form(SENSORS, bad)
    assert info.value.errors == {
        "temperature": "must be ≤ 125, got 200",
        "mode": "must be one of ['eco', 'boost'], got 'turbo'",
        "retries": "expected an integer, got '1.5'",
        "door_open": "is required",
    }
    with pytest.raises(FormError, match="is not valid JSON"):
        parse_raw("{nope")
    with pytest.raises(FormError, match="expected a JSON object"):
        parse_raw("42")


def test_templates_escape_record_content() -> None:
    html = (
        template_env()
        .get_template("macros.html")
        .module.backend_error(  # type: ignore[attr-defined]
            type("E", (), {"backend": "<b>", "call": "<script>x</script>", "message": "&"})()
        )
    )
    assert "<script>" not in str(html) and "&lt;script&gt;" in str(html)
