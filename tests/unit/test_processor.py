"""The record processor's sink contract, driven with plain inputs and an in-memory lake."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pytest
from amazon_kclpy import dispatch
from amazon_kclpy.messages import Record

from consumers.flush import FlushPolicy
from consumers.processor import Clocks, KclRecordProcessor, ShardProcessor, to_raw_records
from etl.contract import load_contract
from etl.exceptions import LakeWriteError
from etl.lake import Manifest
from etl.records import DeadLetter, RawRecord, RecordDecoder
from etl.synthetic import encode_record, generate_records, make_poison

CONTRACT = load_contract()


@dataclass
class FakeLake:
    """Stands in for LakeWriter: keeps manifests by (shard, first, last)."""

    contract: object = CONTRACT
    manifests: dict[tuple[str, str, str], Manifest] = field(default_factory=dict)
    rows: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    fail: bool = False
    writes: int = 0
    dead: list[DeadLetter] = field(default_factory=list)

    def write(self, shard_id, first, last, rows: pa.Table, dead_letters=()) -> Manifest:
        if self.fail:
            raise LakeWriteError("injected")
        self.writes += 1
        self.dead.extend(dead_letters)
        m = Manifest(
            "t",
            shard_id,
            first,
            last,
            state="committed",
            rows=rows.num_rows,
            dead_letters=len(dead_letters),
        )
        self.manifests[(shard_id, first, last)] = m
        self.rows[(shard_id, first, last)] = rows.column("transaction_id").to_pylist() + [
            f"dead:{d.sequence_number}" for d in dead_letters
        ]
        return m

    def uncheckpointed(self, shard_id: str, checkpoint: str | None) -> list[Manifest]:
        after = int(checkpoint) if checkpoint and checkpoint.isdigit() else -1
        found = [m for (s, f, _), m in self.manifests.items() if s == shard_id and int(f) > after]
        return sorted(found, key=lambda m: int(m.first_sequence))


@dataclass
class FakeCheckpointer:
    calls: list[str | None] = field(default_factory=list)

    def checkpoint(self, sequence_number=None, sub_sequence_number=None) -> None:
        self.calls.append(sequence_number)


def records(n: int, start_seq: int = 1, seed: int = 0) -> list[RawRecord]:
    recs = generate_records(n, seed=seed)
    return [
        RawRecord(encode_record(r), str(start_seq + i), r["card_id"], 1_700_000_000_000)
        for i, r in enumerate(recs)
    ]


def make(
    lake: FakeLake, max_records: int = 100, clock: list[float] | None = None
) -> ShardProcessor:
    t = clock if clock is not None else [0.0]
    return ShardProcessor(
        RecordDecoder(CONTRACT),
        lake,
        FlushPolicy(max_records, 1 << 30, 10.0),  # type: ignore[arg-type]
        clocks=Clocks(monotonic=lambda: t[0]),
    )


def test_flushes_then_checkpoints_the_last_flushed_sequence() -> None:
    # GIVEN a processor flushing every 100 records
    lake, cp = FakeLake(), FakeCheckpointer()
    p = make(lake)
    p.initialize("shardId-0", "TRIM_HORIZON")
    # WHEN 250 records arrive in batches of 50
    batch = records(250)
    for i in range(0, 250, 50):
        p.process(batch[i : i + 50], cp)
    # THEN two flushes of 100, each checkpointed at its last sequence number; 50 stay buffered
    assert sorted(lake.manifests) == [("shardId-0", "1", "100"), ("shardId-0", "101", "200")]
    assert cp.calls == ["100", "200"]


def test_age_flush_happens_on_an_empty_call() -> None:
    lake, cp, clock = FakeLake(), FakeCheckpointer(), [0.0]
    p = make(lake, clock=clock)
    p.initialize("s", "TRIM_HORIZON")
    p.process(records(5), cp)
    assert cp.calls == []
    # WHEN the KCL calls with no records after the age limit
    clock[0] = 11.0
    p.process([], cp)
    # THEN the buffer is flushed and checkpointed
    assert cp.calls == ["5"]


def test_poison_records_become_dead_letters_and_are_checkpointed_with_the_rows() -> None:
    lake, cp = FakeLake(), FakeCheckpointer()
    p = make(lake, max_records=10)
    p.initialize("s", "TRIM_HORIZON")
    good = records(9)
    rng = np.random.default_rng(1)
    bad = RawRecord(make_poison("malformed_json", rng, generate_records(1)[0]), "10", "k", None)
    p.process([*good, bad], cp)
    m = lake.manifests[("s", "1", "10")]
    assert (m.rows, m.dead_letters) == (9, 1)
    assert cp.calls == ["10"]


def test_kpl_aggregated_records_go_to_dead_letters_whole() -> None:
    # GIVEN a batch where records 4-6 came out of one KPL aggregate (one shared sequence number)
    lake, cp = FakeLake(), FakeCheckpointer()
    p = make(lake, max_records=10)
    p.initialize("s", "TRIM_HORIZON")
    batch = records(10)
    batch[4:7] = [r._replace(sequence_number="5") for r in batch[4:7]]
    # WHEN processed
    p.process(batch, cp)
    # THEN the other 7 are rows, the 3 aggregated ones are dead letters with their payloads,
    # and the flush is checkpointed past all of them
    m = lake.manifests[("s", "1", "10")]
    assert (m.rows, m.dead_letters) == (7, 3)
    assert lake.rows[("s", "1", "10")][-3:] == ["dead:5"] * 3
    assert cp.calls == ["10"]


def test_kpl_aggregated_dead_letters_keep_payload_and_reason() -> None:
    lake = FakeLake()
    p = make(lake, max_records=4)
    p.initialize("s", "TRIM_HORIZON")
    batch = records(4)
    batch[1:3] = [r._replace(sequence_number="2") for r in batch[1:3]]
    p.process(batch, FakeCheckpointer())
    assert [(d.reason, d.sequence_number, d.data) for d in lake.dead] == [
        ("kpl_aggregated", "2", batch[1].data),
        ("kpl_aggregated", "2", batch[2].data),
    ]
    assert "disable KPL aggregation" in lake.dead[0].detail


def test_lease_lost_drops_the_buffer_without_checkpoint() -> None:
    lake, cp = FakeLake(), FakeCheckpointer()
    p = make(lake)
    p.initialize("s", "TRIM_HORIZON")
    p.process(records(50), cp)
    p.lease_lost()
    assert cp.calls == [] and lake.writes == 0


def test_shutdown_requested_flushes_then_checkpoints() -> None:
    lake, cp = FakeLake(), FakeCheckpointer()
    p = make(lake)
    p.initialize("s", "TRIM_HORIZON")
    p.process(records(30), cp)
    p.shutdown_requested(cp)
    assert cp.calls == ["30"] and lake.writes == 1


def test_shard_end_flushes_then_checkpoints_at_shard_end() -> None:
    lake, cp = FakeLake(), FakeCheckpointer()
    p = make(lake)
    p.initialize("s", "TRIM_HORIZON")
    p.process(records(30), cp)
    p.shard_ended(cp)
    assert cp.calls == ["30", None]


def test_failed_lake_write_exits_instead_of_checkpointing() -> None:
    lake, cp = FakeLake(fail=True), FakeCheckpointer()
    p = make(lake, max_records=10)
    p.initialize("s", "TRIM_HORIZON")
    with pytest.raises(SystemExit):
        p.process(records(10), cp)
    assert cp.calls == []


def test_replay_after_crash_rewrites_exactly_the_same_ranges() -> None:
    # GIVEN a processor that flushed [1,100] and [101,200], then crashed before checkpoint 200
    lake = FakeLake()
    first = make(lake)
    first.initialize("s", "TRIM_HORIZON")
    first.process(records(100), FakeCheckpointer())
    lake.manifests[("s", "101", "200")] = Manifest("t", "s", "101", "200", state="pending")
    # WHEN a new processor starts from checkpoint 100 with a different flush size and batching
    cp = FakeCheckpointer()
    second = make(lake, max_records=37)
    second.initialize("s", "100")
    stream = records(300)[100:]
    for i in range(0, len(stream), 64):
        second.process(stream[i : i + 64], cp)
    # THEN the pending range is rewritten with the very same bounds before normal flushing resumes
    ranges = sorted((int(f), int(l)) for (_, f, l) in lake.manifests)
    assert ranges[:2] == [(1, 100), (101, 200)]
    assert cp.calls[0] == "200"
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))  # contiguous, no overlap
    assert lake.rows[("s", "101", "200")] == [
        r["transaction_id"] for r in generate_records(300)[100:200]
    ]


def test_replay_skips_committed_ranges_and_checkpoints_them() -> None:
    lake = FakeLake()
    lake.manifests[("s", "1", "50")] = Manifest("t", "s", "1", "50", state="committed")
    cp = FakeCheckpointer()
    p = make(lake)
    p.initialize("s", "TRIM_HORIZON")
    p.process(records(60), cp)
    assert cp.calls == ["50"] and p.skipped_replayed == 50 and lake.writes == 0


def test_kcl_adapter_converts_protocol_records_and_exits_on_unexpected_errors() -> None:
    # GIVEN protocol-shaped records
    raw = [
        {
            "data": base64.b64encode(b'{"x":1}').decode(),
            "sequenceNumber": "7",
            "partitionKey": "k",
            "approximateArrivalTimestamp": 1700000000123,
        }
    ]
    (r,) = to_raw_records(raw)
    assert (r.data, r.sequence_number, r.approximate_arrival_ms) == (b'{"x":1}', "7", 1700000000123)

    # WHEN the processor raises something unexpected THEN the adapter exits rather than continue
    class Boom:
        def initialize(self, *_: object) -> None:
            raise RuntimeError("bug")

    adapter = KclRecordProcessor(lambda: Boom())  # type: ignore[arg-type, return-value]

    class Init:
        shard_id, sequence_number = "s", "TRIM_HORIZON"

    with pytest.raises(SystemExit):
        adapter.initialize(Init())


def test_records_from_the_daemons_json_convert_exactly() -> None:
    # GIVEN a processRecords line as the MultiLangDaemon writes it, decoded by amazon_kclpy itself
    payloads = [b'{"x":1}', b"\xff\xfe not utf-8", b"", bytes(range(256)) * 5]
    line = json.dumps(
        {
            "action": "processRecords",
            "millisBehindLatest": 0,
            "records": [
                {
                    "action": "record",
                    "data": base64.b64encode(p).decode(),
                    "partitionKey": f"k{i}",
                    "sequenceNumber": f"4959033827149025660855969253836157109592157598913658889{i}",
                    "subSequenceNumber": 0,
                    "approximateArrivalTimestamp": 1_767_225_600_001 + i,
                }
                for i, p in enumerate(payloads)
            ],
        }
    )
    message = json.loads(line, object_hook=dispatch.message_decode)
    # WHEN converted
    raws = to_raw_records(message.records)
    # THEN every field is exact: bytes as sent, sequence numbers as text, arrival in integer ms
    assert [r.data for r in raws] == payloads
    assert [r.partition_key for r in raws] == ["k0", "k1", "k2", "k3"]
    assert [r.sequence_number[-1] for r in raws] == ["0", "1", "2", "3"]
    assert [r.approximate_arrival_ms for r in raws] == [1_767_225_600_001 + i for i in range(4)]
    assert all(type(r) is RawRecord for r in raws)


def test_non_canonical_base64_is_decoded_as_the_library_would() -> None:
    # GIVEN a Record whose base64 has a line break (lenient decoders skip it, strict ones refuse)
    text = base64.encodebytes(b"x" * 100).decode()  # wrapped at 76 characters
    rec = Record(
        {
            "data": text,
            "partitionKey": "k",
            "sequenceNumber": "1",
            "subSequenceNumber": 0,
            "approximateArrivalTimestamp": 5,
        }
    )
    # WHEN converted THEN the payload is what Record.binary_data gives
    (r,) = to_raw_records([rec])
    assert r.data == rec.binary_data == b"x" * 100


def test_end_of_file_in_place_of_a_checkpoint_answer_exits_quietly() -> None:
    import json as _json

    from consumers.processor import KclRecordProcessor

    class Gone:
        def process(self, records: object, checkpointer: object) -> None:
            raise _json.JSONDecodeError("Expecting value", "", 0)

    class Input:
        records: tuple[object, ...] = ()
        checkpointer = None

    # GIVEN a processor whose checkpoint read end of file (the daemon went away)
    kcl = KclRecordProcessor(lambda: Gone())  # type: ignore[arg-type,return-value]
    # WHEN it processes a batch THEN it exits with its own code, not as a failure of ours (5)
    with pytest.raises(SystemExit) as exited:
        kcl.process_records(Input())
    assert exited.value.code == 6
