"""The labels table's rows and the retrain's reader of it (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest

from etl.contract import load_contract, parse_contract
from etl.exceptions import ContractError
from etl.label_lake import LABEL_TIME, label_rows, labels_contract
from retrain.data import join_labels, latest_labels
from tests.contracts import CARD_LATE_LABELS

LATE = load_contract(CARD_LATE_LABELS)
T = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_labels_contract_keeps_the_id_and_label_types_and_the_label_time_is_its_event_time():
    c = labels_contract(LATE)
    assert (c.name, c.partition_key, c.task) == (
        "card_late_labels_labels",
        "transaction_id",
        LATE.task,
    )
    assert [(f.name, f.type.value, f.role.value) for f in c.fields] == [
        ("transaction_id", "string", "id"),
        ("is_fraud", "bool", "label"),
        ("labelled_at", "timestamp", "event_time"),
    ]
    # without [labels] time_field the label's arrival time gets its own column name
    doc = LATE.to_dict()
    doc["labels"] = {k: v for k, v in doc["labels"].items() if k != "time_field"}
    assert labels_contract(parse_contract(doc)).event_time_field.name == LABEL_TIME


def test_an_inline_contract_has_no_labels_table():
    with pytest.raises(ContractError, match="no late labels"):
        labels_contract(load_contract())


def test_label_rows_are_typed_by_the_contract_with_the_records_identity():
    t = label_rows(
        labels_contract(LATE),
        ids=["a", "b"],
        labels=[1.0, 0.0],
        times_s=[T.timestamp() + 1.5, T.timestamp() + 3600],
        identity=("shardId-1", ["7", "12"], [1_767_225_600_123, None]),
        ingest_time=T,
    )
    assert t.schema == labels_contract(LATE).arrow_schema(with_metadata=True)
    rows = t.to_pylist()
    assert [r["is_fraud"] for r in rows] == [True, False]
    assert rows[0]["labelled_at"] == datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert rows[1]["labelled_at"] == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert [r["sequence_number"] for r in rows] == ["7", "12"]
    assert rows[0]["approximate_arrival_time"] == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert rows[1]["approximate_arrival_time"] is None and rows[1]["shard_id"] == "shardId-1"
    assert t.column("is_fraud").type == pa.bool_()


def _labels(rows: list[tuple[str, bool, int, int | None, str]]) -> pd.DataFrame:
    """(id, label, label time s, arrival s or None, sequence number)"""
    return pd.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "is_fraud": [r[1] for r in rows],
            "labelled_at": [pd.Timestamp(T) + pd.Timedelta(seconds=r[2]) for r in rows],
            "approximate_arrival_time": [
                None if r[3] is None else pd.Timestamp(T) + pd.Timedelta(seconds=r[3]) for r in rows
            ],
            "sequence_number": [r[4] for r in rows],
        }
    )


def test_the_latest_label_is_the_last_in_stream_order_not_in_table_order():
    labels = _labels(
        [
            ("a", False, 50, 10, "10"),  # a: sent second (sequence 10 > 9 as numbers)
            ("a", True, 40, 10, "9"),
            ("b", True, 0, 5, "3"),
            ("b", False, 0, 4, "4"),  # b: an earlier arrival despite a later sequence
            ("c", True, 30, None, "1"),  # no arrival: its label time orders it
            ("c", False, 20, None, "2"),
        ]
    )
    got = latest_labels(labels, LATE)
    assert dict(zip(got["transaction_id"], got["is_fraud"], strict=True)) == {
        "a": False,
        "b": True,
        "c": True,
    }


def test_records_get_their_latest_label_and_the_unlabelled_stay_null_in_order():
    records = pd.DataFrame(
        {
            "transaction_id": ["x", "a", "b"],
            "amount": [1.0, 2.0, 3.0],
            "is_fraud": [None, None, None],
        }
    )
    labels = _labels([("a", True, 1, 1, "1"), ("a", False, 2, 2, "2"), ("b", True, 1, 1, "3")])
    out = join_labels(records, labels, LATE)
    assert list(out.columns) == list(records.columns)
    assert out["transaction_id"].tolist() == ["x", "a", "b"]
    assert out["is_fraud"].tolist()[1:] == [False, True] and pd.isna(out["is_fraud"].iloc[0])
    # no labels at all: every record unlabelled
    none = join_labels(records, _labels([]), LATE)
    assert none["is_fraud"].isna().all() and len(none) == 3
