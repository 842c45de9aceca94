"""Captured predictions into the lake on the emulator: their own Glue table, partitioned by the
prediction's hour like the records, read back by DuckDB over pyarrow's S3 filesystem; ingesting
again changes nothing."""

from __future__ import annotations

import json

import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from etl.aws import AwsClients
from etl.capture import capture_line
from etl.capture_lake import CaptureIngester, predictions_contract
from etl.contract import load_contract
from etl.lake import GlueCatalog, LakeLayout, LakeWriter, WriterOptions

pytestmark = pytest.mark.functional
CONTRACT = load_contract()
BUCKET = "driftline-test-capture-lake"
T0 = 1_767_603_600.0  # 2026-01-05 09:00:00 UTC


def _record(i: int) -> dict[str, object]:
    return {
        "transaction_id": f"tx-{i}",
        "amount": 10.0 + i,
        "merchant_category": "grocery",
        "hour": i % 24,
        "distance_from_home_km": None,
        "device": "mobile",
        "country": "US",
    }


def _put_capture(aws: AwsClients, name: str, first: int, n: int, when: float) -> None:
    lines = []
    for i in range(first, first + n, 2):  # two records per invocation
        body = json.dumps([_record(i), _record(i + 1)]).encode()
        out = json.dumps({"predictions": [{"score": i / 100}, {"score": (i + 1) / 100}]})
        lines.append(
            capture_line(
                body,
                "application/json",
                out.encode(),
                "application/json",
                event_id=f"e{i}",
                when=when + i,
                model_version="v3",
            )
        )
    # and one CSV invocation: no id to join by, not a row
    lines.append(capture_line(b"1,2\n", "text/csv", b"0.5\n", "text/csv", event_id="c", when=when))
    key = f"capture/driftline-local/AllTraffic/2026/01/05/09/{name}.jsonl"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())


def test_capture_objects_become_a_partitioned_glue_table(aws: AwsClients) -> None:
    # GIVEN two capture objects (one crossing into the next hour) in the lake bucket
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("glue").create_database(DatabaseInput={"Name": "lakedb"})
    _put_capture(aws, "a", 0, 10, T0)
    _put_capture(aws, "b", 10, 6, T0 + 3595)
    pc_ = predictions_contract(CONTRACT)
    layout = LakeLayout(BUCKET, pc_.name)
    catalog = GlueCatalog(pc_, layout, "lakedb", aws.session, endpoint_url=aws.endpoint_url)
    catalog.ensure_table()
    options = WriterOptions(backoff_base_s=0.01)
    writer = LakeWriter(pc_, layout, aws.client("s3"), catalog=catalog, options=options)
    ingester = CaptureIngester(aws.client("s3"), writer)
    # WHEN they are ingested
    report = ingester.ingest(BUCKET, "capture")
    # THEN 16 rows in the predictions table, partitioned by the prediction's hour
    assert (report.objects, report.rows, report.skipped) == (2, 16, 0)
    glue = aws.client("glue")
    table = glue.get_table(DatabaseName="lakedb", Name="card_transactions_predictions")["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date", "event_hour"]
    parts = glue.get_partitions(DatabaseName="lakedb", TableName=pc_.name)["Partitions"]
    assert sorted(tuple(p["Values"]) for p in parts) == [("2026-01-05", "09"), ("2026-01-05", "10")]
    # AND DuckDB reads the Parquet back (pyarrow's S3 filesystem on the emulator)
    fs = pafs.S3FileSystem(**aws.s3_filesystem_kwargs())
    data = ds.dataset(f"{BUCKET}/lake/{pc_.name}/", filesystem=fs, partitioning="hive")
    con = duckdb.connect()
    con.register("predictions", data)
    rows = con.execute(
        "select transaction_id, prediction_score, model_version, amount, event_hour"
        " from predictions order by prediction_score"
    ).fetchall()
    assert len(rows) == 16
    assert rows[0] == ("tx-0", 0.0, "v3", 10.0, 9)  # hive partitioning reads the hour as int
    assert rows[-1][0] == "tx-15" and rows[-1][4] == 10
    # AND ingesting again skips the committed objects, rewriting nothing
    before = aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="lake/")["KeyCount"]
    again = ingester.ingest(BUCKET, "capture")
    assert (again.objects, again.skipped) == (0, 2)
    assert aws.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="lake/")["KeyCount"] == before
