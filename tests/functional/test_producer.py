"""The producer against the emulator: injected partial failures still land every record once."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.keys import sequence_key
from etl.producer import KinesisProducer, ProduceRun, produce
from etl.records import RawRecord, RecordDecoder
from etl.settings import load_settings
from etl.synthetic import POISON_KINDS, Scenario
from infra.cli import main

pytestmark = pytest.mark.functional


class FlakyKinesis:
    """A real Kinesis client that fails every n-th entry of a request the first time it sees it.

    Failed entries are not sent to the emulator, as on AWS; ``throttle_first`` refuses the very
    first request as a whole.
    """

    def __init__(self, real: Any, fail_every: int, throttle_first: bool = False) -> None:
        self.real = real
        self.fail_every = fail_every
        self.throttle_first = throttle_first
        self.calls: list[int] = []
        self.seen: set[bytes] = set()

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append(len(Records))
        if self.throttle_first and len(self.calls) == 1:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "PutRecords",
            )
        fail = {
            i
            for i, r in enumerate(Records)
            if i % self.fail_every == 0 and r["Data"] not in self.seen
        }
        self.seen.update(r["Data"] for r in Records)
        keep = [i for i in range(len(Records)) if i not in fail]
        resp = self.real.put_records(StreamName=StreamName, Records=[Records[i] for i in keep])
        out: list[dict[str, Any]] = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "injected"}
        ] * len(Records)
        for i, r in zip(keep, resp["Records"], strict=True):
            out[i] = r
        return {"FailedRecordCount": len(fail), "Records": out}


def _create_stream(kinesis: Any, name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(100):
        if (
            kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"][
                "StreamStatus"
            ]
            == "ACTIVE"
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"stream {name} never became ACTIVE")


def _read_all(kinesis: Any, name: str) -> list[tuple[str, str, bytes, str]]:
    """Every record on the stream as (shard, sequence, data, partition key)."""
    out = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        sid = shard["ShardId"]
        it = kinesis.get_shard_iterator(
            StreamName=name, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
            out += [
                (sid, r["SequenceNumber"], r["Data"], r["PartitionKey"]) for r in resp["Records"]
            ]
            if not resp["Records"] or (
                resp.get("MillisBehindLatest", 0) == 0 and len(resp["Records"]) < 10_000
            ):
                break
            it = resp.get("NextShardIterator")
    return out


def test_partial_failures_are_retried_and_every_record_lands_exactly_once(aws: AwsClients) -> None:
    # GIVEN a 3-shard stream and a client whose first PutRecords fails every 7th entry
    kinesis = aws.client("kinesis")
    _create_stream(kinesis, "flaky", 3)
    flaky = FlakyKinesis(kinesis, fail_every=7)
    sleeps: list[float] = []
    producer = KinesisProducer(flaky, "flaky", sleep=sleeps.append)
    payloads = [(json.dumps({"i": i}).encode(), f"key-{i % 40}") for i in range(1200)]
    # WHEN 1,200 records are put (3 requests: 500, 500, 200)
    result = producer.put(payloads)
    # THEN only the failed entries were resent: 72 + 72 + 29 of the first request's entries
    assert flaky.calls == [500, 72, 500, 72, 200, 29]
    assert result.retried == 72 + 72 + 29 and result.attempts == 6 and len(sleeps) == 3
    # AND reading every shard back finds each record exactly once, where the producer said
    stored = _read_all(kinesis, "flaky")
    assert Counter(d for _, _, d, _ in stored) == Counter(d for d, _ in payloads)
    where = {d: (sid, seq) for sid, seq, d, _ in stored}
    assert [where[d] for d, _ in payloads] == list(
        zip(result.shard_ids, result.sequence_numbers, strict=True)
    )
    assert len({sid for sid, _, _, _ in stored}) == 3


def test_whole_request_throttling_then_partial_failure(aws: AwsClients) -> None:
    # GIVEN a client that throttles the first request, then fails every 2nd entry once
    kinesis = aws.client("kinesis")
    _create_stream(kinesis, "throttled", 2)
    flaky = FlakyKinesis(kinesis, fail_every=2, throttle_first=True)
    producer = KinesisProducer(flaky, "throttled", sleep=lambda s: None)
    payloads = [(f"r{i}".encode(), f"k{i}") for i in range(10)]
    # WHEN put THEN three attempts land all ten records once
    result = producer.put(payloads)
    assert flaky.calls == [10, 10, 5]
    assert result.attempts == 3
    assert sorted(d for _, _, d, _ in _read_all(kinesis, "throttled")) == sorted(
        d for d, _ in payloads
    )


def test_produce_puts_good_and_poison_records_that_decode_as_planned(aws: AwsClients) -> None:
    # GIVEN a 2-shard stream
    kinesis = aws.client("kinesis")
    _create_stream(kinesis, "cards", 2)
    settings = load_settings(
        {"stream_name": "cards", "endpoint_url": aws.endpoint_url}, env={}, config_path=None
    )
    # WHEN 1,000 drifting records with 5% poison are produced
    summary = produce(
        settings, aws, ProduceRun(records=1000, seed=4, scenario=Scenario.DRIFT, poison_rate=0.05)
    )
    # THEN the summary counts 50 poison records, 10 of each kind, and 950 good ids
    assert summary.produced == 1000 and summary.good == 950
    assert summary.poison == {kind: 10 for kind in POISON_KINDS}
    assert len(set(summary.good_ids)) == 950
    # AND decoding the stream's content gives exactly those good ids, and 50 dead letters
    stored = _read_all(kinesis, "cards")
    assert len(stored) == 1000
    decoder = RecordDecoder(load_contract())
    ids: list[str] = []
    reasons: Counter[str] = Counter()
    for shard in sorted({s for s, _, _, _ in stored}):
        mine = sorted((r for r in stored if r[0] == shard), key=lambda r: sequence_key(r[1]))
        batch = decoder.decode(
            [RawRecord(d, seq, pk) for _, seq, d, pk in mine],
            shard_id=shard,
            ingest_time=datetime.now(UTC),
        )
        ids += batch.table.column("transaction_id").to_pylist()
        reasons.update(d.reason for d in batch.dead_letters)
    assert sorted(ids) == sorted(summary.good_ids)
    assert reasons == {kind: 10 for kind in POISON_KINDS}


def test_cli_produce_prints_a_json_summary(
    aws: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    # GIVEN a stream and the environment naming it and the emulator
    _create_stream(aws.client("kinesis"), "cli", 1)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", str(aws.endpoint_url))
    monkeypatch.setenv("DRIFTLINE_STREAM_NAME", "cli")
    monkeypatch.chdir(tmp_path)
    # WHEN `driftline produce --records 40 --poison-rate 0.25 --rate 400 --json` runs
    rc = main(["produce", "--records", "40", "--poison-rate", "0.25", "--rate", "400", "--json"])
    # THEN it exits 0 and prints one JSON object with the counts, paced at about 400 records/s
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["produced"] == 40 and doc["good"] == 30 and doc["poison_total"] == 10
    assert doc["poison"] == {kind: 2 for kind in POISON_KINDS}
    assert doc["seconds"] >= 0.09
    assert len(_read_all(aws.client("kinesis"), "cli")) == 40


def test_late_labels_land_on_their_records_shard_after_them(aws: AwsClients) -> None:
    from etl.label_producer import LateLabels
    from tests.contracts import CARD_LATE_LABELS

    # GIVEN a 4-shard stream and the late-label contract
    kinesis = aws.client("kinesis")
    _create_stream(kinesis, "late", 4)
    settings = load_settings(
        {
            "stream_name": "late",
            "endpoint_url": aws.endpoint_url,
            "contract_path": str(CARD_LATE_LABELS),
        },
        env={},
        config_path=None,
    )
    # WHEN 300 records are produced at 300/s with labels 0.5 s late, 80 % covered, 20 % changed
    t0 = time.monotonic()
    s = produce(
        settings,
        aws,
        ProduceRun(
            records=300,
            rate=300,
            seed=8,
            labels=LateLabels(delay_s=0.5, coverage=0.8, change_rate=0.2, seed=8),
        ),
    )
    assert time.monotonic() - t0 >= 1.0 + 0.5  # the last change is due 2 delays after its record
    # THEN each label record is on its data record's shard, after it; the last one is the summary's
    stored = sorted(_read_all(kinesis, "late"), key=lambda r: (r[0], sequence_key(r[1])))
    data = {
        json.loads(d)["transaction_id"]: (sid, seq)
        for sid, seq, d, _ in stored
        if b'"record_kind"' not in d
    }
    last: dict[str, bool] = {}
    for sid, seq, d, _ in stored:
        doc = json.loads(d)
        if doc.get("record_kind") != "label":
            assert "is_fraud" not in doc
            continue
        rid = doc["transaction_id"]
        assert data[rid][0] == sid and sequence_key(data[rid][1]) < sequence_key(seq)
        last[rid] = doc["is_fraud"]
    assert len(data) == 300 and last == s.labels
    assert s.labels_sent == len(s.labels) + s.labels_changed and 200 < len(s.labels) < 270
    assert s.to_dict()["labelled_ids"] == len(s.labels)


def test_cli_refuses_label_options_for_an_inline_contract(
    aws: AwsClients,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", str(aws.endpoint_url))
    monkeypatch.setenv("DRIFTLINE_STREAM_NAME", "none")
    monkeypatch.chdir(tmp_path)
    rc = main(["produce", "--records", "5", "--label-delay", "3"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "--label-delay" in err and 'arrival = "late"' in err and "Traceback" not in err
