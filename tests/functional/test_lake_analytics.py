"""The day-one shared queries on every contract: DuckDB over the emulator's lake, Athena's form
through moto's Athena (injected results), and the largest dead-letter line the pipeline writes."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from etl.analytics import HISTORY_QUERIES, SHARED_QUERIES, Engine, athena_query, render, sql_file
from etl.aws import AwsClients, wrangler_endpoint
from etl.contract import Contract, load_contract
from etl.query import LakeQuery
from infra.cli import main
from tests.functional.lakefiles import make_rows, write_flush

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
#: Every shipped contract (a contract added to etl/contracts/ is covered without editing this),
#: plus a hand-written one with other names, a bool feature and an int label.
CONTRACTS = [
    *sorted((ROOT / "etl" / "contracts").glob("*.toml")),
    ROOT / "tests" / "contracts" / "sensor_readings.toml",
]
BUCKET = "lake-bucket"


def _letters(table: str) -> tuple[str, bytes]:
    letters = [
        {"reason": "malformed_json", "shard_id": "s-0", "dead_at": "2026-01-05T12:00:00.000Z"},
        {"reason": "malformed_json", "shard_id": "s-1", "dead_at": "2026-01-05T12:10:00.000Z"},
        {"reason": "missing_field", "shard_id": "s-0", "dead_at": "2026-01-05T13:00:02.000Z"},
    ]
    key = f"dead-letters/{table}/event_date=2026-01-05/s-0-x.jsonl"
    return key, "\n".join(json.dumps(d) for d in letters).encode()


def _lake(aws: AwsClients, contract: Contract) -> pa.Table:
    """Two shards' flushes (100 + 30 rows over three hours) and three dead letters."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    a = make_rows(contract, "shardId-000000000000", 1, 100)
    b = make_rows(contract, "shardId-000000000001", 1, 30)
    write_flush(s3, BUCKET, contract, a)
    write_flush(s3, BUCKET, contract, b)
    key, body = _letters(contract.name)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return pa.concat_tables([a, b])


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_each_shared_query_runs_on_duckdb_for_every_contract(aws: AwsClients, path: Path) -> None:
    # GIVEN a lake written under the contract
    contract = load_contract(path)
    rows = _lake(aws, contract)
    q = LakeQuery(BUCKET, clients=aws, contract=contract)

    # WHEN each shared query runs
    results = {name: q.run_file(name) for name in SHARED_QUERIES}
    q.close()

    # THEN volume per (date, hour, shard) adds up to the rows written, in the hours they fall in
    volume = results["volume_per_partition"]
    assert [r[:4] for r in volume.rows] == [
        ("2026-01-05", "09", "shardId-000000000000", 29),
        ("2026-01-05", "09", "shardId-000000000001", 29),
        ("2026-01-05", "10", "shardId-000000000000", 59),
        ("2026-01-05", "10", "shardId-000000000001", 1),
        ("2026-01-05", "11", "shardId-000000000000", 12),
    ]
    # AND dead letters by day, hour and reason
    assert [r[:5] for r in results["dead_letter_reasons"].rows] == [
        ("2026-01-05", "12", "malformed_json", 2, 2),
        ("2026-01-05", "13", "missing_field", 1, 1),
    ]
    # AND one summary row per day with columns generated from the contract, equal to pyarrow's
    summary = results["feature_summary_daily"]
    assert summary.rows[0][:2] == ("2026-01-05", 130)
    row = dict(zip(summary.columns, summary.rows[0], strict=True))
    fields = [*contract.features, *([contract.label] if contract.label else [])]
    for f in fields:
        col = rows.column(f.name)
        assert row[f"{f.name}_null_share"] == pytest.approx(col.null_count / 130)
        if f.is_numeric:
            assert row[f"{f.name}_mean"] == pytest.approx(pc.mean(col).as_py())
            assert row[f"{f.name}_max"] == pytest.approx(pc.max(col).as_py())
        elif f.type.value == "string":
            assert row[f"{f.name}_distinct"] == len(pc.unique(col.drop_null()))


def _inject_athena_results(endpoint: str, columns: list[str], values: list[list[str]]) -> None:
    """Queue one result set in moto's Athena (moto runs no SQL; this is its documented hook)."""
    rows = [{"Data": [{"VarCharValue": c} for c in columns]}]
    rows += [{"Data": [{"VarCharValue": v} for v in r]} for r in values]
    info = [
        {"Name": c, "Label": c, "Type": "varchar", "Nullable": "UNKNOWN", "CaseSensitive": True}
        for c in columns
    ]
    body = {
        "account_id": "123456789012",
        "region": "us-east-1",
        "results": [{"rows": rows, "column_info": info}],
    }
    req = urllib.request.Request(
        f"{endpoint}/moto-api/static/athena/query-results",
        data=json.dumps(body).encode(),
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).read()


def _workgroup(aws: AwsClients) -> None:
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("athena").create_work_group(
        Name="driftline-analytics",
        Configuration={
            "ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"},
            "EnforceWorkGroupConfiguration": True,
        },
    )


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_each_shared_query_goes_to_athena_in_the_workgroup(
    aws: AwsClients, emulator: str, path: Path
) -> None:
    # GIVEN the stack's workgroup in the emulator
    contract = load_contract(path)
    _workgroup(aws)
    athena = aws.client("athena")
    for name in SHARED_QUERIES:
        # WHEN a shared query runs on Athena (moto answers with an injected result set)
        _inject_athena_results(emulator, ["event_date", "n"], [["2026-01-05", "3"]])
        sql = render(sql_file(name), contract, Engine.ATHENA)
        with wrangler_endpoint(emulator):
            result = athena_query(
                sql, database="lakedb", workgroup="driftline-analytics", session=aws.session
            )
        # THEN it ran as rendered, in the workgroup, against the stack's database
        done = athena.get_query_execution(QueryExecutionId=result.query_id)["QueryExecution"]
        assert done["Query"] == sql
        assert done["WorkGroup"] == "driftline-analytics"
        assert done["QueryExecutionContext"] == {"Database": "lakedb"}
        assert done["ResultConfiguration"]["OutputLocation"].startswith(
            f"s3://{BUCKET}/athena-results/"
        )
        assert (
            f'FROM "{contract.name}_current"' in sql
            or "_dead_letters" in sql
            or name in HISTORY_QUERIES  # the exported tables: the same name on both engines
        )
        # AND the rows (typed as the injected varchar) and the cost (moto scans 0 bytes: the
        # 10 MB minimum is billed) come back
        assert (result.columns, result.rows) == (["event_date", "n"], [("2026-01-05", "3")])
        assert result.cost_usd == pytest.approx(10 * 1024 * 1024 / 1e12 * 5.0)


def test_cli_athena_engine_prints_rows_csv_and_the_cost(
    aws: AwsClients,
    emulator: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN settings naming the workgroup and database (what the stack's outputs fill in)
    _workgroup(aws)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DRIFTLINE_ENDPOINT_URL", emulator)
    monkeypatch.setenv("DRIFTLINE_LAKE_BUCKET", BUCKET)
    monkeypatch.setenv("DRIFTLINE_GLUE_DATABASE", "lakedb")
    monkeypatch.setenv("DRIFTLINE_ATHENA_WORKGROUP", "driftline-analytics")
    _inject_athena_results(emulator, ["reason", "n"], [["malformed_json", "2"]])

    # WHEN a shared file runs on Athena as CSV
    rc = main(["lake", "query", "--file", "dead_letter_reasons", "--engine", "athena", "--csv"])

    # THEN the CSV is on stdout and the bytes scanned and cost on stderr
    out = capsys.readouterr()
    assert rc == 0
    assert out.out.splitlines() == ["reason,n", "malformed_json,2"]
    assert "scanned 0 bytes, cost $0.000052" in out.err
    ids = aws.client("athena").list_query_executions(WorkGroup="driftline-analytics")
    assert len(ids["QueryExecutionIds"]) == 1


def test_a_dead_letter_line_of_a_one_mib_record_is_read(aws: AwsClients) -> None:
    # GIVEN the dead letter of a 1 MiB Kinesis record (the largest the stream takes): ~1.4 MiB
    contract = load_contract()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    payload = bytes(range(256)) * 4096
    line = {
        "reason": "not_utf8",
        "shard_id": "shardId-000000000000",
        "payload_base64": base64.b64encode(payload).decode(),
        "dead_at": "2026-01-05T12:00:00.000Z",
    }
    body = (json.dumps(line) + "\n" + json.dumps(line | {"reason": "too_large"}) + "\n").encode()
    assert len(body) > 2 * 1_398_000
    s3.put_object(
        Bucket=BUCKET,
        Key=f"dead-letters/{contract.name}/event_date=2026-01-05/shardId-000000000000-x.jsonl",
        Body=body,
    )
    q = LakeQuery(BUCKET, clients=aws, contract=contract)

    # WHEN the dead letters are queried
    result = q.query(
        "SELECT reason, length(payload_base64) FROM card_transactions_dead_letters ORDER BY 1"
    )
    q.close()

    # THEN both lines are read whole
    size = len(base64.b64encode(payload))
    assert result.rows == [("not_utf8", size), ("too_large", size)]
