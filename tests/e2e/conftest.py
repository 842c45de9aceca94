"""e2e fixtures: a dedicated emulator, and a lake per test consumed by the real KCL daemon."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.aws import AwsClients, configure_awswrangler
from etl.contract import load_contract
from etl.lake import GlueCatalog, LakeLayout
from etl.settings import Settings, load_settings
from infra.emulator import EmulatorProcess, start_emulator

if shutil.which("java") is None:  # pragma: no cover - `make test` checks java first
    pytest.exit("java not found: install openjdk-17-jre-headless", returncode=2)


@pytest.fixture(scope="module")
def e2e_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emu = start_emulator(Path(tmp_path_factory.mktemp("e2e-emulator")))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def pipeline(
    e2e_emulator: EmulatorProcess, request: pytest.FixtureRequest
) -> tuple[Settings, AwsClients]:
    """A fresh stream (2 shards), bucket, Glue table and KCL application for one test."""
    suffix = uuid.uuid4().hex[:8]
    clients = AwsClients(endpoint_url=e2e_emulator.endpoint)
    configure_awswrangler(e2e_emulator.endpoint)
    bucket, db, stream = f"lake-{suffix}", f"db_{suffix}", f"stream-{suffix}"
    clients.client("s3").create_bucket(Bucket=bucket)
    clients.client("glue").create_database(DatabaseInput={"Name": db})
    kinesis = clients.client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    overrides = getattr(request, "param", {})
    settings = load_settings(
        {
            "endpoint_url": e2e_emulator.endpoint,
            "stream_name": stream,
            "lake_bucket": bucket,
            "glue_database": db,
            "application_name": f"app-{suffix}",
            "flush_max_records": 500,
            "flush_max_age_s": 2.0,
            **overrides,
        },
        env={},
        config_path=None,
    )
    contract = load_contract()
    GlueCatalog(
        contract,
        LakeLayout(bucket, contract.name),
        db,
        clients.session,
        endpoint_url=clients.endpoint_url,
    ).ensure_table()
    return settings, clients
