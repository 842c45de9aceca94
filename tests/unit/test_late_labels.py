"""Late labels in the record processor, with fakes for the pure parts: label records routed by
kind before validation (bad ones dead-lettered with a reason), the data records scored and joined,
the join's snapshot saved after the flush and before the checkpoint, a failed save holding the
checkpoint back, and exactly once across a crash at any checkpoint (restore + replay)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from consumers.flush import FlushPolicy
from consumers.label_routing import LabelRouter
from consumers.late_quality import LateLabelStage, refuse_label_stream
from consumers.processor import Clocks, ShardProcessor
from consumers.scoring import Scored
from etl.contract import load_contract, parse_contract
from etl.exceptions import ConfigError, LakeWriteError
from etl.label_producer import LateLabels, plan_labels
from etl.records import RawRecord, RecordDecoder
from etl.synthetic import encode_record, generate_records
from infra.cli import main
from tests.contracts import CARD_LATE_LABELS
from tests.unit.test_processor import FakeLake

LATE = load_contract(CARD_LATE_LABELS)


def label(rid: object, value: object = True, **extra: object) -> bytes:
    doc = {"transaction_id": rid, "card_id": "card-1", "is_fraud": value, "record_kind": "label"}
    doc.update(extra)
    return json.dumps({k: v for k, v in doc.items() if v is not Ellipsis}).encode()


def test_label_records_are_routed_before_validation_and_bad_ones_get_a_reason() -> None:
    # GIVEN a batch mixing data records, good label records and defective label records
    data = [
        encode_record(r)
        for r in plan_labels(
            LATE, generate_records(3, seed=1, contract=LATE), LateLabels()
        ).data_rows
    ]
    batch = [
        data[0],
        label("a", True, labelled_at="2026-01-01T00:00:10Z"),
        label("b", 0),  # 0/1 is a bool label too; no time field: the arrival time
        label(..., True),  # no id
        label("c", ...),  # no label
        label("d", "yes"),  # not a bool
        label("e", True, labelled_at="soon"),  # not a timestamp
        data[1],
        b'{"record_kind": "label", "transaction_id": ',  # malformed: left to the decoder
        data[2],
    ]
    raws = [RawRecord(d, str(i + 1), "card-1", 1_767_225_700_000) for i, d in enumerate(batch)]
    # WHEN split
    out = LabelRouter(LATE).split(raws, "shardId-0")
    # THEN data (and the malformed payload) stay in order for the decoder, good labels are rows
    assert [r.sequence_number for r in out.data] == ["1", "8", "9", "10"]
    assert out.labels.ids == ["a", "b"] and out.labels.labels == [1.0, 0.0]
    assert out.labels.times == [1767225610.0, 1767225700.0]
    # AND each defective label record is a dead letter with its reason and the field named
    got = {d.sequence_number: (d.reason, d.detail) for d in out.dead_letters}
    assert {k: v[0] for k, v in got.items()} == {
        "4": "missing_required",
        "5": "missing_required",
        "6": "wrong_type",
        "7": "wrong_type",
    }
    assert "'transaction_id'" in got["4"][1] and "'is_fraud'" in got["6"][1]
    assert "'labelled_at'" in got["7"][1]


def test_a_second_label_stream_is_refused_naming_the_key() -> None:
    doc = LATE.to_dict()
    doc["labels"] = {"arrival": "late", "stream": "card-labels"}
    with pytest.raises(ConfigError, match=r"^labels\.stream: .*second stream"):
        refuse_label_stream(parse_contract(doc))
    refuse_label_stream(LATE)  # same stream: fine


# -- the processor with a label stage ---------------------------------------------------------
class FakeScorer:
    """A deterministic model: the score is a function of the amount."""

    def score(self, rows: pa.Table) -> Scored:
        amount = np.asarray(rows.column("amount").to_numpy(zero_copy_only=False), float)
        return Scored(np.round(1 / (1 + np.exp(-(amount - 60) / 40)), 4), "m1")


@dataclass
class FakeStore:
    """JoinStateStore in memory (JSON round trip), logging saves into a shared event list."""

    log: list[str]
    docs: dict[tuple[str, str], str] = field(default_factory=dict)
    fail: bool = False
    closing: bool = False  # the last save holds a closed window still to publish

    def save(self, shard_id: str, last: str, doc: dict[str, Any]) -> str:
        if self.fail:
            raise LakeWriteError("injected")
        self.closing = bool(doc["to_publish"])
        self.docs[(shard_id, last)] = json.dumps(doc)
        self.log.append(f"save:{last}")
        return last

    def load(self, shard_id: str, checkpoint: str | None) -> dict[str, Any] | None:
        text = self.docs.get((shard_id, checkpoint or ""))
        return None if text is None else json.loads(text)

    def prune(self, shard_id: str, keep_from: str) -> int:
        return 0


@dataclass
class FakePublisher:
    log: list[str]
    stream_name: str = "s"
    high_resolution: bool = False
    windows: list[dict[str, float]] = field(default_factory=list)

    def put(self, datums: list[dict[str, Any]]) -> None:
        self.windows.append({d["MetricName"]: d["Value"] for d in datums})
        self.log.append("publish")


@dataclass
class LoggingCheckpointer:
    log: list[str]
    crash_at: int | None = None
    calls: list[str | None] = field(default_factory=list)
    store: FakeStore | None = None  # set: count only checkpoints whose snapshot closed a window
    seen: int = 0

    def checkpoint(self, sequence_number=None, sub_sequence_number=None) -> None:  # type: ignore[no-untyped-def]
        if self.crash_at is not None and (self.store is None or self.store.closing):
            if self.seen == self.crash_at:
                raise Crash
            self.seen += 1
        self.calls.append(sequence_number)
        self.log.append(f"checkpoint:{sequence_number}")


class Crash(Exception):  # noqa: N818 (not an error: the simulated kill)
    pass


def stream(n: int, seed: int, change_rate: float = 0.0) -> tuple[list[RawRecord], dict[str, bool]]:
    """Data records and their label records (80 % labelled), each label 7 records after its data
    record; returns the records in stream order and each labelled id's final label."""
    rows = generate_records(n, seed=seed, contract=LATE)
    plan = plan_labels(LATE, rows, LateLabels(coverage=0.8, change_rate=change_rate, seed=seed))
    slots: list[list[bytes]] = [[] for _ in range(n + 8)]
    for i, d in enumerate(plan.data_rows):
        slots[i].append(encode_record(d))
        slots[i + 7].extend(plan.puts[j].data for j in plan.puts_of[i])
    payloads = [p for s in slots for p in s]
    raws = [RawRecord(p, str(k + 1), "card-1", 1_767_225_600_000) for k, p in enumerate(payloads)]
    return raws, plan.final


def processor(
    lake: FakeLake, store: FakeStore, pub: FakePublisher, clock: list[float], window_s: float
) -> ShardProcessor:
    stage = LateLabelStage(
        LATE,
        scorer=FakeScorer(),  # type: ignore[arg-type]
        publisher=pub,  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        window_s=window_s,
        min_labels=1,
    )
    return ShardProcessor(
        RecordDecoder(LATE),
        lake,  # type: ignore[arg-type]
        FlushPolicy(60, 1 << 30, 1e9),
        clocks=Clocks(monotonic=lambda: clock[0]),
        labels=stage,
    )


def late_lake() -> FakeLake:
    return FakeLake(contract=LATE)


def run(
    raws: list[RawRecord],
    *,
    window_s: float = 1e9,
    crash_at: int | None = None,
    at_close: bool = False,
    batch: int = 25,
) -> tuple[FakePublisher, FakeLake, list[str], LoggingCheckpointer]:
    """Feed ``raws`` in batches (a second per batch); crash at the ``crash_at``-th checkpoint (of
    those whose snapshot closed a window, with ``at_close``) and restart from the last checkpoint
    taken (a new processor, the same lake and store); shut down."""
    log: list[str] = []
    lake, store, pub, clock = late_lake(), FakeStore(log), FakePublisher(log), [0.0]
    cp = LoggingCheckpointer(log, crash_at, store=store if at_close else None)
    p = processor(lake, store, pub, clock, window_s)
    p.initialize("shardId-0", "TRIM_HORIZON")
    i = 0
    while i < len(raws):
        clock[0] += 1.0
        try:
            p.process(raws[i : i + batch], cp)
            i += batch
        except Crash:
            cp.crash_at = None
            last = cp.calls[-1] if cp.calls else "TRIM_HORIZON"
            p = processor(lake, store, pub, clock, window_s)
            p.initialize("shardId-0", last)
            i = int(last) if last.isdigit() else 0
    p.shutdown_requested(cp)
    return pub, lake, log, cp


def test_labels_join_the_scored_records_and_the_window_equals_sklearn() -> None:
    # GIVEN 400 records, 80 % labelled 7 records later
    raws, final = stream(400, seed=3)
    # WHEN processed and shut down
    pub, lake, log, cp = run(raws)
    # THEN the lake got every data record (label column null) and no label record
    ids = [i for rows in lake.rows.values() for i in rows]
    assert len(ids) == 400 and not any(i.startswith("dead:") for i in ids)
    # AND one window was published at shutdown: every label once, scikit-learn's AUC
    (w,) = pub.windows
    scores = {}
    for r in raws:
        doc = json.loads(r.data)
        if "amount" in doc:
            scores[doc["transaction_id"]] = float(
                FakeScorer().score(pa.table({"amount": [doc["amount"]]})).scores[0]
            )
    keys = sorted(final)
    assert w["LabelsJoined"] == len(final) and w["LabelCoverage"] == len(final) / 400
    assert w["QualityAUC"] == pytest.approx(
        roc_auc_score([final[k] for k in keys], [scores[k] for k in keys]), abs=1e-12
    )
    # AND every flush saved its snapshot before its checkpoint; the publish came after both
    for k, entry in enumerate(log):
        if entry.startswith("checkpoint:"):
            assert log[k - 1] == f"save:{entry.split(':')[1]}"
    assert log[-2:] == ["publish", f"save:{cp.calls[-1]}"]


def test_a_failed_snapshot_save_holds_the_checkpoint_back() -> None:
    raws, _ = stream(100, seed=4)
    log: list[str] = []
    lake, store, pub = late_lake(), FakeStore(log, fail=True), FakePublisher(log)
    cp = LoggingCheckpointer(log)
    p = processor(lake, store, pub, [0.0], 1e9)
    p.initialize("shardId-0", "TRIM_HORIZON")
    with pytest.raises(SystemExit) as exc:
        p.process(raws[:80], cp)
    assert exc.value.code == 3 and cp.calls == [] and lake.writes == 1


@pytest.mark.parametrize("crash_at", [0, 1, 3, 5, 8])
def test_a_crash_at_any_checkpoint_counts_every_label_once(crash_at: int) -> None:
    # GIVEN the no-crash run's published figures (labels changing too)
    raws, final = stream(500, seed=7, change_rate=0.1)
    oracle, *_ = run(raws)
    # WHEN the processor crashes at a checkpoint (snapshot saved, checkpoint not taken) and a new
    # one restores from the last checkpoint and replays (committed ranges skipped in the lake)
    pub, lake, _, _ = run(raws, crash_at=crash_at)
    # THEN the published window equals the no-crash one: every labelled id counted once
    assert pub.windows == oracle.windows
    assert oracle.windows[0]["LabelsJoined"] == len(final)
    # AND the lake still holds each data record once
    ids = [i for rows in {k[1:]: v for k, v in lake.rows.items()}.values() for i in rows]
    assert len(ids) == len(set(ids)) == 500


@pytest.mark.parametrize("crash_at", [0, 1, 2])
def test_windows_closing_mid_run_are_published_once_across_a_crash(crash_at: int) -> None:
    # GIVEN windows of 3 s (a batch a second) and no changed labels
    raws, final = stream(500, seed=9)
    # WHEN it crashes at a checkpoint whose snapshot closed a window (not published yet)
    pub, _, _, cp = run(raws, window_s=3.0, crash_at=crash_at, at_close=True)
    assert cp.crash_at is None  # the crash happened
    # THEN several windows were published and their labels sum to the labelled ids, each once
    assert len(pub.windows) > 3
    assert sum(w["LabelsJoined"] for w in pub.windows) == len(final)


def _second_stream_contract(tmp: Path) -> Path:
    text = CARD_LATE_LABELS.read_text()
    text = text.replace('kind_field = "record_kind"\nlabel_kind = "label"\n', 'stream = "labels"\n')
    assert 'stream = "labels"' in text
    path = tmp / "second_stream.toml"
    path.write_text(text)
    return path


def test_contract_check_and_consume_say_a_second_label_stream_is_not_consumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path / "state"))
    path = _second_stream_contract(tmp_path)
    # WHEN the contract is checked THEN it is valid, with a warning naming labels.stream
    assert main(["contract", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "labels.stream = 'labels'" in out and "refuses" in out
    # WHEN the consumer is started on it THEN it refuses before starting, naming labels.stream
    for key, value in {
        "STREAM_NAME": "s",
        "LAKE_BUCKET": "b",
        "GLUE_DATABASE": "d",
        "APPLICATION_NAME": "a",
        "ENDPOINT_URL": "http://127.0.0.1:9",
    }.items():
        monkeypatch.setenv(f"DRIFTLINE_{key}", value)
    rc = main(["consume", "--contract", str(path)])
    err = capsys.readouterr().err
    assert rc != 0 and "labels.stream" in err and "Traceback" not in err


def test_after_a_refused_checkpoint_the_window_is_not_closed_at_the_old_one() -> None:
    from amazon_kclpy.checkpoint_error import CheckpointError

    # GIVEN a lease lost after the first checkpoint (later checkpoints refused)
    class Refusing(LoggingCheckpointer):
        def checkpoint(self, sequence_number=None, sub_sequence_number=None) -> None:  # type: ignore[no-untyped-def]
            if self.calls:
                raise CheckpointError("ShutdownException")
            super().checkpoint(sequence_number)

    raws, _ = stream(200, seed=5)
    log: list[str] = []
    store, pub = FakeStore(log), FakePublisher(log)
    cp = Refusing(log)
    p = processor(late_lake(), store, pub, [0.0], 1e9)
    p.initialize("shardId-0", "TRIM_HORIZON")
    for i in range(0, 150, 25):
        p.process(raws[i : i + 25], cp)
    # WHEN it is asked to shut down
    p.shutdown_requested(cp)
    # THEN the join, which saw records past its checkpoint, publishes nothing: the next owner
    # restores the checkpoint's snapshot and replays them (no window counted twice)
    assert cp.calls == ["75"] and pub.windows == []
    assert json.loads(store.docs[("shardId-0", "75")])["to_publish"] == []


def test_one_search_over_the_batch_finds_exactly_the_label_records() -> None:
    # GIVEN a batch of 600 records, label records scattered among the data records
    raws, final = stream(400, seed=11, change_rate=0.2)
    # WHEN split in one call
    out = LabelRouter(LATE).split(raws, "s")
    # THEN the data records are exactly those without a kind, in order, and every label is a row
    kinds = [json.loads(r.data).get("record_kind") for r in raws]
    assert [r.sequence_number for r in out.data] == [
        r.sequence_number for r, k in zip(raws, kinds, strict=True) if k is None
    ]
    assert len(out.labels) == kinds.count("label") and set(out.labels.ids) == set(final)
    assert out.dead_letters == []
