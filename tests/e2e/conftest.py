"""e2e fixtures: a dedicated emulator, and a lake per test consumed by the real KCL daemon."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """A fresh stream (2 shards, or ``shards`` of the param), bucket, Glue table and KCL
    application for one test; the param's other keys are settings."""
    suffix = uuid.uuid4().hex[:8]
    clients = AwsClients(endpoint_url=e2e_emulator.endpoint)
    configure_awswrangler(e2e_emulator.endpoint)
    bucket, db, stream = f"lake-{suffix}", f"db_{suffix}", f"stream-{suffix}"
    clients.client("s3").create_bucket(Bucket=bucket)
    clients.client("glue").create_database(DatabaseInput={"Name": db})
    kinesis = clients.client("kinesis")
    overrides = dict(getattr(request, "param", {}))
    kinesis.create_stream(StreamName=stream, ShardCount=overrides.pop("shards", 2))
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
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


# -- one drift demo for the tests that look at it -------------------------------------------------
@dataclass(frozen=True)
class DriftDemo:
    """A drift demo (card contract) that ran and was left up (``keep_up``): its stack, console
    and model server still serve; the KCL fleet is stopped (as after ``driftline demo --keep``).

    ``history`` is the alarm evaluator's record read right after the demo (the evaluator keeps
    running while later tests look at the stack)."""

    state: Path
    result: dict[str, Any]
    history: list[Any]


_DEMOS_UP: list[Path] = []


@pytest.fixture(scope="session")
def drift_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftDemo]:
    """The drift demo, run once per session for every test that asks (``test_demo``'s loop
    assertions, the console's browser test) instead of once each; stopped after the last of
    them (see :func:`pytest_runtest_teardown`) or at the end of the session."""
    from infra.alarm_evaluator import read_history
    from infra.demo import DemoOptions, run_demo

    state = tmp_path_factory.mktemp("drift-demo") / "state"
    _DEMOS_UP.append(state)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DRIFTLINE_STATE_DIR", str(state))
            result = run_demo(
                DemoOptions(records=5_000, workers=2, scenario="drift", rate=500.0, keep_up=True)
            )
        yield DriftDemo(state, result, read_history(state))
    finally:
        _stop_demo(state)


def _stop_demo(state: Path) -> None:
    from infra import local

    if state in _DEMOS_UP:
        _DEMOS_UP.remove(state)
        local.down(directory=state)


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the shared drift demo's stack after the last test that uses it, not at the end of
    the session: the stack (emulator, PostgreSQL, model server, console) is not idle weight for
    the tests after it."""
    if not _DEMOS_UP or "drift_demo" not in getattr(item, "fixturenames", ()):
        return
    items = item.session.items
    later = items[items.index(item) + 1 :] if item in items else []
    if not any("drift_demo" in getattr(i, "fixturenames", ()) for i in later):
        for state in list(_DEMOS_UP):
            _stop_demo(state)
