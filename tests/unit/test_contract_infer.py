"""Contract inference from sample records: a pure core checked against the real decoder."""

from __future__ import annotations

import json
import random
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from etl.contract import load_contract, parse_contract
from etl.contract_infer import infer_contract
from etl.contract_plan import describe_contract, model_task, render_plan
from etl.exceptions import ContractError
from etl.records import RawRecord, RecordDecoder


def sensor_sample(n: int = 200, seed: int = 11) -> list[dict[str, Any]]:
    """Seeded readings of a domain nobody wrote a contract for: greenhouse sensors."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "reading_id": f"r-{i:05d}",
            "sensor_id": f"s-{rng.randrange(40):03d}",
            "observed_at": (start + timedelta(seconds=7 * i)).isoformat().replace("+00:00", "Z"),
            "temperature_c": round(rng.uniform(12.0, 31.0), 2),
            "humidity_pct": rng.randint(30, 90),
            "zone": rng.choice(["north", "south", "east"]),
            "door_open": rng.random() < 0.2,
            "firmware": f"1.{rng.randrange(1000)}",
        }
        if i % 10 == 0:
            row["soil_moisture"] = None
        elif i % 10 != 5:
            row["soil_moisture"] = round(rng.uniform(0.1, 0.6), 3)
        rows.append(row)
    return rows


def test_a_sensor_sample_gets_types_roles_nullability_bounds_and_categories() -> None:
    # GIVEN 200 seeded sensor readings
    sample = sensor_sample()
    lows = {k: min(r[k] for r in sample) for k in ("temperature_c", "humidity_pct")}
    highs = {k: max(r[k] for r in sample) for k in ("temperature_c", "humidity_pct")}

    # WHEN a contract is inferred
    inferred = infer_contract(sample, name="greenhouse", max_line_bytes=300)
    fields = {f["name"]: f for f in inferred.fields}

    # THEN identity, time and partitioning are found
    assert inferred.doc["partition_key"] == "sensor_id"
    assert (fields["reading_id"]["role"], fields["observed_at"]["role"]) == ("id", "event_time")
    assert fields["observed_at"]["type"] == "timestamp"
    # numbers get bounds outside the data by the margin (never below 0 for positive data)
    temp, hum = fields["temperature_c"], fields["humidity_pct"]
    assert (temp["type"], temp["role"], hum["type"]) == ("float", "feature", "int")
    span = highs["temperature_c"] - lows["temperature_c"]
    assert lows["temperature_c"] - 0.1 * span - 0.01 <= temp["min"] < lows["temperature_c"]
    assert highs["temperature_c"] < temp["max"] <= highs["temperature_c"] + 0.1 * span + 0.01
    assert hum["min"] == lows["humidity_pct"] - 6 and hum["max"] == highs["humidity_pct"] + 6
    # a low-cardinality string becomes a categorical feature; a high-cardinality one an attribute
    assert fields["zone"]["allowed"] == ["east", "north", "south"]
    assert fields["zone"]["role"] == "feature"
    assert fields["firmware"]["role"] == "attribute" and "allowed" not in fields["firmware"]
    assert fields["door_open"] == {
        "name": "door_open",
        "type": "bool",
        "role": "feature",
        "required": True,
        "nullable": False,
    }
    # missing in some records -> optional; null in some -> nullable
    assert (fields["soil_moisture"]["required"], fields["soil_moisture"]["nullable"]) == (
        False,
        True,
    )
    assert inferred.doc["max_record_bytes"] == 64 * 1024


def test_the_proposal_round_trips_through_toml_and_the_decoder_accepts_every_sample_record() -> (
    None
):
    # GIVEN the proposal for a sample, written as TOML
    sample = sensor_sample()
    text = infer_contract(sample, name="greenhouse").to_toml()

    # WHEN it is loaded as a contract and the sample decoded with it
    contract = parse_contract(tomllib.loads(text), "inferred.toml")
    raw = [RawRecord(json.dumps(r).encode(), str(i), "k", 0) for i, r in enumerate(sample)]
    batch = RecordDecoder(contract).decode(
        raw, shard_id="shardId-000000000000", ingest_time=datetime(2026, 3, 1, tzinfo=UTC)
    )

    # THEN the contract is the one proposed, and no sample record would be a dead letter
    assert contract.name == "greenhouse"
    assert [f.name for f in contract.features] == [
        "temperature_c",
        "humidity_pct",
        "zone",
        "door_open",
        "soil_moisture",
    ]
    assert batch.dead_letters == []
    assert batch.table.num_rows == 200


def test_mixed_types_become_string_with_a_note() -> None:
    sample = [
        {"id": f"{i}", "ts": "2026-01-01T00:00:00Z", "code": 7 if i % 2 else "x7"} for i in range(6)
    ]
    inferred = infer_contract(sample, name="mixed")
    assert {f["name"]: f["type"] for f in inferred.fields}["code"] == "string"
    assert "seen as ['int', 'string']" in inferred.notes["code"]
    assert "# NOTE: seen as ['int', 'string']" in inferred.to_toml()


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ([], "the sample has no records"),
        ([{"id": "a", "x": 1}], "none can be the event time"),
        (
            [{"id": "a", "t": "2026-01-01T00:00:00Z"}, {"id": "a", "t": "2026-01-01T00:00:01Z"}],
            "none can be the record id",
        ),
        ([{"ID": "a", "t": "2026-01-01T00:00:00Z"}], "'ID': 'ID' is not a lower-case identifier"),
        ([{"id": "a", "t": "2026-01-01T00:00:00Z", "shard_id": "x"}], "'shard_id': the pipeline"),
        ([{"id": "a", "t": "2026-01-01T00:00:00Z", "select": 1}], "'select' is an SQL reserved"),
    ],
)
def test_samples_that_cannot_make_a_contract_say_why(
    sample: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ContractError, match=message):
        infer_contract(sample, name="c")


def test_the_record_limit_leaves_room_above_the_largest_sample_line() -> None:
    sample = [{"id": "a", "t": "2026-01-01T00:00:00Z"}]
    assert infer_contract(sample, name="c", max_line_bytes=40_000).doc["max_record_bytes"] == (
        160_768
    )
    assert infer_contract(sample, name="c", max_line_bytes=900_000).doc["max_record_bytes"] == (
        1024 * 1024
    )


def test_check_describes_the_pipeline_for_a_contract() -> None:
    # GIVEN the shipped example
    plan = describe_contract(load_contract())
    # THEN the plan names the partitioning, the pipeline's columns and the label's task
    assert plan["partitioning"]["from"] == "event_time"
    by_name = {c["name"]: c for c in plan["columns"]}
    assert by_name["shard_id"]["source"] == "pipeline"
    assert by_name["loaded_at"] == {
        "name": "loaded_at",
        "source": "warehouse",
        "glue": "-",
        "postgres": "TIMESTAMPTZ",
        "redshift": "TIMESTAMPTZ",
    }
    assert plan["model_task"] == "binary classification"
    assert "model task: binary classification" in render_plan(plan)


def test_a_contract_without_label_says_retraining_is_off() -> None:
    inferred = infer_contract(sensor_sample(20), name="greenhouse")
    contract = parse_contract(inferred.doc)
    assert model_task(contract).startswith("none: no field has role 'label'")
