"""Supervision through the real KCL daemon: a killed record processor is restarted in place by
its relay (the daemon and the worker's other shards never notice), and a fleet dies with its
supervisor, whatever kills it, leaving nothing behind. Timings are in ``bench.recovery``."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import awswrangler as wr
import pytest

from bench._fleet import (
    events,
    fleet_processes,
    kill9,
    live_processors,
    start_supervisor,
    wait_gone,
)
from consumers.fleet import ConsumerFleet
from etl.producer import ProduceRun, ProduceSummary, produce
from infra import local
from infra.demo import wait_until_consuming
from tests.e2e.test_kcl_pipeline import TABLE, lake_ids, wait_for

pytestmark = pytest.mark.e2e
FAST = {"flush_max_records": 500, "flush_max_age_s": 1.0}


def assert_exactly_once(settings, clients, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    """The lake holds each expected id once; a failure names where each duplicate lies."""
    df = wr.s3.read_parquet(
        f"s3://{settings.lake_bucket}/lake/{TABLE}/",
        dataset=True,
        boto3_session=clients.session,
        columns=["transaction_id", "shard_id", "sequence_number"],
    )
    counts = df["transaction_id"].value_counts()
    dupes = df[df["transaction_id"].isin(counts[counts > 1].index)].sort_values("transaction_id")
    assert dupes.empty, f"duplicates in the lake:\n{dupes.head(20).to_string()}"
    assert set(df["transaction_id"]) == expected


def produce_in_background(settings, clients, **kwargs) -> tuple[threading.Thread, list]:  # type: ignore[no-untyped-def]
    box: list[ProduceSummary] = []
    t = threading.Thread(
        target=lambda: box.append(produce(settings, clients, ProduceRun(**kwargs)))
    )
    t.start()
    return t, box


@pytest.mark.parametrize("pipeline", [FAST], indirect=True)
def test_a_killed_processor_restarts_in_place_and_its_workers_other_shard_never_stops(
    pipeline, tmp_path: Path
) -> None:
    settings, clients = pipeline
    work = tmp_path / "fleet"
    fleet = ConsumerFleet(settings, 1, work)
    try:
        # GIVEN one worker processing both shards while records flow
        fleet.start()
        java = fleet.members[0].pid
        wait_until_consuming(fleet, 2, 180)
        producer, box = produce_in_background(settings, clients, records=6000, rate=400, seed=41)
        assert wait_for(lambda: len({e.shard for e in events(work, "flushed")}) == 2, 60)
        before = live_processors(work)
        victim_shard, survivor_shard = sorted(before)
        # WHEN the record processor of one shard is killed with SIGKILL
        killed_at = time.time()
        kill9(before[victim_shard])
        producer.join()
        (summary,) = box
        # THEN every record is in the lake exactly once
        assert wait_for(lambda: len(lake_ids(settings, clients)) >= summary.good, 120)
        assert_exactly_once(settings, clients, set(summary.good_ids))
        # AND a new processor took the victim's shard over after the kill, in the same daemon
        after = live_processors(work)
        assert after[victim_shard] != before[victim_shard]
        assert fleet.members[0].pid == java and fleet.members[0].restarts == 0
        assert any(
            e.shard == victim_shard and e.pid == after[victim_shard] and e.ts > killed_at
            for e in events(work, "flushed")
        )
        # AND the other shard's processor was never replaced (it never stopped)
        assert after[survivor_shard] == before[survivor_shard]
        assert [e.pid for e in events(work, "initialized") if e.shard == survivor_shard] == [
            before[survivor_shard]
        ]
    finally:
        fleet.stop()


def test_the_fleet_dies_with_its_supervisor_and_one_fleet_runs_per_folder(
    pipeline, tmp_path: Path
) -> None:
    settings, _ = pipeline
    state = tmp_path / "state"
    work = state / "consumers"
    # GIVEN a supervisor (`driftline consume`) running two daemons and their processors
    first = start_supervisor(settings, work, 2)
    try:
        assert wait_for(lambda: len(live_processors(work)) == 2, 180)
        tree = fleet_processes(work)
        assert len(tree) >= 1 + 2 + 2 * 2  # supervisor, 2 java, a relay + processor per shard
        # WHEN the supervisor is killed with SIGKILL
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # THEN every process of its fleet goes with it
        assert wait_gone(tree, 15) == []
        # AND a new supervisor runs in the same folder, appending to the same logs
        log_before = (work / "worker-0" / "daemon.log").stat().st_size
        second = start_supervisor(settings, work, 2)
        assert wait_for(lambda: len(live_processors(work)) == 2, 180)
        assert (work / "worker-0" / "daemon.log").stat().st_size >= log_before
        # AND a third one refuses to run next to it, naming the running supervisor
        third = start_supervisor(settings, work, 2)
        assert third.wait(60) == 2
        assert (
            f"supervisor (pid {second.pid}) already runs" in (work / "supervisor.log").read_text()
        )
        # WHEN the local stack is brought down
        tree = fleet_processes(work)
        stopped = local.down(directory=state)
        # THEN it stopped that fleet: nothing of it is left
        assert f"consumer supervisor (pid {second.pid})" in stopped
        assert wait_gone(tree, 5) == []
        assert second.wait(5) == 0
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
        local.down(directory=state)
