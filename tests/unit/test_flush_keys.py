"""Flush policy and lake key derivation."""

from __future__ import annotations

import pytest

from consumers.flush import FlushPolicy, FlushReason
from etl import keys


@pytest.mark.parametrize(
    ("records", "nbytes", "age", "expected"),
    [
        (0, 0, 999.0, None),  # never flush an empty buffer, however old
        (1, 10, 0.0, None),
        (100, 10, 0.0, FlushReason.RECORDS),
        (99, 1000, 0.0, FlushReason.BYTES),
        (99, 999, 30.0, FlushReason.AGE),
        (99, 999, 29.9, None),
        (100, 1000, 30.0, FlushReason.RECORDS),  # the first limit reached names the reason
    ],
)
def test_flush_policy_decides_on_the_first_limit_reached(records, nbytes, age, expected) -> None:
    # GIVEN limits of 100 records, 1000 bytes, 30 s
    policy = FlushPolicy(max_records=100, max_bytes=1000, max_age_s=30.0)
    # WHEN / THEN
    assert policy.decide(records=records, nbytes=nbytes, age_s=age) == expected


def test_flush_policy_rejects_non_positive_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        FlushPolicy(max_records=0, max_bytes=1, max_age_s=1.0)


def test_sequence_numbers_compare_as_integers_not_strings() -> None:
    # GIVEN a 56-digit AWS sequence number and short emulator ones
    aws = "49590338271490256608559692538361571095921575989136588898"
    assert keys.sequence_key("10") > keys.sequence_key("9")
    assert keys.sequence_key(aws) > keys.sequence_key("9" * 55)
    # WHEN padded THEN string order equals numeric order
    values = ["9", "10", "100", aws, "2"]
    assert sorted(values, key=keys.pad_sequence) == sorted(values, key=int)


@pytest.mark.parametrize("bad", ["", "12a", "-1", "1" * 57, "١٢"])
def test_pad_sequence_rejects_non_digit_or_too_long(bad: str) -> None:
    with pytest.raises(ValueError):
        keys.pad_sequence(bad)


def test_object_keys_depend_only_on_shard_range_and_partition() -> None:
    # GIVEN the same flush computed twice (a replay)
    a = keys.lake_object_key("lake", "tx", "shardId-000000000001", "7", "42", "2026-01-01", "05")
    b = keys.lake_object_key("lake", "tx", "shardId-000000000001", "7", "42", "2026-01-01", "05")
    # THEN the key is identical, and a different range gives a different key
    assert a == b
    assert a == (
        "lake/tx/event_date=2026-01-01/event_hour=05/shardId-000000000001-"
        + "7".zfill(56)
        + "-"
        + "42".zfill(56)
        + ".parquet"
    )
    assert a != keys.lake_object_key(
        "lake", "tx", "shardId-000000000001", "7", "43", "2026-01-01", "05"
    )


def test_manifest_names_round_trip_and_sort_in_sequence_order() -> None:
    names = [
        keys.manifest_key("m", "tx", "s", f, l)
        for f, l in [("100", "200"), ("9", "99"), ("201", "5000")]
    ]
    assert [keys.parse_manifest_name(n) for n in sorted(names)] == [
        ("9", "99"),
        ("100", "200"),
        ("201", "5000"),
    ]
