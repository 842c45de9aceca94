"""Through the real KCL MultiLangDaemon (Java) and the emulator: exactly once, poison routed,
crash and graceful shutdown. Each test pays the KCL's start-up (~30-60 s here)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import awswrangler as wr
import pytest

from consumers.fleet import ConsumerFleet
from etl.aws import AwsClients
from etl.producer import ProduceRun, produce
from etl.settings import Settings
from infra.demo import initialized_shards, wait_until_consuming

pytestmark = pytest.mark.e2e
TABLE = "card_transactions"


def lake_ids(settings: Settings, clients: AwsClients) -> Counter[str]:
    try:
        df = wr.s3.read_parquet(
            f"s3://{settings.lake_bucket}/lake/{TABLE}/",
            dataset=True,
            boto3_session=clients.session,
            columns=["transaction_id"],
        )
    except wr.exceptions.NoFilesFound:
        return Counter()
    return Counter(df["transaction_id"].tolist())


def dead_reasons(settings: Settings, clients: AwsClients) -> Counter[str]:
    s3, out = clients.client("s3"), Counter[str]()
    for o in s3.list_objects_v2(Bucket=settings.lake_bucket, Prefix="dead-letters/").get(
        "Contents", []
    ):
        for line in (
            s3.get_object(Bucket=settings.lake_bucket, Key=o["Key"])["Body"]
            .read()
            .decode()
            .splitlines()
        ):
            out[json.loads(line)["reason"]] += 1
    return out


def wait_for(pred, timeout: float, fleet: ConsumerFleet | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if fleet is not None:
            fleet.supervise_once()
        time.sleep(1.0)
    return False


def test_n_records_in_exactly_n_rows_out_and_poison_routed(pipeline, tmp_path: Path) -> None:
    settings, clients = pipeline
    fleet = ConsumerFleet(settings, 1, tmp_path / "fleet")
    try:
        # GIVEN a running worker
        fleet.start()
        wait_until_consuming(fleet, 2, 180)
        # WHEN 3,000 records with 2 % poison (every kind) are produced
        s = produce(settings, clients, ProduceRun(records=3000, seed=11, poison_rate=0.02))
        poison = sum(s.poison.values())
        # THEN every good record is in the lake exactly once, every poison one a dead letter
        assert wait_for(
            lambda: (
                len(lake_ids(settings, clients)) >= s.good
                and sum(dead_reasons(settings, clients).values()) >= poison
            ),
            120,
            fleet,
        )
        ids = lake_ids(settings, clients)
        assert set(ids) == set(s.good_ids)
        assert max(ids.values()) == 1
        reasons = dead_reasons(settings, clients)
        assert sum(reasons.values()) == poison == 60
        assert set(reasons) == set(s.poison)  # each kind mapped to its own reason
    finally:
        fleet.stop()


def _has_initialized(daemon_log: Path) -> bool:
    """Whether a processor of this worker initialized (a worker with no shard has no log)."""
    log = daemon_log.with_name("processor.log")
    return log.exists() and '"msg": "initialized"' in log.read_text()


def test_kill_9_one_of_two_workers_survivor_takes_over_exactly_once(
    pipeline, tmp_path: Path
) -> None:
    settings, clients = pipeline
    fleet = ConsumerFleet(settings, 2, tmp_path / "fleet", restart=False)
    try:
        fleet.start()
        wait_until_consuming(fleet, 2, 180)
        # WHEN records flow and one worker is killed with SIGKILL (its whole process group)
        first = produce(settings, clients, ProduceRun(records=1500, seed=21, rate=500))
        victim = next(w for w in fleet.members if _has_initialized(w.log_path))
        victim.signal_group(signal.SIGKILL)
        second = produce(settings, clients, ProduceRun(records=1500, seed=22, rate=500))
        expected = set(first.good_ids) | set(second.good_ids)
        # THEN the survivor takes the lease and the lake holds every record exactly once
        assert wait_for(lambda: set(lake_ids(settings, clients)) >= expected, 150)
        ids = lake_ids(settings, clients)
        assert set(ids) == expected
        assert max(ids.values()) == 1, "a record is in the lake twice"
        assert not victim.alive()
    finally:
        fleet.stop()


@pytest.mark.parametrize(
    "pipeline", [{"flush_max_records": 100_000, "flush_max_age_s": 3600.0}], indirect=True
)
def test_sigterm_flushes_buffered_records_and_checkpoints(pipeline, tmp_path: Path) -> None:
    settings, clients = pipeline
    fleet = ConsumerFleet(settings, 1, tmp_path / "fleet", restart=False)
    try:
        fleet.start()
        wait_until_consuming(fleet, 2, 180)
        s = produce(settings, clients, ProduceRun(records=800, seed=31))
        time.sleep(8)  # delivered to the processors, but far below any flush limit
        assert lake_ids(settings, clients) == Counter()
        # WHEN the daemon gets SIGTERM
        rc = fleet.members[0].stop(timeout=60)
        # THEN shutdown_requested flushed everything and checkpointed it
        ids = lake_ids(settings, clients)
        assert set(ids) == set(s.good_ids) and max(ids.values()) == 1
        leases = clients.client("dynamodb").scan(TableName=settings.application_name)["Items"]
        checkpoints = {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in leases}
        assert all(c.isdigit() for c in checkpoints.values()), checkpoints
        assert rc is not None
    finally:
        fleet.stop()


def test_initialized_shards_reads_processor_logs(tmp_path: Path) -> None:
    (tmp_path / "worker-0").mkdir()
    (tmp_path / "worker-0" / "processor.log").write_text(
        'noise\n{"msg": "initialized", "shard": "shardId-1"}\n'
        '{"msg": "flushed", "shard": "shardId-2"}\n'
    )
    assert initialized_shards(tmp_path) == {"shardId-1"}
