"""Record decoding and validation: reasons, type rules, timestamps, sequence numbers."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from etl.contract import load_contract, parse_contract
from etl.keys import SEQ_WIDTH, pad_sequence, sequence_key
from etl.records import DeadLetter, RawRecord, Reason, RecordDecoder
from etl.records._reference import ReferencePath
from etl.synthetic import encode_record, generate_records, make_poison

CONTRACT = load_contract()
INGEST = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SHARD = "shardId-000000000001"


def _raw(payload: bytes | dict[str, Any], seq: int = 1, arrival_ms: int | None = None) -> RawRecord:
    data = encode_record(payload) if isinstance(payload, dict) else payload
    return RawRecord(data, str(seq), "card-1", arrival_ms)


def _decode(*payloads: bytes | dict[str, Any]) -> Any:
    recs = [_raw(p, seq=i + 1) for i, p in enumerate(payloads)]
    return RecordDecoder(CONTRACT).decode(recs, shard_id=SHARD, ingest_time=INGEST)


def _good() -> dict[str, Any]:
    return {
        "transaction_id": "t-1",
        "card_id": "card-1",
        "event_time": "2026-01-01T10:00:00Z",
        "amount": 12.5,
        "merchant_category": "grocery",
        "hour": 10,
        "distance_from_home_km": 3.5,
        "device": "mobile",
        "country": "US",
        "is_fraud": False,
    }


def _one_reason(payload: bytes | dict[str, Any]) -> tuple[str, str]:
    batch = _decode(payload)
    assert batch.table.num_rows == 0
    assert len(batch.dead_letters) == 1
    return batch.dead_letters[0].reason, batch.dead_letters[0].detail


def test_a_good_record_becomes_one_row_with_metadata() -> None:
    # GIVEN one valid record with an arrival time
    rec = RawRecord(
        encode_record(_good()),
        "49590338271490256608559692538361571095921575989136588898",
        "card-1",
        1767261600123,
    )
    # WHEN decoded
    batch = RecordDecoder(CONTRACT).decode([rec], shard_id=SHARD, ingest_time=INGEST)
    # THEN the row holds the contract's fields plus shard, sequence, arrival and ingest times
    assert batch.dead_letters == []
    assert batch.good_bytes == len(rec.data)
    assert batch.table.schema == CONTRACT.arrow_schema(with_metadata=True, with_partitions=False)
    row = batch.table.to_pylist()[0]
    assert row["event_time"] == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert row["amount"] == 12.5 and row["hour"] == 10 and row["is_fraud"] is False
    assert row["shard_id"] == SHARD
    assert row["sequence_number"] == rec.sequence_number
    assert row["approximate_arrival_time"] == datetime(2026, 1, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert row["ingest_time"] == INGEST


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("malformed_json", Reason.MALFORMED_JSON),
        ("wrong_type", Reason.WRONG_TYPE),
        ("missing_required", Reason.MISSING_REQUIRED),
        ("non_utf8", Reason.NON_UTF8),
        ("oversize", Reason.OVERSIZE),
    ],
)
def test_each_poison_kind_gets_its_reason(kind: str, reason: Reason) -> None:
    # GIVEN 20 poison payloads of one kind (different seeds pick different fields/cuts)
    records = generate_records(20, seed=3)
    payloads = [make_poison(kind, np.random.default_rng(i), r) for i, r in enumerate(records)]
    # WHEN decoded together with one good record
    batch = _decode(*payloads, encode_record(records[0]))
    # THEN every poison record has exactly that reason and the good one survives
    assert [d.reason for d in batch.dead_letters] == [reason.value] * 20
    assert batch.table.column("transaction_id").to_pylist() == [records[0]["transaction_id"]]


def test_not_an_object() -> None:
    assert _one_reason(b"[1, 2]") == ("not_an_object", "expected a JSON object, got array [1, 2]")


def test_nan_and_infinity_tokens_are_not_json() -> None:
    text = json.dumps({**_good(), "amount": float("nan")}).encode()
    assert _one_reason(text)[0] == "malformed_json"


@pytest.mark.parametrize(
    ("field", "value", "reason", "detail"),
    [
        ("amount", True, "wrong_type", "amount: expected a JSON number, got boolean true"),
        ("amount", "12.5", "wrong_type", 'amount: expected a JSON number, got string "12.5"'),
        ("hour", 7.5, "wrong_type", "hour: expected a JSON integer, got number 7.5"),
        ("hour", True, "wrong_type", "hour: expected a JSON integer, got boolean true"),
        ("hour", "7", "wrong_type", 'hour: expected a JSON integer, got string "7"'),
        ("is_fraud", 1, "wrong_type", "is_fraud: expected true or false, got integer 1"),
        ("is_fraud", "true", "wrong_type", 'is_fraud: expected true or false, got string "true"'),
        ("device", 3, "wrong_type", "device: expected a JSON string, got integer 3"),
        (
            "event_time",
            1767225600,
            "wrong_type",
            "event_time: expected an ISO-8601 timestamp string, got integer 1767225600",
        ),
        (
            "event_time",
            "yesterday",
            "wrong_type",
            'event_time: expected an ISO-8601 timestamp string, got string "yesterday"',
        ),
        ("amount", None, "null_not_allowed", "amount: null is not allowed"),
        ("amount", -0.01, "out_of_range", "amount: -0.01 is outside [0, +inf]"),
        ("hour", 24, "out_of_range", "hour: 24 is outside [0, 23]"),
        ("hour", 2**64, "out_of_range", f"hour: {2**64} does not fit a 64-bit integer"),
    ],
)
def test_type_and_value_rules(field: str, value: Any, reason: str, detail: str) -> None:
    # GIVEN a record with one bad value WHEN decoded THEN it gets that reason and names field+value
    assert _one_reason({**_good(), field: value}) == (reason, detail)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("amount", 12, 12.0),  # ints are fine floats
        ("hour", 7.0, 7),  # an integral float is an int
        ("distance_from_home_km", None, None),  # nullable
        ("is_fraud", True, True),
    ],
)
def test_accepted_values(field: str, value: Any, expected: Any) -> None:
    batch = _decode({**_good(), field: value})
    assert batch.dead_letters == []
    assert batch.table.column(field).to_pylist() == [expected]


def test_missing_optional_field_is_null_and_unknown_fields_are_ignored() -> None:
    # GIVEN a record without the optional label and with an extra field
    doc = {k: v for k, v in _good().items() if k != "is_fraud"} | {"note": "hello"}
    # WHEN decoded THEN it is a good row with a null label and no 'note' column
    batch = _decode(doc)
    assert batch.dead_letters == []
    assert batch.table.column("is_fraud").to_pylist() == [None]
    assert "note" not in batch.table.column_names


def test_missing_required_vs_null_not_allowed() -> None:
    doc = {k: v for k, v in _good().items() if k != "card_id"}
    assert _one_reason(doc) == ("missing_required", "card_id: required field is missing")
    assert _one_reason({**_good(), "card_id": None}) == (
        "null_not_allowed",
        "card_id: null is not allowed",
    )


def test_first_problem_in_field_order_wins() -> None:
    # GIVEN a record wrong in 'hour' (later field) and in 'amount' (earlier field)
    doc = {**_good(), "hour": "x", "amount": -5}
    # THEN the reported problem is the earlier field's
    assert _one_reason(doc) == ("out_of_range", "amount: -5.0 is outside [0, +inf]")


def test_payload_problems_come_before_field_problems() -> None:
    # GIVEN an oversize payload that is also not UTF-8 THEN it is oversize
    assert _one_reason(b"\xff" * (CONTRACT.max_record_bytes + 1))[0] == "oversize"


def test_not_allowed_value() -> None:
    # GIVEN a contract restricting 'device'
    doc = CONTRACT.to_dict()
    for f in doc["fields"]:
        if f["name"] == "device":
            f["allowed"] = ["mobile", "desktop"]
    decoder = RecordDecoder(parse_contract(doc))
    recs = [_raw({**_good(), "device": d}, seq=i) for i, d in enumerate(["mobile", "toaster"])]
    # WHEN decoded THEN only the unknown device is dead
    batch = decoder.decode(recs, shard_id=SHARD, ingest_time=INGEST)
    assert [(d.reason, d.detail) for d in batch.dead_letters] == [
        ("not_allowed_value", "device: \"toaster\" is not one of ['mobile', 'desktop']")
    ]
    assert batch.table.column("device").to_pylist() == ["mobile"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01T12:30:00+02:30", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01T05:00:00-0500", datetime(2026, 1, 1, 10, tzinfo=UTC)),
        ("2026-01-01T10:00:00", datetime(2026, 1, 1, 10, tzinfo=UTC)),  # naive = UTC
        ("2026-01-01 10:00:00.250000Z", datetime(2026, 1, 1, 10, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamp_formats(text: str, expected: datetime) -> None:
    batch = _decode({**_good(), "event_time": text})
    assert batch.dead_letters == []
    assert batch.table.column("event_time").to_pylist() == [expected]


def test_mixed_timestamps_in_one_batch_pinpoint_the_bad_ones() -> None:
    # GIVEN 50 records mixing zone-aware, naive and three unparseable timestamps
    texts = []
    for i in range(50):
        texts.append(f"2026-01-01T00:00:{i:02d}Z" if i % 2 else f"2026-01-01T00:00:{i:02d}")
    for bad in (3, 17, 40):
        texts[bad] = f"2026-13-01T00:00:{bad:02d}Z"
    batch = _decode(
        *({**_good(), "transaction_id": f"t{i}", "event_time": t} for i, t in enumerate(texts))
    )
    # THEN exactly those three are dead and the others parse to the right instants in order
    assert [d.sequence_number for d in batch.dead_letters] == ["4", "18", "41"]
    assert all(d.reason == "wrong_type" for d in batch.dead_letters)
    good = [i for i in range(50) if i not in (3, 17, 40)]
    assert batch.table.column("event_time").to_pylist() == [
        datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC) for i in good
    ]
    assert batch.table.column("transaction_id").to_pylist() == [f"t{i}" for i in good]


def test_dead_letters_keep_input_order_and_identity() -> None:
    # GIVEN good and bad records interleaved
    batch = _decode(_good(), b"{", _good(), b"\xff", _good())
    # THEN dead letters are in input order with their sequence numbers, and 3 rows survive
    assert [(d.reason, d.sequence_number, d.shard_id) for d in batch.dead_letters] == [
        ("malformed_json", "2", SHARD),
        ("non_utf8", "4", SHARD),
    ]
    assert batch.table.num_rows == 3
    assert batch.table.column("sequence_number").to_pylist() == ["1", "3", "5"]
    assert batch.good_bytes == 3 * len(encode_record(_good()))


def test_empty_batch() -> None:
    batch = _decode()
    assert batch.table.num_rows == 0 and batch.dead_letters == [] and batch.good_bytes == 0


def test_dead_letter_json_line() -> None:
    # GIVEN a UTF-8 and a non-UTF-8 dead letter
    at = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    text = DeadLetter("malformed_json", "x", b"{", SHARD, "7", "card-1", 1767225600500)
    binary = DeadLetter("non_utf8", "y", b"\xff\x00", SHARD, "8", "card-2", None)
    # THEN the text payload is kept as text and the binary one as base64
    assert json.loads(text.to_json(at)) == {
        "reason": "malformed_json",
        "detail": "x",
        "payload": "{",
        "shard_id": SHARD,
        "sequence_number": "7",
        "partition_key": "card-1",
        "approximate_arrival_time": "2026-01-01T00:00:00.500000Z",
        "dead_at": "2026-01-01T00:00:01.000000Z",
    }
    doc = json.loads(binary.to_json(at))
    assert "payload" not in doc
    assert base64.b64decode(doc["payload_base64"]) == b"\xff\x00"
    assert doc["approximate_arrival_time"] is None
    assert "\n" not in binary.to_json(at)


def test_sequence_numbers_compare_as_integers() -> None:
    # GIVEN a 56-digit AWS sequence number and a short moto one
    long = "49590338271490256608559692538361571095921575989136588898"
    short = "9"
    # THEN numeric order holds where string order would not
    assert len(long) == SEQ_WIDTH
    assert short > long  # the trap
    assert sequence_key(short) < sequence_key(long)
    assert pad_sequence(short) < pad_sequence(long)
    assert pad_sequence(short) == "0" * 55 + "9"
    assert pad_sequence(long) == long
    assert pad_sequence("0042") == pad_sequence("42")
    assert sorted(["10", "9", long], key=sequence_key) == ["9", "10", long]


@pytest.mark.parametrize("bad", ["", "12a", "-1", "1.5", "١٢", "1" * (SEQ_WIDTH + 1)])
def test_bad_sequence_numbers_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        pad_sequence(bad)


def test_table_types_for_a_generated_batch() -> None:
    # GIVEN 2,000 generated records WHEN decoded THEN all survive with the contract's types
    recs = generate_records(2000, seed=8)
    batch = _decode(*recs)
    assert batch.dead_letters == []
    assert batch.table.num_rows == 2000
    assert batch.table.column("amount").to_pylist() == [r["amount"] for r in recs]
    assert batch.table.column("distance_from_home_km").null_count == sum(
        r["distance_from_home_km"] is None for r in recs
    )
    assert batch.table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")


# -- batch-wise and record by record, the fast path and the reference path agree ---------------

EDGE_CASES: list[bytes] = [
    b'{"transaction_id":"a","transaction_id":"b"}',  # duplicate key (json.loads keeps the last)
    b'{"a":1}{"b":2}',  # two objects in one record
    b"{}",
    b" {}",
    b"",
    b"null",
    b'{"amount":NaN}',
    b"{\n}",
    b'{"device":"a\rb"}',
]


def _variants() -> list[bytes]:
    """Good records, each poison kind, and hand-made edge cases, interleaved."""
    rows = generate_records(120, seed=21)
    rng = np.random.default_rng(21)
    out = [encode_record(r) for r in rows]
    kinds = ["malformed_json", "wrong_type", "missing_required", "non_utf8", "oversize"]
    for j in range(0, 120, 6):
        out[j] = make_poison(kinds[(j // 6) % 5], rng, rows[j])
    good = rows[1]
    extra = [
        {**good, "hour": 7.0},  # integral float: fine as int
        {**good, "amount": float("inf")},  # json.dumps writes Infinity: not JSON
        {**good, "device": "\ud800"},  # lone surrogate escape
        {**good, "is_fraud": None},
        {k: v for k, v in good.items() if k != "is_fraud"},
        {**good, "distance_from_home_km": None},
        {**good, "event_time": "2026-01-01T00:00:00+05:00"},
        {**good, "event_time": "2026-02-30T00:00:00Z"},
        {**good, "hour": -1},
        {**good, "card_id": None},
    ]
    out[7:7] = [json.dumps(e).encode() for e in extra]
    out[50:50] = EDGE_CASES
    out.append(json.dumps({**good, "amount": 5}, indent=1).encode())  # newlines as whitespace
    return out


#: Each batch-versus-record test runs with the fast path on, and with every record sent through
#: the reference path.
PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="reference")]


@pytest.mark.parametrize("fast_path", PATHS)
def test_batch_decode_equals_record_by_record_decode(fast_path: bool) -> None:
    # GIVEN a batch mixing good records, every poison kind and edge cases
    payloads = _variants()
    recs = [RawRecord(p, str(i), "k", 1000 + i) for i, p in enumerate(payloads)]
    decoder = RecordDecoder(CONTRACT, fast_path=fast_path)
    # WHEN decoded as one batch and one record at a time
    batch = decoder.decode(recs, shard_id=SHARD, ingest_time=INGEST)
    singles = [decoder.decode([r], shard_id=SHARD, ingest_time=INGEST) for r in recs]
    # THEN both agree on every row, every dead letter and the byte count
    assert batch.table.equals(pa.concat_tables([s.table for s in singles]))
    assert batch.dead_letters == [d for s in singles for d in s.dead_letters]
    assert batch.good_bytes == sum(s.good_bytes for s in singles)
    assert batch.input_bytes == sum(map(len, payloads)) == sum(s.input_bytes for s in singles)
    # AND the hand-made cases got the expected verdicts
    reasons = {int(d.sequence_number): d.reason for d in batch.dead_letters}
    assert {k: reasons.get(k) for k in range(7, 17)} == {
        7: None,
        8: "malformed_json",
        9: "non_utf8",
        10: None,
        11: None,
        12: None,
        13: None,
        14: "wrong_type",
        15: "out_of_range",
        16: "null_not_allowed",
    }
    assert {k: reasons.get(k) for k in range(50, 59)} == {
        50: "missing_required",  # the duplicate-key record lacks every other field
        51: "malformed_json",
        52: "missing_required",
        53: "missing_required",
        54: "malformed_json",
        55: "not_an_object",
        56: "malformed_json",
        57: "missing_required",
        58: "malformed_json",
    }
    assert len(payloads) - 1 not in reasons  # pretty-printed JSON is still JSON


def test_batch_of_only_good_records_never_needs_the_reference_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 500 good records and a reference path that would fail the test if used
    recs = [
        RawRecord(encode_record(r), str(i), "k")
        for i, r in enumerate(generate_records(500, seed=1))
    ]
    decoder = RecordDecoder(CONTRACT)
    monkeypatch.setattr(ReferencePath, "decode", lambda *a: pytest.fail("reference path used"))
    # WHEN decoded THEN all 500 rows come out
    assert decoder.decode(recs, shard_id=SHARD, ingest_time=INGEST).table.num_rows == 500


def test_big_ints_in_a_fast_batch_are_out_of_range() -> None:
    # GIVEN 20 good records, one with an hour that does not fit 64 bits
    rows = [encode_record(r) for r in generate_records(20, seed=2)]
    rows[5] = encode_record({**generate_records(20, seed=2)[5], "hour": 2**70})
    # WHEN decoded as a batch THEN only that one is dead, as out_of_range
    batch = _decode(*rows)
    assert [(d.sequence_number, d.reason) for d in batch.dead_letters] == [("6", "out_of_range")]
    assert batch.table.num_rows == 19


@pytest.mark.parametrize("fast_path", PATHS)
def test_invalid_utf8_in_unknown_fields_and_adjacent_bad_records(fast_path: bool) -> None:
    # GIVEN good records around bad ones: first and last of the batch, two in a row, invalid UTF-8
    # where the contract has no field (a key, a value), and valid non-ASCII text
    rows = [encode_record(r) for r in generate_records(12, seed=5)]
    good = generate_records(1, seed=6)[0]
    body = encode_record(good)[:-1]
    payloads = [
        b"{",  # 0: first of the batch
        *rows[:3],
        b'{"hour":',  # 4 and 5: adjacent
        encode_record({**good, "hour": "7"}),
        *rows[3:6],
        body + b',"note":"caf\xe9"}',  # 9: Latin-1 byte in an unknown value
        body + b',"\xff\xfe":1}',  # 10: in an unknown key
        body + b',"note":"\xed\xa0\x80"}',  # 11: an encoded surrogate (not UTF-8)
        encode_record({**good, "device": "tablette à écran", "note": "日本"}),  # 12: fine
        *rows[6:],
        encode_record({**good, "amount": "1"}),  # 19: last of the batch
    ]
    recs = [RawRecord(p, str(i), "k", 1000 + i) for i, p in enumerate(payloads)]
    decoder = RecordDecoder(CONTRACT, fast_path=fast_path)
    # WHEN decoded as one batch and one record at a time
    batch = decoder.decode(recs, shard_id=SHARD, ingest_time=INGEST)
    singles = [decoder.decode([r], shard_id=SHARD, ingest_time=INGEST) for r in recs]
    # THEN exactly these are dead, for these reasons, and both ways agree
    assert [(int(d.sequence_number), d.reason) for d in batch.dead_letters] == [
        (0, "malformed_json"),
        (4, "malformed_json"),
        (5, "wrong_type"),
        (9, "non_utf8"),
        (10, "non_utf8"),
        (11, "non_utf8"),
        (19, "wrong_type"),
    ]
    assert batch.dead_letters == [d for s in singles for d in s.dead_letters]
    assert batch.table.equals(pa.concat_tables([s.table for s in singles]))
    assert batch.table.column("sequence_number").to_pylist() == [
        str(i) for i in (1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 16, 17, 18)
    ]
    assert batch.table.column("device").to_pylist()[6] == "tablette à écran"
    assert batch.good_bytes == sum(len(payloads[i]) for i in (1, 2, 3, 6, 7, 8, 12, *range(13, 19)))


@pytest.mark.parametrize("fast_path", PATHS)
def test_non_finite_and_out_of_range_numbers_in_a_fast_batch(fast_path: bool) -> None:
    # GIVEN 30 good records, four of them with a number overflowing to infinity or out of range,
    # and every fourth record without an arrival time
    rows = [encode_record(r) for r in generate_records(30, seed=3)]
    rows[3] = rows[3].replace(b'"amount":', b'"amount":1e999,"x":', 1)
    rows[7] = rows[7].replace(b'"hour":', b'"hour":24,"x":', 1)
    rows[9] = rows[9].replace(b'"amount":', b'"amount":-1e999,"x":', 1)
    rows[11] = rows[11].replace(
        b'"distance_from_home_km":', b'"distance_from_home_km":1e999,"x":', 1
    )
    recs = [RawRecord(r, str(i), "k", None if i % 4 == 0 else i) for i, r in enumerate(rows)]
    decoder = RecordDecoder(CONTRACT, fast_path=fast_path)
    # WHEN decoded as one batch and one record at a time
    batch = decoder.decode(recs, shard_id=SHARD, ingest_time=INGEST)
    singles = [decoder.decode([r], shard_id=SHARD, ingest_time=INGEST) for r in recs]
    # THEN exactly those four are dead, with these details, and both ways agree
    assert [(d.sequence_number, d.reason, d.detail) for d in batch.dead_letters] == [
        ("3", "out_of_range", "amount: Infinity is not a finite number"),
        ("7", "out_of_range", "hour: 24 is outside [0, 23]"),
        ("9", "out_of_range", "amount: -Infinity is not a finite number"),
        ("11", "out_of_range", "distance_from_home_km: Infinity is not a finite number"),
    ]
    assert batch.dead_letters == [d for s in singles for d in s.dead_letters]
    assert batch.table.equals(pa.concat_tables([s.table for s in singles]))
    # AND arrival times are microseconds, null where the KCL gave none
    arrivals = batch.table.column("approximate_arrival_time").cast(pa.int64()).to_pylist()
    assert arrivals[:3] == [None, 1000, 2000]


def _value_edge_cases() -> list[bytes]:
    """Values at the limits of each check, as raw JSON (json.dumps cannot write some of them)."""
    good = json.dumps(_good())

    def with_(field: str, raw: str) -> bytes:
        return good.replace(
            f'"{field}": {json.dumps(_good()[field])}', f'"{field}": {raw}'
        ).encode()

    return [
        with_("amount", "9007199254740993"),  # past 2**53: the nearest double, as JSON readers do
        with_("amount", "1" + "0" * 400),  # no double that large
        with_("amount", "1e999"),  # json.loads makes it infinity
        with_("distance_from_home_km", "-1e999"),
        with_("amount", "0"),  # the bound itself
        with_("amount", "-5"),  # an integer below a float bound: reported as the double
        with_("amount", "-0.0"),
        with_("hour", "23"),
        with_("hour", "24"),
        with_("hour", "-1"),
        with_("hour", str(2**63)),  # one past int64
        with_("hour", "23.0"),  # an integral float is an int
        with_("device", '"\\ud800"'),  # a lone surrogate escape
        with_("country", '"Z\\u00fcrich"'),  # fine non-ASCII text, escaped
        with_("amount", "9007199254740993").replace(b'"hour": 10', b'"hour": "x"'),
        with_("is_fraud", "null"),
    ]


def test_fast_and_reference_paths_agree_on_every_variant_and_edge_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN every variant and value edge case, twice over
    payloads = (_variants() + _value_edge_cases()) * 2
    recs = [RawRecord(p, str(i), "k", 1000 + i) for i, p in enumerate(payloads)]
    judged: list[int] = []
    judge = ReferencePath.decode

    def counting(self: ReferencePath, datas: Any, indices: list[int], *rest: Any) -> Any:
        judged.extend(indices)
        return judge(self, datas, indices, *rest)

    monkeypatch.setattr(ReferencePath, "decode", counting)
    # WHEN decoded as one batch with the fast path, and with the reference path alone as one
    # batch and one record at a time
    fast = RecordDecoder(CONTRACT).decode(recs, shard_id=SHARD, ingest_time=INGEST)
    vouched = len(recs) - len(judged)
    reference = RecordDecoder(CONTRACT, fast_path=False)
    batch = reference.decode(recs, shard_id=SHARD, ingest_time=INGEST)
    singles = [reference.decode([r], shard_id=SHARD, ingest_time=INGEST) for r in recs]
    # THEN the fast path vouched for most records, and rows, reasons and details are the same
    assert vouched > len(recs) // 2
    assert fast.table.equals(batch.table)
    assert fast.dead_letters == batch.dead_letters
    assert batch.table.equals(pa.concat_tables([s.table for s in singles]))
    assert batch.dead_letters == [d for s in singles for d in s.dead_letters]
    assert fast.good_bytes == batch.good_bytes == sum(s.good_bytes for s in singles)


@pytest.mark.parametrize("fast_path", PATHS)
def test_an_int_past_2_53_in_a_bounded_int_field_is_out_of_range(fast_path: bool) -> None:
    # GIVEN 100 good records, one with an hour past 2**53 (no double holds it exactly, so a bound
    # check through doubles would fail on it rather than judge it)
    rows = generate_records(100, seed=4)
    payloads = [encode_record(r) for r in rows]
    payloads[40] = encode_record({**rows[40], "hour": 2**53 + 1})
    recs = [RawRecord(p, str(i), "k") for i, p in enumerate(payloads)]
    # WHEN decoded as one batch
    batch = RecordDecoder(CONTRACT, fast_path=fast_path).decode(
        recs, shard_id=SHARD, ingest_time=INGEST
    )
    # THEN only that record is dead, out of range, with its exact value
    assert [(d.sequence_number, d.reason, d.detail) for d in batch.dead_letters] == [
        ("40", "out_of_range", f"hour: {2**53 + 1} is outside [0, 23]")
    ]
    assert batch.table.num_rows == 99


def test_a_lone_surrogate_sends_only_its_own_record_to_the_reference_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 100 good records, two of them with a lone surrogate escape in a string (msgspec takes
    # it, Arrow refuses to hold it)
    rows = generate_records(100, seed=9)
    payloads = [encode_record(r) for r in rows]
    for i in (30, 31):
        payloads[i] = json.dumps({**rows[i], "device": "\ud800"}).encode()
    recs = [RawRecord(p, str(i), "k") for i, p in enumerate(payloads)]
    judged: list[int] = []
    judge = ReferencePath.decode

    def counting(self: ReferencePath, datas: Any, indices: list[int], *rest: Any) -> Any:
        judged.extend(indices)
        return judge(self, datas, indices, *rest)

    monkeypatch.setattr(ReferencePath, "decode", counting)
    # WHEN decoded as one batch
    batch = RecordDecoder(CONTRACT).decode(recs, shard_id=SHARD, ingest_time=INGEST)
    # THEN only those two were judged by the reference path, and only they are dead
    assert judged == [30, 31]
    assert [(d.sequence_number, d.reason) for d in batch.dead_letters] == [
        ("30", "non_utf8"),
        ("31", "non_utf8"),
    ]
    assert batch.table.column("sequence_number").to_pylist() == [
        str(i) for i in range(100) if i not in (30, 31)
    ]


def test_value_edge_cases_get_these_verdicts() -> None:
    # GIVEN the value edge cases WHEN decoded as a batch (fast path where it can vouch)
    cases = _value_edge_cases()
    batch = _decode(*cases)
    got = {int(d.sequence_number) - 1: (d.reason, d.detail) for d in batch.dead_letters}
    # THEN exactly these are dead, with these details
    assert got == {
        1: ("out_of_range", f"amount: {'1' + '0' * 76}... does not fit a double"),
        2: ("out_of_range", "amount: Infinity is not a finite number"),
        3: ("out_of_range", "distance_from_home_km: -Infinity is not a finite number"),
        5: ("out_of_range", "amount: -5.0 is outside [0, +inf]"),
        8: ("out_of_range", "hour: 24 is outside [0, 23]"),
        9: ("out_of_range", "hour: -1 is outside [0, 23]"),
        10: ("out_of_range", f"hour: {2**63} does not fit a 64-bit integer"),
        12: ("non_utf8", 'device: "\ud800" is not valid Unicode'),
        14: ("wrong_type", 'hour: expected a JSON integer, got string "x"'),
    }
    # AND the survivors hold the nearest double of 2**53 + 1, the bounds themselves, the
    # integral float as an int and the unescaped text
    assert batch.table.column("amount").to_pylist()[:3] == [9007199254740992.0, 0.0, -0.0]
    assert batch.table.column("hour").to_pylist() == [10, 10, 10, 23, 23, 10, 10]
    assert batch.table.column("country").to_pylist()[5] == "Zürich"


@pytest.mark.parametrize("fast_path", PATHS)
def test_null_rules_for_optional_and_nullable_fields(fast_path: bool) -> None:
    # GIVEN a contract with an optional non-nullable field and a required nullable one
    doc = CONTRACT.to_dict()
    doc["fields"] += [
        {"name": "note", "type": "string", "required": False, "nullable": False},
        {"name": "score", "type": "float", "required": True, "nullable": True},
    ]
    decoder = RecordDecoder(parse_contract(doc), fast_path=fast_path)
    base = {**_good(), "score": 0.5}
    cases = [
        base,  # fine
        {**base, "note": "hi"},  # fine
        {**base, "note": None},  # an explicit null where none is allowed
        {**base, "score": None},  # null is allowed
        {k: v for k, v in base.items() if k != "score"},  # required, missing
    ] * 8  # enough rows for the fast path
    recs = [_raw(c, seq=i) for i, c in enumerate(cases)]
    # WHEN decoded as a batch and one by one
    batch = decoder.decode(recs, shard_id=SHARD, ingest_time=INGEST)
    singles = [decoder.decode([r], shard_id=SHARD, ingest_time=INGEST) for r in recs]
    # THEN both agree, and only the explicit null and the missing required field are dead
    assert batch.table.equals(pa.concat_tables([s.table for s in singles]))
    assert batch.dead_letters == [d for s in singles for d in s.dead_letters]
    assert {(int(d.sequence_number) % 5, d.reason, d.detail) for d in batch.dead_letters} == {
        (2, "null_not_allowed", "note: null is not allowed"),
        (4, "missing_required", "score: required field is missing"),
    }
    # AND a missing optional field is a null
    assert batch.table.column("note").to_pylist()[:3] == [None, "hi", None]
