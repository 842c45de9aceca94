"""DuckDB over the lake in the emulator's S3: views, partitions, dead letters, shared SQL files."""

from __future__ import annotations

import json
from typing import Any

import pytest

from etl.aws import AwsClients
from etl.contract import Contract, load_contract
from etl.query import LakeQuery, render, sql_file
from infra.cli import main
from tests.functional.lakefiles import make_rows, write_flush

pytestmark = pytest.mark.functional

BUCKET = "lake-bucket"


@pytest.fixture
def contract() -> Contract:
    return load_contract()


@pytest.fixture
def lake(aws: AwsClients, contract: Contract) -> Any:
    """Two shards' flushes (130 rows over three hours of 2026-01-05) and three dead letters."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    write_flush(s3, BUCKET, contract, make_rows(contract, "shardId-000000000000", 1, 100))
    write_flush(s3, BUCKET, contract, make_rows(contract, "shardId-000000000001", 1, 30))
    letters = [
        {
            "reason": "malformed_json",
            "shard_id": "shardId-000000000000",
            "sequence_number": "7",
            "payload": "{oops",
            "dead_at": "2026-01-05T12:00:00.000Z",
        },
        {
            "reason": "malformed_json",
            "shard_id": "shardId-000000000001",
            "sequence_number": "9",
            "payload": "[",
            "dead_at": "2026-01-05T12:00:01.000Z",
        },
        {
            "reason": "missing_field",
            "shard_id": "shardId-000000000000",
            "sequence_number": "8",
            "payload": "{}",
            "detail": "transaction_id",
            "dead_at": "2026-01-05T12:00:02.000Z",
        },
    ]
    s3.put_object(
        Bucket=BUCKET,
        Key="dead-letters/card_transactions/event_date=2026-01-05/shardId-000000000000-x.jsonl",
        Body="\n".join(json.dumps(d) for d in letters).encode(),
    )
    return s3


def test_the_lake_table_is_a_view_with_string_partitions(
    aws: AwsClients, contract: Contract, lake: Any
) -> None:
    # GIVEN the lake  WHEN it is queried through DuckDB
    q = LakeQuery(BUCKET, clients=aws, contract=contract)
    total = q.query("SELECT count(*), count(DISTINCT transaction_id) FROM card_transactions").rows
    parts = q.query(
        "SELECT event_date, event_hour, count(*) FROM card_transactions GROUP BY 1, 2 ORDER BY 1, 2"
    ).rows
    q.close()

    # THEN every row is there once, in the hour partitions their event times fall in
    # (event time = 09:30 + 61 s × sequence number)
    assert total == [(130, 130)]
    assert parts == [
        ("2026-01-05", "09", 29 + 29),
        ("2026-01-05", "10", 59 + 1),
        ("2026-01-05", "11", 12),
    ]


def test_shared_sql_files_run_unchanged(aws: AwsClients, contract: Contract, lake: Any) -> None:
    q = LakeQuery(BUCKET, clients=aws, contract=contract)

    # WHEN each shared query runs
    volume = q.run_file("volume_per_partition")
    summary = q.run_file("feature_summary_daily")
    reasons = q.run_file("dead_letter_reasons")
    q.close()

    # THEN they agree with the data
    assert volume.columns[:4] == ["event_date", "event_hour", "row_count", "shards"]
    assert [r[:4] for r in volume.rows] == [
        ("2026-01-05", "09", 58, 2),
        ("2026-01-05", "10", 60, 2),
        ("2026-01-05", "11", 12, 1),
    ]
    assert summary.rows[0][:2] == ("2026-01-05", 130)
    assert summary.columns[-1] == "fraud_rate"
    assert [r[:4] for r in reasons.rows] == [
        ("2026-01-05", "malformed_json", 2, 2),
        ("2026-01-05", "missing_field", 1, 1),
    ]


def test_an_empty_lake_still_has_the_contracts_view(aws: AwsClients, contract: Contract) -> None:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    q = LakeQuery(BUCKET, clients=aws, contract=contract)
    assert q.query("SELECT count(*) FROM card_transactions").rows == [(0,)]
    assert q.query("SELECT count(*) FROM card_transactions_dead_letters").rows == [(0,)]
    q.close()


def test_render_fills_the_placeholders() -> None:
    assert "FROM tx_dead_letters" in render(sql_file("dead_letter_reasons"), "tx")
    assert "FROM tx\n" in render(sql_file("volume_per_partition"), "tx")


def test_cli_lake_query_prints_json_rows(
    emulator: str,
    lake: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the CLI pointed at the emulator's lake
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", emulator)
    monkeypatch.setenv("DRIFTLINE_LAKE_BUCKET", BUCKET)

    # WHEN `driftline lake query` runs inline SQL and a shared file
    rc1 = main(["lake", "query", "SELECT count(*) AS n FROM card_transactions", "--json"])
    rc2 = main(["lake", "query", "--file", "dead_letter_reasons"])

    # THEN it prints the rows
    out = capsys.readouterr().out.splitlines()
    assert (rc1, rc2) == (0, 0)
    assert out[0] == '{"n": 130}'
    assert out[1].split() == [
        "event_date",
        "reason",
        "dead_letters",
        "shards",
        "first_dead_at",
        "last_dead_at",
    ]
    assert out[3].split()[:4] == ["2026-01-05", "malformed_json", "2", "2"]
    assert out[-1] == "(2 rows)"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "COPY (SELECT 1) TO '{out}/copied.csv'",
        "COPY card_transactions TO '{out}/copied.parquet' (FORMAT parquet)",
        "ATTACH '{out}/attached.db' AS other",
        "EXPORT DATABASE '{out}/exported'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
    ],
)
def test_lake_query_cannot_touch_files_extensions_or_settings(
    lake: Any,
    aws: AwsClients,
    contract: Contract,
    sql: str,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN `lake query` over the emulator's lake
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", aws.endpoint_url or "")
    monkeypatch.setenv("DRIFTLINE_LAKE_BUCKET", BUCKET)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "out"
    out.mkdir()
    # WHEN the SQL reads, writes or attaches a file, loads an extension or unlocks the settings
    rc = main(["lake", "query", sql.format(out=out)])
    # THEN it is refused with a one-line error, and no file was written
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("driftline: error: lake query failed: ")
    assert "Permission Error" in err or "Cannot change configuration option" in err, err
    assert list(out.iterdir()) == []
    # AND the shipped queries still run over the locked connection
    q = LakeQuery(BUCKET, clients=aws, contract=contract)
    try:
        assert q.query("SELECT count(*) FROM card_transactions").rows == [(130,)]
        for name in ("volume_per_partition", "dead_letter_reasons", "feature_summary_daily"):
            assert q.run_file(name).rows
    finally:
        q.close()
