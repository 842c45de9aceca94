"""Late labels through the record processor's real parts on the emulator (no daemon): the
processor built as the consumer builds it (``consumers.app.build_processor``), the real lake
writer, the join's snapshots on S3, a trained model served from the model cache, the windows
published to CloudWatch; a crash at a checkpoint, a restart from the lake and the snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import awswrangler as wr
import pytest

from consumers.app import build_processor
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.label_producer import LateLabels, plan_labels
from etl.records import RawRecord
from etl.settings import load_settings
from etl.synthetic import encode_record, generate_records
from tests.contracts import CARD_LATE_LABELS
from tests.late_labels import oracle, published, serve_model
from tests.unit.test_late_labels import Crash, LoggingCheckpointer

pytestmark = pytest.mark.functional
LATE = load_contract(CARD_LATE_LABELS)
MODEL = "card-late-labels"


def test_the_join_on_real_parts_survives_a_crash_and_publishes_sklearns_figures(
    aws: AwsClients, tmp_path: Path
) -> None:
    # GIVEN a served model, a lake bucket, and the late-label contract's consumer settings
    cache = serve_model(tmp_path, MODEL)
    aws.client("s3").create_bucket(Bucket="lake")
    aws.client("glue").create_database(DatabaseInput={"Name": "db"})
    configure_awswrangler(aws.endpoint_url)
    settings = load_settings(
        {
            "endpoint_url": aws.endpoint_url,
            "stream_name": "s-late",
            "lake_bucket": "lake",
            "glue_database": "db",
            "contract_path": str(CARD_LATE_LABELS),
            "quality_scoring": True,
            "model_cache_dir": str(cache),
            "drift_window_s": 3600.0,
            "quality_min_labels": 1,
            "flush_max_records": 150,
        },
        env={},
        config_path=None,
    )
    # AND 600 records, 75 % labelled 5 records later, 10 % of labels changed, 2 bad label records
    rows = generate_records(600, seed=12, contract=LATE)
    plan = plan_labels(LATE, rows, LateLabels(coverage=0.75, change_rate=0.1, seed=12))
    slots: list[list[bytes]] = [[] for _ in range(606)]
    for i, d in enumerate(plan.data_rows):
        slots[i].append(encode_record(d))
        slots[i + 5].extend(plan.puts[j].data for j in plan.puts_of[i])
    slots[100].append(b'{"record_kind":"label","card_id":"c","is_fraud":true}')
    slots[300].append(b'{"record_kind":"label","transaction_id":"x","is_fraud":"maybe"}')
    payloads = [p for s in slots for p in s]
    raws = [RawRecord(p, str(k + 1), "pk", 1_767_225_600_000) for k, p in enumerate(payloads)]
    # WHEN the processor runs, crashes at its 4th checkpoint (snapshot saved, not checkpointed),
    # and a new one restores from the checkpoint and replays the rest
    cp = LoggingCheckpointer([], crash_at=3)
    p = build_processor(settings, LATE, aws)
    p.initialize("shardId-000000000000", "TRIM_HORIZON")
    i = 0
    while i < len(raws):
        try:
            p.process(raws[i : i + 40], cp)
            i += 40
        except Crash:
            cp.crash_at = None
            last = str(cp.calls[-1])
            p = build_processor(settings, LATE, aws)
            p.initialize("shardId-000000000000", last)
            i = int(last)
    p.shutdown_requested(cp)
    # THEN the lake holds each data record once, with a null label column
    lake = wr.s3.read_parquet(
        "s3://lake/lake/card_late_labels/", dataset=True, boto3_session=aws.session
    )
    assert len(lake) == lake["transaction_id"].nunique() == 600
    assert lake["is_fraud"].isna().all()
    # AND the two bad label records are dead letters with their reasons
    s3 = aws.client("s3")
    letters = [
        json.loads(line)
        for o in s3.list_objects_v2(Bucket="lake", Prefix="dead-letters/")["Contents"]
        for line in s3.get_object(Bucket="lake", Key=o["Key"])["Body"].read().splitlines()
    ]
    assert sorted(d["reason"] for d in letters) == ["missing_required", "wrong_type"]
    # AND one window was published: scikit-learn's figures on the joined pairs, each label once
    want = oracle(lake, plan.final, cache, MODEL)["shardId-000000000000"]
    cw = aws.client("cloudwatch")
    assert published(cw, "Driftline", "s-late", "LabelsJoined") == [want["labels"]]
    assert published(cw, "Driftline", "s-late", "LabelCoverage") == [want["coverage"]]
    (auc,) = published(cw, "Driftline", "s-late", "QualityAUC")
    assert auc == pytest.approx(want["auc"], abs=1e-12)
    assert want["labels"] == len(plan.final) and cp.crash_at is None  # (the crash happened)
    # AND the snapshot at the last checkpoint is on S3 and holds nothing left to publish
    key = f"quality-state/card_late_labels/shardId-000000000000/{int(cp.calls[-1]):056d}.json"
    doc = json.loads(s3.get_object(Bucket="lake", Key=key)["Body"].read())
    assert doc["to_publish"] == [] and doc["counts"]["joined"] == len(plan.final)
