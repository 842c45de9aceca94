"""Compaction of closed lake hours against the emulator's S3: readers see every row exactly once
before, during (a crash injected at each step) and after; replays and late flushes; the warehouse
loader and the retrain window read across it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from etl.aws import AwsClients
from etl.compaction import (
    STEPS,
    CompactionOptions,
    Compactor,
    TableLocation,
    is_compacted,
    list_objects,
)
from etl.contract import Contract, load_contract
from etl.query import LakeQuery
from etl.warehouse import LakeSource, Loader
from etl.warehouse.postgres import PostgresWarehouse
from infra.cli import main
from infra.pg import PgProcess
from retrain.data import Window, read_window
from tests.functional.lakefiles import make_rows, write_flush

pytestmark = pytest.mark.functional

BUCKET = "lake-bucket"
SHARDS = ("shardId-000000000000", "shardId-000000000001")
#: Every hour of the lake (09..11 on 2026-01-05) closed more than 2 h before this.
NOW = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)
assert datetime.now(UTC) > NOW
ROWS = 2 * 6 * 20


class Killed(BaseException):
    """Stands in for the process dying: nothing after the step runs, no handler catches it."""


@pytest.fixture
def contract() -> Contract:
    return load_contract()


@pytest.fixture
def s3(aws: AwsClients, contract: Contract) -> Any:
    """Six flushes of 20 rows per shard (61 s apart: 240 rows over 09:30..11:31)."""
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    for shard in SHARDS:
        for n in range(6):
            write_flush(client, BUCKET, contract, make_rows(contract, shard, 1 + 20 * n, 20))
    return client


def loc(contract: Contract) -> TableLocation:
    return TableLocation(BUCKET, contract.name)


def compactor(s3: Any, contract: Contract, **kwargs: Any) -> Compactor:
    """The real clock (the lake's hours are long closed): object ages are S3's LastModified."""
    options = {k: kwargs.pop(k) for k in ("target_bytes", "grace") if k in kwargs}
    options.setdefault("grace", timedelta(0))
    return Compactor(s3, contract, loc(contract), CompactionOptions(**options), **kwargs)


def seen(aws: AwsClients, contract: Contract) -> tuple[int, int]:
    """(rows, distinct record identities) the DuckDB view shows."""
    q = LakeQuery(BUCKET, clients=aws, contract=contract)
    try:
        sql = (
            "SELECT count(*), count(DISTINCT (shard_id, sequence_number))"
            f" FROM {contract.name}_current"
        )
        ((rows, distinct),) = q.query(sql).rows
    finally:
        q.close()
    return rows, distinct


def objects(s3: Any, contract: Contract) -> tuple[int, int]:
    """(small objects, compacted objects) in the bucket."""
    keys = [i.key for i in list_objects(s3, BUCKET, loc(contract).objects_prefix)]
    return sum(not is_compacted(k) for k in keys), sum(is_compacted(k) for k in keys)


def test_compaction_rewrites_closed_hours_and_readers_see_each_row_once(
    aws: AwsClients, s3: Any, contract: Contract
) -> None:
    # GIVEN 240 rows in small objects over three hours
    before = objects(s3, contract)
    assert seen(aws, contract) == (ROWS, ROWS)

    # WHEN the closed hours are compacted with a commit and then a clean-up
    report = compactor(s3, contract).run(older_than=timedelta(hours=2))

    # THEN each hour is one compacted object, the small ones are gone, every row is there once
    assert report.hours == ["2026-01-05T09", "2026-01-05T10", "2026-01-05T11"]
    assert (report.objects_in, report.objects_out, report.rows) == (before[0], 3, ROWS)
    assert report.deleted == before[0]
    assert objects(s3, contract) == (0, 3)
    assert seen(aws, contract) == (ROWS, ROWS)


def test_an_hour_not_closed_long_enough_is_left_alone(
    aws: AwsClients, s3: Any, contract: Contract
) -> None:
    # WHEN "now" is 13:30: hour 11 closed 1.5 h ago, less than --older-than 2h
    c = Compactor(s3, contract, loc(contract), clock=lambda: NOW - timedelta(hours=2.5))
    report = c.run(older_than=timedelta(hours=2))
    # THEN only 09 and 10 are compacted
    assert report.hours == ["2026-01-05T09", "2026-01-05T10"]


@pytest.mark.parametrize(
    ("step", "nth"),
    [("read", 1), ("write_object", 1), ("read", 2), ("commit", 1), ("commit", 2), ("delete", 1)],
)
def test_a_crash_at_any_step_shows_the_old_set_or_the_new_one(
    aws: AwsClients, s3: Any, contract: Contract, step: str, nth: int
) -> None:
    assert step in STEPS
    calls: dict[str, int] = {}

    def crash(at: str) -> None:
        calls[at] = calls.get(at, 0) + 1
        if at == step and calls[at] == nth:
            raise Killed(at)

    # GIVEN a compaction killed at the nth time it reaches the step
    with pytest.raises(Killed):
        compactor(s3, contract, on_step=crash).run(older_than=timedelta(hours=2))

    # THEN readers see every row exactly once (never both sets, never neither)
    assert seen(aws, contract) == (ROWS, ROWS)

    # WHEN the compaction runs again to the end
    compactor(s3, contract).run(older_than=timedelta(hours=2))

    # THEN the lake is compacted and nothing is lost or doubled; orphans are cleaned up
    assert objects(s3, contract) == (0, 3)
    assert seen(aws, contract) == (ROWS, ROWS)


def test_a_replay_after_compaction_does_not_duplicate(
    aws: AwsClients, s3: Any, contract: Contract
) -> None:
    # GIVEN a compacted lake
    compactor(s3, contract).run(older_than=timedelta(hours=2))

    # WHEN a consumer replays an uncheckpointed range: the same small objects, same keys
    write_flush(s3, BUCKET, contract, make_rows(contract, SHARDS[0], 41, 20))

    # THEN they stay superseded: no row twice; the next run deletes them again
    assert objects(s3, contract)[0] > 0
    assert seen(aws, contract) == (ROWS, ROWS)
    report = compactor(s3, contract).run(older_than=timedelta(hours=2))
    assert (report.hours, objects(s3, contract)) == ([], (0, 3))


def test_late_flushes_into_a_compacted_hour_are_seen_and_compacted_next(
    aws: AwsClients, s3: Any, contract: Contract
) -> None:
    # GIVEN a compacted lake, then two late flushes (new ranges) into hour 09
    compactor(s3, contract).run(older_than=timedelta(hours=2))
    late = make_rows(contract, "shardId-000000000002", 1, 20)  # 09:31..09:50
    write_flush(s3, BUCKET, contract, late)
    write_flush(s3, BUCKET, contract, make_rows(contract, "shardId-000000000003", 1, 20))

    # THEN the late rows are visible at once
    assert seen(aws, contract) == (ROWS + 40, ROWS + 40)

    # WHEN compaction runs again  THEN hour 09 gets a second generation, rows still once
    report = compactor(s3, contract).run(older_than=timedelta(hours=2))
    assert (report.hours, report.objects_in, report.objects_out) == (["2026-01-05T09"], 2, 1)
    assert objects(s3, contract) == (0, 4)
    assert seen(aws, contract) == (ROWS + 40, ROWS + 40)


def test_target_size_splits_an_hour(aws: AwsClients, s3: Any, contract: Contract) -> None:
    # WHEN the target is smaller than an hour's objects  THEN the hour gets several
    report = compactor(s3, contract, target_bytes=20_000).run(older_than=timedelta(hours=2))
    assert report.objects_out > 3
    assert seen(aws, contract) == (ROWS, ROWS)


def test_the_warehouse_loads_each_row_once_across_a_compaction(
    pg_server: PgProcess, pg_schema: str, aws: AwsClients, s3: Any, contract: Contract
) -> None:
    # GIVEN a warehouse that loaded the small objects
    source = LakeSource(s3, BUCKET, contract.name)
    wh = PostgresWarehouse(pg_server.dsn, contract, schema=pg_schema, source=source)
    loader = Loader(wh, source, batch_manifests=5)
    assert loader.run_once().rows == ROWS

    # WHEN the lake is compacted (small objects deleted), a flush lands, and the loader runs again
    compactor(s3, contract).run(older_than=timedelta(hours=2))
    write_flush(s3, BUCKET, contract, make_rows(contract, "shardId-000000000002", 1, 20))
    second = loader.run_once()

    # THEN the compaction manifest and the new flush are loaded; no row is there twice
    assert second.manifests == 3 + 1
    with psycopg.connect(pg_server.dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (shard_id, sequence_number))"
            f" FROM {pg_schema}.{contract.name}"
        ).fetchone()
    assert row == (ROWS + 20, ROWS + 20)

    # AND a fresh warehouse loads the compacted lake (flush manifests whose objects are gone)
    fresh = PostgresWarehouse(pg_server.dsn, contract, schema=pg_schema + "b", source=source)
    assert Loader(fresh, source, batch_manifests=5).run_once().inserted == ROWS + 20


def test_the_retrain_window_reads_a_half_compacted_hour_once(
    aws: AwsClients, s3: Any, contract: Contract, emulator: str
) -> None:
    # GIVEN a compaction committed but not cleaned up (grace): both sets are in the bucket
    compactor(s3, contract, grace=timedelta(hours=1)).run(older_than=timedelta(hours=2))
    assert objects(s3, contract) == (16, 3)

    # WHEN the retrain window reads the lake
    window = Window(datetime(2026, 1, 5, 9, 0, tzinfo=UTC), datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    frame = read_window(
        aws.session, emulator, bucket=BUCKET, lake_prefix="lake", contract=contract, window=window
    )

    # THEN every row is there once
    assert len(frame) == ROWS
    assert frame[contract.id_field.name].is_unique


def test_cli_lake_compact_reports_json(
    emulator: str,
    s3: Any,
    contract: Contract,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", emulator)
    monkeypatch.setenv("DRIFTLINE_LAKE_BUCKET", BUCKET)

    # WHEN `driftline lake compact` runs with the default 15 min grace
    rc = main(["lake", "compact", "--older-than", "2h", "--target-mb", "64", "--json"])

    # THEN it compacts the three hours and keeps the superseded objects for now
    report = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert (len(report["hours"]), report["objects_out"], report["deleted"]) == (3, 3, 0)
    assert objects(s3, contract) == (report["objects_in"], 3)


def test_cli_lake_compact_rejects_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["lake", "compact", "--older-than", "two hours"])
    assert exc.value.code == 2
    assert "'two hours' is not a duration; use e.g. 90s, 15m, 2h, 1d" in capsys.readouterr().err


def test_a_rival_compaction_of_the_same_hour_makes_the_later_commit_step_back(
    aws: AwsClients, s3: Any, contract: Contract
) -> None:
    late = make_rows(contract, "shardId-000000000002", 1, 20)  # hour 09, written mid-run
    state = {"reads": 0, "commits": 0}

    def interleave(step: str) -> None:
        if step == "read" and state["reads"] == 0:
            state["reads"] += 1
            write_flush(s3, BUCKET, contract, late)  # A's listing did not see it
        if step == "commit" and state["commits"] == 0:
            state["commits"] += 1
            # B compacts hour 09 (with the late flush: another generation) and commits first
            compactor(s3, contract, grace=timedelta(hours=1)).run(older_than=timedelta(hours=2))

    # WHEN compaction A is overtaken by compaction B on hour 09
    report = compactor(s3, contract, on_step=interleave).run(older_than=timedelta(hours=2))

    # THEN A steps back on 09 (B's generation stands) and every row is seen once
    assert "2026-01-05T09" not in report.hours
    assert seen(aws, contract) == (ROWS + 20, ROWS + 20)
    # AND the next run (past the grace) deletes A's orphan and the superseded objects
    compactor(s3, contract).run(older_than=timedelta(hours=2))
    assert objects(s3, contract) == (0, 3)
    assert seen(aws, contract) == (ROWS + 20, ROWS + 20)
