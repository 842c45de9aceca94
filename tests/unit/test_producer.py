"""The producer's pure parts: batching limits, retry of only failed entries, backoff, poison."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from etl.contract import load_contract
from etl.exceptions import ProducerError
from etl.producer import (
    MAX_BYTES_PER_REQUEST,
    KinesisProducer,
    build_payloads,
    entry_size,
    plan_batches,
    poison_plan,
)
from etl.records import RawRecord, RecordDecoder
from etl.synthetic import POISON_KINDS, generate_records


class FakeKinesis:
    """Records every PutRecords request; ``fail`` decides per (call, data) which entries fail."""

    def __init__(self, fail: Any = None, raise_on: dict[int, str] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail = fail or (lambda call, data: None)
        self.raise_on = raise_on or {}
        self.landed: list[bytes] = []

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        call = len(self.calls)
        self.calls.append(Records)
        assert len(Records) <= 500
        assert (
            sum(entry_size(r["Data"], r["PartitionKey"]) for r in Records) <= MAX_BYTES_PER_REQUEST
        )
        if call in self.raise_on:
            code = self.raise_on[call]
            raise ClientError({"Error": {"Code": code, "Message": "slow down"}}, "PutRecords")
        out, failed = [], 0
        for r in Records:
            code = self.fail(call, r["Data"])
            if code:
                failed += 1
                out.append({"ErrorCode": code, "ErrorMessage": "boom"})
            else:
                self.landed.append(r["Data"])
                out.append({"SequenceNumber": str(len(self.landed)), "ShardId": "shardId-0"})
        return {"FailedRecordCount": failed, "Records": out}


def _producer(client: FakeKinesis, **kw: Any) -> tuple[KinesisProducer, list[float]]:
    sleeps: list[float] = []
    p = KinesisProducer(client, "s", rng=random.Random(1), sleep=sleeps.append, **kw)
    return p, sleeps


def test_batches_hold_at_most_500_records() -> None:
    # GIVEN 1,201 small entries WHEN planned THEN requests of 500, 500, 201
    assert plan_batches([10] * 1201) == [range(0, 500), range(500, 1000), range(1000, 1201)]


def test_batches_hold_at_most_5_mib() -> None:
    # GIVEN 12 entries of 1 MiB - 1 KiB each (data + key)
    size = 1024 * 1024 - 1024
    # WHEN planned THEN each request holds 5 of them (5 * size <= 5 MiB < 6 * size)
    assert plan_batches([size] * 12) == [range(0, 5), range(5, 10), range(10, 12)]
    # AND an exact fit is allowed
    assert plan_batches([MAX_BYTES_PER_REQUEST // 2] * 3) == [range(0, 2), range(2, 3)]


def test_entry_size_counts_partition_key_utf8_bytes() -> None:
    assert entry_size(b"abc", "é") == 5


def test_put_splits_by_bytes_including_partition_keys() -> None:
    # GIVEN 7 records whose data alone fits 6 per request but not with their keys
    data = b"x" * (MAX_BYTES_PER_REQUEST // 6 - 2)
    client = FakeKinesis()
    producer, _ = _producer(client)
    # WHEN put with 20-byte keys
    result = producer.put([(data, "k" * 20)] * 7)
    # THEN requests hold 5 + 2 records and all are sent
    assert [len(c) for c in client.calls] == [5, 2]
    assert result.sent == 7 and result.attempts == 2 and result.retried == 0


def test_only_failed_entries_are_retried() -> None:
    # GIVEN 10 records where entries 2 and 7 fail on the first call only
    client = FakeKinesis(
        fail=lambda call, data: (
            "ProvisionedThroughputExceededException" if call == 0 and data in (b"2", b"7") else None
        )
    )
    producer, sleeps = _producer(client)
    # WHEN put
    result = producer.put([(str(i).encode(), f"k{i}") for i in range(10)])
    # THEN the second request carries exactly the two failed entries, each lands once
    assert [r["Data"] for r in client.calls[1]] == [b"2", b"7"]
    assert sorted(client.landed) == sorted(str(i).encode() for i in range(10))
    assert result.retried == 2 and result.attempts == 2 and result.sent == 10
    # AND sequence numbers map to the input order (retried ones landed last)
    assert result.sequence_numbers == ["1", "2", "9", "3", "4", "5", "6", "10", "7", "8"]
    assert result.shard_ids == ["shardId-0"] * 10
    # AND one full-jitter backoff within [0, base] was slept
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.05


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    producer, _ = _producer(FakeKinesis(), backoff_base_s=0.1, backoff_cap_s=1.0)
    draws = {retry: [producer.backoff(retry) for _ in range(200)] for retry in (1, 3, 10)}
    assert all(0 <= d <= 0.1 for d in draws[1])
    assert all(0 <= d <= 0.4 for d in draws[3]) and max(draws[3]) > 0.2
    assert all(0 <= d <= 1.0 for d in draws[10]) and max(draws[10]) > 0.8


def test_whole_request_throttling_is_retried() -> None:
    # GIVEN the first request refused for throughput
    client = FakeKinesis(raise_on={0: "ProvisionedThroughputExceededException"})
    producer, sleeps = _producer(client)
    # WHEN put THEN the same records are resent and land once
    result = producer.put([(b"a", "k"), (b"b", "k")])
    assert [[r["Data"] for r in c] for c in client.calls] == [[b"a", b"b"], [b"a", b"b"]]
    assert client.landed == [b"a", b"b"]
    assert result.attempts == 2 and result.retried == 2 and len(sleeps) == 1


def test_non_retryable_request_error_fails_at_once() -> None:
    client = FakeKinesis(raise_on={0: "ResourceNotFoundException"})
    producer, sleeps = _producer(client)
    with pytest.raises(ProducerError, match=r"ResourceNotFoundException.*2 records not sent"):
        producer.put([(b"a", "k"), (b"b", "k")])
    assert len(client.calls) == 1 and sleeps == []


def test_gives_up_after_max_attempts_naming_count_and_code() -> None:
    # GIVEN an entry that always fails
    client = FakeKinesis(fail=lambda call, data: "InternalFailure" if data == b"bad" else None)
    producer, sleeps = _producer(client, max_attempts=3)
    # WHEN put THEN after 3 attempts a ProducerError names 1 record and the last code
    with pytest.raises(
        ProducerError,
        match=r"^1 records could not be put .* after 3 attempts; last error InternalFailure",
    ):
        producer.put([(b"ok", "k"), (b"bad", "k")])
    assert len(client.calls) == 3 and len(sleeps) == 2
    assert client.landed == [b"ok"]


def test_oversize_record_and_bad_key_are_rejected_before_sending() -> None:
    client = FakeKinesis()
    producer, _ = _producer(client)
    with pytest.raises(ProducerError, match="record 1 is 1048577 bytes"):
        producer.put([(b"a", "k"), (b"x" * (1024 * 1024), "k")])
    with pytest.raises(ProducerError, match="partition key '' has 0 characters"):
        producer.put([(b"a", "")])
    assert client.calls == []


def test_poison_plan_is_seeded_and_cycles_kinds() -> None:
    # GIVEN 1,000 records at 2% poison
    plan = poison_plan(1000, 0.02, seed=5)
    # THEN 20 indices, kinds cycling in index order, same plan for the same seed
    assert len(plan) == 20
    assert [plan[i] for i in sorted(plan)] == list(POISON_KINDS) * 4
    assert poison_plan(1000, 0.02, seed=5) == plan
    assert poison_plan(1000, 0.02, seed=6) != plan
    assert poison_plan(10, 0.0, seed=1) == {}


def test_built_payloads_decode_to_the_planned_reasons() -> None:
    # GIVEN 200 records with 10% poison, built into payloads
    contract = load_contract()
    rows = generate_records(200, seed=2)
    plan = poison_plan(200, 0.1, seed=2)
    payloads = build_payloads(rows, plan, seed=2, contract=contract)
    # WHEN the consumer's decoder reads them
    raws = [RawRecord(d, str(i), k) for i, (d, k) in enumerate(payloads)]
    batch = RecordDecoder(contract).decode(
        raws, shard_id="s", ingest_time=datetime(2026, 1, 1, tzinfo=UTC)
    )
    # THEN every poison record is dead with its own kind as reason, every other one is a row
    assert {int(d.sequence_number): d.reason for d in batch.dead_letters} == plan
    assert batch.table.column("transaction_id").to_pylist() == [
        r["transaction_id"] for i, r in enumerate(rows) if i not in plan
    ]
    assert [k for _, k in payloads] == [r["card_id"] for r in rows]
