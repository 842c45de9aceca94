"""Through the real KCL daemon: a hand-written contract of another domain, and no Glue table yet.

The daemon's record-processor children learn the contract only from the environment the fleet
gives them (``DRIFTLINE_CONTRACT_PATH``); the first flush finds the table missing and creates it
from the contract instead of crash-looping.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import awswrangler as wr
import pytest

from consumers.fleet import ConsumerFleet
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.settings import load_settings
from infra.demo import wait_until_consuming
from infra.emulator import EmulatorProcess
from tests.contracts import PARCEL_SCANS, encode, parcel_scans

pytestmark = pytest.mark.e2e


def test_a_new_contract_flows_through_the_daemon_and_its_table_is_created(
    e2e_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # GIVEN a stream, a bucket and a Glue database, but no table, and the parcel-scans contract
    suffix = uuid.uuid4().hex[:8]
    clients = AwsClients(endpoint_url=e2e_emulator.endpoint)
    configure_awswrangler(e2e_emulator.endpoint)
    bucket, db, stream = f"lake-{suffix}", f"db_{suffix}", f"stream-{suffix}"
    clients.client("s3").create_bucket(Bucket=bucket)
    clients.client("glue").create_database(DatabaseInput={"Name": db})
    kinesis = clients.client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    settings = load_settings(
        {
            "endpoint_url": e2e_emulator.endpoint,
            "stream_name": stream,
            "lake_bucket": bucket,
            "glue_database": db,
            "application_name": f"app-{suffix}",
            "contract_path": str(PARCEL_SCANS.resolve()),
            "flush_max_records": 200,
            "flush_max_age_s": 2.0,
        },
        env={},
        config_path=None,
    )
    fleet = ConsumerFleet(settings, 1, tmp_path / "fleet")
    rows = parcel_scans(600, seed=9)
    try:
        fleet.start()
        wait_until_consuming(fleet, 2, 180)
        # WHEN 600 parcel scans are put with plain boto3
        for i in range(0, 600, 200):
            kinesis.put_records(
                StreamName=stream,
                Records=[
                    {"Data": encode(r), "PartitionKey": r["parcel_id"]} for r in rows[i : i + 200]
                ],
            )
        # THEN all 600 are in the lake exactly once, read back through the catalog
        want = sorted(r["scan_id"] for r in rows)
        deadline, got = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            fleet.supervise_once()
            try:
                got = sorted(
                    wr.s3.read_parquet_table(
                        database=db, table="parcel_scans", boto3_session=clients.session
                    )["scan_id"]
                )
            except (
                wr.exceptions.NoFilesFound,
                clients.client("glue").exceptions.EntityNotFoundException,
            ):
                got = []
            if len(got) >= len(want):
                break
            time.sleep(1.0)
        assert got == want
        # AND the table was made from the contract, and no worker had to restart
        table = clients.client("glue").get_table(DatabaseName=db, Name="parcel_scans")["Table"]
        assert table["Parameters"]["driftline_contract_hash"] == load_contract(PARCEL_SCANS).hash
        assert [w.restarts for w in fleet.members] == [0]
    finally:
        fleet.stop()
