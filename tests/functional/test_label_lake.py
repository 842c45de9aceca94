"""Late label records in the lake, through real parts on the emulator: the record processor as the
consumer builds it (``consumers.app.build_processor``) writes the labels table
``<contract>_labels`` in the records' flush, exactly once across crashes (inside a flush and at a
checkpoint) and their replays; DuckDB reads it back; a retrain on the late contract trains on the
records joined with their latest label, and its holdout AUC is scikit-learn's on those rows."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from consumers.app import build_processor
from consumers.processor import ShardProcessor
from etl.aws import AwsClients
from etl.contract import load_contract
from etl.label_producer import LabelPlan, LateLabels, plan_labels
from etl.query import LakeQuery
from etl.records import RawRecord
from etl.settings import Settings, load_settings
from etl.synthetic import encode_record, generate_records
from retrain.results import OutcomeStatus
from retrain.run import run_retrain
from tests.contracts import CARD_LATE_LABELS
from tests.late_labels import score_rows
from tests.unit.test_late_labels import Crash, LoggingCheckpointer

pytestmark = pytest.mark.functional
LATE = load_contract(CARD_LATE_LABELS)
SHARD = "shardId-000000000000"
T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def _settings(aws: AwsClients, tmp: Path, **more: Any) -> Settings:
    return load_settings(
        {
            "endpoint_url": aws.endpoint_url,
            "stream_name": "s-late",
            "lake_bucket": "lake",
            "glue_database": "db",
            "contract_path": str(CARD_LATE_LABELS),
            "model_cache_dir": str(tmp / "models"),
            "flush_max_records": 150,
            **more,
        },
        env={},
        config_path=None,
    )


def _stream(n: int, seed: int, *, change_rate: float) -> tuple[list[RawRecord], LabelPlan]:
    """Data records, each labelled one (75 %) 5 records later; labels changed at ``change_rate``
    (the changed one right after the first: last one wins), 1 s between records."""
    rows = generate_records(n, seed=seed, contract=LATE, start=T0, events_per_second=1.0)
    plan = plan_labels(LATE, rows, LateLabels(delay_s=60, coverage=0.75, change_rate=change_rate))
    slots: list[list[bytes]] = [[] for _ in range(n + 5)]
    for i, d in enumerate(plan.data_rows):
        slots[i].append(encode_record(d))
        slots[i + 5].extend(plan.puts[j].data for j in plan.puts_of[i])
    payloads = [p for s in slots for p in s]
    arrival = int(T0.timestamp() * 1000)
    raws = [RawRecord(p, str(k + 1), "pk", arrival + 10 * k) for k, p in enumerate(payloads)]
    return raws, plan


def _consume(
    settings: Settings,
    aws: AwsClients,
    raws: list[RawRecord],
    cp: Any,
    fault: Callable[[str], None] | None = None,
) -> int:
    """Run the processor over ``raws`` in batches of 40; after a crash a new processor restarts
    from the last checkpoint and the records after it come again. Returns the crashes."""
    crashes = 0

    def start(checkpoint: str) -> ShardProcessor:
        p = build_processor(settings, LATE, aws)
        if fault is not None:  # the records' writer: its flush protocol's test hook
            p.writer.options = replace(p.writer.options, fault=fault)
        p.initialize(SHARD, checkpoint)
        return p

    p, i = start("TRIM_HORIZON"), 0
    while i < len(raws):
        try:
            p.process(raws[i : i + 40], cp)
            i += 40
        except Crash:
            crashes += 1
            if cp.crash_at is not None and cp.seen == cp.crash_at:
                cp.crash_at = None  # the checkpoint's crash: once
            last = next((c for c in reversed(cp.calls) if c is not None), None)
            p, i = start(last or "TRIM_HORIZON"), int(last or 0)
    p.shutdown_requested(cp)
    return crashes


def test_label_records_land_in_their_table_exactly_once_across_crashes(
    aws: AwsClients, tmp_path: Path
) -> None:
    # GIVEN a lake bucket, a Glue database, and 600 records of the late contract whose labels
    # follow them (75 %, 10 % changed), routed but not joined (no model: quality_scoring off)
    aws.client("s3").create_bucket(Bucket="lake")
    aws.client("glue").create_database(DatabaseInput={"Name": "db"})
    settings = _settings(aws, tmp_path)
    raws, plan = _stream(600, seed=21, change_rate=0.1)
    labelled = {r.sequence_number for r in raws if b'"record_kind"' in r.data}
    # WHEN the processor crashes inside its 2nd flush (labels table written, the records' manifest
    # still pending) and at its 4th checkpoint (both committed, not checkpointed), and restarts
    faults = {"n": 0}

    def fault(point: str) -> None:
        if point == "after_companion":
            faults["n"] += 1
            if faults["n"] == 2:
                raise Crash

    cp = LoggingCheckpointer([], crash_at=3)
    crashes = _consume(settings, aws, raws, cp, fault)
    assert crashes == 2 and faults["n"] > 2
    # THEN DuckDB reads every label record once: as many rows as label records produced, each
    # (shard, sequence number) once, each id once per label version it was sent
    q = LakeQuery("lake", clients=aws, contract=LATE)
    got = q.query(
        "SELECT transaction_id, is_fraud, labelled_at, shard_id, sequence_number, event_date,"
        " event_hour FROM card_late_labels_labels"
    ).rows
    assert len(got) == len(plan.puts) == len(labelled)
    assert {r[4] for r in got} == labelled and {r[3] for r in got} == {SHARD}
    assert Counter((r[0], r[1]) for r in got) == Counter((p.record_id, p.label) for p in plan.puts)
    # AND the labels carry their own time and are partitioned by it
    sent = {
        (p.record_id, p.label): json.loads(p.data)["labelled_at"] for p in plan.puts
    }  # (a changed label differs from its first in value)
    for rid, label, when, _, _, day, hour in got:
        assert when == datetime.fromisoformat(sent[(rid, label)].replace("Z", "+00:00"))
        assert (day, hour) == (when.strftime("%Y-%m-%d"), when.strftime("%H"))
    # AND the records table holds each data record once (its label column null), as before
    (n, ids, nulls) = q.query(
        "SELECT count(*), count(DISTINCT transaction_id), count(*) - count(is_fraud)"
        " FROM card_late_labels"
    ).rows[0]
    assert n == ids == nulls == 600
    # AND the labels table's manifests are all committed, ranges equal to the records' ones
    s3 = aws.client("s3")

    def manifests(table: str) -> dict[tuple[str, str], str]:
        out = {}
        for o in s3.list_objects_v2(Bucket="lake", Prefix=f"manifests/{table}/")["Contents"]:
            doc = json.loads(s3.get_object(Bucket="lake", Key=o["Key"])["Body"].read())
            out[(doc["first_sequence"], doc["last_sequence"])] = doc["state"]
        return out

    lab, rec = manifests("card_late_labels_labels"), manifests("card_late_labels")
    assert set(lab.values()) == {"committed"} and set(lab) <= set(rec)
    # AND the Glue catalog has the table with its partitions (the label hours)
    glue = aws.client("glue")
    table = glue.get_table(DatabaseName="db", Name="card_late_labels_labels")["Table"]
    cols = [c["Name"] for c in table["StorageDescriptor"]["Columns"]]
    assert cols[:3] == ["transaction_id", "is_fraud", "labelled_at"]
    parts = glue.get_partitions(DatabaseName="db", TableName="card_late_labels_labels")
    assert {tuple(p["Values"]) for p in parts["Partitions"]} == {(r[5], r[6]) for r in got}


def test_a_retrain_on_a_late_contract_trains_on_the_records_joined_with_their_latest_label(
    aws: AwsClients, tmp_path: Path
) -> None:
    # GIVEN 1500 records of the late contract in the lake through the processor, 75 % labelled
    # (20 % of those changed: the last one counts), the rest still waiting for their label
    aws.client("s3").create_bucket(Bucket="lake")
    aws.client("glue").create_database(DatabaseInput={"Name": "db"})
    settings = _settings(aws, tmp_path, retrain_window_hours=2.0, retrain_min_rows=200)
    raws, plan = _stream(1500, seed=33, change_rate=0.2)
    _consume(settings, aws, raws, LoggingCheckpointer([]))
    # WHEN a retrain runs at the end of the labels
    outcome = run_retrain(settings, aws, event=None, now=T0 + timedelta(minutes=40))
    # THEN it trained on the labelled records only and counted the others in its record
    assert outcome.status == OutcomeStatus.PROMOTED, outcome.reason
    records = LakeQuery("lake", clients=aws, contract=LATE).query("SELECT * FROM card_late_labels")
    lake = pd.DataFrame(records.rows, columns=records.columns)
    # (the oracle: the lake's records read by DuckDB, each with its last label as produced)
    labelled = lake[lake["transaction_id"].isin(plan.final.keys())].copy()
    labelled["is_fraud"] = [plan.final[k] for k in labelled["transaction_id"]]
    assert outcome.train_rows + outcome.holdout_rows == len(labelled) == len(plan.final)
    assert outcome.unlabelled_rows == len(lake) - len(labelled) == 1500 - len(plan.final)
    # AND the holdout is the newest labelled records, with their latest labels
    run = f"s3://lake/retrain/{outcome.run_id}"
    test = pd.read_parquet(_download(aws, outcome.run_id, "test", tmp_path))
    newest = labelled.sort_values("event_time", kind="stable").tail(outcome.holdout_rows)
    assert set(test["transaction_id"]) == set(newest["transaction_id"]), run
    got = dict(zip(test["transaction_id"], test["is_fraud"], strict=True))
    assert got == {k: plan.final[k] for k in newest["transaction_id"]}
    # AND its holdout AUC is scikit-learn's on those rows, scored by the trained model
    scores = score_rows(newest, tmp_path / "models", "card-late-labels")
    want = roc_auc_score(newest["is_fraud"].astype(bool), scores)
    assert outcome.metrics_challenger["roc_auc"] == pytest.approx(want, abs=1e-9)


def _download(aws: AwsClients, run_id: str, channel: str, tmp: Path) -> Path:
    """The run's ``channel`` Parquet as uploaded to S3 (what the training job read)."""
    s3 = aws.client("s3")
    found = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket="lake")["Contents"]
        if run_id in o["Key"] and f"/{channel}/" in o["Key"] and o["Key"].endswith(".parquet")
    ]
    assert len(found) == 1, found
    out = tmp / f"{channel}.parquet"
    s3.download_file("lake", found[0], str(out))
    return out
