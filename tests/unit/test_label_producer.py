"""Late label records from the producer: which records get one, what they carry, when they go."""

from __future__ import annotations

import json
from typing import Any

import pytest

from etl.contract import load_contract
from etl.label_producer import LateLabels, plan_labels
from etl.producer import KinesisProducer, LabelSchedule, _put_paced
from etl.synthetic import generate_records
from tests.contracts import CARD_LATE_LABELS

LATE = load_contract(CARD_LATE_LABELS)


def test_data_records_lose_their_label_and_label_records_carry_id_key_label_kind_time() -> None:
    # GIVEN 2,000 generated rows, coverage 0.7, 10 % changed, a 30 s delay
    rows = generate_records(2000, seed=3, contract=LATE)
    plan = plan_labels(LATE, rows, LateLabels(delay_s=30, coverage=0.7, change_rate=0.1, seed=5))
    # THEN no data record carries the label, the kind or the label time
    assert all(not {"is_fraud", "record_kind", "labelled_at"} & set(r) for r in plan.data_rows)
    # AND about 70 % of the ids are labelled (seeded), 10 % of those twice, the second changed
    firsts = [p for p in plan.puts if not p.changed]
    changed = [p for p in plan.puts if p.changed]
    assert 0.65 < len(firsts) / 2000 < 0.75 and 0.07 < len(changed) / len(firsts) < 0.13
    by_id = {r["transaction_id"]: r for r in rows}
    for p in plan.puts:
        doc = json.loads(p.data)
        row = by_id[p.record_id]
        assert set(doc) == {"transaction_id", "card_id", "is_fraud", "record_kind", "labelled_at"}
        assert doc["record_kind"] == "label" and p.partition_key == row["card_id"]
        assert doc["is_fraud"] == (not row["is_fraud"] if p.changed else row["is_fraud"])
        assert p.due_s == (60.0 if p.changed else 30.0)
    # AND the last label per id is the final one; the same seed gives the same plan
    assert plan.final == {p.record_id: p.label for p in plan.puts}
    again = plan_labels(LATE, rows, LateLabels(delay_s=30, coverage=0.7, change_rate=0.1, seed=5))
    assert [p.data for p in again.puts] == [p.data for p in plan.puts]


def test_label_time_is_the_event_time_plus_the_delay() -> None:
    rows = generate_records(3, seed=1, contract=LATE)
    plan = plan_labels(LATE, rows, LateLabels(delay_s=12.5))
    doc = json.loads(plan.puts[0].data)
    assert rows[0]["event_time"] == "2026-01-01T00:00:00.000000Z"
    assert doc["labelled_at"] == "2026-01-01T00:00:12.500000Z"


def test_poison_rows_get_no_label_and_bad_options_are_refused() -> None:
    rows = generate_records(10, seed=1, contract=LATE)
    plan = plan_labels(LATE, rows, LateLabels(), skip=frozenset({0, 4}))
    assert plan.puts_of[0] == [] and plan.puts_of[4] == [] and len(plan.puts) == 8
    with pytest.raises(ValueError, match="coverage"):
        LateLabels(coverage=1.5)
    with pytest.raises(ValueError, match="delay"):
        LateLabels(delay_s=-1)
    with pytest.raises(ValueError, match="no late labels"):
        plan_labels(load_contract(), rows, LateLabels())


class _FakeKinesis:
    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.puts: list[tuple[float, list[bytes]]] = []

    def put_records(self, *, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.puts.append((self.clock[0], [r["Data"] for r in Records]))
        return {
            "FailedRecordCount": 0,
            "Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records],
        }


def test_labels_go_out_their_delay_after_their_data_record_paced() -> None:
    # GIVEN 100 records at 50/s with labels 1.0 s late, on a fake clock
    clock = [0.0]
    kinesis = _FakeKinesis(clock)
    rows = generate_records(100, seed=2, contract=LATE)
    plan = plan_labels(LATE, rows, LateLabels(delay_s=1.0))
    producer = KinesisProducer(kinesis, "s", sleep=lambda s: None)

    def sleep(s: float) -> None:
        clock[0] += s

    # WHEN the data is put with the schedule
    schedule = LabelSchedule(producer, plan)
    _put_paced(
        producer, [(b"d%d" % i, "k") for i in range(100)], 50.0, sleep, lambda: clock[0], schedule
    )
    # THEN every label went out once, none before its data record's put + 1 s
    data_at = {d: t for t, batch in kinesis.puts for d in batch if d.startswith(b"d")}
    label_at = {d: t for t, batch in kinesis.puts for d in batch if not d.startswith(b"d")}
    assert len(label_at) == 100 and len(data_at) == 100
    for i, p in enumerate(plan.puts):
        assert label_at[p.data] >= data_at[b"d%d" % i] + 1.0 - 1e-9
        assert label_at[p.data] <= data_at[b"d%d" % i] + 1.0 + 0.2  # within a chunk's time
