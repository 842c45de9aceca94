"""Late labels through the real KCL daemon: label records on the records' stream, joined with the
served model's scores in the record processors, one processor killed with SIGKILL mid-run.

One stack and one daemon run serve both claims (the e2e budget): the published quality figures
are scikit-learn's on the (score, label) pairs rebuilt independently (lake rows read back and
scored here, labels from the producer), and after the kill -9 every labelled id counts exactly
once (the published LabelsJoined sum to the distinct labels produced), so the figures equal what
a run without the crash gives (the oracle does not depend on the crash)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import awswrangler as wr
import pytest

from bench._fleet import events, kill9, live_processors
from consumers.fleet import ConsumerFleet
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.keys import sequence_key
from etl.label_producer import LateLabels
from etl.producer import ProduceRun, ProduceSummary, produce
from etl.settings import Settings, load_settings
from infra.demo import wait_until_consuming
from infra.emulator import EmulatorProcess
from tests.contracts import CARD_LATE_LABELS
from tests.e2e.test_kcl_pipeline import dead_reasons, wait_for
from tests.late_labels import oracle, published, serve_model

pytestmark = pytest.mark.e2e
LATE = load_contract(CARD_LATE_LABELS)
MODEL = "card-late-labels"


def _stack(endpoint: str, cache: Path) -> tuple[Settings, AwsClients]:
    suffix = uuid.uuid4().hex[:8]
    clients = AwsClients(endpoint_url=endpoint)
    configure_awswrangler(endpoint)
    bucket, db, stream = f"lake-{suffix}", f"db_{suffix}", f"stream-{suffix}"
    clients.client("s3").create_bucket(Bucket=bucket)
    clients.client("glue").create_database(DatabaseInput={"Name": db})
    kinesis = clients.client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    settings = load_settings(
        {
            "endpoint_url": endpoint,
            "stream_name": stream,
            "lake_bucket": bucket,
            "glue_database": db,
            "application_name": f"app-{suffix}",
            "contract_path": str(CARD_LATE_LABELS.resolve()),
            "quality_scoring": True,
            "model_cache_dir": str(cache),
            "drift_window_s": 3600.0,  # the windows close at shutdown: one per shard
            "quality_min_labels": 1,
            "flush_max_records": 300,
            "flush_max_age_s": 1.0,
        },
        env={},
        config_path=None,
    )
    return settings, clients


def _last_sequences(clients: AwsClients, stream: str) -> dict[str, str]:
    """The last sequence number on each shard (read back from the stream)."""
    kinesis, out = clients.client("kinesis"), {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        sid = shard["ShardId"]
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
            if resp["Records"]:
                out[sid] = resp["Records"][-1]["SequenceNumber"]
            if not resp["Records"] or resp.get("MillisBehindLatest", 0) == 0:
                break
            it = resp.get("NextShardIterator")
    return out


def _checkpointed(clients: AwsClients, app: str, last: dict[str, str]) -> bool:
    items = clients.client("dynamodb").scan(TableName=app)["Items"]
    got = {i["leaseKey"]["S"]: i.get("checkpoint", {}).get("S", "") for i in items}
    return all(
        got.get(s, "").isdigit() and sequence_key(got[s]) >= sequence_key(seq)
        for s, seq in last.items()
    )


def test_late_labels_joined_through_the_daemon_exactly_once_across_a_kill_9(
    e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # GIVEN a served model, a 2-shard stream and one worker consuming the late-label contract
    cache = serve_model(tmp_path / "model", MODEL)
    settings, clients = _stack(e2e_emulator.endpoint, cache)
    work = tmp_path / "fleet"
    fleet = ConsumerFleet(settings, 1, work)
    box: list[ProduceSummary] = []
    try:
        fleet.start()
        wait_until_consuming(fleet, 2, 180)
        # WHEN 2,000 records flow with labels 1 s late (80 % labelled, 10 % changed) ...
        run = ProduceRun(
            records=2000,
            rate=400,
            seed=61,
            start=datetime.now(UTC),
            labels=LateLabels(delay_s=1.0, coverage=0.8, change_rate=0.1, seed=61),
        )
        producer = threading.Thread(
            target=lambda: box.append(produce(settings, clients, run, contract=LATE))
        )
        producer.start()
        # ... and, once both shards flushed (labels among them), one processor is killed -9
        assert wait_for(lambda: len({e.shard for e in events(work, "flushed")}) == 2, 60)
        time.sleep(1.5)
        before = live_processors(work)
        victim = sorted(before)[0]
        killed_at = time.time()
        kill9(before[victim])
        producer.join()
        (summary,) = box
        # AND two defective label records are put
        clients.client("kinesis").put_records(
            StreamName=settings.stream_name,
            Records=[
                {
                    "Data": b'{"record_kind":"label","card_id":"c","is_fraud":true}',
                    "PartitionKey": "c",
                },
                {
                    "Data": b'{"record_kind":"label","transaction_id":"x","is_fraud":3}',
                    "PartitionKey": "x",
                },
            ],
        )
        last = _last_sequences(clients, str(settings.stream_name))
        assert wait_for(
            lambda: _checkpointed(clients, str(settings.application_name), last), 120, fleet
        )
        # (the victim's shard was taken over by a new processor, restored from its snapshot)
        assert live_processors(work)[victim] != before[victim]
        assert any(
            e.shard == victim and e.ts > killed_at for e in events(work, "label join restored")
        )
    finally:
        fleet.stop()  # shutdown_requested: each processor closes and publishes its window
    # THEN the lake holds each data record once, with a null label column (the lake keeps what
    # arrived), and the defective label records are dead letters with their reasons
    lake = wr.s3.read_parquet(
        f"s3://{settings.lake_bucket}/lake/{LATE.name}/",
        dataset=True,
        boto3_session=clients.session,
    )
    assert len(lake) == lake["transaction_id"].nunique() == 2000
    assert lake["is_fraud"].isna().all()
    assert dead_reasons(settings, clients) == {"missing_required": 1, "wrong_type": 1}
    # AND every labelled id was counted exactly once in the published windows
    cw = clients.client("cloudwatch")
    joined = published(cw, settings.metrics_namespace, str(settings.stream_name), "LabelsJoined")
    assert sum(joined) == len(summary.labels) and len(joined) == 2
    # AND each shard's window is scikit-learn's AUC and the coverage on its joined pairs
    want: dict[str, dict[str, Any]] = oracle(lake, summary.labels, cache, MODEL)
    assert joined == sorted(w["labels"] for w in want.values())
    coverage = published(cw, settings.metrics_namespace, str(settings.stream_name), "LabelCoverage")
    assert coverage == sorted(w["coverage"] for w in want.values())
    auc = published(cw, settings.metrics_namespace, str(settings.stream_name), "QualityAUC")
    assert auc == pytest.approx(sorted(w["auc"] for w in want.values()), abs=1e-12)
