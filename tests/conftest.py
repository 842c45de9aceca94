"""Shared fixtures: the emulator server (moto over hypercorn on a free loopback port)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.aws import AwsClients
from infra.emulator import EmulatorProcess, reset, start_emulator

# Nothing in the tests may reach real AWS: dummy credentials, and no default endpoint.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator process for the whole session (stopped by PID at the end)."""
    emu = start_emulator(Path(tmp_path_factory.mktemp("emulator")))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator(emulator_server: EmulatorProcess) -> Iterator[str]:
    """The emulator's endpoint URL, emptied before each test."""
    reset(emulator_server.endpoint)
    yield emulator_server.endpoint


@pytest.fixture
def aws(emulator: str) -> AwsClients:
    """A client factory pointed at the (empty) emulator."""
    return AwsClients(region="us-east-1", endpoint_url=emulator)
