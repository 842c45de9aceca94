"""`driftline warehouse load|query` against the emulator's lake and the embedded PostgreSQL."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.warehouse import LakeSource, Loader, LoadSummary
from etl.warehouse.postgres import PostgresWarehouse
from infra.cli import main
from infra.context import LocalState
from infra.pg import PgProcess
from tests.functional.lakefiles import make_rows, write_flush

pytestmark = pytest.mark.functional

BUCKET = "lake-bucket"


@pytest.fixture
def s3(aws: AwsClients) -> Any:
    client = aws.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def local_stack(
    emulator: str,
    pg_server: PgProcess,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """A local stack state recording the lake bucket and the warehouse DSN; returns the schema."""
    LocalState(
        endpoint=emulator,
        stack_name="driftline",
        outputs={"LakeBucket": BUCKET},
        extra={"warehouse_dsn": pg_server.dsn},
    ).save(tmp_path)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_WAREHOUSE_SCHEMA", pg_schema)
    return pg_schema


def test_load_then_query_through_the_cli(
    s3: Any, local_stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a local stack state that records the warehouse DSN, and three flushes in the lake
    pg_schema = local_stack
    contract = load_contract()
    for shard, first, n in (
        ("shardId-000000000000", 1, 40),
        ("shardId-000000000000", 41, 20),
        ("shardId-000000000001", 1, 15),
    ):
        write_flush(s3, BUCKET, contract, make_rows(contract, shard, first, n))

    # WHEN the lake is loaded twice in batches of two, then queried
    assert main(["warehouse", "load", "--batch", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["warehouse", "load"]) == 0
    second = json.loads(capsys.readouterr().out)
    sql = f"SELECT shard_id, count(*) AS n FROM {pg_schema}.card_transactions GROUP BY 1 ORDER BY 1"
    assert main(["warehouse", "query", sql, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["warehouse", "query", sql]) == 0
    table = capsys.readouterr().out.splitlines()

    # THEN the first load took everything in two batches, the second nothing, the rows are there
    assert {k: first[k] for k in ("manifests", "rows", "inserted", "batches")} == {
        "manifests": 3,
        "rows": 75,
        "inserted": 75,
        "batches": 2,
    }
    assert (second["manifests"], second["inserted"]) == (0, 0)
    assert rows == [
        {"shard_id": "shardId-000000000000", "n": 60},
        {"shard_id": "shardId-000000000001", "n": 15},
    ]
    assert table == [
        "shard_id              n",
        "--------------------  --",
        "shardId-000000000000  60",
        "shardId-000000000001  15",
        "(2 rows)",
    ]


def test_a_bad_query_is_an_error_not_a_traceback(
    emulator: str,
    pg_server: PgProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_WAREHOUSE_DSN", pg_server.dsn)
    assert main(["warehouse", "query", "SELECT * FROM no_such_table"]) == 2
    assert 'relation "no_such_table" does not exist' in capsys.readouterr().err


def test_follow_loads_flushes_as_they_commit(s3: Any, pg_server: PgProcess, pg_schema: str) -> None:
    # GIVEN a following loader and a writer that commits one flush per round
    contract = load_contract()
    source = LakeSource(s3, BUCKET, contract.name)
    wh = PostgresWarehouse(pg_server.dsn, contract, schema=pg_schema, source=source)
    loader = Loader(wh, source)
    stop = threading.Event()
    rounds: list[LoadSummary] = []

    def on_round(summary: LoadSummary) -> None:
        rounds.append(summary)
        if len(rounds) < 3:
            first = 1 + 10 * len(rounds)
            write_flush(
                s3, BUCKET, contract, make_rows(contract, "shardId-000000000000", first, 10)
            )
        else:
            stop.set()

    write_flush(s3, BUCKET, contract, make_rows(contract, "shardId-000000000000", 1, 10))

    # WHEN it follows the lake
    total = loader.follow(interval_s=0.01, stop=stop, on_round=on_round)
    wh.close()

    # THEN each round loaded the flush committed before it, and the total adds up
    assert [r.inserted for r in rounds] == [10, 10, 10]
    assert (total.manifests, total.inserted) == (3, 30)
